/* SPDX-License-Identifier: MIT */
/*
 * The custom probe (node-problem-detector's custom plugins), loaded through the real loader into
 * a real condition table, running real scripts (tests/fixtures/custom/) on a real loop.  The
 * harness is what the daemon is for them: SIGCHLD blocked, children reaped on the loop, a child
 * subreaper.
 *
 * Exit statuses 0, 1, 2, 3 and 100, signals, scripts that cannot start, output longer than
 * max_output_length (and than a pipe holds), timeouts with SIGTERM, scripts that ignore SIGTERM,
 * grandchildren that outlive their script, a process that not even SIGKILL ends (a frozen
 * cgroup-v1 freezer group: state D), concurrency, invoke_interval, several rules on one
 * condition, and the NPD file's errors with their positions.  After each test no process this
 * one started is left, and no zombie (from /proc).  Times are asserted only with bounds loose
 * enough never to flake.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "children.h"
#include "npd-config.h"
#include "../../plugins/common/go-duration.h"
#include "testlib.h"
#include "util.h"

/* ---- helpers ---- */

static uint64_t mono_usec(void) {
        return now_usec(CLOCK_MONOTONIC);
}

static char *fixture(const char *name) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/custom/%s", name) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

/* `text` with every "@F@" replaced by the fixtures directory and every "@T@" by `tmp`. */
static char *expand(const char *text, const char *tmp) {
        char *fixtures = fixture(""), *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        assert_non_null(f);
        fixtures[strlen(fixtures) - 1] = '\0'; /* no trailing "/" */
        for (const char *p = text; *p;) {
                if (strncmp(p, "@F@", 3) == 0) {
                        fputs(fixtures, f);
                        p += 3;
                } else if (strncmp(p, "@T@", 3) == 0) {
                        fputs(tmp, f);
                        p += 3;
                } else
                        fputc(*p++, f);
        }
        assert_int_equal(fclose(f), 0);
        free(fixtures);
        return out;
}

struct env {
        char *tmp; /* scratch directory: the NPD file, state files */
        struct harness *h;
};

/* A harness with one custom probe ("scripts") on the NPD text `npd` (expanded); `extra` adds probe keys. */
static struct env *env_new(const char *npd, const char *extra) {
        struct env *e = calloc(1, sizeof(*e));
        char *text, *config = NULL, *path;
        int r;

