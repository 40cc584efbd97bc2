/* SPDX-License-Identifier: MIT */
/*
 * pid — are the node's tasks about to run out of PIDs?
 *
 * Every task (process or thread) holds a PID, and a fork() or pthread_create() fails with
 * EAGAIN once the tightest of these limits is reached:
 *     kernel.pid_max         /proc/sys/kernel/pid_max: the PID space
 *     kernel.threads-max     /proc/sys/kernel/threads-max: the number of tasks
 *     the cgroup's pids.max  <cgroup>/pids.max under the sys root, when the file exists and
 *                            is not "max" (unlimited); the root cgroup has none, so by
 *                            default only the two kernel limits apply
 * The task count for the two kernel limits is the total of the "running/total" field of
 * /proc/loadavg (every task, threads and zombies included), the figure the kubelet itself
 * compares with min(pid_max, threads-max) for pid.available; for the cgroup's limit it is
 * that cgroup's pids.current.  Everything is read through the proc and sys roots
 * (--proc-path, --sys-path), so a DaemonSet reads the host's files and tests read fixtures.
 * PIDPressure is the kubelet's and is never reported here, whatever "take_over" says.
 *
 * PIDExhaustion (healthy reason PIDsAvailable)
 *     The limit that binds is the one with the largest share in use.
 *         True  PIDExhaustion        that share is at or above threshold_percent
 *         False PIDsAvailable        below it
 *         Unknown TaskCountUnreadable  /proc/loadavg, or the cgroup's pids.current, is
 *                                      missing, garbage, truncated or too large
 *         Unknown PIDLimitsUnreadable  pid_max, threads-max or the cgroup's pids.max is
 *                                      garbage, truncated or unreadable; both pid_max and
 *                                      threads-max are missing; or the configured cgroup
 *                                      directory does not exist
 *     A limit that is missing is skipped as the kubelet skips it (pid_max or threads-max
 *     alone still gives a verdict; a cgroup without pids.max has no limit), but one that
 *     cannot be read might be the tightest, so the verdict is Unknown - unless a limit
 *     that was read already shows exhaustion: then it is True, and the message adds what
 *     could not be read.
 *
 * Keys
 *     threshold_percent  (number, 1-100, default 90) the share of a limit in use at which
 *                        PIDExhaustion becomes True
 *     cgroup             (string, default "fs/cgroup") the cgroup directory whose pids.max
 *                        and pids.current count, relative to the sys root; for the pods'
 *                        share write "fs/cgroup/kubepods.slice" (systemd cgroup driver) or
 *                        "fs/cgroup/kubepods" (cgroupfs driver), on a cgroup v1 host
 *                        "fs/cgroup/pids/kubepods"
 *
 * Messages carry the figures, e.g.
 * "31200 tasks in use, 95.2% of the tightest limit threads-max 32768 (threshold 90%)",
 * "96000 tasks in use in cgroup /sys/fs/cgroup/kubepods.slice, 96.0% of the tightest limit
 * pids.max 100000 (threshold 90%)".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <nodehealth/plugin.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../common/probe-text.h"

#define READ_BUFFER_SIZE 256 /* loadavg is ~30 bytes, the limits a dozen */
#define EXCERPT_SIZE 64

struct pid_config {
        double threshold_percent;
        char *cgroup;
};

static const struct nh_cfg_entry pid_config_table[] = {
        /* The kubelet sets PIDPressure only when an operator configures a pid.available eviction
         * threshold: its defaults (memory.available<100Mi, nodefs.available<10%,
         * nodefs.inodesFree<5%, imagefs.available<15%) have none, so on most nodes nothing warns
         * before fork() fails.  90% in use is pid.available<10%: the kubelet's own share for
         * nodefs.available and the upper end of the 5-10% usually configured for pid.available, so
         * it warns before or with such an eviction.  On the common pid_max of 32768 it still leaves
         * ~3,300 PIDs for the kubelet, the runtime and a login shell while someone reacts. */
        {.type = NH_CFG_DOUBLE,
         .key = "threshold_percent",
         .def = "90",
         .offset = offsetof(struct pid_config, threshold_percent),
         .help = "share of the tightest PID limit in use at or above which PIDExhaustion is True",
         .min = 1,
         .max = 100},
        /* The root cgroup has no pids.max: by default only pid_max and threads-max count. */
        {.type = NH_CFG_STRING,
         .key = "cgroup",
         .def = "fs/cgroup",
         .offset = offsetof(struct pid_config, cgroup),
         .help = "cgroup directory, relative to the sys root, whose pids.max is a limit too "
                 "(e.g. \"fs/cgroup/kubepods.slice\")"},
        {0},
};

