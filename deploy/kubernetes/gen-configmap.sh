#!/bin/sh
# Writes configmap.yaml beside this script from the shipped configuration, conf/nodehealthd.json
# and the rule files conf/npd/*.json, so that the DaemonSet runs exactly what the repository
# ships.  Each file's text is kept byte for byte (a YAML literal block), and
# tests/integration/test-deploy.py checks both that and that configmap.yaml is current.
#
# Keys: nodehealthd.json, and npd-NAME.json for conf/npd/NAME.json (a ConfigMap key cannot hold
# a '/'); the DaemonSet's volume maps each npd-NAME.json back to npd/NAME.json with "items", so
# /etc/nodehealthd in the pod is laid out as conf/ is (npd_config "npd/kernel-monitor.json"
# resolves beside nodehealthd.json).  A new rule file needs its item in daemonset.yaml too.
#
#   gen-configmap.sh            rewrite configmap.yaml
#   gen-configmap.sh --check    exit 1, with a diff, when configmap.yaml is not current
#   gen-configmap.sh --stdout   print what configmap.yaml should hold
#
# Kustomize's configMapGenerator cannot read ../../conf (files must lie under the
# kustomization's directory), hence this script.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
confdir="$here/../../conf"
conf="$confdir/nodehealthd.json"
out="$here/configmap.yaml"

# One key of data: KEY FILE.
emit_key() {
        key=$1
        file=$2
        [ -s "$file" ] || { echo "gen-configmap.sh: $file is missing or empty" >&2; return 1; }
        # YAML block chomping: "|" keeps exactly one final newline, "|-" none, "|+" all of them.
        if [ "$(tail -c 1 "$file" | od -An -c | tr -d ' ')" != '\n' ]; then
                chomp='-'
        elif [ "$(tail -c 2 "$file" | od -An -c | tr -d ' ')" = '\n\n' ]; then
                chomp='+'
        else
                chomp=''
        fi
        # YAML guesses a block's indentation from its first line that is not empty: when that
        # line starts with a space, say it (2 more than the key's, so 4 columns).
        case $(grep -m 1 . "$file") in
        ' '* | '	'*) indent=2 ;;
        *) indent='' ;;
        esac
        echo "  $key: |$indent$chomp"
        # Non-empty lines indented by four spaces; empty lines stay empty (no trailing blanks).
        sed 's/^./    &/' "$file"
}

generate() {
        cat <<HEADER
# GENERATED from conf/nodehealthd.json and conf/npd/*.json by deploy/kubernetes/gen-configmap.sh:
# do not edit.  Change the files in conf/ and run the script; tests/integration/test-deploy.py
# fails while this file differs from them.  The DaemonSet mounts this at /etc/nodehealthd, each
# npd-NAME.json at npd/NAME.json.
apiVersion: v1
kind: ConfigMap
metadata:
  name: nodehealthd-config
  namespace: kube-system
  labels:
    app.kubernetes.io/name: nodehealthd
data:
HEADER
        emit_key nodehealthd.json "$conf" || return 1
        for rules in "$confdir"/npd/*.json; do
                [ -e "$rules" ] || continue
                emit_key "npd-$(basename "$rules")" "$rules" || return 1
        done
}

case ${1:-} in
"")
        tmp=$(mktemp "$out.XXXXXX")
        trap 'rm -f "$tmp"' EXIT
        generate >"$tmp"
        chmod 0644 "$tmp" # mktemp's 0600 would stay with the file
        mv "$tmp" "$out"
        trap - EXIT
        ;;
--stdout)
        generate
        ;;
--check)
        tmp=$(mktemp)
        trap 'rm -f "$tmp"' EXIT
        generate >"$tmp"
        if ! cmp -s "$tmp" "$out"; then
                echo "gen-configmap.sh: $out is not current; run $0" >&2
                diff -u "$out" "$tmp" >&2 || :
                exit 1
        fi
        ;;
*)
        echo "usage: $0 [--check | --stdout]" >&2
        exit 64
        ;;
esac
