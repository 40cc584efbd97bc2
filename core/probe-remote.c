/* SPDX-License-Identifier: MIT */
#include "probe-remote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conditions.h"
#include "log.h"
#include "probe-host.h"
#include "probe-proto.h"
#include "util.h"

#define MESSAGES_PER_WAKEUP 64 /* a chatty host gets the loop back after these */

enum end_reason {
        END_NONE, /* still running, or it ended by itself: a crash */
        END_TIMEOUT, /* killed: a cycle overran its timeout */
        END_MEMORY, /* killed: over memory_limit */
        END_PROTOCOL, /* killed: a message the protocol does not allow */
        END_STOP, /* killed: the daemon stops the probe */
        END_START, /* killed: it did not say "ready" in time */
};

struct remote {
        struct nh_probe_ctx *ctx;
        struct nh_probe_host *host;

        pid_t pid; /* the running host (its process group too); 0 when none */
        int fd;
        sd_event_source *io, *memory_timer, *restart_timer, *start_timer;
        struct nh_child *child;
        uint64_t started; /* monotonic µs */
        unsigned starts;
        uint64_t backoff;

        enum end_reason end;
        char *end_message; /* END_PROTOCOL: what was wrong */
        bool ready; /* the host said "ready" */
        bool stopped; /* refused, bad keys or init failed: never restarted */
        char *buf;
};

/* Always the ctx's: a reload hands a kept probe the new configuration's copy of its settings. */
static const struct nh_probe_config *remote_cfg(const struct remote *rm) {
        return nh_probe_config(rm->ctx);
}

/* ---- starting a host ---- */

static void kill_group(pid_t pid) {
        if (pid <= 0)
                return;
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
}

/*
 * fork() and exec of /proc/self/exe in probe-host mode.  Between the two only async-signal-safe
 * calls: the daemon may have threads (a probe's workers).  Returns the pid and the daemon's end
 * of the socket (non-blocking, close-on-exec).
 */
static int spawn_host(struct nh_probe_host *host, const struct nh_probe_config *cfg, bool check, pid_t *ret_pid,
                      int *ret_fd) {
        _cleanup_free_ char **argv = NULL;
        size_t n_dirs = strv_length(host->plugin_dirs), argc = 0;
        pid_t parent = getpid(), pid;
        int sv[2], keep[1 + _NH_ROOT_MAX];

        argv = calloc(8 + 2 * n_dirs, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[argc++] = (char *) "nodehealthd";
        argv[argc++] = (char *) NH_PROBE_HOST_ARG;
        argv[argc++] = cfg->name;
        if (check)
                argv[argc++] = (char *) "--check";
        argv[argc++] = (char *) "--config";
        argv[argc++] = (char *) host->config_path;
        for (size_t i = 0; i < n_dirs; i++) {
                argv[argc++] = (char *) "--plugin-dir";
                argv[argc++] = host->plugin_dirs[i];
        }
        argv[argc] = NULL;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0) {
                sigset_t none;

                /* Dies with the daemon; a process group of its own, so a kill takes its children too. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(1);
                (void) setpgid(0, 0);
                /* Out of the way of 3..6 first, then into place (dup2 clears close-on-exec). */
                keep[0] = fcntl(sv[1], F_DUPFD, 16);
                for (int i = 0; i < _NH_ROOT_MAX; i++)
                        keep[1 + i] = fcntl(host->root_fds[i], F_DUPFD, 16);
                for (int i = 0; i < 1 + _NH_ROOT_MAX; i++)
                        if (keep[i] < 0 || dup2(keep[i], NH_PROBE_HOST_FD + i) < 0)
                                _exit(1);
                /* stdout is the daemon's JSON stream: a probe's printf must not land in it. */
                if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        _exit(1);
                (void) syscall(SYS_close_range, NH_PROBE_HOST_FD + 1 + _NH_ROOT_MAX, ~0U, 0);
                (void) signal(SIGPIPE, SIG_DFL);
                (void) signal(SIGTERM, SIG_DFL);
                (void) signal(SIGINT, SIG_DFL);
                (void) signal(SIGHUP, SIG_DFL);
                sigemptyset(&none);
                (void) sigprocmask(SIG_SETMASK, &none, NULL);
                execv("/proc/self/exe", argv);
                _exit(127);
        }
        (void) setpgid(pid, pid); /* also here: no window in which a kill of the group misses it */
        close(sv[1]);
        if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                kill_group(pid);
                close(sv[0]);
                return r;
        }
        *ret_pid = pid;
        *ret_fd = sv[0];
        return 0;
}