static const struct nh_condition_decl pid_conditions[] = {
        {.type = "PIDExhaustion",
         .healthy_reason = "PIDsAvailable",
         .help = "tasks in use reach threshold_percent of the tightest of pid_max, threads-max and the cgroup's "
                 "pids.max"},
        {0},
};

struct pid {
        const struct pid_config *config;
        char *cgroup_dir; /* relative to the sys root, without leading or trailing '/' */
        char *cgroup_shown; /* "/sys/fs/cgroup/kubepods.slice": how messages name it */
        char *max_path, *max_shown;
        char *current_path, *current_shown;
        bool absent_logged[2]; /* pid_max, threads-max: a missing file is logged once */
        char buf[READ_BUFFER_SIZE];
};

/* One limit and the count it bounds. */
struct limit {
        const char *name; /* "pid_max", "threads-max", "pids.max" */
        bool cgroup;
        uint64_t count, max;
        double percent;
};

/* What one cycle found: the limits it could read, and the first thing it could not. */
struct cycle {
        struct limit limits[3];
        size_t n_limits;
        const char *error_reason;
        char *error; /* NULL: nothing went wrong */
        bool out_of_memory;
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

/* Records the cycle's first error; later ones add nothing (the message names one file). */
__attribute__((format(printf, 3, 4))) static void cycle_error(struct cycle *cy, const char *reason, const char *format,
                                                              ...) {
        va_list ap;

        if (cy->error || cy->out_of_memory)
                return;
        va_start(ap, format);
        if (vasprintf(&cy->error, format, ap) < 0) {
                cy->error = NULL;
                cy->out_of_memory = true;
        }
        va_end(ap);
        cy->error_reason = reason;
}

/* Why a read failed, as the cycle's error. */
static void read_error(struct cycle *cy, const char *reason, const char *shown, int r) {
        if (r == -EFBIG)
                cycle_error(cy, reason, "%s is larger than %d bytes, which no kernel writes", shown,
                            READ_BUFFER_SIZE - 1);
        else
                cycle_error(cy, reason, "cannot read %s: %s", shown, strerror(-r));
}

/* ---- parsing ---- */

/* Decimal digits at *s, then one of `stops`: 0, -EINVAL, -ERANGE, -ENODATA (the text ended). */
static int parse_decimal(const char **s, const char *stops, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (**s == '\0')
                return -ENODATA;
        if (!isdigit((unsigned char) **s))
                return -EINVAL;
        errno = 0;
        v = strtoull(*s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0)
                return -EINVAL;
        if (*end == '\0')
                return -ENODATA;
        if (!strchr(stops, *end))
                return -EINVAL;
        *s = end;
        *ret = (uint64_t) v;
        return 0;
}

/*
 * The total of loadavg's fourth field, "running/total" ("0.12 0.31 0.27 2/1187 24573").
 * 0, -EINVAL (garbage), -ERANGE, -ENODATA (ends before the count).
 */
static int parse_loadavg(const char *text, uint64_t *ret_total) {
        const char *p = text;
        uint64_t running, total;
        int r;

        for (int field = 0; field < 3; field++) {
                if (!isdigit((unsigned char) *p))
                        return *p ? -EINVAL : -ENODATA;
                while (isdigit((unsigned char) *p) || *p == '.')
                        p++;
                if (*p != ' ')
                        return *p ? -EINVAL : -ENODATA;
                p++;
        }
        r = parse_decimal(&p, "/", &running);
        if (r < 0)
                return r;
        p++;
        r = parse_decimal(&p, " \n", &total);
        if (r < 0)
                return r;
        *ret_total = total;
        return 0;
}

/*
 * A file holding one decimal number and a newline, or "max" when allow_max.  0 and the
 * value (UINT64_MAX for "max"); -ENOENT when it does not exist (nothing recorded); any
 * other failure is recorded in the cycle with `reason` and gives -EINVAL.
 */
static int read_value(struct nh_probe_ctx *ctx, struct pid *s, struct cycle *cy, enum nh_root root, const char *path,
                      const char *shown, const char *reason, bool allow_max, uint64_t *ret) {
        char what[EXCERPT_SIZE];
        const char *p = s->buf;
        size_t len = 0;
        uint64_t v;
        int r;

        r = nh_read_file(ctx, root, path, s->buf, sizeof(s->buf), &len);
        if (r == -ENOENT)
                return -ENOENT;
        if (r < 0) {
                read_error(cy, reason, shown, r);
                return -EINVAL;
        }
        if (len == 0) {
                cycle_error(cy, reason, "%s is empty", shown);
                return -EINVAL;
        }
        excerpt(what, sizeof(what), s->buf);
        if (s->buf[len - 1] != '\n') {
                cycle_error(cy, reason, "%s: \"%s\" ends without a newline (truncated)", shown, what);
                return -EINVAL;
        }
        if (strchr(s->buf, '\n') != s->buf + len - 1) {
                cycle_error(cy, reason, "%s has more than one line", shown);
                return -EINVAL;
        }
        if (allow_max && strcmp(s->buf, "max\n") == 0) {
                *ret = UINT64_MAX;
                return 0;
        }
        r = parse_decimal(&p, "\n", &v);
        if (r == -ERANGE) {
                cycle_error(cy, reason, "%s: \"%s\" is out of range", shown, what);
                return -EINVAL;
        }
        if (r < 0) {
                cycle_error(cy, reason, "%s: \"%s\" is not a number", shown, what);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static void add_limit(struct cycle *cy, const char *name, bool cgroup, uint64_t count, uint64_t max) {
        struct limit *l = &cy->limits[cy->n_limits++];

        /* pids.max 0 lets nobody fork: exhausted, whatever the count (which is then > 100%). */
        *l = (struct limit){.name = name,
                            .cgroup = cgroup,
                            .count = count,
                            .max = max,
                            .percent = max == 0 ? 100.0 : 100.0 * (double) count / (double) max};
}

/* ---- the reads ---- */

/* Returns true and the total when /proc/loadavg could be read. */
static bool read_task_count(struct nh_probe_ctx *ctx, struct pid *s, struct cycle *cy, uint64_t *ret_total) {
        char what[EXCERPT_SIZE];
        int r;

        r = nh_read_file(ctx, NH_ROOT_PROC, "loadavg", s->buf, sizeof(s->buf), NULL);
        if (r < 0) {
                read_error(cy, "TaskCountUnreadable", "/proc/loadavg", r);
                return false;
        }
        r = parse_loadavg(s->buf, ret_total);
        if (r == -ENODATA)
                cycle_error(cy, "TaskCountUnreadable",
                            "/proc/loadavg ends before its running/total task count (truncated)");
        else if (r < 0)
                cycle_error(cy, "TaskCountUnreadable", "/proc/loadavg: \"%s\" has no running/total task count%s",
                            excerpt(what, sizeof(what), s->buf), r == -ERANGE ? " (out of range)" : "");
        else if (*ret_total == 0)
                /* The reader itself is a task. */
                cycle_error(cy, "TaskCountUnreadable", "/proc/loadavg says 0 tasks exist");
        return r == 0 && *ret_total > 0;
}

static void read_kernel_limits(struct nh_probe_ctx *ctx, struct pid *s, struct cycle *cy, bool have_total,
                               uint64_t total) {
        static const struct {
                const char *name, *path, *shown;
        } files[] = {
                {"pid_max", "sys/kernel/pid_max", "/proc/sys/kernel/pid_max"},
                {"threads-max", "sys/kernel/threads-max", "/proc/sys/kernel/threads-max"},
        };
        size_t absent = 0;

        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                uint64_t max;
                int r = read_value(ctx, s, cy, NH_ROOT_PROC, files[i].path, files[i].shown, "PIDLimitsUnreadable",
                                   false, &max);

                if (r == -ENOENT) {
                        /* Every kernel has both; the kubelet, too, uses whichever it can read. */
                        if (!s->absent_logged[i])
                                nh_log(ctx, NH_LOG_NOTICE, "%s does not exist; the other limits decide",
                                       files[i].shown);
                        s->absent_logged[i] = true;
                        absent++;
                        continue;
                }
                s->absent_logged[i] = false;
                if (r < 0)
                        continue;
                if (max == 0) {
                        cycle_error(cy, "PIDLimitsUnreadable", "%s is 0, which no kernel allows", files[i].shown);
                        continue;
                }
                if (have_total)
                        add_limit(cy, files[i].name, false, total, max);
        }
        if (absent == sizeof(files) / sizeof(files[0]))
                cycle_error(cy, "PIDLimitsUnreadable", "neither %s nor %s exists", files[0].shown, files[1].shown);
}

static void read_cgroup_limit(struct nh_probe_ctx *ctx, struct pid *s, struct cycle *cy) {
        uint64_t max, current;
        struct stat st;
        int r, k, fd;

        r = read_value(ctx, s, cy, NH_ROOT_SYS, s->max_path, s->max_shown, "PIDLimitsUnreadable", true, &max);
        if (r == -ENOENT) {
                /* Normal for the root cgroup, and where the pids controller is not enabled; but a
                 * directory that is not there is a wrong "cgroup" (or no kubepods yet), not "no limit". */
                fd = nh_root_fd(ctx, NH_ROOT_SYS);
                if (fd < 0)
                        k = fd;
                else if (fstatat(fd, s->cgroup_dir, &st, 0) < 0)
                        k = -errno;
                else
                        k = S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
                if (k == -ENOENT || k == -ENOTDIR)
                        cycle_error(cy, "PIDLimitsUnreadable", "cgroup directory %s does not exist (key \"cgroup\")",
                                    s->cgroup_shown);
                else if (k < 0)
                        cycle_error(cy, "PIDLimitsUnreadable", "cannot look up cgroup directory %s: %s",
                                    s->cgroup_shown, strerror(-k));
                return;
        }
        if (r < 0 || max == UINT64_MAX)
                return;
        r = read_value(ctx, s, cy, NH_ROOT_SYS, s->current_path, s->current_shown, "TaskCountUnreadable", false,
                       &current);
        if (r == -ENOENT)
                read_error(cy, "TaskCountUnreadable", s->current_shown, r);
        if (r < 0)
                return;
        add_limit(cy, "pids.max", true, current, max);
}

/* ---- the descriptor's callbacks ---- */

static int pid_probe(struct nh_probe_ctx *ctx, void *state) {
        struct pid *s = state;
        double threshold = s->config->threshold_percent;
        struct cycle cy = {0};
        struct nh_observation obs = {.type = "PIDExhaustion"};
        const struct limit *tightest = NULL;
        char *message = NULL, percent[32];
        uint64_t total = 0;
        bool have_total;
        int r;

        have_total = read_task_count(ctx, s, &cy, &total);
        read_kernel_limits(ctx, s, &cy, have_total, total);
        read_cgroup_limit(ctx, s, &cy);
        if (cy.out_of_memory)
                return -ENOMEM;

        /* The tightest limit is the one with the least room left for its own count. */
        for (size_t i = 0; i < cy.n_limits; i++)
                if (!tightest || cy.limits[i].percent > tightest->percent)
                        tightest = &cy.limits[i];

        if (tightest && (tightest->percent >= threshold || !cy.error)) {
                /* Exhaustion seen on one limit stands even if another could not be read. */
                obs.status = tightest->percent >= threshold ? NH_STATUS_TRUE : NH_STATUS_FALSE;
                obs.reason = obs.status == NH_STATUS_TRUE ? "PIDExhaustion" : "PIDsAvailable";
                probe_format_percent(percent, sizeof(percent), tightest->percent, threshold);
                r = asprintf(&message, "%llu task%s in use%s%s, %s of the tightest limit %s %llu (threshold %g%%)%s%s",
                             (unsigned long long) tightest->count, tightest->count == 1 ? "" : "s",
                             tightest->cgroup ? " in cgroup " : "", tightest->cgroup ? s->cgroup_shown : "", percent,
                             tightest->name, (unsigned long long) tightest->max, threshold, cy.error ? "; " : "",
                             cy.error ? cy.error : "");
                if (r < 0) {
                        free(cy.error);
                        return -ENOMEM;
                }
                obs.message = message;
        } else {
                obs.status = NH_STATUS_UNKNOWN;
                obs.reason = cy.error ? cy.error_reason : "PIDLimitsUnreadable";
                obs.message = cy.error ? cy.error : "no PID limit could be read";
        }

        r = nh_report(ctx, &obs);
        free(message);
        free(cy.error);
        return r;
}

static void pid_done(void *state) {
        struct pid *s = state;

        if (!s)
                return;
        free(s->cgroup_dir);
        free(s->cgroup_shown);
        free(s->max_path);
        free(s->max_shown);
        free(s->current_path);
        free(s->current_shown);
        free(s);
}

/* a followed by b, malloc'd; NULL when out of memory. */
static char *join(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        char *s = malloc(la + lb + 1);

        if (!s)
                return NULL;
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
        return s;
}

/* Checks the "cgroup" key: a directory below the sys root.  0 or -EINVAL (logged). */
static int check_cgroup(struct nh_probe_ctx *ctx, const char *cgroup, const char *dir, size_t len) {
        if (len == 0) {
                nh_log(ctx, NH_LOG_ERR,
                       "\"cgroup\" is \"%s\": name a cgroup directory under the sys root, such as \"fs/cgroup\"",
                       cgroup);
                return -EINVAL;
        }
        for (size_t i = 0; i < len;) {
                size_t n = strcspn(dir + i, "/");

                if (n > len - i)
                        n = len - i;
                if (n == 2 && strncmp(dir + i, "..", 2) == 0) {
                        nh_log(ctx, NH_LOG_ERR, "\"cgroup\" is \"%s\": \"..\" would leave the sys root (--sys-path)",
                               cgroup);
                        return -EINVAL;
                }
                i += n + 1;
        }
        if (strncmp(dir, "sys/", 4) == 0) {
                nh_log(ctx, NH_LOG_ERR,
                       "\"cgroup\" is \"%s\", but it is relative to the sys root (--sys-path, /sys by default): "
                       "write \"%.*s\"",
                       cgroup, (int) (len - 4), dir + 4);
                return -EINVAL;
        }
        return 0;
}

static int pid_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct pid_config *c = config;
        const char *cgroup = c->cgroup ? c->cgroup : "", *dir = cgroup;
        struct pid *s;
        size_t len;
        int r;

        /* Like nh_read_file(), a leading '/' is still relative to the root. */
        while (*dir == '/')
                dir++;
        len = strlen(dir);
        while (len > 0 && dir[len - 1] == '/')
                len--;
        r = check_cgroup(ctx, cgroup, dir, len);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->config = c;
        s->cgroup_dir = strndup(dir, len);
        s->cgroup_shown = s->cgroup_dir ? join("/sys/", s->cgroup_dir) : NULL;
        s->max_path = s->cgroup_dir ? join(s->cgroup_dir, "/pids.max") : NULL;
        s->max_shown = s->cgroup_shown ? join(s->cgroup_shown, "/pids.max") : NULL;
        s->current_path = s->cgroup_dir ? join(s->cgroup_dir, "/pids.current") : NULL;
        s->current_shown = s->cgroup_shown ? join(s->cgroup_shown, "/pids.current") : NULL;
        if (!s->cgroup_shown || !s->max_path || !s->max_shown || !s->current_path || !s->current_shown) {
                pid_done(s);
                return -ENOMEM;
        }
        *ret_state = s;
        return 0;
}

NH_PLUGIN_DEFINE(.name = "pid",
                 .description = "PID exhaustion: tasks in use against pid_max, threads-max and a cgroup's pids.max",
                 .conditions = pid_conditions, .config = pid_config_table, .config_size = sizeof(struct pid_config),
                 .init = pid_init, .probe = pid_probe, .done = pid_done);
