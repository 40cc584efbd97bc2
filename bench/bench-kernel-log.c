/* SPDX-License-Identifier: MIT */
/*
 * bench-kernel-log: how fast the kernel_log probe goes through the journal with the shipped
 * rules (conf/npd/kernel-monitor.json).  Builds a journal of N kernel entries (default one
 * million) with systemd-journal-remote from export format, a realistic mix of kernel lines with
 * one in a thousand matching a rule, then prints, one per line ("name value"):
 *
 *   kernel_log_entries                    N
 *   kernel_log_journal_read_per_second    sd_journal_next + sd_journal_get_data("MESSAGE") alone:
 *                                         the floor no reader of this journal goes below
 *   kernel_log_probe_per_second           the real probe (loaded through the real loader into a
 *                                         real condition table) reading all N as its lookback:
 *                                         entries per second of CPU time, one core
 *   kernel_log_probe_wall_per_second      the same per second of wall time
 *   kernel_log_rules_per_second           the rules alone over the same lines in memory (buffer,
 *                                         prefilter, PCRE2 JIT): what matching costs
 *   kernel_log_events                     events the probe sent (rate-limited per rule)
 *
 * It measures, it never judges.  Usage: bench-kernel-log [--entries N] [--keep] (--keep leaves the journal in /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "conditions.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "probe.h"
#include "rules.h"
#include "util.h"

#define JOURNAL_REMOTE "/lib/systemd/systemd-journal-remote"
#define RULES TOP_SRCDIR "/conf/npd/kernel-monitor.json"

/* What a busy Kubernetes node's kernel says, most of it matching no rule. */
static const char *const background[] = {
        "IPv6: ADDRCONF(NETDEV_CHANGE): veth@: link becomes ready",
        "cni0: port @(veth3a9c2f1b) entered forwarding state",
        "cni0: port @(veth3a9c2f1b) entered disabled state",
        "device veth@ entered promiscuous mode",
        ("audit: type=1400 audit(1700000000.@:812): apparmor=\"STATUS\" operation=\"profile_load\" "
         "profile=\"unconfined\" name=\"cri-containerd.apparmor.d\" pid=4242 comm=\"apparmor_parser\""),
        "EXT4-fs (loop@): mounted filesystem with ordered data mode. Quota mode: none.",
        "overlayfs: upper fs does not support RENAME_WHITEOUT (@).",
        "IPVS: rr: TCP 10.96.0.@:443 - no destination available",
        "nf_conntrack: default automatic helper assignment has been turned off for security reasons (@)",
        "eth0: renamed from tmp@",
        ("xt_physdev: using --physdev-out in the OUTPUT, FORWARD and POSTROUTING chains for non-bridged traffic is "
         "deprecated (@)"),
        "systemd-journald[@]: Received client request to flush runtime journal.",
        "Memory cgroup stats for /kubepods/burstable/pod@:",
        "Tasks state (memory values in pages): @",
        "[  @]     0  4242    12345     6789   102400        0           985 java",
        "TCP: request_sock_TCP: Possible SYN flooding on port @. Sending cookies.  Check SNMP counters.",
};

/* One in a thousand: lines that rules match. */
static const char *const problems[] = {
        ("Memory cgroup out of memory: Killed process @ (java) total-vm:4458536kB, anon-rss:3524424kB, "
         "file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:7100kB oom_score_adj:985"),
        "INFO: task kworker/u8:2:@ blocked for more than 122 seconds.",
        "Buffer I/O error on dev sdb1, logical block @, async page read",
        "unregister_netdevice: waiting for eth0 to become free. Usage count = @",
};

/* The template with its "@" replaced by a number. */
static const char *line_for(unsigned i, char *buf, size_t size) {
        const char *t = i % 1000 == 999 ? problems[(i / 1000) % (sizeof(problems) / sizeof(problems[0]))]
                                        : background[i % (sizeof(background) / sizeof(background[0]))];
        const char *at = strchr(t, '@');

        snprintf(buf, size, "%.*s%u%s", (int) (at - t), t, i % 100000, at + 1);
        return buf;
}