static int send_init(int fd, const struct nh_probe_config *cfg) {
        cJSON *msg = cJSON_CreateObject(), *copy = cJSON_Duplicate(cfg->json, true);
        int r = -ENOMEM;

        if (msg && copy && cJSON_AddStringToObject(msg, "op", "init") &&
            cJSON_AddStringToObject(msg, "probe", cfg->name)) {
                cJSON_AddItemToObject(msg, "config", copy);
                copy = NULL;
                r = nh_proto_send(fd, msg);
        }
        cJSON_Delete(copy);
        cJSON_Delete(msg);
        return r;
}

/* ---- the check ---- */

struct nh_remote_check {
        struct nh_probe_host *host;
        pid_t pid;
        int fd;
        int error; /* of starting it: reported when it is waited for */
        uint64_t deadline;
};

static void ignore_exit(void *userdata, pid_t pid, int code, int status) {
}

static void reap_later(struct nh_probe_host *host, pid_t pid) {
        kill_group(pid);
        if (!host->children || nh_children_watch(host->children, pid, ignore_exit, NULL, NULL) < 0)
                (void) waitpid(pid, NULL, 0); /* only before any loop runs; SIGKILL was sent */
}

int nh_probe_remote_check_begin(struct nh_probe_host *host, const struct nh_probe_config *cfg,
                                struct nh_remote_check **ret) {
        struct nh_remote_check *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        *c = (struct nh_remote_check){.host = host, .fd = -1};
        c->deadline = now_usec(CLOCK_MONOTONIC) + NH_REMOTE_CHECK_TIMEOUT_USEC;
        c->error = spawn_host(host, cfg, true, &c->pid, &c->fd);
        if (c->error >= 0)
                c->error = send_init(c->fd, cfg);
        *ret = c;
        return 0;
}

struct nh_remote_check *nh_probe_remote_check_free(struct nh_remote_check *c) {
        if (!c)
                return NULL;
        if (c->pid > 0)
                reap_later(c->host, c->pid);
        if (c->fd >= 0)
                close(c->fd);
        free(c);
        return NULL;
}

/* Waits for the check's answer until its deadline: the message's length, 0 (it ended) or -1 (none in time). */
static ssize_t check_wait(struct nh_remote_check *c, char *buf) {
        ssize_t n = -1;

        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd pfd = {c->fd, POLLIN, 0};

                if (now >= c->deadline)
                        break;
                if (poll(&pfd, 1, (int) ((c->deadline - now + 999) / 1000)) < 0 && errno != EINTR)
                        break;
                n = recv(c->fd, buf, NH_PROTO_MESSAGE_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);
                if (n >= 0 || (errno != EAGAIN && errno != EINTR))
                        break;
        }
        return n;
}

static int handle_new(const struct nh_probe_config *cfg, char *const *plugin_dirs, struct nh_plugin_handle **ret);

