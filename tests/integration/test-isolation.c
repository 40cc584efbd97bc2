/* SPDX-License-Identifier: MIT */
/*
 * Isolated probes, as a user runs them: the built daemon with deliberately bad probes built by
 * the test suite (one that segfaults, one that hangs with a child, one that leaks, one that
 * writes garbage on its probe host's socket, one with the wrong ABI, one without a descriptor,
 * one world-writable) next to good ones.  The daemon must stay up, the good probes must keep
 * their pace, and each bad one must be reported as nodehealthd(8), ISOLATION, says.  Every
 * wait has a deadline; counts over a window have loose bounds.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 20000

struct env {
        char *dir; /* temporary: conf/, root/, plugins/ */
        char *conf;
        char *root;
        char *own_plugins; /* plugins copied here by the test (the world-writable one) */
        char *plugin_dir, *test_plugin_dir;
        struct proc *daemon;
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));

        e->dir = test_mkdtemp();
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->root = test_path(e->dir, "root");
        e->own_plugins = test_path(e->dir, "plugins");
        assert_int_equal(mkdir(e->root, 0755), 0);
        assert_int_equal(mkdir(e->own_plugins, 0755), 0);
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        proc_free(e->daemon);
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->root);
        free(e->own_plugins);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e);
        return 0;
}

static void copy_plugin(struct env *e, const char *built, const char *as, mode_t mode) {
        char *from = NULL, *to = NULL, *text;
        FILE *in, *out;
        int c;

        assert_true(asprintf(&from, "%s/%s.so", e->test_plugin_dir, built) >= 0);
        assert_true(asprintf(&to, "%s/%s.so", e->own_plugins, as) >= 0);
        in = fopen(from, "re");
        assert_non_null(in);
        out = fopen(to, "we");
        assert_non_null(out);
        while ((c = fgetc(in)) != EOF)
                fputc(c, out);
        fclose(in);
        assert_int_equal(fclose(out), 0);
        assert_int_equal(chmod(to, mode), 0);
        (void) text;
        free(from);
        free(to);
}

static struct proc *spawn(struct env *e, bool wait_exit, int *ret_code, ...) {
        char *argv[32] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--plugin-dir",
                          e->plugin_dir,
                          "--plugin-dir",
                          e->test_plugin_dir,
                          "--plugin-dir",
                          e->own_plugins,
                          "--root-path",
                          e->root,
                          "--node-name",
                          "isolation-test",
                          "--standalone"};
        int argc = 14;
        va_list ap;

        va_start(ap, ret_code);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        if (wait_exit)
                return proc_run(argv, DEADLINE_MS, ret_code);
        assert_null(e->daemon);
        e->daemon = proc_spawn(argv);
        return e->daemon;
}

/* How many times `needle` occurs in text. */
static size_t count(const char *text, const char *needle) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* Reads the daemon's output until `needle` occurs `times` times in it (stderr or stdout). */
static bool wait_count(struct proc *p, const char *needle, bool from_stderr, size_t times, int timeout_ms) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * USEC_PER_MSEC;

        for (;;) {
                if (count(from_stderr ? p->err : p->out, needle) >= times)
                        return true;
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return false;
                (void) proc_wait_output(p, "\001never\001", from_stderr, 50);
        }
}

static bool condition_matches(const cJSON *c, const char *type, const char *status, const char *reason,
                              const char *part) {
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItem(c, "message"));

        return c && streq_null(cJSON_GetStringValue(cJSON_GetObjectItem(c, "type")), type) &&
               streq_null(cJSON_GetStringValue(cJSON_GetObjectItem(c, "status")), status) &&
               streq_null(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), reason) && message &&
               strstr(message, part);
}

/*
 * Conditions of `type` with status/reason whose message contains `part`, in stdout: each
 * transition line, and the start table (what happened before the first cycles ended is there).
 */
