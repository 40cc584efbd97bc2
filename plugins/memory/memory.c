/* SPDX-License-Identifier: MIT */
/*
 * memory — is the node stalling on memory, and is the kernel killing processes for it?
 *
 * Reads /proc/meminfo, /proc/pressure/memory and /proc/vmstat through the proc root
 * (--proc-path), so a DaemonSet reads the host's files and tests read fixture trees.
 * MemoryPressure is the kubelet's and is never reported here.
 *
 * MemoryThrashing (healthy reason MemoryNotThrashing)
 *     Two checks feed it, each with its own hysteresis; the condition is True when either is.
 *     problem "psi", from /proc/pressure/memory (kernel 4.20+ with PSI enabled):
 *         True  MemoryStall       full avg10 >= psi_full_threshold, or
 *                                 some avg10 >= psi_some_threshold
 *         False MemoryNotThrashing
 *         Unknown PSIUnreadable   the file is garbage, truncated, too large or unreadable,
 *                                 or it vanished after it had been read
 *         When the kernel has no PSI (the file does not exist, or reading it says
 *         EOPNOTSUPP because of psi=0) this check is not reported at all, a notice is
 *         logged once, and MemAvailable alone decides.
 *     problem "available", from /proc/meminfo:
 *         True  LowMemoryAvailable  MemAvailable / MemTotal below min_available_percent
 *         False MemoryNotThrashing
 *         Unknown MeminfoUnreadable the file is missing, garbage, truncated or too large
 *
 * FrequentOOMKill (healthy reason NoFrequentOOMKill)
 *     From the oom_kill counter of /proc/vmstat (kernel 4.13+), which counts every OOM kill,
 *     the global OOM killer's and a cgroup limit's alike.  The probe keeps a small history
 *     of (time, counter) samples and counts the kills over the observed part of oom_window.
 *         True  FrequentOOMKill      more than oom_kill_threshold kills within oom_window
 *         False NoFrequentOOMKill
 *         Unknown InsufficientHistory  the first observation, or the counter went backwards
 *                                      (reboot, counter reset): a count needs two samples.
 *                                      A one-shot run (--once) therefore always says this.
 *         Unknown OOMCounterUnavailable vmstat has no oom_kill line (kernel before 4.13)
 *         Unknown VmstatUnreadable     the file is missing, garbage, truncated or too large
 *
 * Messages carry the figures, e.g. "MemAvailable 120 MiB of 7.8 GiB (1.5%), below 5%",
 * "memory PSI full avg10 23.40% (limit 10%), some avg10 40.10% (limit 40%)",
 * "5 OOM kills in the last 2m30s (more than 3 in 10m)".
 */
#include <ctype.h>
#include <errno.h>
#include <nodehealth/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../common/probe-text.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define READ_BUFFER_SIZE 16384 /* meminfo is ~1.5 KiB, vmstat ~5 KiB on 6.x kernels: room to grow */
#define MESSAGE_SIZE 512
#define OOM_SAMPLES 64 /* bound on the history, whatever the window and the interval */
#define OOM_SAMPLE_SPACING_DIVISOR 60 /* samples kept at least window/60 apart: <= 62 in a window */

struct memory_config {
        double psi_full_threshold;
        double psi_some_threshold;
        double min_available_percent;
        int64_t oom_kill_threshold;
        uint64_t oom_window; /* µs */
};

