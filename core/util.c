/* SPDX-License-Identifier: MIT */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

static const struct {
        const char *suffix;
        uint64_t usec;
} duration_units[] = {
        /* Longest suffixes first so "ms" is not read as "m" followed by "s". */
        {"ms", USEC_PER_MSEC},    {"us", 1},           {"ns", 0}, {"h", 3600 * USEC_PER_SEC},
        {"m", 60 * USEC_PER_SEC}, {"s", USEC_PER_SEC},
};

int parse_duration(const char *s, uint64_t *ret) {
        uint64_t total = 0;
        const char *p = s;

        if (!s || !ret || !*s)
                return -EINVAL;

        /* A bare number is seconds. */
        double seconds;
        if (parse_double(s, &seconds) == 0) {
                if (!(seconds >= 0) || seconds > (double) (UINT64_MAX / USEC_PER_SEC))
                        return seconds < 0 ? -EINVAL : -ERANGE;
                *ret = (uint64_t) llround(seconds * (double) USEC_PER_SEC);
                return 0;
        }

        while (*p) {
                char *end;
                double value;
                const char *unit;
                size_t i;

                if (!isdigit((unsigned char) *p) && *p != '.')
                        return -EINVAL;
                errno = 0;
                value = strtod(p, &end);
                if (errno != 0 || end == p || !(value >= 0))
                        return -EINVAL;
                unit = end;
                for (i = 0; i < ELEMENTSOF(duration_units); i++)
                        if (strncmp(unit, duration_units[i].suffix, strlen(duration_units[i].suffix)) == 0)
                                break;
                if (i >= ELEMENTSOF(duration_units))
                        return -EINVAL;

                double add = duration_units[i].usec ? value * (double) duration_units[i].usec : value / 1000.0;
                if (add > (double) (UINT64_MAX - total))
                        return -ERANGE;
                total += (uint64_t) llround(add);
                p = unit + strlen(duration_units[i].suffix);
        }
        *ret = total;
        return 0;
}

const char *format_duration(char *buf, size_t size, uint64_t usec) {
        if (usec == USEC_INFINITY)
                snprintf(buf, size, "infinity");
        else if (usec % USEC_PER_SEC != 0)
                snprintf(buf, size, "%" PRIu64 "ms", usec / USEC_PER_MSEC);
        else {
                uint64_t s = usec / USEC_PER_SEC;
                if (s == 0)
                        snprintf(buf, size, "0s");
                else if (s % 3600 == 0)
                        snprintf(buf, size, "%" PRIu64 "h", s / 3600);
                else if (s % 60 == 0 && s > 60 * 60)
                        snprintf(buf, size, "%" PRIu64 "h%" PRIu64 "m", s / 3600, (s % 3600) / 60);
                else if (s % 60 == 0)
                        snprintf(buf, size, "%" PRIu64 "m", s / 60);
                else
                        snprintf(buf, size, "%" PRIu64 "s", s);
        }
        return buf;
}

int parse_int64(const char *s, int64_t *ret) {
        char *end;
        long long v;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || end == s || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_uint64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !*s || isspace((unsigned char) *s) || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || end == s || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_double(const char *s, double *ret) {
        char *end;
        double v;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        if (!s)
                return -EINVAL;
        if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "1") == 0)
                *ret = true;
        else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "0") == 0)
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

const char *format_rfc3339(char *buf, size_t size, uint64_t realtime_usec) {
        time_t t = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
                if (size > 0)
                        buf[0] = '\0';
        }
        return buf;
}

int parse_rfc3339(const char *s, uint64_t *ret_realtime_usec) {
        struct tm tm = {0};
        const char *p;
        long offset = 0;

        if (!s)
                return -EINVAL;
        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                while (isdigit((unsigned char) *p))
                        p++;
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if ((*p == '+' || *p == '-') && isdigit((unsigned char) p[1]) && isdigit((unsigned char) p[2]) &&
                 p[3] == ':' && isdigit((unsigned char) p[4]) && isdigit((unsigned char) p[5])) {
                offset = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
                if (*p == '-')
                        offset = -offset;
                p += 6;
        } else
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;

        time_t t = timegm(&tm);
        if (t == (time_t) -1 || t - offset < 0)
                return -EINVAL;
        *ret_realtime_usec = (uint64_t) (t - offset) * USEC_PER_SEC;
        return 0;
}

uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                abort(); /* cannot fail for the clocks we use */
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

char *strdup_null(const char *s) {
        return s ? strdup(s) : NULL;
}

bool streq_null(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

size_t strv_length(char *const *l) {
        size_t n = 0;

        if (l)
                while (l[n])
                        n++;
        return n;
}

int strv_push(char ***l, char *value) {
        size_t n = strv_length(*l);
        char **grown;

        grown = realloc(*l, sizeof(char *) * (n + 2));
        if (!grown)
                return -ENOMEM;
        grown[n] = value;
        grown[n + 1] = NULL;
        *l = grown;
        return 0;
}

char **strv_copy(char *const *l) {
        size_t n = strv_length(l);
        char **copy = calloc(n + 1, sizeof(char *));

        if (!copy)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                copy[i] = strdup(l[i]);
                if (!copy[i])
                        return strv_free(copy);
        }
        return copy;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (strcmp(l[i], s) == 0)
                        return true;
        return false;
}

char *strstrip(char *s) {
        char *start = s, *end;

        while (isspace((unsigned char) *start))
                start++;
        end = start + strlen(start);
        while (end > start && isspace((unsigned char) end[-1]))
                end--;
        memmove(s, start, (size_t) (end - start));
        s[end - start] = '\0';
        return s;
}

bool is_camel_case(const char *s) {
        size_t n;

        if (!s || !isupper((unsigned char) s[0]))
                return false;
        for (n = 0; s[n]; n++)
                if (!isalnum((unsigned char) s[n]))
                        return false;
        return n <= 128;
}

static void wipe_free(char *buf, size_t size) {
        if (buf)
                explicit_bzero(buf, size);
        free(buf);
}

int read_regular_file(const char *path, size_t max, char **ret_text, size_t *ret_len) {
        struct stat st;
        size_t len = 0;
        char *buf;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (S_ISDIR(st.st_mode))
                r = -EISDIR;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        else if ((uint64_t) st.st_size > max)
                r = -EFBIG;
        buf = r < 0 ? NULL : malloc(max + 1);
        if (r >= 0 && !buf)
                r = -ENOMEM;
        /* Up to max + 1 bytes whatever st_size says: a file may grow, and some files say 0. */
        while (r >= 0) {
                ssize_t n = read(fd, buf + len, max + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        r = -errno;
                else if (n == 0)
                        break;
                else if ((len += (size_t) n) > max)
                        r = -EFBIG;
        }
        close(fd);
        if (r < 0) {
                wipe_free(buf, len); /* what was read; the rest was never written */
                return r;
        }
        buf[len] = '\0';
        *ret_text = buf;
        *ret_len = len;
        return 0;
}