static size_t count_transitions(const char *out, const char *type, const char *status, const char *reason,
                                const char *part) {
        size_t n = 0;

        for (const char *line = out; line && *line;) {
                const char *end = strchr(line, '\n');
                const cJSON *c;
                cJSON *j;

                if (!end)
                        break;
                j = cJSON_ParseWithLength(line, (size_t) (end - line));
                n += condition_matches(cJSON_GetObjectItem(j, "condition"), type, status, reason, part);
                cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "conditions")) n +=
                        condition_matches(c, type, status, reason, part);
                cJSON_Delete(j);
                line = end + 1;
        }
        return n;
}

static void expect_transitions(struct proc *p, const char *type, const char *status, const char *reason,
                               const char *part, size_t times) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;

        while (count_transitions(p->out, type, status, reason, part) < times) {
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        /* cmocka cuts long messages: the whole output goes to stderr first. */
                        fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", p->out, p->err);
                        fail_msg("fewer than %zu transitions of %s to %s (%s) with \"%s\" within %d ms", times, type,
                                 status, reason, part, DEADLINE_MS);
                }
                (void) proc_wait_output(p, "\001never\001", false, 50);
        }
}

#define expect_output(p, needle, from_stderr)                                                                       \
        do {                                                                                                        \
                if (!proc_wait_output(p, needle, from_stderr, DEADLINE_MS))                                         \
                        fail_msg("no \"%s\" within %d ms; stdout:\n%s\nstderr:\n%s", needle, DEADLINE_MS, (p)->out, \
                                 (p)->err);                                                                         \
        } while (0)

static bool in_group(const struct test_pstat *p, const void *arg) {
        return p->pgrp == *(const pid_t *) arg;
}

/* Processes (zombies included) in process group `pgid`. */
static size_t group_members(pid_t pgid) {
        return test_pstat_count(in_group, &pgid, false);
}

/* The pid in "...(pid N)..." after `needle` in text, or -1. */
static pid_t pid_after(const char *text, const char *needle) {
        const char *p = strstr(text, needle);
        int pid;

        if (!p || !(p = strstr(p, "(pid ")) || sscanf(p, "(pid %d)", &pid) != 1)
                return -1;
        return (pid_t) pid;
}

