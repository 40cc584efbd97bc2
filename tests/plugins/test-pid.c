/* SPDX-License-Identifier: MIT */
/*
 * The pid probe, loaded through the real loader into a real condition table: exact
 * conditions for each fixture tree under tests/fixtures/pid/, which limit binds, broken
 * files, hysteresis, and configuration errors naming file:line:column.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define CONFIG_FAST "{\"probes\": {\"pid\": {\"interval\": \"10s\", \"raise_after\": 1, \"clear_after\": 1}}}"
#define CONFIG_KUBEPODS                                                                           \
        "{\"probes\": {\"pid\": {\"interval\": \"10s\", \"raise_after\": 1, \"clear_after\": 1, " \
        "\"cgroup\": \"fs/cgroup/kubepods.slice\"}}}"

/* Every file a scenario may hold, relative to the scenario directory. */
static const char *const fixture_files[] = {
        "proc/loadavg",
        "proc/sys/kernel/pid_max",
        "proc/sys/kernel/threads-max",
        "sys/fs/cgroup/cgroup.controllers",
        "sys/fs/cgroup/kubepods.slice/pids.max",
        "sys/fs/cgroup/kubepods.slice/pids.current",
};

static char *fixture_path(const char *scenario, const char *relpath) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/pid/%s/%s", scenario, relpath) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

static char *fixture_text(const char *scenario, const char *relpath) {
        char *path = fixture_path(scenario, relpath), *text = test_read_file(path);

        free(path);
        return text;
}

/* Copies the scenario's proc and sys trees into dir, which a test then changes between cycles. */
static void copy_fixture(const char *dir, const char *scenario) {
        bool any = false;

        for (size_t i = 0; i < ELEMENTSOF(fixture_files); i++) {
                char *text = fixture_text(scenario, fixture_files[i]);

                if (text) {
                        test_write_file(dir, fixture_files[i], text);
                        any = true;
                }
                free(text);
        }
        assert_true(any);
}

static void remove_file(const char *dir, const char *relpath) {
        char *path = test_path(dir, relpath);

        assert_int_equal(unlink(path), 0);
        free(path);
}

static struct harness *start(const char *config, const char *proc, const char *sys) {
        struct harness *h = NULL;
        int r = harness_new(config, proc, sys, NULL, &h);

        if (r < 0)
                print_error("harness_new: %s\n", h->last_error ? h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        return h;
}

/* A scenario's own proc and sys trees (never the machine's). */
static struct harness *start_fixture(const char *config, const char *scenario) {
        char *proc = fixture_path(scenario, "proc"), *sys = fixture_path(scenario, "sys");
        struct harness *h = start(config, proc, sys);

        free(proc);
        free(sys);
        return h;
}

/* dir/proc and dir/sys, as copy_fixture() lays them out. */
static struct harness *start_dir(const char *config, const char *dir) {
        char *proc = test_path(dir, "proc"), *sys = test_path(dir, "sys");
        struct harness *h = start(config, proc, sys);

        free(proc);
        free(sys);
        return h;
}

/* The probe's one condition, which must be in the table. */
static const struct nh_condition *exhaustion(struct harness *h) {
        const struct nh_condition *c = harness_condition(h, "PIDExhaustion");

        assert_non_null(c);
        return c;
}

/* Whatever the message is, the failure output shows it. */
#define assert_message(h, type, needle) _assert_message(h, type, needle, __FILE__, __LINE__)
static void _assert_message(struct harness *h, const char *type, const char *needle, const char *file, int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c) {
                print_error("%s:%d: condition %s is not in the table\n", file, line, type);
                _fail(file, line);
                return;
        }
        if (!strstr(c->message, needle)) {
                print_error("%s:%d: %s message is \"%s\", expected it to contain \"%s\"\n", file, line, type,
                            c->message, needle);
                _fail(file, line);
        }
}

