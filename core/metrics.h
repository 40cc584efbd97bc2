/* SPDX-License-Identifier: MIT */
/*
 * Metrics in the Prometheus text format (version 0.0.4), for GET /metrics.
 *
 * node-problem-detector's two families, with its names, labels and meaning, so that its
 * dashboards and alerts carry over (NPD adds the label node="NAME" to every series; so do we):
 *   problem_counter{node,reason}       counter: how many times a problem occurred: each event
 *                                      (temporary problem) and each time a condition became True,
 *                                      under the reason it had then.
 *   problem_gauge{node,type,reason}    gauge: 1 while condition `type` is True with `reason`,
 *                                      else 0.  One series per reason the type has had while
 *                                      True or False (as NPD, which zeroes a type's previous
 *                                      reason rather than dropping it).
 * and nodehealthd's own, prefixed nodehealthd_ (listed in nodehealthd(8), ENDPOINTS).
 *
 * The counting half is a sink (the daemon gives it every transition and event); the rest is
 * read from the daemon's state when a scrape asks.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "conditions.h"
#include "kube-client.h"
#include "probe.h"
#include "sink.h"

/* What a scrape reads, gathered by the daemon at that moment (everything borrowed). */
struct nh_metrics_input {
        const char *node;
        const struct nh_table *table;
        struct nh_probe_ctx *const *probes;
        size_t n_probes;
        const struct nh_kube_client *kube; /* NULL: standalone, no API request metrics */
        uint64_t n_reloads;
        uint64_t start_time; /* realtime µs the daemon started */
        uint64_t loop_lag; /* µs the loop's periodic timer last ran late */
};

/* The counting sink: problem_counter and the reasons problem_gauge has seen.  NULL on ENOMEM. */
struct nh_sink *nh_sink_metrics_new(void);

/*
 * The whole exposition: 0 and a malloc'd NUL-terminated text in *ret (its length in
 * *ret_size), or -ENOMEM.  `metrics` is the sink from nh_sink_metrics_new() (NULL: no
 * problem_counter samples); it learns the reasons the table has now, for problem_gauge.
 */
int nh_metrics_render(struct nh_sink *metrics, const struct nh_metrics_input *in, char **ret, size_t *ret_size);
