/* SPDX-License-Identifier: MIT */
/*
 * The kernel_log probe in the real daemon, with the shipped configuration and rule file plus a
 * drop-in that enables it, against the real kernel log: lines written to /dev/kmsg as
 * "<4>kernel: TEXT" (the kernel stores them, journald stores them as _TRANSPORT=kernel with
 * MESSAGE=TEXT, as it stores a real kernel line) and a real journald.
 *
 * Both readers: kmsg (what "auto" picks for the shipped file, which asks for "kmsg") and the
 * journal (source "journal", polled).  An OOM line gives the event on stdout and in the journal
 * (NODEHEALTH_EVENT=OOMKilling); a read-only remount makes ReadonlyFilesystem True; a flood of
 * 20,000 lines (kernel.printk_devkmsg=on, restored after) is read through or its losses are
 * reported, and a rule line after it is still seen.  The time from the write to the event line
 * on stdout is printed as a TAP comment (no timed assertion).
 *
 * journald restarted under the daemon (stopped with SIGTERM, as systemctl restart does, and with
 * SIGKILL, as a crash leaves its files; then started again as ./test.sh starts it): the probe
 * does not spin while journald is away, a line written meanwhile arrives once journald is back
 * (it reads the kernel's ring from where it stopped), and later lines give their events and
 * conditions, as journal records too.  The test leaves a running journald behind, failed or not.
 *
 * Every line carries a marker unique to this run, and the drop-in sets lookback to 0, so lines
 * of other runs and other tests do not count.  Needs root (to write /dev/kmsg and the sysctl)
 * and a running journald (./test.sh starts one): without them it fails and says why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 20000
#define FLOOD_LINES 20000
#define LATENCY_SAMPLES 10

struct env {
        char *dir;
        char *conf;
        char *plugin_dir;
        char marker[48]; /* unique per test: "nhk<pid>t<n>" */
        char *devkmsg; /* kernel.printk_devkmsg before the test */
        char node[64];
        struct proc *daemon; /* freed (killed) by teardown when a test fails half-way */
};

static unsigned test_counter;

static void require_root_and_journald(void) {
        struct stat st;

        if (geteuid() != 0)
                fail_msg("not root: writing /dev/kmsg and kernel.printk_devkmsg needs root (CI runs as root)");
        if (stat("/run/systemd/journal/socket", &st) < 0)
                fail_msg("no journald: /run/systemd/journal/socket is missing (./test.sh starts one)");
        if (sd_journal_print(LOG_DEBUG, "nodehealthd test-kernel-log-real: is journald there?") < 0)
                fail_msg("no journald answers on /run/systemd/journal/socket (./test.sh starts one)");
}

#define DEVKMSG "/proc/sys/kernel/printk_devkmsg"

static char *read_sysctl(const char *path) {
        char *text = test_read_file(path);

        assert_non_null(text);
        text[strcspn(text, "\n")] = '\0';
        return text;
}

static void write_sysctl(const char *path, const char *value) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fprintf(f, "%s\n", value);
        assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *shipped, *text, *dropin = NULL, *rules;

        assert_non_null(e);
        e->dir = test_mkdtemp();
        snprintf(e->marker, sizeof(e->marker), "nhk%dt%u", (int) getpid(), ++test_counter);
        snprintf(e->node, sizeof(e->node), "ktest-%s", e->marker);
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        /* Without "on" the kernel lets user space write 10 lines per 5 s and drops the rest. */
        if (geteuid() == 0) {
                e->devkmsg = read_sysctl(DEVKMSG);
                write_sysctl(DEVKMSG, "on");
        }

        /* The shipped configuration as it is, plus a drop-in, as an operator enables the probe. */
        shipped = test_path(test_srcdir(), "conf/nodehealthd.json");
        text = test_read_file(shipped);
        assert_non_null(text);
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        rules = test_path(test_srcdir(), "conf/npd/kernel-monitor.json");
        assert_true(asprintf(&dropin,
                             "{\"probes\": {\"kernel\": {\"plugin\": \"kernel_log\", \"npd_config\": \"%s\", "
                             "\"raise_after\": 1, \"clear_after\": 1, \"lookback\": \"0\", \"event_burst\": 100}}, "
                             /* No HTTP endpoint: daemons of tests that run at the same time would share its port. */
                             "\"http\": {\"listen\": \"\"}}",
                             rules) >= 0);
        test_write_file(e->dir, "conf/conf.d/50-kernel.json", dropin);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        free(dropin);
        free(rules);
        free(text);
        free(shipped);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        proc_free(e->daemon);
        if (e->devkmsg)
                write_sysctl(DEVKMSG, e->devkmsg);
        free(e->devkmsg);
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->plugin_dir);
        free(e);
        return 0;
}

