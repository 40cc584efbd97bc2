/* SPDX-License-Identifier: MIT */
#include "sink-kubernetes.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "kube-client.h"
#include "log.h"
#include "util.h"

#define COALESCE_DELAY (20 * USEC_PER_MSEC)
#define BACKOFF_MIN (1 * USEC_PER_SEC)
#define BACKOFF_MAX (300 * USEC_PER_SEC)
#define START_JITTER_MAX (30 * USEC_PER_SEC)
#define REQUEST_TIMEOUT (20 * USEC_PER_SEC)
/* Status writes: a burst goes out at once, a flapping probe costs one write per refill. */
#define STATUS_BURST 10.0
#define STATUS_REFILL (30 * USEC_PER_SEC)
/* Events, as client-go's recorder: burst 25, one more per 5 minutes; fold >10 similar in 10 min. */
#define EVENT_BURST 25.0
#define EVENT_REFILL (300 * USEC_PER_SEC)
#define EVENT_SIMILAR_MAX 10
#define EVENT_SIMILAR_WINDOW (600 * USEC_PER_SEC)
#define EVENT_CACHE_MAX 64
#define SIMILAR_CACHE_MAX 64
#define DROP_LOG_INTERVAL (300 * USEC_PER_SEC)
#define TEXT_MAX 1024 /* bytes of a message sent to the server */

#define STRATEGIC_MERGE "application/strategic-merge-patch+json"
#define AGGREGATE_PREFIX "(combined from similar events): "

static void cJSON_Deletep(cJSON **p) {
        if (*p)
                cJSON_Delete(*p);
}

/* What the Node says about one type (or what we last wrote there). */
struct remote {
        char *type;
        enum nh_status status;
        uint64_t transition; /* realtime µs */
        bool held; /* ours, without a verdict yet here (NotYetObserved, AwaitingConfirmation): left as it is */
};

/* A first verdict that came before the Node was read: news only if the Node says otherwise. */
struct deferred {
        char *type, *reason, *message;
        enum nh_status status;
};

struct kevent {
        uint64_t id;
        char *type, *reason, *message; /* type is "Normal" or "Warning" */
        char *key; /* message, or AGGREGATE_PREFIX for a folded series */
        char *name; /* the Event's name once a POST was tried */
        bool posted; /* exists on the server */
        uint64_t count, synced; /* occurrences; how many the server knows of */
        uint64_t first, last; /* realtime µs */
        uint64_t pending_since; /* monotonic µs it became unsynced: oldest goes first */
        uint64_t used; /* LRU tick */
};

/* Events of one type and reason: the different messages seen lately, for folding. */
struct similar {
        char *type, *reason;
        uint64_t last; /* monotonic µs of the last one: the window slides, as client-go's does */
        uint64_t messages[EVENT_SIMILAR_MAX]; /* hashes of the different messages */
        unsigned n;
        uint64_t used;
};

struct bucket {
        double tokens, burst;
        uint64_t refill; /* µs per token */
        uint64_t at; /* monotonic µs of the last update */
};

enum channel {
        CHANNEL_GET,
        CHANNEL_STATUS,
        CHANNEL_EVENT_POST,
        CHANNEL_EVENT_PATCH,
        _CHANNEL_MAX,
};

/* The Node and the Events back off separately: a missing events rule must not slow the status. */
enum lane {
        LANE_NODE,
        LANE_EVENTS,
        _LANE_MAX,
};

struct backoff {
        uint64_t blocked_until; /* monotonic µs */
        unsigned failures;
        uint64_t outage_since; /* realtime µs of the first failure; 0 when fine */
        char *last_failure; /* what was logged last, to say it once */
};

struct kube_sink {
        struct nh_sink sink;
        sd_event *event;
        sd_event_source *timer;
        struct nh_kube_client *client;
        char *node, *node_path;
        uint64_t heartbeat;
        bool events_enabled;
        const struct nh_table *table; /* from start on */

        /* The Node as the GET found it. */
        bool have_node;
        bool get_in_flight;
        uint64_t get_due;
        char *uid;
        char **owned_before; /* from the annotation; after a PATCH, what it says now */
        struct remote *remote;
        size_t n_remote;
        struct deferred *deferred;
        size_t n_deferred;

        /* Status writes. */
        bool status_dirty, status_in_flight, heartbeat_now, sent_once;
        uint64_t status_due, heartbeat_due;
        struct bucket status_bucket;
        char **sending_types; /* of the PATCH in flight: what the Node has once it succeeds */
        enum nh_status *sending_status;
        uint64_t *sending_transition;
        size_t n_sending;

        struct backoff backoff[_LANE_MAX];
        char *last_warning;

        /* Events. */
        struct kevent events[EVENT_CACHE_MAX];
        size_t n_events;
        struct similar similar[SIMILAR_CACHE_MAX];
        size_t n_similar;
        uint64_t tick, next_id, name_seq;
        bool event_in_flight;
        uint64_t sending_event_id, sending_event_count;
        struct bucket event_bucket;
        uint64_t dropped_rate, dropped_overflow, dropped_refused, dropped_logged_at;
};

/* ---- small helpers ---- */

static uint64_t random_u64(void) {
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_usec(CLOCK_MONOTONIC) * 6364136223846793005ull + 1442695040888963407ull;
        return v;
}

/* Uniform in [0, max]. */
static uint64_t jitter(uint64_t max) {
        return max ? random_u64() % (max + 1) : 0;
}

static uint64_t mono_now(struct kube_sink *s) {
        uint64_t t;

        if (sd_event_now(s->event, CLOCK_MONOTONIC, &t) < 0)
                t = now_usec(CLOCK_MONOTONIC);
        return t;
}

static void bucket_refill(struct bucket *b, uint64_t now) {
        if (now > b->at) {
                b->tokens += (double) (now - b->at) / (double) b->refill;
                if (b->tokens > b->burst)
                        b->tokens = b->burst;
        }
        b->at = now;
}

/* When the bucket will hold a whole token. */
static uint64_t bucket_ready_at(struct bucket *b, uint64_t now) {
        bucket_refill(b, now);
        if (b->tokens >= 1.0)
                return now;
        return now + (uint64_t) ((1.0 - b->tokens) * (double) b->refill) + 1;
}

