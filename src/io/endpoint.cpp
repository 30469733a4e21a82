// weft::net::endpoint (address literals <-> socket addresses), resolve() and
// the "resolve" error category. The sockets are in io/net.cpp.
//
// Decisions where include/weft/net.hpp is silent:
//  - Literals are what inet_pton(3) accepts: dotted-quad IPv4 only ("127.1"
//    and "0x7f.1" are refused), any RFC 4291 IPv6 text. An IPv6 literal may
//    carry a zone ("fe80::1%2" or "fe80::1%eth0", the name looked up with
//    if_nametoindex); address() prints the zone as its number. A port is 1
//    to 5 decimal digits, at most 65535; no sign, no spaces.
//  - endpoint(address, port) takes the bare literal (no brackets);
//    parse() requires brackets around IPv6 ("[::1]:80") because "::1:80" is
//    ambiguous.
//  - operator== compares family, address, port and (IPv6) the zone; the
//    flow label is ignored. An IPv4-mapped IPv6 address ("::ffff:1.2.3.4",
//    what a dual-stack listener reports) stays IPv6: it is not equal to the
//    IPv4 endpoint.
//  - resolve(): getaddrinfo(host, NULL, {AF_UNSPEC, SOCK_STREAM}) on the
//    blocking pool, then the port is written into every result and
//    duplicates are dropped (order kept). No AI_ADDRCONFIG: on a host with
//    only loopback configured it would hide "localhost". A literal host
//    (endpoint's syntax) is answered at once, without the pool; any other
//    numeric form getaddrinfo reads (inet_aton's "127.1", "0x7f.1",
//    "2130706433") is std::invalid_argument, so that a host
//    accepted by resolve is either a name or the literal endpoint prints.
//  - Text holding a '\0' is never a literal (inet_pton would stop there).
//
// No shared state: every function here is reentrant (getaddrinfo is).
//
// Tested by test/api/net_test.cpp (EndpointTest, ResolveTest).
#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ostream>
#include <stdexcept>

#include <weft/blocking.hpp>
#include <weft/net.hpp>

namespace weft::net {

namespace {

sockaddr_in get_v4(const sockaddr_storage& ss) noexcept {
    sockaddr_in in;
    std::memcpy(&in, &ss, sizeof in);
    return in;
}

sockaddr_in6 get_v6(const sockaddr_storage& ss) noexcept {
    sockaddr_in6 in6;
    std::memcpy(&in6, &ss, sizeof in6);
    return in6;
}

bool parse_port(std::string_view s, std::uint16_t& port) noexcept {
    if (s.empty() || s.size() > 5) return false;
    unsigned v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > 65535) return false;
    port = static_cast<std::uint16_t>(v);
    return true;
}

/// The zone of an IPv6 literal: a number or an interface name. 0 on failure.
std::uint32_t parse_zone(std::string_view z) noexcept {
    if (z.empty() || z.size() >= IF_NAMESIZE) return 0;
    if (std::all_of(z.begin(), z.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        std::uint64_t v = 0;
        for (char c : z) v = v * 10 + static_cast<unsigned>(c - '0');
        return v <= 0xffffffffu ? static_cast<std::uint32_t>(v) : 0;
    }
    char name[IF_NAMESIZE];
    std::memcpy(name, z.data(), z.size());
    name[z.size()] = '\0';
    return ::if_nametoindex(name);
}

/// A bare address literal (no brackets) and a port into `out`.
bool parse_address(std::string_view s, std::uint16_t port, sockaddr_storage& out) noexcept {
    char buf[INET6_ADDRSTRLEN + 1];
    out = sockaddr_storage{};
    // inet_pton reads a C string: "1.2.3.4\0junk" would pass as 1.2.3.4.
    if (s.find('\0') != std::string_view::npos) return false;
    if (s.find(':') == std::string_view::npos) {
        if (s.size() >= sizeof buf) return false;
        std::memcpy(buf, s.data(), s.size());
        buf[s.size()] = '\0';
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        if (::inet_pton(AF_INET, buf, &in.sin_addr) != 1) return false;
        std::memcpy(&out, &in, sizeof in);
        return true;
    }
    std::string_view addr = s;
    std::uint32_t zone = 0;
    if (const auto pct = s.find('%'); pct != std::string_view::npos) {
        addr = s.substr(0, pct);
        zone = parse_zone(s.substr(pct + 1));
        if (zone == 0) return false;
    }
    if (addr.size() >= sizeof buf) return false;
    std::memcpy(buf, addr.data(), addr.size());
    buf[addr.size()] = '\0';
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    in6.sin6_scope_id = zone;
    if (::inet_pton(AF_INET6, buf, &in6.sin6_addr) != 1) return false;
    std::memcpy(&out, &in6, sizeof in6);
    return true;
}

/// "a.b.c.d:port" or "[v6]:port". Null on success, else what is wrong (for parse()'s message).
const char* parse_text(std::string_view text, sockaddr_storage& out) noexcept {
    std::string_view host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return "no ']' to close the '['";
        if (close + 1 >= text.size() || text[close + 1] != ':') return "no ':port' after the ']'";
        host = text.substr(1, close - 1);
        if (host.empty()) return "no address between the brackets";
        if (host.find(':') == std::string_view::npos) return "brackets are for IPv6 addresses only";
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return "no ':port'";
        host = text.substr(0, colon);
        if (host.empty())
            return "no address before the port (all interfaces: 0.0.0.0:port or [::]:port; this host: "
                   "127.0.0.1:port)";
        if (host.find(':') != std::string_view::npos) return "an IPv6 address needs brackets ([::1]:80)";
        port_text = text.substr(colon + 1);
    }
    std::uint16_t port = 0;
    if (!parse_port(port_text, port)) return "the port is not 1 to 5 decimal digits, at most 65535";
    if (parse_address(host, port, out)) return nullptr;
    if (host.find('\0') != std::string_view::npos) return "a NUL character in the address";
    if (host.find('%') != std::string_view::npos) return "not an IPv6 literal with a known zone (interface)";
    if (host.find(':') != std::string_view::npos) return "not an IPv6 address literal";
    if (host.find_first_not_of("0123456789.") == std::string_view::npos)
        return "not a dotted-quad IPv4 address (four numbers from 0 to 255)";
    return "not an IPv4 or IPv6 address literal (a host name needs weft::net::resolve)";
}

/// The text in double quotes, control characters (a NUL would end what()) as \xNN.
std::string quoted(std::string_view s) {
    std::string q;
    q.reserve(s.size() + 2);
    q += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            q += "\\x";
            q += hex[u >> 4];
            q += hex[u & 15];
        } else {
            q += c;
        }
    }
    q += '"';
    return q;
}

