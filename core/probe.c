/* SPDX-License-Identifier: MIT */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cfgmap.h"
#include "log.h"
#include "util.h"

#define PROBE_MAGIC UINT32_C(0x6e687072) /* "nhpr": catches a probe passing a stray pointer */
#define MESSAGE_MAX 4096 /* Kubernetes keeps longer messages, dashboards do not */

/* A condition type this instance may report: from the descriptor, or declared during init. */
struct declared_type {
        char *type;
        char *healthy_reason;
        bool refused; /* kubelet- or CNI-owned and not taken over */
};

struct watch {
        int fd;
        sd_event_source *source;
        nh_io_callback callback;
        void *userdata;
};

struct child_watch {
        struct nh_probe_ctx *probe;
        struct nh_child *child;
        nh_child_callback callback;
        void *userdata;
        struct child_watch *next;
};

#define MAX_COUNTERS 32

struct nh_probe_ctx {
        uint32_t magic;
        struct nh_probe_host *host;
        const struct nh_probe_config *cfg;
        struct nh_plugin_handle *handle;
        const struct nh_plugin *plugin;
        void *config; /* plugin->config_size bytes, filled from its table */
        void *state;
        bool running;
        char *log_prefix;
        bool refused_owned_logged, refused_undeclared_logged; /* each logged once, not per cycle */
        struct nh_probe_stats stats;

        struct watch *watches;
        size_t n_watches;
        sd_event_source *timer; /* nh_set_timer() */
        nh_timer_callback timer_callback;
        void *timer_userdata;
        bool pending; /* probe() returned NH_PROBE_PENDING, no nh_cycle_done() yet */
        bool triggered; /* nh_trigger() while pending: run again when the cycle ends */
        bool stopping; /* done() runs: no new watches or timers */
        sd_event_source *timeout; /* ends a pending cycle that overruns the probe's timeout */
        bool in_init; /* nh_declare_condition() is allowed */
        void (*timeout_hook)(struct nh_probe_ctx *p, void *userdata); /* an isolated probe's proxy */
        void *timeout_hook_userdata;
        bool timeout_held; /* the proxy's host is not ready yet: its cycles' timeouts wait */

        struct child_watch *child_watches;
        struct nh_probe_counter counters[MAX_COUNTERS];
        size_t n_counters;

        struct declared_type *types;
        size_t n_types;
        struct nh_feed_params feed_params;
};

/* A probe's return value is untrusted: only -1 … -4095 are errno values. */
static const char *errno_text(int r) {
        return strerror(r < 0 && r > -4096 ? -r : EINVAL);
}

static bool ctx_ok(const struct nh_probe_ctx *p) {
        return p && p->magic == PROBE_MAGIC;
}

struct nh_probe_ctx *nh_probe_free(struct nh_probe_ctx *p) {
        if (!p)
                return NULL;
        /* Sources first: done() closes the fds they watch (and may unwatch them: a no-op now). */
        p->stopping = true;
        for (size_t i = 0; i < p->n_watches; i++)
                sd_event_source_disable_unref(p->watches[i].source);
        free(p->watches);
        p->watches = NULL;
        p->n_watches = 0;
        p->timer = sd_event_source_disable_unref(p->timer);
        p->timer_callback = NULL;
        p->timeout = sd_event_source_disable_unref(p->timeout);
        /* Children still running are left to the orphan reaper: done() may kill them. */
        while (p->child_watches) {
                struct child_watch *w = p->child_watches;
                p->child_watches = w->next;
                nh_child_forget(w->child);
                free(w);
        }
        if (p->running && p->plugin->done)
                p->plugin->done(p->state);

        if (p->config) {
                cfgmap_free(p->plugin->config, p->config);
                free(p->config);
        }
        nh_plugin_close(p->handle);
        free(p->log_prefix);
        for (size_t i = 0; i < p->n_types; i++) {
                free(p->types[i].type);
                free(p->types[i].healthy_reason);
        }
        free(p->types);
        p->magic = 0;
        free(p);
        return NULL;
}