/* A copy of at most TEXT_MAX bytes, cut on a UTF-8 character boundary. */
static char *text_dup(const char *s) {
        size_t n = strlen(s);

        if (n <= TEXT_MAX)
                return strdup(s);
        n = TEXT_MAX;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        return strndup(s, n);
}

static char *url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
                        *p++ = (char) ch;
                else {
                        *p++ = '%';
                        *p++ = hex[ch >> 4];
                        *p++ = hex[ch & 15];
                }
        }
        *p = '\0';
        return out;
}

static struct remote *find_remote(struct kube_sink *s, const char *type) {
        for (size_t i = 0; i < s->n_remote; i++)
                if (strcmp(s->remote[i].type, type) == 0)
                        return &s->remote[i];
        return NULL;
}

static void remote_clear(struct kube_sink *s) {
        for (size_t i = 0; i < s->n_remote; i++)
                free(s->remote[i].type);
        free(s->remote);
        s->remote = NULL;
        s->n_remote = 0;
}

static int remote_set(struct kube_sink *s, const char *type, enum nh_status status, uint64_t transition) {
        struct remote *r = find_remote(s, type);

        if (!r) {
                struct remote *grown = realloc(s->remote, (s->n_remote + 1) * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                s->remote = grown;
                r = &grown[s->n_remote];
                *r = (struct remote){.type = strdup(type)};
                if (!r->type)
                        return -ENOMEM;
                s->n_remote++;
        }
        r->status = status;
        r->transition = transition;
        return 0;
}

static void remote_remove(struct kube_sink *s, const char *type) {
        struct remote *r = find_remote(s, type);

        if (!r)
                return;
        free(r->type);
        *r = s->remote[--s->n_remote];
}

/* Unknown only because the probe has no verdict yet: never reported, or a problem not yet confirmed. */
static bool is_not_yet_observed(const struct nh_condition *c) {
        return c->status == NH_STATUS_UNKNOWN && (streq_null(c->reason, NH_REASON_NOT_YET_OBSERVED) ||
                                                  streq_null(c->reason, NH_REASON_AWAITING_CONFIRMATION));
}

/* A condition still waiting for its first verdict is left as the Node has it, when the Node has one. */
static void update_held(struct kube_sink *s) {
        for (size_t i = 0; s->table && i < nh_table_size(s->table); i++) {
                const struct nh_condition *c = nh_table_get(s->table, i);
                struct remote *r = find_remote(s, c->type);
                if (r)
                        r->held = is_not_yet_observed(c) && r->status != NH_STATUS_UNKNOWN;
        }
}

/* ---- describing failures ---- */

/* The Status object's message (or a plain-text body, shortened). */
static char *server_message(const struct nh_kube_response *resp) {
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_size);
        const char *m = j ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "message")) : NULL;
        char *out;

        if (m)
                return strndup(m, 400);
        out = strndup(resp->body, 200);
        if (out) {
                for (char *p = out; *p; p++)
                        if ((unsigned char) *p < 0x20)
                                *p = ' ';
                strstrip(out);
        }
        return out;
}

static const char *http_reason(long status) {
        switch (status) {
        case 400:
                return "Bad Request";
        case 401:
                return "Unauthorized";
        case 403:
                return "Forbidden";
        case 404:
                return "Not Found";
        case 409:
                return "Conflict";
        case 415:
                return "Unsupported Media Type";
        case 422:
                return "Unprocessable Entity";
        case 429:
                return "Too Many Requests";
        case 500:
                return "Internal Server Error";
        case 502:
                return "Bad Gateway";
        case 503:
                return "Service Unavailable";
        case 504:
                return "Gateway Timeout";
        default:
                return "";
        }
}

static char *describe(const struct nh_kube_response *resp) {
        _cleanup_free_ char *m = NULL;
        char *out = NULL;

        if (resp->status == 0) {
                if (asprintf(&out, "%s%s (%s)", resp->tls_error ? "TLS failure: " : "",
                             resp->error_text && *resp->error_text ? resp->error_text : "no reply",
                             strerror(-resp->error)) < 0)
                        return NULL;
                return out;
        }
        m = server_message(resp);
        if (asprintf(&out, "HTTP %ld %s%s%s", resp->status, http_reason(resp->status), m && *m ? ": " : "",
                     m ? m : "") < 0)
                return NULL;
        return out;
}

static const char *const channel_what[_CHANNEL_MAX] = {
        [CHANNEL_GET] = "read",
        [CHANNEL_STATUS] = "patch the status of",
        [CHANNEL_EVENT_POST] = "create an Event about",
        [CHANNEL_EVENT_PATCH] = "update an Event about",
};

/* The RBAC rule each request needs, as a person would add it to a ClusterRole. */
static const char *const channel_rule[_CHANNEL_MAX] = {
        [CHANNEL_GET] = "verbs [get] on resource \"nodes\"",
        [CHANNEL_STATUS] = "verbs [patch] on resource \"nodes/status\"",
        [CHANNEL_EVENT_POST] = "verbs [create] on resource \"events\"",
        [CHANNEL_EVENT_PATCH] = "verbs [patch] on resource \"events\"",
};

/* ---- the scheduler ---- */

static void schedule(struct kube_sink *s);

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        schedule(userdata);
        return 0;
}

static void arm(struct kube_sink *s, uint64_t when) {
        if (when == UINT64_MAX) {
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_set_time(s->timer, when) < 0 || sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT) < 0)
                log_warning("Cannot arm the Kubernetes sink's timer: reporting may stall");
}

static uint64_t backoff_delay(unsigned failures) {
        uint64_t d = BACKOFF_MIN;

        for (unsigned i = 1; i < failures && d < BACKOFF_MAX; i++)
                d *= 2;
        if (d > BACKOFF_MAX)
                d = BACKOFF_MAX;
        /* Between half and all of it: a cluster's nodes do not come back in step. */
        return d / 2 + jitter(d / 2);
}

static enum lane lane_of(enum channel ch) {
        return ch == CHANNEL_GET || ch == CHANNEL_STATUS ? LANE_NODE : LANE_EVENTS;
}