        assert_non_null(e);
        e->tmp = test_mkdtemp();
        text = expand(npd, e->tmp);
        test_write_file(e->tmp, "npd.json", text);
        free(text);
        path = test_path(e->tmp, "npd.json");
        assert_true(
                asprintf(&config,
                         "{\"probes\": {\"scripts\": {\"plugin\": \"custom\", \"npd_config\": \"%s\", "
                         "\"interval\": \"30s\", \"timeout\": \"30s\", \"raise_after\": 1, \"clear_after\": 1%s%s}}}",
                         path, extra ? ", " : "", extra ? extra : "") >= 0);
        free(path);
        r = harness_new(config, NULL, NULL, NULL, &e->h);
        if (r < 0)
                print_error("harness_new: %s\n", e->h->last_error ? e->h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        assert_int_equal(e->h->n_probes, 1);
        assert_true(nh_probe_running(e->h->probes[0]));
        free(config);
        return e;
}

static size_t scan_children(bool zombies_only, bool show);
static size_t count_zombies(void);

static bool no_children(struct harness *h) {
        return nh_children_watched(h->children) == 0;
}

/*
 * No script running, and nothing they started left: neither running nor a zombie.  "No zombie"
 * alone is not enough: a process killed with its script's group may still be dying, not yet a
 * zombie, when the script's end is reported.
 */
static bool settled(struct harness *h) {
        return no_children(h) && scan_children(false, false) == 0;
}

/* harness_loop(h, ms, settled), saying what is left when it does not settle. */
static bool wait_settled(struct harness *h, int timeout_ms) {
        if (harness_loop(h, timeout_ms, settled))
                return true;
        print_error("# %zu children still watched\n", nh_children_watched(h->children));
        (void) scan_children(false, true);
        return false;
}

static void env_free(struct env *e) {
        if (!e)
                return;
        /* Every script has ended (the tests wait for them): nothing may be left to the teardown. */
        assert_true(wait_settled(e->h, 20000));
        harness_free(e->h);
        assert_int_equal(count_zombies(), 0);
        test_rmtree(e->tmp);
        free(e->tmp);
        free(e);
}

static uint64_t counter(struct harness *h, const char *name) {
        size_t n = 0;
        const struct nh_probe_counter *c = nh_probe_counters(h->probes[0], &n);

        for (size_t i = 0; i < n; i++)
                if (strcmp(c[i].name, name) == 0)
                        return c[i].value;
        return 0;
}

static void assert_message(struct harness *h, const char *type, const char *message) {
        const struct nh_condition *c = harness_condition(h, type);

        assert_non_null(c);
        if (strcmp(c->message, message) != 0) {
                print_error("%s: message\n  \"%s\"\nexpected\n  \"%s\"\n", type, c->message, message);
                fail();
        }
}

struct children_match {
        bool zombies_only;
};

static bool is_our_child(const struct test_pstat *p, const void *arg) {
        const struct children_match *m = arg;

        return p->ppid == getpid() && (!m->zombies_only || p->state == 'Z');
}

/*
 * This process's children as /proc lists them: all of them, or only the zombies (ended, and
 * nobody reaped them).  `show` prints each one.
 */
static size_t scan_children(bool zombies_only, bool show) {
        return test_pstat_count(is_our_child, &(struct children_match){zombies_only}, show);
}

static size_t count_zombies(void) {
        return scan_children(true, false);
}

static long read_pid_file(const char *dir, const char *name) {
        char *path = test_path(dir, name), *text;
        long pid = 0;

        text = test_read_file(path);
        if (text)
                pid = strtol(text, NULL, 10);
        free(text);
        free(path);
        return pid;
}

/* Ended: reaped, or a zombie. */
static bool process_gone(pid_t pid) {
        struct test_pstat p;

        return !test_pstat(pid, &p) || p.state == 'Z';
}

static bool alive_in_group(const struct test_pstat *p, const void *arg) {
        return p->pgrp == *(const pid_t *) arg && p->state != 'Z';
}

/* Any process (this one's descendants included) still running in process group `pgrp`? */
static bool group_alive(pid_t pgrp) {
        return test_pstat_count(alive_in_group, &pgrp, false) > 0;
}

/* ---- exit statuses ---- */

static const char npd_statuses[] =
        "{\n"
        "  \"plugin\": \"custom\",\n"
        "  \"pluginConfig\": {\"invoke_interval\": \"30s\", \"timeout\": \"10s\", \"max_output_length\": 80,\n"
        "                   \"concurrency\": 3},\n"
        "  \"source\": \"test-custom\",\n"
        "  \"conditions\": [\n"
        "    {\"type\": \"ZeroProblem\", \"reason\": \"ZeroIsFine\", \"message\": \"zero is fine\"},\n"
        "    {\"type\": \"OneProblem\", \"reason\": \"OneIsFine\", \"message\": \"one is fine\"},\n"
        "    {\"type\": \"TwoProblem\", \"reason\": \"TwoIsFine\", \"message\": \"two is fine\"},\n"
        "    {\"type\": \"ThreeProblem\", \"reason\": \"ThreeIsFine\"},\n"
        "    {\"type\": \"HundredProblem\", \"reason\": \"HundredIsFine\"},\n"
        "    {\"type\": \"QuietProblem\", \"reason\": \"NothingToSay\", \"message\": \"no rule feeds this\"}\n"
        "  ],\n"
        "  \"rules\": [\n"
        "    {\"type\": \"permanent\", \"condition\": \"ZeroProblem\", \"reason\": \"ZeroBroken\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"0\", \"all good\"]},\n"
        "    {\"type\": \"permanent\", \"condition\": \"OneProblem\", \"reason\": \"OneBroken\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"1\", \"one is broken\"], \"timeout\": \"5s\"},\n"
        "    {\"type\": \"permanent\", \"condition\": \"TwoProblem\", \"reason\": \"TwoBroken\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"2\", \"cannot tell\"]},\n"
        "    {\"type\": \"permanent\", \"condition\": \"ThreeProblem\", \"reason\": \"ThreeBroken\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"3\", \"\"]},\n"
        "    {\"type\": \"permanent\", \"condition\": \"HundredProblem\", \"reason\": \"HundredBroken\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"100\", \"a hundred\"]},\n"
        "    {\"type\": \"temporary\", \"reason\": \"TempProblem\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"1\", \"temporary trouble\"]},\n"
        "    {\"type\": \"temporary\", \"reason\": \"TempQuiet\",\n"
        "     \"path\": \"@F@/status.sh\", \"args\": [\"0\", \"nothing happened\"]}\n"
        "  ]\n"
        "}\n";

static void test_exit_statuses(void **state) {
        struct env *e = env_new(npd_statuses, NULL);
        struct harness *h = e->h;
        char *status = fixture("status.sh"), *expected = NULL;

        harness_run(h);

        assert_condition(h, "ZeroProblem", NH_STATUS_FALSE, "ZeroIsFine");
        assert_message(h, "ZeroProblem", "zero is fine");
        assert_condition(h, "OneProblem", NH_STATUS_TRUE, "OneBroken");
        assert_message(h, "OneProblem", "one is broken");
        assert_condition(h, "TwoProblem", NH_STATUS_UNKNOWN, "PluginStatusUnknown");
        assert_true(asprintf(&expected, "%s exited with status 2 (0 is OK, 1 a problem): cannot tell", status) >= 0);
        assert_message(h, "TwoProblem", expected);
        free(expected);
        assert_condition(h, "ThreeProblem", NH_STATUS_UNKNOWN, "PluginStatusUnknown");
        assert_true(asprintf(&expected, "%s exited with status 3 (0 is OK, 1 a problem) and printed nothing", status) >=
                    0);
        assert_message(h, "ThreeProblem", expected);
        free(expected);
        assert_condition(h, "HundredProblem", NH_STATUS_UNKNOWN, "PluginStatusUnknown");
        assert_true(asprintf(&expected, "%s exited with status 100 (0 is OK, 1 a problem): a hundred", status) >= 0);
        assert_message(h, "HundredProblem", expected);
        free(expected);
        /* A condition no rule feeds is False with the file's reason and message, as NPD reports it. */
        assert_condition(h, "QuietProblem", NH_STATUS_FALSE, "NothingToSay");
        assert_message(h, "QuietProblem", "no rule feeds this");

        /* The temporary rule that said "problem" is one event; the one that said OK is none. */
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->events[0].reason, "TempProblem");
        assert_string_equal(h->events[0].message, "temporary trouble");

