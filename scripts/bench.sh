#!/usr/bin/env bash
# Builds weft (release) and runs its benchmark programs (benchmarks/*.cpp) side by side
# with the Go and Boost.Fiber peers, then prints weft's ratio to each peer; then the network
# servers: echo (the peers' echo_client against Go's, the epoll baseline's and weft's
# echo_server) and http (wrk against Go's net/http and weft's http_server).
#
#   scripts/bench.sh                        # foundation, timer, sync, channel and network workloads
#   ONLY='^(echo|http) ' ECHO_SECS=3 ECHO_REPS=1 HTTP_SECS=3 scripts/bench.sh   # servers only, quick
#   REPS=1 SCALE=10 scripts/bench.sh        # quick run: one rep, sizes divided by 10
#   ONLY='^skynet ' scripts/bench.sh        # regex on "<bench> <impl> <workers>"
#   PEERS_BUILD=/tmp/peers SKIP_BUILD=1 scripts/bench.sh   # reuse already built peers
#   scripts/bench.sh --table build/bench-results/latest.txt  # ratio table of an earlier run
#
# Peers: $PEERS_DIR, default ../shared/peers next to the repository (its run.sh builds
# them into $PEERS_BUILD, default <builddir>/peers, and runs the case table filtered by
# ONLY). Without the peers, weft's programs run alone (median of REPS by ns_per_op).
# Other knobs: BUILD_DIR (build), FIBER_IMPLS ("go boostfiber weft"), SKIP_BUILD (peers
# only), NO_SETUP=1 (skip scripts/setup.sh). Servers (passed on to run.sh): ECHO_SERVERS
# ("go:2 epoll:2 weft:2", impl:workers), ECHO_CONNS ("100 1000 10000"), ECHO_SECS (10),
# ECHO_REPS (3), HTTP_SERVERS ("go:2 weft:2"), HTTP_CONNS (1000), HTTP_SECS (10). They need
# the peers (echo_client, wrk); without them only a note is printed.
# select has no peer in $PEERS_DIR: its Go side is benchmarks/peers/go/select, built into
# the peers' build dir when go is installed and run here next to weft's (with or without
# the peers).
# Every median RESULT line is saved in <builddir>/bench-results/<utc time>.txt (+ latest.txt);
# the ratio table next to it as <utc time>.ratios.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${BUILD_DIR:-build}
REPS=${REPS:-3}
SCALE=${SCALE:-1}
ONLY=${ONLY:-'^(spawn_join|yield_pingpong|skynet|park_memory|timer_churn|sleep_lateness|mutex_contention|mutex_uncontended|condvar_pingpong|chan_pingpong|chan_mpmc|select|echo|http) '}
FIBER_IMPLS=${FIBER_IMPLS:-"go boostfiber weft"}
ECHO_SERVERS=${ECHO_SERVERS:-"go:2 epoll:2 weft:2"}
ECHO_CONNS=${ECHO_CONNS:-"100 1000 10000"}
HTTP_SERVERS=${HTTP_SERVERS:-"go:2 weft:2"}
HTTP_CONNS=${HTTP_CONNS:-1000}
PEERS_DIR=${PEERS_DIR:-$(dirname "$ROOT")/shared/peers}

