#!/usr/bin/env bash
# Builds weft and runs every test suite (api, death, stress, unit).
#
#   scripts/test.sh            release build in build/
#   scripts/test.sh --asan     ASan+UBSan build in build-asan/
#   scripts/test.sh --tsan     TSan build with -Dchaos=true in build-tsan/
#   scripts/test.sh --all      all three, one after the other
#
# WEFT_TEST_VARIANTS="default asan tsan" does the same as the flags.
# WEFT_BUILD_DIR=path changes the build directory prefix (default: build,
# so build/, build-asan/, build-tsan/).
# Arguments after `--` go to `meson test` (e.g. -- --suite api).
# The last line printed is "N passed, M failed" (meson test executables,
# summed over the variants; not after --help or a bad argument, which print
# the usage); the exit status is non-zero if anything failed, including a
# failed configure or build.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

variants=()
meson_test_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --asan) variants+=(asan) ;;
        --tsan) variants+=(tsan) ;;
        --default|--release) variants+=(default) ;;
        --all) variants+=(default asan tsan) ;;
        -h|--help) usage; exit 0 ;;
        --) shift; meson_test_args=("$@"); break ;;
        *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ ${#variants[@]} -eq 0 ]; then
    read -r -a variants <<< "${WEFT_TEST_VARIANTS:-default}"
fi

prefix="${WEFT_BUILD_DIR:-build}"
passed=0
failed=0

summary() {
    echo "$passed passed, $failed failed"
}

if ! "$repo/scripts/setup.sh"; then
    failed=$((failed + 1))
    summary
    exit 1
fi

# configure <builddir> <meson options...>: fresh setup, or reconfigure in place.
configure() {
    local dir="$1"
    shift
    # A directory a failed setup left behind (no coredata.dat) is no build tree:
    # meson refuses --wipe there, and a plain setup uses it.
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# count <meson test log>: prints the "Ok:" and "Fail:" (and "Timeout:",
# "Unexpected Pass:") counts of meson's summary as "ok bad".
count() {
    local log="$1" ok bad
    ok=$(awk '/^Ok:/ {print $2}' "$log" | tail -n 1)
    bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$log")
    echo "${ok:-0} ${bad:-0}"
}

run_variant() {
    local name="$1" dir mult=1
    local opts=()
    case "$name" in
        default) dir="$prefix"; opts=(--buildtype=release) ;;
        asan) dir="$prefix-asan"; mult=3
              opts=(--buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false) ;;
        tsan) dir="$prefix-tsan"; mult=4
              opts=(--buildtype=debugoptimized -Db_sanitize=thread -Dchaos=true) ;;
        *) echo "test.sh: unknown variant '$name'" >&2; failed=$((failed + 1)); return ;;
    esac
    echo "=== weft tests: $name ($dir)"

    if ! configure "$dir" "${opts[@]}" -Dtests=enabled; then
        echo "test.sh: $name: meson setup failed" >&2
        failed=$((failed + 1))
        return
    fi
    if ! ninja -C "$dir"; then
        echo "test.sh: $name: build failed" >&2
        failed=$((failed + 1))
        return
    fi

    local log="$dir/meson-logs/test-sh-summary.txt" rc=0
    # Sanitizer options and suppressions come from test/meson.build.
    meson test -C "$dir" --print-errorlogs --timeout-multiplier "$mult" \
        ${meson_test_args[@]+"${meson_test_args[@]}"} 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}

    local ok bad
    read -r ok bad < <(count "$log")
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1  # meson itself failed (no summary, or an error outside the tests)
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
}

for v in "${variants[@]}"; do
    run_variant "$v"
done

summary
[ "$failed" -eq 0 ]
