#!/bin/bash
# The SDK as a third party uses it: the header and nodehealth-plugin.pc installed (make install,
# DESTDIR), plugins/example/example.c copied and renamed, built out of tree with one compiler
# line and nothing but pkg-config, dropped into the plugin directory of a running daemon,
# picked up by SIGHUP, seen reporting; taken out, its condition is retired.  TAP output.
set -u
src=${NH_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NH_BUILDDIR:-$src}
tmp=$(mktemp -d)
daemon_pid=
cleanup() {
        [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
        n=$((n + 1))
        echo "not ok $n - $1"
        shift
        printf '%s\n' "$@" | sed 's/^/# /'
        failed=$((failed + 1))
}

# Waits up to 10 s for an extended regular expression in a file.
wait_for() {
        local file=$1 needle=$2
        for _ in $(seq 200); do
                grep -qE -- "$needle" "$file" 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

echo "1..6"

# 1. Install the SDK only: the header and the pkg-config file.
if make -s -C "$build" install-nodehealthincludeHEADERS install-pkgconfigDATA DESTDIR="$tmp/dest" \
        >"$tmp/install.log" 2>&1; then
        ok "make install puts plugin.h and nodehealth-plugin.pc in place"
else
        not_ok "make install puts plugin.h and nodehealth-plugin.pc in place" "$(cat "$tmp/install.log")"
fi
pc=$(find "$tmp/dest" -name nodehealth-plugin.pc | head -n1)
export PKG_CONFIG_SYSROOT_DIR="$tmp/dest" PKG_CONFIG_PATH="$(dirname "${pc:-/nonexistent}")" PKG_CONFIG_LIBDIR=
cflags=$(pkg-config --cflags nodehealth-plugin 2>&1)
case "$cflags" in
"-I$tmp/dest/"*) ok "pkg-config gives the installed include directory" ;;
*) not_ok "pkg-config gives the installed include directory" "cflags: $cflags" ;;
esac

# 2. Copy the example, rename it as the README says, build it with one line.
mkdir -p "$tmp/work" "$tmp/plugins" "$tmp/proc" "$tmp/sys/devices/system/cpu" "$tmp/conf"
sed 's/\.name = "example"/.name = "myload"/' "$src/plugins/example/example.c" >"$tmp/work/myload.c"
# shellcheck disable=SC2086 # cflags is a list of words
if (cd "$tmp/work" && cc -shared -fPIC -fvisibility=hidden $cflags -o myload.so myload.c) >"$tmp/cc.log" 2>&1; then
        ok "the copied example builds out of tree with the installed header only"
else
        not_ok "the copied example builds out of tree with the installed header only" "$(cat "$tmp/cc.log")"
fi

# 3. A running daemon with no probe at all; the plugin directory is the configuration's.
echo "0-1" >"$tmp/sys/devices/system/cpu/online"
echo "0.50 0.40 0.30 1/100 4242" >"$tmp/proc/loadavg"
cat >"$tmp/conf/nodehealthd.json" <<JSON
{
  "plugin_dirs": ["$tmp/plugins"],
  "defaults": {"interval": "100ms", "raise_after": 1, "clear_after": 1},
  "journal": {"enabled": false},
  "http": {"listen": ""},
  "probes": {}
}
JSON
"$build/nodehealthd" --config "$tmp/conf/nodehealthd.json" --standalone --format json \
        --proc-path "$tmp/proc" --sys-path "$tmp/sys" >"$tmp/out" 2>"$tmp/err" &
daemon_pid=$!
wait_for "$tmp/err" "0 probes" || not_ok "the daemon starts" "$(cat "$tmp/err")"

install -m 0644 "$tmp/work/myload.so" "$tmp/plugins/myload.so"
kill -HUP "$daemon_pid"
if wait_for "$tmp/out" '"type":"HighLoad","status":"False",.*"reason":"LoadNormal"'; then
        ok "dropped in and reloaded with SIGHUP, it reports HighLoad False"
else
        not_ok "dropped in and reloaded with SIGHUP, it reports HighLoad False" "$(cat "$tmp/out" "$tmp/err")"
fi

echo "9.00 8.00 7.00 1/100 4242" >"$tmp/proc/loadavg.new" && mv "$tmp/proc/loadavg.new" "$tmp/proc/loadavg"
if wait_for "$tmp/out" '"type":"HighLoad","status":"True",.*"reason":"LoadHigh"'; then
        ok "it sees the load rise: HighLoad True"
else
        not_ok "it sees the load rise: HighLoad True" "$(cat "$tmp/out" "$tmp/err")"
fi

rm "$tmp/plugins/myload.so"
kill -HUP "$daemon_pid"
if wait_for "$tmp/out" '"type":"HighLoad","status":"Unknown",.*"reason":"ProbeRemoved"'; then
        ok "taken out and reloaded, its condition is retired (ProbeRemoved)"
else
        not_ok "taken out and reloaded, its condition is retired (ProbeRemoved)" "$(cat "$tmp/out" "$tmp/err")"
fi
kill "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
((failed == 0))
