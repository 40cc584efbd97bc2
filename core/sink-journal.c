/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "log.h"
#include "sink.h"
#include "util.h"

struct journal_sink {
        struct nh_sink sink;
        bool failed_logged; /* journald away: say so once, not per transition */
};

static void report_failure(struct journal_sink *s, int r) {
        if (r < 0 && !s->failed_logged) {
                log_warning_errno(r, "Cannot write to the journal: %m; transitions are not recorded there");
                s->failed_logged = true;
        } else if (r >= 0)
                s->failed_logged = false;
}

static void journal_transition(struct nh_sink *sink, const char *node, const struct nh_condition *c,
                               enum nh_status old) {
        struct journal_sink *s = (struct journal_sink *) sink;
        char when[RFC3339_MAX];
        int r;

        /* A problem that appears (or sight lost) is a warning; one that clears, a notice. */
        r = sd_journal_send("MESSAGE=%s is now %s (%s): %s", c->type, nh_status_to_string(c->status), c->reason,
                            c->message, "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION, "PRIORITY=%d",
                            c->status == NH_STATUS_FALSE ? LOG_NOTICE : LOG_WARNING, "SYSLOG_IDENTIFIER=nodehealthd",
                            "NODEHEALTH_NODE=%s", node, "NODEHEALTH_CONDITION=%s", c->type, "NODEHEALTH_STATUS=%s",
                            nh_status_to_string(c->status), "NODEHEALTH_PREVIOUS_STATUS=%s", nh_status_to_string(old),
                            "NODEHEALTH_REASON=%s", c->reason, "NODEHEALTH_MESSAGE=%s", c->message,
                            "NODEHEALTH_TRANSITION_TIME=%s", format_rfc3339(when, sizeof(when), c->last_transition),
                            NULL);
        report_failure(s, r);
}

static void journal_event(struct nh_sink *sink, const char *node, const char *probe, const char *reason,
                          const char *message) {
        struct journal_sink *s = (struct journal_sink *) sink;
        int r;

        r = sd_journal_send("MESSAGE=%s", message, "MESSAGE_ID=" NH_MESSAGE_ID_EVENT, "PRIORITY=%d", LOG_WARNING,
                            "SYSLOG_IDENTIFIER=nodehealthd", "NODEHEALTH_NODE=%s", node, "NODEHEALTH_EVENT=%s", reason,
                            "NODEHEALTH_PROBE=%s", probe, NULL);
        report_failure(s, r);
}

static void journal_free(struct nh_sink *sink) {
        free(sink);
}

static const struct nh_sink_ops journal_ops = {
        .name = "journal",
        .transition = journal_transition,
        .event = journal_event,
        .free = journal_free,
};

struct nh_sink *nh_sink_journal_new(void) {
        struct journal_sink *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->sink.ops = &journal_ops;
        return &s->sink;
}
