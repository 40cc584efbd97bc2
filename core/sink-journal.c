/* SPDX-License-Identifier: MIT */
/*
 * The journal sink: one record per transition and per event.  A record journald does not take
 * (it is being restarted: no socket, or nobody on it) is kept, in order, and sent again every
 * RETRY_USEC until journald takes it; later records queue behind it so the journal keeps their
 * order.  The queue is bounded (QUEUE_MAX_RECORDS, QUEUE_MAX_BYTES): past that the oldest go,
 * and the daemon says how many.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "log.h"
#include "sink.h"
#include "util.h"

#define MAX_FIELDS 16
#define QUEUE_MAX_RECORDS 4096
#define QUEUE_MAX_BYTES (4u << 20)
#define RETRY_USEC USEC_PER_SEC

/* One journal record: "FIELD=value" strings, each allocated. */
struct record {
        struct iovec fields[MAX_FIELDS];
        size_t n_fields;
        size_t bytes;
};

struct journal_sink {
        struct nh_sink sink;
        sd_event *event;
        sd_event_source *retry;
        struct record *queue[QUEUE_MAX_RECORDS]; /* a ring: `head` is the oldest */
        size_t head, n_queued, queued_bytes;
        uint64_t dropped; /* since journald last took a record */
        bool failed_logged; /* journald away: said once, not per record */
};

static struct record *record_free(struct record *rec) {
        if (!rec)
                return NULL;
        for (size_t i = 0; i < rec->n_fields; i++)
                free(rec->fields[i].iov_base);
        free(rec);
        return NULL;
}

/* Appends "FIELD=value" (printf-style); false when out of memory or fields. */
_printf_(2, 3) static bool add_field(struct record *rec, const char *format, ...) {
        char *text = NULL;
        va_list ap;
        int n;

        if (rec->n_fields >= MAX_FIELDS)
                return false;
        va_start(ap, format);
        n = vasprintf(&text, format, ap);
        va_end(ap);
        if (n < 0)
                return false;
        rec->fields[rec->n_fields++] = (struct iovec){.iov_base = text, .iov_len = (size_t) n};
        rec->bytes += (size_t) n;
        return true;
}

static int send_record(const struct record *rec) {
        return sd_journal_sendv(rec->fields, (int) rec->n_fields);
}

static void drop_oldest(struct journal_sink *s) {
        struct record *old = s->queue[s->head];

        s->queued_bytes -= old->bytes;
        record_free(old);
        s->queue[s->head] = NULL;
        s->head = (s->head + 1) % QUEUE_MAX_RECORDS;
        s->n_queued--;
        s->dropped++;
}

static void enqueue(struct journal_sink *s, struct record *rec) {
        while (s->n_queued > 0 && (s->n_queued >= QUEUE_MAX_RECORDS || s->queued_bytes + rec->bytes > QUEUE_MAX_BYTES))
                drop_oldest(s);
        s->queue[(s->head + s->n_queued) % QUEUE_MAX_RECORDS] = rec;
        s->n_queued++;
        s->queued_bytes += rec->bytes;
}

static int on_retry(sd_event_source *source, uint64_t usec, void *userdata);

static void arm_retry(struct journal_sink *s) {
        if (!s->event)
                return;
        if (!s->retry) {
                (void) sd_event_add_time_relative(s->event, &s->retry, CLOCK_MONOTONIC, RETRY_USEC, 0, on_retry, s);
                return;
        }
        if (sd_event_source_set_time_relative(s->retry, RETRY_USEC) >= 0)
                (void) sd_event_source_set_enabled(s->retry, SD_EVENT_ONESHOT);
}

/* Sends the queue, oldest first, until journald refuses one.  Returns how many it took. */
static size_t flush(struct journal_sink *s) {
        size_t sent = 0;
        int r = 0;

        while (s->n_queued > 0 && (r = send_record(s->queue[s->head])) >= 0) {
                s->queued_bytes -= s->queue[s->head]->bytes;
                s->queue[s->head] = record_free(s->queue[s->head]);
                s->head = (s->head + 1) % QUEUE_MAX_RECORDS;
                s->n_queued--;
                sent++;
        }
        if (s->n_queued > 0)
                arm_retry(s);
        else if (s->failed_logged) {
                if (s->dropped > 0)
                        log_warning("The journal takes records again: %zu written late; %" PRIu64
                                    " older ones were dropped while it was away",
                                    sent, s->dropped);
                else
                        log_notice("The journal takes records again: %zu written late", sent);
                s->failed_logged = false;
                s->dropped = 0;
        }
        return sent;
}

