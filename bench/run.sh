#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh BUILDDIR SRCDIR — what `make bench` runs.  Prints figures, one per line
# ("name value"; lines starting with # are context), and judges none of them:
#   1. bench/bench-cycle: CPU of one full probe cycle, in-process (see bench/README.md);
#   2. the real daemon with the shipped configuration: RSS after start, RSS and peak RSS
#      after a soak of BENCH_SOAK_SECONDS (default 60), and its CPU time over the soak.
# Exits non-zero only when something failed to run (a build product is missing, the daemon
# did not start, died, or did not exit 0 on SIGTERM), never because of a figure.
#
# Environment: BENCH_SOAK_SECONDS (default 60), BENCH_CYCLES (bench-cycle --cycles),
# BENCH_START_TIMEOUT (seconds to wait for the start table, default 10).

# `make` may run us with sh; the rest needs bash.
if [ -z "${BASH_VERSION:-}" ]; then
        exec bash "$0" "$@"
fi
set -euo pipefail

die() {
        echo "bench: $*" >&2
        exit 1
}

if [[ $# -ne 2 ]]; then
        echo "usage: $0 BUILDDIR SRCDIR" >&2
        exit 64
fi
builddir=$(cd "$1" && pwd) || die "no build directory $1"
srcdir=$(cd "$2" && pwd) || die "no source directory $2"
soak=${BENCH_SOAK_SECONDS:-60}
start_timeout=${BENCH_START_TIMEOUT:-10}
[[ $soak =~ ^[0-9]+$ && $soak -gt 0 ]] || die "BENCH_SOAK_SECONDS must be a positive integer, not '$soak'"
[[ $start_timeout =~ ^[0-9]+$ && $start_timeout -gt 0 ]] ||
        die "BENCH_START_TIMEOUT must be a positive integer, not '$start_timeout'"
config=$srcdir/conf/nodehealthd.json
plugin_dir=$builddir/plugins/.libs

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nhbench.XXXXXX")
daemon_pid=
cleanup() {
        # Only the daemon this script started, by its PID.
        if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -KILL "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the machine ----
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# nproc $(nproc)"
echo "# kernel $(uname -r) $(uname -m)"
echo "# cpu ${cpu_model:-unknown}"

# ---- 1. one probe cycle, in-process ----
cycle_args=(--plugin-dir "$plugin_dir" --config "$config")
if [[ -n ${BENCH_CYCLES:-} ]]; then
        cycle_args+=(--cycles "$BENCH_CYCLES")
fi
# A libtool wrapper script or the real program: either runs.
"$builddir/bench/bench-cycle" "${cycle_args[@]}" || die "bench-cycle failed (exit $?)"

# ---- 2. the daemon ----
is_elf() {
        local magic
        [[ -f $1 && -x $1 ]] || return 1
        magic=$(head -c 4 "$1")
        [[ $magic == $'\x7fELF' ]]
}

# The real binary, not a libtool wrapper: /proc/PID must be the daemon, not a shell.
daemon=
for candidate in "$builddir/nodehealthd" "$builddir/.libs/nodehealthd" "$builddir/.libs/lt-nodehealthd"; do
        if is_elf "$candidate"; then
                daemon=$candidate
                break
        fi
done
[[ -n $daemon ]] || die "no nodehealthd executable in $builddir or $builddir/.libs: run make first"

# 0 while the process exists and is not a zombie (a zombie still answers kill -0).
daemon_alive() {
        local stat
        stat=$(cat "/proc/$daemon_pid/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [[ ${stat%% *} != Z ]]
}

status_kib() { # FIELD: VmRSS, VmHWM
        awk -v f="$1:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$daemon_pid/status"
}

cpu_ticks() { # utime + stime of the whole process, in clock ticks
        local stat fields
        stat=$(cat "/proc/$daemon_pid/stat")
        # Field 2 (comm) may hold spaces; what follows its last ')' starts at field 3 (state).
        read -r -a fields <<<"${stat##*) }"
        echo $((fields[11] + fields[12]))
}

oncpu_ns() { # time on CPU of every thread, in ns, from schedstat; empty when unavailable
        local total=0 line f
        for f in "/proc/$daemon_pid"/task/*/schedstat; do
                line=$(cat "$f" 2>/dev/null) || return 0
                total=$((total + ${line%% *}))
        done
        echo "$total"
}

wakeups() { # voluntary context switches of every thread: roughly, event-loop wakeups
        awk '$1 == "voluntary_ctxt_switches:" { n += $2 } END { print n + 0 }' "/proc/$daemon_pid"/task/*/status
}

now_ns() {
        date +%s%N
}

echo "# daemon $daemon --config $config --plugin-dir $plugin_dir (soak ${soak}s)"
"$daemon" --config "$config" --plugin-dir "$plugin_dir" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null &
daemon_pid=$!

# The start table (its header line) says every probe ran once and the sinks started.
deadline=$((SECONDS + start_timeout))
until grep -q '^TYPE ' "$tmp/stdout"; do
        if ! daemon_alive; then
                cat "$tmp/stderr" >&2
                die "the daemon exited before printing its start table"
        fi
        if ((SECONDS >= deadline)); then
                cat "$tmp/stderr" >&2
                die "no start table from the daemon within ${start_timeout}s"
        fi
        sleep 0.05
done

# $! is the daemon itself (bash execs a simple command in the forked child): check, or the
# figures would describe some shell.
[[ $(readlink "/proc/$daemon_pid/exe") == "$(readlink -f "$daemon")" ]] ||
        die "PID $daemon_pid is $(readlink "/proc/$daemon_pid/exe"), not $daemon"

rss_start=$(status_kib VmRSS) || die "cannot read /proc/$daemon_pid/status"
ticks0=$(cpu_ticks)
oncpu0=$(oncpu_ns)
wakeups0=$(wakeups)
t0=$(now_ns)
echo "rss_kib_after_start $rss_start"

# The soak itself: nothing to wait for, the daemon just runs its timers.
sleep "$soak"
daemon_alive || die "the daemon died during the soak: $(cat "$tmp/stderr")"

rss_end=$(status_kib VmRSS) || die "cannot read /proc/$daemon_pid/status"
hwm=$(status_kib VmHWM) || die "cannot read /proc/$daemon_pid/status"
ticks1=$(cpu_ticks)
oncpu1=$(oncpu_ns)
wakeups1=$(wakeups)
t1=$(now_ns)
clk_tck=$(getconf CLK_TCK)
elapsed_ns=$((t1 - t0))
echo "rss_kib_after_${soak}s $rss_end"
echo "hwm_kib $hwm"
per_minute() { # AMOUNT over elapsed_ns, scaled to one minute, rounded
        awk -v a="$1" -v t="$elapsed_ns" 'BEGIN { printf "%.0f\n", a * 60e9 / t }'
}
# Clock ticks are 1000/CLK_TCK ms each: a quiet daemon may well show 0 here.
echo "daemon_cpu_ms_per_minute $(per_minute $(((ticks1 - ticks0) * 1000 / clk_tck)))"
# The same time from the scheduler's per-thread ns counters, when the kernel keeps them.
if [[ -n $oncpu0 && -n $oncpu1 ]]; then
        echo "daemon_oncpu_us_per_minute $(per_minute $(((oncpu1 - oncpu0) / 1000)))"
fi
echo "daemon_wakeups_per_minute $(per_minute $((wakeups1 - wakeups0)))"
# What one wakeup (a probe cycle with the loop, timers and sinks around it) costs, cold.
if [[ -n $oncpu0 && -n $oncpu1 && $wakeups1 -gt $wakeups0 ]]; then
        echo "daemon_oncpu_us_per_wakeup $(((oncpu1 - oncpu0) / 1000 / (wakeups1 - wakeups0)))"
fi

# ---- stop ----
kill -TERM "$daemon_pid"
deadline=$((SECONDS + 10))
while daemon_alive; do
        ((SECONDS < deadline)) || die "the daemon did not exit within 10s of SIGTERM"
        sleep 0.05
done
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
awk '{ print "# daemon stderr: " $0 }' "$tmp/stderr"
[[ $rc -eq 0 ]] || die "the daemon exited $rc after SIGTERM, not 0"
echo "# daemon exited 0 after SIGTERM"