int nh_probe_new(struct nh_probe_host *host, const struct nh_probe_config *cfg, struct nh_plugin_handle *handle,
                 const struct json_positions *positions, struct nh_probe_ctx **ret, char **ret_error) {
        _cleanup_(nh_plugin_closep) struct nh_plugin_handle *h = handle;
        _cleanup_(nh_probe_freep) struct nh_probe_ctx *p = NULL;
        _cleanup_free_ char *what = NULL;
        struct cfg_section section;
        int r;

        *ret_error = NULL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->magic = PROBE_MAGIC;
        p->host = host;
        p->cfg = cfg;
        p->handle = TAKE_PTR(h);
        p->plugin = &p->handle->desc;
        if (asprintf(&p->log_prefix, "probe %s (%s): ", cfg->name, p->plugin->name) < 0)
                return -ENOMEM;

        /* Always allocate, so a plugin without keys still gets a non-NULL config pointer. */
        p->config = calloc(1, p->plugin->config_size ? p->plugin->config_size : 1);
        if (!p->config)
                return -ENOMEM;
        if (asprintf(&what, "probe \"%s\"", cfg->name) < 0)
                return -ENOMEM;
        section = (struct cfg_section){p->plugin->config, p->config};
        /* An isolated probe's keys are its probe host's to check, against the real plugin's table. */
        r = p->handle->remote ? 0
                              : cfgmap_apply(&section, 1, cfg->json, positions, what, nh_probe_core_keys, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

static uint64_t now(const struct nh_probe_ctx *p, clockid_t clock) {
        return p->host->now ? p->host->now(p->host->userdata, clock) : now_usec(clock);
}

/* Into the table, or to the forwarder of a probe host (probe-host.c). */
static void mark_unknown(struct nh_probe_ctx *p, const char *reason, const char *message, uint64_t real) {
        if (p->host->table)
                (void) nh_table_mark_unknown(p->host->table, p->cfg->name, reason, message, real);
        else if (p->host->forward)
                p->host->forward->mark_unknown(p->host->userdata, reason, message);
}

/* May this instance write `type`?  Index into p->types, or a negative errno. */
static int allowed_type(const struct nh_probe_ctx *p, const char *type) {
        for (size_t i = 0; i < p->n_types; i++) {
                if (strcmp(p->types[i].type, type) != 0)
                        continue;
                return p->types[i].refused ? -EPERM : (int) i;
        }
        return -EINVAL;
}

#define MAX_TYPES 64

/* Adds a type to the instance and, unless the kubelet or the CNI owns it, to the table. */
static int declare(struct nh_probe_ctx *p, const char *type, const char *healthy_reason) {
        struct declared_type *grown, *t;
        int r;

        if (!is_camel_case(type) || !is_camel_case(healthy_reason))
                return -EINVAL;
        for (size_t i = 0; i < p->n_types; i++)
                if (strcmp(p->types[i].type, type) == 0)
                        return -EEXIST;
        if (p->n_types >= MAX_TYPES)
                return -E2BIG;
        grown = realloc(p->types, (p->n_types + 1) * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        p->types = grown;
        t = &p->types[p->n_types];
        *t = (struct declared_type){.type = strdup(type), .healthy_reason = strdup(healthy_reason)};
        if (!t->type || !t->healthy_reason) {
                free(t->type);
                free(t->healthy_reason);
                return -ENOMEM;
        }
        p->n_types++;
        if (nh_condition_owner(type) && !strv_contains(p->cfg->take_over, type)) {
                t->refused = true;
                log_notice("%sdoes not report %s: %s owns it and \"take_over\" does not list it", p->log_prefix, type,
                           nh_condition_owner(type));
                return 0;
        }
        if (!p->host->table)
                r = p->host->forward ? p->host->forward->declare(p->host->userdata, type, healthy_reason) : 0;
        else
                r = nh_table_add_feed(p->host->table, p->cfg->name, type, &p->feed_params, now(p, CLOCK_MONOTONIC),
                                      now(p, CLOCK_REALTIME));
        if (r < 0 && r != -EEXIST)
                return log_error_errno(r, "%sCannot add condition %s: %m", p->log_prefix, type);
        return 0;
}

int nh_probe_start(struct nh_probe_ctx *p) {
        uint64_t real = now(p, CLOCK_REALTIME);
        int r;

        p->feed_params = (struct nh_feed_params){
                .raise_after = (unsigned) p->cfg->raise_after,
                .clear_after = (unsigned) p->cfg->clear_after,
                .stale_after = 3 * p->cfg->interval + p->cfg->timeout,
        };
        for (size_t i = 0; p->plugin->conditions && p->plugin->conditions[i].type; i++) {
                r = declare(p, p->plugin->conditions[i].type, p->plugin->conditions[i].healthy_reason);
                if (r < 0 && r != -EEXIST)
                        return r;
        }

        if (p->plugin->init) {
                _cleanup_free_ char *message = NULL;

                p->in_init = true;
                r = p->plugin->init(p, p->config, &p->state);
                p->in_init = false;

                if (r < 0) {
                        if (asprintf(&message, "probe %s could not start: %s", p->cfg->name, errno_text(r)) < 0)
                                message = NULL;
                        mark_unknown(p, NH_REASON_PROBE_INIT_FAILED, message ? message : "probe could not start", real);
                        log_error("%sinit failed: %s; its conditions stay Unknown", p->log_prefix, errno_text(r));
                        p->state = NULL;
                        return r;
                }
        }
        p->running = true;
        return 0;
}

static void end_pending(struct nh_probe_ctx *p) {
        p->pending = false;
        p->timeout = sd_event_source_disable_unref(p->timeout);
        if (p->host->cycle_done)
                p->host->cycle_done(p->host->userdata, p);
        if (p->triggered) {
                /* Something changed during the cycle: the next one runs now. */
                p->triggered = false;
                if (p->host->trigger)
                        p->host->trigger(p->host->userdata, p);
        }
}

static int on_cycle_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_probe_ctx *p = userdata;
        _cleanup_free_ char *message = NULL;
        char d[32];

        p->stats.failures++;
        if (asprintf(&message, "probe %s did not finish a cycle within its timeout of %s", p->cfg->name,
                     format_duration(d, sizeof(d), p->cfg->timeout)) < 0)
                message = NULL;
        mark_unknown(p, NH_REASON_PROBE_TIMEOUT, message ? message : "probe timed out", now(p, CLOCK_REALTIME));
        log_warning("%s%s", p->log_prefix, message ? message : "timed out");
        if (p->timeout_hook)
                p->timeout_hook(p, p->timeout_hook_userdata);
        end_pending(p);
        return 0;
}

bool nh_probe_pending(const struct nh_probe_ctx *p) {
        return p->pending;
}

int nh_probe_run(struct nh_probe_ctx *p) {
        uint64_t start, took;
        int r;

        if (!p->running)
                return -ESRCH;
        if (p->pending)
                return -EBUSY; /* the previous cycle still runs: its timeout will end it */
        start = now_usec(CLOCK_MONOTONIC);
        r = p->plugin->probe(p, p->state);

        took = now_usec(CLOCK_MONOTONIC) - start;
        p->stats.cycles++;
        p->stats.last_duration = took;
        if (took > p->stats.max_duration)
                p->stats.max_duration = took;
        if (took > p->cfg->timeout) {
                char a[32], b[32];
                log_warning("%sone cycle took %s, more than its timeout of %s", p->log_prefix,
                            format_duration(a, sizeof(a), took), format_duration(b, sizeof(b), p->cfg->timeout));
        }
        if (r < 0) {
                _cleanup_free_ char *message = NULL;

                p->stats.failures++;
                if (asprintf(&message, "probe %s failed: %s", p->cfg->name, errno_text(r)) < 0)
                        message = NULL;
                mark_unknown(p, NH_REASON_PROBE_FAILED, message ? message : "probe failed", now(p, CLOCK_REALTIME));
                log_warning("%scycle failed: %s", p->log_prefix, errno_text(r));
                return r;
        }
        if (r == NH_PROBE_PENDING) {
                p->pending = true;
                if (p->host->event) {
                        int k = sd_event_add_time_relative(p->host->event, &p->timeout, CLOCK_MONOTONIC,
                                                           p->cfg->timeout, 0, on_cycle_timeout, p);
                        if (k < 0) {
                                log_error_errno(k, "%sCannot arm the cycle's timeout: %m", p->log_prefix);
                                p->pending = false;
                                return k;
                        }
                        if (p->timeout_held)
                                (void) sd_event_source_set_enabled(p->timeout, SD_EVENT_OFF);
                } else
                        p->pending = false; /* no loop to finish on: what was reported is the cycle */
                return p->pending ? NH_PROBE_PENDING : 0;
        }
        return 0; /* any other non-negative value is a complete cycle */
}

bool nh_probe_running(const struct nh_probe_ctx *p) {
        return p->running;
}

const char *nh_probe_name(const struct nh_probe_ctx *p) {
        return p->cfg->name;
}

const struct nh_probe_config *nh_probe_config(const struct nh_probe_ctx *p) {
        return p->cfg;
}

const struct nh_probe_stats *nh_probe_stats(const struct nh_probe_ctx *p) {
        return &p->stats;
}

void nh_probe_set_config(struct nh_probe_ctx *p, const struct nh_probe_config *cfg) {
        p->cfg = cfg;
}

const struct nh_plugin_handle *nh_probe_handle(const struct nh_probe_ctx *p) {
        return p->handle;
}

bool nh_probe_declares(const struct nh_probe_ctx *p, const char *type) {
        return allowed_type(p, type) >= 0;
}

const struct nh_probe_counter *nh_probe_counters(const struct nh_probe_ctx *p, size_t *ret_n) {
        *ret_n = p->n_counters;
        return p->counters;
}

struct nh_probe_host *nh_probe_host_of(const struct nh_probe_ctx *p) {
        return p->host;
}

int nh_probe_declare(struct nh_probe_ctx *p, const char *type, const char *healthy_reason) {
        if (!ctx_ok(p) || !type || !healthy_reason)
                return -EINVAL;
        return declare(p, type, healthy_reason);
}

void nh_probe_mark_unknown(struct nh_probe_ctx *p, const char *reason, const char *message) {
        p->stats.failures++;
        mark_unknown(p, reason, message, now(p, CLOCK_REALTIME));
}

void nh_probe_hold_timeout(struct nh_probe_ctx *p, bool hold) {
        p->timeout_held = hold;
        if (!p->timeout)
                return;
        if (hold)
                (void) sd_event_source_set_enabled(p->timeout, SD_EVENT_OFF);
        else if (sd_event_source_set_time_relative(p->timeout, p->cfg->timeout) >= 0)
                (void) sd_event_source_set_enabled(p->timeout, SD_EVENT_ONESHOT);
}

void nh_probe_set_timeout_hook(struct nh_probe_ctx *p, void (*hook)(struct nh_probe_ctx *p, void *userdata),
                               void *userdata) {
        p->timeout_hook = hook;
        p->timeout_hook_userdata = userdata;
}

/* ---- the plugin ABI ---- */

_api_ int nh_report(struct nh_probe_ctx *p, const struct nh_observation *obs) {
        struct nh_observation copy;
        _cleanup_free_ char *message = NULL;
        int i;

        if (!ctx_ok(p) || !obs || !obs->type || obs->status < 0 || obs->status >= _NH_STATUS_MAX)
                return -EINVAL;
        i = allowed_type(p, obs->type);
        if (i == -EPERM) {
                if (!p->refused_owned_logged)
                        log_warning("%srefused a report of %s: %s owns that type", p->log_prefix, obs->type,
                                    nh_condition_owner(obs->type));
                p->refused_owned_logged = true;
                return -EPERM;
        }
        if (i < 0) {
                if (!p->refused_undeclared_logged)
                        log_warning("%sreported undeclared condition type \"%.64s\"", p->log_prefix, obs->type);
                p->refused_undeclared_logged = true;
                return -EINVAL;
        }

        copy = *obs;
        if (!copy.reason && copy.status == NH_STATUS_FALSE)
                copy.reason = p->types[i].healthy_reason;
        if (!copy.reason || !is_camel_case(copy.reason))
                return -EINVAL;
        if (copy.problem && strlen(copy.problem) > 64)
                return -EINVAL;
        if (!copy.message)
                copy.message = "";
        if (strlen(copy.message) > MESSAGE_MAX) {
                if (asprintf(&message, "%.*s…", MESSAGE_MAX, copy.message) < 0)
                        return -ENOMEM;
                copy.message = message;
        }
        if (!p->host->table)
                return p->host->forward ? p->host->forward->observe(p->host->userdata, &copy) : 0;
        return nh_table_observe(p->host->table, p->cfg->name, &copy, now(p, CLOCK_MONOTONIC), now(p, CLOCK_REALTIME));
}

_api_ int nh_declare_condition(struct nh_probe_ctx *p, const char *type, const char *healthy_reason) {
        if (!ctx_ok(p) || !type || !healthy_reason)
                return -EINVAL;
        if (!p->in_init)
                return -EBUSY; /* the table and the Node know a probe's types from its start */
        return declare(p, type, healthy_reason);
}

_api_ int nh_event(struct nh_probe_ctx *p, const char *reason, const char *message) {

        if (!ctx_ok(p) || !reason || !is_camel_case(reason) || !message)
                return -EINVAL;
        if (p->host->event_cb)
                p->host->event_cb(p->host->userdata, p->cfg->name, reason, message);
        return 0;
}

_api_ void nh_log(struct nh_probe_ctx *p, enum nh_log_level level, const char *format, ...) {
        va_list ap;

        if (!ctx_ok(p) || !format)
                return;
        if (level < NH_LOG_ERR)
                level = NH_LOG_ERR;
        if (level > NH_LOG_DEBUG)
                level = NH_LOG_DEBUG;
        va_start(ap, format);
        log_fullv((int) level, p->log_prefix, format, ap);
        va_end(ap);
}

_api_ int nh_root_fd(struct nh_probe_ctx *p, enum nh_root root) {
        if (!ctx_ok(p) || root < 0 || root >= _NH_ROOT_MAX)
                return -EINVAL;
        return p->host->root_fds[root];
}

/*
 * Opens path beneath the root fd and never outside it: ".." and symbolic links resolve as
 * if the root were "/" (openat2's RESOLVE_IN_ROOT), so neither a probe's configured path nor
 * a link in a mounted host tree escapes --proc-path, --sys-path or --root-path.
 */
static int open_in_root(int dirfd, const char *path) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                .resolve = RESOLVE_IN_ROOT,
        };
        int fd = -1;

        /* EAGAIN: a rename or a mount elsewhere raced with the resolution; it is safe to retry. */
        for (unsigned attempt = 0; attempt < 16; attempt++) {
                fd = (int) syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
                if (fd >= 0 || errno != EAGAIN)
                        break;
        }
        if (fd >= 0)
                return fd;
        if (errno != ENOSYS && errno != EPERM)
                return -errno;
        /* Kernels before 5.6, or a seccomp filter that does not know openat2: refuse what could
         * climb out, then plain openat. */

        if (strstr(path, ".."))
                return -EPERM;
        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        return fd >= 0 ? fd : -errno;
}