static void test_bad_probes(void **state) {
        struct env *e = *state;
        struct proc *p;
        size_t isolated_before, inprocess_before;
        pid_t hang_pid;

        /* The world-writable one: a copy of a good plugin, refused for its mode alone. */
        copy_plugin(e, "testprobe", "writable", 0666);
        assert_int_equal(chmod(e->own_plugins, 0755), 0);
        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"journal\": {\"enabled\": false}, \"http\": {\"listen\": \"\"}, \"defaults\": "
                        "{\"interval\": \"100ms\", \"timeout\": "
                        "\"2s\", \"raise_after\": 1, \"clear_after\": 1}, \"probes\": {"
                        /* good: one isolated (the default for a plugin not shipped), one in the daemon */
                        "\"good\": {\"plugin\": \"testprobe\", \"state_file\": \"good\"},"
                        "\"near\": {\"plugin\": \"testprobe\", \"isolation\": \"inprocess\", \"state_file\": \"near\"},"
                        "\"crash\": {\"plugin\": \"badcrash\"},"
                        "\"hang\": {\"plugin\": \"badhang\", \"interval\": \"200ms\", \"timeout\": \"300ms\"},"
                        "\"leak\": {\"plugin\": \"badleak\", \"memory_limit\": \"160MiB\"},"
                        "\"proto\": {\"plugin\": \"badproto\"},"
                        "\"abi\": {\"plugin\": \"badabi\"},"
                        "\"nodesc\": {\"plugin\": \"nodesc\"},"
                        "\"ww\": {\"plugin\": \"writable\"}}}");
        test_write_file(e->root, "good",
                        "event IsolatedBeat tick\nTestProblem False TestOK fine\nOtherProblem False OtherOK fine\n");
        test_write_file(e->root, "near",
                        "event InprocessBeat tick\nTestProblem False TestOK fine\nOtherProblem False OtherOK fine\n");

        p = spawn(e, false, NULL, "--format", "json", NULL);

        /* The refused ones are logged with their reason and skipped; the rest runs. */
        expect_output(p, "badabi.so: plugin ABI 2.0, this daemon speaks", true);
        expect_output(p, "nodesc.so: no descriptor: the symbol nodehealth_plugin is missing; the probe is skipped",
                      true);
        expect_output(p, "writable.so is writable by others (mode 0666); the probe is skipped", true);

        /* A segfault: Unknown, ProbeCrashed, with the signal; restarted, and crashed again. */
        expect_transitions(p, "CrashProblem", "Unknown", "ProbeCrashed", "probe crash crashed: its probe host (pid ",
                           1);
        /* AddressSanitizer catches the segfault itself and exits 1 instead. */
        if (!strstr(p->err, "AddressSanitizer"))
                assert_int_equal(count_transitions(p->out, "CrashProblem", "Unknown", "ProbeCrashed",
                                                   "was killed by signal SEGV (Segmentation fault)"),
                                 count_transitions(p->out, "CrashProblem", "Unknown", "ProbeCrashed", ""));
        expect_transitions(p, "CrashProblem", "Unknown", "ProbeCrashed", "probe crash crashed: its probe host (pid ",
                           2);
        assert_true(count(p->err, "probe crash (badcrash): probe host started, pid") >= 2);
        assert_contains(p->err, "probe crash crashed: its probe host");
        assert_contains(p->err, "restarting it in 1s");
        assert_contains(p->err, "restarting it in 2s");

        /* A hang: ProbeTimeout, and its whole process group (it forked a child) is gone. */
        expect_transitions(p, "HangProblem", "Unknown", "ProbeTimeout",
                           "did not finish a cycle within its timeout of 300ms", 1);
        expect_output(p, "probe hang: killing its probe host (pid ", true);
        hang_pid = pid_after(p->err, "probe hang: killing its probe host");
        assert_true(hang_pid > 0);
        {
                uint64_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;
                while (group_members(hang_pid) > 0 && now_usec(CLOCK_MONOTONIC) < deadline)
                        (void) proc_wait_output(p, "\001never\001", false, 50);
                if (group_members(hang_pid) > 0)
                        fail_msg("process group %d of the hung probe still has %zu processes", (int) hang_pid,
                                 group_members(hang_pid));
        }

        /* A leak: over memory_limit, Unknown with ProbeMemoryLimit, restarted. */
        expect_transitions(p, "LeakProblem", "Unknown", "ProbeMemoryLimit",
                           "more than its memory_limit of 160 MiB: its probe host was killed", 1);
        if (!wait_count(p, "probe leak (badleak): probe host started, pid", true, 2, DEADLINE_MS))
                fail_msg("the leaking probe's host was not restarted; stderr:\n%s", p->err);

        /* Garbage on the socket: a protocol error kills the host, and says why. */
        expect_transitions(p, "ProtoProblem", "Unknown", "ProbeCrashed",
                           "sent a message that is not JSON and was killed", 1);

        /* Meanwhile the good probes kept their pace: ~20 cycles in 2 s each; at least 5 is loose. */
        isolated_before = count(p->out, "\"reason\":\"IsolatedBeat\"");
        inprocess_before = count(p->out, "\"reason\":\"InprocessBeat\"");
        assert_true(isolated_before > 0);
        assert_true(inprocess_before > 0);
        {
                uint64_t end = now_usec(CLOCK_MONOTONIC) + 2 * USEC_PER_SEC;
                while (now_usec(CLOCK_MONOTONIC) < end)
                        (void) proc_wait_output(p, "\001never\001", false, 50);
        }
        if (count(p->out, "\"reason\":\"IsolatedBeat\"") < isolated_before + 5 ||
            count(p->out, "\"reason\":\"InprocessBeat\"") < inprocess_before + 5)
                fail_msg("the good probes fell behind: %zu -> %zu isolated, %zu -> %zu in-process cycles in 2s",
                         isolated_before, count(p->out, "\"reason\":\"IsolatedBeat\""), inprocess_before,
                         count(p->out, "\"reason\":\"InprocessBeat\""));
        assert_null(strstr(p->out, "\"type\":\"TestProblem\",\"status\":\"Unknown\""));
        assert_null(strstr(p->out, "\"type\":\"OtherProblem\",\"status\":\"Unknown\""));

        /* The daemon is still up, and stops cleanly. */
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