/* A drop-in after the first: "source": "journal" and the like. */
static void add_dropin(struct env *e, const char *json) {
        test_write_file(e->dir, "conf/conf.d/60-test.json", json);
}

static struct proc *start_daemon(struct env *e) {
        char *argv[] = {(char *) test_daemon_path(),
                        "--config",
                        e->conf,
                        "--plugin-dir",
                        e->plugin_dir,
                        "--format",
                        "json",
                        "--standalone",
                        "--node-name",
                        e->node,
                        NULL};
        struct proc *p = proc_spawn(argv);

        if (!proc_wait_output(p, "\"conditions\":[", false, DEADLINE_MS))
                fail_msg("the daemon did not print its start table; stderr:\n%s", p->err);
        if (!strstr(p->out, "\"type\":\"ReadonlyFilesystem\""))
                fail_msg("kernel_log's conditions are not in the start table:\n%s\nstderr:\n%s", p->out, p->err);
        return p;
}

static void stop_daemon(struct proc *p) {
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

/* One record in the kernel's log, as the kernel writes it through printk. */
static void kmsg_write(int fd, const char *text) {
        char line[1024];
        int n = snprintf(line, sizeof(line), "<4>kernel: %s\n", text);

        assert_true(n > 0 && (size_t) n < sizeof(line));
        if (write(fd, line, (size_t) n) != n)
                fail_msg("writing to /dev/kmsg: %s", strerror(errno));
}

static int kmsg_open(void) {
        int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                fail_msg("cannot open /dev/kmsg for writing: %s", strerror(errno));
        return fd;
}

static uint64_t mono_usec(void) {
        return now_usec(CLOCK_MONOTONIC);
}

/* Waits for a record of `node` with `field` ("NAME=VALUE") whose MESSAGE holds `needle`. */
static bool journal_has_record(const char *node, const char *field, const char *needle) {
        uint64_t deadline = mono_usec() + DEADLINE_MS * USEC_PER_MSEC;
        sd_journal *j = NULL;
        char match[128];
        bool found = false;

        assert_int_equal(sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY), 0);
        assert_int_equal(sd_journal_add_match(j, field, 0), 0);
        snprintf(match, sizeof(match), "NODEHEALTH_NODE=%s", node);
        assert_int_equal(sd_journal_add_match(j, match, 0), 0);
        while (!found) {
                const void *data;
                size_t len;
                uint64_t now;

                while (!found && sd_journal_next(j) > 0)
                        if (sd_journal_get_data(j, "MESSAGE", &data, &len) >= 0 &&
                            memmem(data, len, needle, strlen(needle)))
                                found = true;
                now = mono_usec();
                if (found || now >= deadline)
                        break;
                (void) sd_journal_wait(j, deadline - now < 100000 ? deadline - now : 100000);
        }
        sd_journal_close(j);
        return found;
}