static const struct nh_cfg_entry memory_config_table[] = {
        /* full avg10 >= 10% means all non-idle tasks were stalled on memory at once (reclaim,
         * refaults, swap-in) for 1 s of the last 10 s: the node did no work in that time.  A
         * warning, well below systemd-oomd's default kill limit of 60%. */
        {.type = NH_CFG_DOUBLE,
         .key = "psi_full_threshold",
         .def = "10",
         .offset = offsetof(struct memory_config, psi_full_threshold),
         .help = "memory PSI \"full avg10\" percentage at or above which MemoryThrashing is True",
         .min = 0,
         .max = 100},
        /* some avg10 >= 40% means some task waited on memory for 4 of the last 10 s: sustained
         * reclaim that slows workloads even while others still run. */
        {.type = NH_CFG_DOUBLE,
         .key = "psi_some_threshold",
         .def = "40",
         .offset = offsetof(struct memory_config, psi_some_threshold),
         .help = "memory PSI \"some avg10\" percentage at or above which MemoryThrashing is True",
         .min = 0,
         .max = 100},
        /* Below 5% MemAvailable the kernel runs near its watermarks, reclaims directly in the
         * allocating tasks and is close to the OOM killer; the kubelet's default hard eviction
         * (memory.available < 100Mi) comes later than that on any node of a few GiB. */
        {.type = NH_CFG_DOUBLE,
         .key = "min_available_percent",
         .def = "5",
         .offset = offsetof(struct memory_config, min_available_percent),
         .help = "MemAvailable as a percentage of MemTotal below which MemoryThrashing is True",
         .min = 0,
         .max = 100},
        /* One OOM kill now and then is a container meeting its own limit: routine.  A pod
         * crash-looping on its limit is killed at 0, 10, 30, 70, 150 and 310 s (the kubelet's
         * restart back-off), 4 to 6 kills in its first 10 minutes, yet only ~2 per 10 minutes
         * once the back-off reaches its 5-minute cap; a node-wide OOM storm kills many at once.
         * "More than 3 in 10m" catches both and lets the steady trickle pass. */
        {.type = NH_CFG_INT,
         .key = "oom_kill_threshold",
         .def = "3",
         .offset = offsetof(struct memory_config, oom_kill_threshold),
         .help = "FrequentOOMKill is True after more than this many OOM kills within oom_window",
         .min = 0,
         .max = 100000},
        /* Long enough to see a crash loop's back-off, short enough to clear soon after it stops;
         * node-problem-detector's Frequent*Restart checks use windows of the same order (20m). */
        {.type = NH_CFG_DURATION,
         .key = "oom_window",
         .def = "10m",
         .offset = offsetof(struct memory_config, oom_window),
         .help = "the window over which OOM kills are counted",
         .min = 1,
         .max = 86400},
        {0},
};

static const struct nh_condition_decl memory_conditions[] = {
        {.type = "MemoryThrashing",
         .healthy_reason = "MemoryNotThrashing",
         .help = "tasks stall on memory (PSI) or MemAvailable is below min_available_percent of MemTotal"},
        {.type = "FrequentOOMKill",
         .healthy_reason = "NoFrequentOOMKill",
         .help = "more than oom_kill_threshold OOM kills within oom_window"},
        {0},
};

struct oom_sample {
        uint64_t time; /* nh_now(), monotonic µs */
        uint64_t count; /* vmstat oom_kill */
};

struct memory {
        const struct memory_config *config;
        bool psi_reported; /* the "psi" problem exists in the condition table */
        bool psi_absent_logged;
        struct oom_sample samples[OOM_SAMPLES]; /* oldest first */
        size_t n_samples;
        char buf[READ_BUFFER_SIZE];
};

/* ---- formatting ---- */

/* Up to size-1 characters of the line at s, non-printable ones as '?': for error messages. */
static const char *excerpt(char *buf, size_t size, const char *s) {
        size_t n = 0;

        for (; s[n] && s[n] != '\n' && n + 1 < size; n++)
                buf[n] = isprint((unsigned char) s[n]) ? s[n] : '?';
        buf[n] = '\0';
        return buf;
}

/* ---- parsing ---- */

/* The text after `key` on the line that starts with it, or NULL. */
static const char *find_line(const char *text, const char *key) {
        size_t len = strlen(key);

        for (const char *p = text; *p;) {
                const char *eol = strchr(p, '\n');

                if (strncmp(p, key, len) == 0)
                        return p + len;
                if (!eol)
                        break;
                p = eol + 1;
        }
        return NULL;
}

static bool ends_mid_line(const char *text, size_t len) {
        return len > 0 && text[len - 1] != '\n';
}

/* A decimal counter after optional spaces, followed exactly by `suffix`.  0, -EINVAL, -ERANGE. */
static int parse_counter(const char *s, const char *suffix, uint64_t *ret) {
        unsigned long long v;
        char *end;

        while (*s == ' ')
                s++;
        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || strncmp(end, suffix, strlen(suffix)) != 0)
                return -EINVAL;
        *ret = (uint64_t) v;
        return 0;
}

/*
 * A PSI average as the kernel prints it ("23.40"), followed by a space.  Parsed by hand:
 * strtod() would follow the locale's decimal point.  0, -EINVAL, -ERANGE (above 100).
 */
