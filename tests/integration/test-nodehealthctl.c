/* SPDX-License-Identifier: MIT */
/*
 * nodehealthctl as a user runs it: the built binary reading records this test writes to the
 * real journald (./test.sh starts one), and a journal directory made by
 * systemd-journal-remote, as copied from another node.  Waits have deadlines; nothing sleeps.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "sink.h"
#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000
#define JOURNAL_REMOTE "/lib/systemd/systemd-journal-remote"

struct env {
        char *dir;
        char node[64]; /* unique per test: records are told apart by it */
        char ctl[512];
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        static unsigned counter;

        assert_non_null(e);
        e->dir = test_mkdtemp();
        snprintf(e->node, sizeof(e->node), "ctltest-%d-%u-%llu", (int) getpid(), counter++,
                 (unsigned long long) now_usec(CLOCK_REALTIME));
        snprintf(e->ctl, sizeof(e->ctl), "%s/nodehealthctl", test_builddir());
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        test_rmtree(e->dir);
        free(e->dir);
        free(e);
        return 0;
}

static void require_journald(void) {
        struct stat st;
        if (stat("/run/systemd/journal/socket", &st) < 0)
                fail_msg("no journald: /run/systemd/journal/socket is missing (./test.sh starts one)");
}

/* Runs nodehealthctl with the arguments (NULL-terminated); returns the finished proc. */
static struct proc *ctl(struct env *e, int *ret_code, ...) {
        char *argv[32] = {e->ctl};
        int argc = 1;
        va_list ap;

        va_start(ap, ret_code);
        for (char *a; (a = va_arg(ap, char *));) {
                assert_true(argc < 31);
                argv[argc++] = a;
        }
        va_end(ap);
        return proc_run(argv, DEADLINE_MS, ret_code);
}

/* A transition record exactly as sink-journal.c writes it. */
static void send_transition(const char *node, const char *type, const char *previous, const char *status,
                            const char *reason, const char *message, const char *when) {
        assert_int_equal(sd_journal_send("MESSAGE=%s is now %s (%s): %s", type, status, reason, message,
                                         "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION, "PRIORITY=%d", LOG_WARNING,
                                         "SYSLOG_IDENTIFIER=nodehealthd", "NODEHEALTH_NODE=%s", node,
                                         "NODEHEALTH_CONDITION=%s", type, "NODEHEALTH_STATUS=%s", status,
                                         "NODEHEALTH_PREVIOUS_STATUS=%s", previous, "NODEHEALTH_REASON=%s", reason,
                                         "NODEHEALTH_MESSAGE=%s", message, "NODEHEALTH_TRANSITION_TIME=%s", when, NULL),
                         0);
}

/* Waits (deadline) until journald holds `want` records of `node`. */
static void wait_records(const char *node, size_t want) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;
        sd_journal *j = NULL;
        char match[128];
        size_t n = 0;

        assert_int_equal(sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY), 0);
        snprintf(match, sizeof(match), "NODEHEALTH_NODE=%s", node);
        assert_int_equal(sd_journal_add_match(j, match, 0), 0);
        for (;;) {
                while (sd_journal_next(j) > 0)
                        n++;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (n >= want || now >= deadline)
                        break;
                (void) sd_journal_wait(j, deadline - now < 100000 ? deadline - now : 100000);
        }
        sd_journal_close(j);
        if (n < want)
                fail_msg("journald has %zu records of %s after %d ms, expected %zu", n, node, DEADLINE_MS, want);
}

static size_t count_lines(const char *text) {
        size_t n = 0;
        for (const char *p = text; (p = strchr(p, '\n')); p++)
                n++;
        return n;
}

/* Line `index` (0-based) of text, copied. */
static char *line_at(const char *text, size_t index) {
        const char *p = text;
        for (size_t i = 0; i < index && p; i++) {
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        assert_non_null(p);
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        char *s = strndup(p, (size_t) (end - p));
        assert_non_null(s);
        return s;
}

static void expect_field(const cJSON *o, const char *key, const char *value) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
        if (!v || strcmp(v, value) != 0)
                fail_msg("%s is \"%s\", expected \"%s\"", key, v ? v : "(missing)", value);
}

