#!/usr/bin/env bash
# Runs the whole test suite: unit, plugin and integration tests, built with gcc, then the same
# suite built with clang under AddressSanitizer and UndefinedBehaviorSanitizer, then the style
# check.  Installs what it needs on Debian 12, starts journald when none runs, and ends with
# one line: "N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")" && pwd)
. "$top/scripts/deps.sh"
nh_install_deps || exit 1

passed=0
failed=0

# The integration tests write to a real journald and read it back.
start_journald() {
        if [ -S /run/systemd/journal/socket ] && pgrep -x systemd-journal >/dev/null 2>&1; then
                return 0
        fi
        if [ "$(id -u)" -ne 0 ]; then
                echo "warning: no journald and not root: the journal tests will fail" >&2
                return 0
        fi
        echo "Starting systemd-journald (none is running)" >&2
        mkdir -p /run/systemd/journal
        # Sockets left by a journald that died would make the wait below pass too early.
        rm -f /run/systemd/journal/socket /run/systemd/journal/stdout /run/systemd/journal/dev-log
        setsid /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
        for _ in $(seq 100); do
                [ -S /run/systemd/journal/socket ] && echo ready | systemd-cat -t nodehealthd-test 2>/dev/null &&
                        return 0
                sleep 0.1
        done

        echo "error: systemd-journald did not start" >&2
        return 1
}

# Adds the counts of one build's test-suite.log to the totals.
count() {
        local log=$1 p f e
        p=$(sed -n 's/^# PASS: *//p' "$log")
        f=$(sed -n 's/^# FAIL: *//p' "$log")
        e=$(sed -n 's/^# ERROR: *//p' "$log")
        x=$(sed -n 's/^# XPASS: *//p' "$log")
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0} + ${e:-0} + ${x:-0}))
}

suite() {
        local name=$1 dir=$2
        shift 2
        echo "== $name: build" >&2
        if ! nh_build "$dir" "$@"; then
                echo "== $name: build FAILED" >&2
                failed=$((failed + 1))
                return
        fi
        echo "== $name: tests" >&2
        make -C "$dir" -j"$(nproc)" check >"$dir/check.out" 2>&1
        if [ ! -f "$dir/test-suite.log" ]; then
                cat "$dir/check.out" >&2
                failed=$((failed + 1))
                return
        fi
        grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP):' "$dir/check.out" | grep -v '^PASS' >&2 || true
        sed -n '/^# TOTAL/,/^# ERROR/p' "$dir/test-suite.log" | sed "s/^/   /" >&2
        if grep -qE '^# (FAIL|ERROR): *[1-9]' "$dir/test-suite.log"; then
                cat "$dir/test-suite.log" >&2
        fi
        count "$dir/test-suite.log"
}

start_journald || failed=$((failed + 1))

suite "gcc" "$top/build/test" --enable-werror CC=gcc
suite "clang + ASan + UBSan" "$top/build/asan" --enable-werror --enable-sanitizers CC=clang

# The committed .clang-format is the style; a file that drifts from it is a failure.
echo "== style: clang-format" >&2
mapfile -t sources < <(cd "$top" && git ls-files '*.c' '*.h' 2>/dev/null || find core include plugins tests bench -name '*.[ch]')
style_bad=0
for f in "${sources[@]}"; do
        if ! clang-format --dry-run --Werror "$top/$f" >/dev/null 2>&1; then
                echo "   not formatted: $f (run clang-format -i $f)" >&2
                style_bad=1
        fi
done
if ((style_bad)); then failed=$((failed + 1)); else passed=$((passed + 1)); fi

echo "$passed passed, $failed failed"
((failed == 0))