static uint64_t clock_now(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int run(char *const *argv) {
        pid_t pid;
        int status;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                execv(argv[0], argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* dir/bench.journal with n kernel entries of this boot, the newest a second ago. */
static int make_journal(const char *dir, unsigned n) {
        char export_path[128], output[128], boot[SD_ID128_STRING_MAX], line[512];
        uint64_t now = clock_now(CLOCK_REALTIME) - 1000000, mono = clock_now(CLOCK_MONOTONIC);
        sd_id128_t boot_id;
        FILE *f;
        int r;

        if (sd_id128_get_boot(&boot_id) < 0)
                return -EIO;
        snprintf(export_path, sizeof(export_path), "%s/entries.export", dir);
        f = fopen(export_path, "we");
        if (!f)
                return -errno;
        for (unsigned i = 0; i < n; i++)
                fprintf(f,
                        "__REALTIME_TIMESTAMP=%llu\n__MONOTONIC_TIMESTAMP=%llu\n_BOOT_ID=%s\n_TRANSPORT=kernel\n"
                        "SYSLOG_IDENTIFIER=kernel\nPRIORITY=6\nSYSLOG_FACILITY=0\nMESSAGE=%s\n\n",
                        (unsigned long long) (now - (n - i)), (unsigned long long) (mono - (n - i)),
                        sd_id128_to_string(boot_id, boot), line_for(i, line, sizeof(line)));
        if (fclose(f) != 0)
                return -errno;
        snprintf(output, sizeof(output), "--output=%s/bench.journal", dir);
        r = run((char *const[]){JOURNAL_REMOTE, output, export_path, NULL});
        unlink(export_path);
        return r == 0 ? 0 : -EIO;
}

static double journal_floor(const char *dir, unsigned *ret_n) {
        sd_journal *j = NULL;
        uint64_t start;
        unsigned n = 0;
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || sd_journal_open_directory_fd(&j, fd, 0) < 0)
                return 0;
        sd_journal_add_match(j, "_TRANSPORT=kernel", 0);
        start = clock_now(CLOCK_PROCESS_CPUTIME_ID);
        while (sd_journal_next(j) > 0) {
                const void *data;
                size_t len;
                if (sd_journal_get_data(j, "MESSAGE", &data, &len) >= 0)
                        n++;
        }
        start = clock_now(CLOCK_PROCESS_CPUTIME_ID) - start;
        sd_journal_close(j);
        close(fd);
        *ret_n = n;
        return start ? n / (start / 1e6) : 0;
}

/* ---- the real probe ---- */

struct bench {
        sd_event *event;
        struct nh_table *table;
        struct nh_probe_host host;
        uint64_t events;
};

static void on_event(void *userdata, const char *probe, const char *reason, const char *message) {
        struct bench *b = userdata;
        b->events++;
}

static int probe_run(const char *root, unsigned n, double *ret_cpu_rate, double *ret_wall_rate, uint64_t *ret_events) {
        struct bench b = {0};
        struct nh_config *config = NULL;
        struct nh_plugin_handle *handle = NULL;
        struct nh_probe_ctx *p = NULL;
        char *error = NULL, path[128], *dirs[2] = {NULL, NULL}, text[1024];
        uint64_t cpu, wall;
        FILE *f;
        int r;

        snprintf(path, sizeof(path), "%s/nodehealthd.json", root);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        /* Lookback covers every entry: the first cycle reads them all. */
        snprintf(text, sizeof(text),
                 "{\"probes\": {\"memory\": {\"enabled\": false}, \"pid\": {\"enabled\": false}, \"network\": "
                 "{\"enabled\": false}, \"kernel\": {\"plugin\": \"kernel_log\", \"source\": \"journal\", "
                 "\"journal_directory\": \"/journal\", \"npd_config\": \"%s\", \"lookback\": \"1h\", \"timeout\": "
                 "\"1h\"}}}",
                 RULES);
        fputs(text, f);
        fclose(f);
        r = nh_config_load(path, &config, &error);
        if (r < 0) {
                fprintf(stderr, "bench-kernel-log: %s\n", error ? error : strerror(-r));
                return r;
        }
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                b.host.root_fds[i] = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        sd_event_new(&b.event);
        b.table = nh_table_new(NULL, NULL);
        b.host.table = b.table;
        b.host.event = b.event;
        b.host.event_cb = on_event;
        b.host.userdata = &b;
        dirs[0] = (char *) TOP_BUILDDIR "/plugins/.libs";
        for (size_t i = 0; i < config->n_probes; i++) {
                if (!config->probes[i].enabled)
                        continue;
                r = nh_plugin_open(dirs, config->probes[i].plugin, &handle, &error);
                if (r >= 0)
                        r = nh_probe_new(&b.host, &config->probes[i], handle, config->positions, &p, &error);
                if (r < 0) {
                        fprintf(stderr, "bench-kernel-log: %s\n", error ? error : strerror(-r));
                        return r;
                }
        }
        r = nh_probe_start(p);
        if (r < 0)
                return r;
        wall = clock_now(CLOCK_MONOTONIC);
        cpu = clock_now(CLOCK_PROCESS_CPUTIME_ID);
        (void) nh_probe_run(p);
        while (nh_probe_pending(p))
                if (sd_event_run(b.event, UINT64_MAX) < 0)
                        break;
        cpu = clock_now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        wall = clock_now(CLOCK_MONOTONIC) - wall;
        *ret_cpu_rate = n / (cpu / 1e6);
        *ret_wall_rate = n / (wall / 1e6);
        *ret_events = b.events;
        nh_probe_free(p);
        nh_table_free(b.table);
        sd_event_unref(b.event);
        nh_config_free(config);
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                close(b.host.root_fds[i]);
        return 0;
}

/* ---- the rules alone ---- */

static double rules_only(unsigned n) {
        struct kl_rules *r = NULL;
        struct kl_buffer *b;
        char *error = NULL, **lines;
        size_t *lens;
        uint64_t start, matches = 0;

        if (kl_rules_load(AT_FDCWD, RULES, &r, &error) < 0) {
                fprintf(stderr, "bench-kernel-log: %s\n", error);
                return 0;
        }
        b = kl_buffer_new(r->buffer_size);
        lines = calloc(n, sizeof(*lines));
        lens = calloc(n, sizeof(*lens));
        for (unsigned i = 0; i < n; i++) {
                char line[512];
                lines[i] = strdup(line_for(i, line, sizeof(line)));
                lens[i] = strlen(lines[i]);
        }
        start = clock_now(CLOCK_PROCESS_CPUTIME_ID);
        for (unsigned i = 0; i < n; i++) {
                struct kl_match m;
                kl_buffer_push(b, lines[i], lens[i]);
                kl_rules_prefilter(r, lines[i], lens[i]);
                for (size_t k = 0; k < r->n_rules; k++)
                        if (r->candidates[2 * k] && kl_pattern_match(r, &r->rules[k].pattern, b, &m) > 0)
                                matches++;
        }
        start = clock_now(CLOCK_PROCESS_CPUTIME_ID) - start;
        printf("kernel_log_rules_matches %llu\n", (unsigned long long) matches);
        for (unsigned i = 0; i < n; i++)
                free(lines[i]);
        free(lines);
        free(lens);
        kl_buffer_free(b);
        kl_rules_free(r);
        return n / (start / 1e6);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"entries", required_argument, NULL, 'n'},
                {"keep", no_argument, NULL, 'k'},
                {},
        };
        unsigned n = 1000000, read_n = 0;
        const char *keep = NULL;
        char root[] = "/tmp/nhbench-klog.XXXXXX", dir[64];
        double floor_rate, cpu_rate = 0, wall_rate = 0;
        uint64_t events = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                char *end;
                switch (c) {
                case 'n':
                        errno = 0;
                        n = (unsigned) strtoul(optarg, &end, 10);
                        if (errno || *end || n == 0) {
                                fprintf(stderr, "bench-kernel-log: --entries takes a positive number\n");
                                return 64;
                        }
                        break;
                case 'k':
                        keep = "yes";
                        break;
                default:
                        return 64;
                }
        }
        log_set_max_level(4); /* warnings: the probe's info lines are not figures */
        if (access(JOURNAL_REMOTE, X_OK) < 0) {
                fprintf(stderr, "bench-kernel-log: %s is missing (package systemd-journal-remote)\n", JOURNAL_REMOTE);
                return 1;
        }
        if (!mkdtemp(root))
                return 1;
        snprintf(dir, sizeof(dir), "%s/journal", root);
        if (mkdir(dir, 0755) < 0 || make_journal(dir, n) < 0) {
                fprintf(stderr, "bench-kernel-log: cannot make the journal in %s\n", dir);
                return 1;
        }
        floor_rate = journal_floor(dir, &read_n);
        r = probe_run(root, read_n, &cpu_rate, &wall_rate, &events);
        printf("kernel_log_entries %u\n", read_n);
        printf("kernel_log_journal_read_per_second %.0f\n", floor_rate);
        if (r >= 0) {
                printf("kernel_log_probe_per_second %.0f\n", cpu_rate);
                printf("kernel_log_probe_wall_per_second %.0f\n", wall_rate);
                printf("kernel_log_events %llu\n", (unsigned long long) events);
        }
        printf("kernel_log_rules_per_second %.0f\n", rules_only(n));
        if (keep)
                printf("# journal kept in %s\n", dir);
        else {
                char cmd[128];
                snprintf(cmd, sizeof(cmd), "%s/bench.journal", dir);
                unlink(cmd);
                snprintf(cmd, sizeof(cmd), "%s/nodehealthd.json", root);
                unlink(cmd);
                rmdir(dir);
                rmdir(root);
        }
        return r < 0 ? 1 : 0;
}
