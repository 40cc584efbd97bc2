/* SPDX-License-Identifier: MIT */
/*
 * The HTTP endpoint (libmicrohttpd on the daemon's sd-event loop: no thread of its own, so a
 * loop that is stuck does not answer, which a liveness probe counts as a failure):
 *
 *   GET /metrics     the Prometheus text format (metrics.h)
 *   GET /healthz     200 "ok", or 503 and one line per failing check:
 *                    - "loop: ..."  the loop's once-a-second timer ran more than
 *                      NH_HTTP_LAG_LIMIT late within the last NH_HTTP_LAG_WINDOW (or has
 *                      not run for that long);
 *                    - "probe: ..." a condition is Unknown with a reason that says its source
 *                      is gone: ProbeStale, ProbeInitFailed, ProbeCrashed.  ProbeFailed and
 *                      ProbeTimeout are not: the probe runs and says what went wrong.
 *   GET /conditions  a JSON array of NodeConditions, as `--format json` prints them
 *
 * HEAD is answered like GET without the body; other methods get 405, other paths 404.
 * Connections are limited in number, memory and time; request bodies are never read.
 */
#pragma once

#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "metrics.h"
#include "util.h"

#define NH_HTTP_TICK USEC_PER_SEC
#define NH_HTTP_LAG_LIMIT (3 * USEC_PER_SEC)
#define NH_HTTP_LAG_WINDOW (30 * USEC_PER_SEC)

struct nh_http;

/* Fills *ret with the daemon's state at the moment of a request (everything borrowed). */
typedef void (*nh_http_collect_fn)(void *userdata, struct nh_metrics_input *ret, struct nh_sink **ret_metrics);

/*
 * Parses http.listen: "IPV4:PORT" or "[IPV6]:PORT", PORT 1 to 65535, addresses as numbers
 * (no host names: nothing to resolve at start).  Returns 0 and the address, or -EINVAL and
 * a static text saying what is wrong in *ret_why.  The empty string (the endpoint is off) is
 * the caller's business.
 */
int nh_http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, const char **ret_why);

/*
 * Listens on `listen` (checked by nh_http_parse_listen()) and serves on `event`.  Returns 0,
 * or a negative errno (bind(): -EADDRINUSE, -EADDRNOTAVAIL, -EACCES…; -EINVAL for a bad
 * address; -EIO when libmicrohttpd will not start).  Logs nothing: the caller does.
 */
int nh_http_new(sd_event *event, const char *listen, nh_http_collect_fn collect, void *userdata, struct nh_http **ret);
struct nh_http *nh_http_free(struct nh_http *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_http *, nh_http_free)

/* The port it listens on (for the log line). */
unsigned nh_http_port(const struct nh_http *h);
