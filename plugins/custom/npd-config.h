/* SPDX-License-Identifier: MIT */
/*
 * node-problem-detector's custom-plugin-monitor files, loaded unchanged:
 *
 *     {"plugin": "custom",
 *      "pluginConfig": {"invoke_interval": "30s", "timeout": "5s", "max_output_length": 80,
 *                       "concurrency": 3, "enable_message_change_based_condition_update": false},
 *      "source": "ntp-custom-plugin-monitor", "metricsReporting": true,
 *      "conditions": [{"type": "NTPProblem", "reason": "NTPIsUp", "message": "ntp service is up"}],
 *      "rules": [{"type": "permanent", "condition": "NTPProblem", "reason": "NTPIsDown",
 *                 "path": "/usr/lib/npd/check_ntp.sh", "args": ["--fast"], "timeout": "3s"}]}
 *
 * with NPD's defaults (invoke_interval 30s, timeout 5s, max_output_length 80, concurrency 3) and
 * NPD's checks (plugin "custom", a rule's timeout not above the global one, a permanent rule's
 * condition among "conditions").  Stricter than NPD, as the kernel_log probe is: unknown keys,
 * wrong types, zero or negative durations and counts are errors, each "FILE:LINE:COLUMN: what".
 * Nothing here logs or touches the loop.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NPD reads at most this much of a plugin's stdout (and stderr): maxCustomPluginBufferBytes. */
#define NPD_OUTPUT_MAX 4096

struct npd_condition {
        char *type;
        char *reason; /* healthy reason: the file's, or "No" + type when it has none */
        char *message;
        char *where; /* "FILE:LINE:COLUMN" of the entry, for errors found later */
};

struct npd_rule {
        bool permanent; /* else temporary: an event */
        size_t condition; /* permanent rules: index into conditions */
        char *reason;
        char *path;
        char **argv; /* path, then args; NULL-terminated */
        uint64_t timeout; /* µs: the rule's own, or the global one */
        uint64_t invoke_interval; /* µs: the rule's own (newer NPD), or the global one */
        char *where;
};

struct npd_config {
        char *path;
        char *source;
        uint64_t invoke_interval; /* µs */
        uint64_t timeout; /* µs */
        int64_t max_output_length;
        int64_t concurrency;
        bool message_change_update;
        bool skip_initial_status;
        bool metrics_reporting;
        struct npd_condition *conditions;
        size_t n_conditions;
        struct npd_rule *rules;
        size_t n_rules;
};

/*
 * Parses a file's text; `path` names it in errors.  Returns 0 and the configuration, -EINVAL
 * with "PATH:LINE:COLUMN: what" in *ret_error (the caller frees it), or -ENOMEM.
 */
int npd_config_parse(const char *text, size_t len, const char *path, struct npd_config **ret, char **ret_error);
/* Reads and parses a file (relative paths from dirfd): as npd_config_parse, plus open and read errors. */
int npd_config_load(int dirfd, const char *path, struct npd_config **ret, char **ret_error);
struct npd_config *npd_config_free(struct npd_config *c);
