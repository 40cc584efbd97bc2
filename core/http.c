/* SPDX-License-Identifier: MIT */
#include "http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "log.h"

/* A scraper, a liveness probe and a person with curl: a few connections are plenty. */
#define MAX_CONNECTIONS 16
#define MAX_CONNECTIONS_PER_IP 8
#define CONNECTION_TIMEOUT_SEC 10
#define CONNECTION_MEMORY (32 * 1024)

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define TEXT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define APPLICATION_JSON "application/json"

struct nh_http {
        sd_event *event;
        struct MHD_Daemon *mhd;
        sd_event_source *io; /* MHD's epoll fd */
        sd_event_source *timer; /* MHD's timeout */
        sd_event_source *tick; /* the loop-lag timer */
        nh_http_collect_fn collect;
        void *userdata;
        unsigned port;
        uint64_t start_time; /* realtime µs, for nodehealthd_start_time_seconds */

        uint64_t last_tick; /* monotonic µs the tick last ran */
        uint64_t lag; /* how late it ran then */
        uint64_t late_at, late_by; /* the last time it ran more than NH_HTTP_LAG_LIMIT late */
};

/* ---- the address ---- */

int nh_http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, const char **ret_why) {
        struct sockaddr_storage ss = {0};
        char host[INET6_ADDRSTRLEN + 1];
        const char *colon, *port_text;
        uint64_t port;
        size_t n;

        if (!s || !*s) {
                *ret_why = "it is empty";
                return -EINVAL;
        }
        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':') {
                        *ret_why = "an IPv6 address is written [ADDRESS]:PORT";
                        return -EINVAL;
                }
                n = (size_t) (close - s - 1);
                port_text = close + 2;
        } else {
                colon = strrchr(s, ':');
                if (!colon) {
                        *ret_why = "the port is missing";
                        return -EINVAL;
                }
                if (strchr(s, ':') != colon) {
                        *ret_why = "an IPv6 address is written [ADDRESS]:PORT";
                        return -EINVAL;
                }
                n = (size_t) (colon - s);
                port_text = colon + 1;
        }
        if (n == 0) {
                *ret_why = "the address is missing (all interfaces: 0.0.0.0:PORT or [::]:PORT)";
                return -EINVAL;
        }
        if (n >= sizeof(host)) {
                *ret_why = "the address is not an IP address";
                return -EINVAL;
        }
        memcpy(host, s[0] == '[' ? s + 1 : s, n);
        host[n] = '\0';
        /* Digits only: parse_uint64 alone would take "+80" or " 80". */
        if (!*port_text || strspn(port_text, "0123456789") != strlen(port_text) || parse_uint64(port_text, &port) < 0 ||
            port == 0 || port > 65535) {
                *ret_why = "the port must be a number from 1 to 65535";
                return -EINVAL;
        }
        if (s[0] == '[') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
                        *ret_why = "the address is not an IPv6 address";
                        return -EINVAL;
                }
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t) port);
                *ret_len = sizeof(*a);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) &ss;
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
                        *ret_why = "the address is not an IPv4 address (host names are not looked up)";
                        return -EINVAL;
                }
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t) port);
                *ret_len = sizeof(*a);
        }
        *ret = ss;
        return 0;
}

/* ---- the loop's lag ---- */

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_http *h = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC); /* not the loop's cached time: handlers before us count */

        h->lag = now > usec ? now - usec : 0;
        if (h->lag > NH_HTTP_LAG_LIMIT) {
                h->late_at = now;
                h->late_by = h->lag;
        }
        h->last_tick = now;
        (void) sd_event_source_set_time(s, now + NH_HTTP_TICK);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- answers ---- */

/* Queues `body` (malloc'd, taken; NULL: out of memory) with `status`. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t size) {
        struct MHD_Response *resp;
        enum MHD_Result r;

        if (!body) {
                static const char oom[] = "out of memory\n";
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
                type = TEXT_PLAIN;
                resp = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *) oom, MHD_RESPMEM_PERSISTENT);
        } else
                resp = MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO; /* MHD closes the connection */
        }
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
            (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
             MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text) {
        char *copy = strdup(text);
        return reply(conn, status, TEXT_PLAIN, copy, copy ? strlen(copy) : 0);
}

static bool is_dead_reason(const char *reason) {
        static const char *const dead[] = {NH_REASON_PROBE_STALE, NH_REASON_PROBE_INIT_FAILED, NH_REASON_PROBE_CRASHED};

        for (size_t i = 0; reason && i < ELEMENTSOF(dead); i++)
                if (strcmp(reason, dead[i]) == 0)
                        return true;
        return false;
}

