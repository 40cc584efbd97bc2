/* SPDX-License-Identifier: MIT */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/*
 * Reasons come from probes (CamelCase, at most 128 bytes each, but any number of them): a
 * probe that invents a reason per observation must not grow the exposition without bound.
 */
#define MAX_SERIES 512

struct reason_count {
        char *reason;
        uint64_t count;
};

struct type_reason {
        char *type, *reason;
};

struct metrics_sink {
        struct nh_sink sink;
        struct reason_count *counts; /* problem_counter */
        size_t n_counts;
        struct type_reason *seen; /* problem_gauge's series */
        size_t n_seen;
        bool full_logged;
};

static bool room(struct metrics_sink *m, size_t n) {
        if (n < MAX_SERIES)
                return true;
        if (!m->full_logged)
                log_warning("More than %d problem reasons: further ones are not in /metrics", MAX_SERIES);
        m->full_logged = true;
        return false;
}

static void count_problem(struct metrics_sink *m, const char *reason) {
        struct reason_count *grown;

        if (!reason || !*reason)
                return;
        for (size_t i = 0; i < m->n_counts; i++)
                if (strcmp(m->counts[i].reason, reason) == 0) {
                        m->counts[i].count++;
                        return;
                }
        if (!room(m, m->n_counts))
                return;
        grown = realloc(m->counts, (m->n_counts + 1) * sizeof(*grown));
        if (!grown)
                return;
        m->counts = grown;
        grown[m->n_counts].reason = strdup(reason);
        if (!grown[m->n_counts].reason)
                return;
        grown[m->n_counts++].count = 1;
}

/* Unknown says nothing about a problem: its reasons (NotYetObserved, ProbeStale, …) get no series. */
static void see(struct metrics_sink *m, const struct nh_condition *c) {
        struct type_reason *grown;

        if (c->status == NH_STATUS_UNKNOWN || !c->reason || !*c->reason)
                return;
        for (size_t i = 0; i < m->n_seen; i++)
                if (strcmp(m->seen[i].type, c->type) == 0 && strcmp(m->seen[i].reason, c->reason) == 0)
                        return;
        if (!room(m, m->n_seen))
                return;
        grown = realloc(m->seen, (m->n_seen + 1) * sizeof(*grown));
        if (!grown)
                return;
        m->seen = grown;
        grown[m->n_seen].type = strdup(c->type);
        grown[m->n_seen].reason = strdup(c->reason);
        if (!grown[m->n_seen].type || !grown[m->n_seen].reason) {
                free(grown[m->n_seen].type);
                free(grown[m->n_seen].reason);
                return;
        }
        m->n_seen++;
}

static void metrics_start(struct nh_sink *sink, const char *node, const struct nh_table *table) {
        struct metrics_sink *m = (struct metrics_sink *) sink;

        for (size_t i = 0; i < nh_table_size(table); i++)
                see(m, nh_table_get(table, i));
}

static void metrics_transition(struct nh_sink *sink, const char *node, const struct nh_condition *c,
                               enum nh_status old) {
        struct metrics_sink *m = (struct metrics_sink *) sink;

        see(m, c);
        if (c->status == NH_STATUS_TRUE && old != NH_STATUS_TRUE)
                count_problem(m, c->reason);
}

static void metrics_event(struct nh_sink *sink, const char *node, const char *probe, const char *reason,
                          const char *message) {
        count_problem((struct metrics_sink *) sink, reason);
}

static void metrics_free(struct nh_sink *sink) {
        struct metrics_sink *m = (struct metrics_sink *) sink;

        for (size_t i = 0; i < m->n_counts; i++)
                free(m->counts[i].reason);
        for (size_t i = 0; i < m->n_seen; i++) {
                free(m->seen[i].type);
                free(m->seen[i].reason);
        }
        free(m->counts);
        free(m->seen);
        free(m);
}

static const struct nh_sink_ops metrics_ops = {
        .name = "metrics",
        .start = metrics_start,
        .transition = metrics_transition,
        .event = metrics_event,
        .free = metrics_free,
};