# For each (bench, workers): weft's median next to go's and boostfiber's (dispatch form
# for skynet; the launch=post rows run at another n), and weft / peer. < 1 = weft is
# faster (smaller). skynet adds total_ms, park_memory kib_per_task. The thread column (the
# std::thread baseline, run at a smaller n where it has a row) is for reference.
ratio_table() {
    awk '
    /^RESULT / {
        delete kv
        for (i = 2; i <= NF; i++) { p = index($i, "="); if (p) kv[substr($i, 1, p - 1)] = substr($i, p + 1) }
        impl = kv["impl"]
        if (impl ~ /^boostfiber/) impl = "boostfiber"
        if (impl != "weft" && impl != "go" && impl != "boostfiber" && impl != "thread") next
        if (kv["launch"] == "post") next
        name = kv["name"]
        if (name == "echo" || name == "http") next  # server_table
        # weft runs skynet in two forms: join (skynet.cpp) and chan (skynet_chan.cpp). The
        # skynet of the peers is the channel form (Go) or futures (Boost): compare both with it.
        if (name == "skynet" && kv["form"] == "chan") name = "skynet_chan"
        record(name)
        if (name == "skynet" && impl != "weft") record("skynet_chan")
    }
    function record(name,   g, k) {
        g = name SUBSEP kv["workers"]
        if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
        m["ns_per_op"] = 1; m["total_ms"] = 1; m["kib_per_task"] = 1
        for (k in m) if (k in kv) val[g, impl, k] = kv[k]
    }
    function cell(x) { return x == "" ? "-" : x }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    END {
        if (!ng) { print "# no RESULT lines"; exit }
        printf "%-15s %2s %-13s %11s %11s %11s %8s %8s %11s\n", "bench", "w", "metric", "weft", "go", "boostfiber", "weft/go", "weft/bf", "thread"
        for (j = 1; j <= ng; j++) {
            g = order[j]; split(g, gb, SUBSEP)
            nm = 1; metric[1] = "ns_per_op"
            if (gb[1] ~ /^skynet/) metric[++nm] = "total_ms"
            if (gb[1] == "park_memory") metric[++nm] = "kib_per_task"
            for (q = 1; q <= nm; q++) {
                k = metric[q]
                w = val[g, "weft", k]; go = val[g, "go", k]; bf = val[g, "boostfiber", k]; th = val[g, "thread", k]
                printf "%-15s %2s %-13s %11s %11s %11s %8s %8s %11s\n", gb[1], gb[2], k, cell(w), cell(go), cell(bf), ratio(w, go), ratio(w, bf), cell(th)
            }
        }
    }' "$1"
}

# The servers, per (bench, workers, connections): requests per second of weft, go and epoll
# (the baseline: echo only), and weft / peer: here > 1 means weft is faster (more requests).
# p99 latencies follow (echo: the client's p99_us; http: wrk's 99th percentile).
server_table() {
    awk '
    /^RESULT / {
        delete kv
        for (i = 2; i <= NF; i++) { p = index($i, "="); if (p) kv[substr($i, 1, p - 1)] = substr($i, p + 1) }
        name = kv["name"]; impl = kv["impl"]
        if (name != "echo" && name != "http") next
        g = name SUBSEP kv["workers"] SUBSEP kv["n"]
        if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
        rps[g, impl] = kv["rps"]
        p99[g, impl] = name == "http" ? kv["p99"] : kv["p99_us"] == "" ? "" : kv["p99_us"] "us"
    }
    function cell(x) { return x == "" ? "-" : x }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    END {
        if (!ng) exit
        printf "%-6s %2s %6s %9s %9s %9s %8s %10s   %-11s %-11s %s\n", "bench", "w", "conns", "weft_rps", "go_rps", "epoll_rps",
            "weft/go", "weft/epoll", "weft_p99", "go_p99", "epoll_p99"
        for (j = 1; j <= ng; j++) {
            g = order[j]; split(g, gb, SUBSEP)
            w = rps[g, "weft"]; go = rps[g, "go"]; ep = rps[g, "epoll"]
            printf "%-6s %2s %6s %9s %9s %9s %8s %10s   %-11s %-11s %s\n", gb[1], gb[2], gb[3], cell(w), cell(go), cell(ep),
                ratio(w, go), ratio(w, ep), cell(p99[g, "weft"]), cell(p99[g, "go"]), cell(p99[g, "epoll"])
        }
    }' "$1"
}

# scripts/bench.sh --table FILE: only print the ratio tables of an earlier results file.
if [ "${1:-}" = --table ]; then
    ratio_table "${2:?usage: bench.sh --table <results file>}"
    echo
    server_table "$2"
    exit
fi

# --- build ------------------------------------------------------------------------------
if [ -f scripts/setup.sh ] && [ -z "${NO_SETUP:-}" ]; then
    bash scripts/setup.sh || echo "# bench.sh: scripts/setup.sh failed; trying to build anyway" >&2
fi

# buildtype of an existing build directory (empty when unknown)
buildtype_of() {
    python3 - "$1/meson-info/intro-buildoptions.json" 2>/dev/null <<'EOF' || true
import json, sys
print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"))
EOF
}

if [ -f "$BUILD_DIR/build.ninja" ]; then
    bt=$(buildtype_of "$BUILD_DIR")
    if [ "$bt" != release ]; then
        echo "# bench.sh: $BUILD_DIR is buildtype '${bt:-?}'; reconfiguring it as release" >&2
        meson configure "$BUILD_DIR" -Dbuildtype=release -Db_ndebug=if-release
    fi
else
    meson setup "$BUILD_DIR" --buildtype=release
