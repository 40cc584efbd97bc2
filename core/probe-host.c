/* SPDX-License-Identifier: MIT */
#include "probe-host.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "children.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "probe-proto.h"
#include "probe.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define NH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NH_ASAN 1
#endif
#endif

struct host {
        int fd;
        sd_event *event;
        struct nh_probe_ctx *probe;
        int exit_status;
        sd_event_source *counters_timer; /* sends the counters a while after one changed */
        bool counters_changed;
};

/* How long a changed counter may wait to be sent, so a probe counting fast sends a few messages. */
#define COUNTERS_DELAY_USEC (500 * USEC_PER_MSEC)

static void fatal_exit(struct host *h, int status) {
        h->exit_status = status;
        if (h->event)
                (void) sd_event_exit(h->event, status);
}

/* A send that fails means the daemon is gone or refuses us: nothing is left to do. */
static int send_or_exit(struct host *h, int r) {
        if (r < 0 && r != -EMSGSIZE) {
                log_debug("probe host: cannot send to the daemon: %s", strerror(-r));
                fatal_exit(h, 1);
        }
        return r;
}

/* Cuts a text to what one message may carry (whole UTF-8 sequences kept). */
static char *cut(const char *s) {
        size_t n = strlen(s);

        if (n <= NH_PROTO_TEXT_MAX - 4)
                return strdup(s);
        n = NH_PROTO_TEXT_MAX - 4;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        char *out = malloc(n + 4);
        if (out) {
                memcpy(out, s, n);
                memcpy(out + n, "…", 4); /* 3 bytes and the NUL */
        }
        return out;
}

static int fwd_declare(void *userdata, const char *type, const char *healthy_reason) {
        struct host *h = userdata;
        return send_or_exit(
                h, nh_proto_send_strings(h->fd, "declare", "type", type, "healthy_reason", healthy_reason, NULL));
}

static int fwd_observe(void *userdata, const struct nh_observation *obs) {
        struct host *h = userdata;
        _cleanup_free_ char *message = cut(obs->message ? obs->message : "");

        if (!message)
                return -ENOMEM;
        return send_or_exit(h, nh_proto_send_strings(h->fd, "report", "type", obs->type, "problem", obs->problem,
                                                     "status", nh_status_to_string(obs->status), "reason", obs->reason,
                                                     "message", message, NULL));
}

static void fwd_mark_unknown(void *userdata, const char *reason, const char *message) {
        struct host *h = userdata;
        _cleanup_free_ char *m = cut(message);

        if (m)
                (void) send_or_exit(h, nh_proto_send_strings(h->fd, "unknown", "reason", reason, "message", m, NULL));
}

static void fwd_event(void *userdata, const char *probe, const char *reason, const char *message) {
        struct host *h = userdata;
        _cleanup_free_ char *m = cut(message);

        if (m)
                (void) send_or_exit(h, nh_proto_send_strings(h->fd, "event", "reason", reason, "message", m, NULL));
}

static void fwd_trigger(void *userdata, struct nh_probe_ctx *p) {
        struct host *h = userdata;
        (void) send_or_exit(h, nh_proto_send_strings(h->fd, "trigger", NULL));
}

static void send_counters(struct host *h) {
        const struct nh_probe_counter *c;
        size_t n = 0;

        if (!h->counters_changed || !h->probe)
                return;
        h->counters_changed = false;
        c = nh_probe_counters(h->probe, &n);
        for (size_t i = 0; i < n; i++) {
                char value[24];

                snprintf(value, sizeof(value), "%" PRIu64, c[i].value);
                if (send_or_exit(h, nh_proto_send_strings(h->fd, "counter", "name", c[i].name, "value", value, NULL)) <
                    0)
                        return;
        }
}

static int on_counters_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        send_counters(userdata);
        return 0;
}

static void fwd_counters_changed(void *userdata) {
        struct host *h = userdata;

        if (h->counters_changed)
                return; /* the timer is on its way */
        h->counters_changed = true;
        if (!h->counters_timer)
                (void) sd_event_add_time_relative(h->event, &h->counters_timer, CLOCK_MONOTONIC, COUNTERS_DELAY_USEC, 0,
                                                  on_counters_timer, h);
        else if (sd_event_source_set_time_relative(h->counters_timer, COUNTERS_DELAY_USEC) >= 0)
                (void) sd_event_source_set_enabled(h->counters_timer, SD_EVENT_ONESHOT);
}

