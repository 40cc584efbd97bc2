/* SPDX-License-Identifier: MIT */
/* Checked parsers and formatters shared by the core: no logging here, callers log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_INFINITY UINT64_MAX

/* Length of "2026-11-25T23:30:18Z" plus the NUL. */
#define RFC3339_MAX 32

/*
 * Parses a duration as node-problem-detector writes them: "500ms", "10s", "5m", "1h",
 * "1m30s", "250us", or a bare non-negative number of seconds ("1.5").  Returns 0 and the
 * microseconds in *ret, -EINVAL for anything else, -ERANGE on overflow.
 */
int parse_duration(const char *s, uint64_t *ret);

/* Formats microseconds as the shortest of "500ms", "10s", "5m", "1h30m". */
const char *format_duration(char *buf, size_t size, uint64_t usec);

/* Full-string integer parsers: no trailing garbage, errno checked. 0 or -EINVAL/-ERANGE. */
int parse_int64(const char *s, int64_t *ret);
int parse_uint64(const char *s, uint64_t *ret);
int parse_double(const char *s, double *ret);
int parse_bool(const char *s, bool *ret);

/* Realtime microseconds as RFC 3339 UTC with whole seconds: "2026-11-25T23:30:18Z". */
const char *format_rfc3339(char *buf, size_t size, uint64_t realtime_usec);

/* Parses "2026-11-25T23:30:18Z" (and a fractional part, and +hh:mm offsets). 0 or -EINVAL. */
int parse_rfc3339(const char *s, uint64_t *ret_realtime_usec);

uint64_t now_usec(clockid_t clock);

/* strdup() that accepts NULL (returns NULL without setting errno). */
char *strdup_null(const char *s);

bool streq_null(const char *a, const char *b);

/* NULL-terminated string lists. */
size_t strv_length(char *const *l);
int strv_push(char ***l, char *value); /* takes value on success */
char **strv_copy(char *const *l);
bool strv_contains(char *const *l, const char *s);

/* Strips ASCII whitespace at both ends in place; returns s. */
char *strstrip(char *s);

/* Is s a Kubernetes-style CamelCase identifier: [A-Z][A-Za-z0-9]* and at most 128 bytes? */
bool is_camel_case(const char *s);

/*
 * Reads a whole regular file of at most `max` bytes into a NUL-terminated buffer (free() it).
 * Opened non-blocking, so a FIFO or a device at `path` is refused, not waited on.  On failure
 * nothing read is left in memory unwiped (tokens pass through here).  Returns 0, or -EISDIR,
 * -EINVAL (not a regular file), -EFBIG (larger than `max`, also when it grew while read),
 * -ENOMEM, or the errno of open(), fstat() or read().
 */
int read_regular_file(const char *path, size_t max, char **ret_text, size_t *ret_len);