class resolve_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "resolve"; }
    std::string message(int ev) const override { return ::gai_strerror(ev); }
    /// The codes that have a portable meaning compare equal to it, so that a
    /// caller can tell a temporary failure (EAI_AGAIN) from "no such host"
    /// (EAI_NONAME, EAI_NODATA, EAI_FAIL: no std::errc says that; they stay
    /// in this category).
    std::error_condition default_error_condition(int ev) const noexcept override {
        switch (ev) {
        case EAI_AGAIN:
            return std::errc::resource_unavailable_try_again;
        case EAI_MEMORY:
            return std::errc::not_enough_memory;
        case EAI_FAMILY:
#ifdef EAI_ADDRFAMILY  // a GNU extension
        case EAI_ADDRFAMILY:
#endif
            return std::errc::address_family_not_supported;
        case EAI_BADFLAGS:
            return std::errc::invalid_argument;
        default:
            return std::error_condition(ev, *this);
        }
    }
};

}  // namespace

// ---------------------------------------------------------------- endpoint

endpoint::endpoint() noexcept : storage_{} {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    std::memcpy(&storage_, &in, sizeof in);
}

endpoint::endpoint(std::string_view address, std::uint16_t port) {
    if (!parse_address(address, port, storage_))
        throw std::invalid_argument("weft::net::endpoint: not an IPv4 or IPv6 address literal: " + quoted(address));
}

endpoint endpoint::parse(std::string_view text) {
    endpoint e;
    if (const char* why = parse_text(text, e.storage_))
        throw std::invalid_argument("weft::net::endpoint::parse: not an address:port (127.0.0.1:80, [::1]:80): " +
                                    quoted(text) + ": " + why);
    return e;
}

std::optional<endpoint> endpoint::try_parse(std::string_view text) noexcept {
    endpoint e;
    if (parse_text(text, e.storage_) != nullptr) return std::nullopt;
    return e;
}

endpoint endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) {
    if (!sa) throw std::invalid_argument("weft::net::endpoint::from_sockaddr: null address");
    endpoint e;
    e.storage_ = sockaddr_storage{};
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        std::memcpy(&e.storage_, sa, sizeof(sockaddr_in));
    } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        std::memcpy(&e.storage_, sa, sizeof(sockaddr_in6));
    } else {
        throw std::invalid_argument("weft::net::endpoint::from_sockaddr: not an IPv4 or IPv6 address (family " +
                                    std::to_string(sa->sa_family) + ", length " + std::to_string(len) + ")");
    }
    return e;
}

bool endpoint::is_v4() const noexcept { return storage_.ss_family == AF_INET; }
bool endpoint::is_v6() const noexcept { return storage_.ss_family == AF_INET6; }

std::uint16_t endpoint::port() const noexcept {
    return ntohs(is_v6() ? get_v6(storage_).sin6_port : get_v4(storage_).sin_port);
}

socklen_t endpoint::size() const noexcept { return is_v6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in); }

