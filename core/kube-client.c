/* SPDX-License-Identifier: MIT */
#include "kube-client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define DEFAULT_TIMEOUT (30 * USEC_PER_SEC)
#define CONNECT_TIMEOUT (10 * USEC_PER_SEC)
#define TOKEN_REREAD (60 * USEC_PER_SEC) /* client-go re-reads about once a minute */
#define TOKEN_MAX (64 * 1024)
#define BODY_MAX (16u * 1024u * 1024u) /* a Node is tens of KiB; this is a broken server */
#define RETRY_AFTER_MAX (24 * 3600) /* seconds: beyond this a Retry-After is nonsense */

static void curl_easy_cleanupp(CURL **p) {
        if (*p)
                curl_easy_cleanup(*p);
}

static void curl_multi_cleanupp(CURLM **p) {
        if (*p)
                curl_multi_cleanup(*p);
}

static void curl_url_cleanupp(CURLU **u) {
        if (*u)
                curl_url_cleanup(*u);
}

static void curl_freep(char **p) {
        if (*p)
                curl_free(*p);
}

/* Header lists may hold the token: wiped before they are freed. */
static void slist_free_wiped(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static void free_secret(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

struct request {
        struct request *next;
        char *method, *path, *content_type, *body;
        uint64_t timeout;
        nh_kube_callback callback;
        void *userdata;
        bool retried_after_401;
};

struct blob_copy {
        void *data;
        size_t size;
};

struct nh_kube_client {
        sd_event *event;
        CURLM *multi;
        CURL *easy;
        sd_event_source *timer; /* curl's timeout */
        sd_event_source *kick; /* starts the next request from the loop, never from a caller */

        struct request *head, *tail; /* queued, not started */
        size_t n_queued;
        struct request *current; /* on the easy handle */
        struct curl_slist *headers; /* of the current request */

        /* The current response. */
        char errbuf[CURL_ERROR_SIZE];
        char *body;
        size_t body_size, body_alloc;
        bool body_too_big;
        char *warning;
        uint64_t retry_after;

        /* Where and how. */
        char *server; /* for messages */
        char *url_base; /* requests go to url_base + path */
        struct curl_slist *connect_to; /* tls-server-name: the URL names it, the socket goes to the server */
        bool insecure;
        char *ca_file, *cert_file, *key_file;
        struct blob_copy ca, cert, key;
        char *token; /* static, or the last good read of token_file */
        char *token_file;
        uint64_t token_read_at; /* monotonic µs of the last read attempt */
        int token_error; /* of the last read: logged when it changes */

        struct nh_kube_request_count *counts; /* by method and status, for /metrics */
        size_t n_counts;
};

static void blob_copy_done(struct blob_copy *b) {
        if (b->data) {
                explicit_bzero(b->data, b->size);
                free(b->data);
        }
        *b = (struct blob_copy){0};
}

static int blob_copy(struct blob_copy *dst, const struct nh_blob *src) {
        if (!src->data)
                return 0;
        dst->data = malloc(src->size);
        if (!dst->data)
                return -ENOMEM;
        memcpy(dst->data, src->data, src->size);
        dst->size = src->size;
        return 0;
}

static void request_free(struct request *q) {
        if (!q)
                return;
        free(q->method);
        free(q->path);
        free(q->content_type);
        free(q->body);
        free(q);
}

/* ---- the token ---- */

/* Reads a token file: whole, trimmed, non-empty, no control characters. */
static int read_token(const char *path, char **ret) {
        char *buf;
        size_t len = 0;
        int r;

        /* Opened by path on every read: the kubelet swaps the file with an atomic symlink rename. */
        r = read_regular_file(path, TOKEN_MAX, &buf, &len);
        if (r == -EINVAL || r == -EISDIR)
                return -EBADFD;
        if (r < 0)
                return r;
        if (strlen(buf) != len) {
                explicit_bzero(buf, len);
                free(buf);
                return -EBADMSG;
        }
        strstrip(buf);
        if (!*buf) {
                free(buf);
                return -ENODATA;
        }
        for (const char *p = buf; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        free_secret(buf);
                        return -EBADMSG;
                }
        *ret = buf;
        return 0;
}

static const char *token_error_text(int r) {
        switch (r) {
        case -ENODATA:
                return "the file is empty";
        case -EBADMSG:
                return "the token contains control characters";
        case -EFBIG:
                return "the file is larger than 64 KiB";
        case -EBADFD:
                return "not a regular file";
        default:
                return strerror(-r);
        }
}

static int reload_token(struct nh_kube_client *c) {
        char *token = NULL;
        int r;

        if (!c->token_file)
                return 0;
        c->token_read_at = now_usec(CLOCK_MONOTONIC);
        r = read_token(c->token_file, &token);
        if (r < 0) {
                if (r != c->token_error)
                        log_warning("Cannot read the token file %s: %s; %s", c->token_file, token_error_text(r),
                                    c->token ? "keeping the previous token" : "requests go without a token");
                c->token_error = r;
                return r;
        }
        if (c->token_error)
                log_info("Token file %s is readable again", c->token_file);
        c->token_error = 0;
        if (c->token && strcmp(c->token, token) == 0) {
                free_secret(token);
                return 0;
        }
        if (c->token)
                log_debug("Token file %s holds a new token", c->token_file);
        free_secret(c->token);
        c->token = token;
        return 0;
}

int nh_kube_client_reload_token(struct nh_kube_client *c) {
        return reload_token(c);
}

/* ---- curl's callbacks ---- */

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        struct nh_kube_client *c = userdata;
        size_t len = size * n;

        if (c->body_size + len + 1 > BODY_MAX) {
                c->body_too_big = true;
                return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
        }
        if (c->body_size + len + 1 > c->body_alloc) {
                size_t want = c->body_alloc ? c->body_alloc : 4096;
                while (want < c->body_size + len + 1)
                        want *= 2;
                char *grown = realloc(c->body, want);
                if (!grown)
                        return 0;
                c->body = grown;
                c->body_alloc = want;
        }
        memcpy(c->body + c->body_size, data, len);
        c->body_size += len;
        c->body[c->body_size] = '\0';
        return len;
}

/* "Retry-After: 5" or an HTTP date; seconds, capped, or 0 when unreadable. */
static uint64_t parse_retry_after(const char *v) {
        uint64_t s;
        struct tm tm = {0};
        const char *end;

        if (parse_uint64(v, &s) == 0)
                return s > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : s;
        end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (end && *end == '\0') {
                time_t when = timegm(&tm), now = time(NULL);
                if (when > now)
                        return (uint64_t) (when - now) > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (uint64_t) (when - now);
                return 0;
        }
        return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata) {
        struct nh_kube_client *c = userdata;
        size_t len = size * n;
        _cleanup_free_ char *line = strndup(data, len);
        char *colon, *value;

        if (!line)
                return len; /* a header we cannot keep is not worth failing the request */
        if (strncmp(line, "HTTP/", 5) == 0) {
                /* A new response (after a 100 Continue): forget the headers of the last one. */
                c->retry_after = 0;
                free(c->warning);
                c->warning = NULL;
                return len;
        }
        colon = strchr(line, ':');
        if (!colon)
                return len;
        *colon = '\0';
        value = strstrip(colon + 1);
        if (strcasecmp(line, "Retry-After") == 0)
                c->retry_after = parse_retry_after(value) * USEC_PER_SEC;
        else if (strcasecmp(line, "Warning") == 0 && *value) {
                char *joined = NULL;
                if (asprintf(&joined, "%s%s%s", c->warning ? c->warning : "", c->warning ? "; " : "", value) >= 0) {
                        free(c->warning);
                        c->warning = joined;
                }
        }
        return len;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct nh_kube_client *c = userp;
        sd_event_source *source = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (source) {
                        (void) curl_multi_assign(c->multi, fd, NULL);
                        sd_event_source_disable_unref(source);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (!source) {
                r = sd_event_add_io(c->event, &source, fd, events, on_io, c);
                if (r < 0) {
                        log_warning_errno(r, "Cannot watch the API server connection: %m");
                        return -1;
                }
                (void) sd_event_source_set_description(source, "kube-client-io");
                if (curl_multi_assign(c->multi, fd, source) != CURLM_OK) {
                        sd_event_source_disable_unref(source);
                        return -1;
                }
                return 0;
        }
        r = sd_event_source_set_io_events(source, events);
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ON);
        return r < 0 ? -1 : 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        struct nh_kube_client *c = userp;
        uint64_t now;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                now = now_usec(CLOCK_MONOTONIC);
        /* 0 means "now": curl is called back from the loop, never from inside this callback. */
        r = sd_event_source_set_time(c->timer, now + (uint64_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

/* ---- requests ---- */

static int start_current(struct nh_kube_client *c);
static void check_done(struct nh_kube_client *c);

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct nh_kube_client *c = userdata;
        int flags = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
        (void) curl_multi_socket_action(c->multi, fd, flags, &running);
        check_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_kube_client *c = userdata;
        int running;

        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

static void kick(struct nh_kube_client *c) {
        (void) sd_event_source_set_enabled(c->kick, SD_EVENT_ONESHOT);
}

static int error_from_curl(CURLcode code, bool *ret_tls) {
        *ret_tls = false;
        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -ECONNRESET;
        case CURLE_WRITE_ERROR:
                return -EFBIG;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
                *ret_tls = true;
                return -EPROTO;
        default:
                return -EIO;
        }
}

static void reset_response(struct nh_kube_client *c) {
        c->errbuf[0] = '\0';
        c->body_size = 0;
        if (c->body)
                c->body[0] = '\0';
        c->body_too_big = false;
        free(c->warning);
        c->warning = NULL;
        c->retry_after = 0;
}

#define SET(opt, value)                                                \
        do {                                                           \
                if (curl_easy_setopt(c->easy, opt, value) != CURLE_OK) \
                        return -EIO;                                   \
        } while (0)

static int set_blob(struct nh_kube_client *c, CURLoption opt, const struct blob_copy *b) {
        struct curl_blob blob = {.data = b->data, .len = b->size, .flags = CURL_BLOB_COPY};

        return curl_easy_setopt(c->easy, opt, &blob) == CURLE_OK ? 0 : -EIO;
}

/* Appends "name: value" ("name:" when value is NULL: curl then sends no such header). */
static int add_header(struct curl_slist **l, const char *name, const char *value) {
        _cleanup_free_ char *h = NULL;
        struct curl_slist *grown;

        if (asprintf(&h, "%s:%s%s", name, value ? " " : "", value ? value : "") < 0)
                return -ENOMEM;
        grown = curl_slist_append(*l, h);
        explicit_bzero(h, strlen(h));
        if (!grown)
                return -ENOMEM;
        *l = grown;
        return 0;
}

/* Puts the current request on the easy handle and hands it to the multi. */
static int start_current(struct nh_kube_client *c) {
        struct request *q = c->current;
        _cleanup_free_ char *url = NULL;
        struct curl_slist *headers = NULL;
        uint64_t timeout = q->timeout ? q->timeout : DEFAULT_TIMEOUT;
        int r;

        if (c->token_file && now_usec(CLOCK_MONOTONIC) >= c->token_read_at + TOKEN_REREAD)
                (void) reload_token(c);

        reset_response(c);
        slist_free_wiped(c->headers);
        c->headers = NULL;
        if (asprintf(&url, "%s%s", c->url_base, q->path) < 0)
                return -ENOMEM;

        r = add_header(&headers, "Accept", "application/json");
        if (r >= 0)
                r = add_header(&headers, "Expect", NULL); /* no 100-continue round trip */
        if (r >= 0 && q->content_type)
                r = add_header(&headers, "Content-Type", q->content_type);
        if (r >= 0 && c->token) {
                _cleanup_free_ char *bearer = NULL;
                if (asprintf(&bearer, "Bearer %s", c->token) < 0)
                        r = -ENOMEM;
                else {
                        r = add_header(&headers, "Authorization", bearer);
                        explicit_bzero(bearer, strlen(bearer));
                }
        }
        c->headers = headers;
        if (r < 0)
                return r;

        /* A clean handle for each request; the connection stays in the multi's cache. */
        curl_easy_reset(c->easy);
        SET(CURLOPT_URL, url);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_ERRORBUFFER, c->errbuf);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, c);
        SET(CURLOPT_HEADERFUNCTION, on_header);
        SET(CURLOPT_HEADERDATA, c);
        SET(CURLOPT_HTTPHEADER, c->headers);
        SET(CURLOPT_USERAGENT, "nodehealthd/" PACKAGE_VERSION);
        SET(CURLOPT_ACCEPT_ENCODING, "");
        SET(CURLOPT_TIMEOUT_MS, (long) (timeout / USEC_PER_MSEC));
        SET(CURLOPT_CONNECTTIMEOUT_MS,
            (long) ((timeout < CONNECT_TIMEOUT ? timeout : CONNECT_TIMEOUT) / USEC_PER_MSEC));
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_TCP_KEEPIDLE, 30L);
        SET(CURLOPT_TCP_KEEPINTVL, 15L);
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        if (c->connect_to)
                SET(CURLOPT_CONNECT_TO, c->connect_to);

        SET(CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
        SET(CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
        if (c->ca.data || c->ca_file) {
                /* Only the cluster's CA: not also the system's bundle and directory. */
                SET(CURLOPT_CAPATH, NULL);
                if (c->ca.data)
                        r = set_blob(c, CURLOPT_CAINFO_BLOB, &c->ca);
                else
                        r = curl_easy_setopt(c->easy, CURLOPT_CAINFO, c->ca_file) == CURLE_OK ? 0 : -EIO;
                if (r < 0)
                        return r;
        }
        if (c->cert.data || c->cert_file) {
                SET(CURLOPT_SSLCERTTYPE, "PEM");
                SET(CURLOPT_SSLKEYTYPE, "PEM");
                r = c->cert.data ? set_blob(c, CURLOPT_SSLCERT_BLOB, &c->cert)
                                 : (curl_easy_setopt(c->easy, CURLOPT_SSLCERT, c->cert_file) == CURLE_OK ? 0 : -EIO);
                if (r >= 0)
                        r = c->key.data
                                    ? set_blob(c, CURLOPT_SSLKEY_BLOB, &c->key)
                                    : (curl_easy_setopt(c->easy, CURLOPT_SSLKEY, c->key_file) == CURLE_OK ? 0 : -EIO);
                if (r < 0)
                        return r;
        }

        if (strcmp(q->method, "GET") == 0)
                SET(CURLOPT_HTTPGET, 1L);
        else {
                if (strcmp(q->method, "POST") == 0)
                        SET(CURLOPT_POST, 1L);
                else
                        SET(CURLOPT_CUSTOMREQUEST, q->method);
                SET(CURLOPT_POSTFIELDS, q->body ? q->body : "");
                SET(CURLOPT_POSTFIELDSIZE, (long) (q->body ? strlen(q->body) : 0));
        }

        if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
                return -EIO;
        return 0;
}

#undef SET

static void count_request(struct nh_kube_client *c, const char *method, long status) {
        static const char *const methods[] = {"GET", "POST", "PATCH", "PUT", "DELETE"};
        const char *m = "OTHER";
        struct nh_kube_request_count *grown;

        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(method, methods[i]) == 0)
                        m = methods[i];
        for (size_t i = 0; i < c->n_counts; i++)
                if (c->counts[i].method == m && c->counts[i].status == status) {
                        c->counts[i].count++;
                        return;
                }
        grown = realloc(c->counts, (c->n_counts + 1) * sizeof(*grown));
        if (!grown)
                return;
        c->counts = grown;
        c->counts[c->n_counts++] = (struct nh_kube_request_count){.method = m, .status = status, .count = 1};
}

size_t nh_kube_client_request_counts(const struct nh_kube_client *c, const struct nh_kube_request_count **ret) {
        *ret = c->counts;
        return c->n_counts;
}

/* Ends the current request: its callback, then the next one (from the loop). */
static void finish(struct nh_kube_client *c, CURLcode code) {
        struct request *q = TAKE_PTR(c->current);
        struct nh_kube_response resp = {0};
        long status = 0;

        if (code == CURLE_OK)
                (void) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        resp.status = code == CURLE_OK ? status : 0;
        resp.error = code == CURLE_OK ? 0 : error_from_curl(code, &resp.tls_error);
        if (c->body_too_big)
                resp.error = -EFBIG;
        resp.error_text = code == CURLE_OK ? "" : c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);
        resp.body = c->body ? c->body : "";
        resp.body_size = c->body_size;
        resp.retry_after = c->retry_after;
        resp.warning = c->warning;
        resp.retried_after_401 = q->retried_after_401;
        count_request(c, q->method, resp.status);

        /* A refused token may have been rotated under us: read the file again and try once more. */
        if (resp.status == 401 && c->token_file && !q->retried_after_401) {
                (void) reload_token(c);
                q->retried_after_401 = true;
                c->current = q;
                if (start_current(c) >= 0)
                        return;
                c->current = NULL;
                /* start_current() has reset the response buffers: the 401 goes up without them. */
                resp.body = "";
                resp.body_size = 0;
                resp.warning = NULL;
        }
        q->callback(q->userdata, &resp);
        request_free(q);
        kick(c);
}

