/* SPDX-License-Identifier: MIT */
/*
 * Isolated probes ("isolation": "process").  The daemon never loads such a plugin: it runs
 * in a probe host (probe-host.h), a child in a process group of its own, and the daemon
 * keeps a proxy instance whose plugin is core-internal ("remote").  To core/probe.c the proxy
 * is an ordinary asynchronous probe: init starts the host and returns at once, each cycle
 * is sent to the host and stays pending until it says "done", and what the host sends goes
 * through nh_report() and its siblings on the proxy, so every check of the core applies.
 *
 * When the host dies (or sends anything the protocol does not allow, and is killed for it),
 * the probe's conditions become Unknown with reason ProbeCrashed and the message says how it
 * ended; a cycle that overruns its timeout is ProbeTimeout and the whole process group is
 * killed (a host that does not say "ready" within 10 s plus the timeout is too; a cycle's
 * timeout counts from "ready", not from the start); a host whose resident memory exceeds the probe's memory_limit (checked after every
 * cycle and every second) is killed and its conditions say ProbeMemoryLimit.  Every time the
 * host is started again after a delay that doubles from 1 s to 5 min and starts over once a
 * host has lived 60 s.  A plugin the loader refuses, or whose keys do not fit its table, is
 * not restarted.
 */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "loader.h"
#include "probe.h"

struct nh_remote_check;

#define NH_REMOTE_CHECK_TIMEOUT_USEC (3 * UINT64_C(1000000))
#define NH_REMOTE_BACKOFF_MIN_USEC (1 * UINT64_C(1000000))
#define NH_REMOTE_BACKOFF_MAX_USEC (300 * UINT64_C(1000000))
#define NH_REMOTE_HEALTHY_USEC (60 * UINT64_C(1000000))
#define NH_REMOTE_MEMORY_CHECK_USEC (1 * UINT64_C(1000000))
#define NH_REMOTE_STOP_GRACE_USEC (500 * UINT64_C(1000)) /* for the plugin's done() when it stops */
#define NH_REMOTE_START_TIMEOUT_USEC (10 * UINT64_C(1000000)) /* plus the probe's timeout */

/*
 * Checks an isolated probe by running its host once with --check (the loader's checks and
 * the plugin's table against the probe's keys, in a throwaway process, for at most
 * NH_REMOTE_CHECK_TIMEOUT_USEC) and returns the proxy's handle for nh_probe_new().
 * host->config_path, host->plugin_dirs, host->root_fds and host->children must be set.
 * Returns 0 and *ret; -ENOENT (no message), -EPERM, -ENOEXEC, -EINVAL with the loader's
 * reason in *ret_why; -EUCLEAN when the probe's own keys do not fit the plugin's table
 * ("FILE:LINE:COLUMN: ..." in *ret_why); -ETIMEDOUT when the host did not answer in time
 * (only when `must_answer`: otherwise that is logged and the handle returned).
 */
int nh_probe_remote_open(struct nh_probe_host *host, const struct nh_probe_config *cfg, bool must_answer,
                         struct nh_remote_check *check, struct nh_plugin_handle **ret, char **ret_why);

/*
 * The check of nh_probe_remote_open(), begun ahead so that several run at once: a reload that
 * starts N isolated probes waits NH_REMOTE_CHECK_TIMEOUT_USEC at most, not N times that.  Its
 * clock starts here.  nh_probe_remote_open() takes it (`check`; NULL begins one there);
 * nh_probe_remote_check_free() ends one that is not used (its host is killed, reaped later).
 */
int nh_probe_remote_check_begin(struct nh_probe_host *host, const struct nh_probe_config *cfg,
                                struct nh_remote_check **ret);
struct nh_remote_check *nh_probe_remote_check_free(struct nh_remote_check *c);
