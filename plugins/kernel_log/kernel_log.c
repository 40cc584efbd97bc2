/* SPDX-License-Identifier: MIT */
/*
 * kernel_log — kernel messages matched against node-problem-detector's rule files.
 *
 * The rules come from `npd_config`, a system-log-monitor file of node-problem-detector
 * (kernel-monitor.json, readonly-monitor.json, …) loaded unchanged; rules.c says how they
 * match.  The file is configuration, so its path is on the daemon's own filesystem, not
 * under --root-path.  Temporary rules give events (nh_event) and a counter per rule; permanent
 * rules set their condition True with the rule's reason and the matched lines as message, and
 * it stays True until the daemon restarts (NPD's behaviour) unless the rule adds `clearAfter`
 * (a quiet period) or `clearPattern` (a line that clears it).
 *
 * Where the lines come from (`source`):
 *   "journal"  the journal's kernel messages (_TRANSPORT=kernel; a file whose pluginConfig
 *              names another source, such as NPD's systemd-monitor.json, matches that
 *              SYSLOG_IDENTIFIER instead) of the current boot: the journal under --root-path
 *              (its /run/log/journal and /var/log/journal), or `journal_directory` (also under
 *              --root-path: a DaemonSet mounts the host's journal there).  The journal's fd is
 *              watched on the loop (sd_journal_process, sd_journal_get_timeout), and the journal
 *              is also polled every `journal_poll_interval`: journald coalesces its change
 *              notifications, so a reader woken by inotify sees a line 350 to 450 ms late,
 *              while a poll of the mapped files sees it at once.  Without inotify (its
 *              instances exhausted) the poll alone reads, and the journal is reopened every
 *              30 s to see rotated files.
 *   "kmsg"     /dev/kmsg (`kmsg_path`): the kernel's own ring, read as it is written (about
 *              3 ms from printk to the probe).  The kernel is the same in any container, so the
 *              path is not under --root-path.  Sequence numbers show every record the ring
 *              overwrote before it was read: those are counted and logged.
 *   "auto"     (default) kmsg when the file asks for it ("plugin": "kmsg", as NPD's
 *              kernel-monitor.json does, or no plugin), no journal_directory is set and
 *              kmsg can be opened; otherwise the journal; kmsg again when there is no journal.
 * Either way the first cycle first reads back the file's `lookback` window (not before boot +
 * `delay`), and that cycle ends when it has.
 *
 * Floods.  Each wake-up reads at most `max_batch` lines and then yields to the loop (a zero
 * timer continues), so a storm never starves the other probes and the probe never stops
 * reading.  A journal reader that falls more than `max_lag` behind skips ahead, counting the
 * lines it skipped; kmsg's overwritten records are counted from the sequence numbers; both
 * are logged (at most every 10 s) with the totals.  Events go through a token bucket per
 * rule (`event_burst`, one more every `event_interval`); suppressed events are counted and
 * logged.  A journal or kmsg that cannot be read makes every condition Unknown with reason
 * KernelLogUnreadable and is retried with backoff (1 s doubling to 60 s).
 *
 * Conditions.  The types are those of the file's "conditions" (node-problem-detector's are
 * KernelDeadlock, ReadonlyFilesystem, XfsShutdown), declared at init with
 * nh_declare_condition(); False carries the file's reason and message for it.  A kubelet-owned
 * type needs `take_over`, as for any probe.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <nodehealth/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "rules.h"
#include "../common/go-duration.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define KMSG_RECORD_MAX 16384 /* a record with its dictionary; the kernel refuses smaller reads (EINVAL) */
#define RETRY_MIN (1 * USEC_PER_SEC)
#define RETRY_MAX (60 * USEC_PER_SEC)
#define REOPEN_INTERVAL (30 * USEC_PER_SEC) /* without inotify: to see rotated journal files */
#define DROP_LOG_INTERVAL (10 * USEC_PER_SEC)
#define UNKNOWN_REASON "KernelLogUnreadable"
#define MESSAGE_SIZE 512

struct kernel_log_config {
        char *npd_config;
        char *source;
        char *journal_directory;
        char *kmsg_path;
        char *lookback; /* "" or a duration that replaces the rule file's */
        uint64_t journal_poll_interval; /* µs */
        int64_t max_batch;
        uint64_t max_lag; /* µs */
        int64_t event_burst;
        uint64_t event_interval; /* µs */
};