static void check_done(struct nh_kube_client *c) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(c->multi, &left))) {
                if (m->msg != CURLMSG_DONE || m->easy_handle != c->easy)
                        continue;
                CURLcode code = m->data.result;
                (void) curl_multi_remove_handle(c->multi, c->easy);
                if (c->current)
                        finish(c, code);
        }
}

static int on_kick(sd_event_source *s, void *userdata) {
        struct nh_kube_client *c = userdata;

        while (!c->current && c->head) {
                struct request *q = c->head;
                int r;

                c->head = q->next;
                if (!c->head)
                        c->tail = NULL;
                c->n_queued--;
                q->next = NULL;
                c->current = q;
                r = start_current(c);
                if (r >= 0)
                        break;
                /* Could not even start: the caller hears of it as a failed request. */
                c->current = NULL;
                struct nh_kube_response resp = {
                        .error = r,
                        .error_text = r == -ENOMEM ? "out of memory" : "cannot set up the request",
                        .body = "",
                };
                q->callback(q->userdata, &resp);
                request_free(q);
        }
        return 0;
}

int nh_kube_client_request(struct nh_kube_client *c, const char *method, const char *path, const char *content_type,
                           const char *body, uint64_t timeout, nh_kube_callback callback, void *userdata) {
        struct request *q;

        if (!c || !method || !path || !callback)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (struct request){.timeout = timeout, .callback = callback, .userdata = userdata};
        q->method = strdup(method);
        q->path = strdup(path);
        q->content_type = strdup_null(content_type);
        q->body = strdup_null(body);
        if (!q->method || !q->path || (content_type && !q->content_type) || (body && !q->body)) {
                request_free(q);
                return -ENOMEM;
        }
        if (c->tail)
                c->tail->next = q;
        else
                c->head = q;
        c->tail = q;
        c->n_queued++;
        kick(c);
        return 0;
}