static void succeeded(struct kube_sink *s, enum channel ch) {
        struct backoff *b = &s->backoff[lane_of(ch)];

        if (b->outage_since) {
                char since[RFC3339_MAX];
                log_info("Could %s node %s again (failing since %s, %u attempts)", channel_what[ch], s->node,
                         format_rfc3339(since, sizeof(since), b->outage_since), b->failures);
        }
        b->failures = 0;
        b->outage_since = 0;
        free(b->last_failure);
        b->last_failure = NULL;
}

/* Closes the lane for the next backoff step (at least `at_least`); returns the delay. */
static uint64_t back_off(struct kube_sink *s, enum lane lane, uint64_t at_least) {
        struct backoff *b = &s->backoff[lane];
        uint64_t now = mono_now(s), delay;

        b->failures++;
        delay = backoff_delay(b->failures);
        if (delay < at_least)
                delay = at_least;
        if (b->blocked_until < now + delay)
                b->blocked_until = now + delay;
        if (!b->outage_since)
                b->outage_since = now_usec(CLOCK_REALTIME);
        return delay;
}

static void note_warning(struct kube_sink *s, const struct nh_kube_response *resp) {
        if (!resp->warning || streq_null(resp->warning, s->last_warning))
                return;
        log_warning("The API server warns: %s", resp->warning);
        free(s->last_warning);
        s->last_warning = strdup(resp->warning);
}

/*
 * A request failed in a way worth retrying: close the gate for a backoff (at least
 * Retry-After), and log what happened, once per kind of failure.
 */
static void failed(struct kube_sink *s, enum channel ch, const struct nh_kube_response *resp) {
        _cleanup_free_ char *what = describe(resp);
        struct backoff *b = &s->backoff[lane_of(ch)];
        uint64_t at_least = 0, delay;
        char delay_text[32];

        /* At least what the server asked, plus a little so that nodes do not return together. */
        if (resp->status == 429 && resp->retry_after > 0)
                at_least = resp->retry_after + jitter(resp->retry_after / 10 + USEC_PER_SEC / 10);
        delay = back_off(s, lane_of(ch), at_least);
        format_duration(delay_text, sizeof(delay_text), delay / USEC_PER_MSEC * USEC_PER_MSEC);

        if (what && streq_null(what, b->last_failure)) {
                log_debug("Cannot %s node %s: %s; retrying in %s", channel_what[ch], s->node, what, delay_text);
                return;
        }
        free(b->last_failure);
        b->last_failure = what ? strdup(what) : NULL;

        if (resp->status == 403)
                log_error("The API server at %s forbids us to %s node %s (%s). The daemon's identity needs the "
                          "RBAC rule: apiGroups [\"\"], %s (the ClusterRole system:node-problem-detector has it). "
                          "Retrying in %s; conditions are still reported locally",
                          nh_kube_client_server(s->client), channel_what[ch], s->node, what ? what : "403",
                          channel_rule[ch], delay_text);
        else if (resp->status == 401)
                log_error("The API server at %s refuses our credentials (%s)%s. Retrying in %s",
                          nh_kube_client_server(s->client), what ? what : "401",
                          resp->retried_after_401 ? ", also after re-reading the token file" : "", delay_text);
        else if (resp->status == 0 && resp->tls_error)
                log_error("Cannot talk to the API server at %s over TLS: %s. Is the CA right (certificate-authority, "
                          "--ca-file, ca.crt)? Retrying in %s",
                          nh_kube_client_server(s->client), what ? what : "TLS failure", delay_text);
        else
                log_warning("Cannot %s node %s at %s: %s; retrying in %s (conditions are still reported locally)",
                            channel_what[ch], s->node, nh_kube_client_server(s->client), what ? what : "failure",
                            delay_text);
}

/* A reply that retrying the same request cannot fix (400, 415, 422, …): a bug to report. */
static void refused(struct kube_sink *s, enum channel ch, const struct nh_kube_response *resp) {
        _cleanup_free_ char *what = describe(resp);

        log_error("The API server refused to %s node %s: %s", channel_what[ch], s->node, what ? what : "error");
}

enum verdict {
        VERDICT_OK,
        VERDICT_RETRY, /* back off and try again */
        VERDICT_NOT_FOUND,
        VERDICT_REFUSED, /* do not retry this request */
};

static enum verdict judge(const struct nh_kube_response *resp) {
        if (resp->status >= 200 && resp->status < 300)
                return VERDICT_OK;
        if (resp->status == 404)
                return VERDICT_NOT_FOUND;
        if (resp->status == 0 || resp->status >= 500 || resp->status == 429 || resp->status == 401 ||
            resp->status == 403 || resp->status == 409 || resp->status == 408)
                return VERDICT_RETRY;
        return VERDICT_REFUSED;
}

/* ---- the Node ---- */