static double seconds(uint64_t usec) {
        return (double) usec / (double) USEC_PER_SEC;
}

/* One line per failing check; none: healthy.  Returns how many failed, or -ENOMEM. */
static int health(struct nh_http *h, const struct nh_metrics_input *in, char **ret, size_t *ret_size) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        int failed = 0;

        if (!f)
                return -ENOMEM;
        if (h->last_tick && now > h->last_tick + NH_HTTP_TICK + NH_HTTP_LAG_LIMIT) {
                fprintf(f, "loop: its %.0f s timer has not run for %.1f s (limit %.1f s)\n", seconds(NH_HTTP_TICK),
                        seconds(now - h->last_tick), seconds(NH_HTTP_TICK + NH_HTTP_LAG_LIMIT));
                failed++;
        } else if (h->late_at && now - h->late_at < NH_HTTP_LAG_WINDOW) {
                fprintf(f, "loop: its %.0f s timer ran %.1f s late %.0f s ago (limit %.1f s, remembered %.0f s)\n",
                        seconds(NH_HTTP_TICK), seconds(h->late_by), seconds(now - h->late_at),
                        seconds(NH_HTTP_LAG_LIMIT), seconds(NH_HTTP_LAG_WINDOW));
                failed++;
        }
        for (size_t i = 0; in->table && i < nh_table_size(in->table); i++) {
                const struct nh_condition *c = nh_table_get(in->table, i);
                if (c->status != NH_STATUS_UNKNOWN || !is_dead_reason(c->reason))
                        continue;
                /* A probe's message is one line, but it is the probe's: no line breaks get through. */
                fprintf(f, "probe: %s is Unknown (%s): ", c->type, c->reason);
                for (const char *p = c->message ? c->message : ""; *p; p++)
                        fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f);
                fputc('\n', f);
                failed++;
        }
        if (failed == 0)
                fputs("ok\n", f);
        bool bad = ferror(f);
        if (fclose(f) != 0 || bad) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        *ret_size = size;
        return failed;
}

static char *conditions_json(const struct nh_table *table, size_t *ret_size) {
        cJSON *list = cJSON_CreateArray();
        char *text = NULL, *line;

        for (size_t i = 0; list && table && i < nh_table_size(table); i++) {
                cJSON *c = nh_condition_to_json(nh_table_get(table, i));
                if (!c || !cJSON_AddItemToArray(list, c)) {
                        cJSON_Delete(c);
                        cJSON_Delete(list);
                        return NULL;
                }
        }
        text = list ? cJSON_PrintUnformatted(list) : NULL;
        cJSON_Delete(list);
        if (!text || asprintf(&line, "%s\n", text) < 0)
                line = NULL;
        cJSON_free(text);
        *ret_size = line ? strlen(line) : 0;
        return line;
}

enum route {
        ROUTE_NONE,
        ROUTE_METRICS,
        ROUTE_HEALTHZ,
        ROUTE_CONDITIONS,
};

static enum route route(const char *url) {
        if (!url)
                return ROUTE_NONE;
        if (strcmp(url, "/metrics") == 0)
                return ROUTE_METRICS;
        if (strcmp(url, "/healthz") == 0)
                return ROUTE_HEALTHZ;
        if (strcmp(url, "/conditions") == 0)
                return ROUTE_CONDITIONS;
        return ROUTE_NONE;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        struct nh_http *h = cls;
        struct nh_metrics_input in = {0};
        struct nh_sink *metrics = NULL;
        enum route where = route(url);
        char *body = NULL;
        size_t size = 0;
        int r;

        /* Answered at the first call, before any body is read: no route takes one. */
        if (where == ROUTE_NONE)
                return reply_text(conn, MHD_HTTP_NOT_FOUND,
                                  "not found: the paths are /metrics, /healthz, /conditions\n");
        if (!method || (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0))
                return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n");

        h->collect(h->userdata, &in, &metrics);
        in.loop_lag = h->lag;
        in.start_time = h->start_time;
        switch (where) {
        case ROUTE_METRICS:
                r = nh_metrics_render(metrics, &in, &body, &size);
                return reply(conn, MHD_HTTP_OK, TEXT_METRICS, r < 0 ? NULL : body, size);
        case ROUTE_HEALTHZ:
                r = health(h, &in, &body, &size);
                if (r < 0)
                        return reply(conn, MHD_HTTP_OK, TEXT_PLAIN, NULL, 0);
                return reply(conn, r > 0 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, TEXT_PLAIN, body, size);
        default:
                body = conditions_json(in.table, &size);
                return reply(conn, MHD_HTTP_OK, APPLICATION_JSON, body, size);
        }
}