static int on_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        (void) flush(userdata);
        return 0;
}

/* Sends `rec` (taken), or queues it behind the records journald has not taken yet. */
static void submit(struct journal_sink *s, struct record *rec) {
        int r;

        if (!rec) {
                log_warning("Cannot write to the journal: out of memory; a record is lost");
                return;
        }
        if (s->n_queued == 0) {
                r = send_record(rec);
                if (r >= 0) {
                        record_free(rec);
                        return;
                }
                if (!s->failed_logged) {
                        log_warning_errno(r, "Cannot write to the journal: %m; records are kept and sent again "
                                             "every second until it takes them");
                        s->failed_logged = true;
                }
                arm_retry(s);
        }
        enqueue(s, rec);
}

static struct record *record_new(void) {
        return calloc(1, sizeof(struct record));
}

static void journal_transition(struct nh_sink *sink, const char *node, const struct nh_condition *c,
                               enum nh_status old) {
        struct journal_sink *s = (struct journal_sink *) sink;
        struct record *rec = record_new();
        char when[RFC3339_MAX];

        /* A problem that appears (or sight lost) is a warning; one that clears, a notice. */
        if (rec &&
            !(add_field(rec, "MESSAGE=%s is now %s (%s): %s", c->type, nh_status_to_string(c->status), c->reason,
                        c->message) &&
              add_field(rec, "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION) &&
              add_field(rec, "PRIORITY=%d", c->status == NH_STATUS_FALSE ? LOG_NOTICE : LOG_WARNING) &&
              add_field(rec, "SYSLOG_IDENTIFIER=nodehealthd") && add_field(rec, "NODEHEALTH_NODE=%s", node) &&
              add_field(rec, "NODEHEALTH_CONDITION=%s", c->type) &&
              add_field(rec, "NODEHEALTH_STATUS=%s", nh_status_to_string(c->status)) &&
              add_field(rec, "NODEHEALTH_PREVIOUS_STATUS=%s", nh_status_to_string(old)) &&
              add_field(rec, "NODEHEALTH_REASON=%s", c->reason) &&
              add_field(rec, "NODEHEALTH_MESSAGE=%s", c->message) &&
              add_field(rec, "NODEHEALTH_TRANSITION_TIME=%s", format_rfc3339(when, sizeof(when), c->last_transition))))
                rec = record_free(rec);
        submit(s, rec);
}

static void journal_event(struct nh_sink *sink, const char *node, const char *probe, const char *reason,
                          const char *message) {
        struct journal_sink *s = (struct journal_sink *) sink;
        struct record *rec = record_new();

        if (rec && !(add_field(rec, "MESSAGE=%s", message) && add_field(rec, "MESSAGE_ID=" NH_MESSAGE_ID_EVENT) &&
                     add_field(rec, "PRIORITY=%d", LOG_WARNING) && add_field(rec, "SYSLOG_IDENTIFIER=nodehealthd") &&
                     add_field(rec, "NODEHEALTH_NODE=%s", node) && add_field(rec, "NODEHEALTH_EVENT=%s", reason) &&
                     add_field(rec, "NODEHEALTH_PROBE=%s", probe)))
                rec = record_free(rec);
        submit(s, rec);
}

static void journal_free(struct nh_sink *sink) {
        struct journal_sink *s = (struct journal_sink *) sink;

        /* A last try: the daemon stops, nothing will send them later. */
        (void) flush(s);
        if (s->n_queued > 0 || s->dropped > 0)
                log_warning("%zu journal records were not written (journald away) and are lost",
                            s->n_queued + s->dropped);
        while (s->n_queued > 0) {
                s->queue[s->head] = record_free(s->queue[s->head]);
                s->head = (s->head + 1) % QUEUE_MAX_RECORDS;
                s->n_queued--;
        }
        sd_event_source_disable_unref(s->retry);
        sd_event_unref(s->event);
        free(s);
}

static const struct nh_sink_ops journal_ops = {
        .name = "journal",
        .transition = journal_transition,
        .event = journal_event,
        .free = journal_free,
};

struct nh_sink *nh_sink_journal_new(sd_event *event) {
        struct journal_sink *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->sink.ops = &journal_ops;
        s->event = event ? sd_event_ref(event) : NULL;
        return &s->sink;
}