/* Waits for a NODEHEALTH_EVENT=reason record whose MESSAGE holds `needle`. */
static bool journal_has_event(const char *node, const char *reason, const char *needle) {
        char field[128];

        snprintf(field, sizeof(field), "NODEHEALTH_EVENT=%s", reason);
        return journal_has_record(node, field, needle);
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/*
 * Writes OOM lines one at a time and times each until its event is on stdout; prints the
 * median and the largest as a TAP comment.
 */
static void measure_latency(struct env *e, struct proc *p, int fd, const char *what) {
        uint64_t samples[LATENCY_SAMPLES];

        for (size_t i = 0; i < LATENCY_SAMPLES; i++) {
                char line[256], needle[128];
                uint64_t start;

                snprintf(needle, sizeof(needle), "Killed process %zu (%sl%zu)", 5000 + i, e->marker, i);
                snprintf(line, sizeof(line),
                         "Out of memory: %s total-vm:1024kB, anon-rss:512kB, file-rss:0kB, "
                         "shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:0",
                         needle);
                proc_mark(p);
                start = mono_usec();
                kmsg_write(fd, line);
                if (!proc_wait_output(p, needle, false, DEADLINE_MS))
                        fail_msg("no event for \"%s\" (%s); stderr:\n%s", line, what, p->err);
                samples[i] = mono_usec() - start;
        }
        qsort(samples, LATENCY_SAMPLES, sizeof(samples[0]), compare_u64);
        printf("# kernel_log %s: /dev/kmsg write to the event on stdout: median %.1f ms, max %.1f ms (%d samples)\n",
               what, (double) samples[LATENCY_SAMPLES / 2] / 1000.0, (double) samples[LATENCY_SAMPLES - 1] / 1000.0,
               LATENCY_SAMPLES);
}

static void oom_and_readonly(struct env *e, const char *what) {
        char line[256], needle[512];
        struct proc *p;
        int fd;

        require_root_and_journald();
        p = start_daemon(e);
        assert_non_null(strstr(p->out, "\"type\":\"ReadonlyFilesystem\",\"status\":\"False\""));
        fd = kmsg_open();

        /* An OOM kill: the event on stdout, as NPD's event JSON, and a journal record. */
        proc_mark(p);
        snprintf(line, sizeof(line),
                 "Out of memory: Killed process 4242 (%s) total-vm:2142800kB, anon-rss:1933788kB, file-rss:4kB, "
                 "shmem-rss:0kB, UID:0 pgtables:3864kB oom_score_adj:1000",
                 e->marker);
        kmsg_write(fd, line);
        snprintf(needle, sizeof(needle),
                 "{\"node\":\"%s\",\"event\":{\"reason\":\"OOMKilling\",\"message\":\"%s\",\"type\":\"Warning\"}}",
                 e->node, line);
        if (!proc_wait_output(p, needle, false, DEADLINE_MS))
                fail_msg("no OOMKilling event (%s); stdout:\n%s\nstderr:\n%s", what, p->out, p->err);
        if (!journal_has_event(e->node, "OOMKilling", e->marker))
                fail_msg("no NODEHEALTH_EVENT=OOMKilling record with %s in the journal (%s)", e->marker, what);

        /* A read-only remount: ReadonlyFilesystem True, the line as its message. */
        proc_mark(p);
        snprintf(line, sizeof(line), "EXT4-fs (%s): Remounting filesystem read-only", e->marker);
        kmsg_write(fd, line);
        snprintf(needle, sizeof(needle), "\"type\":\"ReadonlyFilesystem\",\"status\":\"True\",\"lastHeartbeatTime\"");
        if (!proc_wait_output(p, needle, false, DEADLINE_MS))
                fail_msg("ReadonlyFilesystem did not become True (%s); stdout:\n%s\nstderr:\n%s", what, p->out, p->err);
        assert_contains(p->out + p->out_mark, "\"reason\":\"FilesystemIsReadOnly\"");
        assert_contains(p->out + p->out_mark, line);

        measure_latency(e, p, fd, what);
        close(fd);
        stop_daemon(p);
        proc_free(p);
}

static void test_kmsg_reader(void **state) {
        struct env *e = *state;

        /* The shipped file says "plugin": "kmsg": "auto" reads /dev/kmsg. */
        oom_and_readonly(e, "kmsg reader");
}

static void test_journal_reader(void **state) {
        struct env *e = *state;

        add_dropin(e, "{\"probes\": {\"kernel\": {\"source\": \"journal\"}}}");
        oom_and_readonly(e, "journal reader (polled every 10ms)");
}

/* ---- the flood ---- */

static void flood(struct env *e, const char *what) {
        char line[256], needle[128];
        uint64_t start, took;
        const char *drops;
        struct proc *p;
        int fd;

        require_root_and_journald();
        p = start_daemon(e);
        fd = kmsg_open();
        start = mono_usec();
        for (unsigned i = 0; i < FLOOD_LINES; i++) {
                snprintf(line, sizeof(line), "%s flood line %u: nothing any rule knows about", e->marker, i);
                kmsg_write(fd, line);
        }
        took = mono_usec() - start;
        snprintf(needle, sizeof(needle), "(%sa)", e->marker);
        snprintf(line, sizeof(line),
                 "Out of memory: Killed process 77 %s total-vm:1024kB, anon-rss:512kB, file-rss:0kB, shmem-rss:0kB",
                 needle);
        proc_mark(p);
        kmsg_write(fd, line);
        close(fd);

        if (!proc_wait_output(p, needle, false, DEADLINE_MS))
                fail_msg("the OOM line after a flood of %d lines was not seen (%s); stderr:\n%s", FLOOD_LINES, what,
                         p->err);
        stop_daemon(p);
        /* Kept up, or said how many lines it could not look at. */
        drops = strstr(p->err, "kernel messages were not looked at");
        printf("# kernel_log %s: %d lines written in %.0f ms (%.0f lines/s); %s\n", what, FLOOD_LINES,
               (double) took / 1000.0, FLOOD_LINES / ((double) took / 1e6),
               drops ? "the probe reported lines it could not read:" : "the probe reported no loss");
        if (drops) {
                const char *end = strchr(drops, '\n');
                const char *begin = drops;
                while (begin > p->err && begin[-1] != '\n')
                        begin--;
                printf("#   %.*s\n", (int) (end ? end - begin : (long) strlen(begin)), begin);
        }
        proc_free(p);
}

static void test_flood_kmsg(void **state) {
        flood(*state, "kmsg reader, flood");
}

static void test_flood_journal(void **state) {
        struct env *e = *state;

        add_dropin(e, "{\"probes\": {\"kernel\": {\"source\": \"journal\"}}}");
        flood(e, "journal reader, flood");
}

/* ---- journald restarted under the daemon ---- */

#define JOURNALD "/lib/systemd/systemd-journald"
#define JOURNAL_RUN_DIR "/run/systemd/journal"
#define JOURNAL_SOCKET JOURNAL_RUN_DIR "/socket"
#define DOWN_WINDOW_MS 2000

/* The running journald (its /proc/PID/exe is JOURNALD), 0 when there is none. */
static pid_t journald_pid(void) {
        char want[PATH_MAX], exe[PATH_MAX], path[64];
        pid_t found = 0;
        struct dirent *d;
        DIR *proc;

        assert_non_null(realpath(JOURNALD, want));
        proc = opendir("/proc");
        assert_non_null(proc);
        while ((d = readdir(proc))) {
                char *end;
                long pid = strtol(d->d_name, &end, 10);
                ssize_t n;

                if (*end || pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
                n = readlink(path, exe, sizeof(exe) - 1);
                if (n <= 0)
                        continue;
                exe[n] = '\0';
                if (strcmp(exe, want) == 0) {
                        found = (pid_t) pid;
                        break;
                }
        }
        closedir(proc);
        return found;
}

/* Waits until journald's socket exists and takes a record (inotify on its directory, a deadline). */
static bool journald_wait_ready(int timeout_ms) {
        uint64_t deadline = mono_usec() + (uint64_t) timeout_ms * USEC_PER_MSEC;
        int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        bool ready = false;

        assert_true(fd >= 0);
        assert_true(inotify_add_watch(fd, JOURNAL_RUN_DIR, IN_CREATE | IN_MOVED_TO | IN_ATTRIB) >= 0);
        for (;;) {
                struct stat st;
                char buf[4096];
                uint64_t now;

                if (stat(JOURNAL_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode) &&
                    sd_journal_print(LOG_DEBUG, "nodehealthd test-kernel-log-real: journald is back") >= 0) {
                        ready = true;
                        break;
                }
                now = mono_usec();
                if (now >= deadline)
                        break;
                /* A socket that exists but does not answer yet: look again soon, without an event. */
                (void) poll(&(struct pollfd){fd, POLLIN, 0}, 1,
                            stat(JOURNAL_SOCKET, &st) == 0 ? 10 : (int) ((deadline - now) / USEC_PER_MSEC) + 1);
                while (read(fd, buf, sizeof(buf)) > 0)
                        ;
        }
        close(fd);
        return ready;
}

/*
 * Starts journald as ./test.sh does (setsid, detached: not this test's child) unless one runs,
 * and waits for its socket.  Returns whether one answers.
 */
static bool journald_start(void) {
        pid_t child;
        int status;

        if (journald_pid() > 0)
                return journald_wait_ready(DEADLINE_MS);
        (void) mkdir("/run/systemd", 0755);
        (void) mkdir(JOURNAL_RUN_DIR, 0755);
        /* Sockets left by the journald that was stopped would make the wait pass too early. */
        (void) unlink(JOURNAL_SOCKET);
        (void) unlink(JOURNAL_RUN_DIR "/stdout");
        (void) unlink(JOURNAL_RUN_DIR "/dev-log");
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                if (fork() != 0)
                        _exit(0);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                (void) setsid();
                if (null >= 0) {
                        (void) dup2(null, 0);
                        (void) dup2(null, 1);
                        (void) dup2(null, 2);
                }
                execl(JOURNALD, JOURNALD, (char *) NULL);
                _exit(127);
        }
        assert_int_equal(waitpid(child, &status, 0), child);
        return journald_wait_ready(DEADLINE_MS);
}

/* Stops the running journald with `sig` (SIGKILL: as a crash leaves its files) and waits until it is gone. */
static void journald_stop(int sig) {
        pid_t pid = journald_pid();
        int pidfd;

        if (pid <= 0)
                fail_msg("no running %s to restart", JOURNALD);
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        assert_true(pidfd >= 0);
        assert_int_equal(kill(pid, sig), 0);
        if (poll(&(struct pollfd){pidfd, POLLIN, 0}, 1, DEADLINE_MS) != 1) {
                (void) kill(pid, SIGKILL);
                assert_int_equal(poll(&(struct pollfd){pidfd, POLLIN, 0}, 1, DEADLINE_MS), 1);
        }
        close(pidfd);
}

/* utime + stime of a process, in clock ticks. */
static uint64_t cpu_ticks(pid_t pid) {
        char path[64], *text, *p;
        unsigned long long utime, stime;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        text = test_read_file(path);
        assert_non_null(text);
        /* Field 2 (comm) may hold anything; field 3 follows its last ')'. */
        p = strrchr(text, ')');
        assert_non_null(p);
        assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime), 2);
        free(text);
        return utime + stime;
}