/* The row of `type` in the conditions table has this status and reason. */
static void assert_row(const char *table, const char *node, const char *type, const char *status, const char *reason) {
        char n[128], t[64], s[16], r[64];

        for (const char *line = table; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (sscanf(line, "%127s %63s %15s %63s", n, t, s, r) == 4 && strcmp(n, node) == 0 &&
                    strcmp(t, type) == 0) {
                        if (strcmp(s, status) != 0 || strcmp(r, reason) != 0)
                                fail_msg("%s is %s (%s), expected %s (%s), in:\n%s", type, s, r, status, reason, table);
                        return;
                }
        fail_msg("no row for %s %s in:\n%s", node, type, table);
}

/* Two conditions, three good transitions, and two hostile records that must be skipped. */
static void write_scenario(const char *node) {
        require_journald();
        send_transition(node, "ReadonlyFilesystem", "Unknown", "False", "FilesystemWritable", "all writable",
                        "2026-11-25T10:00:00Z");
        send_transition(node, "KernelDeadlock", "Unknown", "False", "KernelHasNoDeadlock", "no hung task",
                        "2026-11-25T10:00:01Z");
        send_transition(node, "ReadonlyFilesystem", "False", "True", "FilesystemIsReadOnly", "/var is read-only",
                        "2026-11-25T10:05:00Z");
        /* Garbage status, then a record without NODEHEALTH_TRANSITION_TIME. */
        send_transition(node, "ReadonlyFilesystem", "True", "Maybe", "Garbage", "bad", "2026-11-25T10:06:00Z");
        assert_int_equal(sd_journal_send("MESSAGE=incomplete", "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION,
                                         "NODEHEALTH_NODE=%s", node, "NODEHEALTH_CONDITION=KernelDeadlock",
                                         "NODEHEALTH_STATUS=True", NULL),
                         0);
        wait_records(node, 5);
}

static void test_usage(void **state) {
        struct env *e = *state;
        int code;

        proc_free(ctl(e, &code, NULL));
        assert_int_equal(code, 64);
        proc_free(ctl(e, &code, "frobnicate", NULL));
        assert_int_equal(code, 64);
        proc_free(ctl(e, &code, "--bogus", "conditions", NULL));
        assert_int_equal(code, 64);
        proc_free(ctl(e, &code, "history", "--since", "yesterday-ish", NULL));
        assert_int_equal(code, 64);
        proc_free(ctl(e, &code, "history", "--condition", NULL));
        assert_int_equal(code, 64);
        struct proc *p = ctl(e, &code, "--help", NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "conditions");
        proc_free(p);
        p = ctl(e, &code, "--version", NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "nodehealthctl ");
        proc_free(p);
}

static void test_missing_directory(void **state) {
        struct env *e = *state;
        char *missing = test_path(e->dir, "no-such-dir");
        int code;

        struct proc *p = ctl(e, &code, "conditions", "--directory", missing, NULL);
        assert_int_equal(code, 1);
        assert_contains(p->err, "cannot open the journal");
        assert_contains(p->err, missing);
        proc_free(p);
        free(missing);
}

static void test_conditions(void **state) {
        struct env *e = *state;
        int code;

        write_scenario(e->node);

        struct proc *p = ctl(e, &code, "conditions", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_contains(p->out, "NODE");
        assert_row(p->out, e->node, "ReadonlyFilesystem", "True", "FilesystemIsReadOnly");
        assert_row(p->out, e->node, "KernelDeadlock", "False", "KernelHasNoDeadlock");
        assert_int_equal(count_lines(p->out), 3); /* header and two rows */
        proc_free(p);

        p = ctl(e, &code, "conditions", "--json", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        cJSON *j = cJSON_Parse(p->out);
        assert_non_null(j);
        expect_field(j, "node", e->node);
        const cJSON *list = cJSON_GetObjectItem(j, "conditions");
        assert_int_equal(cJSON_GetArraySize(list), 2);
        /* Sorted by type. */
        const cJSON *kd = cJSON_GetArrayItem(list, 0), *ro = cJSON_GetArrayItem(list, 1);
        expect_field(kd, "type", "KernelDeadlock");
        expect_field(kd, "status", "False");
        expect_field(kd, "reason", "KernelHasNoDeadlock");
        expect_field(kd, "message", "no hung task");
        expect_field(kd, "lastTransitionTime", "2026-11-25T10:00:01Z");
        expect_field(ro, "type", "ReadonlyFilesystem");
        expect_field(ro, "status", "True");
        expect_field(ro, "reason", "FilesystemIsReadOnly");
        expect_field(ro, "message", "/var is read-only");
        expect_field(ro, "lastTransitionTime", "2026-11-25T10:05:00Z");
        uint64_t heartbeat;
        const char *hb = cJSON_GetStringValue(cJSON_GetObjectItem(ro, "lastHeartbeatTime"));
        assert_non_null(hb);
        assert_int_equal(parse_rfc3339(hb, &heartbeat), 0);
        /* The record's journal time: written moments ago. */
        assert_true(heartbeat + 600 * USEC_PER_SEC > now_usec(CLOCK_REALTIME));
        assert_int_equal(cJSON_GetArraySize(j), 2);
        assert_int_equal(cJSON_GetArraySize(kd), 6);
        cJSON_Delete(j);
        proc_free(p);
}

static void test_history(void **state) {
        struct env *e = *state;
        int code;

        write_scenario(e->node);

        struct proc *p = ctl(e, &code, "history", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 3);
        char *l0 = line_at(p->out, 0), *l2 = line_at(p->out, 2);
        assert_contains(l0, "2026-11-25T10:00:00Z");
        assert_contains(l0, "ReadonlyFilesystem  Unknown -> False  FilesystemWritable: all writable");
        assert_contains(l2, "ReadonlyFilesystem  False -> True  FilesystemIsReadOnly: /var is read-only");
        free(l0);
        free(l2);
        proc_free(p);

        p = ctl(e, &code, "history", "--node", e->node, "--condition", "KernelDeadlock", NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        assert_contains(p->out, "KernelDeadlock  Unknown -> False");
        proc_free(p);

        /* --since is about the record's journal time: an hour ago covers them, the future none. */
        p = ctl(e, &code, "history", "--node", e->node, "--since", "1h", NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 3);
        proc_free(p);
        p = ctl(e, &code, "history", "--node", e->node, "--since", "2099-01-01T00:00:00Z", NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 0);
        proc_free(p);

        p = ctl(e, &code, "history", "--json", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 3);
        char *last = line_at(p->out, 2);
        cJSON *j = cJSON_Parse(last);
        assert_non_null(j);
        expect_field(j, "node", e->node);
        expect_field(j, "previousStatus", "False");
        const cJSON *c = cJSON_GetObjectItem(j, "condition");
        expect_field(c, "type", "ReadonlyFilesystem");
        expect_field(c, "status", "True");
        expect_field(c, "lastTransitionTime", "2026-11-25T10:05:00Z");
        cJSON_Delete(j);
        free(last);
        proc_free(p);
}

static void test_events(void **state) {
        struct env *e = *state;
        int code;

        require_journald();
        send_transition(e->node, "KernelDeadlock", "Unknown", "False", "KernelHasNoDeadlock", "fine",
                        "2026-11-25T10:00:00Z");
        assert_int_equal(sd_journal_send("MESSAGE=task blocked", "MESSAGE_ID=" NH_MESSAGE_ID_EVENT,
                                         "NODEHEALTH_NODE=%s", e->node, "NODEHEALTH_EVENT=TaskHung",
                                         "NODEHEALTH_PROBE=kernel-log", NULL),
                         0);
        wait_records(e->node, 2);

        struct proc *p = ctl(e, &code, "history", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        proc_free(p);
        p = ctl(e, &code, "history", "--events", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 2);
        assert_contains(p->out, "event kernel-log TaskHung: task blocked");
        proc_free(p);
}

/* Feeds export-format text to systemd-journal-remote, which writes dir/test.journal. */
static void make_journal(const char *dir, const char *export) {
        char *file = test_path(dir, "test.journal");
        char *input = test_path(dir, "input.export");
        char *cmd = NULL;

        test_write_file(dir, "input.export", export);
        assert_true(asprintf(&cmd, "%s -o '%s' - < '%s'", JOURNAL_REMOTE, file, input) >= 0);
        char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        int code;
        proc_free(proc_run(argv, DEADLINE_MS, &code));
        assert_int_equal(code, 0);
        (void) unlink(input);
        free(cmd);
        free(input);
        free(file);
}

static void test_directory(void **state) {
        struct env *e = *state;
        char *jdir = test_path(e->dir, "journal"), *text = NULL, *file;
        int code;

        if (access(JOURNAL_REMOTE, X_OK) < 0)
                fail_msg("%s is missing: install systemd-journal-remote", JOURNAL_REMOTE);
        assert_int_equal(mkdir(jdir, 0755), 0);
        assert_true(asprintf(&text,
                             "__REALTIME_TIMESTAMP=1795600000000000\n"
                             "__MONOTONIC_TIMESTAMP=1000\n"
                             "_BOOT_ID=0123456789abcdef0123456789abcdef\n"
                             "MESSAGE=ReadonlyFilesystem is now True\n"
                             "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION "\n"
                             "SYSLOG_IDENTIFIER=nodehealthd\n"
                             "NODEHEALTH_NODE=%s-remote\n"
                             "NODEHEALTH_CONDITION=ReadonlyFilesystem\n"
                             "NODEHEALTH_STATUS=True\n"
                             "NODEHEALTH_PREVIOUS_STATUS=False\n"
                             "NODEHEALTH_REASON=FilesystemIsReadOnly\n"
                             "NODEHEALTH_MESSAGE=/ is read-only\n"
                             "NODEHEALTH_TRANSITION_TIME=2026-11-25T09:00:00Z\n"
                             "\n"
                             "__REALTIME_TIMESTAMP=1795600001000000\n"
                             "__MONOTONIC_TIMESTAMP=2000\n"
                             "_BOOT_ID=0123456789abcdef0123456789abcdef\n"
                             "MESSAGE=garbage\n"
                             "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION "\n"
                             "NODEHEALTH_NODE=%s-remote\n"
                             "NODEHEALTH_CONDITION=not a type\n"
                             "NODEHEALTH_STATUS=True\n"
                             "NODEHEALTH_PREVIOUS_STATUS=False\n"
                             "NODEHEALTH_REASON=X\n"
                             "NODEHEALTH_MESSAGE=x\n"
                             "NODEHEALTH_TRANSITION_TIME=2026-11-25T09:00:01Z\n"
                             "\n",
                             e->node, e->node) >= 0);
        make_journal(jdir, text);

        struct proc *p = ctl(e, &code, "conditions", "--json", "--directory", jdir, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        cJSON *j = cJSON_Parse(p->out);
        assert_non_null(j);
        char remote[96];
        snprintf(remote, sizeof(remote), "%s-remote", e->node);
        expect_field(j, "node", remote);
        const cJSON *list = cJSON_GetObjectItem(j, "conditions");
        assert_int_equal(cJSON_GetArraySize(list), 1);
        const cJSON *c = cJSON_GetArrayItem(list, 0);
        expect_field(c, "type", "ReadonlyFilesystem");
        expect_field(c, "status", "True");
        expect_field(c, "lastTransitionTime", "2026-11-25T09:00:00Z");
        expect_field(c, "lastHeartbeatTime", "2026-11-25T09:46:40Z");
        cJSON_Delete(j);
        proc_free(p);

        file = test_path(jdir, "test.journal");
        p = ctl(e, &code, "history", "--file", file, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        assert_contains(p->out, "ReadonlyFilesystem  False -> True  FilesystemIsReadOnly: / is read-only");
        proc_free(p);

        free(file);
        free(text);
        free(jdir);
}

/* A huge message is shown whole; a record with an empty node or a garbled time is skipped. */
static void test_hostile(void **state) {
        struct env *e = *state;
        size_t big = 200 * 1024;
        char *message = malloc(big + 1);
        int code;

        require_journald();
        assert_non_null(message);
        memset(message, 'x', big);
        message[big] = '\0';
        send_transition(e->node, "DiskPressure", "Unknown", "True", "Full", message, "2026-11-25T10:00:00Z");
        send_transition(e->node, "DiskPressure", "True", "False", "Fine", "ok", "not a time");
        send_transition("", "DiskPressure", "True", "False", "Fine", "ok", "2026-11-25T10:00:01Z");
        wait_records(e->node, 2);

        struct proc *p = ctl(e, &code, "conditions", "--json", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        cJSON *j = cJSON_Parse(p->out);
        assert_non_null(j);
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 0);
        expect_field(c, "status", "True");
        expect_field(c, "message", message);
        cJSON_Delete(j);
        proc_free(p);
        free(message);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conditions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