static void fwd_cycle_done(void *userdata, struct nh_probe_ctx *p) {
        struct host *h = userdata;

        /* What the cycle counted is there when the daemon hears it ended. */
        send_counters(h);
        (void) send_or_exit(h, nh_proto_send_strings(h->fd, "done", NULL));
}

static const struct nh_probe_forward forward = {
        .declare = fwd_declare,
        .observe = fwd_observe,
        .mark_unknown = fwd_mark_unknown,
        .counters_changed = fwd_counters_changed,
};

static int send_fatal(int fd, const char *kind, int error, const char *text) {
        _cleanup_free_ char *t = cut(text ? text : strerror(error < 0 ? -error : EINVAL));
        cJSON *msg = cJSON_CreateObject();
        int r = -ENOMEM;

        if (msg && t && cJSON_AddStringToObject(msg, "op", "fatal") && cJSON_AddStringToObject(msg, "kind", kind) &&
            cJSON_AddNumberToObject(msg, "errno", error < 0 && error > -4096 ? error : -EINVAL) &&
            cJSON_AddStringToObject(msg, "error", t))
                r = nh_proto_send(fd, msg);
        cJSON_Delete(msg);
        return r;
}

static int on_socket(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct host *h = userdata;
        char buf[256];
        ssize_t n;

        n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                /* The daemon closed the socket: it stops this probe. */
                fatal_exit(h, 0);
                return 0;
        }
        buf[n] = '\0';
        if (strcmp(buf, "{\"op\":\"cycle\"}") == 0) {
                int r = nh_probe_run(h->probe);
                if (r != NH_PROBE_PENDING && r != -EBUSY)
                        fwd_cycle_done(h, h->probe);
        } else
                log_warning("probe host: unexpected message from the daemon: %s", buf);
        return 0;
}

/* The first message: which probe, and the probe's object as the daemon read it. */
static int receive_init(int fd, const char *name, cJSON **ret_config) {
        _cleanup_free_ char *buf = malloc(NH_PROTO_MESSAGE_MAX + 1);
        cJSON *msg, *config;
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        do
                n = recv(fd, buf, NH_PROTO_MESSAGE_MAX, 0);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
                return n < 0 ? -errno : -ECONNRESET;
        msg = cJSON_ParseWithLength(buf, (size_t) n);
        if (!msg || !streq_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "op")), "init") ||
            !streq_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "probe")), name) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(msg, "config"))) {
                cJSON_Delete(msg);
                return -EBADMSG;
        }
        config = cJSON_DetachItemFromObjectCaseSensitive(msg, "config");
        cJSON_Delete(msg);
        *ret_config = config;
        return 0;
}

static void limit_memory(uint64_t limit) {
#ifndef NH_ASAN
        /* A backstop for the daemon's RSS check: allocations fail well past the limit.  Not under
         * AddressSanitizer, whose shadow mappings count as data. */
        struct rlimit rl;
        uint64_t cap = 2 * limit + (UINT64_C(64) << 20);

        rl.rlim_cur = rl.rlim_max = (rlim_t) cap;
        if (setrlimit(RLIMIT_DATA, &rl) < 0)
                log_debug("probe host: cannot set RLIMIT_DATA: %m");
#else
        (void) limit;
#endif
}

static int open_config_dir(const char *config_path) {
        _cleanup_free_ char *copy = strdup(config_path);

        return copy ? open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
}

