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

#include "children.h"
#include "conditions.h"
#include "config.h"
#include "json-pos.h"
#include "loader.h"
#include "macro.h"

/*
 * Where an instance's declarations and observations go when the host has no table: the probe
 * host of an isolated probe (probe-host.c) sends them to the daemon.  `userdata` is the host's.
 */
struct nh_probe_forward {
        int (*declare)(void *userdata, const char *type, const char *healthy_reason);
        int (*observe)(void *userdata, const struct nh_observation *obs);
        void (*mark_unknown)(void *userdata, const char *reason, const char *message);
        void (*counters_changed)(void *userdata); /* nh_counter_set() changed one; nh_probe_counters() has them */
};

/* What a probe instance needs from whoever runs it: the daemon, or a test. */
struct nh_probe_host {
        struct nh_table *table; /* NULL: `forward` gets what would go there */
        const struct nh_probe_forward *forward;
        const char *config_path; /* for isolated probes: the file their probe host loads */
        char *const *plugin_dirs; /* for isolated probes: where their probe host looks */
        int root_fds[_NH_ROOT_MAX];
        int config_dir_fd; /* O_PATH fd of the main configuration file's directory, or -1 */

        sd_event *event; /* the loop fds and timers go on; NULL: probes may not watch anything */
        struct nh_children *children; /* reaps the probes' child processes; NULL: probes may not start any */
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

/*
 * A reload that changed nothing of this probe hands it the new configuration's copy of its
 * (equal) settings: the old configuration is freed afterwards.
 */
void nh_probe_set_config(struct nh_probe_ctx *p, const struct nh_probe_config *cfg);
const struct nh_plugin_handle *nh_probe_handle(const struct nh_probe_ctx *p);
/* Does the instance report `type` (declared, and not refused as kubelet- or CNI-owned)? */
bool nh_probe_declares(const struct nh_probe_ctx *p, const char *type);

/* A probe's own counters (nh_counter_set()), in the order it first set them. */
struct nh_probe_counter {
        char name[64];
        uint64_t value;
};
const struct nh_probe_counter *nh_probe_counters(const struct nh_probe_ctx *p, size_t *ret_n);

/* ---- core-internal, for the proxy of an isolated probe (probe-remote.c) ---- */

struct nh_probe_host *nh_probe_host_of(const struct nh_probe_ctx *p);
/* Declares a type outside init: the probe host's declarations arrive when they arrive. */
int nh_probe_declare(struct nh_probe_ctx *p, const char *type, const char *healthy_reason);
/* Every condition of the instance Unknown with this reason, counted as a failure. */
void nh_probe_mark_unknown(struct nh_probe_ctx *p, const char *reason, const char *message);
/*
 * While held, a pending cycle's timeout does not run (the proxy's host is still starting: its
 * start is bounded by the proxy); released, it starts over from now.
 */
void nh_probe_hold_timeout(struct nh_probe_ctx *p, bool hold);
/* `hook` runs when a pending cycle overruns its timeout, after the conditions say ProbeTimeout. */
void nh_probe_set_timeout_hook(struct nh_probe_ctx *p, void (*hook)(struct nh_probe_ctx *p, void *userdata),
                               void *userdata);
