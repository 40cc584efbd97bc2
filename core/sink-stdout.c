/* SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sink.h"
#include "util.h"

/* Events of the first cycle wait for the start table: the first line is always the table. */
#define PENDING_MAX 32

struct pending_event {
        char *probe, *reason, *message;
        uint64_t when;
};

struct stdout_sink {
        struct nh_sink sink;
        FILE *out;
        enum nh_format format;
        bool started; /* transitions of the first cycle are part of the start table */
        struct pending_event pending[PENDING_MAX];
        size_t n_pending, n_dropped;
};

static void print_event(struct stdout_sink *s, const char *node, const char *probe, const char *reason,
                        const char *message, uint64_t when);

cJSON *nh_condition_to_json(const struct nh_condition *c) {
        char heartbeat[RFC3339_MAX], transition[RFC3339_MAX];
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        if (!cJSON_AddStringToObject(o, "type", c->type) ||
            !cJSON_AddStringToObject(o, "status", nh_status_to_string(c->status)) ||
            !cJSON_AddStringToObject(o, "lastHeartbeatTime",
                                     format_rfc3339(heartbeat, sizeof(heartbeat), c->last_heartbeat)) ||
            !cJSON_AddStringToObject(o, "lastTransitionTime",
                                     format_rfc3339(transition, sizeof(transition), c->last_transition)) ||
            !cJSON_AddStringToObject(o, "reason", c->reason ? c->reason : "") ||
            !cJSON_AddStringToObject(o, "message", c->message ? c->message : "")) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

static void print_json(struct stdout_sink *s, cJSON *o) {
        char *text = o ? cJSON_PrintUnformatted(o) : NULL;

        if (!text) {
                log_error("Out of memory while printing a JSON line");
                return;
        }
        fputs(text, s->out);
        fputc('\n', s->out);
        fflush(s->out);
        free(text);
}

static int column(size_t *width, const char *text) {
        size_t n = strlen(text);
        if (n > *width)
                *width = n;
        return (int) *width;
}

static void print_table(struct stdout_sink *s, const char *node, const struct nh_table *table) {
        size_t w_type = 4, w_status = 6, w_reason = 6;
        char since[RFC3339_MAX];

        for (size_t i = 0; i < nh_table_size(table); i++) {
                const struct nh_condition *c = nh_table_get(table, i);
                column(&w_type, c->type);
                column(&w_status, nh_status_to_string(c->status));
                column(&w_reason, c->reason);
        }
        fprintf(s->out, "Node %s\n", node);
        fprintf(s->out, "%-*s  %-*s  %-*s  %-20s  %s\n", (int) w_type, "TYPE", (int) w_status, "STATUS", (int) w_reason,
                "REASON", "SINCE", "MESSAGE");
        for (size_t i = 0; i < nh_table_size(table); i++) {
                const struct nh_condition *c = nh_table_get(table, i);
                fprintf(s->out, "%-*s  %-*s  %-*s  %-20s  %s\n", (int) w_type, c->type, (int) w_status,
                        nh_status_to_string(c->status), (int) w_reason, c->reason,
                        format_rfc3339(since, sizeof(since), c->last_transition), c->message);
        }
        fflush(s->out);
}

static void flush_pending(struct stdout_sink *s, const char *node) {
        for (size_t i = 0; i < s->n_pending; i++) {
                struct pending_event *e = &s->pending[i];
                print_event(s, node, e->probe, e->reason, e->message, e->when);
                free(e->probe);
                free(e->reason);
                free(e->message);
        }
        if (s->n_dropped > 0)
                log_warning("%zu events of the first cycle were not printed (more than %d)", s->n_dropped, PENDING_MAX);
        s->n_pending = s->n_dropped = 0;
}

static void stdout_start(struct nh_sink *sink, const char *node, const struct nh_table *table) {
        struct stdout_sink *s = (struct stdout_sink *) sink;

        s->started = true;
        if (s->format == NH_FORMAT_TABLE) {
                print_table(s, node, table);
                flush_pending(s, node);
                return;
        }

        cJSON *o = cJSON_CreateObject();
        cJSON *list = NULL;
        if (o && cJSON_AddStringToObject(o, "node", node))
                list = cJSON_AddArrayToObject(o, "conditions");
        for (size_t i = 0; list && i < nh_table_size(table); i++)
                cJSON_AddItemToArray(list, nh_condition_to_json(nh_table_get(table, i)));
        print_json(s, o);
        cJSON_Delete(o);
        flush_pending(s, node);
}

static void stdout_transition(struct nh_sink *sink, const char *node, const struct nh_condition *c,
                              enum nh_status old) {
        struct stdout_sink *s = (struct stdout_sink *) sink;
        char when[RFC3339_MAX];

        if (!s->started)
                return;
        if (s->format == NH_FORMAT_TABLE) {
                fprintf(s->out, "%s  %s  %s -> %s  %s: %s\n", format_rfc3339(when, sizeof(when), c->last_transition),
                        c->type, nh_status_to_string(old), nh_status_to_string(c->status), c->reason, c->message);
                fflush(s->out);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        if (o && cJSON_AddStringToObject(o, "node", node))
                cJSON_AddItemToObject(o, "condition", nh_condition_to_json(c));
        print_json(s, o);
        cJSON_Delete(o);
}

static void stdout_event(struct nh_sink *sink, const char *node, const char *probe, const char *reason,
                         const char *message) {
        struct stdout_sink *s = (struct stdout_sink *) sink;
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (s->started) {
                print_event(s, node, probe, reason, message, now);
                return;
        }
        if (s->n_pending >= PENDING_MAX) {
                s->n_dropped++;
                return;
        }
        struct pending_event *e = &s->pending[s->n_pending];
        *e = (struct pending_event){
                .probe = strdup(probe), .reason = strdup(reason), .message = strdup(message), .when = now};
        if (!e->probe || !e->reason || !e->message) {
                free(e->probe);
                free(e->reason);
                free(e->message);
                s->n_dropped++;
                return;
        }
        s->n_pending++;
}

static void print_event(struct stdout_sink *s, const char *node, const char *probe, const char *reason,
                        const char *message, uint64_t when_usec) {
        char when[RFC3339_MAX];

        if (s->format == NH_FORMAT_TABLE) {
                fprintf(s->out, "%s  event %s from %s: %s\n", format_rfc3339(when, sizeof(when), when_usec), reason,
                        probe, message);
                fflush(s->out);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *e = cJSON_CreateObject();
        if (o && e && cJSON_AddStringToObject(o, "node", node) && cJSON_AddStringToObject(e, "reason", reason) &&
            cJSON_AddStringToObject(e, "message", message) && cJSON_AddStringToObject(e, "type", "Warning")) {
                cJSON_AddItemToObject(o, "event", e);
                e = NULL;
        }
        cJSON_Delete(e);
        print_json(s, o);
        cJSON_Delete(o);
}

static void stdout_free(struct nh_sink *sink) {
        struct stdout_sink *s = (struct stdout_sink *) sink;

        for (size_t i = 0; i < s->n_pending; i++) {
                free(s->pending[i].probe);
                free(s->pending[i].reason);
                free(s->pending[i].message);
        }
        free(sink);
}

static const struct nh_sink_ops stdout_ops = {
        .name = "stdout",
        .start = stdout_start,
        .transition = stdout_transition,
        .event = stdout_event,
        .free = stdout_free,
};

struct nh_sink *nh_sink_stdout_new(FILE *out, enum nh_format format) {
        struct stdout_sink *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->sink.ops = &stdout_ops;
        s->out = out;
        s->format = format;
        return &s->sink;
}
