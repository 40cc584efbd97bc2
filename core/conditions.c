/* SPDX-License-Identifier: MIT */
#include "conditions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct problem {
        char *key; /* "" for a feed's single, unnamed problem */
        enum nh_status stable;
        char *reason, *message;
        enum nh_status pending; /* status being confirmed; _NH_STATUS_INVALID when none */
        unsigned pending_count;
};

struct feed {
        char *owner;
        size_t condition; /* index into the table's conditions */
        struct nh_feed_params params;
        uint64_t since; /* monotonic µs the feed was added: staleness counts from here */
        uint64_t last_report; /* monotonic µs; 0 before the first report */
        bool marked_unknown; /* by staleness or failure: not marked stale again until the next report */
        struct problem *problems;
        size_t n_problems;
};

struct nh_table {
        struct nh_condition *conditions;
        size_t n_conditions;
        struct feed *feeds;
        size_t n_feeds;
        nh_transition_fn on_transition;
        nh_removal_fn on_removal;
        void *userdata;
};

static const char *const status_names[_NH_STATUS_MAX] = {
        [NH_STATUS_FALSE] = "False",
        [NH_STATUS_TRUE] = "True",
        [NH_STATUS_UNKNOWN] = "Unknown",
};

const char *nh_status_to_string(enum nh_status s) {
        return s >= 0 && s < _NH_STATUS_MAX ? status_names[s] : NULL;
}

enum nh_status nh_status_from_string(const char *s) {
        for (int i = 0; s && i < _NH_STATUS_MAX; i++)
                if (strcmp(status_names[i], s) == 0)
                        return (enum nh_status) i;
        return _NH_STATUS_INVALID;
}

/* Replaces *dst with a copy of src; keeps *dst on allocation failure. */
static int set_text(char **dst, const char *src) {
        char *copy;

        if (streq_null(*dst, src))
                return 0;
        copy = strdup_null(src ? src : "");
        if (!copy)
                return -ENOMEM;
        free(*dst);
        *dst = copy;
        return 0;
}

static void problem_done(struct problem *p) {
        free(p->key);
        free(p->reason);
        free(p->message);
}

static void feed_done(struct feed *f) {
        for (size_t i = 0; i < f->n_problems; i++)
                problem_done(&f->problems[i]);
        free(f->problems);
        free(f->owner);
}

struct nh_table *nh_table_new(nh_transition_fn on_transition, void *userdata) {
        struct nh_table *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        t->on_transition = on_transition;
        t->userdata = userdata;
        return t;
}

struct nh_table *nh_table_free(struct nh_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_feeds; i++)
                feed_done(&t->feeds[i]);
        free(t->feeds);
        for (size_t i = 0; i < t->n_conditions; i++) {
                free(t->conditions[i].type);
                free(t->conditions[i].reason);
                free(t->conditions[i].message);
        }
        free(t->conditions);
        free(t);
        return NULL;
}

static struct feed *find_feed(struct nh_table *t, const char *owner, const char *type) {
        for (size_t i = 0; i < t->n_feeds; i++)
                if (strcmp(t->feeds[i].owner, owner) == 0 &&
                    strcmp(t->conditions[t->feeds[i].condition].type, type) == 0)
                        return &t->feeds[i];
        return NULL;
}

static ssize_t find_condition(const struct nh_table *t, const char *type) {
        for (size_t i = 0; i < t->n_conditions; i++)
                if (strcmp(t->conditions[i].type, type) == 0)
                        return (ssize_t) i;
        return -1;
}

static int problem_init(struct problem *p, const char *key, const char *reason, const char *message) {
        *p = (struct problem){.stable = NH_STATUS_UNKNOWN, .pending = _NH_STATUS_INVALID};
        p->key = strdup(key);
        p->reason = strdup(reason);
        p->message = strdup(message);
        if (!p->key || !p->reason || !p->message) {
                problem_done(p);
                return -ENOMEM;
        }
        return 0;
}