        assert_int_equal(counter(h, "runs"), 7);
        assert_int_equal(counter(h, "problems"), 2);
        assert_int_equal(counter(h, "unknown"), 3);
        assert_int_equal(counter(h, "timeouts"), 0);
        free(status);
        env_free(e);
}

/* ---- output ---- */

static const char npd_output[] = "{\"plugin\": \"custom\",\n"
                                 " \"pluginConfig\": {\"max_output_length\": 20, \"timeout\": \"20s\"},\n"
                                 " \"conditions\": [{\"type\": \"LongProblem\", \"reason\": \"LongOK\"},\n"
                                 "                {\"type\": \"FloodProblem\", \"reason\": \"FloodOK\"},\n"
                                 "                {\"type\": \"MessyProblem\", \"reason\": \"MessyOK\"}],\n"
                                 " \"rules\": [\n"
                                 "  {\"type\": \"permanent\", \"condition\": \"LongProblem\", \"reason\": \"TooLong\", "
                                 "\"path\": \"@F@/long.sh\"},\n"
                                 "  {\"type\": \"permanent\", \"condition\": \"FloodProblem\", \"reason\": "
                                 "\"Flooded\", \"path\": \"@F@/flood.sh\"},\n"
                                 "  {\"type\": \"permanent\", \"condition\": \"MessyProblem\", \"reason\": \"Messy\",\n"
                                 "   \"path\": \"@F@/whitespace.sh\"}]}\n";

static void test_output(void **state) {
        struct env *e = env_new(npd_output, NULL);
        struct harness *h = e->h;

        harness_run(h);
        /* Cut at max_output_length bytes. */
        assert_condition(h, "LongProblem", NH_STATUS_TRUE, "TooLong");
        assert_message(h, "LongProblem", "0123456789abcdefghij");
        /* A mebibyte: drained, so the script ended by itself (exit 1), not by its timeout. */
        assert_condition(h, "FloodProblem", NH_STATUS_TRUE, "Flooded");
        assert_message(h, "FloodProblem", "first line\nflood lin");
        /* Trimmed; a byte that is not UTF-8 is "?", a control character a space. */
        assert_condition(h, "MessyProblem", NH_STATUS_TRUE, "Messy");
        assert_message(h, "MessyProblem", "hello ? wo rld");
        assert_int_equal(counter(h, "timeouts"), 0);
        env_free(e);
}

/* ---- failures to start, signals ---- */

static const char npd_failures[] =
        "{\"plugin\": \"custom\",\n"
        " \"conditions\": [{\"type\": \"MissingProblem\", \"reason\": \"MissingOK\"},\n"
        "                {\"type\": \"ModeProblem\", \"reason\": \"ModeOK\"},\n"
        "                {\"type\": \"PathProblem\", \"reason\": \"PathOK\"},\n"
        "                {\"type\": \"TrueProblem\", \"reason\": \"TrueOK\", \"message\": \"true is true\"},\n"
        "                {\"type\": \"SignalProblem\", \"reason\": \"SignalOK\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"MissingProblem\", \"reason\": \"Missing\",\n"
        "   \"path\": \"@T@/no-such-script.sh\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"ModeProblem\", \"reason\": \"NotExecutable\",\n"
        "   \"path\": \"@F@/not-executable.sh\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"PathProblem\", \"reason\": \"NotInPath\",\n"
        "   \"path\": \"nodehealthd-no-such-command\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"TrueProblem\", \"reason\": \"NotTrue\", \"path\": \"true\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"SignalProblem\", \"reason\": \"Signalled\",\n"
        "   \"path\": \"@F@/signal.sh\"}]}\n";

static void test_failures(void **state) {
        struct env *e = env_new(npd_failures, NULL);
        struct harness *h = e->h;
        char *expected = NULL, *script = fixture("not-executable.sh");

        harness_run(h);
        assert_condition(h, "MissingProblem", NH_STATUS_UNKNOWN, "PluginStartFailed");
        assert_true(asprintf(&expected, "cannot start %s/no-such-script.sh: No such file or directory", e->tmp) >= 0);
        assert_message(h, "MissingProblem", expected);
        free(expected);
        assert_condition(h, "ModeProblem", NH_STATUS_UNKNOWN, "PluginStartFailed");
        assert_true(asprintf(&expected, "cannot start %s: Permission denied", script) >= 0);
        assert_message(h, "ModeProblem", expected);
        free(expected);
        free(script);
        /* A name without "/" is looked up in $PATH, as node-problem-detector's exec.Command does. */
        assert_condition(h, "PathProblem", NH_STATUS_UNKNOWN, "PluginStartFailed");
        assert_message(h, "PathProblem", "cannot start nodehealthd-no-such-command: No such file or directory");
        assert_condition(h, "TrueProblem", NH_STATUS_FALSE, "TrueOK");
        assert_message(h, "TrueProblem", "true is true");

        script = fixture("signal.sh");
        assert_condition(h, "SignalProblem", NH_STATUS_UNKNOWN, "PluginKilled");
        assert_true(asprintf(&expected, "%s was killed by SIGUSR1: about to die", script) >= 0);
        assert_message(h, "SignalProblem", expected);
        free(expected);
        free(script);
        assert_int_equal(counter(h, "start_failures"), 3);
        env_free(e);
}

