/* SPDX-License-Identifier: MIT */
/*
 * The probe host: `nodehealthd --probe-host NAME [--check] --config FILE [--plugin-dir D]...`,
 * started by the daemon (probe-remote.c) with the socket on fd 3 and the --proc-path,
 * --sys-path and --root-path directories on fds 4, 5 and 6.  It runs one isolated probe with
 * the real loader and the real probe instance on its own loop, and sends what the probe
 * declares, reports and asks for to the daemon (probe-proto.h).  With --check it only loads
 * the plugin and checks the probe's keys against its table, then says "ready" or "fatal".
 */
#pragma once

#define NH_PROBE_HOST_ARG "--probe-host"
#define NH_PROBE_HOST_FD 3
#define NH_PROBE_HOST_ROOT_FD 4 /* 4, 5, 6: enum nh_root's order */

/* The whole life of a probe host; returns its exit status. */
int nh_probe_host_main(int argc, char **argv);
