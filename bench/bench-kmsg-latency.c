/* SPDX-License-Identifier: MIT */
/*
 * bench-kmsg-latency: the time from a line written to /dev/kmsg to the daemon's journal record
 * about it.  Runs the real daemon (the shipped configuration plus a drop-in that sets the
 * kernel_log probe's `source`, lookback 0 and a rate limit that never bites, and no HTTP
 * endpoint, whose port a daemon running beside it may hold), writes
 * "<4>kernel: Out of memory: Killed process …" lines one at a time (kernel.printk_devkmsg=on
 * meanwhile, restored after), and for each finds the daemon's NODEHEALTH_EVENT=OOMKilling
 * record in the journal with sd-journal (a random 0-20 ms pause before each write keeps the
 * writes out of step with the journal reader's 10 ms poll).  A sample is the record's journal time
 * (__REALTIME_TIMESTAMP: when journald received it) minus the time just before write():
 * everything between the kernel and the record, journald's part included.  Prints, one per
 * line ("name value"):
 *
 *   kernel_log_kmsg_to_record_ms_p50{source=S}         median over the samples
 *   kernel_log_kmsg_to_record_ms_p99{source=S}         99th percentile
 *   kernel_log_kmsg_to_record_ms_max{source=S}
 *   kernel_log_kmsg_to_journal_ms_p50{source=S}        the kernel line's own journal record
 *   kernel_log_kmsg_to_journal_ms_p99{source=S}        (journald reading /dev/kmsg): the floor of a
 *                                                      probe that reads the journal
 *   kernel_log_kmsg_to_transition_record_ms{source=S}  one condition transition (a read-only
 *                                                      remount: ReadonlyFilesystem True), the same way
 *
 * S is the probe's reader: "kmsg" (what "auto" picks for the shipped rule file) or "journal"
 * (what a DaemonSet without /dev/kmsg reads).  It measures, it never judges; it needs root and a
 * running journald.  Usage:
 *   bench-kmsg-latency --daemon PATH --plugin-dir DIR --config FILE --rules FILE
 *                      [--source kmsg|journal] [--samples N]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define DEADLINE_USEC (10 * USEC_PER_SEC)
#define DEVKMSG_SYSCTL "/proc/sys/kernel/printk_devkmsg"

struct daemon {
        pid_t pid;
        int out_fd;
        char *out;
        size_t len, size;
        size_t mark; /* searches start here */
};

static uint64_t clock_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t size = 0;

        if (!f)
                return NULL;
        if (getdelim(&text, &size, '\0', f) < 0) {
                free(text);
                text = NULL;
        }
        fclose(f);
        return text;
}

static int write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        fputs(text, f);
        return fclose(f) == 0 ? 0 : -errno;
}

/* Reads what the daemon printed; false when its stdout is closed. */
static bool drain(struct daemon *d) {
        for (;;) {
                ssize_t n;

                if (d->size - d->len < 4096) {
                        char *p = realloc(d->out, d->size * 2 + 8192);
                        if (!p)
                                return false;
                        d->out = p;
                        d->size = d->size * 2 + 8192;
                }
                n = read(d->out_fd, d->out + d->len, d->size - d->len - 1);
                if (n > 0) {
                        d->len += (size_t) n;
                        d->out[d->len] = '\0';
                        continue;
                }
                return n < 0 && errno == EAGAIN;
        }
}

/* Waits (until the deadline) for `needle` on the daemon's stdout after the mark. */
static bool wait_output(struct daemon *d, const char *needle) {
        uint64_t deadline = clock_usec(CLOCK_MONOTONIC) + DEADLINE_USEC;

        for (;;) {
                bool open = drain(d);
                uint64_t now;

                if (d->out && strstr(d->out + d->mark, needle))
                        return true;
                now = clock_usec(CLOCK_MONOTONIC);
                if (!open || now >= deadline)
                        return false;
                (void) poll(&(struct pollfd){d->out_fd, POLLIN, 0}, 1, (int) ((deadline - now) / USEC_PER_MSEC) + 1);
        }
}

static int daemon_start(struct daemon *d, char *const *argv, const char *err_path) {
        int pipefd[2];

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        d->pid = fork();
        if (d->pid < 0)
                return -errno;
        if (d->pid == 0) {
                int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (err < 0 || dup2(pipefd[1], 1) < 0 || dup2(err, 2) < 0)
                        _exit(127);
                execv(argv[0], argv);
                _exit(127);
        }
        close(pipefd[1]);
        d->out_fd = pipefd[0];
        (void) fcntl(d->out_fd, F_SETFL, O_NONBLOCK);
        return 0;
}