static int parse_node(struct kube_sink *s, const struct nh_kube_response *resp) {
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_size);
        const cJSON *meta, *annotations, *conditions, *c;
        const char *uid, *owned;
        int r;

        if (!j)
                return -EBADMSG;
        meta = cJSON_GetObjectItem(j, "metadata");
        uid = cJSON_GetStringValue(cJSON_GetObjectItem(meta, "uid"));
        free(s->uid);
        s->uid = strdup_null(uid);
        if (uid && !s->uid)
                return -ENOMEM;

        annotations = cJSON_GetObjectItem(meta, "annotations");
        owned = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(annotations, NH_KUBE_OWNED_ANNOTATION));
        s->owned_before = strv_free(s->owned_before);
        for (const char *p = owned; p && *p;) {
                const char *end = strchrnul(p, ',');
                if (end > p) {
                        char *t = strndup(p, (size_t) (end - p));
                        if (!t || strv_push(&s->owned_before, t) < 0) {
                                free(t);
                                return -ENOMEM;
                        }
                }
                p = *end ? end + 1 : end;
        }

        remote_clear(s);
        conditions = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "status"), "conditions");
        cJSON_ArrayForEach(c, conditions) {
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(c, "type"));
                enum nh_status st = nh_status_from_string(cJSON_GetStringValue(cJSON_GetObjectItem(c, "status")));
                uint64_t t = 0;

                if (!type || st < 0)
                        continue;
                (void) parse_rfc3339(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastTransitionTime")), &t);
                r = remote_set(s, type, st, t);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void record_event(struct kube_sink *s, const char *type, const char *reason, const char *message);

static void deferred_clear(struct kube_sink *s) {
        for (size_t i = 0; i < s->n_deferred; i++) {
                free(s->deferred[i].type);
                free(s->deferred[i].reason);
                free(s->deferred[i].message);
        }
        free(s->deferred);
        s->deferred = NULL;
        s->n_deferred = 0;
}

static const char *event_type(enum nh_status status) {
        return status == NH_STATUS_FALSE ? "Normal" : "Warning";
}

static void defer_first_verdict(struct kube_sink *s, const struct nh_condition *c) {
        struct deferred *d = NULL;

        for (size_t i = 0; i < s->n_deferred; i++)
                if (strcmp(s->deferred[i].type, c->type) == 0)
                        d = &s->deferred[i];
        if (!d) {
                struct deferred *grown = realloc(s->deferred, (s->n_deferred + 1) * sizeof(*grown));
                if (!grown)
                        return;
                s->deferred = grown;
                d = &grown[s->n_deferred];
                *d = (struct deferred){.type = strdup(c->type)};
                if (!d->type)
                        return;
                s->n_deferred++;
        }
        free(d->reason);
        free(d->message);
        d->status = c->status;
        d->reason = strdup(c->reason ? c->reason : "");
        d->message = strdup(c->message && *c->message ? c->message : c->type);
}

/* The Node is known: the deferred first verdicts that differ from it are Events after all. */
static void flush_deferred(struct kube_sink *s) {
        for (size_t i = 0; i < s->n_deferred; i++) {
                const struct deferred *d = &s->deferred[i];
                const struct remote *r = find_remote(s, d->type);
                if (d->reason && d->message && !(r && r->status == d->status))
                        record_event(s, event_type(d->status), d->reason, d->message);
        }
        deferred_clear(s);
}

static void on_get_done(void *userdata, const struct nh_kube_response *resp) {
        struct kube_sink *s = userdata;
        int r;

        s->get_in_flight = false;
        note_warning(s, resp);
        switch (judge(resp)) {
        case VERDICT_OK:
                r = parse_node(s, resp);
                if (r < 0) {
                        log_warning_errno(r, "Cannot read the Node %s the API server sent: %m", s->node);
                        failed(s, CHANNEL_GET, &(struct nh_kube_response){.status = 500, .body = "unreadable Node"});
                        break;
                }
                succeeded(s, CHANNEL_GET);
                s->have_node = true;
                update_held(s);
                flush_deferred(s);
                log_info("Node %s found on the API server with %zu conditions, %zu of them owned by nodehealthd",
                         s->node, s->n_remote, strv_length(s->owned_before));
                s->status_dirty = true;
                s->status_due = mono_now(s);
                break;
        case VERDICT_NOT_FOUND: {
                char delay_text[32];
                uint64_t delay = back_off(s, LANE_NODE, 0);
                format_duration(delay_text, sizeof(delay_text), delay / USEC_PER_SEC * USEC_PER_SEC);
                log_error("Node %s does not exist on the API server at %s (404): is the node name right "
                          "(--node-name, $NODE_NAME, the hostname), and has the kubelet registered it? Retrying "
                          "in %s; conditions are still reported locally",
                          s->node, nh_kube_client_server(s->client), delay_text);
                break;
        }
        case VERDICT_RETRY:
                failed(s, CHANNEL_GET, resp);
                break;
        case VERDICT_REFUSED:
                refused(s, CHANNEL_GET, resp);
                failed(s, CHANNEL_GET, resp); /* the Node is needed: keep trying, slowly */
                break;
        }
        schedule(s);
}

static void send_get(struct kube_sink *s) {
        int r = nh_kube_client_request(s->client, "GET", s->node_path, NULL, NULL, REQUEST_TIMEOUT, on_get_done, s);

        if (r < 0) {
                log_warning_errno(r, "Cannot queue a request to the API server: %m");
                (void) back_off(s, LANE_NODE, 0);
                return;
        }
        s->get_in_flight = true;
}

/* ---- the status PATCH ---- */

static void sending_clear(struct kube_sink *s) {
        for (size_t i = 0; i < s->n_sending; i++)
                free(s->sending_types[i]);
        free(s->sending_types);
        free(s->sending_status);
        free(s->sending_transition);
        s->sending_types = NULL;
        s->sending_status = NULL;
        s->sending_transition = NULL;
        s->n_sending = 0;
}

static bool is_orphan(struct kube_sink *s, const char *type) {
        /* Never delete a type the kubelet or the CNI writes, even one we took over before. */
        return !nh_table_find(s->table, type) && !nh_condition_owner(type);
}

static cJSON *condition_json(const struct nh_condition *c, uint64_t transition, uint64_t heartbeat) {
        char hb[RFC3339_MAX], tt[RFC3339_MAX];
        _cleanup_free_ char *reason = text_dup(c->reason ? c->reason : "");
        _cleanup_free_ char *message = text_dup(c->message ? c->message : "");
        cJSON *o = cJSON_CreateObject();

        /* Every field, always: a strategic merge keeps an omitted field's old value. */
        if (!o || !reason || !message || !cJSON_AddStringToObject(o, "type", c->type) ||
            !cJSON_AddStringToObject(o, "status", nh_status_to_string(c->status)) ||
            !cJSON_AddStringToObject(o, "lastHeartbeatTime", format_rfc3339(hb, sizeof(hb), heartbeat)) ||
            !cJSON_AddStringToObject(o, "lastTransitionTime", format_rfc3339(tt, sizeof(tt), transition)) ||
            !cJSON_AddStringToObject(o, "reason", reason) || !cJSON_AddStringToObject(o, "message", message)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

/* The patch for the current table; remembers what it writes in s->sending_*. */
static char *build_status_patch(struct kube_sink *s) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        _cleanup_free_ char *owned = NULL;
        size_t owned_len = 0, n = nh_table_size(s->table);
        uint64_t now = now_usec(CLOCK_REALTIME);
        cJSON *meta, *annotations, *status, *list;
        FILE *f;

        sending_clear(s);
        if (!root)
                return NULL;
        s->sending_types = calloc(n + 1, sizeof(char *));
        s->sending_status = calloc(n + 1, sizeof(enum nh_status));
        s->sending_transition = calloc(n + 1, sizeof(uint64_t));
        if (!s->sending_types || !s->sending_status || !s->sending_transition)
                return NULL;

        f = open_memstream(&owned, &owned_len);
        if (!f)
                return NULL;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%s", i ? "," : "", nh_table_get(s->table, i)->type);
        if (fclose(f) != 0 || !owned)
                return NULL;

        meta = cJSON_AddObjectToObject(root, "metadata");
        annotations = meta ? cJSON_AddObjectToObject(meta, "annotations") : NULL;
        if (!annotations || !cJSON_AddStringToObject(annotations, NH_KUBE_OWNED_ANNOTATION, owned))
                return NULL;
        status = cJSON_AddObjectToObject(root, "status");
        list = status ? cJSON_AddArrayToObject(status, "conditions") : NULL;
        if (!list)
                return NULL;

        update_held(s);
        for (size_t i = 0; i < n; i++) {
                const struct nh_condition *c = nh_table_get(s->table, i);
                struct remote *r = find_remote(s, c->type);
                uint64_t transition = c->last_transition;

                if (r && r->held)
                        continue;
                /* The same status as on the Node: its transition time stands (a restart keeps it). */
                if (r && r->status == c->status && r->transition)
                        transition = r->transition;
                cJSON *o = condition_json(c, transition, now);
                if (!o || !cJSON_AddItemToArray(list, o)) {
                        cJSON_Delete(o);
                        return NULL;
                }
                s->sending_types[s->n_sending] = strdup(c->type);
                if (!s->sending_types[s->n_sending])
                        return NULL;
                s->sending_status[s->n_sending] = c->status;
                s->sending_transition[s->n_sending] = transition;
                s->n_sending++;
        }
        for (size_t i = 0; s->owned_before && s->owned_before[i]; i++) {
                if (!is_orphan(s, s->owned_before[i]))
                        continue;
                cJSON *o = cJSON_CreateObject();
                if (!o || !cJSON_AddStringToObject(o, "type", s->owned_before[i]) ||
                    !cJSON_AddStringToObject(o, "$patch", "delete") || !cJSON_AddItemToArray(list, o)) {
                        cJSON_Delete(o);
                        return NULL;
                }
        }
        if (cJSON_GetArraySize(list) == 0)
                cJSON_DeleteItemFromObject(root, "status"); /* only the annotation to write */
        return cJSON_PrintUnformatted(root);
}

static void schedule_heartbeat(struct kube_sink *s, uint64_t now) {
        uint64_t spread = s->heartbeat / 10;

        s->heartbeat_due = now + s->heartbeat - spread + jitter(2 * spread);
}

static void on_status_done(void *userdata, const struct nh_kube_response *resp) {
        struct kube_sink *s = userdata;
        uint64_t now = mono_now(s);

        s->status_in_flight = false;
        note_warning(s, resp);
        switch (judge(resp)) {
        case VERDICT_OK:
                succeeded(s, CHANNEL_STATUS);
                for (size_t i = 0; i < s->n_sending; i++)
                        (void) remote_set(s, s->sending_types[i], s->sending_status[i], s->sending_transition[i]);
                for (size_t i = 0; s->owned_before && s->owned_before[i]; i++)
                        if (is_orphan(s, s->owned_before[i]))
                                remote_remove(s, s->owned_before[i]);
                /* The annotation now says what the table holds: nothing else is an orphan. */
                s->owned_before = strv_free(s->owned_before);
                for (size_t i = 0; i < nh_table_size(s->table); i++) {
                        char *t = strdup(nh_table_get(s->table, i)->type);
                        if (!t || strv_push(&s->owned_before, t) < 0)
                                free(t);
                }
                if (!s->sent_once)
                        log_info("Node %s: %zu conditions reported to the API server", s->node, s->n_sending);
                s->sent_once = true;
                schedule_heartbeat(s, now);
                break;
        case VERDICT_NOT_FOUND:
                /* The Node went away (deleted, re-registering): find it again before writing. */
                log_error("Node %s no longer exists on the API server (404); looking for it again", s->node);
                s->have_node = false;
                s->status_dirty = true;
                (void) back_off(s, LANE_NODE, 0);
                break;
        case VERDICT_RETRY:
                s->status_dirty = true; /* the latest state, once the gate opens */
                failed(s, CHANNEL_STATUS, resp);
                break;
        case VERDICT_REFUSED:
                refused(s, CHANNEL_STATUS, resp);
                schedule_heartbeat(s, now); /* the heartbeat tries again; no loop on a bad patch */
                break;
        }
        sending_clear(s);
        schedule(s);
}

static void send_status(struct kube_sink *s, bool heartbeat) {
        _cleanup_free_ char *body = build_status_patch(s);
        _cleanup_free_ char *path = NULL;
        int r;

        if (!body || asprintf(&path, "%s/status", s->node_path) < 0) {
                log_error("Out of memory while building the status patch; trying again later");
                (void) back_off(s, LANE_NODE, 0);
                return;
        }
        r = nh_kube_client_request(s->client, "PATCH", path, STRATEGIC_MERGE, body, REQUEST_TIMEOUT, on_status_done, s);
        if (r < 0) {
                log_warning_errno(r, "Cannot queue a request to the API server: %m");
                (void) back_off(s, LANE_NODE, 0);
                return;
        }
        if (!heartbeat)
                s->status_bucket.tokens -= 1.0;
        s->status_in_flight = true;
        s->status_dirty = false;
        s->heartbeat_now = false;
}

/* ---- events ---- */

static void kevent_done(struct kevent *e) {
        free(e->type);
        free(e->reason);
        free(e->message);
        free(e->key);
        free(e->name);
        *e = (struct kevent){0};
}

static struct kevent *find_event_id(struct kube_sink *s, uint64_t id) {
        for (size_t i = 0; i < s->n_events; i++)
                if (s->events[i].id == id)
                        return &s->events[i];
        return NULL;
}

static struct kevent *next_pending_event(struct kube_sink *s) {
        struct kevent *best = NULL;

        for (size_t i = 0; i < s->n_events; i++) {
                struct kevent *e = &s->events[i];
                if (e->count != e->synced && (!best || e->pending_since < best->pending_since))
                        best = e;
        }
        return best;
}

static void log_drops(struct kube_sink *s, uint64_t now) {
        if (s->dropped_logged_at && now < s->dropped_logged_at + DROP_LOG_INTERVAL)
                return;
        s->dropped_logged_at = now;
        log_warning("Kubernetes Events not posted so far: %" PRIu64 " over the rate limit (burst %d, then one per "
                    "%d min), %" PRIu64 " pushed out while the API server was away, %" PRIu64
                    " refused; the journal has them all",
                    s->dropped_rate, (int) EVENT_BURST, (int) (EVENT_REFILL / USEC_PER_SEC / 60), s->dropped_overflow,
                    s->dropped_refused);
}

static uint64_t hash_text(const char *t) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */

        for (; *t; t++)
                h = (h ^ (unsigned char) *t) * 1099511628211ull;
        return h;
}

/*
 * Folding, as client-go's aggregator: once 10 different messages of one type and reason have
 * been seen (each within 10 minutes of the last), a new message joins one combined series.
 */
static bool fold_similar(struct kube_sink *s, const char *type, const char *reason, const char *message, uint64_t now) {
        struct similar *sim = NULL;
        uint64_t h = hash_text(message);

        for (size_t i = 0; i < s->n_similar; i++)
                if (strcmp(s->similar[i].type, type) == 0 && strcmp(s->similar[i].reason, reason) == 0)
                        sim = &s->similar[i];
        if (!sim) {
                if (s->n_similar < SIMILAR_CACHE_MAX)
                        sim = &s->similar[s->n_similar++];
                else {
                        sim = &s->similar[0];
                        for (size_t i = 1; i < s->n_similar; i++)
                                if (s->similar[i].used < sim->used)
                                        sim = &s->similar[i];
                        free(sim->type);
                        free(sim->reason);
                }
                *sim = (struct similar){.type = strdup(type), .reason = strdup(reason), .last = now};
                if (!sim->type || !sim->reason) {
                        free(sim->type);
                        free(sim->reason);
                        *sim = s->similar[--s->n_similar];
                        return false;
                }
        }
        if (now >= sim->last + EVENT_SIMILAR_WINDOW)
                sim->n = 0;
        sim->last = now;
        sim->used = ++s->tick;
        for (unsigned i = 0; i < sim->n; i++)
                if (sim->messages[i] == h)
                        return false; /* a repeat: it raises its own count */
        if (sim->n < EVENT_SIMILAR_MAX) {
                sim->messages[sim->n++] = h;
                return false;
        }
        return true;
}

static void record_event(struct kube_sink *s, const char *type, const char *reason, const char *message) {
        uint64_t now = mono_now(s), real = now_usec(CLOCK_REALTIME);
        _cleanup_free_ char *folded = NULL;
        struct kevent *e = NULL;
        bool fold;

        if (!s->events_enabled)
                return;
        if (!reason || !*reason)
                reason = "NodeHealth";
        fold = fold_similar(s, type, reason, message, now);
        if (fold && asprintf(&folded, AGGREGATE_PREFIX "%s", message) < 0)
                return;

        bucket_refill(&s->event_bucket, now);
        if (s->event_bucket.tokens < 1.0) {
                s->dropped_rate++;
                log_drops(s, now);
                return;
        }
        s->event_bucket.tokens -= 1.0;

        const char *key = fold ? AGGREGATE_PREFIX : message;
        for (size_t i = 0; i < s->n_events; i++)
                if (strcmp(s->events[i].type, type) == 0 && strcmp(s->events[i].reason, reason) == 0 &&
                    strcmp(s->events[i].key, key) == 0)
                        e = &s->events[i];
        if (e) {
                char *m = text_dup(fold ? folded : message);
                if (m) {
                        free(e->message);
                        e->message = m;
                }
                if (e->count == e->synced)
                        e->pending_since = now;
                e->count++;
                e->last = real;
                e->used = ++s->tick;
                schedule(s);
                return;
        }

        if (s->n_events >= EVENT_CACHE_MAX) {
                /* Bounded memory: the least recently seen goes (its unsent occurrences are counted). */
                struct kevent *old = NULL;
                for (size_t i = 0; i < s->n_events; i++)
                        if ((!s->event_in_flight || s->events[i].id != s->sending_event_id) &&
                            (!old || s->events[i].used < old->used))
                                old = &s->events[i];
                if (!old)
                        return;
                if (old->count > old->synced) {
                        s->dropped_overflow += old->count - old->synced;
                        log_drops(s, now);
                }
                kevent_done(old);
                *old = s->events[--s->n_events];
        }
        e = &s->events[s->n_events];
        *e = (struct kevent){
                .id = ++s->next_id,
                .type = strdup(type),
                .reason = strdup(reason),
                .message = text_dup(fold ? folded : message),
                .key = strdup(key),
                .count = 1,
                .first = real,
                .last = real,
                .pending_since = now,
                .used = ++s->tick,
        };
        if (!e->type || !e->reason || !e->message || !e->key) {
                kevent_done(e);
                return;
        }
        s->n_events++;
        schedule(s);
}

static char *build_event(struct kube_sink *s, const struct kevent *e) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        char first[RFC3339_MAX], last[RFC3339_MAX];
        cJSON *meta, *obj, *source;

        if (!root)
                return NULL;
        meta = cJSON_AddObjectToObject(root, "metadata");
        obj = cJSON_AddObjectToObject(root, "involvedObject");
        source = cJSON_AddObjectToObject(root, "source");
        if (!meta || !obj || !source || !cJSON_AddStringToObject(root, "apiVersion", "v1") ||
            !cJSON_AddStringToObject(root, "kind", "Event") || !cJSON_AddStringToObject(meta, "name", e->name) ||
            !cJSON_AddStringToObject(meta, "namespace", NH_KUBE_EVENT_NAMESPACE) ||
            !cJSON_AddStringToObject(obj, "apiVersion", "v1") || !cJSON_AddStringToObject(obj, "kind", "Node") ||
            !cJSON_AddStringToObject(obj, "name", s->node) ||
            (s->uid && !cJSON_AddStringToObject(obj, "uid", s->uid)) ||
            !cJSON_AddStringToObject(root, "reason", e->reason) ||
            !cJSON_AddStringToObject(root, "message", e->message) || !cJSON_AddStringToObject(root, "type", e->type) ||
            !cJSON_AddStringToObject(source, "component", NH_KUBE_COMPONENT) ||
            !cJSON_AddStringToObject(source, "host", s->node) ||
            !cJSON_AddNumberToObject(root, "count", (double) e->count) ||
            !cJSON_AddStringToObject(root, "firstTimestamp", format_rfc3339(first, sizeof(first), e->first)) ||
            !cJSON_AddStringToObject(root, "lastTimestamp", format_rfc3339(last, sizeof(last), e->last)))
                return NULL;
        return cJSON_PrintUnformatted(root);
}

