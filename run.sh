#!/usr/bin/env bash
# Builds nodehealthd (installing what it needs on Debian 12) and runs it in the foreground,
# standalone, with the shipped conf/ and the built probes.  Ctrl-C stops it.
# Extra arguments go to the daemon, e.g. ./run.sh --format json, or ./run.sh --once.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
. "$top/scripts/deps.sh"
nh_install_deps
nh_build "$top/build/run" --enable-werror
exec "$top/build/run/nodehealthd" --standalone --config "$top/conf/nodehealthd.json" \
        --plugin-dir "$top/build/run/plugins/.libs" "$@"