int nh_probe_remote_open(struct nh_probe_host *host, const struct nh_probe_config *cfg, bool must_answer,
                         struct nh_remote_check *check, struct nh_plugin_handle **ret, char **ret_why) {
        _cleanup_free_ char *buf = NULL;
        struct nh_proto_msg m;
        const char *why = NULL;
        cJSON *json = NULL;
        ssize_t n;
        int r;

        *ret_why = NULL;
        if (!check) {
                r = nh_probe_remote_check_begin(host, cfg, &check);
                if (r < 0)
                        return r;
        }
        /* The check is over after this, whatever it said: its host is killed and reaped later. */
        r = check->error;
        buf = r < 0 ? NULL : malloc(NH_PROTO_MESSAGE_MAX + 1);
        n = buf ? check_wait(check, buf) : -1;
        check = nh_probe_remote_check_free(check);
        if (r < 0)
                return log_error_errno(r, "probe %s: cannot start its probe host: %m", cfg->name);
        if (!buf)
                return -ENOMEM;

        if (n <= 0 || nh_proto_parse(buf, (size_t) n, &json, &m, &why) < 0 ||
            (m.op != NH_OP_READY && m.op != NH_OP_FATAL)) {
                cJSON_Delete(json);
                if (must_answer) {
                        if (asprintf(ret_why, "its probe host did not answer the check (%s)",
                                     n < 0    ? "no answer within 3s"
                                     : n == 0 ? "it ended"
                                     : why    ? why
                                              : "an unexpected message") < 0)
                                *ret_why = NULL;
                        return -ETIMEDOUT;
                }
                log_warning("probe %s: its probe host did not answer the check; starting it anyway", cfg->name);
                return handle_new(cfg, host->plugin_dirs, ret);
        }
        if (m.op == NH_OP_FATAL) {
                /* -ENOENT comes without a text: the caller names the directories. */
                r = strcmp(m.kind, "config") == 0 ? -EUCLEAN
                    : m.error_code == -ENOENT     ? -ENOENT
                    : m.error_code == -ENOEXEC    ? -ENOEXEC
                    : m.error_code == -EINVAL     ? -EINVAL
                                                  : -EPERM;
                if (r != -ENOENT)
                        *ret_why = strdup(m.error);
                cJSON_Delete(json);
                return r;
        }
        cJSON_Delete(json);
        return handle_new(cfg, host->plugin_dirs, ret);
}

/* ---- the running proxy ---- */

static void schedule_restart(struct remote *rm);
static int start(struct remote *rm);

static void close_host(struct remote *rm) {
        rm->io = sd_event_source_disable_unref(rm->io);
        rm->memory_timer = sd_event_source_disable_unref(rm->memory_timer);
        rm->start_timer = sd_event_source_disable_unref(rm->start_timer);
        if (rm->fd >= 0)
                close(rm->fd);
        rm->fd = -1;
}

/* Kills the host and its process group; what it died of is told when it has been reaped. */
static void kill_host(struct remote *rm, enum end_reason why) {
        if (rm->pid <= 0)
                return;
        if (rm->end == END_NONE)
                rm->end = why;
        kill_group(rm->pid);
        close_host(rm); /* nothing it sent after this counts */
}

static void protocol_error(struct remote *rm, const char *why) {
        if (rm->end != END_NONE)
                return;
        free(rm->end_message);
        rm->end_message = strdup(why);
        log_warning("probe %s: its probe host (pid %d) sent %s; killing it", remote_cfg(rm)->name, (int) rm->pid, why);
        kill_host(rm, END_PROTOCOL);
}

static const char *restart_text(struct remote *rm, char *buf, size_t size) {
        char d[32];

        if (rm->stopped)
                return "";
        snprintf(buf, size, "; restarting it in %s", format_duration(d, sizeof(d), rm->backoff));
        return buf;
}

/* Resident memory of the host, from the real /proc (it is our child, not a --proc-path tree). */
static int host_rss(pid_t pid, uint64_t *ret) {
        char path[64], text[128];
        unsigned long long size, resident;
        _cleanup_close_ int fd = -1;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/statm", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, text, sizeof(text) - 1);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        text[n] = '\0';
        if (sscanf(text, "%llu %llu", &size, &resident) != 2)
                return -EIO;
        *ret = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
        return 0;
}

static void check_memory(struct remote *rm) {
        _cleanup_free_ char *message = NULL;
        uint64_t rss = 0;
        char r[64];

        if (rm->pid <= 0 || rm->end != END_NONE || host_rss(rm->pid, &rss) < 0 || rss <= remote_cfg(rm)->memory_limit)
                return;
        if (asprintf(&message,
                     "probe %s used %llu MiB, more than its memory_limit of %llu MiB: its probe host was "
                     "killed%s",
                     remote_cfg(rm)->name, (unsigned long long) (rss >> 20),
                     (unsigned long long) (remote_cfg(rm)->memory_limit >> 20), restart_text(rm, r, sizeof(r))) < 0)
                message = NULL;
        log_warning("probe %s: %s", remote_cfg(rm)->name, message ? message : "over its memory_limit");
        kill_host(rm, END_MEMORY);
        nh_probe_mark_unknown(rm->ctx, NH_REASON_PROBE_MEMORY_LIMIT, message ? message : "over its memory_limit");
        if (nh_probe_pending(rm->ctx))
                nh_cycle_done(rm->ctx);
}