static const struct nh_cfg_entry kernel_log_config_table[] = {
        {.type = NH_CFG_STRING,
         .key = "npd_config",
         .def = "npd/kernel-monitor.json",
         .offset = offsetof(struct kernel_log_config, npd_config),
         .help = "node-problem-detector system-log-monitor file with the rules (on the daemon's filesystem, not "
                 "under --root-path; a relative path is relative to the directory of nodehealthd.json)"},
        {.type = NH_CFG_STRING,
         .key = "source",
         .def = "auto",
         .offset = offsetof(struct kernel_log_config, source),
         .help = "where kernel messages are read: \"journal\", \"kmsg\", or \"auto\" (kmsg when the rule file asks "
                 "for it and no journal_directory is set, else the journal)"},
        {.type = NH_CFG_STRING,
         .key = "journal_directory",
         .def = "",
         .offset = offsetof(struct kernel_log_config, journal_directory),
         .help = "journal directory under --root-path (a host's journal mounted into a pod); empty: the journal "
                 "of the system under --root-path"},
        {.type = NH_CFG_STRING,
         .key = "kmsg_path",
         .def = "/dev/kmsg",
         .offset = offsetof(struct kernel_log_config, kmsg_path),
         .help = "the kernel's message device (the kernel is shared: not under --root-path)"},
        {.type = NH_CFG_STRING,
         .key = "lookback",
         .def = "",
         .offset = offsetof(struct kernel_log_config, lookback),
         .help = "how far back the first cycle reads (\"5m\", \"0\": only new lines); empty: the rule file's "
                 "lookback"},
        /* journald tells inotify readers about new entries 350-450 ms late; reading its mapped
         * files every 10 ms sees a line within about 10 ms for ~100 cheap wake-ups a second
         * (each a few µs when nothing is new). */
        {.type = NH_CFG_DURATION,
         .key = "journal_poll_interval",
         .def = "10ms",
         .offset = offsetof(struct kernel_log_config, journal_poll_interval),
         .help = "how often the journal is polled for new lines, besides its change notifications",
         .min = 0.001,
         .max = 60},
        /* ~5 ms of matching at a million lines a second: the loop stays responsive in a storm. */
        {.type = NH_CFG_INT,
         .key = "max_batch",
         .def = "5000",
         .offset = offsetof(struct kernel_log_config, max_batch),
         .help = "lines read per wake-up before the probe yields to the loop",
         .min = 1,
         .max = 10000000},
        /* Far beyond any burst the reader absorbs (a million lines is about a second), short
         * enough that a condition seen is still news. */
        {.type = NH_CFG_DURATION,
         .key = "max_lag",
         .def = "30s",
         .offset = offsetof(struct kernel_log_config, max_lag),
         .help = "a journal reader further behind than this skips ahead, counting the lines it skips",
         .min = 1,
         .max = 86400},
        /* An OOM storm kills dozens of processes in a second: ten events tell the story, the
         * counter keeps the total, and 5,000 nodes cannot flood the API server with events. */
        {.type = NH_CFG_INT,
         .key = "event_burst",
         .def = "10",
         .offset = offsetof(struct kernel_log_config, event_burst),
         .help = "events a rule may emit at once before its rate limit applies",
         .min = 1,
         .max = 100000},
        {.type = NH_CFG_DURATION,
         .key = "event_interval",
         .def = "10s",
         .offset = offsetof(struct kernel_log_config, event_interval),
         .help = "a rule regains one event every this long once its burst is spent",
         .min = 0.001,
         .max = 86400},
        {0},
};

enum reader {
        READER_NONE,
        READER_JOURNAL,
        READER_KMSG,
};

struct cond_state {
        bool active; /* True */
        size_t rule; /* the rule that set it */
        char *message;
        uint64_t last_match; /* nh_now() µs */
};

struct rule_state {
        uint64_t matches; /* every match, events suppressed or not */
        double tokens;
        uint64_t refilled; /* nh_now() µs */
        uint64_t suppressed, suppressed_logged;
};

struct kernel_log {
        struct nh_probe_ctx *ctx;
        const struct kernel_log_config *config;
        struct kl_rules *rules;
        struct kl_buffer *buffer;
        struct cond_state *conds; /* per rules->conditions */
        struct rule_state *rule_states;
        bool no_loop; /* a one-shot run: everything is read inside probe() */
        bool stopping;

        enum reader want; /* the reader chosen at init */
        enum reader reader; /* the open one; READER_NONE while down */
        char *down_message; /* why it is down */
        uint64_t retry_at, retry_delay;

        sd_journal *journal;
        int journal_dir_fd;
        int journal_fd; /* inotify; -1: polling only */
        char *journal_cursor; /* where a reopened journal resumes */
        uint64_t last_realtime; /* of the last entry read */
        uint64_t reopen_at;
        sd_id128_t boot_id;

        int kmsg_fd;
        bool kmsg_watched; /* else polled (a regular file in tests) */
        bool kmsg_seq_known;
        uint64_t kmsg_next_seq;
        char *kmsg_buf;
        size_t kmsg_len; /* bytes carried over from the last read (files only) */

        uint64_t start_realtime; /* lookback: lines before this are not looked at */
        uint64_t start_monotonic; /* the same for kmsg's timestamps (µs since boot) */
        bool lookback_done;
        bool cycle_pending; /* the first cycle waits for the lookback */
        bool more; /* the last batch stopped at max_batch */
        uint64_t next_poll;

        uint64_t suppress_log_at; /* when suppressed events are logged (0: none waiting) */
        bool skipping; /* behind by more than max_lag */
        uint64_t lines, dropped, dropped_logged, drop_log_at;
        uint64_t match_errors;
};

static void schedule(struct kernel_log *k);
static void read_some(struct kernel_log *k);

/* ---- time ---- */

static uint64_t clock_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* "10s", "1m30s", "250ms": as durations are written in the configuration. */
static const char *format_span(char *buf, size_t size, uint64_t usec) {
        uint64_t s = usec / USEC_PER_SEC;

        if (usec < USEC_PER_SEC)
                snprintf(buf, size, "%llums", (unsigned long long) (usec / USEC_PER_MSEC));
        else if (s % 3600 == 0)
                snprintf(buf, size, "%lluh", (unsigned long long) (s / 3600));
        else if (s >= 60 && s % 60 == 0)
                snprintf(buf, size, "%llum", (unsigned long long) (s / 60));
        else if (s >= 60)
                snprintf(buf, size, "%llum%llus", (unsigned long long) (s / 60), (unsigned long long) (s % 60));
        else
                snprintf(buf, size, "%llus", (unsigned long long) s);
        return buf;
}

/* ---- conditions ---- */

static void report_condition(struct kernel_log *k, size_t i) {
        const struct kl_condition *c = &k->rules->conditions[i];
        const struct cond_state *s = &k->conds[i];
        struct nh_observation obs = {.type = c->type};

        if (k->reader == READER_NONE && k->down_message) {
                obs.status = NH_STATUS_UNKNOWN;
                obs.reason = UNKNOWN_REASON;
                obs.message = k->down_message;
        } else if (s->active) {
                obs.status = NH_STATUS_TRUE;
                obs.reason = k->rules->rules[s->rule].reason;
                obs.message = s->message;
        } else {
                obs.status = NH_STATUS_FALSE;
                obs.reason = c->reason;
                obs.message = s->message ? s->message : c->message;
        }
        (void) nh_report(k->ctx, &obs);
}