static char *build_event_patch(const struct kevent *e) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        char last[RFC3339_MAX];

        if (!root || !cJSON_AddNumberToObject(root, "count", (double) e->count) ||
            !cJSON_AddStringToObject(root, "lastTimestamp", format_rfc3339(last, sizeof(last), e->last)) ||
            !cJSON_AddStringToObject(root, "message", e->message))
                return NULL;
        return cJSON_PrintUnformatted(root);
}

static int new_event_name(struct kube_sink *s, struct kevent *e) {
        /* As client-go names them: the object's name and a timestamp in ns (made unique). */
        uint64_t ns = now_usec(CLOCK_REALTIME) * 1000 + (s->name_seq++ % 1000);

        free(e->name);
        e->name = NULL;
        if (asprintf(&e->name, "%s.%" PRIx64, s->node, ns) < 0) {
                e->name = NULL;
                return -ENOMEM;
        }
        return 0;
}

static void on_event_done(void *userdata, const struct nh_kube_response *resp) {
        struct kube_sink *s = userdata;
        struct kevent *e = find_event_id(s, s->sending_event_id);
        bool was_post = e && !e->posted;
        enum channel ch = was_post ? CHANNEL_EVENT_POST : CHANNEL_EVENT_PATCH;

        s->event_in_flight = false;
        note_warning(s, resp);
        if (!e) { /* pushed out of the cache meanwhile */
                schedule(s);
                return;
        }
        switch (judge(resp)) {
        case VERDICT_OK:
                succeeded(s, ch);
                e->posted = true;
                e->synced = s->sending_event_count;
                if (e->count != e->synced)
                        e->pending_since = mono_now(s);
                break;
        case VERDICT_NOT_FOUND:
                if (!was_post) {
                        /* The Event expired on the server (1 h TTL): post it anew, count and all. */
                        e->posted = false;
                        e->synced = 0;
                        if (new_event_name(s, e) < 0)
                                e->synced = e->count;
                        break;
                }
                refused(s, ch, resp);
                s->dropped_refused += e->count - e->synced;
                e->synced = e->count;
                break;
        case VERDICT_RETRY:
                if (was_post && resp->status == 409) {
                        e->posted = true; /* an earlier try reached it after all: update it */
                        break;
                }
                failed(s, ch, resp);
                break;
        case VERDICT_REFUSED:
                refused(s, ch, resp);
                s->dropped_refused += e->count - e->synced;
                e->synced = e->count;
                break;
        }
        schedule(s);
}

