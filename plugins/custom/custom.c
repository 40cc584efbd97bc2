/* SPDX-License-Identifier: MIT */
/*
 * custom — node-problem-detector's custom plugins: scripts whose exit status is the verdict.
 *
 * `npd_config` names a custom-plugin-monitor file of node-problem-detector, loaded unchanged
 * (npd-config.c).  Each rule runs `path` with `args`: exit 0 is healthy, 1 is a problem,
 * anything else — another status, a signal, a timeout, a failure to start — is Unknown, with a
 * reason that says which.  The message is the start of stdout, without leading and trailing
 * white space, cut at `max_output_length` bytes (NPD's semantics; NPD reads at most 4 KiB).
 * A permanent rule feeds its condition (one problem per rule, so the core aggregates several
 * rules of one type: True if any says so); a temporary rule that exits 1 is an event.
 *
 * Processes.  posix_spawn, no shell: argv is the rule's path and args as written; a path
 * without "/" is looked up in $PATH and a relative one starts from the daemon's working
 * directory ("/" under systemd), as NPD (Go's exec.Command) does.  Each process gets its own
 * process group, stdin from /dev/null, every signal at its default and none blocked, no other
 * fd of the daemon; stdout and stderr are pipes read on the loop (non-blocking, the first bytes
 * kept, the rest drained so a chatty script never blocks on a full pipe; stderr is logged).
 * The core reaps every child (nh_watch_child) and, as a child subreaper, the grandchildren a
 * script leaves behind; the probe never waits.  A process still running at its timeout (the
 * rule's, else the file's) gets SIGTERM on its process group, SIGKILL `kill_grace` later, and
 * is abandoned `kill_grace` after that if even SIGKILL has not ended it (uninterruptible
 * sleep): it then no longer counts against `concurrency`, and its rule is not started again
 * until it has ended (PluginStuck).
 *
 * Time.  A cycle starts every rule that is due and ends (nh_cycle_done) when each of them has
 * an outcome; a rule's outcome at its timeout is decided then, the killing goes on after it.
 * A rule is due `invoke_interval` after its last start (less 15%, so that the core's jitter
 * does not skip a turn).  When the probe's `interval` is the shorter, the cycles in between
 * report the last outcomes again; when it is the longer, the probe asks for a cycle itself
 * (nh_trigger) once a rule is due.  So the file's invoke_interval says how often scripts run.
 * A cycle lasts up to ceil(rules / concurrency) timeouts: the probe's `timeout` must be longer,
 * or the core marks the cycle ProbeTimeout (logged at start).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <nodehealth/plugin.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "npd-config.h"
#include "../common/probe-text.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define READS_PER_WAKEUP 16 /* 64 KiB, then the loop serves others (epoll is level-triggered) */
#define DRAIN_MAX (256 * 1024) /* read after a process ended, before its pipes are closed */
#define STDERR_MAX 4096 /* NPD's limit for stderr too */
#define DUE_PERCENT 85

/* Reasons of Unknown outcomes. */
#define REASON_START_FAILED "PluginStartFailed"
#define REASON_STATUS_UNKNOWN "PluginStatusUnknown"
#define REASON_KILLED "PluginKilled"
#define REASON_TIMEOUT "PluginTimeout"
#define REASON_STUCK "PluginStuck"

extern char **environ;

struct custom_config {
        char *npd_config;
        uint64_t kill_grace; /* µs */
};

static const struct nh_cfg_entry custom_config_table[] = {
        {.type = NH_CFG_STRING,
         .key = "npd_config",
         .def = "",
         .offset = offsetof(struct custom_config, npd_config),
         .help = "node-problem-detector custom-plugin-monitor file with the rules (required; a relative path is "
                 "relative to the directory of nodehealthd.json)"},
        {.type = NH_CFG_DURATION,
         .key = "kill_grace",
         .def = "1s",
         .offset = offsetof(struct custom_config, kill_grace),
         .help = "after a plugin's timeout, time between SIGTERM and SIGKILL, and after SIGKILL before the process "
                 "is abandoned",
         .min = 0.01,
         .max = 60},
        {0},
};

