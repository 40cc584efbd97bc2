#!/bin/sh
# Regenerates the build system: configure, Makefile.in, the libtool and automake helpers.
set -e
cd "$(dirname "$0")"
autoreconf -fi