/* ---- timeouts ---- */

static const char npd_timeouts[] =
        "{\"plugin\": \"custom\",\n"
        " \"pluginConfig\": {\"timeout\": \"10s\"},\n"
        " \"conditions\": [{\"type\": \"SlowProblem\", \"reason\": \"SlowOK\"},\n"
        "                {\"type\": \"StubbornProblem\", \"reason\": \"StubbornOK\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"SlowProblem\", \"reason\": \"Slow\",\n"
        "   \"path\": \"@F@/sleep.sh\", \"args\": [\"60\"], \"timeout\": \"1s\"},\n"
        "  {\"type\": \"permanent\", \"condition\": \"StubbornProblem\", \"reason\": \"Stubborn\",\n"
        "   \"path\": \"@F@/ignore-term.sh\", \"args\": [\"@T@/stubborn.pid\", \"60\"], \"timeout\": \"1s\"}]}\n";

static void test_timeouts(void **state) {
        struct env *e = env_new(npd_timeouts, "\"kill_grace\": \"1s\"");
        struct harness *h = e->h;
        char *expected = NULL, *script;
        uint64_t start = mono_usec(), decided, ended;
        long stubborn;

        harness_run(h);
        decided = mono_usec();
        /* The outcome comes at the timeout (1 s), not when the killing is over. */
        assert_true(decided - start >= 900 * USEC_PER_MSEC);
        assert_true(decided - start < 15 * USEC_PER_SEC);

        script = fixture("sleep.sh");
        assert_condition(h, "SlowProblem", NH_STATUS_UNKNOWN, "PluginTimeout");
        assert_true(asprintf(&expected,
                             "%s did not finish within 1s and was stopped (SIGTERM, SIGKILL 1s later): "
                             "sleeping 60",
                             script) >= 0);
        assert_message(h, "SlowProblem", expected);
        free(expected);
        free(script);
        script = fixture("ignore-term.sh");
        assert_condition(h, "StubbornProblem", NH_STATUS_UNKNOWN, "PluginTimeout");
        assert_true(asprintf(&expected,
                             "%s did not finish within 1s and was stopped (SIGTERM, SIGKILL 1s later): "
                             "ignoring SIGTERM",
                             script) >= 0);
        assert_message(h, "StubbornProblem", expected);
        free(expected);
        free(script);
        assert_int_equal(counter(h, "timeouts"), 2);

        /* SIGTERM ended sleep.sh; ignore-term.sh needed SIGKILL, a grace period later. */
        stubborn = read_pid_file(e->tmp, "stubborn.pid");
        assert_true(stubborn > 0);
        assert_true(wait_settled(h, 20000));
        ended = mono_usec();
        assert_int_equal(counter(h, "sigkills"), 1);
        assert_int_equal(counter(h, "abandoned"), 0);
        assert_true(ended - decided >= 700 * USEC_PER_MSEC);
        /* Its whole process group is gone: the script and the sleep it ran. */
        assert_false(group_alive((pid_t) stubborn));
        env_free(e);
}

/* ---- grandchildren ---- */

static const char npd_orphans[] =
        "{\"plugin\": \"custom\",\n"
        " \"conditions\": [{\"type\": \"OrphanProblem\", \"reason\": \"OrphanOK\", \"message\": \"fine\"}],\n"
        " \"rules\": [{\"type\": \"permanent\", \"condition\": \"OrphanProblem\", \"reason\": \"Orphaned\",\n"
        "             \"path\": \"@F@/orphan.sh\", \"args\": [\"@T@/grandchild.pid\", \"3\"]}]}\n";

static bool grandchild_gone(struct harness *h);
static long grandchild;

static bool grandchild_gone(struct harness *h) {
        return process_gone((pid_t) grandchild) && count_zombies() == 0;
}

static void test_orphans(void **state) {
        struct env *e = env_new(npd_orphans, NULL);
        struct harness *h = e->h;

        harness_run(h);
        /* The script's end is the outcome, though its grandchild still holds its stdout open. */
        assert_condition(h, "OrphanProblem", NH_STATUS_FALSE, "OrphanOK");
        assert_message(h, "OrphanProblem", "fine");
        grandchild = read_pid_file(e->tmp, "grandchild.pid");
        assert_true(grandchild > 0);
        /* Still sleeping, and re-parented to this process, the subreaper. */
        {
                struct test_pstat p;
                assert_true(test_pstat((pid_t) grandchild, &p));
                assert_int_equal(p.ppid, getpid());
                assert_true(p.state != 'Z');
        }

        /* It ends, and the loop reaps it: no zombie. */
        assert_true(harness_loop(h, 20000, grandchild_gone));
        assert_false(test_pstat((pid_t) grandchild, &(struct test_pstat){0})); /* reaped */
        env_free(e);
}

/* ---- several rules, one condition; invoke_interval ---- */

static const char npd_shared[] =
        "{\"plugin\": \"custom\",\n"
        " \"pluginConfig\": {\"invoke_interval\": \"1m\"},\n"
        " \"conditions\": [{\"type\": \"SharedProblem\", \"reason\": \"SharedOK\", \"message\": \"all good\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"SharedProblem\", \"reason\": \"FirstBroken\",\n"
        "   \"path\": \"@F@/state.sh\", \"args\": [\"@T@/first\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"SharedProblem\", \"reason\": \"SecondBroken\",\n"
        "   \"path\": \"@F@/state.sh\", \"args\": [\"@T@/second\"]}]}\n";