enum phase {
        PHASE_RUNNING,
        PHASE_TERM, /* SIGTERM sent */
        PHASE_KILL, /* SIGKILL sent */
        PHASE_ABANDONED, /* SIGKILL did not end it: no longer waited for */
};

/* A pipe from a process: the first `cap` bytes after leading white space are kept. */
struct stream {
        int fd; /* -1 once closed */
        bool watched;
        char *buf;
        size_t len, cap;
        bool started; /* past the leading white space */
        bool more; /* something other than white space came after the first cap bytes */
};

struct custom;

/* One process of a rule. */
struct run {
        struct custom *c;
        size_t rule;
        pid_t pid;
        enum phase phase;
        bool decided; /* the rule's outcome is given (at its timeout) */
        bool counted; /* against concurrency */
        uint64_t started, deadline; /* CLOCK_MONOTONIC µs */
        struct stream out, err;
        struct run *next;
};

struct rule_state {
        struct run *run; /* its process while it lives, abandoned or not */
        bool queued; /* to be started in this cycle */
        bool waiting; /* this cycle waits for its outcome */
        bool started_ever;
        uint64_t last_start; /* nh_now() µs */
        bool have_outcome;
        enum nh_status status;
        const char *reason; /* static, or the file's */
        char *message;
};

struct counters {
        uint64_t runs, problems, unknown, timeouts, sigkills, abandoned, start_failures;
};

struct custom {
        struct nh_probe_ctx *ctx;
        const struct custom_config *config;
        struct npd_config *npd;
        struct rule_state *rules;
        bool *condition_has_rule;
        struct run *runs; /* every live process */
        size_t active; /* processes counted against concurrency */
        size_t max_output;
        bool in_cycle, pending;
        bool trigger_sent; /* asked for a cycle: not again until one starts */
        bool stopping;
        struct counters n;
};

static void schedule(struct custom *c);

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const char *signal_name(int sig, char *buf, size_t size) {
        const char *abbrev = sigabbrev_np(sig);

        if (abbrev)
                snprintf(buf, size, "SIG%s", abbrev);
        else
                snprintf(buf, size, "signal %d", sig);
        return buf;
}

static void count(struct custom *c, const char *name, uint64_t *counter) {
        (*counter)++;
        (void) nh_counter_set(c->ctx, name, *counter);
}

/* ---- output ---- */

static bool is_space(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static void stream_feed(struct stream *s, const char *data, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (!s->started) {
                        if (is_space(data[i]))
                                continue;
                        s->started = true;
                }
                if (s->len < s->cap)
                        s->buf[s->len++] = data[i];
                else if (s->more)
                        return; /* the rest is only drained */
                else if (!is_space(data[i]))
                        s->more = true;
        }
}

static void stream_close(struct custom *c, struct stream *s) {
        if (s->fd < 0)
                return;
        if (s->watched && !c->stopping)
                (void) nh_unwatch_fd(c->ctx, s->fd);
        s->watched = false;
        close(s->fd);
        s->fd = -1;
}

