/* SPDX-License-Identifier: MIT */
/*
 * Sinks: where conditions go.  The daemon tells every sink the whole table once when the
 * first observation cycle is done (`start`), then each transition and each event as they
 * happen.  A sink never blocks the loop and never fails the daemon: it logs its own errors.
 */
#pragma once

#include <systemd/sd-event.h>

#include "conditions.h"

/* Fixed journal MESSAGE_IDs, explained in the catalog (docs/nodehealthd.catalog). */
#define NH_MESSAGE_ID_TRANSITION "44f7e7af1e8242b28149e0e55a8a01e3"
#define NH_MESSAGE_ID_EVENT "296ecd2d745946d8b884b85b2d15056d"

struct nh_sink;

struct nh_sink_ops {
        const char *name;
        void (*start)(struct nh_sink *s, const char *node, const struct nh_table *table);
        void (*transition)(struct nh_sink *s, const char *node, const struct nh_condition *c, enum nh_status old);
        void (*event)(struct nh_sink *s, const char *node, const char *probe, const char *reason, const char *message);
        /* A condition left the table (its probe was removed by a reload); may be NULL. */
        void (*removed)(struct nh_sink *s, const char *node, const char *type);
        void (*free)(struct nh_sink *s);
};

struct nh_sink {
        const struct nh_sink_ops *ops;
};

static inline struct nh_sink *nh_sink_free(struct nh_sink *s) {
        if (s && s->ops->free)
                s->ops->free(s);
        return NULL;
}

enum nh_format {
        NH_FORMAT_TABLE,
        NH_FORMAT_JSON,
        _NH_FORMAT_MAX,
        _NH_FORMAT_INVALID = -22,
};

/* Prints to `out` (not closed): a table and a line per transition, or JSON lines, flushed. */
struct nh_sink *nh_sink_stdout_new(FILE *out, enum nh_format format);

/*
 * One journal record per transition and per event.  Records journald does not take are kept
 * and sent again on `event` (a timer) until it does; NULL: they are not sent again.
 */
struct nh_sink *nh_sink_journal_new(sd_event *event);

/* The JSON NodeCondition, fields in kubectl's order; NULL on allocation failure. */
struct cJSON *nh_condition_to_json(const struct nh_condition *c);
