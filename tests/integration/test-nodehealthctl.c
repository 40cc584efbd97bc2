/* SPDX-License-Identifier: MIT */
/*
 * nodehealthctl as a user runs it: the built binary reading records this test writes to the
 * real journald (./test.sh starts one), and a journal directory made by
 * systemd-journal-remote, as copied from another node.  Waits have deadlines; nothing sleeps.
 *
 * Then against the records the daemon itself wrote: the real daemon runs the kernel_log probe
 * over a fixture kernel log (a regular file in /dev/kmsg's format, which the probe polls), lines
 * appended to it make conditions transition and an event happen, and every nodehealthctl view
 * (conditions, --json, history, --events, --condition, --since) must say exactly what the
 * daemon printed on stdout, read from the live journal, from a copy of journald's files
 * (--directory) and from the copied files one by one (--file).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
        struct proc *daemon; /* killed by teardown when a test fails half-way */
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

        proc_free(e->daemon);
        test_rmtree(e->dir);
        free(e->dir);
        free(e);
        return 0;
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
        test_require_journald(false);
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

        test_require_journald(false);
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

        test_require_journald(false);
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

/* ---- the daemon's own records ---- */

/* A rule file in node-problem-detector's format: two conditions, one clears, one event. */
static const char daemon_rules[] =
        "{\"plugin\": \"kmsg\", \"lookback\": \"0\", \"bufferSize\": 1, \"source\": \"ctl-test\",\n"
        " \"conditions\": [\n"
        "  {\"type\": \"ReadonlyFilesystem\", \"reason\": \"FilesystemIsNotReadOnly\", \"message\": \"not "
        "read-only\"},\n"
        "  {\"type\": \"KernelDeadlock\", \"reason\": \"KernelHasNoDeadlock\", \"message\": \"no deadlock\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"ReadonlyFilesystem\", \"reason\": \"FilesystemIsReadOnly\",\n"
        "   \"pattern\": \"EXT4-fs \\\\(\\\\w+\\\\): Remounting filesystem read-only\",\n"
        "   \"clearPattern\": \"EXT4-fs \\\\(\\\\w+\\\\): re-mounted read-write\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"KernelDeadlock\", \"reason\": \"DockerHung\",\n"
        "   \"pattern\": \"task docker:\\\\d+ blocked for more than \\\\d+ seconds\\\\.\"},\n"
        "  {\"type\": \"temporary\", \"reason\": \"OOMKilling\", \"pattern\": \"Killed process \\\\d+ "
        "\\\\(.+\\\\).*\"}]}\n";

/* The daemon's transitions as it printed them on stdout (--format json), in order. */
struct printed {
        cJSON *conditions[16]; /* NodeCondition objects: the start table's, then each transition's */
        const char *previous[16];
        size_t n, n_initial;
};

static void printed_done(struct printed *pr) {
        for (size_t i = 0; i < pr->n; i++)
                cJSON_Delete(pr->conditions[i]);
}

/* Appends one record to the fixture kernel log, timestamped now (the probe skips older ones). */
static void kmsg_append(const char *path, unsigned seq, const char *text) {
        FILE *f = fopen(path, "ae");

        assert_non_null(f);
        fprintf(f, "4,%u,%llu,-;%s\n", seq, (unsigned long long) now_usec(CLOCK_MONOTONIC), text);
        assert_int_equal(fclose(f), 0);
}

/* A transition line of stdout from `from` on, parsed; waits for `needle` first. */
static void expect_transition(struct env *e, struct printed *pr, const char *needle) {
        const char *p;

        if (!proc_wait_output(e->daemon, needle, false, DEADLINE_MS))
                fail_msg("the daemon did not print %s; stdout:\n%s\nstderr:\n%s", needle, e->daemon->out,
                         e->daemon->err);
        p = strstr(e->daemon->out + e->daemon->out_mark, "{\"node\":");
        assert_non_null(p);
        cJSON *line = cJSON_ParseWithOpts(p, NULL, false);
        assert_non_null(line);
        cJSON *c = cJSON_DetachItemFromObject(line, "condition");
        if (!c)
                fail_msg("not a transition line: %s", p);
        assert_true(pr->n < 16);
        /* The previous status: that of the latest printed condition of the same type. */
        pr->previous[pr->n] = "Unknown";
        for (size_t i = pr->n; i-- > 0;)
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(pr->conditions[i], "type")),
                           cJSON_GetStringValue(cJSON_GetObjectItem(c, "type"))) == 0) {
                        pr->previous[pr->n] = cJSON_GetStringValue(cJSON_GetObjectItem(pr->conditions[i], "status"));
                        break;
                }
        pr->conditions[pr->n++] = c;
        cJSON_Delete(line);
        proc_mark(e->daemon);
}