struct nh_sink *nh_sink_metrics_new(void) {
        struct metrics_sink *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        m->sink.ops = &metrics_ops;
        return &m->sink;
}

/* ---- the text format ---- */

/* A label value: backslash, double quote and line feed escaped, as the format asks. */
static void put_value(FILE *f, const char *v) {
        for (; v && *v; v++)
                if (*v == '\\')
                        fputs("\\\\", f);
                else if (*v == '"')
                        fputs("\\\"", f);
                else if (*v == '\n')
                        fputs("\\n", f);
                else
                        fputc(*v, f);
}

/* Starts a sample: NAME{k1="v1",k2="v2"...; labels come as NULL-terminated key, value pairs. */
static void put_sample(FILE *f, const char *name, ...) {
        const char *sep = "{";
        va_list ap;

        fputs(name, f);
        va_start(ap, name);
        for (const char *k; (k = va_arg(ap, const char *));) {
                const char *v = va_arg(ap, const char *);
                fprintf(f, "%s%s=\"", sep, k);
                put_value(f, v);
                fputc('"', f);
                sep = ",";
        }
        va_end(ap);
        if (strcmp(sep, ",") == 0)
                fputc('}', f);
        fputc(' ', f);
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_seconds(FILE *f, uint64_t usec) {
        fprintf(f, "%llu.%06llu\n", (unsigned long long) (usec / USEC_PER_SEC),
                (unsigned long long) (usec % USEC_PER_SEC));
}

static void put_count(FILE *f, uint64_t n) {
        fprintf(f, "%llu\n", (unsigned long long) n);
}

static void render_problems(FILE *f, struct metrics_sink *m, const struct nh_metrics_input *in) {
        /* NPD's own help texts, word for word. */
        family(f, "problem_counter", "counter", "Number of times a specific type of problem have occurred.");
        for (size_t i = 0; m && i < m->n_counts; i++) {
                put_sample(f, "problem_counter", "node", in->node, "reason", m->counts[i].reason, NULL);
                put_count(f, m->counts[i].count);
        }
        family(f, "problem_gauge", "gauge", "Whether a specific type of problem is affecting the node or not.");
        if (m)
                for (size_t i = 0; i < nh_table_size(in->table); i++)
                        see(m, nh_table_get(in->table, i)); /* reason changes within a status too */
        for (size_t i = 0; m && i < m->n_seen; i++) {
                const struct nh_condition *c = nh_table_find(in->table, m->seen[i].type);
                if (!c)
                        continue; /* its probe is gone (a reload) */
                put_sample(f, "problem_gauge", "node", in->node, "type", m->seen[i].type, "reason", m->seen[i].reason,
                           NULL);
                put_count(f, c->status == NH_STATUS_TRUE && streq_null(c->reason, m->seen[i].reason));
        }
}

static void render_daemon(FILE *f, const struct nh_metrics_input *in) {
        static const enum nh_status statuses[] = {NH_STATUS_TRUE, NH_STATUS_FALSE, NH_STATUS_UNKNOWN};

        family(f, "nodehealthd_build_info", "gauge", "Always 1; the version of the running daemon is a label.");
        put_sample(f, "nodehealthd_build_info", "version", PACKAGE_VERSION, NULL);
        put_count(f, 1);
        family(f, "nodehealthd_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.");
        put_sample(f, "nodehealthd_start_time_seconds", NULL);
        put_seconds(f, in->start_time);
        family(f, "nodehealthd_reloads_total", "counter", "Configuration reloads (SIGHUP) since the daemon started.");
        put_sample(f, "nodehealthd_reloads_total", NULL);
        put_count(f, in->n_reloads);
        family(f, "nodehealthd_loop_lag_seconds", "gauge",
               "How late the event loop's once-a-second timer last ran: time the loop was busy or blocked.");
        put_sample(f, "nodehealthd_loop_lag_seconds", NULL);
        put_seconds(f, in->loop_lag);

        family(f, "nodehealthd_condition_status", "gauge",
               "1 for the current status of each condition type (True, False or Unknown), 0 for the others.");
        for (size_t i = 0; i < nh_table_size(in->table); i++) {
                const struct nh_condition *c = nh_table_get(in->table, i);
                for (size_t s = 0; s < ELEMENTSOF(statuses); s++) {
                        put_sample(f, "nodehealthd_condition_status", "type", c->type, "status",
                                   nh_status_to_string(statuses[s]), NULL);
                        put_count(f, c->status == statuses[s]);
                }
        }
}

static void render_probes(FILE *f, const struct nh_metrics_input *in) {
        static const struct {
                const char *name, *type, *help;
        } families[] = {
                {"nodehealthd_probe_running", "gauge",
                 "1 when the probe instance runs, 0 when its plugin failed to start."},
                {"nodehealthd_probe_cycles_total", "counter", "Observation cycles the probe instance completed."},
                {"nodehealthd_probe_failures_total", "counter",
                 "Cycles that failed: an error, a timeout, or a probe that could not start."},
                {"nodehealthd_probe_duration_seconds", "gauge", "Wall time of the probe instance's last cycle."},
                {"nodehealthd_probe_duration_max_seconds", "gauge",
                 "Longest cycle of the probe instance since the daemon started."},
        };

        for (size_t k = 0; k < ELEMENTSOF(families); k++) {
                family(f, families[k].name, families[k].type, families[k].help);
                for (size_t i = 0; i < in->n_probes; i++) {
                        const struct nh_probe_stats *st = nh_probe_stats(in->probes[i]);
                        put_sample(f, families[k].name, "probe", nh_probe_name(in->probes[i]), NULL);
                        switch (k) {
                        case 0:
                                put_count(f, nh_probe_running(in->probes[i]));
                                break;
                        case 1:
                                put_count(f, st->cycles);
                                break;
                        case 2:
                                put_count(f, st->failures);
                                break;
                        case 3:
                                put_seconds(f, st->last_duration);
                                break;
                        default:
                                put_seconds(f, st->max_duration);
                                break;
                        }
                }
        }

        /* Not nodehealthd_probe_counter_total: a name that says "counter" fails promtool's lint. */
        family(f, "nodehealthd_probe_counts_total", "counter",
               "A probe's own counters (nh_counter_set()), by probe instance and counter name.");
        for (size_t i = 0; i < in->n_probes; i++) {
                size_t n = 0;
                const struct nh_probe_counter *c = nh_probe_counters(in->probes[i], &n);
                for (size_t j = 0; c && j < n; j++) {
                        put_sample(f, "nodehealthd_probe_counts_total", "probe", nh_probe_name(in->probes[i]),
                                   "counter", c[j].name, NULL);
                        put_count(f, c[j].value);
                }
        }
}

static void render_api(FILE *f, const struct nh_metrics_input *in) {
        const struct nh_kube_request_count *counts = NULL;
        size_t n;

        if (!in->kube)
                return;
        n = nh_kube_client_request_counts(in->kube, &counts);
        family(f, "nodehealthd_api_requests_total", "counter",
               "Requests to the Kubernetes API server by method and HTTP status; code \"<error>\": no reply "
               "(a network or TLS failure).");
        for (size_t i = 0; i < n; i++) {
                char code[24];
                if (counts[i].status > 0)
                        snprintf(code, sizeof(code), "%ld", counts[i].status);
                else
                        snprintf(code, sizeof(code), "<error>");
                put_sample(f, "nodehealthd_api_requests_total", "method", counts[i].method, "code", code, NULL);
                put_count(f, counts[i].count);
        }
}

int nh_metrics_render(struct nh_sink *metrics, const struct nh_metrics_input *in, char **ret, size_t *ret_size) {
        struct metrics_sink *m = metrics && metrics->ops == &metrics_ops ? (struct metrics_sink *) metrics : NULL;
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                return -ENOMEM;
        render_problems(f, m, in);
        render_daemon(f, in);
        render_probes(f, in);
        render_api(f, in);
        bool bad = ferror(f);
        if (fclose(f) != 0 || bad) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        *ret_size = size;
        return 0;
}