static void report_all(struct kernel_log *k) {
        for (size_t i = 0; i < k->rules->n_conditions; i++)
                report_condition(k, i);
}

/* "LINES" or "LINES; SUFFIX", as NPD's generateMessage. */
static char *match_message(const struct kl_rule *rule, const struct kl_match *m) {
        char *s = NULL;

        if (rule->message_suffix && *rule->message_suffix) {
                if (asprintf(&s, "%.*s; %s", (int) m->len, m->text, rule->message_suffix) < 0)
                        return NULL;
                return s;
        }
        return strndup(m->text, m->len);
}

static void set_condition(struct kernel_log *k, size_t rule_index, const struct kl_match *m) {
        const struct kl_rule *rule = &k->rules->rules[rule_index];
        struct cond_state *s = &k->conds[rule->condition];

        s->last_match = nh_now(k->ctx);
        /* NPD: the message (and the transition) change only when the status or the reason does. */
        if (s->active && strcmp(k->rules->rules[s->rule].reason, rule->reason) == 0) {
                s->rule = rule_index; /* the same reason: clearAfter counts from this match */
                return;
        }
        free(s->message);
        s->message = match_message(rule, m);
        s->active = true;
        s->rule = rule_index;
        report_condition(k, rule->condition);
}

static void clear_condition(struct kernel_log *k, size_t cond, const char *why) {
        struct cond_state *s = &k->conds[cond];
        const struct kl_condition *c = &k->rules->conditions[cond];

        s->active = false;
        free(s->message);
        if (asprintf(&s->message, "%s%s(%s)", c->message, *c->message ? " " : "", why) < 0)
                s->message = NULL;
        report_condition(k, cond);
}

/* Conditions whose clearAfter passed; returns the earliest deadline still ahead (UINT64_MAX: none). */
static uint64_t expire_conditions(struct kernel_log *k) {
        uint64_t now = nh_now(k->ctx), next = UINT64_MAX;
        char why[MESSAGE_SIZE], span[32];

        for (size_t i = 0; i < k->rules->n_conditions; i++) {
                struct cond_state *s = &k->conds[i];
                const struct kl_rule *rule;

                if (!s->active)
                        continue;
                rule = &k->rules->rules[s->rule];
                if (rule->clear_after == 0)
                        continue;
                if (now >= s->last_match + rule->clear_after) {
                        snprintf(why, sizeof(why), "no %s for %s", rule->reason,
                                 format_span(span, sizeof(span), rule->clear_after));
                        clear_condition(k, i, why);
                } else if (s->last_match + rule->clear_after < next)
                        next = s->last_match + rule->clear_after;
        }
        return next;
}

/* ---- matching ---- */

static bool event_allowed(struct kernel_log *k, struct rule_state *rs) {
        uint64_t now = nh_now(k->ctx);
        double burst = (double) k->config->event_burst;

        if (now > rs->refilled) {
                rs->tokens += (double) (now - rs->refilled) / (double) k->config->event_interval;
                if (rs->tokens > burst)
                        rs->tokens = burst;
        }
        rs->refilled = now;
        if (rs->tokens < 1)
                return false;
        rs->tokens -= 1;
        return true;
}

/* Says how many events each rule's rate limit kept back since the last time it said so. */
static void log_suppressed(struct kernel_log *k) {
        char span[32];

        for (size_t i = 0; i < k->rules->n_rules; i++) {
                struct rule_state *rs = &k->rule_states[i];

                if (rs->suppressed == rs->suppressed_logged)
                        continue;
                nh_log(k->ctx, NH_LOG_WARNING,
                       "rate limit: %llu %s events were not sent (%llu in total; at most %lld at once, then one "
                       "every %s)",
                       (unsigned long long) (rs->suppressed - rs->suppressed_logged), k->rules->rules[i].reason,
                       (unsigned long long) rs->suppressed, (long long) k->config->event_burst,
                       format_span(span, sizeof(span), k->config->event_interval));
                rs->suppressed_logged = rs->suppressed;
        }
        k->suppress_log_at = 0;
}

static void emit_event(struct kernel_log *k, size_t rule_index, const struct kl_match *m) {
        const struct kl_rule *rule = &k->rules->rules[rule_index];
        struct rule_state *rs = &k->rule_states[rule_index];
        char *message;

        if (!event_allowed(k, rs)) {
                rs->suppressed++;
                /* Said within 10 s, not per line: the storm is in the counters, not in the log. */
                if (!k->suppress_log_at)
                        k->suppress_log_at = clock_usec(CLOCK_MONOTONIC) + DROP_LOG_INTERVAL;
                return;
        }
        message = match_message(rule, m);
        if (message)
                (void) nh_event(k->ctx, rule->reason, message);
        free(message);
}