/* Reads at most `max` bytes: 0 at the end of the pipe (closed then), 1 when it would block, or -errno. */
static int stream_read(struct custom *c, struct stream *s, size_t max) {
        char chunk[4096];
        size_t total = 0;

        while (s->fd >= 0 && total < max) {
                ssize_t n = read(s->fd, chunk, sizeof(chunk));

                if (n > 0) {
                        stream_feed(s, chunk, (size_t) n);
                        total += (size_t) n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 1;
                stream_close(c, s);
                return n == 0 ? 0 : -errno;
        }
        return s->fd >= 0 ? 1 : 0;
}

/*
 * The kept text as a message: trailing white space trimmed unless more text followed the cut
 * (NPD trims the whole output, then cuts), control characters other than "\n" and "\t" as
 * spaces, bytes that are not UTF-8 as "?" (a cut inside a character drops it).
 */
static char *stream_text(const struct stream *s) {
        size_t len = s->len, o = 0;
        char *t;

        if (!s->more)
                while (len > 0 && is_space(s->buf[len - 1]))
                        len--;
        t = malloc(len + 1);
        if (!t)
                return NULL;
        for (size_t i = 0; i < len;) {
                unsigned char b = (unsigned char) s->buf[i];
                size_t need = b < 0x80                 ? 0
                              : b >= 0xc2 && b <= 0xdf ? 1
                              : b >= 0xe0 && b <= 0xef ? 2
                              : b >= 0xf0 && b <= 0xf4 ? 3
                                                       : SIZE_MAX;
                bool ok = need != SIZE_MAX;

                if (need == 0) {
                        t[o++] = (b < 0x20 && b != '\n' && b != '\t') || b == 0x7f ? ' ' : (char) b;
                        i++;
                        continue;
                }
                if (ok && i + need >= len) {
                        /* Incomplete at the end (the cut fell inside it): drop it. */
                        bool prefix = true;
                        for (size_t k = i + 1; k < len; k++)
                                prefix = prefix && ((unsigned char) s->buf[k] & 0xc0) == 0x80;
                        if (prefix)
                                break;
                        ok = false;
                }
                for (size_t k = 1; ok && k <= need; k++)
                        ok = i + k < len && ((unsigned char) s->buf[i + k] & 0xc0) == 0x80;
                /* Overlong three-byte forms, surrogates, beyond U+10FFFF. */
                if (ok && need == 2) {
                        unsigned char b1 = (unsigned char) s->buf[i + 1];
                        ok = !(b == 0xe0 && b1 < 0xa0) && !(b == 0xed && b1 >= 0xa0);
                }
                if (ok && need == 3) {
                        unsigned char b1 = (unsigned char) s->buf[i + 1];
                        ok = !(b == 0xf0 && b1 < 0x90) && !(b == 0xf4 && b1 >= 0x90);
                }
                if (!ok) {
                        t[o++] = '?';
                        i++;
                        continue;
                }
                memcpy(t + o, s->buf + i, need + 1);
                o += need + 1;
                i += need + 1;
        }
        t[o] = '\0';
        return t;
}

/* ---- outcomes ---- */

static const struct npd_rule *rule_of(const struct custom *c, size_t i) {
        return &c->npd->rules[i];
}

static void report_rule(struct custom *c, size_t i) {
        const struct npd_rule *rule = rule_of(c, i);
        const struct rule_state *rs = &c->rules[i];
        char key[32];

        if (!rule->permanent || !rs->have_outcome)
                return;
        snprintf(key, sizeof(key), "rule%zu", i + 1);
        (void) nh_report(c->ctx, &(struct nh_observation){
                                         .type = c->npd->conditions[rule->condition].type,
                                         .problem = key,
                                         .status = rs->status,
                                         .reason = rs->reason,
                                         .message = rs->message ? rs->message : "",
                                 });
}

/* Conditions no permanent rule feeds are False, with the file's reason and message (as NPD). */
static void report_idle_conditions(struct custom *c) {
        for (size_t i = 0; i < c->npd->n_conditions; i++)
                if (!c->condition_has_rule[i])
                        (void) nh_report(c->ctx, &(struct nh_observation){
                                                         .type = c->npd->conditions[i].type,
                                                         .status = NH_STATUS_FALSE,
                                                         .reason = c->npd->conditions[i].reason,
                                                         .message = c->npd->conditions[i].message,
                                                 });
}

/* A rule's verdict for this cycle: takes `message` (may be NULL on allocation failure). */
static void set_outcome(struct custom *c, size_t i, enum nh_status status, const char *reason, char *message) {
        const struct npd_rule *rule = rule_of(c, i);
        struct rule_state *rs = &c->rules[i];

        rs->waiting = false;
        if (status == NH_STATUS_TRUE)
                count(c, "problems", &c->n.problems);
        else if (status == NH_STATUS_UNKNOWN)
                count(c, "unknown", &c->n.unknown);

        if (!rule->permanent) {
                /* An event when the script says so; a script that cannot tell is not the problem it names. */
                if (status == NH_STATUS_TRUE)
                        (void) nh_event(c->ctx, rule->reason, message ? message : "");
                else if (status == NH_STATUS_UNKNOWN)
                        nh_log(c->ctx, NH_LOG_WARNING, "temporary rule %zu (%s): %s: %s", i + 1, rule->reason, reason,
                               message ? message : "");
                free(message);
                return;
        }
        /* NPD: while True with the same reason the message stays, unless message updates are enabled. */
        if (status == NH_STATUS_TRUE && rs->have_outcome && rs->status == NH_STATUS_TRUE &&
            !c->npd->message_change_update && rs->message) {
                free(message);
        } else {
                free(rs->message);
                rs->message = message;
        }
        rs->have_outcome = true;
        rs->status = status;
        rs->reason = reason;
        report_rule(c, i);
}

static char *with_output(const char *head, const struct stream *out) {
        char *text = stream_text(out), *s = NULL;

        if (!text)
                return NULL;
        if (asprintf(&s, "%s%s%s", head, *text ? ": " : " and printed nothing", text) < 0)
                s = NULL;
        free(text);
        return s;
}

static void decide_exit(struct custom *c, struct run *run, int code, int status) {
        const struct npd_rule *rule = rule_of(c, run->rule);
        const struct npd_condition *cond = rule->permanent ? &c->npd->conditions[rule->condition] : NULL;
        char head[512], sig[32];

        run->decided = true;
        if (code == CLD_EXITED && status == 0) {
                set_outcome(c, run->rule, NH_STATUS_FALSE, cond ? cond->reason : "PluginOK",
                            cond ? strdup(cond->message) : NULL);
                return;
        }
        if (code == CLD_EXITED && status == 1) {
                set_outcome(c, run->rule, NH_STATUS_TRUE, rule->reason, stream_text(&run->out));
                return;
        }
        if (code == CLD_EXITED) {
                snprintf(head, sizeof(head), "%s exited with status %d (0 is OK, 1 a problem)", rule->path, status);
                set_outcome(c, run->rule, NH_STATUS_UNKNOWN, REASON_STATUS_UNKNOWN, with_output(head, &run->out));
                return;
        }
        snprintf(head, sizeof(head), "%s was killed by %s%s", rule->path, signal_name(status, sig, sizeof(sig)),
                 code == CLD_DUMPED ? " (core dumped)" : "");
        set_outcome(c, run->rule, NH_STATUS_UNKNOWN, REASON_KILLED, with_output(head, &run->out));
}

static void decide_timeout(struct custom *c, struct run *run) {
        const struct npd_rule *rule = rule_of(c, run->rule);
        char head[512], a[32], b[32];

        run->decided = true;
        snprintf(head, sizeof(head), "%s did not finish within %s and was stopped (SIGTERM, SIGKILL %s later)",
                 rule->path, probe_format_setting(a, sizeof(a), rule->timeout),
                 probe_format_setting(b, sizeof(b), c->config->kill_grace));
        set_outcome(c, run->rule, NH_STATUS_UNKNOWN, REASON_TIMEOUT, with_output(head, &run->out));
}

/* ---- processes ---- */

static void run_free(struct custom *c, struct run *run) {
        stream_close(c, &run->out);
        stream_close(c, &run->err);
        free(run->out.buf);
        free(run->err.buf);
        free(run);
}

static void run_unlink(struct custom *c, struct run *run) {
        for (struct run **p = &c->runs; *p; p = &(*p)->next)
                if (*p == run) {
                        *p = run->next;
                        break;
                }
        if (c->rules[run->rule].run == run)
                c->rules[run->rule].run = NULL;
        if (run->counted) {
                run->counted = false;
                c->active--;
        }
}

static void signal_group(struct run *run, int sig) {
        /* The whole group: what the script started too.  A script that left its group is signalled alone. */
        if (kill(-run->pid, sig) < 0 && errno == ESRCH)
                (void) kill(run->pid, sig);
}

static void log_stderr(struct custom *c, struct run *run, bool failed) {
        char *text;

        (void) stream_read(c, &run->err, DRAIN_MAX);
        if (run->err.len == 0)
                return;
        text = stream_text(&run->err);
        if (text)
                for (char *p = text; *p; p++)
                        if (*p == '\n' || *p == '\t')
                                *p = ' ';
        nh_log(c->ctx, failed ? NH_LOG_NOTICE : NH_LOG_DEBUG, "%s (pid %d) wrote on stderr: %s%s",
               rule_of(c, run->rule)->path, (int) run->pid, text ? text : "", run->err.more ? " …" : "");
        free(text);
}

static void maybe_finish_cycle(struct custom *c);
static void start_queued(struct custom *c);

static void on_child_exit(struct nh_probe_ctx *ctx, pid_t pid, int code, int status, void *userdata) {
        struct run *run = userdata;
        struct custom *c = run->c;
        const char *path = rule_of(c, run->rule)->path;
        enum phase phase = run->phase;
        char sig[32];

        /* What it wrote before it ended is in the pipe now; what its children write later is not its output. */
        (void) stream_read(c, &run->out, DRAIN_MAX);
        stream_close(c, &run->out);
        log_stderr(c, run, !(code == CLD_EXITED && status <= 1));
        run_unlink(c, run);
        if (!run->decided)
                decide_exit(c, run, code, status);
        else if (phase == PHASE_ABANDONED)
                nh_log(ctx, NH_LOG_NOTICE, "%s (pid %d), abandoned after SIGKILL, has ended at last; it runs again",
                       path, (int) pid);
        else
                nh_log(ctx, NH_LOG_INFO, "%s (pid %d) ended after its timeout (%s)", path, (int) pid,
                       code == CLD_EXITED ? "exited" : signal_name(status, sig, sizeof(sig)));
        run_free(c, run);
        start_queued(c);
        maybe_finish_cycle(c);
        schedule(c);
}

static void on_output(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct run *run = userdata;
        struct stream *s = fd == run->out.fd ? &run->out : &run->err;

        if (stream_read(run->c, s, READS_PER_WAKEUP * 4096) < 0)
                stream_close(run->c, s);
}

static int stream_open(struct custom *c, struct stream *s, size_t cap, int ret_child_end[static 1]) {
        int fds[2];

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        /* Only our end is non-blocking: the script writes as to any pipe. */
        if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                close(fds[0]);
                close(fds[1]);
                return r;
        }
        s->fd = fds[0];
        s->cap = cap;
        s->buf = malloc(cap + 1);
        *ret_child_end = fds[1];
        return s->buf ? 0 : -ENOMEM;
}