fi
ninja -C "$BUILD_DIR"

BENCH_BIN=$(cd "$BUILD_DIR/benchmarks" && pwd)
for b in spawn_join yield_pingpong skynet park_memory timer_churn sleep_lateness mutex_uncontended mutex_contention \
    condvar_pingpong chan_pingpong chan_mpmc select skynet_chan weft_echo_server weft_http_server; do
    [ -x "$BENCH_BIN/$b" ] || { echo "bench.sh: $BENCH_BIN/$b was not built (benchmarks disabled?)" >&2; exit 1; }
done

RES_DIR=$(mkdir -p "$BUILD_DIR/bench-results" && cd "$BUILD_DIR/bench-results" && pwd)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RES_DIR/$STAMP.txt
RATIOS=$RES_DIR/$STAMP.ratios.txt

# --- run --------------------------------------------------------------------------------
# Median of the RESULT lines on stdin by ns_per_op, with the spread (as the peers' run.sh).
median() {
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^ns_per_op=/) { split($i, a, "="); print a[2], $0 } }' |
        sort -g | awk -v reps="$1" '{ v[NR] = $1; $1 = ""; l[NR] = substr($0, 2) }
            END { if (NR) printf "%s reps=%d ns_min=%s ns_max=%s\n", l[int((NR + 1) / 2)], NR, v[1], v[NR] }'
}

# run_median BIN N W: REPS runs of one program, the median line (or a FAILED line).
run_median() {
    local out="" r line
    for ((r = 0; r < REPS; r++)); do
        line=$(timeout 600 "$1" "$2" "$3" </dev/null | grep '^RESULT') || { echo "# FAILED: $*"; return; }
        out+="$line"$'\n'
    done
    printf %s "$out" | median "$REPS"
}

# select: weft's program, and the Go one of benchmarks/peers/go/select (the peers have
# none), built into $1 when go is installed and "go" is in FIBER_IMPLS.
run_select() {
    local w n=$((10000000 / SCALE)) go_bin=""
    if echo "$FIBER_IMPLS" | grep -qw go && command -v go >/dev/null; then
        [ -n "$(go env GOCACHE 2>/dev/null)" ] || export GOCACHE="$1/gocache"
        if (cd benchmarks/peers/go/select && GOFLAGS=-mod=mod go build -trimpath -o "$1/go_select" .) >&2; then
            go_bin=$1/go_select
        else
            echo "# BUILD FAILED: benchmarks/peers/go/select"
        fi
    fi
    for w in 1 2; do
        if echo "select weft $w" | grep -Eq "$ONLY"; then run_median "$BENCH_BIN/select" "$n" "$w"; fi
        if [ -n "$go_bin" ] && echo "select go $w" | grep -Eq "$ONLY"; then run_median "$go_bin" "$n" "$w"; fi
    done
}

# skynet, channel form (skynet_chan.cpp prints name=skynet form=chan): the peers' case
# table finds only weft's join form, so it runs here; the table puts it beside the peers'.
run_skynet_chan() {
    local w
    for w in 1 2; do
        if echo "skynet weft $w" | grep -Eq "$ONLY"; then run_median "$BENCH_BIN/skynet_chan" $((1000000 / SCALE)) "$w"; fi
    done
}

# weft alone: the same sizes as the peers' case table.
run_weft_alone() {
    echo "# $(date -u +%FT%TZ) nproc=$(nproc) kernel=$(uname -r) weft alone (no peers at $PEERS_DIR)"
    local bench n w r line out
    while read -r bench n w; do
        echo "$bench weft $w" | grep -Eq "$ONLY" || continue
        [ "$SCALE" = 1 ] || n=$((n / SCALE))
        out=""
        for ((r = 0; r < REPS; r++)); do
            line=$(timeout 600 "$BENCH_BIN/$bench" "$n" "$w" </dev/null | grep '^RESULT') ||
                { echo "# FAILED: $BENCH_BIN/$bench $n $w"; out=""; break; }
            out+="$line"$'\n'
        done
        [ -z "$out" ] || printf %s "$out" | median "$REPS"
    done <<'EOF'
spawn_join     1000000  1
spawn_join     1000000  2
yield_pingpong 10000000 1
skynet         1000000  1
skynet         1000000  2
park_memory    100000   1
park_memory    100000   2
timer_churn    1000000  1
sleep_lateness 10000    2
mutex_uncontended 100000000 1
mutex_contention 10000000 1
mutex_contention 10000000 2
condvar_pingpong 1000000 1
condvar_pingpong 1000000 2
chan_pingpong  1000000  1
chan_pingpong  1000000  2
chan_mpmc      10000000 2
chan_mpmc      10000000 1
EOF
    mkdir -p "$BUILD_DIR/peers"
    run_select "$(cd "$BUILD_DIR/peers" && pwd)"
    run_skynet_chan
    if echo "echo weft 2" | grep -Eq "$ONLY" || echo "http weft 2" | grep -Eq "$ONLY"; then
        echo "# echo, http: skipped (they need the peers' echo_client and wrk; examples/echo_client drives echo_server alone)"
    fi
}

