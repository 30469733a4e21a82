#!/usr/bin/env bash
# Builds weft (release) and runs the demo: skynet with 1M leaves (join form), 100k fibers
# spawned and joined, and the runtime's counters (examples/demo.cpp); then hello, the
# std::thread -> weft::thread rename (examples/hello.cpp); then the network: it starts
# examples/echo_server (a fiber per connection) and drives it with examples/echo_client
# (10,000 connections, a fiber each, for 10 s), prints the client's result, and stops the
# server with SIGTERM (a clean runtime shutdown). Ends with "demo: OK"; any failure, a
# client error or zero requests exits non-zero.
#
#   scripts/demo.sh                   # build/ (release), default worker count
#   WEFT_WORKERS=2 scripts/demo.sh    # any runtime environment variable applies
#   ECHO_CONNS=1000 ECHO_SECS=3 scripts/demo.sh   # a smaller echo run
#   BUILD_DIR=build-rel NO_SETUP=1 scripts/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
ECHO_CONNS=${ECHO_CONNS:-10000}
ECHO_SECS=${ECHO_SECS:-10}

if [ -f scripts/setup.sh ] && [ -z "${NO_SETUP:-}" ]; then
    bash scripts/setup.sh || echo "# demo.sh: scripts/setup.sh failed; trying to build anyway" >&2
fi

buildtype_of() {
    python3 - "$1/meson-info/intro-buildoptions.json" 2>/dev/null <<'PY' || true
import json, sys
print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"))
PY
}

if [ -f "$BUILD_DIR/build.ninja" ]; then
    bt=$(buildtype_of "$BUILD_DIR")
    if [ "$bt" != release ]; then
        echo "# demo.sh: $BUILD_DIR is buildtype '${bt:-?}'; reconfiguring it as release" >&2
        meson configure "$BUILD_DIR" -Dbuildtype=release -Db_ndebug=if-release
    fi
else
    meson setup "$BUILD_DIR" --buildtype=release
fi
ninja -C "$BUILD_DIR"

for p in demo hello echo_server echo_client; do
    [ -x "$BUILD_DIR/examples/$p" ] || { echo "demo.sh: $BUILD_DIR/examples/$p was not built (examples disabled?)" >&2; exit 1; }
done

echo
echo "== examples/demo"
rc=0
timeout 300 "$BUILD_DIR/examples/demo" || rc=$?
if [ "$rc" != 0 ]; then
    [ "$rc" != 124 ] || echo "demo.sh: examples/demo timed out after 300 s"
    echo "demo: FAILED (examples/demo exited with status $rc)"
    exit 1
fi
echo
echo "== examples/hello (std::thread -> weft::thread)"
rc=0
timeout 60 "$BUILD_DIR/examples/hello" || rc=$?
if [ "$rc" != 0 ]; then
    echo "demo: FAILED (examples/hello exited with status $rc)"
    exit 1
fi

echo
echo "== examples/echo_server + examples/echo_client ($ECHO_CONNS connections, ${ECHO_SECS} s)"
# One descriptor per connection in each process (client and server run separately), plus a
# margin; both programs also raise their soft limit to the hard one themselves.
need=$((ECHO_CONNS + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
        ulimit -Hn "$need" 2>/dev/null || {
            echo "demo: FAILED ($ECHO_CONNS connections need ulimit -n >= $need; the hard limit is $(ulimit -Hn): run as root or raise it)"
            exit 1
        }
    fi
    ulimit -n "$need"
fi
tmp=$(mktemp -d)
spid=""
cleanup() {
    if [ -n "$spid" ]; then kill -KILL "$spid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
# Port 0: the kernel picks a free port; the server prints where it listens.
"$BUILD_DIR/examples/echo_server" 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
spid=$!
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/^echo_server: listening on \([^ ]*\) .*/\1/p' "$tmp/server.log")
    [ -n "$addr" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "demo: FAILED (echo_server did not start)"
    cat "$tmp/server.log"
    exit 1
fi
sed -n 1p "$tmp/server.log"
rc=0
timeout $((ECHO_SECS + 120)) "$BUILD_DIR/examples/echo_client" "$addr" "$ECHO_CONNS" "$ECHO_SECS" | tee "$tmp/client.log" || rc=$?
result=$(grep '^echo_client: requests/s=' "$tmp/client.log" || true)
requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$result")
errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$result")
kill -TERM "$spid" 2>/dev/null || true
src=0
for _ in $(seq 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$spid" 2>/dev/null; then
    echo "demo: FAILED (echo_server did not shut down within 10 s of SIGTERM)"
    tail -5 "$tmp/server.log"
    exit 1
fi
wait "$spid" || src=$?
spid=""
if [ "$src" != 0 ]; then
    echo "demo: FAILED (echo_server exited with status $src)"
    tail -20 "$tmp/server.log"
    exit 1
fi
if [ "$rc" != 0 ] || [ -z "$result" ] || [ "${requests:-0}" = 0 ] || [ "${errors:-1}" != 0 ]; then
    [ "$rc" != 124 ] || echo "demo.sh: echo_client timed out"
    echo "demo: FAILED (echo_client exited with status $rc, requests=${requests:-?}, errors=${errors:-?})"
    grep -v '^echo_server: listening' "$tmp/server.log" | tail -20 || true
    exit 1
fi
echo
echo "demo: OK"