static void test_shared_condition(void **state) {
        struct env *e = env_new(npd_shared, NULL);
        struct harness *h = e->h;
        char *message = NULL;

        test_write_file(e->tmp, "second", "");
        harness_run(h);
        assert_condition(h, "SharedProblem", NH_STATUS_TRUE, "SecondBroken");
        assert_true(asprintf(&message, "%s/second exists", e->tmp) >= 0);
        assert_message(h, "SharedProblem", message);
        free(message);
        assert_int_equal(counter(h, "runs"), 2);

        /* Not due yet (invoke_interval 1m): the cycle reports the last outcomes, runs nothing. */
        harness_advance(h, 20 * USEC_PER_SEC);
        harness_run(h);
        assert_int_equal(counter(h, "runs"), 2);
        assert_condition(h, "SharedProblem", NH_STATUS_TRUE, "SecondBroken");

        /* Due: both run; the first now fails, the second is fine. */
        test_write_file(e->tmp, "first", "");
        char *second = test_path(e->tmp, "second");
        assert_int_equal(unlink(second), 0);
        free(second);
        harness_advance(h, 40 * USEC_PER_SEC);
        harness_run(h);
        assert_int_equal(counter(h, "runs"), 4);
        assert_condition(h, "SharedProblem", NH_STATUS_TRUE, "FirstBroken");

        /* Both fine: False with the file's reason and message. */
        char *first = test_path(e->tmp, "first");
        assert_int_equal(unlink(first), 0);
        free(first);
        harness_advance(h, 60 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "SharedProblem", NH_STATUS_FALSE, "SharedOK");
        assert_message(h, "SharedProblem", "all good");
        env_free(e);
}

/* When the probe's interval is the longer, the probe asks for a cycle once invoke_interval passed. */
static const char npd_trigger[] =
        "{\"plugin\": \"custom\", \"pluginConfig\": {\"invoke_interval\": \"1s\"},\n"
        " \"rules\": [{\"type\": \"temporary\", \"reason\": \"Nothing\", \"path\": \"true\"}]}\n";

static bool triggered(struct harness *h) {
        return h->n_triggers > 0;
}

static void test_trigger(void **state) {
        struct env *e = env_new(npd_trigger, NULL);
        struct harness *h = e->h;

        harness_run(h);
        assert_int_equal(h->n_triggers, 0);
        harness_advance(h, 1 * USEC_PER_SEC);
        assert_true(harness_loop(h, 10000, triggered));
        assert_int_equal(h->n_triggers, 1);
        harness_run(h);
        assert_int_equal(counter(h, "runs"), 2);
        env_free(e);
}

/* ---- concurrency ---- */

static const char npd_concurrency[] =
        "{\"plugin\": \"custom\", \"pluginConfig\": {\"concurrency\": 1},\n"
        " \"conditions\": [{\"type\": \"LockProblem\", \"reason\": \"Alone\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"LockProblem\", \"reason\": \"A\", \"path\": \"@F@/lock.sh\",\n"
        "   \"args\": [\"@T@/lock\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"LockProblem\", \"reason\": \"B\", \"path\": \"@F@/lock.sh\",\n"
        "   \"args\": [\"@T@/lock\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"LockProblem\", \"reason\": \"C\", \"path\": \"@F@/lock.sh\",\n"
        "   \"args\": [\"@T@/lock\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"LockProblem\", \"reason\": \"D\", \"path\": \"@F@/lock.sh\",\n"
        "   \"args\": [\"@T@/lock\"]}]}\n";

static void test_concurrency(void **state) {
        struct env *e = env_new(npd_concurrency, NULL);
        struct harness *h = e->h;
        uint64_t start = mono_usec();

        harness_run(h);
        /* One at a time: no script ever saw another's lock (that would be status 3, Unknown). */
        assert_condition(h, "LockProblem", NH_STATUS_FALSE, "Alone");
        assert_int_equal(counter(h, "runs"), 4);
        assert_int_equal(counter(h, "unknown"), 0);
        assert_true(mono_usec() - start >= 700 * USEC_PER_MSEC); /* 4 × 0.2 s, in a row */
        env_free(e);
}

/* ---- messages of a problem that persists ---- */

static const char npd_message[] =
        "{\"plugin\": \"custom\", \"pluginConfig\": {\"invoke_interval\": \"10s\"%s},\n"
        " \"conditions\": [{\"type\": \"CountProblem\", \"reason\": \"CountOK\"}],\n"
        " \"rules\": [{\"type\": \"permanent\", \"condition\": \"CountProblem\", \"reason\": \"Counting\",\n"
        "             \"path\": \"@F@/counter.sh\", \"args\": [\"@T@/count\"]}]}\n";

static void run_message(bool update, const char *second) {
        char *npd = NULL;
        struct env *e;

        assert_true(asprintf(&npd, npd_message,
                             update ? ", \"enable_message_change_based_condition_update\": true" : "") >= 0);
        e = env_new(npd, NULL);
        free(npd);
        harness_run(e->h);
        assert_condition(e->h, "CountProblem", NH_STATUS_TRUE, "Counting");
        assert_message(e->h, "CountProblem", "run 1");
        harness_advance(e->h, 10 * USEC_PER_SEC);
        harness_run(e->h);
        assert_int_equal(counter(e->h, "runs"), 2);
        assert_message(e->h, "CountProblem", second);
        env_free(e);
}