static void start_failed(struct custom *c, size_t i, const char *what, int error) {
        char *message = NULL;

        count(c, "start_failures", &c->n.start_failures);
        if (asprintf(&message, "cannot start %s: %s%s", rule_of(c, i)->path, what, strerror(error)) < 0)
                message = NULL;
        set_outcome(c, i, NH_STATUS_UNKNOWN, REASON_START_FAILED, message);
}

static void start_rule(struct custom *c, size_t i) {
        const struct npd_rule *rule = rule_of(c, i);
        struct rule_state *rs = &c->rules[i];
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        struct run *run;
        int out_w = -1, err_w = -1, r;

        rs->last_start = nh_now(c->ctx);
        rs->started_ever = true;
        count(c, "runs", &c->n.runs);

        run = calloc(1, sizeof(*run));
        if (!run) {
                start_failed(c, i, "", ENOMEM);
                return;
        }
        *run = (struct run){.c = c, .rule = i, .out.fd = -1, .err.fd = -1};
        r = stream_open(c, &run->out, c->max_output, &out_w);
        if (r >= 0)
                r = stream_open(c, &run->err, STDERR_MAX, &err_w);
        if (r < 0) {
                if (out_w >= 0)
                        close(out_w);
                if (err_w >= 0)
                        close(err_w);
                run_free(c, run);
                start_failed(c, i, "a pipe: ", -r);
                return;
        }

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err_w, STDERR_FILENO);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        /* Every fd of the daemon is close-on-exec; this also covers a third-party probe's that is not. */
        posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
