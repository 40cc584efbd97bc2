/* SPDX-License-Identifier: MIT */
/*
 * The daemon itself, as a user runs it: the built binary with the shipped conf/, fixture
 * /proc trees, and a real journald (./test.sh starts one when none runs).  Every wait has a
 * deadline; nothing sleeps.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "sink.h"
#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000

struct env {
        char *dir; /* temporary: conf/, proc/, root/ */
        char *conf; /* dir/conf/nodehealthd.json: the shipped file */
        char *proc; /* dir/proc */
        char *root; /* dir/root */
        char *plugin_dir; /* the build's plugins */
        char *test_plugin_dir;
        char node[64]; /* unique per test: journal records are told apart by it */
        struct proc *daemon; /* the running daemon, if any: teardown stops it */
};

static void stop(struct proc *p);

/* The row of `type` in a printed table has this status and reason, whatever the column widths. */
static void assert_table_row(const char *table, const char *type, const char *status, const char *reason) {
        char t[64], s[16], r[64];

        for (const char *line = table; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (sscanf(line, "%63s %15s %63s", t, s, r) == 3 && strcmp(t, type) == 0) {
                        if (strcmp(s, status) != 0 || strcmp(r, reason) != 0)
                                fail_msg("%s is %s (%s), expected %s (%s), in:\n%s", type, s, r, status, reason, table);
                        return;
                }
        fail_msg("no row for %s in:\n%s", type, table);
}
static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *shipped = test_path(test_srcdir(), "conf/nodehealthd.json");
        char *text = test_read_file(shipped);
        static unsigned counter;

        assert_non_null(text);
        e->dir = test_mkdtemp();
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->proc = test_path(e->dir, "proc");
        e->root = test_path(e->dir, "root");
        assert_int_equal(mkdir(e->root, 0755), 0);
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        snprintf(e->node, sizeof(e->node), "itest-%d-%u-%llu", (int) getpid(), counter++,
                 (unsigned long long) now_usec(CLOCK_REALTIME));
        free(text);
        free(shipped);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        proc_free(e->daemon); /* SIGKILL if it still runs */

        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->proc);
        free(e->root);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e);
        return 0;
}

/* Runs the daemon with the env's conf, trees and plugins, plus extra arguments. */
static struct proc *spawn(struct env *e, bool wait_exit, int *ret_code, ...) {
        char *argv[40] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--plugin-dir",
                          e->plugin_dir,
                          "--plugin-dir",
                          e->test_plugin_dir,
                          "--proc-path",
                          e->proc,
                          "--root-path",
                          e->root,
                          "--node-name",
                          e->node};
        int argc = 13;
        va_list ap;

        va_start(ap, ret_code);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        if (wait_exit)
                return proc_run(argv, DEADLINE_MS, ret_code);
        /* A running daemon belongs to the test's env: teardown kills it even after a failure. */
        assert_null(e->daemon);
        e->daemon = proc_spawn(argv);
        return e->daemon;
}

static cJSON *parse_line(const char *text, size_t index) {
        const char *p = text;
        for (size_t i = 0; i < index && p; i++) {
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        assert_non_null(p);
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        cJSON *j = cJSON_ParseWithLength(p, (size_t) (end - p));
        assert_non_null(j);
        return j;
}

static const cJSON *find_condition(const cJSON *list, const char *type) {
        const cJSON *c;
        cJSON_ArrayForEach(c, list) {
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "type")), type) == 0)
                        return c;
        }
        fail_msg("condition %s is not in the output", type);
        return NULL;
}

static void expect_field(const cJSON *o, const char *key, const char *value) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
        if (!v || strcmp(v, value) != 0)
                fail_msg("%s is \"%s\", expected \"%s\"", key, v ? v : "(missing)", value);
}

/* ---- exit codes ---- */