_api_ int nh_read_file(struct nh_probe_ctx *p, enum nh_root root, const char *path, char *buf, size_t size,
                       size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        size_t len = 0;
        int dirfd = nh_root_fd(p, root);

        if (dirfd < 0 || !path || !buf || size < 2)
                return -EINVAL;
        while (*path == '/')
                path++;
        if (!*path)
                return -EINVAL;
        fd = open_in_root(dirfd, path);
        if (fd < 0)
                return fd;
        for (;;) {
                ssize_t n = read(fd, buf + len, size - 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len == size - 1) {
                        char extra;
                        do
                                n = read(fd, &extra, 1);
                        while (n < 0 && errno == EINTR);
                        if (n < 0)
                                return -errno;
                        if (n > 0)
                                return -EFBIG;
                        break;
                }
        }
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        return 0;
}

static struct watch *find_watch(struct nh_probe_ctx *p, int fd) {
        for (size_t i = 0; i < p->n_watches; i++)
                if (p->watches[i].fd == fd)
                        return &p->watches[i];
        return NULL;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct nh_probe_ctx *p = userdata;
        struct watch *w = find_watch(p, fd);

        /* Copied first: the callback may unwatch (and so move) this very entry. */
        if (w) {
                nh_io_callback callback = w->callback;
                void *data = w->userdata;
                callback(p, fd, revents, data);
        }
        return 0;
}