# Host steal (time the hypervisor gave another guest) over the whole run: on a
# shared host, a run with more than a few percent is not comparable with others.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
read -r TICKS0 STEAL0 < <(cpu_ticks)

if [ -f "$PEERS_DIR/run.sh" ]; then
    PEERS_BUILD=${PEERS_BUILD:-$BUILD_DIR/peers}
    PEERS_BUILD=$(mkdir -p "$PEERS_BUILD" && cd "$PEERS_BUILD" && pwd)  # run.sh cds into its own dir
    echo "# peers: $PEERS_DIR (built in $PEERS_BUILD); weft: $BENCH_BIN"
    # run.sh runs the echo and http servers after the task suite (ECHO_*/HTTP_* pass through).
    IMPL_DIRS="weft=$BENCH_BIN${IMPL_DIRS:+ $IMPL_DIRS}" FIBER_IMPLS="$FIBER_IMPLS" ONLY="$ONLY" REPS="$REPS" \
        SCALE="$SCALE" PEERS_BUILD="$PEERS_BUILD" ECHO_SERVERS="$ECHO_SERVERS" ECHO_CONNS="$ECHO_CONNS" \
        HTTP_SERVERS="$HTTP_SERVERS" HTTP_CONNS="$HTTP_CONNS" bash "$PEERS_DIR/run.sh" | tee "$OUT"
    # The peers' table has mutex_uncontended for `thread` only (the std::mutex floor, in a
    # single-threaded process, where glibc drops the lock prefix); weft's row runs here. Its
    # std_ns= is std::mutex in weft's multi-threaded process: the like-for-like floor.
    if echo "mutex_uncontended weft 1" | grep -Eq "$ONLY"; then
        out=""
        for ((r = 0; r < REPS; r++)); do
            out+="$(timeout 600 "$BENCH_BIN/mutex_uncontended" $((100000000 / SCALE)) 1 </dev/null | grep '^RESULT')"$'\n'
        done
        printf %s "$out" | median "$REPS" | tee -a "$OUT"
    fi
    run_select "$PEERS_BUILD" | tee -a "$OUT"
    run_skynet_chan | tee -a "$OUT"
    have_peers=1
else
    run_weft_alone | tee "$OUT"
    have_peers=0
fi
ln -sf "$(basename "$OUT")" "$RES_DIR/latest.txt"

echo
if [ "$have_peers" = 1 ]; then
    : >"$RATIOS"
    if awk '/^RESULT / && !/^RESULT name=(echo|http) / { f = 1 } END { exit !f }' "$OUT"; then
        echo "# weft vs peers (medians; ratio = weft / peer, < 1 means weft is faster or smaller)"
        ratio_table "$OUT" | tee "$RATIOS"
    fi
    if grep -Eq '^RESULT name=(echo|http) ' "$OUT"; then
        echo
        echo "# servers (medians; rps ratio = weft / peer, > 1 means weft serves more requests per second)"
        server_table "$OUT" | tee -a "$RATIOS"
    fi
fi
read -r TICKS1 STEAL1 < <(cpu_ticks)
awk -v t=$((TICKS1 - TICKS0)) -v s=$((STEAL1 - STEAL0)) \
    'BEGIN { printf "# host steal during the run: %.1f%% of CPU time%s\n", t ? 100 * s / t : 0, (t && s / t > 0.02) ? " (noisy host: figures not comparable)" : "" }' |
    tee -a "$OUT"
nfail=$(grep -c '^# FAILED' "$OUT" || true)
echo "# results: $OUT"
if [ "$nfail" != 0 ]; then
    echo "# $nfail case(s) FAILED:"
    grep '^# FAILED' "$OUT"
    exit 1
fi