static void test_check_config_runs_the_host(void **state) {
        struct env *e = *state;
        struct proc *p;
        int code;

        /* An isolated probe's own keys are checked against its plugin's table, with the position. */
        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"probes\": {\n  \"t\": {\"plugin\": \"testprobe\", \"count\": \"many\"}}}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "nodehealthd.json:2:41: \"count\" in probe \"t\" must be an integer");
        proc_free(p);
        /* The running daemon refuses it too: a typo never survives into production. */
        p = spawn(e, true, &code, "--once", NULL);
        assert_int_equal(code, 78);
        proc_free(p);

        /* A refused plugin is a configuration error for --check-config. */
        test_write_file(e->dir, "conf/nodehealthd.json", "{\"probes\": {\"abi\": {\"plugin\": \"badabi\"}}}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "badabi.so: plugin ABI 2.0");
        proc_free(p);

        test_write_file(
                e->dir, "conf/nodehealthd.json",
                "{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"count\": 7, \"memory_limit\": \"32MiB\"}}}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 0);
        proc_free(p);
}

static void test_once_isolated(void **state) {
        struct env *e = *state;
        struct proc *p;
        int code;

        /* --once waits for an isolated probe's host to start, observe and say done. */
        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"declare\": [\"LateDeclared\"]},"
                        "\"c\": {\"plugin\": \"badcrash\"}}}");
        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken from the host\n");
        p = spawn(e, true, &code, "--once", "--format", "json", NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "{\"type\":\"TestProblem\",\"status\":\"True\",");
        assert_contains(p->out, "\"reason\":\"TestBroken\",\"message\":\"from the host\"");
        assert_contains(p->out, "{\"type\":\"LateDeclared\",\"status\":\"Unknown\",");
        /* The crashing probe's first cycle is fine: it crashes only from its second one on. */
        assert_contains(p->out, "{\"type\":\"CrashProblem\",\"status\":\"False\",");
        assert_contains(p->out, "\"reason\":\"BadOK\",\"message\":\"first cycle\"");
        proc_free(p);
}

struct checking {
        pid_t daemon;
        const char *prefix;
};

/* A probe host of the daemon checking a probe whose name starts with the prefix (its /proc/PID/cmdline). */
static bool is_checking_host(const struct test_pstat *p, const void *arg) {
        const struct checking *c = arg;
        char path[64], cmdline[512];
        const char *args[4] = {0};
        ssize_t len;
        FILE *f;

        if (p->ppid != c->daemon)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) p->pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        len = (ssize_t) fread(cmdline, 1, sizeof(cmdline) - 1, f);
        fclose(f);
        cmdline[len > 0 ? len : 0] = '\0';
        /* "nodehealthd\0--probe-host\0NAME\0--check\0...": the NULs split the arguments. */
        for (size_t i = 0, at = 0; i < 4 && at < (size_t) len; i++) {
                args[i] = cmdline + at;
                at += strlen(cmdline + at) + 1;
        }
        return args[3] && strcmp(args[1], "--probe-host") == 0 && strncmp(args[2], c->prefix, strlen(c->prefix)) == 0 &&
               strcmp(args[3], "--check") == 0;
}

static size_t checking_hosts(pid_t daemon, const char *prefix) {
        return test_pstat_count(is_checking_host, &(struct checking){daemon, prefix}, false);
}

/*
 * A reload that starts several isolated probes checks them side by side: the loop waits one
 * check's time (3 s at most) however many there are, not one after the other.  The plugin's
 * constructor sleeps past that wait, so every check stays unanswered while the test counts
 * how many run at once.
 */