size_t nh_kube_client_pending(const struct nh_kube_client *c) {
        return c ? c->n_queued + (c->current ? 1 : 0) : 0;
}

const char *nh_kube_client_server(const struct nh_kube_client *c) {
        return c->server;
}

/* With tls-server-name the URL names that host and CONNECT_TO sends the socket to the real one. */
static int setup_server_name(struct nh_kube_client *c, const struct nh_kube_credentials *creds) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *host = NULL, *port = NULL, *url = NULL;
        _cleanup_free_ char *entry = NULL;
        struct curl_slist *l;

        if (!creds->tls_server_name)
                return (c->url_base = strdup(creds->server)) ? 0 : -ENOMEM;
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, creds->server, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_HOST, creds->tls_server_name, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_PORT, port, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
                return -EINVAL;
        size_t len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
                url[--len] = '\0';
        c->url_base = strdup(url);
        if (!c->url_base)
                return -ENOMEM;
        if (asprintf(&entry, "%s:%s:%s:%s", creds->tls_server_name, port, host, port) < 0)
                return -ENOMEM;
        l = curl_slist_append(NULL, entry);
        if (!l)
                return -ENOMEM;
        c->connect_to = l;
        return 0;
}

static int copy_file(char **dst, const char *src) {
        *dst = strdup_null(src);
        return src && !*dst ? -ENOMEM : 0;
}