static void send_event(struct kube_sink *s, struct kevent *e) {
        _cleanup_free_ char *body = NULL, *path = NULL, *name = NULL;
        int r;

        if (!e->name && new_event_name(s, e) < 0)
                return;
        if (!e->posted) {
                body = build_event(s, e);
                if (asprintf(&path, "/api/v1/namespaces/%s/events", NH_KUBE_EVENT_NAMESPACE) < 0)
                        path = NULL;
        } else {
                body = build_event_patch(e);
                name = url_escape(e->name);
                if (!name || asprintf(&path, "/api/v1/namespaces/%s/events/%s", NH_KUBE_EVENT_NAMESPACE, name) < 0)
                        path = NULL;
        }
        if (!body || !path) {
                log_error("Out of memory while building an Event");
                return;
        }
        r = nh_kube_client_request(s->client, e->posted ? "PATCH" : "POST", path,
                                   e->posted ? STRATEGIC_MERGE : "application/json", body, REQUEST_TIMEOUT,
                                   on_event_done, s);
        if (r < 0) {
                log_warning_errno(r, "Cannot queue a request to the API server: %m");
                return;
        }
        s->event_in_flight = true;
        s->sending_event_id = e->id;
        s->sending_event_count = e->count;
}

/* ---- scheduling ---- */

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static void schedule(struct kube_sink *s) {
        const struct backoff *node = &s->backoff[LANE_NODE], *events = &s->backoff[LANE_EVENTS];
        uint64_t now = mono_now(s), next = UINT64_MAX;
        uint64_t status_at = UINT64_MAX; /* when a pending status PATCH goes out */

        if (now < node->blocked_until)
                next = node->blocked_until;
        else if (!s->have_node) {
                /* Nothing is written before the Node is known: its conditions decide what to send. */
                if (!s->get_in_flight && now >= s->get_due)
                        send_get(s);
                if (!s->get_in_flight)
                        next = now < node->blocked_until ? node->blocked_until : s->get_due;
        } else if (s->table && !s->status_in_flight) {
                if (s->sent_once && now >= s->heartbeat_due && !s->status_dirty) {
                        s->status_dirty = true;
                        s->status_due = now;
                        s->heartbeat_now = true;
                }
                if (s->status_dirty) {
                        uint64_t due = s->status_due;
                        if (!s->heartbeat_now && s->sent_once) {
                                uint64_t ready = bucket_ready_at(&s->status_bucket, now);
                                due = due > ready ? due : ready;
                        }
                        if (now >= due) {
                                send_status(s, s->heartbeat_now || !s->sent_once);
                                if (now < node->blocked_until)
                                        next = node->blocked_until;
                        } else {
                                status_at = due;
                                next = due;
                        }
                }
                if (!s->status_dirty && !s->status_in_flight && s->sent_once)
                        next = min_u64(next, s->heartbeat_due);
        }

        /* Events need the Node's uid; a status PATCH about to go out goes first. */
        if (s->have_node && s->events_enabled && !s->event_in_flight) {
                struct kevent *e = next_pending_event(s);
                if (e && now < events->blocked_until)
                        next = min_u64(next, events->blocked_until);
                else if (e && status_at > now + COALESCE_DELAY)
                        send_event(s, e);
        }
        arm(s, next);
}