/* Recomputes condition i from its feeds; tells the listener when the status changed. */
static void aggregate(struct nh_table *t, size_t i, uint64_t real_now) {
        struct nh_condition *c = &t->conditions[i];
        const struct problem *pick[_NH_STATUS_MAX] = {0};
        enum nh_status status, old = c->status;

        for (size_t f = 0; f < t->n_feeds; f++) {
                if (t->feeds[f].condition != i)
                        continue;
                for (size_t p = 0; p < t->feeds[f].n_problems; p++) {
                        const struct problem *pr = &t->feeds[f].problems[p];
                        if (!pick[pr->stable])
                                pick[pr->stable] = pr;
                }
        }
        status = pick[NH_STATUS_TRUE] ? NH_STATUS_TRUE : pick[NH_STATUS_UNKNOWN] ? NH_STATUS_UNKNOWN : NH_STATUS_FALSE;
        if (!pick[status])
                return; /* no feed left: nothing to say */

        /* On allocation failure the old text stays: better stale words than a crash. */
        (void) set_text(&c->reason, pick[status]->reason);
        (void) set_text(&c->message, pick[status]->message);
        c->last_heartbeat = real_now;
        if (status != old) {
                c->status = status;
                c->last_transition = real_now;
                if (t->on_transition)
                        t->on_transition(t->userdata, c, old);
        }
}