#endif
        posix_spawnattr_init(&attr);
        sigemptyset(&none);
        sigfillset(&all);
        /* Its own process group (to be killed as a whole), no blocked signal (the daemon blocks
         * some), every signal at its default (the daemon's handlers mean nothing to a script). */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);

        /* posix_spawnp: a path without "/" is looked up in $PATH, as exec.Command does; never a shell. */
        r = posix_spawnp(&run->pid, rule->path, &fa, &attr, rule->argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(out_w);
        close(err_w);
        if (r != 0) {
                run_free(c, run);
                start_failed(c, i, "", r);
                return;
        }

        r = nh_watch_child(c->ctx, run->pid, on_child_exit, run);
        if (r < 0) {
                /* Nobody would reap it: end it now; the core's reaper takes it if there is one. */
                signal_group(run, SIGKILL);
                nh_log(c->ctx, NH_LOG_ERR, "cannot watch %s (pid %d): %s; killed it", rule->path, (int) run->pid,
                       strerror(-r));
                run_free(c, run);
                start_failed(c, i, "cannot watch the process: ", -r);
                return;
        }
        run->started = mono_usec();
        run->deadline = run->started + rule->timeout;
        run->counted = true;
        c->active++;
        run->next = c->runs;
        c->runs = run;
        rs->run = run;
        /* Unwatched (no memory), a pipe is still read when the process ends. */
        run->out.watched = nh_watch_fd(c->ctx, run->out.fd, EPOLLIN, on_output, run) >= 0;
        run->err.watched = nh_watch_fd(c->ctx, run->err.fd, EPOLLIN, on_output, run) >= 0;
}