/* ---- the sink interface ---- */

static void kube_start(struct nh_sink *sink, const char *node, const struct nh_table *table) {
        struct kube_sink *s = (struct kube_sink *) sink;

        s->table = table;
        s->status_dirty = true;
        s->status_due = mono_now(s);
        update_held(s);
        schedule(s);
}

static void kube_transition(struct nh_sink *sink, const char *node, const struct nh_condition *c, enum nh_status old) {
        struct kube_sink *s = (struct kube_sink *) sink;
        struct remote *r;
        bool quiet = false;

        if (!s->table)
                return; /* the first cycle: the start table says it all */

        /* The first verdict after a restart that agrees with the Node is not news. */
        r = find_remote(s, c->type);
        if (r && r->held) {
                quiet = r->status == c->status;
                r->held = false;
        } else if (!s->have_node && old == NH_STATUS_UNKNOWN) {
                defer_first_verdict(s, c); /* decided once the Node is read */
                quiet = true;
        }
        /* The status first: the Event must not take the connection before the PATCH. */
        if (!s->status_dirty) {
                s->status_dirty = true;
                s->status_due = mono_now(s) + COALESCE_DELAY; /* a burst of transitions makes one PATCH */
        }
        if (!quiet)
                record_event(s, event_type(c->status), c->reason, c->message && *c->message ? c->message : c->type);
        schedule(s);
}