/* Writes an OOM line to /dev/kmsg whose process name is the marker and `tag`. */
static void oom_write(struct env *e, int fd, const char *tag) {
        char line[256];

        snprintf(line, sizeof(line),
                 "Out of memory: Killed process 4343 (%s%s) total-vm:1024kB, anon-rss:512kB, file-rss:0kB, "
                 "shmem-rss:0kB",
                 e->marker, tag);
        kmsg_write(fd, line);
}

/* Waits for the OOMKilling event of oom_write(e, fd, tag) on stdout and in the journal. */
static void oom_seen(struct env *e, const char *tag) {
        char needle[128];

        snprintf(needle, sizeof(needle), "Killed process 4343 (%s%s)", e->marker, tag);
        if (!proc_wait_output(e->daemon, needle, false, DEADLINE_MS))
                fail_msg("no OOMKilling event for \"%s\" on stdout; stdout:\n%s\nstderr:\n%s", needle, e->daemon->out,
                         e->daemon->err);
        if (!journal_has_event(e->node, "OOMKilling", needle))
                fail_msg("no NODEHEALTH_EVENT=OOMKilling record with \"%s\" in the journal", needle);
}

/*
 * journald stopped (SIGTERM, as systemctl restart does, or SIGKILL, as a crash) and started
 * again under a running daemon.  While it is down the probe must not spin (the daemon's CPU
 * time over DOWN_WINDOW_MS stays below half of it: a busy loop takes all of it) and the daemon
 * lives.  A line written to /dev/kmsg meanwhile: a journal reader gets it once the new
 * journald has read it from the kernel's ring (event and record); a kmsg reader gets it at
 * once, the daemon says that the record could not be written, keeps it and writes it once
 * journald is back.  Lines written after the restart give their event and condition, on
 * stdout and as journal records.
 */