static int on_memory_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct remote *rm = userdata;

        check_memory(rm);
        if (rm->memory_timer)
                (void) sd_event_source_set_time_relative(rm->memory_timer, NH_REMOTE_MEMORY_CHECK_USEC);
        return 0;
}

static bool reason_from_host(const char *reason) {
        /* What core/probe.c in the host marks by itself; anything else would be a forgery. */
        return strcmp(reason, NH_REASON_PROBE_FAILED) == 0 || strcmp(reason, NH_REASON_PROBE_INIT_FAILED) == 0 ||
               strcmp(reason, NH_REASON_PROBE_TIMEOUT) == 0;
}

static void dispatch(struct remote *rm, const struct nh_proto_msg *m) {
        int r;

        switch (m->op) {
        case NH_OP_DECLARE:
                r = nh_probe_declare(rm->ctx, m->type, m->healthy_reason);
                if (r < 0 && r != -EEXIST)
                        protocol_error(rm, "a declaration the core refuses");
                break;
        case NH_OP_REPORT:
                /* Refusals are logged by nh_report(), as for any probe. */
                (void) nh_report(rm->ctx, &(struct nh_observation){.type = m->type,
                                                                   .problem = m->problem,
                                                                   .status = m->status,
                                                                   .reason = m->reason,
                                                                   .message = m->message});
                break;
        case NH_OP_UNKNOWN:
                if (!reason_from_host(m->reason)) {
                        protocol_error(rm, "an Unknown with a reason only the core gives");
                        break;
                }
                nh_probe_mark_unknown(rm->ctx, m->reason, m->message);
                break;
        case NH_OP_EVENT:
                (void) nh_event(rm->ctx, m->reason, m->message);
                break;
        case NH_OP_TRIGGER:
                (void) nh_trigger(rm->ctx);
                break;
        case NH_OP_COUNTER:
                r = nh_counter_set(rm->ctx, m->name, m->value);
                if (r == -EINVAL)
                        protocol_error(rm, "a counter name the core refuses");
                else if (r < 0)
                        log_debug("probe %s: counter %s dropped: %s", remote_cfg(rm)->name, m->name, strerror(-r));
                break;
        case NH_OP_DONE:
                if (nh_probe_pending(rm->ctx))
                        nh_cycle_done(rm->ctx);
                check_memory(rm);
                break;
        case NH_OP_READY:
                if (rm->ready) {
                        protocol_error(rm, "a second \"ready\"");
                        break;
                }
                rm->ready = true;
                rm->start_timer = sd_event_source_disable_unref(rm->start_timer);
                /* A cycle asked for while it started is timed from now. */
                nh_probe_hold_timeout(rm->ctx, false);
                log_debug("probe %s: probe host pid %d is ready", remote_cfg(rm)->name, (int) rm->pid);
                break;
        case NH_OP_FATAL:
                /* The host exits after this; it is not started again. */
                rm->stopped = true;
                nh_probe_hold_timeout(rm->ctx, false);
                if (strcmp(m->kind, "init") == 0)
                        log_error("probe %s (%s): init failed in its probe host: %s; its conditions stay Unknown",
                                  remote_cfg(rm)->name, remote_cfg(rm)->plugin, m->error);
                else
                        log_error("probe %s: %s; the probe is skipped", remote_cfg(rm)->name, m->error);
                break;
        default:
                protocol_error(rm, "an unknown message");
                break;
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct remote *rm = userdata;

        for (unsigned i = 0; i < MESSAGES_PER_WAKEUP && rm->fd >= 0 && rm->end == END_NONE; i++) {
                struct nh_proto_msg m;
                const char *why = NULL;
                cJSON *json = NULL;
                ssize_t n = recv(rm->fd, rm->buf, NH_PROTO_MESSAGE_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);

                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        n = 0;
                }
                if (n == 0) {
                        /* The host closed its end: it ends, or it will be made to. Reaped below. */
                        kill_group(rm->pid);
                        close_host(rm);
                        return 0;
                }
                if (nh_proto_parse(rm->buf, (size_t) n, &json, &m, &why) < 0) {
                        protocol_error(rm, why);
                        return 0;
                }
                dispatch(rm, &m);
                cJSON_Delete(json);
        }
        return 0;
}

