#!/usr/bin/env bash
# Installs the Debian 12 packages nodehealthd needs to build, test and run, when any is
# missing.  Sourced by run.sh and test.sh; needs root only when something must be installed.

nh_build_packages=(
        gcc clang make autoconf automake libtool pkg-config file
        libsystemd-dev libudev-dev libcjson-dev libcurl4-openssl-dev libltdl-dev
        libcmocka-dev
        systemd clang-format libclang-rt-14-dev procps git
        libyaml-dev libc-ares-dev umockdev libumockdev-dev python3 openssl iproute2 e2fsprogs util-linux
        man-db groff-base libpcre2-dev python3-yaml systemd-journal-remote
        libmicrohttpd-dev prometheus
)

nh_install_deps() {
        local missing=() p
        for p in "${nh_build_packages[@]}" "$@"; do
                dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
        done
        ((${#missing[@]} == 0)) && return 0
        echo "Installing missing packages: ${missing[*]}" >&2
        if [ "$(id -u)" -ne 0 ]; then
                echo "error: not root; install them with: sudo apt-get install ${missing[*]}" >&2
                return 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || return 1
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || return 1
}

# Configures and builds the tree into $1 with the configure arguments that follow.
nh_build() {
        local dir=$1 top
        shift
        top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
        if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ] ||
                [ "$top/Makefile.am" -nt "$top/Makefile.in" ]; then
                (cd "$top" && ./autogen.sh >/dev/null 2>&1) || { (cd "$top" && ./autogen.sh); return 1; }
        fi
        if [ -f "$top/config.status" ]; then
                echo "error: $top is configured in-tree; run 'make distclean' there first" >&2
                return 1
        fi
        mkdir -p "$dir"

        if [ ! -f "$dir/Makefile" ] || [ "$top/configure" -nt "$dir/config.status" ]; then
                (cd "$dir" && "$top/configure" "$@" >configure.out 2>&1) || { cat "$dir/configure.out"; return 1; }
        fi
        # The plugin loader refuses directories writable by group or others, whatever the umask.
        umask 022
        make -C "$dir" -j"$(nproc)" >"$dir/make.out" 2>&1 || { cat "$dir/make.out"; return 1; }
}
