/* SPDX-License-Identifier: MIT */
/*
 * The daemon's configuration: nodehealthd.json plus conf.d/ *.json beside it, merged in
 * name order (object keys override, arrays and scalars replace), validated against the
 * core's tables.  A probe's own keys are checked later, against its plugin's table, by
 * probe_configure(); the merged tree and the positions stay here for that.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "json-pos.h"
#include "macro.h"

enum nh_isolation {
        NH_ISOLATION_INPROCESS,
        NH_ISOLATION_PROCESS,
        _NH_ISOLATION_MAX,
        _NH_ISOLATION_INVALID = -EINVAL,
};

struct nh_probe_defaults {
        uint64_t interval, timeout;
        int64_t raise_after, clear_after;
};

struct nh_probe_config {
        char *name; /* the key under "probes" */
        char *plugin; /* file PLUGIN.so; defaults to name */
        bool enabled;
        uint64_t interval, timeout;
        int64_t raise_after, clear_after;
        char *isolation_name; /* default: "inprocess" for nh_shipped_plugins, else "process" */
        enum nh_isolation isolation;
        char *memory_limit_name;
        uint64_t memory_limit; /* bytes; isolated probes only (0 for in-process ones) */
        char **take_over; /* kubelet- or CNI-owned types this probe may write */
        const cJSON *json; /* the probe's object in the merged tree */
};

struct nh_config {
        char *node_name;
        char **plugin_dirs;
        struct nh_probe_defaults defaults;
        uint64_t kubernetes_heartbeat;
        bool kubernetes_events;
        bool journal_enabled;
        char *http_listen;

        struct nh_probe_config *probes;
        size_t n_probes;

        char **files; /* what was read, in merge order */
        cJSON *tree;
        struct json_positions *positions;
};

/* Built-in defaults, documented in nodehealthd.json(5). */
#define NH_DEFAULT_CONFIG "/etc/nodehealthd/nodehealthd.json"
#define NH_DEFAULT_INTERVAL "30s"
#define NH_DEFAULT_TIMEOUT "5s"
#define NH_DEFAULT_RAISE_AFTER "2"
#define NH_DEFAULT_CLEAR_AFTER "2"

/*
 * Reads `path` and the drop-ins in conf.d/ beside it.  Returns 0 and a config, or a
 * negative errno and "FILE:LINE:COLUMN: what" (or "FILE: what") in *ret_error.
 */
int nh_config_load(const char *path, struct nh_config **ret, char **ret_error);
struct nh_config *nh_config_free(struct nh_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_config *, nh_config_free)

/*
 * Adds probe `name` with every setting at its default, as `"probes": {"NAME": {}}` would: a
 * drop-in plugin found in a plugin directory.  Moves c->probes (call it before any probe
 * instance points into it).  0, -EEXIST, -ENOMEM, or -EINVAL with the reason in *ret_error.
 */
int nh_config_add_probe(struct nh_config *c, const char *name, char **ret_error);

/* The probe keys the core owns; a plugin's table may not reuse them. */
extern char *const nh_probe_core_keys[];

/* Plugins shipped with nodehealthd: they run in the daemon unless "isolation" says otherwise. */
extern char *const nh_shipped_plugins[];
#define NH_DEFAULT_MEMORY_LIMIT "128MiB"
#define NH_MEMORY_LIMIT_MIN (UINT64_C(8) << 20)
#define NH_MEMORY_LIMIT_MAX (UINT64_C(64) << 30)

/* Kubernetes types the kubelet or the CNI writes; NULL when `type` is ours to write. */
const char *nh_condition_owner(const char *type);
