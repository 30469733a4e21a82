// Channel send, recv and close; protocol and invariants in chan/chan.hpp.
#include "chan/chan.hpp"

#include <weft/channel.hpp>

#include <limits>
#include <new>

#include <weft/detail/park.hpp>

#include "sync/wait_queue.hpp"

namespace weft {

channel_closed::channel_closed() : std::runtime_error("weft::channel: send on a closed channel") {}
channel_closed::~channel_closed() = default;

}  // namespace weft

namespace weft::detail {

void chan_queue::push_back(chan_waiter& c) noexcept {
    c.next = nullptr;
    c.prev = tail_;
    if (tail_) tail_->next = &c;
    else head_ = &c;
    tail_ = &c;
    c.linked = true;
}

chan_waiter* chan_queue::pop_front() noexcept {
    chan_waiter* c = head_;
    if (c) remove(*c);
    return c;
}

void chan_queue::remove(chan_waiter& c) noexcept {
    if (c.prev) c.prev->next = c.next;
    else head_ = c.next;
    if (c.next) c.next->prev = c.prev;
    else tail_ = c.prev;
    c.next = c.prev = nullptr;
    c.linked = false;
}

namespace {

/// The first live chan waiter of q, claimed (C2); stale ones are dropped (C3).
inline chan_waiter* take_live(chan_queue& q) noexcept {
    while (chan_waiter* c = q.pop_front())
        if (claim_waiter(*c->w)) return c;
    return nullptr;
}

/// Doubles an unbounded buffer (under the lock). False when out of memory.
bool grow(chan* c) noexcept {
    const std::size_t n = c->slots ? c->slots * 2 : 16;
    auto* nb = static_cast<unsigned char*>(
        ::operator new(n * c->stride, std::align_val_t(c->ops->align), std::nothrow));
    if (!nb) return false;
    for (std::size_t i = 0; i < c->count; ++i) {
        std::size_t from = c->head + i;
        if (from >= c->slots) from -= c->slots;
        c->ops->relocate(nb + i * c->stride, c->slot(from));
    }
    if (c->buf) ::operator delete(c->buf, std::align_val_t(c->ops->align));
    c->buf = nb;
    c->slots = n;
    c->head = 0;
    return true;
}

inline std::size_t tail_index(const chan* c) noexcept {
    std::size_t t = c->head + c->count;
    if (t >= c->slots) t -= c->slots;
    return t;
}

}  // namespace

attempt send_locked(chan* c, void* v, waiter** wake) noexcept {
    *wake = nullptr;
    if (c->closed) return attempt::closed;
    if (chan_waiter* r = take_live(c->recvq)) {  // C1: a live receiver means an empty buffer
        c->ops->move_from(r->elem, v);
        r->w->token = chan_token(r->index, false);
        *wake = r->w;
        return attempt::done;
    }
    if (c->count == c->slots) {
        if (!c->unbounded) return attempt::would_block;
        if (!grow(c)) return attempt::no_memory;
    }
    c->ops->move_from(c->slot(tail_index(c)), v);
    ++c->count;
    return attempt::done;
}

attempt recv_locked(chan* c, void* out, waiter** wake) noexcept {
    *wake = nullptr;
    if (c->count > 0) {
        c->ops->relocate(out, c->slot(c->head));
        if (++c->head == c->slots) c->head = 0;
        --c->count;
        if (chan_waiter* s = take_live(c->sendq)) {  // C1: the freed slot goes to the first parked sender
            c->ops->move_from(c->slot(tail_index(c)), s->elem);
            ++c->count;
            s->w->token = chan_token(s->index, false);
            *wake = s->w;
        }
        return attempt::done;
    }
    if (chan_waiter* s = take_live(c->sendq)) {  // rendezvous: hand to hand
        c->ops->move_from(out, s->elem);
        s->w->token = chan_token(s->index, false);
        *wake = s->w;
        return attempt::done;
    }
    return c->closed ? attempt::closed : attempt::would_block;
}

chan* chan_create(std::size_t capacity, bool unbounded, const elem_ops* ops) {
    const std::size_t stride = (ops->size + ops->align - 1) / ops->align * ops->align;
    if (!unbounded && capacity > std::numeric_limits<std::size_t>::max() / stride / 2)
        throw std::length_error("weft::channel: capacity too large");
    chan* c = new chan{};
    c->ops = ops;
    c->stride = stride;
    c->unbounded = unbounded;
    if (!unbounded && capacity > 0) {
        try {
            c->buf = static_cast<unsigned char*>(::operator new(capacity * stride, std::align_val_t(ops->align)));
        } catch (...) {
            delete c;
            throw;
        }
        c->slots = capacity;
    }
    return c;
}

void chan_retain(chan* c) noexcept {
    c->refs.fetch_add(1, std::memory_order_relaxed);  // relaxed: the caller holds a reference (header)
}

void chan_release(chan* c) noexcept {
    // acq_rel: the last owner sees every write made through the other handles (header).
    if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    for (std::size_t i = 0; i < c->count; ++i) {
        std::size_t at = c->head + i;
        if (at >= c->slots) at -= c->slots;
        c->ops->destroy(c->slot(at));
    }
    if (c->buf) ::operator delete(c->buf, std::align_val_t(c->ops->align));
    delete c;
}

namespace {

/// chan_send and chan_recv: try now (C1), else queue a chan waiter and park.
inline channel_op_status send_or_recv(chan* c, void* elem, bool is_send, bool try_only, std::int64_t deadline_ns) {
    c->lock.lock();
    waiter* wake;
    switch (is_send ? send_locked(c, elem, &wake) : recv_locked(c, elem, &wake)) {
        case attempt::done:
            c->lock.unlock();
            if (wake) complete_unpark(*wake);
            return channel_op_status::success;
        case attempt::closed:
            c->lock.unlock();
            return channel_op_status::closed;
        case attempt::no_memory:  // only a send to an unbounded channel allocates
            c->lock.unlock();
            throw std::bad_alloc();
        case attempt::would_block:
            break;
    }
    if (try_only) {
        c->lock.unlock();
        return is_send ? channel_op_status::full : channel_op_status::empty;
    }
    chan_queue& q = is_send ? c->sendq : c->recvq;
    waiter me = make_waiter();
    chan_waiter cw;
    cw.w = &me;
    cw.elem = elem;
    q.push_back(cw);
    const wake_reason r = park_waiter(me, c->lock, is_send ? "chan send" : "chan recv", deadline_ns);
    if (r == wake_reason::notified)  // our claimer unlinked cw (C3, C4)
        return (me.token & 1) ? channel_op_status::closed : channel_op_status::success;
    c->lock.lock();
    if (cw.linked) q.remove(cw);  // C3
    c->lock.unlock();
    if (r == wake_reason::cancelled) throw_cancelled();
    return channel_op_status::timeout;
}

}  // namespace

channel_op_status chan_send(chan* c, void* v, bool try_only, std::int64_t deadline_ns) {
    return send_or_recv(c, v, true, try_only, deadline_ns);
}

channel_op_status chan_recv(chan* c, void* out, bool try_only, std::int64_t deadline_ns) {
    return send_or_recv(c, out, false, try_only, deadline_ns);
}

bool chan_close(chan* c) noexcept {
    c->lock.lock();
    if (c->closed) {
        c->lock.unlock();
        return false;
    }
    c->closed = true;
    c->closed_hint.store(true, std::memory_order_release);  // release: see the header
    // C7: claim every live waiter under the lock; wake them after it (FIFO order).
    chan_waiter* first = nullptr;
    chan_waiter** tail = &first;
    for (chan_queue* q : {&c->recvq, &c->sendq}) {
        while (chan_waiter* w = take_live(*q)) {
            w->w->token = chan_token(w->index, true);
            *tail = w;
            tail = &w->next;  // unlinked: next is ours until the wake completes
        }
    }
    *tail = nullptr;
    c->lock.unlock();
    while (first) {
        chan_waiter* next = first->next;  // read before the wake: then the frame may vanish (C4)
        complete_unpark(*first->w);
        first = next;
    }
    return true;
}

bool chan_is_closed(const chan* c) noexcept {
    return c->closed_hint.load(std::memory_order_acquire);  // acquire: see the header
}

std::size_t chan_size(const chan* c) noexcept {
    auto* m = const_cast<chan*>(c);
    m->lock.lock();
    const std::size_t n = m->count;
    m->lock.unlock();
    return n;
}

std::size_t chan_capacity(const chan* c) noexcept {
    // No lock: a bounded channel's slots never change after chan_create.
    return c->unbounded ? std::numeric_limits<std::size_t>::max() : c->slots;
}

}  // namespace weft::detail