int nh_probe_host_main(int argc, char **argv) {
        _cleanup_(nh_config_freep) struct nh_config *config = NULL;
        _cleanup_(nh_children_freep) struct nh_children *children = NULL;
        _cleanup_strv_free_ char **dirs = NULL;
        _cleanup_free_ char *error = NULL;
        struct nh_plugin_handle *handle = NULL;
        struct nh_probe_config *cfg = NULL;
        struct nh_probe_host host = {.config_dir_fd = -1};
        struct host h = {.fd = NH_PROBE_HOST_FD};
        const char *name = NULL, *config_path = NULL;
        bool check = false;
        cJSON *sent = NULL;
        int r;

        for (int i = 2; i < argc; i++) {
                if (strcmp(argv[i], "--check") == 0)
                        check = true;
                else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
                        config_path = argv[++i];
                else if (strcmp(argv[i], "--plugin-dir") == 0 && i + 1 < argc) {
                        char *d = strdup(argv[++i]);
                        if (!d || strv_push(&dirs, d) < 0) {
                                free(d);
                                return 1;
                        }
                } else if (!name && argv[i][0] != '-')
                        name = argv[i];
                else {
                        log_error("probe host: unexpected argument \"%s\" (this mode is the daemon's own)", argv[i]);
                        return 64;
                }
        }
        if (!name || !config_path) {
                log_error("probe host: started without a probe name or --config (this mode is the daemon's own)");
                return 64;
        }
        if (fcntl(h.fd, F_GETFD) < 0) {
                log_error("probe host: no socket on fd %d (this mode is the daemon's own)", h.fd);
                return 64;
        }
        (void) fcntl(h.fd, F_SETFD, FD_CLOEXEC);

        r = receive_init(h.fd, name, &sent);
        if (r < 0) {
                log_error("probe host %s: no valid init message from the daemon: %s", name, strerror(-r));
                return 1;
        }

        /* The plugin's keys are checked against its table with their file positions: the host
         * reads the same files, and refuses to run when they changed since the daemon read them. */
        r = nh_config_load(config_path, &config, &error);
        if (r < 0) {
                cJSON_Delete(sent);
                (void) send_fatal(h.fd, "config", r, error);
                return 0;
        }
        for (size_t i = 0; i < config->n_probes; i++)
                if (strcmp(config->probes[i].name, name) == 0)
                        cfg = &config->probes[i];
        /* A drop-in (a plugin found in a plugin directory) is in no file: every setting its default. */
        if (!cfg && cJSON_IsObject(sent) && !sent->child) {
                free(error);
                error = NULL;
                if (nh_config_add_probe(config, name, &error) >= 0)
                        cfg = &config->probes[config->n_probes - 1];
        }
        if (!cfg || !cJSON_Compare(cfg->json, sent, true)) {
                cJSON_Delete(sent);
                (void) send_fatal(h.fd, "config", -ESTALE,
                                  "the configuration files changed since the daemon read them; reload it");
                return 0;
        }
        cJSON_Delete(sent);
        /* The daemon's timeout ends a cycle and kills this process; this one only must not fire first. */
        cfg->timeout = 2 * cfg->timeout + USEC_PER_SEC;

        free(error);
        error = NULL;
        r = nh_plugin_open(dirs, cfg->plugin, &handle, &error);
        if (r < 0) {
                (void) send_fatal(h.fd, "refused", r, error ? error : "");
                return 0;
        }

        for (int i = 0; i < _NH_ROOT_MAX; i++) {
                host.root_fds[i] = NH_PROBE_HOST_ROOT_FD + i;
                (void) fcntl(host.root_fds[i], F_SETFD, FD_CLOEXEC);
        }
        host.config_dir_fd = open_config_dir(config_path);
        host.table = NULL;
        host.forward = &forward;
        host.event_cb = fwd_event;
        host.trigger = fwd_trigger;
        host.cycle_done = fwd_cycle_done;
        host.userdata = &h;
        host.config_path = config_path;
        host.plugin_dirs = dirs;

        r = sd_event_new(&h.event);
        if (r < 0)
                return 1;
        host.event = h.event;
        r = nh_children_new(h.event, true, &children);
        if (r >= 0)
                host.children = children;

        free(error);
        error = NULL;
        r = nh_probe_new(&host, cfg, handle, config->positions, &h.probe, &error);
        if (r < 0) {
                (void) send_fatal(h.fd, "config", r, error);
                sd_event_unref(h.event);
                return 0;
        }
        if (check) {
                (void) nh_proto_send_strings(h.fd, "ready", NULL);
                nh_probe_free(h.probe);
                sd_event_unref(h.event);
                return 0;
        }

        limit_memory(cfg->memory_limit);
        r = sd_event_add_io(h.event, NULL, h.fd, EPOLLIN, on_socket, &h);
        if (r < 0)
                return 1;
        r = nh_probe_start(h.probe);
        if (r < 0) {
                (void) send_fatal(h.fd, "init", r, NULL);
                h.exit_status = 0;
        } else if (send_or_exit(&h, nh_proto_send_strings(h.fd, "ready", NULL)) >= 0)
                (void) sd_event_loop(h.event);

        h.probe = nh_probe_free(h.probe); /* done() may still set a counter: the timer goes after */
        h.counters_timer = sd_event_source_disable_unref(h.counters_timer);
        children = nh_children_free(children);
        sd_event_unref(h.event);
        if (host.config_dir_fd >= 0)
                close(host.config_dir_fd);
        return h.exit_status;
}