/* Expects harness_new to fail with an error containing each of the NULL-terminated needles. */
static void expect_config_error(const char *config, ...) {
        struct harness *h = NULL;
        const char *needle;
        va_list ap;
        int r;

        r = harness_new(config, "/proc", "/sys", NULL, &h);
        if (r >= 0)
                print_error("configuration was accepted: %s\n", config);
        assert_true(r < 0);
        assert_non_null(h->last_error);
        va_start(ap, config);
        while ((needle = va_arg(ap, const char *))) {
                if (!strstr(h->last_error, needle)) {
                        print_error("error \"%s\" does not contain \"%s\"\n", h->last_error, needle);
                        va_end(ap);
                        harness_free(h);
                        fail();
                }
        }
        va_end(ap);
        harness_free(h);
}

/* ---- fixtures ---- */

static void test_healthy(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "healthy");

        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        /* pid_max 32768 is tighter than threads-max 192729; the root cgroup has no pids.max. */
        assert_string_equal(exhaustion(h)->message,
                            "86 tasks in use, 0.3% of the tightest limit pid_max 32768 (threshold 90%)");
        /* The kubelet's type is not ours, not even declared. */
        assert_null(harness_condition(h, "PIDPressure"));
        assert_int_equal(nh_table_size(h->table), 1);

        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        harness_free(h);
}

static void test_near_pid_max(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "near-pid-max");

        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_string_equal(exhaustion(h)->message,
                            "30150 tasks in use, 92.0% of the tightest limit pid_max 32768 (threshold 90%)");
        assert_null(harness_condition(h, "PIDPressure"));
        harness_free(h);
}

static void test_threads_max_binds(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "threads-max-binds");

        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_string_equal(exhaustion(h)->message,
                            "31200 tasks in use, 95.2% of the tightest limit threads-max 32768 (threshold 90%)");
        harness_free(h);
}

static void test_cgroup_binds(void **state) {
        struct harness *h = start_fixture(CONFIG_KUBEPODS, "cgroup-binds");
        char *dir = test_mkdtemp();

        /* The pods' cgroup is at 96% of its pids.max while the node is at 76.6% of threads-max:
         * the count that matters is the cgroup's pids.current, not the node's task count. */
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_string_equal(exhaustion(h)->message,
                            "96000 tasks in use in cgroup /sys/fs/cgroup/kubepods.slice, 96.0% of the tightest "
                            "limit pids.max 100000 (threshold 90%)");
        assert_null(harness_condition(h, "PIDPressure"));
        harness_free(h);

        /* The tightest limit is the one with the largest share in use, not the smallest number:
         * 52000 of 100000 in the pods' cgroup is roomier than the node's 97350 of 127086. */
        copy_fixture(dir, "cgroup-binds");
        test_write_file(dir, "sys/fs/cgroup/kubepods.slice/pids.current", "52000\n");
        h = start_dir(CONFIG_KUBEPODS, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_string_equal(exhaustion(h)->message,
                            "97350 tasks in use, 76.6% of the tightest limit threads-max 127086 (threshold 90%)");
        harness_free(h);
        test_rmtree(dir);
        free(dir);

        /* By default the root cgroup is watched, which has no pids.max: only the node's limits. */
        h = start_fixture(CONFIG_FAST, "cgroup-binds");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_string_equal(exhaustion(h)->message,
                            "97350 tasks in use, 76.6% of the tightest limit threads-max 127086 (threshold 90%)");
        harness_free(h);
}

static void test_cgroup_max(void **state) {
        struct harness *h = start_fixture(CONFIG_KUBEPODS, "cgroup-max");

        /* pids.max "max" is no limit at all: the node's limits decide. */
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_string_equal(exhaustion(h)->message,
                            "97350 tasks in use, 76.6% of the tightest limit threads-max 127086 (threshold 90%)");
        harness_free(h);
}

static void test_garbage(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "garbage");

        harness_run(h);
        /* pid_max alone would say healthy, but threads-max might be tighter: nobody can tell. */
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable");
        assert_string_equal(exhaustion(h)->message, "/proc/sys/kernel/threads-max: \"192,729\" is not a number");
        harness_free(h);
}

static void test_truncated(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "truncated");

        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "TaskCountUnreadable");
        assert_string_equal(exhaustion(h)->message,
                            "/proc/loadavg ends before its running/total task count (truncated)");
        harness_free(h);
}

