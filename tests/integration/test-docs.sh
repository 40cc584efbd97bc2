#!/bin/bash
# The shipped documents and units are checked like code: the man pages render without a
# warning, the journal catalog parses, and systemd accepts the unit.  TAP output.
set -u
src=${NH_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NH_BUILDDIR:-$src}
n=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME COMMAND...: ok when the command succeeds and prints nothing
        local name=$1 out
        shift
        n=$((n + 1))
        if out=$("$@" 2>&1) && [ -z "$out" ]; then
                echo "ok $n - $name"
        else
                echo "not ok $n - $name"
                printf '%s\n' "$out" | sed 's/^/# /'
                failed=$((failed + 1))
        fi
}

echo "1..9"
for page in nodehealthd.8 nodehealthd.json.5 nodehealthctl.1; do
        check "$page renders without warnings (man)" \
                env MANWIDTH=80 sh -c "man --warnings -l '$src/docs/$page' >/dev/null"
        check "$page renders without warnings (groff -ww)" groff -man -ww -z "$src/docs/$page"
done

# The catalog: journalctl compiles it into a database of its own.
mkdir -p "$tmp/root/usr/lib/systemd/catalog"
cp "$src/docs/nodehealthd.catalog" "$tmp/root/usr/lib/systemd/catalog/"
catalog_ok() {
        journalctl --root="$tmp/root" --update-catalog &&
                journalctl --root="$tmp/root" --list-catalog | grep -q 44f7e7af1e8242b28149e0e55a8a01e3 &&
                journalctl --root="$tmp/root" --list-catalog | grep -q 296ecd2d745946d8b884b85b2d15056d
}
check "the journal catalog compiles and lists both MESSAGE_IDs" catalog_ok

# The unit, pointed at the built daemon, with the man pages findable for Documentation=.
mkdir -p "$tmp/man/man8" "$tmp/man/man5" "$tmp/man/man1"
cp "$src/docs/nodehealthd.8" "$tmp/man/man8/"
cp "$src/docs/nodehealthd.json.5" "$tmp/man/man5/"
cp "$src/docs/nodehealthctl.1" "$tmp/man/man1/"
sed "s|/usr/sbin/nodehealthd|$build/nodehealthd|" "$src/deploy/systemd/nodehealthd.service" >"$tmp/nodehealthd.service"
check "systemd-analyze verify accepts the unit" env MANPATH="$tmp/man" systemd-analyze verify "$tmp/nodehealthd.service"

# The README quotes systemd-analyze's exposure score for the unit: it must be the one it gives.
exposure_quoted() {
        local score
        score=$(systemd-analyze security --offline=yes "$tmp/nodehealthd.service" 2>/dev/null |
                sed -n 's/.*Overall exposure level for nodehealthd.service: \([0-9.]*\) .*/\1/p')
        [ -n "$score" ] || { echo "systemd-analyze security gave no score"; return 1; }
        grep -q "Overall exposure level for nodehealthd.service: $score " "$src/README.md" ||
                echo "README.md does not quote the unit's exposure level $score"
}
check "README.md quotes the unit's systemd-analyze security score" exposure_quoted

((failed == 0))