/* One line, through every rule in the file's order (as NPD). */
static void process_line(struct kernel_log *k, const char *line, size_t len) {
        struct kl_rules *r = k->rules;
        struct kl_match m;
        int ret;

        if (kl_rules_skip(r, line, len))
                return;
        k->lines++;
        (void) kl_buffer_push(k->buffer, line, len);
        kl_rules_prefilter(r, line, len);
        for (size_t i = 0; i < r->n_rules; i++) {
                const struct kl_rule *rule = &r->rules[i];
                bool set = false;

                if (r->candidates[2 * i]) {
                        ret = kl_pattern_match(r, &rule->pattern, k->buffer, &m);
                        if (ret < 0)
                                k->match_errors++;
                        if (ret > 0) {
                                set = true;
                                k->rule_states[i].matches++;
                                if (rule->type == KL_RULE_TEMPORARY)
                                        emit_event(k, i, &m);
                                else
                                        set_condition(k, i, &m);
                        }
                }
                if (r->candidates[2 * i + 1] && !set && k->conds[rule->condition].active &&
                    k->conds[rule->condition].rule == i) {
                        ret = kl_pattern_match(r, &rule->clear_pattern, k->buffer, &m);
                        if (ret > 0) {
                                char *why = NULL;
                                if (asprintf(&why, "cleared by: %.*s", (int) m.len, m.text) < 0)
                                        why = NULL;
                                clear_condition(k, rule->condition, why ? why : "cleared");
                                free(why);
                        }
                }
        }
}

/* ---- drops ---- */

static void log_drops(struct kernel_log *k, bool force) {
        uint64_t now = clock_usec(CLOCK_MONOTONIC);

        if (k->dropped == k->dropped_logged || (!force && now < k->drop_log_at))
                return;
        nh_log(k->ctx, NH_LOG_WARNING, "%llu kernel messages were not looked at (%s; %llu in total since start)",
               (unsigned long long) (k->dropped - k->dropped_logged),
               k->reader == READER_KMSG ? "overwritten in the kernel's ring buffer before they were read"
                                        : "the reader fell behind the journal by more than max_lag and skipped ahead",
               (unsigned long long) k->dropped);
        k->dropped_logged = k->dropped;
        k->drop_log_at = now + DROP_LOG_INTERVAL;
}

/* ---- opening files under the root ---- */