int nh_kube_client_new(sd_event *event, const struct nh_kube_credentials *creds, struct nh_kube_client **ret) {
        _cleanup_(nh_kube_client_freep) struct nh_kube_client *c = NULL;
        int r;

        if (!event || !creds || !creds->server)
                return -EINVAL;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = calloc(1, sizeof(*c));
        if (!c) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        c->event = sd_event_ref(event);
        c->insecure = creds->insecure_skip_tls_verify;
        c->server = strdup(creds->server);
        if (!c->server)
                return -ENOMEM;
        r = setup_server_name(c, creds);
        if (r < 0)
                return r;
        if ((r = copy_file(&c->ca_file, creds->ca_file)) < 0 ||
            (r = copy_file(&c->cert_file, creds->client_cert_file)) < 0 ||
            (r = copy_file(&c->key_file, creds->client_key_file)) < 0 ||
            (r = copy_file(&c->token_file, creds->token_file)) < 0 || (r = copy_file(&c->token, creds->token)) < 0 ||
            (r = blob_copy(&c->ca, &creds->ca_data)) < 0 || (r = blob_copy(&c->cert, &creds->client_cert_data)) < 0 ||
            (r = blob_copy(&c->key, &creds->client_key_data)) < 0)
                return r;

        _cleanup_(curl_multi_cleanupp) CURLM *multi = curl_multi_init();
        _cleanup_(curl_easy_cleanupp) CURL *easy = curl_easy_init();
        if (!multi || !easy)
                return -EIO;
        if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c) != CURLM_OK)
                return -EIO;

        r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->timer, "kube-client-timer");
        r = sd_event_add_defer(event, &c->kick, on_kick, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(c->kick, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->kick, "kube-client-kick");
        c->multi = TAKE_PTR(multi);
        c->easy = TAKE_PTR(easy);

        if (c->token_file)
                (void) reload_token(c); /* logged when it fails; requests go on without */
        *ret = TAKE_PTR(c);
        return 0;
}

struct nh_kube_client *nh_kube_client_free(struct nh_kube_client *c) {
        if (!c)
                return NULL;
        if (c->easy && c->multi && c->current)
                (void) curl_multi_remove_handle(c->multi, c->easy);
        if (c->easy)
                curl_easy_cleanup(c->easy);
        /* Closing the cached connections tells on_socket to drop their io sources. */
        if (c->multi)
                curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->kick);
        request_free(c->current);
        for (struct request *q = c->head, *next; q; q = next) {
                next = q->next;
                request_free(q);
        }
        slist_free_wiped(c->headers);
        curl_slist_free_all(c->connect_to);
        free(c->body);
        free(c->warning);
        free(c->server);
        free(c->url_base);
        free(c->ca_file);
        free(c->cert_file);
        free(c->key_file);
        blob_copy_done(&c->ca);
        blob_copy_done(&c->cert);
        blob_copy_done(&c->key);
        free_secret(c->token);
        free(c->token_file);
        free(c->counts);
        sd_event_unref(c->event);
        free(c);
        curl_global_cleanup();
        return NULL;
}
