/* SPDX-License-Identifier: MIT */
/*
 * SIGHUP: the daemon reads its configuration again.  A bad one is refused with its position
 * and the one in force stays; a good one is applied without a restart: removed probes stop
 * and their conditions say ProbeRemoved, new ones start, changed ones restart, and a .so
 * dropped into a plugin directory (or taken out of it) is picked up.  Every wait has a
 * deadline; nothing sleeps.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000

struct env {
        char *dir; /* temporary: conf/, proc/, root/, plugins/ */
        char *conf;
        char *proc, *root, *dropdir;
        char *plugin_dir, *test_plugin_dir; /* the build's */
        struct proc *daemon;
};

static void copy_file(const char *from, const char *to, mode_t mode) {
        char *text = NULL;
        FILE *in = fopen(from, "re"), *out;
        char buf[65536];
        size_t n;

        assert_non_null(in);
        /* Written beside and renamed: the daemon never sees half a plugin. */
        assert_true(asprintf(&text, "%s.tmp", to) >= 0);
        out = fopen(text, "we");
        assert_non_null(out);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        assert_int_equal(fclose(out), 0);
        assert_int_equal(chmod(text, mode), 0);
        assert_int_equal(rename(text, to), 0);
        free(text);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));

        e->dir = test_mkdtemp();
        assert_int_equal(chmod(e->dir, 0755), 0);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->proc = test_path(e->dir, "proc");
        e->root = test_path(e->dir, "root");
        e->dropdir = test_path(e->dir, "plugins");
        assert_int_equal(mkdir(e->root, 0755), 0);
        assert_int_equal(mkdir(e->dropdir, 0755), 0);
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        test_use_memory_fixture(e->proc, "healthy");
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
        free(e->dropdir);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e);
        return 0;
}

/* `extra` goes after --config: "--plugin-dir" pairs, or nothing for the configuration's own. */
static struct proc *spawn(struct env *e, bool with_build_dirs) {
        char *argv[16] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--proc-path",
                          e->proc,
                          "--root-path",
                          e->root,
                          "--standalone"};
        int argc = 8;

        if (with_build_dirs) {
                argv[argc++] = "--plugin-dir";
                argv[argc++] = e->plugin_dir;
                argv[argc++] = "--plugin-dir";
                argv[argc++] = e->test_plugin_dir;
        }
        assert_null(e->daemon);
        e->daemon = proc_spawn(argv);
        return e->daemon;
}

static void write_config(struct env *e, const char *probes) {
        char *text = NULL;

        assert_true(asprintf(&text,
                             "{\n"
                             "  \"journal\": {\"enabled\": false},\n"
                             "  \"http\": {\"listen\": \"\"},\n"
                             "  \"defaults\": {\"interval\": \"100ms\", \"raise_after\": 1, \"clear_after\": 1},\n"
                             "  \"plugin_dirs\": [\"%s\", \"%s\"],\n"
                             "  \"probes\": {\n%s\n  }\n"
                             "}\n",
                             e->plugin_dir, e->dropdir, probes) >= 0);
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        free(text);
}

static void reload(struct proc *p) {
        proc_mark(p);
        proc_mark_err(p);
        assert_int_equal(kill(p->pid, SIGHUP), 0);
}

#define FAST "\"interval\": \"100ms\", \"raise_after\": 1, \"clear_after\": 1"