static void describe_exit(int code, int status, char *buf, size_t size) {
        if (code == CLD_EXITED)
                snprintf(buf, size, "exited with status %d", status);
        else
                snprintf(buf, size, "was killed by signal %s (%s)%s", sigabbrev_np(status) ? sigabbrev_np(status) : "?",
                         strsignal(status), code == CLD_DUMPED ? ", core dumped" : "");
}

static void on_host_exit(void *userdata, pid_t pid, int code, int status) {
        struct remote *rm = userdata;
        _cleanup_free_ char *message = NULL;
        char how[128], again[64];
        int r;
        bool healthy = now_usec(CLOCK_MONOTONIC) - rm->started >= NH_REMOTE_HEALTHY_USEC;

        rm->child = NULL;
        kill_group(pid); /* whatever of its group is left */
        rm->pid = 0;
        close_host(rm);
        if (healthy)
                rm->backoff = NH_REMOTE_BACKOFF_MIN_USEC;
        describe_exit(code, status, how, sizeof(how));

        switch (rm->stopped ? END_STOP : rm->end) {
        case END_NONE:
        case END_PROTOCOL:
                if (rm->end == END_PROTOCOL)
                        r = asprintf(&message, "probe %s crashed: its probe host (pid %d) sent %s and was killed%s",
                                     remote_cfg(rm)->name, (int) pid,
                                     rm->end_message ? rm->end_message : "a bad message",
                                     restart_text(rm, again, sizeof(again)));
                else
                        r = asprintf(&message, "probe %s crashed: its probe host (pid %d) %s%s", remote_cfg(rm)->name,
                                     (int) pid, how, restart_text(rm, again, sizeof(again)));
                if (r < 0)
                        message = NULL;
                log_warning("probe %s: %s", remote_cfg(rm)->name, message ? message : "its probe host crashed");
                nh_probe_mark_unknown(rm->ctx, NH_REASON_PROBE_CRASHED, message ? message : "probe host crashed");
                break;
        case END_TIMEOUT:
        case END_MEMORY:
        case END_START:
                log_notice("probe %s: its probe host (pid %d) %s%s", remote_cfg(rm)->name, (int) pid, how,
                           restart_text(rm, again, sizeof(again)));
                break;
        case END_STOP:
                log_debug("probe %s: its probe host (pid %d) %s", remote_cfg(rm)->name, (int) pid, how);
                break;
        }
        nh_probe_hold_timeout(rm->ctx, false);
        if (nh_probe_pending(rm->ctx))
                nh_cycle_done(rm->ctx);
        if (!rm->stopped)
                schedule_restart(rm);
}

static int on_restart(sd_event_source *s, uint64_t usec, void *userdata) {
        struct remote *rm = userdata;

        if (start(rm) < 0)
                schedule_restart(rm);
        return 0;
}