_api_ int nh_watch_fd(struct nh_probe_ctx *p, int fd, uint32_t events, nh_io_callback callback, void *userdata) {
        struct watch *w;
        int r;

        if (!ctx_ok(p) || fd < 0 || !callback)
                return -EINVAL;
        if (!p->host->event)
                return -EOPNOTSUPP;
        if (p->stopping)
                return -ESHUTDOWN;
        w = find_watch(p, fd);
        if (w) {
                r = sd_event_source_set_io_events(w->source, events);
                if (r < 0)
                        return r;
                w->callback = callback;
                w->userdata = userdata;
                return 0;
        }
        w = realloc(p->watches, (p->n_watches + 1) * sizeof(*w));
        if (!w)
                return -ENOMEM;
        p->watches = w;
        w = &p->watches[p->n_watches];
        *w = (struct watch){.fd = fd, .callback = callback, .userdata = userdata};
        r = sd_event_add_io(p->host->event, &w->source, fd, events, on_io, p);
        if (r < 0)
                return r;
        p->n_watches++;
        return 0;
}

_api_ int nh_unwatch_fd(struct nh_probe_ctx *p, int fd) {
        struct watch *w;

        if (!ctx_ok(p))
                return -EINVAL;
        w = find_watch(p, fd);
        if (!w)
                return -ENOENT;
        sd_event_source_disable_unref(w->source);
        *w = p->watches[--p->n_watches];
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_probe_ctx *p = userdata;
        nh_timer_callback callback = p->timer_callback;

        p->timer_callback = NULL; /* one-shot; the callback may set a new one */
        if (callback)
                callback(p, p->timer_userdata);
        return 0;
}