static void test_reload_checks_at_once(void **state) {
        struct env *e = *state;
        struct proc *p;
        size_t most = 0;
        uint64_t deadline;

        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, "
                        "\"pid\": {\"enabled\": false}, \"network\": {\"enabled\": false}, \"disk\": {\"enabled\": "
                        "false}, \"t\": {\"plugin\": \"testprobe\", \"isolation\": \"inprocess\"}}}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\n");
        p = spawn(e, false, NULL, "--format", "json", NULL);
        expect_output(p, "\"conditions\":[", false);

        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, "
                        "\"pid\": {\"enabled\": false}, \"network\": {\"enabled\": false}, \"disk\": {\"enabled\": "
                        "false}, \"t\": {\"plugin\": \"testprobe\", \"isolation\": \"inprocess\"}, "
                        "\"slow1\": {\"plugin\": \"badslow\"}, \"slow2\": {\"plugin\": \"badslow\"}, "
                        "\"slow3\": {\"plugin\": \"badslow\"}}}");
        assert_int_equal(kill(p->pid, SIGHUP), 0);
        deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;
        while (!strstr(p->err, "Reloaded ") && now_usec(CLOCK_MONOTONIC) < deadline) {
                size_t n = checking_hosts(p->pid, "slow");
                most = n > most ? n : most;
                (void) proc_wait_output(p, "\001never\001", true, 20);
        }
        expect_output(p, "Reloaded ", true);
        assert_contains(p->err, ": 4 probes (1 unchanged, 3 started, 0 stopped)");
        /* All three checks ran together (one after another, no two would have). */
        if (most != 3)
                fail_msg("at most %zu checks ran at once, not 3; stderr:\n%s", most, p->err);
        assert_int_equal(count(p->err, "did not answer the check; starting it anyway"), 3);
        /* Started anyway, each comes up once its constructor is done. */
        expect_transitions(p, "SlowProblem", "False", "BadOK", "first cycle", 1);

        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

/*
 * An isolated probe stops as an in-process one does: its plugin's done() runs, when a reload
 * removes the probe and when the daemon stops.  testprobe's done() creates its "done_file".
 */
static void test_stop_runs_done(void **state) {
        struct env *e = *state;
        char *done_t = test_path(e->dir, "done-t"), *done_r = test_path(e->dir, "done-r"), *conf = NULL;
        const char *head = "{\"journal\": {\"enabled\": false}, \"defaults\": {\"interval\": \"100ms\"}, "
                           "\"probes\": {\"memory\": {\"enabled\": false}, \"pid\": {\"enabled\": false}, "
                           "\"network\": {\"enabled\": false}, \"disk\": {\"enabled\": false}";
        struct proc *p;

        assert_true(asprintf(&conf,
                             "%s, \"t\": {\"plugin\": \"testprobe\", \"state_file\": \"t\", \"done_file\": \"%s\"}, "
                             "\"r\": {\"plugin\": \"testprobe\", \"state_file\": \"r\", \"done_file\": \"%s\"}}}",
                             head, done_t, done_r) >= 0);
        test_write_file(e->dir, "conf/nodehealthd.json", conf);
        free(conf);
        test_write_file(e->root, "t", "event TBeat tick\n");
        test_write_file(e->root, "r", "event RBeat tick\n");
        p = spawn(e, false, NULL, "--format", "json", NULL);
        /* Both hosts are up: each has cycled. */
        expect_output(p, "\"reason\":\"TBeat\"", false);
        expect_output(p, "\"reason\":\"RBeat\"", false);
        assert_int_equal(access(done_r, F_OK), -1);

        /* Removed by a reload: r's done() ran before its host ended; t runs on. */
        assert_true(asprintf(&conf,
                             "%s, \"t\": {\"plugin\": \"testprobe\", \"state_file\": \"t\", \"done_file\": "
                             "\"%s\"}}}",
                             head, done_t) >= 0);
        test_write_file(e->dir, "conf/nodehealthd.json", conf);
        free(conf);
        assert_int_equal(kill(p->pid, SIGHUP), 0);
        expect_output(p, "(1 unchanged, 0 started, 1 stopped)", true);
        if (access(done_r, F_OK) < 0)
                fail_msg("the removed probe's done() did not run; stderr:\n%s", p->err);
        assert_int_equal(access(done_t, F_OK), -1);

        /* The daemon stops: t's done() runs too. */
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
        if (access(done_t, F_OK) < 0)
                fail_msg("the probe's done() did not run when the daemon stopped; stderr:\n%s", p->err);
        free(done_t);
        free(done_r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_check_config_runs_the_host, setup, teardown),
                cmocka_unit_test_setup_teardown(test_once_isolated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_probes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_checks_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_runs_done, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