static int open_dir_in_root(int root, const char *path) {
        struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
        int fd;

        while (*path == '/')
                path++;
        if (!*path)
                path = ".";
        fd = (int) syscall(SYS_openat2, root, path, &how, sizeof(how));
        if (fd >= 0)
                return fd;
        if (errno != ENOSYS)
                return -errno;
        if (strstr(path, ".."))
                return -EPERM;
        fd = openat(root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd >= 0 ? fd : -errno;
}

static bool journal_exists(struct kernel_log *k) {
        int root = nh_root_fd(k->ctx, NH_ROOT_HOST);
        struct stat st;

        return fstatat(root, "run/log/journal", &st, 0) == 0 || fstatat(root, "var/log/journal", &st, 0) == 0;
}

/* ---- the journal ---- */

static void journal_close(struct kernel_log *k) {
        if (k->journal) {
                char *cursor = NULL;
                if (sd_journal_get_cursor(k->journal, &cursor) >= 0) {
                        free(k->journal_cursor);
                        k->journal_cursor = cursor;
                }
        }
        if (k->journal_fd >= 0 && !k->stopping)
                (void) nh_unwatch_fd(k->ctx, k->journal_fd);
        k->journal_fd = -1;
        sd_journal_close(k->journal);
        k->journal = NULL;
        if (k->journal_dir_fd >= 0)
                close(k->journal_dir_fd);
        k->journal_dir_fd = -1;
}

static void on_journal_io(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct kernel_log *k = userdata;
        int r;

        if (!k->journal)
                return;
        r = sd_journal_process(k->journal);
        if (r < 0) {
                nh_log(ctx, NH_LOG_WARNING, "sd_journal_process failed: %s; reading on, by polling", strerror(-r));
                (void) nh_unwatch_fd(ctx, k->journal_fd);
                k->journal_fd = -1;
                k->reopen_at = clock_usec(CLOCK_MONOTONIC) + REOPEN_INTERVAL;
        }
        read_some(k);
        schedule(k);
}

/* Positions a fresh journal: after the last entry read, or at the start of the lookback. */
static int journal_position(struct kernel_log *k) {
        int r;

        if (k->journal_cursor) {
                r = sd_journal_seek_cursor(k->journal, k->journal_cursor);
                if (r >= 0) {
                        /* The entry itself was read already: step onto it so that next() passes it. */
                        r = sd_journal_next(k->journal);
                        if (r > 0 && sd_journal_test_cursor(k->journal, k->journal_cursor) <= 0)
                                r = sd_journal_previous(k->journal); /* it is gone: the next one is new */
                        return r < 0 ? r : 0;
                }
        }
        if (k->last_realtime > 0)
                return sd_journal_seek_realtime_usec(k->journal, k->last_realtime + 1);
        if (k->start_realtime == UINT64_MAX) {
                /* No lookback: only what comes next. */
                r = sd_journal_seek_tail(k->journal);
                if (r >= 0)
                        r = sd_journal_previous(k->journal);
                return r < 0 ? r : 0;
        }
        return sd_journal_seek_realtime_usec(k->journal, k->start_realtime);
}

static int journal_open(struct kernel_log *k, char *msg, size_t size) {
        const char *dir = k->config->journal_directory;
        char match[128];
        int root = nh_root_fd(k->ctx, NH_ROOT_HOST), r;

        k->journal_dir_fd = open_dir_in_root(root, *dir ? dir : "/");
        if (k->journal_dir_fd < 0) {
                r = k->journal_dir_fd;
                snprintf(msg, size, "cannot open the journal directory %s: %s", *dir ? dir : "/", strerror(-r));
                return r;
        }
        r = sd_journal_open_directory_fd(&k->journal, k->journal_dir_fd, *dir ? 0 : SD_JOURNAL_OS_ROOT);
        if (r < 0) {
                snprintf(msg, size, "cannot open the journal in %s: %s",
                         *dir ? dir : "/run/log/journal and /var/log/journal", strerror(-r));
                return r;
        }
        (void) sd_journal_set_data_threshold(k->journal, KL_MAX_LINE + 16);
        if (k->rules->journal_identifier)
                snprintf(match, sizeof(match), "SYSLOG_IDENTIFIER=%s", k->rules->journal_identifier);
        else
                snprintf(match, sizeof(match), "_TRANSPORT=kernel");
        /* One match: a second (_BOOT_ID) costs more per entry than comparing the entry's boot ID. */
        r = sd_journal_add_match(k->journal, match, 0);
        if (r >= 0)
                r = journal_position(k);
        if (r < 0) {
                snprintf(msg, size, "cannot position the journal: %s", strerror(-r));
                return r;
        }

        k->journal_fd = -1;
        r = sd_journal_get_fd(k->journal);
        if (r >= 0) {
                int fd = r;
                r = sd_journal_get_events(k->journal);
                if (r >= 0)
                        r = nh_watch_fd(k->ctx, fd, (uint32_t) r, on_journal_io, k);
                if (r >= 0)
                        k->journal_fd = fd;
        }
        if (r < 0 && r != -EOPNOTSUPP)
                /* inotify exhausted (EMFILE, ENOSPC): the poll timer reads on; reopening sees new files. */
                nh_log(k->ctx, NH_LOG_WARNING,
                       "cannot watch the journal for changes (%s); polling it every %llu ms instead", strerror(-r),
                       (unsigned long long) (k->config->journal_poll_interval / USEC_PER_MSEC));
        k->reopen_at = k->journal_fd < 0 ? clock_usec(CLOCK_MONOTONIC) + REOPEN_INTERVAL : 0;
        return 0;
}

/* Reads up to max_batch entries.  1: more are waiting, 0: caught up, or an error. */
static int journal_read(struct kernel_log *k) {
        uint64_t now_real = clock_usec(CLOCK_REALTIME);

        for (int64_t n = 0; n < k->config->max_batch; n++) {
                const void *data;
                size_t len;
                uint64_t t = 0, mono;
                sd_id128_t boot;
                int r = sd_journal_next(k->journal);

                if (r < 0)
                        return r;
                if (r == 0)
                        return 0;
                (void) sd_journal_get_realtime_usec(k->journal, &t);
                k->last_realtime = t;
                if (t < k->start_realtime && k->start_realtime != UINT64_MAX)
                        continue;
                /* Lines of earlier boots say nothing about this one (NPD's lookback would take them). */
                if (sd_journal_get_monotonic_usec(k->journal, &mono, &boot) < 0 || !sd_id128_equal(boot, k->boot_id))
                        continue;
                if (k->lookback_done && t + k->config->max_lag < now_real) {
                        /* Hopelessly behind (a reader stalled, or the storm outpaces matching): skip. */
                        if (!k->skipping)
                                kl_buffer_reset(k->buffer);
                        k->skipping = true;
                        k->dropped++;
                        continue;
                }
                if (k->skipping && t + k->config->max_lag / 2 >= now_real)
                        k->skipping = false;
                if (k->skipping) {
                        k->dropped++;
                        continue;
                }
                r = sd_journal_get_data(k->journal, "MESSAGE", &data, &len);
                if (r == -ENOENT || r == -EBADMSG || r == -E2BIG)
                        continue; /* no message, a corrupt entry, or a huge one */
                if (r < 0)
                        return r;
                if (len < 8)
                        continue;
                process_line(k, (const char *) data + 8, len - 8);
        }
        return 1;
}

/* ---- /dev/kmsg ---- */

static void kmsg_close(struct kernel_log *k) {
        if (k->kmsg_fd >= 0) {
                if (k->kmsg_watched && !k->stopping)
                        (void) nh_unwatch_fd(k->ctx, k->kmsg_fd);
                close(k->kmsg_fd);
        }
        k->kmsg_fd = -1;
        k->kmsg_watched = false;
        k->kmsg_len = 0;
}

static void on_kmsg_io(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct kernel_log *k = userdata;

        read_some(k);
        schedule(k);
}

static int kmsg_open(struct kernel_log *k, char *msg, size_t size) {
        int r;

        k->kmsg_fd = open(k->config->kmsg_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (k->kmsg_fd < 0) {
                r = -errno;
                snprintf(msg, size, "cannot open %s: %s", k->config->kmsg_path, strerror(-r));
                return r;
        }
        /* Reading starts at the oldest record in the ring: the lookback, or after an error what is still there. */
        r = nh_watch_fd(k->ctx, k->kmsg_fd, EPOLLIN, on_kmsg_io, k);
        k->kmsg_watched = r >= 0; /* epoll refuses regular files (EPERM): they are polled */
        k->kmsg_len = 0;
        return 0;
}

/* Undoes the kernel's \xNN escapes, in place, as journald does; returns the new length. */
static size_t kmsg_unescape(char *s, size_t len) {
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x') {
                        char hex[3] = {s[i + 2], s[i + 3], '\0'};
                        char *end;
                        unsigned long v = strtoul(hex, &end, 16);
                        if (end == hex + 2) {
                                s[o++] = (char) v;
                                i += 3;
                                continue;
                        }
                }
                s[o++] = s[i];
        }
        return o;
}

/* journald's syslog_parse_identifier(): "ident[pid]: text" written from user space loses "ident[pid]: ". */
static const char *strip_identifier(const char *s, size_t *len) {
        size_t i = 0, l;

        while (i < *len && (s[i] == ' ' || s[i] == '\t'))
                i++;
        for (l = 0; i + l < *len && s[i + l] != ' ' && s[i + l] != '\t'; l++)
                ;
        if (l == 0 || s[i + l - 1] != ':')
                return s;
        i += l;
        if (i < *len && (s[i] == ' ' || s[i] == '\t'))
                i++;
        *len -= i;
        return s + i;
}