static int parse_psi_avg(const char *s, double *ret) {
        unsigned long long whole;
        uint64_t frac = 0, scale = 1;
        char *end;
        double v;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        whole = strtoull(s, &end, 10);
        if (errno != 0 || whole > 100)
                return -ERANGE;
        if (*end == '.') {
                end++;
                if (!isdigit((unsigned char) *end))
                        return -EINVAL;
                for (; isdigit((unsigned char) *end); end++)
                        if (scale < 1000000) {
                                frac = frac * 10 + (uint64_t) (*end - '0');
                                scale *= 10;
                        }
        }
        if (*end != ' ')
                return -EINVAL;
        v = (double) whole + (double) frac / (double) scale;
        if (v > 100)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* The avg10 of the "some" or "full" line; on failure a message saying what is wrong. */
static int psi_avg10(const char *text, const char *kind, double *ret, char *msg, size_t msg_size) {
        char key[16], what[40];
        const char *p;

        snprintf(key, sizeof(key), "%s avg10=", kind);
        p = find_line(text, key);
        if (!p) {
                snprintf(msg, msg_size, "/proc/pressure/memory has no \"%s avg10=\" line", kind);
                return -EINVAL;
        }
        if (!strchr(p, '\n')) {
                snprintf(msg, msg_size, "/proc/pressure/memory ends in the middle of its \"%s\" line (truncated)",
                         kind);
                return -EINVAL;
        }
        if (parse_psi_avg(p, ret) < 0) {
                snprintf(msg, msg_size, "/proc/pressure/memory: \"%s\" avg10 is not a percentage: \"%s\"", kind,
                         excerpt(what, sizeof(what), p));
                return -EINVAL;
        }
        return 0;
}

/* A "Key:   N kB" line of meminfo; on failure a message saying what is wrong. */
static int meminfo_field(const char *text, size_t len, const char *key, uint64_t *ret, char *msg, size_t msg_size) {
        char what[40];
        const char *p = find_line(text, key);
        int r;

        if (!p) {
                snprintf(msg, msg_size, "/proc/meminfo has no %.*s line%s", (int) strlen(key) - 1, key,
                         ends_mid_line(text, len) ? " and ends mid-line (truncated)" : "");
                return -EINVAL;
        }
        r = parse_counter(p, " kB\n", ret);
        if (r < 0) {
                snprintf(msg, msg_size, "/proc/meminfo: \"%s%s\" is not a number of kB%s", key,
                         excerpt(what, sizeof(what), p),
                         r == -ERANGE      ? " (out of range)"
                         : strchr(p, '\n') ? ""
                                           : " (truncated)");
                return r;
        }
        return 0;
}

/* Why a read failed, as words for a message. */
static void read_error(char *msg, size_t msg_size, const char *path, int r) {
        if (r == -EFBIG)
                snprintf(msg, msg_size, "%s is larger than %u KiB, which no kernel writes", path,
                         READ_BUFFER_SIZE / 1024);
        else
                snprintf(msg, msg_size, "cannot read %s: %s", path, strerror(-r));
}

/* ---- the checks: each fills obs (and msg, which obs points to) ---- */

/* Returns false when there is nothing to report: the kernel has no PSI. */
static bool check_psi(struct nh_probe_ctx *ctx, struct memory *m, struct nh_observation *obs, char *msg,
                      size_t msg_size) {
        const struct memory_config *c = m->config;
        double full, some;
        int r;

        *obs = (struct nh_observation){.type = "MemoryThrashing",
                                       .problem = "psi",
                                       .status = NH_STATUS_UNKNOWN,
                                       .reason = "PSIUnreadable",
                                       .message = msg};
        r = nh_read_file(ctx, NH_ROOT_PROC, "pressure/memory", m->buf, sizeof(m->buf), NULL);
        if ((r == -ENOENT || r == -EOPNOTSUPP) && !m->psi_reported) {
                /* Reporting False would claim a check that was not made: leave it to MemAvailable. */
                if (!m->psi_absent_logged)
                        nh_log(ctx, NH_LOG_NOTICE,
                               "/proc/pressure/memory is not available (%s: kernel without PSI, or booted with "
                               "psi=0); MemoryThrashing is decided by MemAvailable alone",
                               strerror(-r));
                m->psi_absent_logged = true;
                return false;
        }
        m->psi_reported = true;
        if (r == -ENOENT || r == -EOPNOTSUPP) {
                /* It was there before: its last verdict must not linger as if still observed. */
                snprintf(msg, msg_size, "/proc/pressure/memory vanished after it had been read (%s)", strerror(-r));
                return true;
        }
        if (r < 0) {
                read_error(msg, msg_size, "/proc/pressure/memory", r);
                return true;
        }
        if (psi_avg10(m->buf, "some", &some, msg, msg_size) < 0 || psi_avg10(m->buf, "full", &full, msg, msg_size) < 0)
                return true;

        snprintf(msg, msg_size, "memory PSI full avg10 %.2f%% (limit %g%%), some avg10 %.2f%% (limit %g%%)", full,
                 c->psi_full_threshold, some, c->psi_some_threshold);
        if (full >= c->psi_full_threshold || some >= c->psi_some_threshold) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "MemoryStall";
        } else {
                obs->status = NH_STATUS_FALSE;
                obs->reason = "MemoryNotThrashing";
        }
        return true;
}