static void schedule_restart(struct remote *rm) {
        uint64_t delay = rm->backoff;
        int r;

        rm->backoff = rm->backoff * 2 > NH_REMOTE_BACKOFF_MAX_USEC ? NH_REMOTE_BACKOFF_MAX_USEC : rm->backoff * 2;
        if (!rm->restart_timer)
                r = sd_event_add_time_relative(rm->host->event, &rm->restart_timer, CLOCK_MONOTONIC, delay,
                                               USEC_PER_MSEC, on_restart, rm);
        else {
                r = sd_event_source_set_time_relative(rm->restart_timer, delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(rm->restart_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "probe %s: cannot arm the restart of its probe host: %m", remote_cfg(rm)->name);
}

/* A host that does not even start (a plugin's constructor or init hangs) is a timeout too. */
static int on_start_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct remote *rm = userdata;
        _cleanup_free_ char *message = NULL;
        char d[32];

        if (rm->ready || rm->pid <= 0)
                return 0;
        if (asprintf(&message, "probe %s: its probe host did not start within %s", remote_cfg(rm)->name,
                     format_duration(d, sizeof(d), NH_REMOTE_START_TIMEOUT_USEC + remote_cfg(rm)->timeout)) < 0)
                message = NULL;
        log_warning("%s; killing it", message ? message : "its probe host did not start");
        kill_host(rm, END_START);
        nh_probe_mark_unknown(rm->ctx, NH_REASON_PROBE_TIMEOUT, message ? message : "probe host did not start");
        nh_probe_hold_timeout(rm->ctx, false);
        if (nh_probe_pending(rm->ctx))
                nh_cycle_done(rm->ctx);
        return 0;
}

static int start(struct remote *rm) {
        pid_t pid = 0;
        int fd = -1, r;

        r = spawn_host(rm->host, remote_cfg(rm), false, &pid, &fd);
        if (r < 0)
                return log_error_errno(r, "probe %s: cannot start its probe host: %m", remote_cfg(rm)->name);
        rm->pid = pid;
        rm->fd = fd;
        rm->end = END_NONE;
        rm->ready = false;
        free(rm->end_message);
        rm->end_message = NULL;
        rm->started = now_usec(CLOCK_MONOTONIC);
        rm->starts++;
        /* Cycles sent before it is ready are timed from its "ready": starting is bounded by start_timer. */
        nh_probe_hold_timeout(rm->ctx, true);
        r = nh_children_watch(rm->host->children, pid, on_host_exit, rm, &rm->child);
        if (r < 0) {
                kill_group(pid);
                close_host(rm);
                rm->pid = 0;
                (void) waitpid(pid, NULL, 0); /* SIGKILLed, and not ours to leave as a zombie */
                return log_error_errno(r, "probe %s: cannot watch its probe host: %m", remote_cfg(rm)->name);
        }
        if ((r = sd_event_add_io(rm->host->event, &rm->io, fd, EPOLLIN, on_io, rm)) < 0 ||
            (r = sd_event_add_time_relative(rm->host->event, &rm->memory_timer, CLOCK_MONOTONIC,
                                            NH_REMOTE_MEMORY_CHECK_USEC, 10 * USEC_PER_MSEC, on_memory_timer, rm)) <
                    0 ||
            (r = sd_event_source_set_enabled(rm->memory_timer, SD_EVENT_ON)) < 0 ||
            (r = sd_event_add_time_relative(rm->host->event, &rm->start_timer, CLOCK_MONOTONIC,
                                            NH_REMOTE_START_TIMEOUT_USEC + remote_cfg(rm)->timeout, 10 * USEC_PER_MSEC,
                                            on_start_timer, rm)) < 0 ||
            (r = send_init(fd, remote_cfg(rm))) < 0) {
                log_error_errno(r, "probe %s: cannot talk to its probe host: %m", remote_cfg(rm)->name);
                kill_host(rm, END_PROTOCOL);
                return 0; /* reaped and restarted like a crash */
        }
        log_info("probe %s (%s): probe host started, pid %d%s", remote_cfg(rm)->name, remote_cfg(rm)->plugin, (int) pid,
                 rm->starts > 1 ? " (restarted)" : "");
        return 0;
}

static void on_timeout(struct nh_probe_ctx *ctx, void *userdata) {
        struct remote *rm = userdata;

        if (rm->pid <= 0)
                return;
        log_warning("probe %s: killing its probe host (pid %d) and its process group", remote_cfg(rm)->name,
                    (int) rm->pid);
        kill_host(rm, END_TIMEOUT);
}

static int remote_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        struct nh_probe_host *host = nh_probe_host_of(ctx);
        struct remote *rm;

        if (!host->event || !host->children || !host->config_path)
                return -EOPNOTSUPP;
        rm = calloc(1, sizeof(*rm));
        if (!rm)
                return -ENOMEM;
        rm->buf = malloc(NH_PROTO_MESSAGE_MAX + 1);
        if (!rm->buf) {
                free(rm);
                return -ENOMEM;
        }
        rm->ctx = ctx;
        rm->host = host;
        rm->fd = -1;
        rm->backoff = NH_REMOTE_BACKOFF_MIN_USEC;
        nh_probe_set_timeout_hook(ctx, on_timeout, rm);
        /* Never waits for the host: its declarations and reports arrive on the loop. */
        if (start(rm) < 0)
                schedule_restart(rm);
        *ret_state = rm;
        return 0;
}