/* One record "PRI,SEQ,USEC,FLAGS[,…];TEXT" (continuation lines already cut off).  -EBADMSG: garbage. */
static int kmsg_record(struct kernel_log *k, char *rec, size_t len) {
        char *semi = memchr(rec, ';', len), *end;
        unsigned long long pri, seq, usec;
        const char *text;
        size_t text_len;

        if (!semi)
                return -EBADMSG;
        *semi = '\0';
        errno = 0;
        pri = strtoull(rec, &end, 10);
        if (errno || *end != ',')
                return -EBADMSG;
        seq = strtoull(end + 1, &end, 10);
        if (errno || *end != ',')
                return -EBADMSG;
        usec = strtoull(end + 1, &end, 10);
        if (errno || (*end != ',' && *end != '\0'))
                return -EBADMSG;

        if (k->kmsg_seq_known && seq < k->kmsg_next_seq)
                return 0; /* read already: a reopened ring starts at its oldest record */
        if (k->kmsg_seq_known && seq > k->kmsg_next_seq) {
                /* Overwritten before they were read; lines either side of the gap are not neighbours. */
                k->dropped += seq - k->kmsg_next_seq;
                kl_buffer_reset(k->buffer);
        }
        k->kmsg_seq_known = true;
        k->kmsg_next_seq = seq + 1;
        if (usec < k->start_monotonic)
                return 0;

        text_len = kmsg_unescape(semi + 1, len - (size_t) (semi + 1 - rec));
        text = semi + 1;
        if (pri >> 3 != 0)
                text = strip_identifier(text, &text_len);
        process_line(k, text, text_len);
        return 0;
}

/* Reads up to max_batch records.  1: more may be waiting, 0: caught up, or an error. */
static int kmsg_read(struct kernel_log *k) {
        for (int64_t n = 0; n < k->config->max_batch;) {
                ssize_t got = read(k->kmsg_fd, k->kmsg_buf + k->kmsg_len, KMSG_RECORD_MAX - k->kmsg_len);
                char *p, *stop;

                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        if (errno == EPIPE)
                                continue; /* overwritten under us: the sequence numbers count the loss */
                        return -errno;
                }
                if (got == 0)
                        return 0; /* a regular file at its end */
                stop = k->kmsg_buf + k->kmsg_len + got;
                p = k->kmsg_buf;
                /* /dev/kmsg returns one record per read; a file holds many: split at the newlines. */
                for (;;) {
                        char *nl = memchr(p, '\n', (size_t) (stop - p));
                        if (!nl)
                                break;
                        if (*p != ' ') {
                                int r = kmsg_record(k, p, (size_t) (nl - p));
                                if (r < 0)
                                        k->match_errors++;
                                n++;
                        }
                        p = nl + 1;
                }
                k->kmsg_len = (size_t) (stop - p);
                if (k->kmsg_len == KMSG_RECORD_MAX)
                        k->kmsg_len = 0; /* a record longer than any the kernel writes: drop it */
                memmove(k->kmsg_buf, p, k->kmsg_len);
        }
        return 1;
}

/* ---- the reader ---- */

static void reader_close(struct kernel_log *k) {
        journal_close(k);
        kmsg_close(k);
        k->reader = READER_NONE;
}

static int reader_open(struct kernel_log *k) {
        char msg[MESSAGE_SIZE];
        int r;

        r = k->want == READER_JOURNAL ? journal_open(k, msg, sizeof(msg)) : kmsg_open(k, msg, sizeof(msg));
        if (r < 0) {
                reader_close(k);
                free(k->down_message);
                k->down_message = strdup(msg);
                return r;
        }
        k->reader = k->want;
        k->next_poll = clock_usec(CLOCK_MONOTONIC);
        return 0;
}

/* The reader failed: Unknown, and a retry with backoff. */
static void reader_failed(struct kernel_log *k, const char *what, int r) {
        char msg[MESSAGE_SIZE], span[32];

        reader_close(k);
        k->retry_delay = k->retry_delay ? k->retry_delay * 2 : RETRY_MIN;
        if (k->retry_delay > RETRY_MAX)
                k->retry_delay = RETRY_MAX;
        k->retry_at = clock_usec(CLOCK_MONOTONIC) + k->retry_delay;
        if (what) {
                snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-r));
                free(k->down_message);
                k->down_message = strdup(msg);
        }
        nh_log(k->ctx, NH_LOG_WARNING, "kernel messages cannot be read (%s); retrying in %s",
               k->down_message ? k->down_message : strerror(-r), format_span(span, sizeof(span), k->retry_delay));
        kl_buffer_reset(k->buffer);
        report_all(k);
}

static void lookback_finished(struct kernel_log *k) {
        if (k->lookback_done)
                return;
        k->lookback_done = true;
        if (k->cycle_pending) {
                k->cycle_pending = false;
                (void) expire_conditions(k);
                report_all(k);
                nh_cycle_done(k->ctx);
        }
}

/* One batch from the open reader. */
static void read_some(struct kernel_log *k) {
        int r;

        k->more = false;
        if (k->reader == READER_NONE)
                return;
        r = k->reader == READER_JOURNAL ? journal_read(k) : kmsg_read(k);
        /* For /metrics: nodehealthd_probe_counts_total{probe="INSTANCE",counter="entries_read"}. */
        (void) nh_counter_set(k->ctx, "entries_read", k->lines);
        (void) nh_counter_set(k->ctx, "entries_dropped", k->dropped);
        if (r < 0) {
                reader_failed(k, k->reader == READER_JOURNAL ? "reading the journal failed" : "reading kmsg failed", r);
                if (k->cycle_pending)
                        lookback_finished(k); /* the first cycle ends, with Unknown */
                return;
        }
        k->more = r > 0;
        if (r == 0)
                lookback_finished(k);
        log_drops(k, false);
}

/* ---- the timer: one, at the earliest of everything that waits ---- */