/* ---- libmicrohttpd on the loop ---- */

static void update_timer(struct nh_http *h) {
        MHD_UNSIGNED_LONG_LONG ms = 0;

        if (MHD_get_timeout(h->mhd, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
                return;
        }
        if (ms > UINT64_MAX / USEC_PER_MSEC - now_usec(CLOCK_MONOTONIC))
                ms = 3600 * 1000;
        (void) sd_event_source_set_time(h->timer, now_usec(CLOCK_MONOTONIC) + ms * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
}

static void run(struct nh_http *h) {
        if (MHD_run(h->mhd) != MHD_YES)
                log_debug("http: MHD_run failed");
        update_timer(h);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        run(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        run(userdata);
        return 0;
}

/* MHD's messages are about clients (malformed requests, timeouts): anyone can cause them. */
static void on_mhd_log(void *cls, const char *format, va_list ap) _printf_(2, 0);
static void on_mhd_log(void *cls, const char *format, va_list ap) {
        char line[512];
        size_t n;

        vsnprintf(line, sizeof(line), format, ap);
        n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        log_debug("http: %s", line);
}

static int open_socket(const char *listen_address, unsigned *ret_port) {
        struct sockaddr_storage ss, bound;
        socklen_t len, bound_len = sizeof(bound);
        const char *why = NULL;
        _cleanup_close_ int fd = -1;
        int one = 1;

        if (nh_http_parse_listen(listen_address, &ss, &len, &why) < 0)
                return -EINVAL;
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A restart finds the port in TIME_WAIT; SO_REUSEADDR does not let two daemons share it. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, 16) < 0)
                return -errno;
        if (getsockname(fd, (struct sockaddr *) &bound, &bound_len) < 0)
                return -errno;
        *ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &bound)->sin6_port
                                                      : ((struct sockaddr_in *) &bound)->sin_port);
        return TAKE_FD(fd);
}

int nh_http_new(sd_event *event, const char *listen_address, nh_http_collect_fn collect, void *userdata,
                struct nh_http **ret) {
        _cleanup_(nh_http_freep) struct nh_http *h = NULL;
        const union MHD_DaemonInfo *info;
        unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
        int fd, r;

        if (!event || !listen_address || !collect)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(event);
        h->collect = collect;
        h->userdata = userdata;
        h->start_time = now_usec(CLOCK_REALTIME);

        fd = open_socket(listen_address, &h->port);
        if (fd < 0)
                return fd;
        if (listen_address[0] == '[')
                flags |= MHD_USE_IPv6;
        /* No thread: MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD is driven by MHD_run(). */
        h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                                  MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned) MAX_CONNECTIONS,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) MAX_CONNECTIONS_PER_IP,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) CONNECTION_TIMEOUT_SEC,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY, MHD_OPTION_END);
        if (!h->mhd)
                /* Whether MHD closed `fd` on this path is not documented: left open (the daemon exits). */
                return -EIO;
        /* From here on MHD owns the socket and closes it in MHD_stop_daemon(). */
        info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0)
                return -EIO;
        r = sd_event_add_io(event, &h->io, info->epoll_fd, EPOLLIN, on_io, h);
        if (r < 0)
                return r;
        r = sd_event_add_time(event, &h->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_timer, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        /* Before everything else in an iteration: after a stall the lag is measured before a request is answered. */
        r = sd_event_add_time_relative(event, &h->tick, CLOCK_MONOTONIC, NH_HTTP_TICK, USEC_PER_MSEC, on_tick, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_priority(h->tick, SD_EVENT_PRIORITY_IMPORTANT);
        (void) sd_event_source_set_description(h->io, "http");
        (void) sd_event_source_set_description(h->timer, "http-timeout");
        (void) sd_event_source_set_description(h->tick, "http-loop-lag");
        h->last_tick = now_usec(CLOCK_MONOTONIC);
        update_timer(h);
        *ret = TAKE_PTR(h);
        return 0;
}

struct nh_http *nh_http_free(struct nh_http *h) {
        if (!h)
                return NULL;
        sd_event_source_disable_unref(h->io);
        sd_event_source_disable_unref(h->timer);
        sd_event_source_disable_unref(h->tick);
        if (h->mhd)
                MHD_stop_daemon(h->mhd);
        sd_event_unref(h->event);
        free(h);
        return NULL;
}

unsigned nh_http_port(const struct nh_http *h) {
        return h->port;
}