static void test_missing(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h = start(CONFIG_FAST, dir, dir);

        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "TaskCountUnreadable");
        assert_string_equal(exhaustion(h)->message, "cannot read /proc/loadavg: No such file or directory");
        assert_null(harness_condition(h, "PIDPressure"));
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* ---- broken files, one at a time, in a copy of a fixture ---- */

static void test_broken_files(void **state) {
        static const struct {
                const char *file, *content; /* content NULL: the file is removed */
                enum nh_status status;
                const char *reason, *message;
        } cases[] = {
                {"proc/loadavg", "1.12 1.28 1.09 1/eighty-six 25390\n", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/proc/loadavg: \"1.12 1.28 1.09 1/eighty-six 25390\" has no running/total task count"},
                {"proc/loadavg", "1.12 1.28 1.09 1/-86 25390\n", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "has no running/total task count"},
                {"proc/loadavg", "1.12 1.28 1.09 86 25390\n", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "has no running/total task count"},
                {"proc/loadavg", "load 1.28 1.09 1/86 25390\n", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "has no running/total task count"},
                {"proc/loadavg", "1.12 1.28 1.09 1/86", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/proc/loadavg ends before its running/total task count (truncated)"},
                {"proc/loadavg", "1.12 1.28 1.09 1/0 25390\n", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/proc/loadavg says 0 tasks exist"},
                {"proc/loadavg", "1.12 1.28 1.09 1/99999999999999999999999 25390\n", NH_STATUS_UNKNOWN,
                 "TaskCountUnreadable", "(out of range)"},
                {"proc/loadavg", "1.12 1.2", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/proc/loadavg ends before its running/total task count (truncated)"},
                {"proc/loadavg", "", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/proc/loadavg ends before its running/total task count (truncated)"},
                {"proc/sys/kernel/pid_max", "", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max is empty"},
                {"proc/sys/kernel/pid_max", "3276", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max: \"3276\" ends without a newline (truncated)"},
                {"proc/sys/kernel/pid_max", "32768 4096\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max: \"32768 4096\" is not a number"},
                {"proc/sys/kernel/pid_max", "32768\n4096\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max has more than one line"},
                {"proc/sys/kernel/pid_max", "0\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max is 0, which no kernel allows"},
                {"proc/sys/kernel/pid_max", "max\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/pid_max: \"max\" is not a number"},
                {"proc/sys/kernel/threads-max", "-1\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/threads-max: \"-1\" is not a number"},
                {"proc/sys/kernel/threads-max", "99999999999999999999999\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/proc/sys/kernel/threads-max: \"99999999999999999999999\" is out of range"},
                {"sys/fs/cgroup/kubepods.slice/pids.max", "lots\n", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/sys/fs/cgroup/kubepods.slice/pids.max: \"lots\" is not a number"},
                {"sys/fs/cgroup/kubepods.slice/pids.max", "ma", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable",
                 "/sys/fs/cgroup/kubepods.slice/pids.max: \"ma\" ends without a newline (truncated)"},
                {"sys/fs/cgroup/kubepods.slice/pids.current", "", NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "/sys/fs/cgroup/kubepods.slice/pids.current is empty"},
                {"sys/fs/cgroup/kubepods.slice/pids.current", NULL, NH_STATUS_UNKNOWN, "TaskCountUnreadable",
                 "cannot read /sys/fs/cgroup/kubepods.slice/pids.current: No such file or directory"},
                /* The limit can be set below what is already in use: more than 100%, and True. */
                {"sys/fs/cgroup/kubepods.slice/pids.current", "104200\n", NH_STATUS_TRUE, "PIDExhaustion",
                 "104200 tasks in use in cgroup /sys/fs/cgroup/kubepods.slice, 104.2% of the tightest limit "
                 "pids.max 100000 (threshold 90%)"},
                /* pids.max 0 lets nobody fork. */
                {"sys/fs/cgroup/kubepods.slice/pids.max", "0\n", NH_STATUS_TRUE, "PIDExhaustion",
                 "52000 tasks in use in cgroup /sys/fs/cgroup/kubepods.slice, 100.0% of the tightest limit pids.max "
                 "0 (threshold 90%)"},
                /* "max" needs no count: pids.current is not even read. */
                {"sys/fs/cgroup/kubepods.slice/pids.max", "max\n", NH_STATUS_FALSE, "PIDsAvailable",
                 "97350 tasks in use, 76.6% of the tightest limit threads-max 127086 (threshold 90%)"},
                /* Without the pids controller the cgroup has neither file: no cgroup limit. */
                {"sys/fs/cgroup/kubepods.slice/pids.max", NULL, NH_STATUS_FALSE, "PIDsAvailable",
                 "97350 tasks in use, 76.6% of the tightest limit threads-max 127086 (threshold 90%)"},
        };
        struct harness *h;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *dir = test_mkdtemp();
                const struct nh_condition *c;

                /* The pods' cgroup at 52%: no limit is exhausted unless the case makes it so. */
                copy_fixture(dir, "cgroup-binds");
                test_write_file(dir, "sys/fs/cgroup/kubepods.slice/pids.current", "52000\n");
                if (cases[i].content)
                        test_write_file(dir, cases[i].file, cases[i].content);
                else
                        remove_file(dir, cases[i].file);
                h = start_dir(CONFIG_KUBEPODS, dir);
                harness_run(h);
                c = harness_condition(h, "PIDExhaustion");
                assert_non_null(c);
                if (c->status != cases[i].status || strcmp(c->reason, cases[i].reason) != 0 ||
                    !strstr(c->message, cases[i].message)) {
                        print_error("case %zu (%s): PIDExhaustion is %s %s \"%s\", expected %s %s \"…%s…\"\n", i,
                                    cases[i].file, nh_status_to_string(c->status), c->reason, c->message,
                                    nh_status_to_string(cases[i].status), cases[i].reason, cases[i].message);
                        fail();
                }
                harness_free(h);
                test_rmtree(dir);
                free(dir);
        }
}

/* Unknown clears as soon as the file is sane again; a broken file never sticks. */
static void test_recovers(void **state) {
        char *dir = test_mkdtemp(), *good = fixture_text("healthy", "proc/sys/kernel/threads-max");
        struct harness *h;

        assert_non_null(good);
        copy_fixture(dir, "garbage");
        h = start_dir(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable");
        test_write_file(dir, "proc/sys/kernel/threads-max", good);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_message(h, "PIDExhaustion", "86 tasks in use, 0.3% of the tightest limit pid_max 32768");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(good);
}

/* A limit the probe cannot read may be tighter: but one it did read already shows exhaustion. */
static void test_exhausted_despite_unreadable_limit(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "near-pid-max");
        test_write_file(dir, "proc/sys/kernel/threads-max", "lots\n");
        h = start_dir(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_string_equal(exhaustion(h)->message,
                            "30150 tasks in use, 92.0% of the tightest limit pid_max 32768 (threshold 90%); "
                            "/proc/sys/kernel/threads-max: \"lots\" is not a number");
        harness_free(h);

        /* The node's task count is unreadable, the pods' cgroup is exhausted all the same. */
        copy_fixture(dir, "cgroup-binds");
        test_write_file(dir, "proc/loadavg", "1.12 1.28 1.09 1");
        h = start_dir(CONFIG_KUBEPODS, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_message(h, "PIDExhaustion", "96000 tasks in use in cgroup /sys/fs/cgroup/kubepods.slice, 96.0%");
        assert_message(h, "PIDExhaustion", "; /proc/loadavg ends before its running/total task count (truncated)");

        /* ... but a healthy cgroup says nothing about the node's limits. */
        test_write_file(dir, "sys/fs/cgroup/kubepods.slice/pids.current", "1200\n");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "TaskCountUnreadable");
        assert_string_equal(exhaustion(h)->message,
                            "/proc/loadavg ends before its running/total task count (truncated)");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_missing_limits(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        /* No pid_max (the kubelet too uses whichever of the two it can read): threads-max decides. */
        copy_fixture(dir, "near-pid-max");
        remove_file(dir, "proc/sys/kernel/pid_max");
        h = start_dir(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_string_equal(exhaustion(h)->message,
                            "30150 tasks in use, 15.6% of the tightest limit threads-max 192729 (threshold 90%)");

        /* Neither: a count without a limit is no verdict. */
        remove_file(dir, "proc/sys/kernel/threads-max");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable");
        assert_string_equal(exhaustion(h)->message,
                            "neither /proc/sys/kernel/pid_max nor /proc/sys/kernel/threads-max exists");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_missing_cgroup_dir(void **state) {
        struct harness *h;

        /* A typo, or the cgroupfs driver's "kubepods" on a systemd-driver node: not "no limit". */
        h = start_fixture("{\"probes\": {\"pid\": {\"raise_after\": 1, \"cgroup\": \"fs/cgroup/kubepods\"}}}",
                          "cgroup-binds");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "PIDLimitsUnreadable");
        assert_string_equal(exhaustion(h)->message,
                            "cgroup directory /sys/fs/cgroup/kubepods does not exist (key \"cgroup\")");
        harness_free(h);

        /* Slashes around the path change nothing: it is always under the sys root. */
        h = start_fixture("{\"probes\": {\"pid\": {\"raise_after\": 1, \"cgroup\": \"/fs/cgroup/kubepods.slice/\"}}}",
                          "cgroup-binds");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_message(h, "PIDExhaustion", "in cgroup /sys/fs/cgroup/kubepods.slice, 96.0%");
        harness_free(h);
}

static void test_too_large(void **state) {
        char *dir = test_mkdtemp(), *big = NULL;
        struct harness *h;

        copy_fixture(dir, "healthy");
        assert_true(asprintf(&big, "1.12 1.28 1.09 1/86 25390\n%0*d\n", 4096, 0) >= 0);
        test_write_file(dir, "proc/loadavg", big);
        h = start_dir(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_UNKNOWN, "TaskCountUnreadable");
        assert_message(h, "PIDExhaustion", "/proc/loadavg is larger than");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(big);
}

/* ---- the threshold ---- */

static void test_threshold(void **state) {
        static const struct {
                const char *loadavg;
                const char *threshold; /* NULL: the default */
                enum nh_status status;
                const char *message;
        } cases[] = {
                /* Exactly at the share: "reach" means True. */
                {"0.00 0.00 0.00 1/29492 1\n", NULL, NH_STATUS_TRUE,
                 "29492 tasks in use, 90.0% of the tightest limit pid_max 32768 (threshold 90%)"},
                {"0.00 0.00 0.00 1/16384 1\n", "50", NH_STATUS_TRUE,
                 "16384 tasks in use, 50.0% of the tightest limit pid_max 32768 (threshold 50%)"},
                {"0.00 0.00 0.00 1/29491 1\n", NULL, NH_STATUS_FALSE, "29491 tasks in use, 89.999% of the tightest"},
                /* One decimal would say 90.0%, which reads as reached: more decimals. */
                {"0.00 0.00 0.00 1/29479 1\n", NULL, NH_STATUS_FALSE,
                 "29479 tasks in use, 89.96% of the tightest limit pid_max 32768 (threshold 90%)"},
                {"0.00 0.00 0.00 1/31200 1\n", "95", NH_STATUS_TRUE,
                 "95.2% of the tightest limit pid_max 32768 "
                 "(threshold 95%)"},
                {"0.00 0.00 0.00 1/31200 1\n", "95.3", NH_STATUS_FALSE,
                 "95.2% of the tightest limit pid_max 32768 "
                 "(threshold 95.3%)"},
                {"0.00 0.00 0.00 1/32768 1\n", "100", NH_STATUS_TRUE, "100.0% of the tightest"},
                {"0.00 0.00 0.00 1/328 1\n", "1", NH_STATUS_TRUE, "328 tasks in use, 1.0% of the tightest"},
                {"0.00 0.00 0.00 1/327 1\n", "1", NH_STATUS_FALSE, "327 tasks in use, 0.998% of the tightest"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *dir = test_mkdtemp(), *config = NULL;
                const struct nh_condition *c;
                struct harness *h;

                copy_fixture(dir, "healthy");
                test_write_file(dir, "proc/loadavg", cases[i].loadavg);
                assert_true(asprintf(&config, "{\"probes\": {\"pid\": {\"raise_after\": 1, \"clear_after\": 1%s%s}}}",
                                     cases[i].threshold ? ", \"threshold_percent\": " : "",
                                     cases[i].threshold ? cases[i].threshold : "") >= 0);
                h = start_dir(config, dir);
                harness_run(h);
                c = harness_condition(h, "PIDExhaustion");
                assert_non_null(c);
                if (c->status != cases[i].status || !strstr(c->message, cases[i].message)) {
                        print_error("case %zu: PIDExhaustion is %s \"%s\", expected %s \"…%s…\"\n", i,
                                    nh_status_to_string(c->status), c->message, nh_status_to_string(cases[i].status),
                                    cases[i].message);
                        fail();
                }
                assert_string_equal(c->reason, cases[i].status == NH_STATUS_TRUE ? "PIDExhaustion" : "PIDsAvailable");
                harness_free(h);
                test_rmtree(dir);
                free(dir);
                free(config);
        }
}

static void test_hysteresis(void **state) {
        const char *config = "{\"probes\": {\"pid\": {\"interval\": \"10s\", \"raise_after\": 2, \"clear_after\": 2}}}";
        char *dir = test_mkdtemp(), *healthy = fixture_text("healthy", "proc/loadavg"),
             *exhausted = fixture_text("near-pid-max", "proc/loadavg");
        struct harness *h;
        size_t transitions;

        assert_non_null(healthy);
        assert_non_null(exhausted);

        /* Exhausted from the very first observation: one is not enough to say True. */
        h = start_fixture(config, "near-pid-max");
        harness_run(h);
        assert_true(exhaustion(h)->status != NH_STATUS_TRUE);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        harness_free(h);

        copy_fixture(dir, "healthy");
        h = start_dir(config, dir);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        transitions = h->n_transitions;
        test_write_file(dir, "proc/loadavg", exhausted);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_message(h, "PIDExhaustion", "30150 tasks in use, 92.0%");
        assert_int_equal(h->n_transitions, transitions + 1);

        test_write_file(dir, "proc/loadavg", healthy);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_message(h, "PIDExhaustion", "86 tasks in use, 0.3%");
        assert_int_equal(h->n_transitions, transitions + 2);
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(healthy);
        free(exhausted);
}

/* ---- instances and ownership ---- */

/* Two instances of the plugin, each with its own cgroup: they feed one condition. */
static void test_two_instances(void **state) {
        struct harness *h =
                start_fixture("{\"probes\": {"
                              "\"pid\": {\"raise_after\": 1, \"clear_after\": 1}, "
                              "\"pods-pids\": {\"plugin\": \"pid\", \"raise_after\": 1, \"clear_after\": 1, "
                              "\"cgroup\": \"fs/cgroup/kubepods.slice\", \"threshold_percent\": 97}}}",
                              "cgroup-binds");

        assert_int_equal(h->n_probes, 2);
        harness_run(h);
        /* 96% of the pods' limit is below this instance's 97%; the node is at 76.6%. */
        assert_condition(h, "PIDExhaustion", NH_STATUS_FALSE, "PIDsAvailable");
        assert_int_equal(nh_table_size(h->table), 1);
        harness_free(h);

        h = start_fixture("{\"probes\": {"
                          "\"pid\": {\"raise_after\": 1, \"clear_after\": 1}, "
                          "\"pods-pids\": {\"plugin\": \"pid\", \"raise_after\": 1, \"clear_after\": 1, "
                          "\"cgroup\": \"fs/cgroup/kubepods.slice\"}}}",
                          "cgroup-binds");
        harness_run(h);
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_message(h, "PIDExhaustion", "in cgroup /sys/fs/cgroup/kubepods.slice, 96.0%");
        harness_free(h);
}

/* Even a configuration that takes PIDPressure over gets no PIDPressure from this probe. */
static void test_never_pid_pressure(void **state) {
        struct harness *h = start_fixture(
                "{\"probes\": {\"pid\": {\"raise_after\": 1, \"take_over\": [\"PIDPressure\"]}}}", "near-pid-max");

        harness_run(h);
        assert_null(harness_condition(h, "PIDPressure"));
        assert_condition(h, "PIDExhaustion", NH_STATUS_TRUE, "PIDExhaustion");
        assert_int_equal(nh_table_size(h->table), 1);
        harness_free(h);
}

/* ---- configuration ---- */

static void test_config_unknown_key(void **state) {
        expect_config_error("{\n"
                            "  \"probes\": {\n"
                            "    \"pid\": {\"interval\": \"10s\", \"treshold_percent\": 80}\n"
                            "  }\n"
                            "}\n",
                            "nodehealthd.json:3:32: unknown key \"treshold_percent\" in probe \"pid\"",
                            "did you mean \"threshold_percent\"?", NULL);
        expect_config_error("{\"probes\": {\"pid\": {\"cgroups\": \"fs/cgroup/kubepods.slice\"}}}",
                            "nodehealthd.json:1:21: unknown key \"cgroups\"", "did you mean \"cgroup\"?", NULL);
}

static void test_config_out_of_range(void **state) {
        expect_config_error("{\"probes\": {\"pid\": {\"threshold_percent\": 0}}}",
                            "nodehealthd.json:1:42: \"threshold_percent\" in probe \"pid\" must be between 1 and 100",
                            NULL);
        expect_config_error("{\"probes\": {\"pid\": {\"threshold_percent\": 100.5}}}",
                            "nodehealthd.json:1:", "between 1 and 100", NULL);
        expect_config_error("{\n  \"probes\": {\"pid\": {\n    \"threshold_percent\": -90}}}",
                            "nodehealthd.json:3:26: \"threshold_percent\"", "between 1 and 100", NULL);
        expect_config_error("{\"probes\": {\"pid\": {\"threshold_percent\": \"90\"}}}",
                            "nodehealthd.json:1:", "must be a number, not a string", NULL);
        expect_config_error("{\"probes\": {\"pid\": {\"cgroup\": 5}}}",
                            "nodehealthd.json:1:", "\"cgroup\" in probe \"pid\" must be a string", NULL);
}

/* A cgroup path that leaves the sys root, or repeats it, stops the probe at init: Unknown. */
static void test_config_bad_cgroup(void **state) {
        static const char *const bad[] = {"../../etc", "fs/cgroup/../../../etc", "/sys/fs/cgroup/kubepods.slice", "",
                                          "/"};

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *config = NULL;
                struct harness *h;

                assert_true(asprintf(&config, "{\"probes\": {\"pid\": {\"raise_after\": 1, \"cgroup\": \"%s\"}}}",
                                     bad[i]) >= 0);
                h = start_fixture(config, "cgroup-binds");
                harness_run(h);
                if (exhaustion(h)->status != NH_STATUS_UNKNOWN ||
                    strcmp(exhaustion(h)->reason, "ProbeInitFailed") != 0) {
                        print_error("cgroup \"%s\": PIDExhaustion is %s %s \"%s\"\n", bad[i],
                                    nh_status_to_string(exhaustion(h)->status), exhaustion(h)->reason,
                                    exhaustion(h)->message);
                        fail();
                }
                harness_free(h);
                free(config);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_healthy),
                cmocka_unit_test(test_near_pid_max),
                cmocka_unit_test(test_threads_max_binds),
                cmocka_unit_test(test_cgroup_binds),
                cmocka_unit_test(test_cgroup_max),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_broken_files),
                cmocka_unit_test(test_recovers),
                cmocka_unit_test(test_exhausted_despite_unreadable_limit),
                cmocka_unit_test(test_missing_limits),
                cmocka_unit_test(test_missing_cgroup_dir),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_threshold),
                cmocka_unit_test(test_hysteresis),
                cmocka_unit_test(test_two_instances),
                cmocka_unit_test(test_never_pid_pressure),
                cmocka_unit_test(test_config_unknown_key),
                cmocka_unit_test(test_config_out_of_range),
                cmocka_unit_test(test_config_bad_cgroup),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