static void test_message_change(void **state) {
        /* NPD: while True with the same reason, the message changes only when the file says so. */
        run_message(false, "run 1");
        run_message(true, "run 2");
}

/* ---- a process SIGKILL does not end (uninterruptible sleep) ---- */

static char *frozen_cgroup;

static void thaw(void) {
        char *state;
        FILE *f;

        if (!frozen_cgroup)
                return;
        state = test_path(frozen_cgroup, "freezer.state");
        f = fopen(state, "we");
        if (f) {
                fputs("THAWED\n", f);
                fclose(f);
        }
        free(state);
}

static int teardown_frozen(void **state) {
        thaw();
        if (frozen_cgroup) {
                /* The group empties once its processes, thawed, have died. */
                for (int i = 0; i < 100 && rmdir(frozen_cgroup) < 0 && errno == EBUSY; i++)
                        usleep(50000);
                free(frozen_cgroup);
                frozen_cgroup = NULL;
        }
        return 0;
}

static const char npd_frozen[] =
        "{\"plugin\": \"custom\", \"pluginConfig\": {\"invoke_interval\": \"10s\", \"timeout\": \"1s\"},\n"
        " \"conditions\": [{\"type\": \"FrozenProblem\", \"reason\": \"NotFrozen\"},\n"
        "                {\"type\": \"OtherProblem\", \"reason\": \"OtherOK\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"FrozenProblem\", \"reason\": \"Frozen\",\n"
        "   \"path\": \"@F@/frozen.sh\", \"args\": [\"%s\", \"@T@/freeze\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"OtherProblem\", \"reason\": \"OtherBroken\",\n"
        "   \"path\": \"@F@/status.sh\", \"args\": [\"0\", \"fine\"]}]}\n";

static bool abandoned(struct harness *h) {
        return counter(h, "abandoned") > 0;
}

static void test_uninterruptible(void **state) {
        const char *base = "/sys/fs/cgroup/freezer";
        char *npd = NULL, *path;
        struct env *e;
        struct harness *h;
        uint64_t start, decided;

        if (access(base, W_OK) < 0) {
                print_message("# SKIP: no writable cgroup-v1 freezer at %s\n", base);
                skip();
        }
        assert_true(asprintf(&frozen_cgroup, "%s/nhtest-custom-%d", base, (int) getpid()) >= 0);
        if (mkdir(frozen_cgroup, 0755) < 0) {
                print_message("# SKIP: cannot make %s: %s\n", frozen_cgroup, strerror(errno));
                free(frozen_cgroup);
                frozen_cgroup = NULL;
                skip();
        }
        assert_true(asprintf(&npd, npd_frozen, frozen_cgroup) >= 0);
        e = env_new(npd, "\"kill_grace\": \"300ms\"");
        free(npd);
        h = e->h;
        test_write_file(e->tmp, "freeze", "");

        start = mono_usec();
        harness_run(h);
        decided = mono_usec();
        assert_condition(h, "FrozenProblem", NH_STATUS_UNKNOWN, "PluginTimeout");
        assert_condition(h, "OtherProblem", NH_STATUS_FALSE, "OtherOK");
        assert_true(decided - start < 15 * USEC_PER_SEC);

        /* SIGTERM, SIGKILL, then given up on: the loop never waited for it. */
        assert_true(harness_loop(h, 20000, abandoned));
        assert_int_equal(counter(h, "sigkills"), 1);
        assert_int_equal(nh_children_watched(h->children), 1); /* the core still reaps it once it ends */

        /* While it lives its rule is not started again; the other rules run as ever. */
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrozenProblem", NH_STATUS_UNKNOWN, "PluginStuck");
        assert_condition(h, "OtherProblem", NH_STATUS_FALSE, "OtherOK");
        assert_int_equal(counter(h, "runs"), 3);

        /* Thawed, it dies of the SIGKILL it got; reaped; its rule runs again. */
        path = test_path(e->tmp, "freeze");
        assert_int_equal(unlink(path), 0);
        free(path);
        thaw();
        assert_true(harness_loop(h, 20000, no_children));
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrozenProblem", NH_STATUS_FALSE, "NotFrozen");
        env_free(e);
}

/* ---- the NPD file ---- */

struct bad_file {
        const char *text;
        const char *error;
};