static void start_queued(struct custom *c) {
        for (size_t i = 0; i < c->npd->n_rules && c->active < (size_t) c->npd->concurrency && !c->stopping; i++) {
                if (!c->rules[i].queued)
                        continue;
                c->rules[i].queued = false;
                start_rule(c, i);
        }
}

static bool cycle_busy(const struct custom *c) {
        for (size_t i = 0; i < c->npd->n_rules; i++)
                if (c->rules[i].waiting)
                        return true;
        return false;
}

static void maybe_finish_cycle(struct custom *c) {
        if (!c->in_cycle || cycle_busy(c))
                return;
        c->in_cycle = false;
        if (c->pending) {
                c->pending = false;
                nh_cycle_done(c->ctx);
        }
}

/* ---- the timer: kill deadlines and the next due rule ---- */

static void on_timer(struct nh_probe_ctx *ctx, void *userdata) {
        struct custom *c = userdata;
        uint64_t now = mono_usec();
        char span[32];

        for (struct run *run = c->runs; run; run = run->next) {
                const char *path = rule_of(c, run->rule)->path;

                if (run->phase == PHASE_ABANDONED || now < run->deadline)
                        continue;
                switch (run->phase) {
                case PHASE_RUNNING:
                        signal_group(run, SIGTERM);
                        run->phase = PHASE_TERM;
                        run->deadline = now + c->config->kill_grace;
                        count(c, "timeouts", &c->n.timeouts);
                        (void) stream_read(c, &run->out, DRAIN_MAX);
                        if (!run->decided)
                                decide_timeout(c, run);
                        break;
                case PHASE_TERM:
                        signal_group(run, SIGKILL);
                        run->phase = PHASE_KILL;
                        run->deadline = now + c->config->kill_grace;
                        count(c, "sigkills", &c->n.sigkills);
                        nh_log(ctx, NH_LOG_NOTICE, "%s (pid %d) ignored SIGTERM for %s: sent SIGKILL", path,
                               (int) run->pid, probe_format_setting(span, sizeof(span), c->config->kill_grace));
                        break;
                case PHASE_KILL:
                        /* Uninterruptible sleep (a hung mount, a frozen cgroup): nothing more to do but not wait. */
                        run->phase = PHASE_ABANDONED;
                        if (run->counted) {
                                run->counted = false;
                                c->active--;
                        }
                        stream_close(c, &run->out);
                        stream_close(c, &run->err);
                        count(c, "abandoned", &c->n.abandoned);
                        nh_log(ctx, NH_LOG_ERR,
                               "%s (pid %d) has not ended %s after SIGKILL (uninterruptible sleep?); abandoned: "
                               "its rule runs again once it has ended",
                               path, (int) run->pid, probe_format_setting(span, sizeof(span), c->config->kill_grace));
                        break;
                case PHASE_ABANDONED:
                        break;
                }
        }
        if (!c->in_cycle && !c->trigger_sent) {
                uint64_t t = nh_now(ctx);
                for (size_t i = 0; i < c->npd->n_rules; i++) {
                        const struct rule_state *rs = &c->rules[i];
                        if (rs->started_ever && t >= rs->last_start + rule_of(c, i)->invoke_interval) {
                                c->trigger_sent = true;
                                (void) nh_trigger(ctx);
                                break;
                        }
                }
        }
        start_queued(c);
        maybe_finish_cycle(c);
        schedule(c);
}