/* The next PATCH deletes it: it is in the annotation of what we wrote, and no longer in the table. */
static void kube_removed(struct nh_sink *sink, const char *node, const char *type) {
        struct kube_sink *s = (struct kube_sink *) sink;

        if (!s->table)
                return;
        if (!s->status_dirty) {
                s->status_dirty = true;
                s->status_due = mono_now(s) + COALESCE_DELAY;
        }
        schedule(s);
}

static void kube_event(struct nh_sink *sink, const char *node, const char *probe, const char *reason,
                       const char *message) {
        struct kube_sink *s = (struct kube_sink *) sink;

        record_event(s, "Warning", reason, message && *message ? message : reason);
}

static void kube_free(struct nh_sink *sink) {
        struct kube_sink *s = (struct kube_sink *) sink;

        if (s->dropped_rate || s->dropped_overflow || s->dropped_refused)
                log_info("Kubernetes Events not posted: %" PRIu64 " over the rate limit, %" PRIu64
                         " pushed out, %" PRIu64 " refused",
                         s->dropped_rate, s->dropped_overflow, s->dropped_refused);
        nh_kube_client_free(s->client);
        sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        sending_clear(s);
        remote_clear(s);
        deferred_clear(s);
        for (size_t i = 0; i < s->n_events; i++)
                kevent_done(&s->events[i]);
        for (size_t i = 0; i < s->n_similar; i++) {
                free(s->similar[i].type);
                free(s->similar[i].reason);
        }
        strv_free(s->owned_before);
        free(s->uid);
        for (size_t i = 0; i < _LANE_MAX; i++)
                free(s->backoff[i].last_failure);
        free(s->last_warning);
        free(s->node);
        free(s->node_path);
        free(s);
}

static const struct nh_sink_ops kube_ops = {
        .name = "kubernetes",
        .start = kube_start,
        .transition = kube_transition,
        .event = kube_event,
        .removed = kube_removed,
        .free = kube_free,
};

int nh_sink_kubernetes_new(sd_event *event, const struct nh_kube_credentials *creds, const char *node,
                           uint64_t heartbeat, bool events, struct nh_sink **ret) {
        _cleanup_free_ char *escaped = NULL;
        struct kube_sink *s;
        uint64_t now;
        int r;

        if (!event || !creds || !node || !*node || heartbeat == 0)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->sink.ops = &kube_ops;
        s->event = sd_event_ref(event);
        s->heartbeat = heartbeat;
        s->events_enabled = events;
        s->node = strdup(node);
        escaped = url_escape(node);
        if (!s->node || !escaped || asprintf(&s->node_path, "/api/v1/nodes/%s", escaped) < 0) {
                s->node_path = NULL;
                kube_free(&s->sink);
                return -ENOMEM;
        }
        r = nh_kube_client_new(event, creds, &s->client);
        if (r >= 0)
                r = sd_event_add_time(event, &s->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_timer, s);
        if (r < 0) {
                kube_free(&s->sink);
                return r;
        }
        (void) sd_event_source_set_description(s->timer, "kubernetes-sink");
        now = mono_now(s);
        s->status_bucket =
                (struct bucket){.tokens = STATUS_BURST, .burst = STATUS_BURST, .refill = STATUS_REFILL, .at = now};
        s->event_bucket =
                (struct bucket){.tokens = EVENT_BURST, .burst = EVENT_BURST, .refill = EVENT_REFILL, .at = now};
        /* Nodes that start together (a cluster rebooting) do not all ask at the same moment. */
        s->get_due = now + jitter(min_u64(heartbeat / 10, START_JITTER_MAX));
        schedule(s);
        *ret = &s->sink;
        return 0;
}

const struct nh_kube_client *nh_sink_kubernetes_client(const struct nh_sink *sink) {
        return sink && sink->ops == &kube_ops ? ((const struct kube_sink *) sink)->client : NULL;
}