/* Asserts that a NodeCondition from nodehealthctl says what the daemon printed (heartbeats aside). */
static void same_condition(const cJSON *got, const cJSON *want) {
        static const char *const keys[] = {"type", "status", "reason", "message", "lastTransitionTime"};

        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                expect_field(got, keys[k], cJSON_GetStringValue(cJSON_GetObjectItem(want, keys[k])));
}

/* The latest printed state of `type`. */
static const cJSON *printed_latest(const struct printed *pr, const char *type) {
        for (size_t i = pr->n; i-- > 0;)
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(pr->conditions[i], "type")), type) == 0)
                        return pr->conditions[i];
        fail_msg("the daemon printed no %s", type);
        return NULL;
}

/*
 * `history --json` (as many lines as `want` holds, in journal order) against the printed
 * transitions: the start table's first (in any order), then the others in the order printed.
 */
static void check_history_json(const struct printed *pr, const char *out, const char *node, const char *only_type) {
        size_t want = 0, line = 0;

        for (size_t i = 0; i < pr->n; i++)
                if (!only_type ||
                    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(pr->conditions[i], "type")), only_type) == 0)
                        want++;
        if (count_lines(out) != want)
                fail_msg("%zu history lines, the daemon printed %zu transitions%s%s:\n%s", count_lines(out), want,
                         only_type ? " of " : "", only_type ? only_type : "", out);
        for (size_t i = 0; i < pr->n; i++) {
                const cJSON *w = pr->conditions[i];
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(w, "type"));
                size_t at = line;

                if (only_type && strcmp(type, only_type) != 0)
                        continue;
                if (i < pr->n_initial) {
                        /* The start table's order is not the journal's: find the line of this type. */
                        for (at = 0; at < pr->n_initial; at++) {
                                char *l = line_at(out, at);
                                cJSON *j = cJSON_Parse(l);
                                bool same = j && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                                                                cJSON_GetObjectItem(j, "condition"), "type")),
                                                        type) == 0;
                                cJSON_Delete(j);
                                free(l);
                                if (same)
                                        break;
                        }
                        if (only_type)
                                at = line;
                }
                char *l = line_at(out, at);
                cJSON *j = cJSON_Parse(l);
                if (!j)
                        fail_msg("history line %zu is not JSON: %s", at, l);
                expect_field(j, "node", node);
                expect_field(j, "previousStatus", pr->previous[i]);
                same_condition(cJSON_GetObjectItem(j, "condition"), w);
                cJSON_Delete(j);
                free(l);
                line++;
        }
}

