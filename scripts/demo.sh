#!/usr/bin/env bash
# Builds weft (release) and runs the demo: skynet with 1M leaves (join form), 100k fibers
# spawned and joined, and the runtime's counters (examples/demo.cpp); then hello, the
# std::thread -> weft::thread rename (examples/hello.cpp). Ends with "demo: OK".
#
#   scripts/demo.sh                   # build/ (release), default worker count
#   WEFT_WORKERS=2 scripts/demo.sh    # any runtime environment variable applies
#   BUILD_DIR=build-rel NO_SETUP=1 scripts/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}

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

for p in demo hello; do
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
echo "demo: OK"