std::string endpoint::address() const {
    char buf[INET6_ADDRSTRLEN];
    if (is_v6()) {
        const sockaddr_in6 in6 = get_v6(storage_);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
        std::string s = buf;
        if (in6.sin6_scope_id != 0) {
            s += '%';
            s += std::to_string(in6.sin6_scope_id);
        }
        return s;
    }
    const sockaddr_in in = get_v4(storage_);
    ::inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    return buf;
}

std::string endpoint::to_string() const {
    std::string s;
    if (is_v6()) {
        s += '[';
        s += address();
        s += ']';
    } else {
        s += address();
    }
    s += ':';
    s += std::to_string(port());
    return s;
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
    if (a.family() != b.family()) return false;
    if (a.is_v6()) {
        const sockaddr_in6 x = get_v6(a.storage_);
        const sockaddr_in6 y = get_v6(b.storage_);
        return x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id &&
               std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
    }
    const sockaddr_in x = get_v4(a.storage_);
    const sockaddr_in y = get_v4(b.storage_);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
}

std::ostream& operator<<(std::ostream& os, const endpoint& e) { return os << e.to_string(); }

// ---------------------------------------------------------------- resolve

const std::error_category& resolve_category() noexcept {
    static const resolve_category_impl cat;
    return cat;
}

std::vector<endpoint> resolve(std::string_view host, std::uint16_t port) {
    {
        sockaddr_storage ss;
        if (parse_address(host, port, ss))
            return {endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof ss)};
    }
    if (!host.empty() && host.front() == '[') {
        // "[::1]", the form a URL or an endpoint prints: the brackets only delimit the
        // literal. Anything else in brackets is no name either.
        sockaddr_storage ss;
        const std::string_view inner = host.substr(1, host.size() - 1 - (host.back() == ']'));
        if (host.size() >= 2 && host.back() == ']' && inner.find(':') != std::string_view::npos &&
            parse_address(inner, port, ss))
            return {endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof ss)};
        throw std::invalid_argument("weft::net::resolve: " + quoted(host) +
                                    " is not an IPv6 literal in brackets (\"[::1]\")");
    }
    const std::string name(host);
    const std::string what = "resolve " + quoted(host);
    if (name.empty() || name.find('\0') != std::string::npos)
        throw std::system_error(EAI_NONAME, resolve_category(), what);
    // No host name holds a space, a control character (a hosts file splits at spaces;
    // DNS labels are not typed with them: most often a line read with its newline) or
    // a bracket (a URL's, misplaced). Refused before any lookup, so the mistake is
    // named, not "not found".
    if (std::any_of(name.begin(), name.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u <= 0x20 || u == 0x7f || c == '[' || c == ']';
        }))
        throw std::invalid_argument("weft::net::resolve: " + quoted(host) +
                                    " holds a space, a control character or a bracket; no host name does");
    {
        // getaddrinfo also reads inet_aton's shorthands ("127.1", "0x7f.1", "2130706433"),
        // which endpoint refuses; answering them would let a checked literal and the
        // address it resolves to differ (an allow-list of names would not catch "127.1").
        // AI_NUMERICHOST: no lookup, so this costs no blocking call.
        addrinfo hints{};
        hints.ai_flags = AI_NUMERICHOST;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* list = nullptr;
        if (::getaddrinfo(name.c_str(), nullptr, &hints, &list) == 0) {
            ::freeaddrinfo(list);
            throw std::invalid_argument("weft::net::resolve: " + quoted(host) +
                                        " is a numeric address in a shorthand form; write the literal in full "
                                        "(127.0.0.1, ::1)");
        }
    }

    struct answer {
        int rc = 0;
        int err = 0;  // errno for EAI_SYSTEM
        std::vector<endpoint> eps;
    };
    answer a = weft::spawn_blocking([&name, port] {
        answer r;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
        addrinfo* list = nullptr;
        r.rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &list);
        if (r.rc == EAI_SYSTEM) r.err = errno;
        if (r.rc != 0) return r;
        try {
            for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
                if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
                sockaddr_storage ss{};
                std::memcpy(&ss, ai->ai_addr, std::min<std::size_t>(ai->ai_addrlen, sizeof ss));
                if (ai->ai_family == AF_INET) {
                    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
                } else {
                    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
                }
                const endpoint e = endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), ai->ai_addrlen);
                if (std::find(r.eps.begin(), r.eps.end(), e) == r.eps.end()) r.eps.push_back(e);
            }
        } catch (...) {
            ::freeaddrinfo(list);
            throw;
        }
        ::freeaddrinfo(list);
        return r;
    });
    if (a.rc == EAI_SYSTEM) throw std::system_error(a.err ? a.err : EIO, std::generic_category(), what);
    if (a.rc != 0) throw std::system_error(a.rc, resolve_category(), what);
    if (a.eps.empty()) throw std::system_error(EAI_NONAME, resolve_category(), what);
    return std::move(a.eps);
}

}  // namespace weft::net