static int daemon_stop(struct daemon *d) {
        int status = 0;

        if (d->pid <= 0)
                return 0;
        (void) kill(d->pid, SIGTERM);
        if (waitpid(d->pid, &status, 0) < 0)
                return -errno;
        d->pid = 0;
        close(d->out_fd);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * The __REALTIME_TIMESTAMP of the first record after the journal's current position that
 * matches `match` (set on j) and whose MESSAGE holds `needle`; waits until the deadline.
 */
static int find_record(sd_journal *j, const char *needle, uint64_t *ret_usec) {
        uint64_t deadline = clock_usec(CLOCK_MONOTONIC) + DEADLINE_USEC;

        for (;;) {
                int r;

                while ((r = sd_journal_next(j)) > 0) {
                        const void *data;
                        size_t len;

                        if (sd_journal_get_data(j, "MESSAGE", &data, &len) >= 0 &&
                            memmem(data, len, needle, strlen(needle)))
                                return sd_journal_get_realtime_usec(j, ret_usec);
                }
                if (r < 0)
                        return r;
                if (clock_usec(CLOCK_MONOTONIC) >= deadline)
                        return -ETIMEDOUT;
                /* The record is on its way (the daemon printed the event): look again soon. */
                (void) sd_journal_wait(j, 2 * USEC_PER_MSEC);
        }
}

static int open_at_tail(sd_journal **ret, const char *match1, const char *match2) {
        sd_journal *j = NULL;
        int r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);

        if (r >= 0)
                r = sd_journal_add_match(j, match1, 0);
        if (r >= 0 && match2)
                r = sd_journal_add_match(j, match2, 0);
        if (r >= 0)
                r = sd_journal_seek_tail(j);
        if (r >= 0)
                r = sd_journal_previous(j);
        if (r < 0) {
                sd_journal_close(j);
                return r;
        }
        *ret = j;
        return 0;
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least fraction f of them at or below it. */
static double quantile_ms(const uint64_t *sorted, size_t n, double f) {
        size_t rank = (size_t) (f * (double) n + 0.999999);

        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return (double) sorted[rank - 1] / 1000.0;
}

static void usage(FILE *f) {
        fprintf(f, "usage: bench-kmsg-latency --daemon PATH --plugin-dir DIR --config FILE --rules FILE "
                   "[--source kmsg|journal] [--samples N]\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"daemon", required_argument, NULL, 'd'}, {"plugin-dir", required_argument, NULL, 'p'},
                {"config", required_argument, NULL, 'c'}, {"rules", required_argument, NULL, 'r'},
                {"source", required_argument, NULL, 's'}, {"samples", required_argument, NULL, 'n'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        const char *daemon_path = NULL, *plugin_dir = NULL, *config = NULL, *rules = NULL, *source = "kmsg";
        char dir[] = "/tmp/nhkmsglat.XXXXXX", path[4200], node[64], match[128], *text = NULL, *devkmsg = NULL;
        uint64_t *record = NULL, *kernel = NULL, transition = 0;
        size_t samples = 200, got = 0;
        struct daemon d = {.pid = 0, .out_fd = -1};
        sd_journal *events = NULL, *kernel_lines = NULL, *transitions = NULL;
        int c, fd = -1, ret = 1, r;
        bool made_dir = false;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        daemon_path = optarg;
                        break;
                case 'p':
                        plugin_dir = optarg;
                        break;
                case 'c':
                        config = optarg;
                        break;
                case 'r':
                        rules = optarg;
                        break;
                case 's':
                        source = optarg;
                        break;
                case 'n': {
                        char *end;
                        errno = 0;
                        unsigned long long v = strtoull(optarg, &end, 10);
                        if (errno || *end || v < 1 || v > 100000) {
                                fprintf(stderr, "bench-kmsg-latency: --samples takes 1 to 100000, not '%s'\n", optarg);
                                return 64;
                        }
                        samples = (size_t) v;
                        break;
                }
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 64;
                }
        if (!daemon_path || !plugin_dir || !config || !rules || optind != argc ||
            (strcmp(source, "kmsg") != 0 && strcmp(source, "journal") != 0)) {
                usage(stderr);
                return 64;
        }
        if (geteuid() != 0) {
                printf("# kernel_log latency{source=\"%s\"}: not root (writing /dev/kmsg needs it): not measured\n",
                       source);
                return 0;
        }
        record = calloc(samples, sizeof(*record));
        kernel = calloc(samples, sizeof(*kernel));
        if (!record || !kernel || !mkdtemp(dir)) {
                fprintf(stderr, "bench-kmsg-latency: %s\n", strerror(errno));
                goto out;
        }
        made_dir = true;
        (void) chmod(dir, 0755);

        /* The shipped configuration, and a drop-in: this reader, only new lines, no rate limit. */
        text = read_text(config);
        if (!text) {
                fprintf(stderr, "bench-kmsg-latency: cannot read %s: %s\n", config, strerror(errno));
                goto out;
        }
        snprintf(path, sizeof(path), "%s/nodehealthd.json", dir);
        r = write_text(path, text);
        snprintf(path, sizeof(path), "%s/conf.d", dir);
        if (r < 0 || mkdir(path, 0755) < 0) {
                fprintf(stderr, "bench-kmsg-latency: cannot write the configuration in %s\n", dir);
                goto out;
        }
        free(text);
        text = NULL;
        if (asprintf(&text,
                     "{\"probes\": {\"kernel\": {\"plugin\": \"kernel_log\", \"npd_config\": \"%s\", \"source\": "
                     "\"%s\", "
                     "\"lookback\": \"0\", \"raise_after\": 1, \"clear_after\": 1, \"event_burst\": 100000}}, "
                     "\"http\": {\"listen\": \"\"}}\n",
                     rules, source) < 0)
                goto out;
        snprintf(path, sizeof(path), "%s/conf.d/90-bench.json", dir);
        if (write_text(path, text) < 0)
                goto out;

        /* Without "on" the kernel lets user space write 10 lines per 5 s. */
        devkmsg = read_text(DEVKMSG_SYSCTL);
        if (!devkmsg || write_text(DEVKMSG_SYSCTL, "on\n") < 0) {
                fprintf(stderr, "bench-kmsg-latency: cannot set %s\n", DEVKMSG_SYSCTL);
                goto out;
        }
        fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "bench-kmsg-latency: cannot open /dev/kmsg: %s\n", strerror(errno));
                goto out;
        }

        srandom((unsigned) getpid());
        snprintf(node, sizeof(node), "bench-kmsg-%d", (int) getpid());
        snprintf(match, sizeof(match), "NODEHEALTH_NODE=%s", node);
        if (open_at_tail(&events, "NODEHEALTH_EVENT=OOMKilling", match) < 0 ||
            open_at_tail(&transitions, "NODEHEALTH_CONDITION=ReadonlyFilesystem", match) < 0 ||
            open_at_tail(&kernel_lines, "_TRANSPORT=kernel", NULL) < 0) {
                fprintf(stderr, "bench-kmsg-latency: cannot open the journal (is journald running?)\n");
                goto out;
        }

        {
                char conf[4200], err[4200];
                snprintf(conf, sizeof(conf), "%s/nodehealthd.json", dir);
                snprintf(err, sizeof(err), "%s/stderr", dir);
                char *dargv[] = {(char *) daemon_path, "--config", conf,   "--plugin-dir",
                                 (char *) plugin_dir,  "--format", "json", "--standalone",
                                 "--node-name",        node,       NULL};
                if (daemon_start(&d, dargv, err) < 0 || !wait_output(&d, "\"conditions\":[")) {
                        fprintf(stderr, "bench-kmsg-latency: the daemon did not start\n");
                        goto out;
                }
        }
        if (!strstr(d.out, "\"type\":\"ReadonlyFilesystem\",\"status\":\"False\"")) {
                fprintf(stderr, "bench-kmsg-latency: the kernel_log probe is not running:\n%s\n", d.out);
                goto out;
        }

        for (size_t i = 0; i < samples; i++) {
                char line[512], needle[128];
                uint64_t t0, t;
                int n;

                snprintf(needle, sizeof(needle), "Killed process %zu (nhbench%dn%zu)", 1000 + i, (int) getpid(), i);
                n = snprintf(line, sizeof(line),
                             "<4>kernel: Out of memory: %s total-vm:2048kB, anon-rss:1024kB, file-rss:0kB, "
                             "shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:0\n",
                             needle);
                /* A random pause first, 0-20 ms: writes must not fall in step with the probe's 10 ms poll. */
                (void) nanosleep(&(struct timespec){.tv_nsec = (long) (random() % 20000) * 1000}, NULL);
                d.mark = d.len;
                t0 = clock_usec(CLOCK_REALTIME);
                if (write(fd, line, (size_t) n) != n) {
                        fprintf(stderr, "bench-kmsg-latency: writing /dev/kmsg: %s\n", strerror(errno));
                        goto out;
                }
                if (!wait_output(&d, needle)) {
                        fprintf(stderr, "bench-kmsg-latency: no event for sample %zu on the daemon's stdout\n", i);
                        goto out;
                }
                if (find_record(events, needle, &t) < 0) {
                        fprintf(stderr, "bench-kmsg-latency: no journal record for sample %zu\n", i);
                        goto out;
                }
                record[i] = t > t0 ? t - t0 : 0;
                if (find_record(kernel_lines, needle, &t) < 0) {
                        fprintf(stderr, "bench-kmsg-latency: journald did not store sample %zu's kernel line\n", i);
                        goto out;
                }
                kernel[i] = t > t0 ? t - t0 : 0;
                got++;
        }

        /* One transition: a read-only remount makes ReadonlyFilesystem True. */
        {
                char line[256], needle[96];
                uint64_t t0, t;
                int n;

                snprintf(needle, sizeof(needle), "EXT4-fs (nhbench%d)", (int) getpid());
                n = snprintf(line, sizeof(line), "<4>kernel: %s: Remounting filesystem read-only\n", needle);
                d.mark = d.len;
                t0 = clock_usec(CLOCK_REALTIME);
                if (write(fd, line, (size_t) n) != n || !wait_output(&d, "\"status\":\"True\"") ||
                    find_record(transitions, needle, &t) < 0) {
                        fprintf(stderr, "bench-kmsg-latency: no ReadonlyFilesystem transition record\n");
                        goto out;
                }
                transition = t > t0 ? t - t0 : 0;
        }

        qsort(record, got, sizeof(*record), compare_u64);
        qsort(kernel, got, sizeof(*kernel), compare_u64);
        printf("# kernel_log latency: %zu samples, the daemon reading %s; /dev/kmsg write to the journal's "
               "__REALTIME_TIMESTAMP\n",
               got, strcmp(source, "kmsg") == 0 ? "/dev/kmsg" : "the journal");
        printf("kernel_log_kmsg_to_record_ms_p50{source=\"%s\"} %.1f\n", source, quantile_ms(record, got, 0.5));
        printf("kernel_log_kmsg_to_record_ms_p99{source=\"%s\"} %.1f\n", source, quantile_ms(record, got, 0.99));
        printf("kernel_log_kmsg_to_record_ms_max{source=\"%s\"} %.1f\n", source, quantile_ms(record, got, 1.0));
        printf("kernel_log_kmsg_to_journal_ms_p50{source=\"%s\"} %.1f\n", source, quantile_ms(kernel, got, 0.5));
        printf("kernel_log_kmsg_to_journal_ms_p99{source=\"%s\"} %.1f\n", source, quantile_ms(kernel, got, 0.99));
        printf("kernel_log_kmsg_to_transition_record_ms{source=\"%s\"} %.1f\n", source, (double) transition / 1000.0);
        ret = 0;
out:
        r = daemon_stop(&d);
        if (r != 0) {
                fprintf(stderr, "bench-kmsg-latency: the daemon exited %d after SIGTERM\n", r);
                ret = 1;
        }
        if (ret != 0 && made_dir) {
                char *err;
                snprintf(path, sizeof(path), "%s/stderr", dir);
                err = read_text(path);
                if (err)
                        fprintf(stderr, "daemon stderr:\n%s", err);
                free(err);
        }
        if (devkmsg)
                (void) write_text(DEVKMSG_SYSCTL, devkmsg);
        if (fd >= 0)
                close(fd);
        sd_journal_close(events);
        sd_journal_close(kernel_lines);
        sd_journal_close(transitions);
        if (made_dir) {
                static const char *const files[] = {"conf.d/90-bench.json", "conf.d", "nodehealthd.json", "stderr"};
                for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                        if (unlink(path) < 0 && errno == EISDIR)
                                (void) rmdir(path);
                }
                (void) rmdir(dir);
        }
        free(d.out);
        free(devkmsg);
        free(text);
        free(record);
        free(kernel);
        return ret;
}
