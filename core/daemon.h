/* SPDX-License-Identifier: MIT */
/*
 * The daemon: one sd-event loop that owns the probes' timers, the signals and the
 * watchdog, the condition table, and the sinks the table's transitions go to.
 */
#pragma once

#include "cli.h"
#include "config.h"
#include "macro.h"

struct nh_daemon;

/*
 * Builds a daemon from parsed options and a loaded configuration (taken on success and on
 * failure): opens the root directories, loads and configures every enabled probe.  Returns
 * 0, or a negative errno with a message in *ret_error (may be NULL on -ENOMEM) and the exit
 * code it deserves in *ret_exit_code: NH_EXIT_CONFIG for a probe key that does not fit its
 * plugin's table (the message has the position), NH_EXIT_USAGE for a --proc-path,
 * --sys-path or --root-path that cannot be opened, NH_EXIT_FAILURE otherwise.  Plugins
 * that are missing or refused are logged and skipped; in --check-config they are
 * configuration errors.
 */
int nh_daemon_new(const struct nh_options *opts, struct nh_config *config, struct nh_daemon **ret, char **ret_error,
                  int *ret_exit_code);

struct nh_daemon *nh_daemon_free(struct nh_daemon *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_daemon *, nh_daemon_free)

/* --once: every probe once, one verdict printed; 0 or a negative errno. */
int nh_daemon_run_once(struct nh_daemon *d);

/*
 * SIGHUP: reads the configuration again and applies it, or refuses it whole (a position in
 * the log) and keeps the one in force.  Probes whose settings and plugin file did not change
 * keep running; changed ones restart; removed ones stop and their conditions are retired
 * (ProbeRemoved; off the Node when reporting to an API server).  0 or a negative errno.
 */
int nh_daemon_reload(struct nh_daemon *d);

/* The daemon proper, until SIGTERM or SIGINT; 0 or a negative errno. */
int nh_daemon_run(struct nh_daemon *d);
