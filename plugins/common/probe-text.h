/* SPDX-License-Identifier: MIT */
/*
 * How the built-in probes write figures in their messages, in one place so that "1m30s",
 * "7.8 GiB" and "4.96%" read the same from every probe.  Static inline: each probe stays a
 * self-contained .so that needs only <nodehealth/plugin.h> from the daemon.  Not installed.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>

#define PROBE_TEXT_USEC_PER_SEC UINT64_C(1000000)

/* "250ms", "45s", "2m30s", "1h5m": the largest units, seconds rounded. */
static inline const char *probe_format_span(char *buf, size_t size, uint64_t usec) {
        uint64_t s, h, m;
        int n = 0;

        if (usec < PROBE_TEXT_USEC_PER_SEC) {
                snprintf(buf, size, "%llums", (unsigned long long) (usec / 1000));
                return buf;
        }
        s = (usec + PROBE_TEXT_USEC_PER_SEC / 2) / PROBE_TEXT_USEC_PER_SEC;
        h = s / 3600;
        m = s % 3600 / 60;
        s %= 60;
        buf[0] = '\0';
        if (h > 0)
                n += snprintf(buf + n, size - (size_t) n, "%lluh", (unsigned long long) h);
        if (m > 0 && (size_t) n < size)
                n += snprintf(buf + n, size - (size_t) n, "%llum", (unsigned long long) m);
        if (s > 0 && (size_t) n < size)
                snprintf(buf + n, size - (size_t) n, "%llus", (unsigned long long) s);
        return buf;
}

/*
 * A configured duration as its user could have written it, exact: "1500ms" stays 1500ms (where
 * probe_format_span(), for measured spans, would round it to "2s"); "1m30s", "1h".
 */
static inline const char *probe_format_setting(char *buf, size_t size, uint64_t usec) {
        if (usec % 1000 != 0)
                snprintf(buf, size, "%lluus", (unsigned long long) usec);
        else if (usec % PROBE_TEXT_USEC_PER_SEC != 0 || usec == 0)
                snprintf(buf, size, "%llums", (unsigned long long) (usec / 1000));
        else
                probe_format_span(buf, size, usec);
        return buf;
}

/* "512 B", "120 MiB", "7.8 GiB": three significant figures are what a human compares. */
static inline const char *probe_format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = (double) bytes;
        size_t u = 0;

        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, v < 100 && u > 0 ? "%.1f %s" : "%.0f %s", v, units[u]);
        return buf;
}

static inline double probe_round_to(double v, unsigned decimals) {
        double scale = 1;

        while (decimals-- > 0)
                scale *= 10;
        return (double) (uint64_t) (v * scale + 0.5) / scale;
}

/*
 * A percentage with one decimal, or more when one would contradict the verdict against
 * `limit` ("5.0%, below 5%" for 4.96%).  v >= 0; far above 100 no rounding can contradict a
 * limit of at most 100, and rounding must not overflow.
 */
static inline const char *probe_format_percent(char *buf, size_t size, double v, double limit) {
        unsigned decimals = 1;

        while (v < 1000 && decimals < 3 && (probe_round_to(v, decimals) >= limit) != (v >= limit))
                decimals++;
        snprintf(buf, size, "%.*f%%", (int) decimals, v);
        return buf;
}