static void journald_restart(struct env *e, bool reads_kmsg, const int *signals, size_t n_signals) {
        long hz = sysconf(_SC_CLK_TCK);
        char line[256], field[128];
        int fd;

        /* No other test reads the journal back while this one stops journald. */
        test_require_journald(true);
        require_root_and_journald();
        assert_true(hz > 0);
        e->daemon = start_daemon(e);
        fd = kmsg_open();
        oom_write(e, fd, "before");
        oom_seen(e, "before");

        for (size_t i = 0; i < n_signals; i++) {
                char tag[32];
                uint64_t t0, t1, used;

                journald_stop(signals[i]);
                snprintf(tag, sizeof(tag), "down%zu", i);
                oom_write(e, fd, tag);
                if (reads_kmsg) {
                        char needle[128];

                        /* The probe does not need journald: the event comes now, its record cannot. */
                        snprintf(needle, sizeof(needle), "Killed process 4343 (%s%s)", e->marker, tag);
                        if (!proc_wait_output(e->daemon, needle, false, DEADLINE_MS))
                                fail_msg("no event for \"%s\" while journald was down; stderr:\n%s", needle,
                                         e->daemon->err);
                        if (!proc_wait_output(e->daemon, "Cannot write to the journal", true, DEADLINE_MS))
                                fail_msg("the daemon did not say that its record was not written; stderr:\n%s",
                                         e->daemon->err);
                }
                /* A window of wall time with journald away: nothing to wait for, only to watch. */
                t0 = cpu_ticks(e->daemon->pid);
                (void) proc_wait_output(e->daemon, "a line that is never printed", false, DOWN_WINDOW_MS);
                t1 = cpu_ticks(e->daemon->pid);
                used = (t1 - t0) * 1000 / (uint64_t) hz;
                printf("# journald down (signal %d) for %d ms: the daemon used %llu ms of CPU\n", signals[i],
                       DOWN_WINDOW_MS, (unsigned long long) used);
                if (used >= DOWN_WINDOW_MS / 2)
                        fail_msg("the daemon used %llu ms of CPU in %d ms while journald was down: it spins",
                                 (unsigned long long) used, DOWN_WINDOW_MS);
                if (waitpid(e->daemon->pid, NULL, WNOHANG) != 0)
                        fail_msg("the daemon died while journald was down; stderr:\n%s", e->daemon->err);

                if (!journald_start())
                        fail_msg("%s did not start again", JOURNALD);
                /*
                 * Written while journald was away.  A journal reader gets it once the new journald
                 * has taken it from the kernel's ring; a kmsg reader had it at once, and its event's
                 * record, kept by the daemon, is written once journald is back.
                 */
                oom_seen(e, tag);
                if (reads_kmsg &&
                    !proc_wait_output(e->daemon, "The journal takes records again: 1 written late", true, DEADLINE_MS))
                        fail_msg("the daemon did not say it wrote the kept record; stderr:\n%s", e->daemon->err);
                snprintf(tag, sizeof(tag), "after%zu", i);
                oom_write(e, fd, tag);
                oom_seen(e, tag);
        }

        /* A condition after the restarts: ReadonlyFilesystem True, and its transition record. */
        proc_mark(e->daemon);
        snprintf(line, sizeof(line), "EXT4-fs (%safter): Remounting filesystem read-only", e->marker);
        kmsg_write(fd, line);
        if (!proc_wait_output(e->daemon, "\"type\":\"ReadonlyFilesystem\",\"status\":\"True\"", false, DEADLINE_MS))
                fail_msg("ReadonlyFilesystem did not become True after the restart; stdout:\n%s\nstderr:\n%s",
                         e->daemon->out, e->daemon->err);
        assert_contains(e->daemon->out + e->daemon->out_mark, line);
        snprintf(field, sizeof(field), "NODEHEALTH_CONDITION=ReadonlyFilesystem");
        if (!journal_has_record(e->node, field, line))
                fail_msg("no transition record of ReadonlyFilesystem with \"%s\" in the journal", line);
        close(fd);
        stop_daemon(e->daemon);
        proc_free(e->daemon);
        e->daemon = NULL;
}

/* Whatever happened, the next test (and the rest of ./test.sh) finds a journald. */
static int teardown_journald(void **state) {
        bool ok = journald_start();

        teardown(state);
        if (!ok)
                fprintf(stderr, "error: %s did not start again\n", JOURNALD);
        return ok ? 0 : -1;
}

static void test_journald_restart_journal(void **state) {
        static const int signals[] = {SIGTERM, SIGKILL};
        struct env *e = *state;

        add_dropin(e, "{\"probes\": {\"kernel\": {\"source\": \"journal\"}}}");
        journald_restart(e, false, signals, sizeof(signals) / sizeof(signals[0]));
}

static void test_journald_restart_kmsg(void **state) {
        static const int signals[] = {SIGTERM};

        /*
         * The probe reads /dev/kmsg; the journal sink's records must come back with journald.
         * A record sent while a standalone journald is away (no socket) is kept and written
         * when it is back.  Under systemd, systemd-journald.socket keeps the socket across a
         * restart.
         */
        journald_restart(*state, true, signals, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_kmsg_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_journal_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flood_kmsg, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flood_journal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_journald_restart_journal, setup, teardown_journald),
                cmocka_unit_test_setup_teardown(test_journald_restart_kmsg, setup, teardown_journald),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
