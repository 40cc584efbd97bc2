#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh BUILDDIR SRCDIR — what `make bench` runs.  Prints figures, one per line
# ("name value"; lines starting with # are context), and judges none of them:
#   1. bench/bench-cycle: CPU of one full probe cycle, in-process (see bench/README.md);
#   2. the real daemon with the shipped configuration: RSS after start, RSS and peak RSS
#      after a soak of BENCH_SOAK_SECONDS (default 60), and its CPU time over the soak;
#   3. bench/bench-kernel-log: the kernel_log probe and the shipped rules over a journal of
#      BENCH_KLOG_ENTRIES (default one million) kernel entries; then bench/bench-kmsg-latency:
#      the real daemon, and the time from a /dev/kmsg write to its journal record (median and
#      99th percentile over BENCH_KLOG_SAMPLES, default 200), with the probe reading /dev/kmsg
#      (the shipped default) and reading the journal (as in a DaemonSet); needs root and a
#      running journald.  BENCH_KLOG=0 skips part 3;
#   4. the Kubernetes sink against the fake API server (tests/fake-apiserver/, python3):
#      API requests per node-hour in steady state and under a probe flapping every second,
#      and the spread of the first requests of BENCH_KUBE_DAEMONS (default 100) daemons
#      started at the same moment.  BENCH_KUBE=0 skips it; BENCH_KUBE_SECONDS (default 120)
#      is each measuring window.
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
kube_pids=() # the fake API server, the flapper, the daemons of part 3
cleanup() {
        # Only the processes this script started, by their PIDs.
        if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -KILL "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        local pid
        for pid in "${kube_pids[@]}"; do
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        done
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
# RSS counts the shared libraries' pages too (libcurl and its TLS stack are most of them):
# RssAnon is what this daemon alone costs the node.
anon=$(status_kib RssAnon) && echo "rss_anon_kib_after_${soak}s $anon"
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

# ---- 3. the kernel_log probe over a journal of BENCH_KLOG_ENTRIES kernel entries ----
if [[ ${BENCH_KLOG:-1} != 0 ]]; then
        "$builddir/bench/bench-kernel-log" --entries "${BENCH_KLOG_ENTRIES:-1000000}" ||
                die "bench-kernel-log failed (exit $?)"
        for source in kmsg journal; do
                "$builddir/bench/bench-kmsg-latency" --daemon "$daemon" --plugin-dir "$plugin_dir" --config "$config" \
                        --rules "$srcdir/conf/npd/kernel-monitor.json" --source "$source" \
                        --samples "${BENCH_KLOG_SAMPLES:-200}" || die "bench-kmsg-latency --source $source failed (exit $?)"
        done
fi

# ---- 4. the Kubernetes sink against the fake API server ----
if [[ ${BENCH_KUBE:-1} == 0 ]]; then
        echo "# BENCH_KUBE=0: the Kubernetes figures are skipped"
        exit 0
fi
kube_window=${BENCH_KUBE_SECONDS:-120}
n_daemons=${BENCH_KUBE_DAEMONS:-100}
[[ $kube_window =~ ^[0-9]+$ && $kube_window -gt 0 ]] ||
        die "BENCH_KUBE_SECONDS must be a positive integer, not '$kube_window'"
[[ $n_daemons =~ ^[0-9]+$ && $n_daemons -gt 0 ]] || die "BENCH_KUBE_DAEMONS must be a positive integer"
python=/usr/bin/python3
[[ -x $python ]] || die "the fake API server needs $python"
testprobe_dir=$builddir/tests/plugins/.libs
if [[ ! -e $testprobe_dir/testprobe.so ]]; then
        make -C "$builddir" tests/plugins/testprobe.la >/dev/null 2>&1 || true
fi
[[ -e $testprobe_dir/testprobe.so ]] || die "no $testprobe_dir/testprobe.so (make check builds it)"

fake=$tmp/fake
mkdir -p "$fake" "$tmp/kube"
nodes=(--node steady --node flap)
for ((i = 0; i < n_daemons; i++)); do
        nodes+=(--node "start-$i")
done
# No simulated kubelet: every request the fake records is one of ours.
"$python" "$srcdir/tests/fake-apiserver/fake-apiserver.py" --dir "$fake" --kubelet-tick 0 --quiet "${nodes[@]}" \
        >"$tmp/fake.out" 2>"$tmp/fake.err" </dev/null &
kube_pids+=($!)
deadline=$((SECONDS + 60))
until [[ -e $fake/ready ]]; do
        ((SECONDS < deadline)) || die "the fake API server did not start: $(cat "$tmp/fake.err")"
        sleep 0.1
done
cport=$(cat "$fake/control-port")

# Figures from the fake's request log: kstat MODE ARGS (a small python helper).
cat >"$tmp/kstat.py" <<'PY'
import json, sys, urllib.request
cport, mode = sys.argv[1], sys.argv[2]
reqs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{cport}/control/requests"))
def node_of(r):
    p = r["path"]
    if p.startswith("/api/v1/nodes/"):
        return p.split("/")[4]
    body = r.get("body") or {}
    obj = body.get("involvedObject") if isinstance(body, dict) else None
    if obj:
        return obj.get("name")
    if "/events/" in p:   # an Event's PATCH: its name starts with the node's
        return p.split("/events/")[1].rsplit(".", 1)[0]
    return None
if mode == "last":                       # the newest request id
    print(reqs[-1]["id"] if reqs else 0)
elif mode == "patched":                  # how many of the given nodes have had a successful PATCH
    want = set(sys.argv[3:])
    print(len({node_of(r) for r in reqs if r["method"] == "PATCH" and r.get("code") == 200} & want))
elif mode == "count":                    # count NODE SINCE: status PATCHes, GETs, event requests
    node, since = sys.argv[3], float(sys.argv[4])
    mine = [r for r in reqs if r["id"] > since and node_of(r) == node]
    status = sum(1 for r in mine if r["path"].endswith("/status"))
    gets = sum(1 for r in mine if r["method"] == "GET")
    events = sum(1 for r in mine if "/events" in r["path"])
    print(len(mine), status, gets, events)
elif mode == "spread":                   # spread T0 NODES...: first GET and first PATCH per node
    t0, names = float(sys.argv[3]), sys.argv[4:]
    first = {"GET": {}, "PATCH": {}}
    for r in reqs:
        n = node_of(r)
        if n in names and r["method"] in first and n not in first[r["method"]]:
            first[r["method"]][n] = r["time"] - t0
    def q(v, f):
        return v[min(len(v) - 1, int(f * len(v)))]
    for m in ("GET", "PATCH"):
        v = sorted(first[m].values())
        if not v:
            continue
        name = m.lower()
        print(f"kube_start_first_{name}_count {len(v)}")
        print(f"kube_start_first_{name}_s_min {v[0]:.3f}")
        print(f"kube_start_first_{name}_s_p50 {q(v, 0.5):.3f}")
        print(f"kube_start_first_{name}_s_p90 {q(v, 0.9):.3f}")
        print(f"kube_start_first_{name}_s_max {v[-1]:.3f}")
        print(f"kube_start_first_{name}_spread_s {v[-1] - v[0]:.3f}")
        # The busiest second: what the API server sees at worst.
        per_second = {}
        for t in v:
            per_second[int(t)] = per_second.get(int(t), 0) + 1
        print(f"kube_start_first_{name}_max_per_second {max(per_second.values())}")
PY
kstat() {
        "$python" "$tmp/kstat.py" "$cport" "$@"
}

# A configuration for NODE: the test probe reading STATE every INTERVAL, the given heartbeat.
# No HTTP endpoint: its default port is one per machine, and these daemons are many.
kube_conf() { # DIR INTERVAL HEARTBEAT
        mkdir -p "$1/root/testprobe"
        printf '{"plugin_dirs": [], "journal": {"enabled": false}, "http": {"listen": ""},\n' >"$1/conf.json"
        printf ' "kubernetes": {"heartbeat": "%s"},\n' "$3" >>"$1/conf.json"
        printf ' "probes": {"t": {"plugin": "testprobe", "interval": "%s", "raise_after": 1, "clear_after": 1}}}\n' \
                "$2" >>"$1/conf.json"
        echo "TestProblem False TestOK fine" >"$1/root/testprobe/state"
}
kube_daemon() { # DIR NODE: starts a daemon in the background; its PID in $!
        "$daemon" --config "$1/conf.json" --plugin-dir "$testprobe_dir" --root-path "$1/root" --node-name "$2" \
                --kubeconfig "$fake/kubeconfig" >"$1/stdout" 2>"$1/stderr" </dev/null &
}
wait_patched() { # NODE...: until each has had a successful PATCH (60 s at most)
        local deadline=$((SECONDS + 60))
        until [[ $(kstat patched "$@") -ge $# ]]; do
                ((SECONDS < deadline)) || die "no PATCH from $# daemon(s) within 60 s"
                sleep 0.5
        done
}
stop_pid() { # PID: SIGTERM, then wait
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
}
per_hour() { # COUNT SECONDS
        awk -v c="$1" -v t="$2" 'BEGIN { printf "%.1f\n", c * 3600 / t }'
}

echo "# kubernetes: fake API server $fake (no kubelet tick), windows of ${kube_window}s"

# 3a. Steady state: nothing changes, only heartbeats.  The shortest heartbeat the
# configuration allows (10s) makes a window of minutes meaningful; the default 5m is scaled.
kube_conf "$tmp/kube/steady" 10s 10s
kube_daemon "$tmp/kube/steady" steady
steady_pid=$!
kube_pids+=("$steady_pid")
wait_patched steady
since=$(kstat last)
sleep "$kube_window"
read -r total status gets events < <(kstat count steady "$since")
daemon_pid=$steady_pid # for status_kib
steady_rss=$(status_kib VmRSS) || steady_rss=
steady_hwm=$(status_kib VmHWM) || steady_hwm=
steady_anon=$(status_kib RssAnon) || steady_anon=
daemon_pid=
stop_pid "$steady_pid"
echo "kube_steady_requests_per_node_hour{heartbeat=\"10s\"} $(per_hour "$total" "$kube_window")"
echo "kube_steady_gets_per_node_hour{heartbeat=\"10s\"} $(per_hour "$gets" "$kube_window")"
# RSS of a daemon with the Kubernetes sink (one test probe): libcurl, OpenSSL, the connection.
[[ -n $steady_rss ]] && echo "kube_daemon_rss_kib $steady_rss"
[[ -n $steady_hwm ]] && echo "kube_daemon_hwm_kib $steady_hwm"
# The private part (heap, stacks): the rest is the shared libraries' pages.
[[ -n $steady_anon ]] && echo "kube_daemon_rss_anon_kib $steady_anon"
# The same daemon with the shipped 5m heartbeat writes 10/300 as often.
echo "kube_steady_requests_per_node_hour{heartbeat=\"5m\"} $(awk -v c="$total" -v t="$kube_window" \
        'BEGIN { printf "%.1f\n", c * 3600 / t * 10 / 300 }')"

# 3b. A probe flapping every second (the state file flips True/False each second, the probe
# reads it every 500 ms, no hysteresis): coalescing, the status write limit and the Event
# rate limit.  The first 40 s spend the bursts; the window after them is the steady cost.
kube_conf "$tmp/kube/flap" 500ms 5m
kube_daemon "$tmp/kube/flap" flap
flap_pid=$!
kube_pids+=("$flap_pid")
(
        while :; do
                echo "TestProblem True TestFlap flapping" >"$tmp/kube/flap/root/testprobe/state.new"
                mv "$tmp/kube/flap/root/testprobe/state.new" "$tmp/kube/flap/root/testprobe/state"
                sleep 1
                echo "TestProblem False TestOK fine" >"$tmp/kube/flap/root/testprobe/state.new"
                mv "$tmp/kube/flap/root/testprobe/state.new" "$tmp/kube/flap/root/testprobe/state"
                sleep 1
        done
) &
flapper_pid=$!
kube_pids+=("$flapper_pid")
wait_patched flap
start_id=$(kstat last)
sleep 40
since=$(kstat last)
read -r b_total b_status b_gets b_events < <(kstat count flap "$start_id")
sleep "$kube_window"
read -r total status gets events < <(kstat count flap "$since")
stop_pid "$flapper_pid"
stop_pid "$flap_pid"
transitions=$(grep -c -- ' -> ' "$tmp/kube/flap/stdout" || true)
echo "# flapping: $transitions transitions printed on stdout; first 40 s: $b_status status PATCHes, $b_events Event requests"
echo "kube_flapping_status_patches_per_node_hour $(per_hour "$status" "$kube_window")"
echo "kube_flapping_event_requests_per_node_hour $(per_hour "$events" "$kube_window")"
echo "kube_flapping_requests_per_node_hour $(per_hour "$total" "$kube_window")"
echo "kube_flapping_burst_requests_first_40s $b_total"

# 3c. N daemons started at the same moment, as a cluster's nodes after a power cut: when do
# their first GET and first PATCH reach the server (the shipped 5m heartbeat: spread over
# up to 30 s)?
names=()
for ((i = 0; i < n_daemons; i++)); do
        kube_conf "$tmp/kube/start-$i" 10s 5m
done
launch0=$(date +%s.%N)
for ((i = 0; i < n_daemons; i++)); do
        kube_daemon "$tmp/kube/start-$i" "start-$i"
        kube_pids+=($!)
        names+=("start-$i")
done
launch1=$(date +%s.%N)
wait_patched "${names[@]}"
echo "kube_start_daemons $n_daemons"
echo "kube_start_launch_ms $(awk -v a="$launch0" -v b="$launch1" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }')"
kstat spread "$launch0" "${names[@]}"
for pid in "${kube_pids[@]}"; do
        stop_pid "$pid"
done
kube_pids=()