static void check_available(struct nh_probe_ctx *ctx, struct memory *m, struct nh_observation *obs, char *msg,
                            size_t msg_size) {
        const struct memory_config *c = m->config;
        char avail_text[32], total_text[32], percent_text[32];
        uint64_t total, avail;
        double percent;
        size_t len = 0;
        int r;

        *obs = (struct nh_observation){.type = "MemoryThrashing",
                                       .problem = "available",
                                       .status = NH_STATUS_UNKNOWN,
                                       .reason = "MeminfoUnreadable",
                                       .message = msg};
        r = nh_read_file(ctx, NH_ROOT_PROC, "meminfo", m->buf, sizeof(m->buf), &len);
        if (r < 0) {
                read_error(msg, msg_size, "/proc/meminfo", r);
                return;
        }
        if (meminfo_field(m->buf, len, "MemTotal:", &total, msg, msg_size) < 0 ||
            meminfo_field(m->buf, len, "MemAvailable:", &avail, msg, msg_size) < 0)
                return;
        if (total == 0) {
                snprintf(msg, msg_size, "/proc/meminfo says MemTotal is 0 kB");
                return;
        }
        if (avail > total) {
                snprintf(msg, msg_size, "/proc/meminfo says MemAvailable %llu kB, more than MemTotal %llu kB",
                         (unsigned long long) avail, (unsigned long long) total);
                return;
        }

        percent = 100.0 * (double) avail / (double) total;
        probe_format_bytes(avail_text, sizeof(avail_text), (avail) *1024);
        probe_format_bytes(total_text, sizeof(total_text), (total) *1024);
        probe_format_percent(percent_text, sizeof(percent_text), percent, c->min_available_percent);
        if (percent < c->min_available_percent) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "LowMemoryAvailable";
                snprintf(msg, msg_size, "MemAvailable %s of %s (%s), below %g%%", avail_text, total_text, percent_text,
                         c->min_available_percent);
        } else {
                obs->status = NH_STATUS_FALSE;
                obs->reason = "MemoryNotThrashing";
                snprintf(msg, msg_size, "MemAvailable %s of %s (%s), limit %g%%", avail_text, total_text, percent_text,
                         c->min_available_percent);
        }
}

/*
 * Adds a sample, keeping the history bounded: stored samples stay at least window/60 apart
 * (the newest one may be closer: it is replaced by the next), and samples that left the
 * window go, except the newest of them, which still serves when the interval exceeds the window.
 */
static void oom_add_sample(struct memory *m, uint64_t now, uint64_t count) {
        uint64_t window = m->config->oom_window, spacing = window / OOM_SAMPLE_SPACING_DIVISOR;
        struct oom_sample *s = m->samples;

        if (m->n_samples >= 2 && s[m->n_samples - 1].time - s[m->n_samples - 2].time < spacing)
                m->n_samples--;
        if (m->n_samples == OOM_SAMPLES) {
                /* Cannot happen with the spacing above; the bound holds regardless. */
                memmove(s, s + 1, (OOM_SAMPLES - 1) * sizeof(*s));
                m->n_samples--;
        }
        s[m->n_samples++] = (struct oom_sample){.time = now, .count = count};

        while (m->n_samples >= 3 && s[1].time + window <= now) {
                memmove(s, s + 1, (m->n_samples - 1) * sizeof(*s));
                m->n_samples--;
        }
}