static void schedule(struct custom *c) {
        uint64_t now = mono_usec(), delay = UINT64_MAX;
        int r;

        if (c->stopping)
                return;
        for (const struct run *run = c->runs; run; run = run->next)
                if (run->phase != PHASE_ABANDONED) {
                        uint64_t d = run->deadline > now ? run->deadline - now : 0;
                        if (d < delay)
                                delay = d;
                }
        if (!c->in_cycle && !c->trigger_sent) {
                uint64_t t = nh_now(c->ctx);
                for (size_t i = 0; i < c->npd->n_rules; i++) {
                        const struct rule_state *rs = &c->rules[i];
                        uint64_t due = rs->last_start + rule_of(c, i)->invoke_interval, d;
                        if (!rs->started_ever)
                                continue;
                        d = due > t ? due - t : 0;
                        if (d < delay)
                                delay = d;
                }
        }
        if (delay == UINT64_MAX) {
                (void) nh_set_timer(c->ctx, 0, NULL, NULL);
                return;
        }
        r = nh_set_timer(c->ctx, delay, on_timer, c);
        if (r < 0 && r != -ESHUTDOWN)
                nh_log(c->ctx, NH_LOG_ERR, "cannot set a timer: %s; timeouts cannot be enforced", strerror(-r));
}

/* ---- the descriptor's callbacks ---- */

static void custom_free(struct custom *c) {
        if (!c)
                return;
        while (c->runs) {
                struct run *run = c->runs;
                c->runs = run->next;
                /* The daemon stops (or the probe): scripts do not outlive it unasked. */
                if (run->phase != PHASE_ABANDONED)
                        signal_group(run, SIGTERM);
                run_free(c, run);
        }
        if (c->rules && c->npd)
                for (size_t i = 0; i < c->npd->n_rules; i++)
                        free(c->rules[i].message);
        free(c->rules);
        free(c->condition_has_rule);
        npd_config_free(c->npd);
        free(c);
}

