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
 * Every line carries a marker unique to this run, and the drop-in sets lookback to 0, so lines
 * of other runs and other tests do not count.  Needs root (to write /dev/kmsg and the sysctl)
 * and a running journald (./test.sh starts one): without them it fails and says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
                             "\"raise_after\": 1, \"clear_after\": 1, \"lookback\": \"0\", \"event_burst\": 100}}}",
                             rules) >= 0);
        test_write_file(e->dir, "conf/conf.d/50-kernel.json", dropin);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        free(dropin);
        free(rules);
        free(text);
        free(shipped);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

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

/* Waits for a NODEHEALTH_EVENT=reason record whose MESSAGE holds `needle`. */
static bool journal_has_event(const char *node, const char *reason, const char *needle) {
        uint64_t deadline = mono_usec() + DEADLINE_MS * USEC_PER_MSEC;
        sd_journal *j = NULL;
        char match[128];
        bool found = false;

        assert_int_equal(sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY), 0);
        snprintf(match, sizeof(match), "NODEHEALTH_EVENT=%s", reason);
        assert_int_equal(sd_journal_add_match(j, match, 0), 0);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_kmsg_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_journal_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flood_kmsg, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flood_journal, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