static void test_help_and_version(void **state) {
        struct env *e = *state;
        int code;
        char *argv[] = {(char *) test_daemon_path(), "--version", NULL};
        struct proc *p = proc_run(argv, DEADLINE_MS, &code);

        assert_int_equal(code, 0);
        assert_non_null(strstr(p->out, "nodehealthd " PACKAGE_VERSION));
        proc_free(p);
        argv[1] = "--help";
        p = proc_run(argv, DEADLINE_MS, &code);
        assert_int_equal(code, 0);
        assert_contains(p->out, "--check-config");
        proc_free(p);
        (void) e;
}

static void test_usage_is_64(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        p = spawn(e, true, &code, "--format", "xml", NULL);

        assert_int_equal(code, 64);
        assert_contains(p->err, "--format must be table or json");
        proc_free(p);

        p = spawn(e, true, &code, "--sys-path", "/nonexistent/sys", "--once", NULL);
        assert_int_equal(code, 64);
        assert_contains(p->err, "--sys-path /nonexistent/sys: No such file or directory");
        proc_free(p);
}

static void test_check_config(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "configuration is valid");
        proc_free(p);

        /* A drop-in with a typo: 78, and the drop-in's position. */
        test_write_file(e->dir, "conf/conf.d/50-typo.json",
                        "{\n  \"probes\": {\"memory\": {\"intervl\": \"5s\"}}\n}\n");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "conf.d/50-typo.json:2:25: unknown key \"intervl\" in probe \"memory\" (did you "
                                "mean \"interval\"?)");
        proc_free(p);

        /* The plugin's own keys are checked against its table: here the example's. */
        test_write_file(e->dir, "conf/conf.d/50-typo.json",
                        "{\"probes\": {\"load\": {\"plugin\": \"example\", \"max_load_per_cpu\": \"high\"}}}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "50-typo.json:1:63: \"max_load_per_cpu\" in probe \"load\" must be a number, "
                                "not a string");
        proc_free(p);

        /* The same error stops the daemon itself: a typo never survives into production. */
        p = spawn(e, true, &code, "--once", NULL);
        assert_int_equal(code, 78);
        proc_free(p);

        /* A plugin nobody can find is an error for --check-config, and names the directories. */
        test_write_file(e->dir, "conf/conf.d/50-typo.json", "{\"probes\": {\"gpu\": {}}}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "probe \"gpu\": plugin gpu.so is in none of: ");
        proc_free(p);

        test_write_file(e->dir, "conf/conf.d/50-typo.json", "{\"probes\": ");
        p = spawn(e, true, &code, "--once", NULL);
        assert_int_equal(code, 78);
        assert_contains(p->err, "50-typo.json:1:12: invalid JSON");
        proc_free(p);
}

/* ---- one-shot output ---- */

