/* SPDX-License-Identifier: MIT */
#include "children.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "log.h"
#include "util.h"

struct nh_child {
        struct nh_children *owner;
        pid_t pid;
        sd_event_source *source;
        nh_child_exit_fn fn;
        void *userdata;
        bool ended; /* reported (or forgotten while dispatching); freed by collect() */
        struct nh_child *next;
};

struct nh_children {
        sd_event *event;
        sd_event_source *sigchld;
        struct nh_child *watches;
        size_t n_watches; /* not ended */
        struct nh_child *dispatching;
        sd_event_source *sweep; /* a sweep for orphans after a watched child's exit */
        sd_event_source *retry; /* the next sweep, soon after a watched zombie */
};

static void unlink_child(struct nh_child *child) {
        struct nh_children *c = child->owner;

        for (struct nh_child **p = &c->watches; *p; p = &(*p)->next)
                if (*p == child) {
                        *p = child->next;
                        break;
                }
        if (!child->ended)
                c->n_watches--;
        sd_event_source_disable_unref(child->source);
        free(child);
}

/* Frees the watches of processes that ended (their sources are done dispatching). */
static void collect(struct nh_children *c) {
        struct nh_child *w = c->watches;

        while (w) {
                struct nh_child *next = w->next;
                if (w->ended && w != c->dispatching)
                        unlink_child(w);
                w = next;
        }
}

void nh_child_forget(struct nh_child *child) {
        if (!child || child->ended)
                return;
        if (child == child->owner->dispatching) {
                /* Its source is dispatching: freed later, by collect(). */
                child->ended = true;
                child->owner->n_watches--;
                return;
        }
        unlink_child(child);
}

static bool watched(const struct nh_children *c, pid_t pid) {
        for (const struct nh_child *w = c->watches; w; w = w->next)
                if (w->pid == pid && !w->ended)
                        return true;
        return false;
}

/* Reaps `pid` if it has ended: 1, 0 when it still runs, or a negative errno. */
static int reap_one(pid_t pid) {
        siginfo_t si = {0};

        if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG) < 0)
                return -errno;
        return si.si_pid == pid;
}

static unsigned reap_orphans(struct nh_children *c);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) reap_orphans(userdata);
        return 0;
}

#define RETRY_SOON_USEC (20 * USEC_PER_MSEC)

static void arm_retry(struct nh_children *c) {
        if (!c->retry) {
                (void) sd_event_add_time_relative(c->event, &c->retry, CLOCK_MONOTONIC, RETRY_SOON_USEC,
                                                  RETRY_SOON_USEC / 2, on_retry, c);
                return;
        }
        if (sd_event_source_set_time_relative(c->retry, RETRY_SOON_USEC) >= 0)
                (void) sd_event_source_set_enabled(c->retry, SD_EVENT_ONESHOT);
}

/* Reaps every ended child nobody watches; returns how many. */
static unsigned reap_orphans(struct nh_children *c) {
        unsigned reaped = 0;

        collect(c);
        /*
         * The kernel names ended children one at a time (WNOWAIT leaves each as it is): ours
         * to reap unless someone watches it.  A watched one is sd-event's to reap, and it hides
         * the others behind it: look again shortly, once sd-event has dispatched it.
         */
        for (;;) {
                siginfo_t si = {0};

                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
                        break; /* ECHILD: no child at all, nothing to look after */
                if (si.si_pid <= 0)
                        break; /* children run, none has ended: each one's end is a SIGCHLD */
                if (watched(c, si.si_pid)) {
                        arm_retry(c); /* once sd-event has reaped it */
                        break;
                }
                if (reap_one(si.si_pid) <= 0)
                        break;
                reaped++;
        }
        return reaped;
}

static int on_sigchld(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        unsigned n = reap_orphans(userdata);

        if (n > 0)
                log_debug("Reaped %u orphaned process%s", n, n == 1 ? "" : "es");
        return 0;
}

static int on_sweep(sd_event_source *s, void *userdata) {
        (void) on_sigchld(NULL, NULL, userdata);
        return 0;
}

/*
 * SIGCHLD of an orphan that ended together with a watched child merges into one signal, whose
 * sweep may meet the watched zombie first, which hides the orphan: after every watched child,
 * one sweep (a later iteration: sd-event reaps the watched one when its callback returns).
 */
static void schedule_sweep(struct nh_children *c) {
        if (!c->sweep)
                (void) sd_event_add_defer(c->event, &c->sweep, on_sweep, c);
        else
                (void) sd_event_source_set_enabled(c->sweep, SD_EVENT_ONESHOT);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        struct nh_child *child = userdata;
        struct nh_children *c = child->owner;

        /*
         * sd-event reaps the process after this returns, with this source: the watch is
         * marked ended now and freed later (collect()), so the callback may start a new
         * process or forget watches without pulling the source from under sd-event.
         */
        if (child->ended)
                return 0;
        child->ended = true;
        c->n_watches--;
        c->dispatching = child;
        child->fn(child->userdata, child->pid, si->si_code, si->si_status);
        c->dispatching = NULL;
        schedule_sweep(c);
        return 0;
}

int nh_children_watch(struct nh_children *c, pid_t pid, nh_child_exit_fn fn, void *userdata, struct nh_child **ret) {
        struct nh_child *child;
        int r;

        if (!c || pid <= 0 || !fn)
                return -EINVAL;
        collect(c);
        if (watched(c, pid))
                return -EEXIST;
        /* sd-event would wait forever for a process that is not ours to reap. */
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t) pid, &si, WEXITED | WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT) < 0)
                return errno == ECHILD ? -EINVAL : -errno;
        child = calloc(1, sizeof(*child));
        if (!child)
                return -ENOMEM;
        *child = (struct nh_child){.owner = c, .pid = pid, .fn = fn, .userdata = userdata};
        r = sd_event_add_child(c->event, &child->source, pid, WEXITED, on_child, child);
        if (r < 0) {
                free(child);
                return r == -ECHILD || r == -ESRCH ? -EINVAL : r;
        }
        child->next = c->watches;
        c->watches = child;
        c->n_watches++;
        if (ret)
                *ret = child;
        return 0;
}

size_t nh_children_watched(const struct nh_children *c) {
        return c ? c->n_watches : 0;
}

int nh_children_new(sd_event *event, bool subreaper, struct nh_children **ret) {
        _cleanup_(nh_children_freep) struct nh_children *c = NULL;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        r = sd_event_add_signal(event, &c->sigchld, SIGCHLD, on_sigchld, c);
        if (r < 0)
                return r;
        if (subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
                return -errno;
        *ret = TAKE_PTR(c);
        return 0;
}

struct nh_children *nh_children_free(struct nh_children *c) {
        if (!c)
                return NULL;
        while (c->watches)
                unlink_child(c->watches);
        sd_event_source_disable_unref(c->sigchld);
        sd_event_source_disable_unref(c->sweep);
        sd_event_source_disable_unref(c->retry);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
