/* SPDX-License-Identifier: MIT */
/*
 * An asynchronous HTTPS client for the Kubernetes API server, driven by the daemon's
 * sd-event loop through libcurl's multi interface: curl's sockets are sd-event io sources,
 * its timeout an sd-event timer.  Nothing here blocks the loop on the network.
 *
 * Requests run one at a time, in the order they were made, on one easy handle whose
 * connection stays open between requests (curl's connection cache, TCP keepalive).  TLS is
 * always verified against the configured CA (the system's when none is configured), unless
 * the credentials say insecure-skip-tls-verify.  A bearer token from a file is re-read
 * about once a minute and right after a 401, when the request is retried once with it; on
 * a read error the old token is kept.  Tokens never reach a log line.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kubeconfig.h"
#include "macro.h"

struct nh_kube_client;
struct nh_kube_request;

struct nh_kube_response {
        long status; /* the HTTP status, or 0 when no reply came (see error) */
        int error; /* 0, or a negative errno for a transport failure: -ETIMEDOUT, -ECONNREFUSED, … */
        bool tls_error; /* the failure was TLS: the server's certificate, or ours */
        const char *error_text; /* what curl said about the failure; "" when none */
        const char *body; /* NUL-terminated; "" when none */
        size_t body_size;
        uint64_t retry_after; /* µs the server asked us to wait (Retry-After), 0 when not said */
        const char *warning; /* the Warning: headers, joined with "; ", or NULL */
        bool retried_after_401; /* the token was re-read after a 401 and the request sent again */
};

/* Called once per request, on the loop; the response lives until the callback returns. */
typedef void (*nh_kube_callback)(void *userdata, const struct nh_kube_response *response);

/*
 * A client for the server in `creds` (copied: the caller may free them).  Returns 0, or
 * -ENOMEM, or -EIO when libcurl cannot be set up.  The token file, if any, is read now;
 * a failure to read it is logged (with why, never the token) and requests go without a
 * token until a later read succeeds.
 */
int nh_kube_client_new(sd_event *event, const struct nh_kube_credentials *creds, struct nh_kube_client **ret);

/* Cancels what is pending (no callback runs) and frees; accepts NULL; returns NULL. */
struct nh_kube_client *nh_kube_client_free(struct nh_kube_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_kube_client *, nh_kube_client_free)

/*
 * Queues `method` (GET, POST, PATCH) of `path` ("/api/v1/...", appended to the server's URL)
 * with `body` (copied; NULL for none) of `content_type`.  `timeout` bounds the whole
 * exchange (µs; 0: 30 s).  Returns 0 and calls `callback` later, exactly once, on the loop
 * (never from inside this call); -ENOMEM otherwise (no callback).
 */
int nh_kube_client_request(struct nh_kube_client *c, const char *method, const char *path, const char *content_type,
                           const char *body, uint64_t timeout, nh_kube_callback callback, void *userdata);

/* The server's URL, for messages. */
const char *nh_kube_client_server(const struct nh_kube_client *c);

/* Requests queued or running. */
size_t nh_kube_client_pending(const struct nh_kube_client *c);

/* Exchanges that ended (a 401 retried with a fresh token counts twice), for /metrics. */
struct nh_kube_request_count {
        const char *method; /* "GET", "POST", "PATCH", …; static */
        long status; /* the HTTP status; 0: no reply (a network or TLS failure) */
        uint64_t count;
};
/* The counts so far, in the order first seen; the array lives until the next request ends. */
size_t nh_kube_client_request_counts(const struct nh_kube_client *c, const struct nh_kube_request_count **ret);

/*
 * Re-reads the token file now (the client does so by itself; tests and a SIGHUP may ask).
 * 0 (also when unchanged, or when there is no token file), or the read error (old token kept).
 */
int nh_kube_client_reload_token(struct nh_kube_client *c);