static void check_oom(struct nh_probe_ctx *ctx, struct memory *m, struct nh_observation *obs, char *msg,
                      size_t msg_size) {
        const struct memory_config *c = m->config;
        char what[40], window_text[32], span_text[32];
        const struct oom_sample *base, *last;
        uint64_t count, kills, now;
        size_t len = 0;
        const char *p;
        int r;

        *obs = (struct nh_observation){
                .type = "FrequentOOMKill", .status = NH_STATUS_UNKNOWN, .reason = "VmstatUnreadable", .message = msg};
        probe_format_setting(window_text, sizeof(window_text), c->oom_window);
        r = nh_read_file(ctx, NH_ROOT_PROC, "vmstat", m->buf, sizeof(m->buf), &len);
        if (r < 0) {
                read_error(msg, msg_size, "/proc/vmstat", r);
                return;
        }
        p = find_line(m->buf, "oom_kill ");
        if (!p) {
                if (ends_mid_line(m->buf, len))
                        snprintf(msg, msg_size, "/proc/vmstat has no oom_kill line and ends mid-line (truncated)");
                else if (!find_line(m->buf, "nr_free_pages "))
                        snprintf(msg, msg_size, "/proc/vmstat does not look like vmstat: no nr_free_pages line");
                else {
                        obs->reason = "OOMCounterUnavailable";
                        snprintf(msg, msg_size,
                                 "/proc/vmstat has no oom_kill counter (kernel older than 4.13): OOM kills "
                                 "cannot be counted");
                }
                return;
        }
        r = parse_counter(p, "\n", &count);
        if (r < 0) {
                snprintf(msg, msg_size, "/proc/vmstat: \"oom_kill %s\" is not a counter%s",
                         excerpt(what, sizeof(what), p),
                         r == -ERANGE      ? " (out of range)"
                         : strchr(p, '\n') ? ""
                                           : " (truncated)");
                return;
        }

        now = nh_now(ctx);
        obs->reason = "InsufficientHistory";
        if (m->n_samples > 0) {
                last = &m->samples[m->n_samples - 1];
                if (count < last->count || now < last->time) {
                        /* The counter only grows within one boot: going back means another kernel
                         * (a remounted proc root, a restored checkpoint) or a bogus file. */
                        snprintf(msg, msg_size,
                                 "the oom_kill counter went back from %llu to %llu (reboot or reset); a second "
                                 "observation is needed to count OOM kills over %s",
                                 (unsigned long long) last->count, (unsigned long long) count, window_text);
                        m->n_samples = 0;
                        oom_add_sample(m, now, count);
                        return;
                }
        }
        oom_add_sample(m, now, count);
        if (m->n_samples < 2) {
                snprintf(msg, msg_size,
                         "first reading of the oom_kill counter (%llu); a second observation is needed to count "
                         "OOM kills over %s",
                         (unsigned long long) count, window_text);
                return;
        }

        /* The oldest sample inside the window; the one before it when it is the only one left. */
        base = m->samples[0].time + c->oom_window >= now || m->n_samples == 2 ? &m->samples[0] : &m->samples[1];
        last = &m->samples[m->n_samples - 1];
        kills = last->count - base->count;
        probe_format_span(span_text, sizeof(span_text), now - base->time);
        if (kills > (uint64_t) c->oom_kill_threshold) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "FrequentOOMKill";
                snprintf(msg, msg_size, "%llu OOM kills in the last %s (more than %lld in %s)",
                         (unsigned long long) kills, span_text, (long long) c->oom_kill_threshold, window_text);
        } else {
                obs->status = NH_STATUS_FALSE;
                obs->reason = "NoFrequentOOMKill";
                snprintf(msg, msg_size, "%llu OOM kill%s in the last %s (frequent: more than %lld in %s)",
                         (unsigned long long) kills, kills == 1 ? "" : "s", span_text,
                         (long long) c->oom_kill_threshold, window_text);
        }
}

/* ---- the descriptor's callbacks ---- */

static int memory_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        struct memory *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->config = config;
        *ret_state = m;
        return 0;
}

static int memory_probe(struct nh_probe_ctx *ctx, void *state) {
        struct memory *m = state;
        char psi_msg[MESSAGE_SIZE], avail_msg[MESSAGE_SIZE], oom_msg[MESSAGE_SIZE];
        struct nh_observation psi, avail, oom;
        int r = 0, k;

        /* PSI first: when both checks are healthy its figures are the condition's message. */
        if (check_psi(ctx, m, &psi, psi_msg, sizeof(psi_msg))) {
                k = nh_report(ctx, &psi);
                if (k < 0 && r == 0)
                        r = k;
        }
        check_available(ctx, m, &avail, avail_msg, sizeof(avail_msg));
        k = nh_report(ctx, &avail);
        if (k < 0 && r == 0)
                r = k;
        check_oom(ctx, m, &oom, oom_msg, sizeof(oom_msg));
        k = nh_report(ctx, &oom);
        if (k < 0 && r == 0)
                r = k;
        return r;
}

static void memory_done(void *state) {
        free(state);
}

NH_PLUGIN_DEFINE(.name = "memory", .description = "memory stalls (PSI), low MemAvailable and frequent OOM kills",
                 .conditions = memory_conditions, .config = memory_config_table,
                 .config_size = sizeof(struct memory_config), .init = memory_init, .probe = memory_probe,
                 .done = memory_done);