static void on_timer(struct nh_probe_ctx *ctx, void *userdata) {
        struct kernel_log *k = userdata;
        uint64_t now = clock_usec(CLOCK_MONOTONIC);

        if (k->reader == READER_NONE && k->retry_at && now >= k->retry_at) {
                if (reader_open(k) >= 0) {
                        nh_log(ctx, NH_LOG_NOTICE, "kernel messages are readable again");
                        free(k->down_message);
                        k->down_message = NULL;
                        k->retry_delay = 0;
                        k->retry_at = 0;
                        report_all(k);
                } else
                        reader_failed(k, NULL, -EIO);
        }
        if (k->reader == READER_JOURNAL && k->journal_fd < 0 && k->reopen_at && now >= k->reopen_at) {
                /* Polling without inotify: a reopen finds files journald created since. */
                journal_close(k);
                k->reader = READER_NONE;
                if (reader_open(k) < 0)
                        reader_failed(k, NULL, -EIO);
        }
        if (k->reader == READER_JOURNAL && k->journal_fd >= 0)
                (void) sd_journal_process(k->journal); /* its own timeout (sd_journal_get_timeout) */
        if (k->more || now >= k->next_poll) {
                k->next_poll = now + k->config->journal_poll_interval;
                read_some(k);
        }
        log_drops(k, false);
        if (k->suppress_log_at && now >= k->suppress_log_at)
                log_suppressed(k);
        schedule(k);
}

/*
 * Reading, polling and retrying run on the real monotonic clock; conditions (clearAfter) and
 * rate limits on the core's (nh_now(), which tests move).  The one timer takes the nearer.
 */
static void schedule(struct kernel_log *k) {
        uint64_t mono = clock_usec(CLOCK_MONOTONIC), next = UINT64_MAX, now = nh_now(k->ctx), expiry, delay, t;
        int r;

        if (k->stopping || k->no_loop)
                return;
        expiry = expire_conditions(k);
        if (k->more)
                next = mono;
        if (k->reader == READER_NONE && k->retry_at && k->retry_at < next)
                next = k->retry_at;
        if ((k->reader == READER_JOURNAL || (k->reader == READER_KMSG && !k->kmsg_watched)) && k->next_poll < next)
                next = k->next_poll;
        if (k->reader == READER_JOURNAL && k->journal_fd < 0 && k->reopen_at && k->reopen_at < next)
                next = k->reopen_at;
        if (k->reader == READER_JOURNAL && k->journal_fd >= 0 && sd_journal_get_timeout(k->journal, &t) >= 0 &&
            t < next)
                next = t; /* CLOCK_MONOTONIC as well */
        if (k->dropped > k->dropped_logged && k->drop_log_at < next)
                next = k->drop_log_at;
        if (k->suppress_log_at && k->suppress_log_at < next)
                next = k->suppress_log_at;
        if (next == UINT64_MAX && expiry == UINT64_MAX) {
                (void) nh_set_timer(k->ctx, 0, NULL, NULL);
                return;
        }
        delay = next == UINT64_MAX ? UINT64_MAX : next > mono ? next - mono : 0;
        if (expiry != UINT64_MAX && (expiry > now ? expiry - now : 0) < delay)
                delay = expiry > now ? expiry - now : 0;
        r = nh_set_timer(k->ctx, delay, on_timer, k);
        if (r < 0 && r != -ESHUTDOWN)
                nh_log(k->ctx, NH_LOG_ERR, "cannot set a timer: %s; lines are read when the fd says so", strerror(-r));
}

/* ---- the descriptor's callbacks ---- */

static void kernel_log_free(struct kernel_log *k) {
        if (!k)
                return;
        reader_close(k);
        if (k->conds)
                for (size_t i = 0; i < k->rules->n_conditions; i++)
                        free(k->conds[i].message);
        free(k->conds);
        free(k->rule_states);
        kl_buffer_free(k->buffer);
        kl_rules_free(k->rules);
        free(k->kmsg_buf);
        free(k->journal_cursor);
        free(k->down_message);
        free(k);
}

/* The file's condition types are this instance's: declared while init runs. */
static int declare_types(struct nh_probe_ctx *ctx, struct kernel_log *k) {
        const struct kl_rules *r = k->rules;

        for (size_t i = 0; i < r->n_conditions; i++) {
                int ret = nh_declare_condition(ctx, r->conditions[i].type, r->conditions[i].reason);

                if (ret < 0) {
                        nh_log(ctx, NH_LOG_ERR, "%s: cannot declare condition %s: %s", r->path, r->conditions[i].type,
                               ret == -E2BIG ? "too many condition types" : strerror(-ret));
                        return ret;
                }
        }
        return 0;
}

static int choose_reader(struct nh_probe_ctx *ctx, struct kernel_log *k) {
        const char *source = k->config->source;
        bool file_wants_kmsg =
                !k->rules->journal_identifier && (!k->rules->plugin || strcmp(k->rules->plugin, "kmsg") == 0);
        int fd = -1;

        if (strcmp(source, "journal") == 0) {
                k->want = READER_JOURNAL;
                return 0;
        }
        if (strcmp(source, "kmsg") == 0) {
                if (k->rules->journal_identifier) {
                        nh_log(ctx, NH_LOG_ERR, "%s reads SYSLOG_IDENTIFIER=%s, which is in the journal, not in kmsg",
                               k->rules->path, k->rules->journal_identifier);
                        return -EINVAL;
                }
                k->want = READER_KMSG;
                return 0;
        }
        if (strcmp(source, "auto") != 0) {
                nh_log(ctx, NH_LOG_ERR, "\"source\" is \"%s\": write \"auto\", \"journal\" or \"kmsg\"", source);
                return -EINVAL;
        }
        /* Opened, not access(): without CAP_SYSLOG (kernel.dmesg_restrict=1) root may not read it. */
        if (!*k->config->journal_directory && file_wants_kmsg)
                fd = open(k->config->kmsg_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0)
                k->want = READER_KMSG;
        else if (*k->config->journal_directory || k->rules->journal_identifier || journal_exists(k))
                k->want = READER_JOURNAL;
        else
                k->want = READER_KMSG;
        if (fd >= 0)
                close(fd);
        return 0;
}