_api_ int nh_set_timer(struct nh_probe_ctx *p, uint64_t usec, nh_timer_callback callback, void *userdata) {
        int r;

        if (!ctx_ok(p))
                return -EINVAL;
        if (!p->host->event)
                return -EOPNOTSUPP;
        if (p->stopping)
                return callback ? -ESHUTDOWN : 0;
        p->timer_callback = callback;
        p->timer_userdata = userdata;
        if (!callback)
                return p->timer ? sd_event_source_set_enabled(p->timer, SD_EVENT_OFF) : 0;
        /* Accuracy 1 µs: sd-event's default (250 ms) would delay every probe's wake-up. */
        if (!p->timer)

                return sd_event_add_time_relative(p->host->event, &p->timer, CLOCK_MONOTONIC, usec, 1, on_timer, p);
        r = sd_event_source_set_time_relative(p->timer, usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

_api_ int nh_trigger(struct nh_probe_ctx *p) {
        if (!ctx_ok(p))
                return -EINVAL;
        if (p->stopping)
                return 0;
        if (p->pending) {
                p->triggered = true; /* a cycle now would be refused (-EBUSY): remember it */
                return 0;
        }
        if (p->host->trigger)
                p->host->trigger(p->host->userdata, p);
        return 0;
}

_api_ void nh_cycle_done(struct nh_probe_ctx *p) {
        if (ctx_ok(p) && p->pending)
                end_pending(p);
}

_api_ int nh_config_dir_fd(struct nh_probe_ctx *p) {
        if (!ctx_ok(p))
                return -EINVAL;
        return p->host->config_dir_fd >= 0 ? p->host->config_dir_fd : -ENOENT;
}

_api_ uint64_t nh_now(struct nh_probe_ctx *p) {

        return ctx_ok(p) ? now(p, CLOCK_MONOTONIC) : 0;
}

_api_ const char *nh_instance_name(struct nh_probe_ctx *p) {
        return ctx_ok(p) ? p->cfg->name : NULL;
}

static void on_child_exit(void *userdata, pid_t pid, int code, int status) {
        struct child_watch *w = userdata;
        struct nh_probe_ctx *p = w->probe;

        for (struct child_watch **i = &p->child_watches; *i; i = &(*i)->next)
                if (*i == w) {
                        *i = w->next;
                        break;
                }
        /* Copied out first: the callback may watch a new child. */
        nh_child_callback callback = w->callback;
        void *data = w->userdata;
        free(w);
        callback(p, pid, code, status, data);
}

_api_ int nh_watch_child(struct nh_probe_ctx *p, pid_t pid, nh_child_callback callback, void *userdata) {
        struct child_watch *w;
        int r;

        if (!ctx_ok(p) || pid <= 0 || !callback)
                return -EINVAL;
        if (!p->host->children)
                return -EOPNOTSUPP;
        if (p->stopping)
                return -ESHUTDOWN;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (struct child_watch){.probe = p, .callback = callback, .userdata = userdata};
        r = nh_children_watch(p->host->children, pid, on_child_exit, w, &w->child);
        if (r < 0) {
                free(w);
                return r;
        }
        w->next = p->child_watches;
        p->child_watches = w;
        return 0;
}

static bool is_snake_case(const char *s) {
        if (!s || !(*s >= 'a' && *s <= 'z'))
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                        return false;
        return true;
}

static void counters_changed(struct nh_probe_ctx *p) {
        if (p->host->forward && p->host->forward->counters_changed)
                p->host->forward->counters_changed(p->host->userdata);
}

_api_ int nh_counter_set(struct nh_probe_ctx *p, const char *name, uint64_t value) {
        if (!ctx_ok(p) || !is_snake_case(name) || strlen(name) >= sizeof(p->counters[0].name))
                return -EINVAL;
        for (size_t i = 0; i < p->n_counters; i++)
                if (strcmp(p->counters[i].name, name) == 0) {
                        if (p->counters[i].value != value) {
                                p->counters[i].value = value;
                                counters_changed(p);
                        }
                        return 0;
                }
        if (p->n_counters >= MAX_COUNTERS)
                return -E2BIG;
        strcpy(p->counters[p->n_counters].name, name);
        p->counters[p->n_counters++].value = value;
        counters_changed(p);
        return 0;
}