static void test_bad_config_is_refused(void **state) {
        struct env *e = *state;
        struct proc *p;

        write_config(e, "    \"t\": {\"plugin\": \"testprobe\", " FAST "}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\n");
        p = spawn(e, true);
        assert_true(proc_wait_output(p, "TestOK", false, DEADLINE_MS));

        /* A typo in a probe's own key (only its plugin's table knows it), and a broken file. */
        write_config(e, "    \"t\": {\"plugin\": \"testprobe\", " FAST ", \"stat_file\": \"x\"},\n"
                        "    \"u\": {\"plugin\": \"testprobe\", " FAST "}");
        reload(p);
        assert_true(proc_wait_output(p, "Reload refused, the configuration in force stays", true, DEADLINE_MS));
        assert_contains(p->err + p->err_mark, "nodehealthd.json:7:91: unknown key \"stat_file\"");
        assert_contains(p->err + p->err_mark, "stat_file");
        test_write_file(e->dir, "conf/nodehealthd.json", "{\"probes\": {\"t\": {\"interval\": }}}\n");
        reload(p);
        assert_true(proc_wait_output(p, "Reload refused", true, DEADLINE_MS));
        assert_contains(p->err + p->err_mark, "nodehealthd.json:1:");

        /* The old configuration runs on: t still reports, and u never started. */
        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken now\n");
        assert_true(proc_wait_output(p, "TestProblem  False -> True  TestBroken: now", false, DEADLINE_MS));
        assert_null(strstr(p->err, "Reloaded"));
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

static void test_good_config_is_applied(void **state) {
        struct env *e = *state;
        struct proc *p;

        write_config(e, "    \"memory\": {" FAST "},\n"
                        "    \"t\": {\"plugin\": \"testprobe\", " FAST "}");
        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken before\n");
        test_write_file(e->root, "u/state", "OtherProblem False OtherOK fine\n");
        test_write_file(e->root, "u/state2", "OtherProblem True OtherBroken changed\n");
        p = spawn(e, true);
        assert_true(proc_wait_output(p, "TestBroken", false, DEADLINE_MS));
        assert_true(proc_wait_output(p, "MemoryNotThrashing", false, DEADLINE_MS));

        /* t goes, u comes, memory stays as it is. */
        write_config(e, "    \"memory\": {" FAST "},\n"
                        "    \"u\": {\"plugin\": \"testprobe\", \"state_file\": \"u/state\", " FAST "}");
        reload(p);
        assert_true(proc_wait_output(p, "Reloaded", true, DEADLINE_MS));
        assert_contains(p->err + p->err_mark, "2 probes (1 unchanged, 1 started, 1 stopped)");
        /* Standalone: the removed probe's condition stays, Unknown, saying why. */
        assert_true(proc_wait_output(p, "TestProblem  True -> Unknown  ProbeRemoved: probe t was removed", false,
                                     DEADLINE_MS));
        assert_true(proc_wait_output(p, "OtherProblem  Unknown -> False  OtherOK: fine", false, DEADLINE_MS));

        /* The unchanged memory probe kept running through the reload. */
        test_write_file(e->proc, "pressure/memory",
                        "some avg10=80.00 avg60=80.00 avg300=80.00 total=1\n"
                        "full avg10=50.00 avg60=50.00 avg300=50.00 total=1\n");
        assert_true(proc_wait_output(p, "MemoryThrashing  False -> True  MemoryStall", false, DEADLINE_MS));

        /* A changed probe restarts and keeps its conditions: no ProbeRemoved, no NotYetObserved. */
        write_config(e, "    \"memory\": {" FAST "},\n"
                        "    \"u\": {\"plugin\": \"testprobe\", \"state_file\": \"u/state2\", " FAST "}");
        reload(p);
        assert_true(proc_wait_output(p, "OtherProblem  False -> True  OtherBroken: changed", false, DEADLINE_MS));
        assert_contains(p->err + p->err_mark, "2 probes (1 unchanged, 1 started, 1 stopped)");
        assert_null(strstr(p->out + p->out_mark, "OtherProblem  False -> Unknown"));

        /* The same configuration again changes nothing. */
        reload(p);
        assert_true(proc_wait_output(p, "2 probes (2 unchanged, 0 started, 0 stopped)", true, DEADLINE_MS));
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

/* A .so dropped into a plugin directory runs after SIGHUP; taken out, it stops. */
static void test_drop_in_plugin(void **state) {
        struct env *e = *state;
        char *from = test_path(e->test_plugin_dir, "testprobe.so");
        char *to = test_path(e->dropdir, "testprobe.so");
        struct proc *p;

        write_config(e, "    \"memory\": {" FAST "}");
        test_write_file(e->root, "testprobe/state", "TestProblem True TestBroken dropped\n");
        p = spawn(e, false);
        assert_true(proc_wait_output(p, "MemoryNotThrashing", false, DEADLINE_MS));

        /* Not ours: a world-writable drop-in is refused, and the daemon goes on. */
        copy_file(from, to, 0666);
        assert_int_equal(chmod(to, 0666), 0);
        reload(p);
        if (!proc_wait_output(p, "Reloaded", true, DEADLINE_MS))
                fail_msg("no reload in:\n%s", p->err);
        assert_contains(p->err + p->err_mark, "drop-in probe \"testprobe\"");
        assert_contains(p->err + p->err_mark, "writable by others");
        assert_contains(p->err + p->err_mark, "1 probes (1 unchanged, 0 started, 0 stopped)");

        assert_int_equal(chmod(to, 0644), 0);
        reload(p);
        assert_true(proc_wait_output(p, "Drop-in probe testprobe from", true, DEADLINE_MS));
        if (!proc_wait_output(p, "TestProblem  Unknown -> True  TestBroken: dropped", false, DEADLINE_MS))
                fail_msg("the drop-in did not report:\n%s\n%s", p->out + p->out_mark, p->err + p->err_mark);

        assert_int_equal(unlink(to), 0);
        reload(p);
        assert_true(proc_wait_output(p, "TestProblem  True -> Unknown  ProbeRemoved", false, DEADLINE_MS));
        assert_true(proc_wait_output(p, "1 probes (1 unchanged, 0 started, 1 stopped)", true, DEADLINE_MS));
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
        free(from);
        free(to);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_bad_config_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_good_config_is_applied, setup, teardown),
                cmocka_unit_test_setup_teardown(test_drop_in_plugin, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
