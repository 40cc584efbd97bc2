/* SPDX-License-Identifier: MIT */
/*
 * Durations as node-problem-detector's files write them: Go's time.ParseDuration ("10s",
 * "1m30s", "250ms", "1.5h", "0").  Shared by the probes that read NPD files (kernel_log,
 * custom); static inline so that each stays a self-contained .so.  Not installed.
 */
#pragma once

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* 0, -EINVAL (not a Go duration, a negative one included) or -ERANGE (over 100 years). */
static inline int go_parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *unit;
                double usec;
        } units[] = {
                {"ns", 1e-3}, {"us", 1},  {"\xc2\xb5s", 1}, {"\xce\xbcs", 1},
                {"ms", 1e3},  {"s", 1e6}, {"m", 60e6},      {"h", 3600e6},
        };
        double total = 0;

        if (!s || !*s)
                return -EINVAL;
        if (strcmp(s, "0") == 0) {
                *ret_usec = 0;
                return 0;
        }
        while (*s) {
                double whole = 0, frac = 0, scale = 1;
                bool digits = false;
                size_t best = 0, best_len = 0;

                for (; isdigit((unsigned char) *s); s++) {
                        whole = whole * 10 + (*s - '0');
                        digits = true;
                }
                if (*s == '.')
                        for (s++; isdigit((unsigned char) *s); s++) {
                                scale /= 10;
                                frac += (*s - '0') * scale;
                                digits = true;
                        }
                if (!digits)
                        return -EINVAL;
                /* The longest unit that fits: "ms" before "m". */
                for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                        size_t len = strlen(units[i].unit);
                        if (strncmp(s, units[i].unit, len) == 0 && len > best_len) {
                                best = i;
                                best_len = len;
                        }
                }
                if (best_len == 0)
                        return -EINVAL;
                total += (whole + frac) * units[best].usec;
                s += best_len;
                if (total > 100.0 * 365 * 86400 * 1e6)
                        return -ERANGE;
        }
        *ret_usec = (uint64_t) (total + 0.5);
        return 0;
}