static int remote_probe(struct nh_probe_ctx *ctx, void *state) {
        struct remote *rm = state;
        int r;

        if (rm->fd < 0 || rm->end != END_NONE)
                return 0; /* no host now: its conditions keep saying why */
        r = nh_proto_send_strings(rm->fd, "cycle", NULL);
        if (r < 0 && r != -EAGAIN)
                return 0; /* it is gone: on_host_exit() says how */
        /* EAGAIN: it does not even read; the cycle's timeout kills it. */
        return NH_PROBE_PENDING;
}

/*
 * Stops a running host as an in-process probe is stopped: its socket closes, so the host
 * leaves its loop, calls the plugin's done() and exits.  That is waited for, at most
 * NH_REMOTE_STOP_GRACE_USEC, on a pidfd (the host is not reaped yet: the pid is still its
 * own).  Then its process group is killed, with whatever done() left running.  A host that
 * is not ready (its plugin's init has not run) is killed at once.
 */
static void stop_host(struct remote *rm) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + NH_REMOTE_STOP_GRACE_USEC;
        int pidfd = -1;

        if (rm->ready && rm->fd >= 0 && rm->end == END_NONE)
                pidfd = (int) syscall(SYS_pidfd_open, rm->pid, 0);
        rm->end = END_STOP;
        close_host(rm);
        for (uint64_t now; pidfd >= 0 && (now = now_usec(CLOCK_MONOTONIC)) < deadline;) {
                struct pollfd pfd = {pidfd, POLLIN, 0};
                if (poll(&pfd, 1, (int) ((deadline - now + 999) / 1000)) >= 0 || errno != EINTR)
                        break;
        }
        if (pidfd >= 0)
                close(pidfd);
        kill_group(rm->pid);
}

static void remote_done(void *state) {
        struct remote *rm = state;

        if (!rm)
                return;
        if (rm->pid > 0)
                stop_host(rm);
        /* Reaped by the orphan reaper. */
        nh_child_forget(rm->child);
        close_host(rm);
        sd_event_source_disable_unref(rm->restart_timer);
        free(rm->end_message);
        free(rm->buf);
        free(rm);
}

static int handle_new(const struct nh_probe_config *cfg, char *const *plugin_dirs, struct nh_plugin_handle **ret) {
        struct nh_plugin_handle *h = calloc(1, sizeof(*h));

        if (!h)
                return -ENOMEM;
        h->path = strdup(cfg->plugin); /* what the proxy stands for; the host finds the file */
        if (!h->path) {
                free(h);
                return -ENOMEM;
        }
        h->remote = true;
        /* The file the host will load, as the loader would find it: a reload restarts a changed one. */
        for (size_t i = 0; plugin_dirs && plugin_dirs[i]; i++) {
                _cleanup_free_ char *so = NULL;
                if (asprintf(&so, "%s/%s.so", plugin_dirs[i], cfg->plugin) >= 0 && lstat(so, &h->file) >= 0)
                        break;
                memset(&h->file, 0, sizeof(h->file));
        }
        h->desc = (struct nh_plugin){
                .abi_version = NH_PLUGIN_ABI_VERSION,
                .struct_size = sizeof(struct nh_plugin),
                .name = h->path, /* not cfg->plugin: the configuration may be replaced by a reload */
                .description = "an isolated probe's proxy",
                .init = remote_init,
                .probe = remote_probe,
                .done = remote_done,
        };
        *ret = h;
        return 0;
}