static int kernel_log_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct kernel_log_config *c = config;
        struct kernel_log *k;
        char *error = NULL;
        uint64_t now_real, boot_real, start;
        int r;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->ctx = ctx;
        k->config = c;
        k->journal_fd = k->journal_dir_fd = k->kmsg_fd = -1;

        if (!c->npd_config || !*c->npd_config) {
                nh_log(ctx, NH_LOG_ERR, "\"npd_config\" must name a rule file");
                r = -EINVAL;
                goto fail;
        }
        /* Relative to the directory of nodehealthd.json, as conf.d/ is. */
        r = kl_rules_load(nh_config_dir_fd(ctx) >= 0 ? nh_config_dir_fd(ctx) : AT_FDCWD, c->npd_config, &k->rules,
                          &error);

        if (r < 0) {
                nh_log(ctx, NH_LOG_ERR, "%s", error ? error : strerror(-r));
                free(error);
                goto fail;
        }
        if (c->lookback && *c->lookback && go_parse_duration(c->lookback, &k->rules->lookback) < 0) {
                nh_log(ctx, NH_LOG_ERR, "\"lookback\" is \"%s\", not a duration such as \"5m\" or \"0\"", c->lookback);
                r = -EINVAL;
                goto fail;
        }
        r = -ENOMEM;
        k->buffer = kl_buffer_new(k->rules->buffer_size);
        k->conds = calloc(k->rules->n_conditions + 1, sizeof(*k->conds));
        k->rule_states = calloc(k->rules->n_rules + 1, sizeof(*k->rule_states));
        k->kmsg_buf = malloc(KMSG_RECORD_MAX + 1);
        if (!k->buffer || !k->conds || !k->rule_states || !k->kmsg_buf)
                goto fail;
        for (size_t i = 0; i < k->rules->n_rules; i++) {
                k->rule_states[i].tokens = (double) c->event_burst;
                k->rule_states[i].refilled = nh_now(ctx);
        }
        r = declare_types(ctx, k);
        if (r < 0)
                goto fail;
        r = choose_reader(ctx, k);
        if (r < 0)
                goto fail;
        r = sd_id128_get_boot(&k->boot_id);
        if (r < 0) {
                nh_log(ctx, NH_LOG_ERR, "cannot read the boot ID: %s", strerror(-r));
                goto fail;
        }

        /* NPD's start time: now - lookback, but not before boot + delay. */
        now_real = clock_usec(CLOCK_REALTIME);
        boot_real = now_real - clock_usec(CLOCK_BOOTTIME);
        start = k->rules->lookback < now_real ? now_real - k->rules->lookback : 0;
        if (boot_real + k->rules->delay > start)
                start = boot_real + k->rules->delay;
        k->start_realtime = k->rules->lookback == 0 && k->rules->delay == 0 ? UINT64_MAX : start;
        start = clock_usec(CLOCK_MONOTONIC);
        k->start_monotonic = k->rules->lookback < start ? start - k->rules->lookback : 0;
        if (k->rules->lookback == 0)
                k->start_monotonic = start;
        if (k->rules->delay > k->start_monotonic)
                k->start_monotonic = k->rules->delay;

        r = reader_open(k);
        if (r < 0) {
                k->retry_delay = 0;
                reader_failed(k, NULL, r);
        }
        /* Reading starts on the loop, in batches; without a loop (--once) probe() reads. */
        r = nh_set_timer(ctx, 0, on_timer, k);
        k->no_loop = r == -EOPNOTSUPP;
        nh_log(ctx, NH_LOG_INFO, "%zu rules from %s; reading %s%s%s, lookback %llus", k->rules->n_rules, k->rules->path,
               k->want == READER_KMSG ? c->kmsg_path : "the journal",
               k->want == READER_JOURNAL && *c->journal_directory ? " in " : "",
               k->want == READER_JOURNAL ? c->journal_directory : "",
               (unsigned long long) (k->rules->lookback / USEC_PER_SEC));
        *ret_state = k;
        return 0;
fail:
        kernel_log_free(k);
        return r;
}

static int kernel_log_probe(struct nh_probe_ctx *ctx, void *state) {
        struct kernel_log *k = state;

        if (k->no_loop) {
                /* One shot: the lookback, read to its end now. */
                while (k->reader != READER_NONE && !k->lookback_done)
                        read_some(k);
                (void) expire_conditions(k);
                report_all(k);
                return 0;
        }
        if (!k->lookback_done && k->reader != READER_NONE) {
                k->cycle_pending = true;
                return NH_PROBE_PENDING;
        }
        (void) expire_conditions(k);
        report_all(k);
        schedule(k);
        return 0;
}

static void kernel_log_done(void *state) {
        struct kernel_log *k = state;

        if (k) {
                /* The last counts, so that a storm that ended with the daemon is still told. */
                log_suppressed(k);
                log_drops(k, true);
                k->stopping = true;
        }
        kernel_log_free(k);
}

NH_PLUGIN_DEFINE(.name = "kernel_log",
                 .description = "kernel messages (journal or /dev/kmsg) matched against node-problem-detector rules",
                 .conditions = NULL, .config = kernel_log_config_table, .config_size = sizeof(struct kernel_log_config),
                 .init = kernel_log_init, .probe = kernel_log_probe, .done = kernel_log_done);