static int custom_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct custom_config *cfg = config;
        struct custom *c;
        char *error = NULL, a[32], b[32];
        uint64_t longest = 0;
        int r, dirfd;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->ctx = ctx;
        c->config = cfg;
        if (!cfg->npd_config || !*cfg->npd_config) {
                nh_log(ctx, NH_LOG_ERR, "\"npd_config\" must name a node-problem-detector custom-plugin-monitor file");
                r = -EINVAL;
                goto fail;
        }
        /* Relative to the directory of nodehealthd.json, as conf.d/ is. */
        dirfd = nh_config_dir_fd(ctx);
        r = npd_config_load(dirfd >= 0 ? dirfd : AT_FDCWD, cfg->npd_config, &c->npd, &error);
        if (r < 0) {
                nh_log(ctx, NH_LOG_ERR, "%s", error ? error : strerror(-r));
                free(error);
                goto fail;
        }
        r = -ENOMEM;
        c->rules = calloc(c->npd->n_rules + 1, sizeof(*c->rules));
        c->condition_has_rule = calloc(c->npd->n_conditions + 1, sizeof(bool));
        if (!c->rules || !c->condition_has_rule)
                goto fail;
        c->max_output =
                c->npd->max_output_length < NPD_OUTPUT_MAX ? (size_t) c->npd->max_output_length : NPD_OUTPUT_MAX;
        for (size_t i = 0; i < c->npd->n_conditions; i++) {
                const struct npd_condition *cond = &c->npd->conditions[i];

                r = nh_declare_condition(ctx, cond->type, cond->reason);
                if (r < 0) {
                        nh_log(ctx, NH_LOG_ERR, "%s: cannot declare condition %s: %s", cond->where, cond->type,
                               r == -E2BIG ? "too many condition types" : strerror(-r));
                        goto fail;
                }
        }
        for (size_t i = 0; i < c->npd->n_rules; i++) {
                const struct npd_rule *rule = rule_of(c, i);

                if (rule->permanent)
                        c->condition_has_rule[rule->condition] = true;
                if (rule->timeout > longest)
                        longest = rule->timeout;
                /* NPD refuses a missing script; here it is Unknown until it is there (an upgrade may bring it). */
                if (strchr(rule->path, '/') && access(rule->path, X_OK) < 0)
                        nh_log(ctx, NH_LOG_WARNING, "%s: rule %zu: %s: %s; it is Unknown (%s) until it can be started",
                               rule->where, i + 1, rule->path, strerror(errno), REASON_START_FAILED);
        }
        nh_log(ctx, NH_LOG_INFO,
               "%zu rule%s from %s, every %s, %zu at once; a cycle can take up to %s (the probe's \"timeout\" must be "
               "longer)",
               c->npd->n_rules, c->npd->n_rules == 1 ? "" : "s", c->npd->path,
               probe_format_setting(a, sizeof(a), c->npd->invoke_interval), (size_t) c->npd->concurrency,
               probe_format_setting(b, sizeof(b),
                                    longest * ((c->npd->n_rules + (size_t) c->npd->concurrency - 1) /
                                               (size_t) c->npd->concurrency)));
        *ret_state = c;
        return 0;
fail:
        custom_free(c);
        return r;
}

static int custom_probe(struct nh_probe_ctx *ctx, void *state) {
        struct custom *c = state;
        uint64_t now = nh_now(ctx);

        /* A cycle the core gave up on (ProbeTimeout) may still wait for rules: this one takes them over. */
        c->in_cycle = true;
        c->trigger_sent = false;
        report_idle_conditions(c);
        for (size_t i = 0; i < c->npd->n_rules; i++) {
                const struct npd_rule *rule = rule_of(c, i);
                struct rule_state *rs = &c->rules[i];
                uint64_t due = rs->last_start + rule->invoke_interval / 100 * DUE_PERCENT;

                if (rs->waiting)
                        continue;
                if (rs->started_ever && now < due) {
                        report_rule(c, i); /* the last outcome, again */
                        continue;
                }
                if (rs->run) {
                        char *message = NULL;
                        rs->started_ever = true;
                        rs->last_start = now;
                        if (asprintf(&message,
                                     "%s (pid %d) from an earlier run %s; it is not started again until it has ended",
                                     rule->path, (int) rs->run->pid,
                                     rs->run->phase == PHASE_ABANDONED
                                             ? "did not end even after SIGKILL (uninterruptible sleep?)"
                                             : "is still being stopped after its timeout") < 0)
                                message = NULL;
                        set_outcome(c, i, NH_STATUS_UNKNOWN, REASON_STUCK, message);
                        continue;
                }
                rs->queued = rs->waiting = true;
        }
        start_queued(c);
        if (!cycle_busy(c)) {
                c->in_cycle = false;
                schedule(c);
                return 0;
        }
        c->pending = true;
        schedule(c);
        return NH_PROBE_PENDING;
}

static void custom_done(void *state) {
        struct custom *c = state;

        if (c)
                c->stopping = true;
        custom_free(c);
}

NH_PLUGIN_DEFINE(.name = "custom",
                 .description = "node-problem-detector custom plugins: scripts whose exit status is the verdict",
                 .conditions = NULL, .config = custom_config_table, .config_size = sizeof(struct custom_config),
                 .init = custom_init, .probe = custom_probe, .done = custom_done);
