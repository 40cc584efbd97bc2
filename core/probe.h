/* SPDX-License-Identifier: MIT */
/*
 * One probe instance: a plugin, its filled configuration and its state, and the context the
 * plugin's callbacks get back.  The core's side of the plugin ABI (nh_report(), nh_log(),
 * nh_read_file(), …) is implemented here and checks every argument a probe passes.
 */
#pragma once

#include <nodehealth/plugin.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "conditions.h"
#include "config.h"
#include "json-pos.h"
#include "loader.h"
#include "macro.h"

/* What a probe instance needs from whoever runs it: the daemon, or a test. */
struct nh_probe_host {
        struct nh_table *table;
        int root_fds[_NH_ROOT_MAX];
        int config_dir_fd; /* O_PATH fd of the main configuration file's directory, or -1 */

        sd_event *event; /* the loop fds and timers go on; NULL: probes may not watch anything */
        uint64_t (*now)(void *userdata, clockid_t clock);
        void (*event_cb)(void *userdata, const char *probe, const char *reason, const char *message);
        void (*trigger)(void *userdata, struct nh_probe_ctx *p); /* may be NULL */
        void (*cycle_done)(void *userdata, struct nh_probe_ctx *p); /* a pending cycle ended; may be NULL */
        void *userdata;
};

struct nh_probe_stats {
        uint64_t cycles, failures;
        uint64_t last_duration; /* µs of CPU-bound wall time of the last cycle */
        uint64_t max_duration;
};

/*
 * Makes an instance of cfg->plugin from `handle` (taken on success and on failure): fills the
 * plugin's config struct from cfg->json against the plugin's table.  A bad key or value is
 * -EINVAL with "FILE:LINE:COLUMN: ..." in *ret_error.  `cfg` must outlive the instance.
 */
int nh_probe_new(struct nh_probe_host *host, const struct nh_probe_config *cfg, struct nh_plugin_handle *handle,
                 const struct json_positions *positions, struct nh_probe_ctx **ret, char **ret_error);
struct nh_probe_ctx *nh_probe_free(struct nh_probe_ctx *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_probe_ctx *, nh_probe_free)

/*
 * Declares the probe's condition types in the table (Unknown until it reports) and calls
 * the plugin's init.  When init fails the conditions say ProbeInitFailed and the error is
 * returned; the instance stays valid (nh_probe_run then does nothing).
 */
int nh_probe_start(struct nh_probe_ctx *p);

/*
 * One observation cycle.  Returns 0 when it is complete, NH_PROBE_PENDING when it goes on
 * (host->cycle_done is called when it ends, by the probe or by its timeout), or the
 * probe's error (its conditions are then Unknown with ProbeFailed).  A cycle asked for
 * while the previous one is pending is skipped: -EBUSY.
 */
int nh_probe_run(struct nh_probe_ctx *p);
bool nh_probe_pending(const struct nh_probe_ctx *p);

bool nh_probe_running(const struct nh_probe_ctx *p);
const char *nh_probe_name(const struct nh_probe_ctx *p);
const struct nh_probe_config *nh_probe_config(const struct nh_probe_ctx *p);
const struct nh_probe_stats *nh_probe_stats(const struct nh_probe_ctx *p);