static void test_once_json(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;
        cJSON *j;
        const cJSON *list, *c;

        test_use_memory_fixture(e->proc, "healthy");
        p = spawn(e, true, &code, "--once", "--format", "json", NULL);
        assert_int_equal(code, 0);
        j = parse_line(p->out, 0);
        expect_field(j, "node", e->node);
        list = cJSON_GetObjectItem(j, "conditions");
        assert_true(cJSON_IsArray(list));
        c = find_condition(list, "MemoryThrashing");
        expect_field(c, "status", "False");
        expect_field(c, "reason", "MemoryNotThrashing");
        /* Exactly the fields of a Kubernetes NodeCondition, times in RFC 3339 UTC. */
        assert_int_equal(cJSON_GetArraySize(c), 6);
        uint64_t t;
        assert_int_equal(parse_rfc3339(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastTransitionTime")), &t), 0);
        assert_int_equal(parse_rfc3339(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastHeartbeatTime")), &t), 0);
        /* A count over a window needs history: one observation cannot tell. */
        c = find_condition(list, "FrequentOOMKill");
        expect_field(c, "status", "Unknown");
        expect_field(c, "reason", "InsufficientHistory");
        assert_null(strchr(strchr(p->out, '\n') + 1, '\n')); /* one line, nothing else */
        cJSON_Delete(j);
        proc_free(p);

        test_use_memory_fixture(e->proc, "thrashing");
        p = spawn(e, true, &code, "--once", "--format", "json", NULL);
        assert_int_equal(code, 0);
        j = parse_line(p->out, 0);
        /* --once has no hysteresis: the shipped raise_after does not hide the problem. */
        c = find_condition(cJSON_GetObjectItem(j, "conditions"), "MemoryThrashing");
        expect_field(c, "status", "True");
        expect_field(c, "reason", "MemoryStall");
        cJSON_Delete(j);
        proc_free(p);
}

static void test_once_event_after_table(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;
        cJSON *j;

        /* An event of the first cycle comes after the start object, which is always line one. */
        test_use_memory_fixture(e->proc, "healthy");
        test_write_file(e->dir, "conf/conf.d/90-test.json",
                        "{\"probes\": {\"memory\": {\"enabled\": false}, \"pid\": {\"enabled\": false}, \"network\": "
                        "{\"enabled\": false}, \"disk\": {\"enabled\": false}, \"t\": "
                        "{\"plugin\": \"testprobe\"}}}");
        test_write_file(e->root, "testprobe/state",
                        "event OOMKilling Killed process 4242 (stress)\n"
                        "TestProblem False TestOK fine\n");
        p = spawn(e, true, &code, "--once", "--format", "json", NULL);
        assert_int_equal(code, 0);
        j = parse_line(p->out, 0);
        assert_non_null(cJSON_GetObjectItem(j, "conditions"));
        cJSON_Delete(j);
        j = parse_line(p->out, 1);
        expect_field(j, "node", e->node);
        const cJSON *ev = cJSON_GetObjectItem(j, "event");
        expect_field(ev, "reason", "OOMKilling");
        expect_field(ev, "message", "Killed process 4242 (stress)");
        expect_field(ev, "type", "Warning");
        cJSON_Delete(j);
        proc_free(p);
}

static void test_once_waits_for_async_probes(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        test_write_file(e->dir, "conf/conf.d/90-test.json",
                        "{\"probes\": {\"memory\": {\"enabled\": false}, \"pid\": {\"enabled\": false}, \"network\": "
                        "{\"enabled\": false}, \"disk\": {\"enabled\": false},"
                        "\"t\": {\"plugin\": \"testprobe\", \"timeout\": \"300ms\"},"
                        "\"u\": {\"plugin\": \"testprobe\", \"state_file\": \"u\", \"timeout\": \"300ms\"}}}");
        /* t ends its cycle from a timer; u never ends it: the timeout does, and says so. */
        test_write_file(e->root, "testprobe/state", "OtherProblem False OtherOK fine\nlater\n");

        test_write_file(e->root, "u", "hang\n");
        p = spawn(e, true, &code, "--once", NULL);
        assert_int_equal(code, 0);
        assert_table_row(p->out, "TestProblem", "True", "TestLater");
        assert_table_row(p->out, "OtherProblem", "Unknown", "ProbeTimeout");
        assert_contains(p->out, "probe u did not finish a cycle within its timeout of 300ms");
        proc_free(p);
}

static void test_daemon_trigger_runs_a_cycle_now(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        /* An hour between cycles: only triggers can bring the three observations raise_after needs. */
        test_write_file(e->dir, "conf/conf.d/90-test.json",
                        "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, \"pid\": "
                        "{\"enabled\": false}, \"network\": {\"enabled\": false}, \"disk\": {\"enabled\": false},"
                        "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"1h\", \"raise_after\": 3}}}");
        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken x\ntrigger\n");
        p = spawn(e, false, NULL, NULL);
        assert_true(proc_wait_output(p, "TestProblem  Unknown -> True  TestBroken", false, DEADLINE_MS));
        stop(p);
}

static void test_once_garbage_proc(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;
        cJSON *j;

        /* An empty /proc: nothing to read is Unknown with a reason, never a crash or a False. */
        assert_int_equal(mkdir(e->proc, 0755), 0);
        p = spawn(e, true, &code, "--once", "--format", "json", NULL);
        assert_int_equal(code, 0);
        j = parse_line(p->out, 0);
        const cJSON *c = find_condition(cJSON_GetObjectItem(j, "conditions"), "MemoryThrashing");
        expect_field(c, "status", "Unknown");
        expect_field(c, "reason", "MeminfoUnreadable");
        cJSON_Delete(j);
        proc_free(p);
}

static void test_once_table(void **state) {
        struct env *e = *state;
        int code;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        p = spawn(e, true, &code, "--once", NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "Node itest-");
        assert_contains(p->out, "TYPE");
        assert_table_row(p->out, "MemoryThrashing", "False", "MemoryNotThrashing");
        proc_free(p);
}

/* ---- the running daemon ---- */

struct record {
        char condition[64], status[16], previous[16], reason[64], message_id[40], identifier[32];
        int priority;
};

static void field(sd_journal *j, const char *name, char *buf, size_t size) {
        const void *data;
        size_t len, n = strlen(name) + 1;

        buf[0] = '\0';
        if (sd_journal_get_data(j, name, &data, &len) < 0 || len < n)
                return;
        snprintf(buf, size, "%.*s", (int) (len - n), (const char *) data + n);
}

/* Reads this test's transition records, waiting (with a deadline) until there are `want`. */
static size_t read_records(const char *node, struct record *out, size_t max, size_t want) {
        sd_journal *j = NULL;
        char match[128];
        size_t n = 0;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;

        assert_int_equal(sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY), 0);
        snprintf(match, sizeof(match), "NODEHEALTH_NODE=%s", node);
        assert_int_equal(sd_journal_add_match(j, match, 0), 0);
        assert_int_equal(sd_journal_add_match(j, "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION, 0), 0);
        for (;;) {
                while (n < max && sd_journal_next(j) > 0) {
                        char prio[8];
                        field(j, "NODEHEALTH_CONDITION", out[n].condition, sizeof(out[n].condition));
                        field(j, "NODEHEALTH_STATUS", out[n].status, sizeof(out[n].status));
                        field(j, "NODEHEALTH_PREVIOUS_STATUS", out[n].previous, sizeof(out[n].previous));
                        field(j, "NODEHEALTH_REASON", out[n].reason, sizeof(out[n].reason));
                        field(j, "MESSAGE_ID", out[n].message_id, sizeof(out[n].message_id));
                        field(j, "SYSLOG_IDENTIFIER", out[n].identifier, sizeof(out[n].identifier));
                        field(j, "PRIORITY", prio, sizeof(prio));
                        out[n].priority = atoi(prio);
                        n++;
                }
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (n >= want || now >= deadline)
                        break;
                (void) sd_journal_wait(j, deadline - now < 100000 ? deadline - now : 100000);
        }
        sd_journal_close(j);
        return n;
}

static void stop(struct proc *p) {
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

static void test_daemon_transitions_to_journal(void **state) {
        struct env *e = *state;
        struct record r[16];
        struct proc *p;
        size_t n, thrash = 0;

        test_require_journald(false);
        test_use_memory_fixture(e->proc, "healthy");
        /* The shipped conf, sped up by a drop-in, as an operator would tune it. */
        test_write_file(e->dir, "conf/conf.d/90-fast.json", "{\"probes\": {\"memory\": {\"interval\": \"100ms\"}}}");
        p = spawn(e, false, NULL, "--format", "json", NULL);
        assert_true(proc_wait_output(p, "\"conditions\":[", false, DEADLINE_MS));

        proc_mark(p);
        test_swap_memory_fixture(e->proc, "thrashing");
        if (!proc_wait_output(p, "{\"type\":\"MemoryThrashing\",\"status\":\"True\"", false, DEADLINE_MS))
                fail_msg("no MemoryStall transition; stdout:\n%s\nstderr:\n%s", p->out, p->err);
        proc_mark(p);
        test_swap_memory_fixture(e->proc, "healthy");
        assert_true(proc_wait_output(p, "{\"type\":\"MemoryThrashing\",\"status\":\"False\"", false, DEADLINE_MS));
        stop(p);
        /* Each transition line is one JSON object naming the node. */
        cJSON *j = parse_line(p->out, 1);
        expect_field(j, "node", e->node);
        expect_field(cJSON_GetObjectItem(j, "condition"), "reason", "MemoryStall");
        cJSON_Delete(j);

        n = read_records(e->node, r, 16, 4);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(r[i].identifier, "nodehealthd");
                assert_string_equal(r[i].message_id, NH_MESSAGE_ID_TRANSITION);
                if (strcmp(r[i].condition, "MemoryThrashing") != 0)
                        continue;
                /* Startup (Unknown -> False), the problem, the recovery: in order. */
                static const char *const expected[][3] = {
                        {"Unknown", "False", "MemoryNotThrashing"},
                        {"False", "True", "MemoryStall"},
                        {"True", "False", "MemoryNotThrashing"},
                };
                assert_true(thrash < 3);
                assert_string_equal(r[i].previous, expected[thrash][0]);
                assert_string_equal(r[i].status, expected[thrash][1]);
                assert_string_equal(r[i].reason, expected[thrash][2]);
                assert_int_equal(r[i].priority, strcmp(r[i].status, "True") == 0 ? 4 : 5);
                thrash++;
        }
        assert_int_equal(thrash, 3);
}

static void test_daemon_survives_failing_probe(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        test_write_file(e->dir, "conf/conf.d/90-test.json",
                        "{\"journal\": {\"enabled\": false}, \"probes\": {"
                        "\"memory\": {\"interval\": \"100ms\"},"
                        "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"raise_after\": 1},"
                        "\"missing\": {\"plugin\": \"nosuchplugin\"}}}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        p = spawn(e, false, NULL, NULL);
        assert_true(proc_wait_output(p, "TestOK", false, DEADLINE_MS));
        /* The missing plugin is skipped with a clear line; the daemon goes on. */
        assert_true(proc_wait_output(p, "plugin nosuchplugin.so is in none of", true, DEADLINE_MS));

        test_write_file(e->root, "testprobe/state", "fail\n");
        assert_true(proc_wait_output(p,
                                     "TestProblem  False -> Unknown  ProbeFailed: probe t failed: Input/output error",
                                     false, DEADLINE_MS));
        /* The memory probe kept working meanwhile. */
        test_swap_memory_fixture(e->proc, "thrashing");
        assert_true(proc_wait_output(p, "MemoryThrashing  False -> True  MemoryStall", false, DEADLINE_MS));

        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken now\n");
        assert_true(proc_wait_output(p, "TestProblem  Unknown -> True  TestBroken: now", false, DEADLINE_MS));
        stop(p);
}

static void test_daemon_sigint_and_stale(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        /* A probe that stops reporting a type: Unknown after 3 intervals + timeout. */
        test_write_file(e->dir, "conf/conf.d/90-test.json",
                        "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, \"pid\": "
                        "{\"enabled\": false}, \"network\": {\"enabled\": false}, \"disk\": {\"enabled\": false},"
                        "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"timeout\": \"100ms\"}}}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        p = spawn(e, false, NULL, NULL);
        assert_true(proc_wait_output(p, "OtherOK", false, DEADLINE_MS));
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\n");
        assert_true(proc_wait_output(p,
                                     "OtherProblem  False -> Unknown  ProbeStale: probe t has not reported "
                                     "OtherProblem for",
                                     false, DEADLINE_MS));
        assert_int_equal(kill(p->pid, SIGINT), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
        assert_contains(p->err, "stopping");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
                cmocka_unit_test_setup_teardown(test_usage_is_64, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_once_json, setup, teardown),
                cmocka_unit_test_setup_teardown(test_once_garbage_proc, setup, teardown),
                cmocka_unit_test_setup_teardown(test_once_event_after_table, setup, teardown),
                cmocka_unit_test_setup_teardown(test_once_waits_for_async_probes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_trigger_runs_a_cycle_now, setup, teardown),

                cmocka_unit_test_setup_teardown(test_once_table, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_transitions_to_journal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_survives_failing_probe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_daemon_sigint_and_stale, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