static void test_file_errors(void **state) {
        static const struct bad_file cases[] = {
                {"{\"plugin\": \"custom\",\n \"rules\": [}\n", "f.json:2:12: invalid JSON"},
                {"[]", "f.json:1:1: must hold a JSON object, not an array"},
                {"{\"plugin\": \"kmsg\"}",
                 "f.json:1:12: \"plugin\" is \"kmsg\": a custom-plugin-monitor file says \"custom\" (a "
                 "system-log-monitor file such as kernel-monitor.json belongs to the kernel_log probe)"},
                {"{\"plugin\": \"custom\",\n \"pluginConfig\": {\"timeout\": 5}}",
                 "f.json:2:30: pluginConfig: \"timeout\" must be a duration string such as \"30s\", not a number"},
                {"{\"pluginConfig\": {\"invoke_interval\": \"10\"}}",
                 "f.json:1:38: pluginConfig: \"invoke_interval\" is \"10\", not a duration such as \"500ms\", \"30s\", "
                 "\"5m\" or \"1m30s\""},
                {"{\"pluginConfig\": {\"invoke_interval\": \"0s\"}}",
                 "f.json:1:38: pluginConfig: \"invoke_interval\" must be longer than 0"},
                {"{\"pluginConfig\": {\"concurrency\": 0}}",
                 "f.json:1:34: pluginConfig: \"concurrency\" is 0; it must be from 1 to 1024"},
                {"{\"pluginConfig\": {\"max_output_length\": 1.5}}",
                 "f.json:1:40: pluginConfig: \"max_output_length\" must be a whole number, not a fraction"},
                {"{\"pluginConfig\": {\"timout\": \"5s\"}}",
                 "f.json:1:19: unknown key \"timout\" in pluginConfig (known: invoke_interval, timeout, "
                 "max_output_length, concurrency, enable_message_change_based_condition_update, "
                 "skip_initial_status)"},
                {"{\"metricsReporting\": \"yes\"}",
                 "f.json:1:22: the top level: \"metricsReporting\" must be true or false, not a string"},
                {"{\"conditions\": [{\"type\": \"gpu-problem\"}]}",
                 "f.json:1:26: condition 1: type \"gpu-problem\" must be CamelCase (letters and digits)"},
                {"{\"conditions\": [{\"type\": \"GPUProblem\",\n  \"reason\": \"gpu is fine\"}]}",
                 "f.json:2:13: condition 1: reason \"gpu is fine\" must be CamelCase (letters and digits): it is "
                 "the reason of GPUProblem while False"},
                {"{\"conditions\": [{\"type\": \"A\"}, {\"type\": \"A\"}]}",
                 "f.json:1:41: condition 2: type \"A\" is listed twice"},
                {"{\"rules\": [{\"type\": \"permanent\", \"reason\": \"R\", \"path\": \"/bin/true\",\n"
                 "            \"condition\": \"Nowhere\"}]}",
                 "f.json:2:26: rule 1: condition \"Nowhere\" is not in \"conditions\""},
                {"{\"rules\": [{\"type\": \"perm\", \"reason\": \"R\", \"path\": \"/bin/true\"}]}",
                 "f.json:1:21: rule 1: type \"perm\" is neither \"temporary\" nor \"permanent\""},
                {"{\"rules\": [{\"type\": \"temporary\", \"reason\": \"R\"}]}",
                 "f.json:1:12: rule 1: \"path\" is missing"},
                {"{\"rules\": [{\"type\": \"temporary\", \"reason\": \"R\", \"path\": \"/bin/true\", \"args\": [1]}]}",
                 "f.json:1:79: rule 1: argument 1 must be a string, not a number"},
                {"{\"pluginConfig\": {\"timeout\": \"5s\"},\n"
                 " \"rules\": [{\"type\": \"temporary\", \"reason\": \"R\", \"path\": \"/bin/true\", \"timeout\": "
                 "\"6s\"}]}",
                 "f.json:2:81: rule 1: \"timeout\" 6s is longer than pluginConfig's timeout 5s (node-problem-detector "
                 "refuses that too)"},
                {"{\"rules\": [{\"type\": \"temporary\", \"reason\": \"not camel\", \"path\": \"/bin/true\"}]}",
                 "f.json:1:44: rule 1: reason \"not camel\" must be CamelCase (letters and digits)"},
                {"{\"rules\": [{\"type\": \"temporary\", \"reason\": \"R\", \"path\": \"/bin/true\", \"patern\": "
                 "\"x\"}]}",
                 "f.json:1:70: unknown key \"patern\" in rule 1 (known: type, condition, reason, path, args, timeout, "
                 "invoke_interval)"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct npd_config *c = NULL;
                char *error = NULL;
                int r = npd_config_parse(cases[i].text, strlen(cases[i].text), "f.json", &c, &error);

                if (r != -EINVAL || !error || strcmp(error, cases[i].error) != 0) {
                        print_error("case %zu: r=%d\n  %s\nexpected\n  %s\n", i + 1, r, error ? error : "(none)",
                                    cases[i].error);
                        fail();
                }
                assert_null(c);
                free(error);
        }
}

/* A monitor file that is not a regular file is refused: a FIFO is not waited on (opened non-blocking). */
static void test_file_not_regular(void **state) {
        char *dir = test_mkdtemp(), *path = test_path(dir, "f.json"), *error = NULL;
        struct npd_config *c = NULL;

        assert_int_equal(mkfifo(path, 0644), 0);
        alarm(10); /* a blocking open would wait for a writer forever */
        assert_int_equal(npd_config_load(AT_FDCWD, path, &c, &error), -EINVAL);
        alarm(0);
        assert_null(c);
        assert_non_null(strstr(error, "f.json: not a regular file of at most 4 MiB"));
        free(error);
        error = NULL;
        assert_int_equal(npd_config_load(AT_FDCWD, "/nonexistent/f.json", &c, &error), -ENOENT);
        assert_string_equal(error, "/nonexistent/f.json: cannot open: No such file or directory");
        free(error);
        test_rmtree(dir);
        free(path);
        free(dir);
}

static void test_file_defaults(void **state) {
        static const char text[] =
                "{\"plugin\": \"custom\", \"source\": \"s\", \"metricsReporting\": false,\n"
                " \"conditions\": [{\"type\": \"NTPProblem\", \"reason\": \"NTPIsUp\", \"message\": \"ntp is up\"},\n"
                "                {\"type\": \"NoReason\"}],\n"
                " \"rules\": [{\"type\": \"temporary\", \"condition\": \"Ignored\", \"reason\": \"NTPIsDown\",\n"
                "             \"path\": \"./check_ntp.sh\", \"args\": [\"-v\", \"x y\"]},\n"
                "            {\"type\": \"permanent\", \"condition\": \"NTPProblem\", \"reason\": \"NTPIsDown\",\n"
                "             \"path\": \"check\", \"timeout\": \"1.5s\", \"invoke_interval\": \"1h\"}]}\n";
        struct npd_config *c = NULL;
        char *error = NULL;

        assert_int_equal(npd_config_parse(text, strlen(text), "f.json", &c, &error), 0);
        assert_null(error);
        /* NPD's defaults. */
        assert_int_equal(c->invoke_interval, 30 * USEC_PER_SEC);
        assert_int_equal(c->timeout, 5 * USEC_PER_SEC);
        assert_int_equal(c->max_output_length, 80);
        assert_int_equal(c->concurrency, 3);
        assert_false(c->message_change_update);
        assert_false(c->metrics_reporting);
        assert_string_equal(c->source, "s");
        assert_int_equal(c->n_conditions, 2);
        assert_string_equal(c->conditions[0].reason, "NTPIsUp");
        assert_string_equal(c->conditions[0].message, "ntp is up");
        /* No reason: one made up, for a False condition needs one. */
        assert_string_equal(c->conditions[1].reason, "NoNoReason");
        assert_string_equal(c->conditions[1].message, "");
        assert_int_equal(c->n_rules, 2);
        /* A temporary rule's condition is ignored, as NPD ignores it; argv[0] is the path as written. */
        assert_false(c->rules[0].permanent);
        assert_string_equal(c->rules[0].argv[0], "./check_ntp.sh");
        assert_string_equal(c->rules[0].argv[1], "-v");
        assert_string_equal(c->rules[0].argv[2], "x y");
        assert_null(c->rules[0].argv[3]);
        assert_int_equal(c->rules[0].timeout, 5 * USEC_PER_SEC);
        assert_int_equal(c->rules[0].invoke_interval, 30 * USEC_PER_SEC);
        assert_true(c->rules[1].permanent);
        assert_int_equal(c->rules[1].condition, 0);
        assert_int_equal(c->rules[1].timeout, 1500 * USEC_PER_MSEC);
        assert_int_equal(c->rules[1].invoke_interval, 3600 * USEC_PER_SEC);
        assert_string_equal(c->rules[1].argv[0], "check");
        assert_null(c->rules[1].argv[1]);
        npd_config_free(c);

        /* An unknown top-level key is an error (Go's decoder would drop it, and a typo with it). */
        assert_int_equal(npd_config_parse("{\"rulez\": []}", 13, "f.json", &c, &error), -EINVAL);
        assert_string_equal(error, "f.json:1:2: unknown key \"rulez\" in the top level (known: plugin, pluginConfig, "
                                   "source, metricsReporting, conditions, rules)");
        free(error);
}

static void test_durations(void **state) {
        static const struct {
                const char *text;
                int r;
                uint64_t usec;
        } cases[] = {
                {"0", 0, 0},
                {"300ms", 0, 300000},
                {"1.5h", 0, UINT64_C(5400000000)},
                {"2h45m", 0, UINT64_C(9900000000)},
                {"1m30s", 0, 90000000},
                {"250us", 0, 250},
                {"250\xc2\xb5s", 0, 250},
                {"1000ns", 0, 1},
                {".5s", 0, 500000},
                {"10", -EINVAL, 0},
                {"-5s", -EINVAL, 0},
                {"5 s", -EINVAL, 0},
                {"5d", -EINVAL, 0},
                {"", -EINVAL, 0},
                {"1000000h", -ERANGE, 0},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint64_t v = 0;
                int r = go_parse_duration(cases[i].text, &v);
                if (r != cases[i].r || (r == 0 && v != cases[i].usec)) {
                        print_error("\"%s\": r=%d v=%llu\n", cases[i].text, r, (unsigned long long) v);
                        fail();
                }
        }
}

/* The example shipped in conf/npd loads. */
static void test_shipped_example(void **state) {
        char *path = test_path(test_srcdir(), "conf/npd/custom-plugin-monitor.json");
        struct npd_config *c = NULL;
        char *error = NULL;
        int r = npd_config_load(AT_FDCWD, path, &c, &error);

        if (r < 0)
                print_error("%s\n", error ? error : strerror(-r));
        assert_int_equal(r, 0);
        assert_true(c->n_rules > 0);
        npd_config_free(c);
        free(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_file_errors),
                cmocka_unit_test(test_file_not_regular),
                cmocka_unit_test(test_file_defaults),
                cmocka_unit_test(test_shipped_example),
                cmocka_unit_test(test_exit_statuses),
                cmocka_unit_test(test_output),
                cmocka_unit_test(test_failures),
                cmocka_unit_test(test_timeouts),
                cmocka_unit_test(test_orphans),
                cmocka_unit_test(test_shared_condition),
                cmocka_unit_test(test_trigger),
                cmocka_unit_test(test_concurrency),
                cmocka_unit_test(test_message_change),
                cmocka_unit_test_teardown(test_uninterruptible, teardown_frozen),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