int nh_table_add_feed(struct nh_table *t, const char *owner, const char *type, const struct nh_feed_params *params,
                      uint64_t mono_now, uint64_t real_now) {
        _cleanup_free_ char *message = NULL;
        struct feed *f;
        ssize_t ci;
        int r;

        if (!t || !owner || !type || !params || params->raise_after < 1 || params->clear_after < 1)
                return -EINVAL;
        f = find_feed(t, owner, type);
        if (f) {
                f->params = *params; /* a reloaded probe keeps its feed, with its new settings */
                return -EEXIST;
        }

        ci = find_condition(t, type);
        if (ci < 0) {
                struct nh_condition *grown = realloc(t->conditions, (t->n_conditions + 1) * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                t->conditions = grown;
                grown[t->n_conditions] = (struct nh_condition){
                        .type = strdup(type),
                        .status = NH_STATUS_UNKNOWN,
                        .reason = strdup(NH_REASON_NOT_YET_OBSERVED),
                        .last_heartbeat = real_now,
                        .last_transition = real_now,
                };
                if (asprintf(&grown[t->n_conditions].message, "probe %s has not reported yet", owner) < 0)
                        grown[t->n_conditions].message = NULL;
                if (!grown[t->n_conditions].type || !grown[t->n_conditions].reason || !grown[t->n_conditions].message) {
                        free(grown[t->n_conditions].type);
                        free(grown[t->n_conditions].reason);
                        free(grown[t->n_conditions].message);
                        return -ENOMEM;
                }
                ci = (ssize_t) t->n_conditions++;
        }

        f = realloc(t->feeds, (t->n_feeds + 1) * sizeof(*f));
        if (!f)
                return -ENOMEM;
        t->feeds = f;
        f = &t->feeds[t->n_feeds];
        *f = (struct feed){.condition = (size_t) ci, .params = *params, .since = mono_now};

        f->owner = strdup(owner);
        f->problems = calloc(1, sizeof(struct problem));
        if (asprintf(&message, "probe %s has not reported yet", owner) < 0)
                message = NULL;
        if (!f->owner || !f->problems || !message) {
                feed_done(f);
                return -ENOMEM;
        }
        r = problem_init(&f->problems[0], "", NH_REASON_NOT_YET_OBSERVED, message);
        if (r < 0) {
                feed_done(f);
                return r;
        }
        f->n_problems = 1;
        t->n_feeds++;
        return 0;
}

static struct problem *find_problem(struct feed *f, const char *key, bool *ret_first_report) {
        struct problem *grown;

        for (size_t i = 0; i < f->n_problems; i++)
                if (strcmp(f->problems[i].key, key) == 0)
                        return &f->problems[i];

        /* Until the first report a feed holds one "" placeholder; named problems replace it. */
        if (*ret_first_report && f->n_problems == 1 && f->problems[0].key[0] == '\0') {
                char *k = strdup(key);
                if (!k)
                        return NULL;
                free(f->problems[0].key);
                f->problems[0].key = k;
                return &f->problems[0];
        }
        grown = realloc(f->problems, (f->n_problems + 1) * sizeof(*grown));
        if (!grown)
                return NULL;
        f->problems = grown;
        if (problem_init(&grown[f->n_problems], key, NH_REASON_NOT_YET_OBSERVED, "no observation yet") < 0)
                return NULL;
        return &f->problems[f->n_problems++];
}

static void observe_problem(struct problem *p, const struct nh_feed_params *params, const struct nh_observation *obs) {
        unsigned threshold;

        if (obs->status == p->stable) {
                p->pending = _NH_STATUS_INVALID;
                p->pending_count = 0;
                (void) set_text(&p->reason, obs->reason);
                (void) set_text(&p->message, obs->message);
                return;
        }
        if (obs->status == p->pending)
                p->pending_count++;
        else {
                p->pending = obs->status;
                p->pending_count = 1;
        }

        if (obs->status == NH_STATUS_TRUE)
                threshold = params->raise_after;
        else if (obs->status == NH_STATUS_FALSE)
                threshold = p->stable == NH_STATUS_UNKNOWN ? 1 : params->clear_after;
        else
                threshold = 1;

        if (p->pending_count >= threshold) {
                p->stable = obs->status;
                p->pending = _NH_STATUS_INVALID;
                p->pending_count = 0;
                (void) set_text(&p->reason, obs->reason);
                (void) set_text(&p->message, obs->message);
        } else if (p->stable == NH_STATUS_UNKNOWN) {
                /* Say what is being confirmed rather than keep a stale "not reported" text. */
                _cleanup_free_ char *m = NULL;
                (void) set_text(&p->reason, NH_REASON_AWAITING_CONFIRMATION);
                if (asprintf(&m, "%s seen in %u of %u consecutive observations needed: %s", obs->reason,
                             p->pending_count, threshold, obs->message) >= 0)
                        (void) set_text(&p->message, m);
        }
}

int nh_table_observe(struct nh_table *t, const char *owner, const struct nh_observation *obs, uint64_t mono_now,
                     uint64_t real_now) {
        struct feed *f;
        struct problem *p;
        bool first;

        if (!t || !owner || !obs || !obs->type || !obs->reason || !obs->message || obs->status < 0 ||
            obs->status >= _NH_STATUS_MAX)
                return -EINVAL;
        f = find_feed(t, owner, obs->type);
        if (!f)
                return -ENOENT;

        first = f->last_report == 0;
        p = find_problem(f, obs->problem ? obs->problem : "", &first);
        if (!p)
                return -ENOMEM;
        f->marked_unknown = false; /* its problems are Unknown already: they start over */
        f->last_report = mono_now ? mono_now : 1;
        observe_problem(p, &f->params, obs);
        aggregate(t, f->condition, real_now);
        return 0;
}

static void problem_set_unknown(struct problem *p, const char *reason, const char *message) {
        p->stable = NH_STATUS_UNKNOWN;
        p->pending = _NH_STATUS_INVALID;
        p->pending_count = 0;
        (void) set_text(&p->reason, reason);
        (void) set_text(&p->message, message);
}

int nh_table_mark_unknown(struct nh_table *t, const char *owner, const char *reason, const char *message,
                          uint64_t real_now) {
        bool found = false;

        if (!t || !owner || !reason || !message)
                return -EINVAL;
        for (size_t i = 0; i < t->n_feeds; i++) {
                struct feed *f = &t->feeds[i];
                if (strcmp(f->owner, owner) != 0)
                        continue;
                found = true;
                f->marked_unknown = true; /* ProbeFailed stays ProbeFailed, not ProbeStale later */
                for (size_t p = 0; p < f->n_problems; p++)
                        problem_set_unknown(&f->problems[p], reason, message);

                aggregate(t, f->condition, real_now);
        }
        return found ? 0 : -ENOENT;
}

/* A feed never heard from counts from when it was added. */
static uint64_t feed_heard(const struct feed *f) {
        return f->last_report ? f->last_report : f->since;
}

void nh_table_check_stale(struct nh_table *t, uint64_t mono_now, uint64_t real_now) {
        for (size_t i = 0; i < t->n_feeds; i++) {
                struct feed *f = &t->feeds[i];
                _cleanup_free_ char *message = NULL;
                char d[32];

                if (f->marked_unknown || f->params.stale_after == 0 || mono_now < feed_heard(f) + f->params.stale_after)
                        continue;
                f->marked_unknown = true;
                if (asprintf(&message, "probe %s has not reported %s for %s", f->owner,
                             t->conditions[f->condition].type,
                             format_duration(d, sizeof(d), mono_now - feed_heard(f))) < 0)
                        continue;
                for (size_t p = 0; p < f->n_problems; p++)
                        problem_set_unknown(&f->problems[p], NH_REASON_PROBE_STALE, message);
                aggregate(t, f->condition, real_now);
        }
}

uint64_t nh_table_next_stale(const struct nh_table *t) {
        uint64_t next = UINT64_MAX;

        for (size_t i = 0; i < t->n_feeds; i++) {
                const struct feed *f = &t->feeds[i];
                if (!f->marked_unknown && f->params.stale_after > 0 && feed_heard(f) + f->params.stale_after < next)
                        next = feed_heard(f) + f->params.stale_after;
        }
        return next;
}

void nh_table_set_removal_listener(struct nh_table *t, nh_removal_fn on_removal) {
        t->on_removal = on_removal;
}

static bool condition_fed(const struct nh_table *t, size_t c) {
        for (size_t i = 0; i < t->n_feeds; i++)
                if (t->feeds[i].condition == c)
                        return true;
        return false;
}

void nh_table_remove_feeds(struct nh_table *t, const char *owner, const char *type, bool keep_orphans,
                           uint64_t real_now) {
        size_t kept = 0, n_touched = 0;
        size_t *touched;

        if (!t || !owner)
                return;
        touched = calloc(t->n_feeds + 1, sizeof(*touched));
        for (size_t i = 0; i < t->n_feeds; i++) {
                struct feed *f = &t->feeds[i];
                if (strcmp(f->owner, owner) == 0 && (!type || strcmp(t->conditions[f->condition].type, type) == 0)) {
                        if (touched)
                                touched[n_touched++] = f->condition;
                        feed_done(f);
                } else
                        t->feeds[kept++] = *f;
        }
        t->n_feeds = kept;

        /* What the removed feeds decided, the others decide now. */
        for (size_t i = 0; i < n_touched; i++)
                if (condition_fed(t, touched[i]))
                        aggregate(t, touched[i], real_now);
        free(touched);
        if (keep_orphans)
                return;

        /* Drop conditions no feed refers to any more, renumbering the feeds' indices. */
        for (size_t c = t->n_conditions; c-- > 0;) {
                if (condition_fed(t, c))
                        continue;
                if (t->on_removal)
                        t->on_removal(t->userdata, t->conditions[c].type);
                free(t->conditions[c].type);
                free(t->conditions[c].reason);
                free(t->conditions[c].message);
                memmove(&t->conditions[c], &t->conditions[c + 1], (t->n_conditions - c - 1) * sizeof(*t->conditions));
                t->n_conditions--;
                for (size_t i = 0; i < t->n_feeds; i++)
                        if (t->feeds[i].condition > c)
                                t->feeds[i].condition--;
        }
}

void nh_table_remove_owner(struct nh_table *t, const char *owner) {
        nh_table_remove_feeds(t, owner, NULL, false, now_usec(CLOCK_REALTIME));
}

bool nh_table_has_feed(const struct nh_table *t, const char *owner, const char *type) {
        for (size_t i = 0; t && i < t->n_feeds; i++)
                if (strcmp(t->feeds[i].owner, owner) == 0 &&
                    strcmp(t->conditions[t->feeds[i].condition].type, type) == 0)
                        return true;
        return false;
}

size_t nh_table_size(const struct nh_table *t) {
        return t ? t->n_conditions : 0;
}

const struct nh_condition *nh_table_get(const struct nh_table *t, size_t i) {
        return t && i < t->n_conditions ? &t->conditions[i] : NULL;
}

const struct nh_condition *nh_table_find(const struct nh_table *t, const char *type) {
        ssize_t i = t && type ? find_condition(t, type) : -1;
        return i >= 0 ? &t->conditions[i] : NULL;
}