/* The realtime of every transition record of node, in journal order; how many are of `type`. */
static size_t record_times(const char *node, uint64_t *times, bool *of_type, const char *type, size_t max) {
        sd_journal *j = NULL;
        char match[128];
        size_t n = 0;

        assert_int_equal(sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY), 0);
        snprintf(match, sizeof(match), "NODEHEALTH_NODE=%s", node);
        assert_int_equal(sd_journal_add_match(j, match, 0), 0);
        assert_int_equal(sd_journal_add_match(j, "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION, 0), 0);
        while (n < max && sd_journal_next(j) > 0) {
                const void *data;
                size_t len;

                assert_int_equal(sd_journal_get_data(j, "NODEHEALTH_CONDITION", &data, &len), 0);
                of_type[n] = len == strlen("NODEHEALTH_CONDITION=") + strlen(type) &&
                             memcmp((const char *) data + strlen("NODEHEALTH_CONDITION="), type, strlen(type)) == 0;
                assert_int_equal(sd_journal_get_realtime_usec(j, &times[n++]), 0);
        }
        sd_journal_close(j);
        return n;
}

/*
 * Copies journald's files that changed since `since` (µs, realtime) into dst, named uniquely;
 * returns their paths.  A copy of the files is what an operator takes from a broken node.
 */
static size_t copy_journal_files(const char *dst, uint64_t since, char **paths, size_t max) {
        static const char *const roots[] = {"/run/log/journal", "/var/log/journal"};
        size_t n = 0;

        for (size_t r = 0; r < 2; r++) {
                DIR *top = opendir(roots[r]);
                struct dirent *m;

                if (!top)
                        continue;
                while ((m = readdir(top))) {
                        char *sub = NULL;
                        DIR *d;
                        struct dirent *f;

                        if (m->d_name[0] == '.')
                                continue;
                        assert_true(asprintf(&sub, "%s/%s", roots[r], m->d_name) >= 0);
                        d = opendir(sub);
                        while (d && (f = readdir(d))) {
                                char *src = NULL, *name = NULL;
                                struct stat st;
                                size_t len = strlen(f->d_name);

                                if (len < 9 || strcmp(f->d_name + len - 8, ".journal") != 0)
                                        continue;
                                assert_true(asprintf(&src, "%s/%s", sub, f->d_name) >= 0);
                                if (stat(src, &st) == 0 &&
                                    (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC + 2 * USEC_PER_SEC >= since) {
                                        char *argv[] = {"/bin/cp", src, NULL, NULL};
                                        int code;

                                        assert_true(n < max);
                                        assert_true(asprintf(&name, "%s/%s-%s", dst, r == 0 ? "run" : "var",
                                                             f->d_name) >= 0);
                                        argv[2] = name;
                                        proc_free(proc_run(argv, DEADLINE_MS, &code));
                                        assert_int_equal(code, 0);
                                        paths[n++] = name;
                                }
                                free(src);
                        }
                        if (d)
                                closedir(d);
                        free(sub);
                }
                closedir(top);
        }
        return n;
}

/* Runs nodehealthctl with argv (NULL-terminated, without the program) plus `extra` pairs. */
static struct proc *ctl_argv(struct env *e, int *ret_code, char *const *args, const char *flag, char **values,
                             size_t n_values) {
        char *argv[64] = {e->ctl};
        size_t argc = 1;

        for (; *args; args++)
                argv[argc++] = *args;
        for (size_t i = 0; i < n_values; i++) {
                assert_true(argc + 3 < 64);
                argv[argc++] = (char *) flag;
                argv[argc++] = values[i];
        }
        argv[argc] = NULL;
        return proc_run(argv, DEADLINE_MS, ret_code);
}

static void test_daemon_records(void **state) {
        struct env *e = *state;
        uint64_t start = now_usec(CLOCK_REALTIME), times[16], cut;
        char *conf_text = NULL, *rules = test_path(e->dir, "rules.json"), *kmsg = test_path(e->dir, "kmsg");
        char *conf, *plugin_dir = test_path(test_builddir(), "plugins/.libs"), since[RFC3339_MAX];
        char *copy = test_path(e->dir, "copy"), *files[32];
        struct printed pr = {0};
        size_t n_times, n_files, want, want_readonly;
        bool readonly[16];
        int code;

        test_require_journald(false);
        test_write_file(e->dir, "rules.json", daemon_rules);
        test_write_file(e->dir, "kmsg", "");
        assert_true(asprintf(&conf_text,
                             "{\"probes\": {\"kernel\": {\"plugin\": \"kernel_log\", \"npd_config\": \"%s\", "
                             "\"source\": \"kmsg\", \"kmsg_path\": \"%s\", \"raise_after\": 1, \"clear_after\": 1}},\n"
                             " \"journal\": {\"enabled\": true}, \"http\": {\"listen\": \"\"}}\n",
                             rules, kmsg) >= 0);
        test_write_file(e->dir, "nodehealthd.json", conf_text);
        conf = test_path(e->dir, "nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        char *argv[] = {(char *) test_daemon_path(),
                        "--config",
                        conf,
                        "--plugin-dir",
                        plugin_dir,
                        "--format",
                        "json",
                        "--standalone",
                        "--node-name",
                        e->node,
                        NULL};
        e->daemon = proc_spawn(argv);

        /* The start table: each condition's first state, recorded as a transition from Unknown. */
        if (!proc_wait_output(e->daemon, "\"conditions\":[", false, DEADLINE_MS))
                fail_msg("no start table; stderr:\n%s", e->daemon->err);
        {
                cJSON *table = cJSON_ParseWithOpts(e->daemon->out, NULL, false);
                const cJSON *c;

                assert_non_null(table);
                cJSON_ArrayForEach(c, cJSON_GetObjectItem(table, "conditions")) {
                        assert_true(pr.n < 16);
                        pr.previous[pr.n] = "Unknown";
                        pr.conditions[pr.n++] = cJSON_Duplicate(c, true);
                }
                cJSON_Delete(table);
                pr.n_initial = pr.n;
                assert_int_equal(pr.n_initial, 2);
                proc_mark(e->daemon);
        }

        kmsg_append(kmsg, 1, "EXT4-fs (sda1): Remounting filesystem read-only");
        expect_transition(e, &pr, "\"type\":\"ReadonlyFilesystem\",\"status\":\"True\"");
        kmsg_append(kmsg, 2, "task docker:1234 blocked for more than 120 seconds.");
        expect_transition(e, &pr, "\"type\":\"KernelDeadlock\",\"status\":\"True\"");
        kmsg_append(kmsg, 3, "Killed process 4242 (stress) total-vm:1024kB, anon-rss:512kB, file-rss:0kB");
        if (!proc_wait_output(e->daemon, "\"event\":{\"reason\":\"OOMKilling\"", false, DEADLINE_MS))
                fail_msg("no OOMKilling event; stdout:\n%s", e->daemon->out);
        proc_mark(e->daemon);
        kmsg_append(kmsg, 4, "EXT4-fs (sda1): re-mounted read-write");
        expect_transition(e, &pr, "\"type\":\"ReadonlyFilesystem\",\"status\":\"False\"");
        assert_int_equal(kill(e->daemon->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(e->daemon, DEADLINE_MS), 0);
        proc_free(e->daemon);
        e->daemon = NULL;
        wait_records(e->node, pr.n + 1); /* the transitions and the event */

        /* conditions: the latest of each, as a table and as JSON. */
        struct proc *p = ctl(e, &code, "conditions", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 3);
        assert_row(p->out, e->node, "ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly");
        assert_row(p->out, e->node, "KernelDeadlock", "True", "DockerHung");
        assert_contains(p->out, "not read-only (cleared by: EXT4-fs (sda1): re-mounted read-write)");
        proc_free(p);
        p = ctl(e, &code, "conditions", "--json", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), 1);
        cJSON *j = cJSON_Parse(p->out);
        assert_non_null(j);
        expect_field(j, "node", e->node);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "conditions")), 2);
        same_condition(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 0),
                       printed_latest(&pr, "KernelDeadlock"));
        same_condition(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "conditions"), 1),
                       printed_latest(&pr, "ReadonlyFilesystem"));
        cJSON_Delete(j);
        char *live_conditions = strdup(p->out);
        proc_free(p);

        /* history: every transition printed, in order; with --events the event too. */
        p = ctl(e, &code, "history", "--json", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        check_history_json(&pr, p->out, e->node, NULL);
        char *live_history = strdup(p->out);
        proc_free(p);
        p = ctl(e, &code, "history", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), pr.n);
        assert_contains(p->out, "  ReadonlyFilesystem  False -> True  FilesystemIsReadOnly: EXT4-fs (sda1): Remounting "
                                "filesystem read-only\n");
        assert_contains(p->out, "  KernelDeadlock  False -> True  DockerHung: task docker:1234 blocked for more than "
                                "120 seconds.\n");
        proc_free(p);
        p = ctl(e, &code, "history", "--events", "--node", e->node, NULL);
        assert_int_equal(code, 0);
        assert_int_equal(count_lines(p->out), pr.n + 1);
        assert_contains(p->out, "event kernel OOMKilling: Killed process 4242 (stress) total-vm:1024kB");
        proc_free(p);
        p = ctl(e, &code, "history", "--json", "--node", e->node, "--condition", "ReadonlyFilesystem", NULL);
        assert_int_equal(code, 0);
        check_history_json(&pr, p->out, e->node, "ReadonlyFilesystem");
        proc_free(p);

        /* --since: exactly the records whose journal time is at or after TIME (whole seconds). */
        n_times = record_times(e->node, times, readonly, "ReadonlyFilesystem", 16);
        assert_int_equal(n_times, pr.n);
        cut = times[pr.n_initial + 1] / USEC_PER_SEC * USEC_PER_SEC; /* the second of KernelDeadlock's */
        format_rfc3339(since, sizeof(since), cut);
        want = want_readonly = 0;
        for (size_t i = 0; i < n_times; i++) {
                want += times[i] >= cut;
                want_readonly += times[i] >= cut && readonly[i];
        }
        p = ctl(e, &code, "history", "--node", e->node, "--since", since, NULL);
        assert_int_equal(code, 0);
        if (count_lines(p->out) != want)
                fail_msg("history --since %s: %zu lines, %zu records are that recent:\n%s", since, count_lines(p->out),
                         want, p->out);
        assert_contains(p->out, "KernelDeadlock  False -> True");
        proc_free(p);
        p = ctl(e, &code, "history", "--node", e->node, "--condition", "ReadonlyFilesystem", "--since", since, NULL);
        assert_int_equal(code, 0);
        if (count_lines(p->out) != want_readonly)
                fail_msg("history --condition ReadonlyFilesystem --since %s: %zu lines, %zu records:\n%s", since,
                         count_lines(p->out), want_readonly, p->out);
        assert_contains(p->out, "ReadonlyFilesystem  True -> False");
        if (strstr(p->out, "KernelDeadlock"))
                fail_msg("--condition ReadonlyFilesystem shows KernelDeadlock:\n%s", p->out);
        proc_free(p);

        /* A copy of journald's files: --directory, and --file for each, say the same. */
        (void) system("journalctl --sync >/dev/null 2>&1"); /* best effort: consistent files to copy */
        assert_int_equal(mkdir(copy, 0755), 0);
        n_files = copy_journal_files(copy, start, files, 32);
        if (n_files == 0)
                fail_msg("no journal file in /run/log/journal or /var/log/journal changed during the test");
        {
                char *args[] = {"conditions", "--json", "--node", e->node, "--directory", copy, NULL};
                p = ctl_argv(e, &code, args, NULL, NULL, 0);
                assert_int_equal(code, 0);
                assert_string_equal(p->out, live_conditions);
                proc_free(p);
        }
        {
                char *args[] = {"history", "--json", "--node", e->node, "--directory", copy, NULL};
                p = ctl_argv(e, &code, args, NULL, NULL, 0);
                assert_int_equal(code, 0);
                assert_string_equal(p->out, live_history);
                proc_free(p);
        }
        {
                char *args[] = {"history", "--json", "--node", e->node, NULL};
                p = ctl_argv(e, &code, args, "--file", files, n_files);
                assert_int_equal(code, 0);
                assert_string_equal(p->out, live_history);
                proc_free(p);
        }
        {
                char *args[] = {"conditions", "--json", "--node", e->node, NULL};
                p = ctl_argv(e, &code, args, "--file", files, n_files);
                assert_int_equal(code, 0);
                assert_string_equal(p->out, live_conditions);
                proc_free(p);
        }

        for (size_t i = 0; i < n_files; i++)
                free(files[i]);
        free(live_conditions);
        free(live_history);
        printed_done(&pr);
        free(copy);
        free(conf);
        free(conf_text);
        free(plugin_dir);
        free(kmsg);
        free(rules);
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
                cmocka_unit_test_setup_teardown(test_daemon_records, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
