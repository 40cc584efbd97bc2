/* SPDX-License-Identifier: MIT */
/*
 * The custom probe in the real daemon: a configuration whose probe "gpu" names a
 * custom-plugin-monitor file beside it (a relative npd_config), with scripts from
 * tests/fixtures/custom/.
 *
 * `--once --format json` prints the verdict of one run of every rule: healthy, problem, a
 * status of 2, a timeout.  A running daemon with invoke_interval 1s runs the scripts again
 * every second although the probe's interval is 30s (the probe asks for its cycles), so a
 * problem appearing and going away is a transition line each; the grandchildren its scripts
 * leave behind are reaped by the daemon (a subreaper): no zombie with the daemon as parent.
 * A file with a mistake makes the probe fail to start, and the log names FILE:LINE:COLUMN.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 30000

struct env {
        char *dir;
        char *conf;
        char *plugin_dir;
        struct proc *daemon;
};

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));

        assert_non_null(e);
        e->dir = test_mkdtemp();
        e->conf = test_path(e->dir, "nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        proc_free(e->daemon); /* SIGKILL if it still runs */
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->plugin_dir);
        free(e);
        return 0;
}

/* Writes nodehealthd.json (one probe "gpu") and npd/gpu.json (with "@F@" the fixtures and "@T@" the dir). */
static void write_config(struct env *e, const char *npd) {
        char *fixtures = test_path(test_srcdir(), "tests/fixtures/custom"), *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        assert_non_null(f);
        for (const char *p = npd; *p;) {
                if (strncmp(p, "@F@", 3) == 0) {
                        fputs(fixtures, f);
                        p += 3;
                } else if (strncmp(p, "@T@", 3) == 0) {
                        fputs(e->dir, f);
                        p += 3;
                } else
                        fputc(*p++, f);
        }
        assert_int_equal(fclose(f), 0);
        test_write_file(e->dir, "npd/gpu.json", out);
        test_write_file(e->dir, "nodehealthd.json",
                        "{\"probes\": {\"gpu\": {\"plugin\": \"custom\", \"npd_config\": \"npd/gpu.json\",\n"
                        "                      \"interval\": \"30s\", \"timeout\": \"20s\", \"raise_after\": 1,\n"
                        "                      \"clear_after\": 1}},\n"
                        " \"journal\": {\"enabled\": false}, \"http\": {\"listen\": \"\"}}\n");
        free(out);
        free(fixtures);
}

static struct proc *run_daemon(struct env *e, bool once, int *ret_code) {
        char *argv[] = {(char *) test_daemon_path(),
                        "--config",
                        e->conf,
                        "--plugin-dir",
                        e->plugin_dir,
                        "--standalone",
                        "--node-name",
                        "itest-custom",
                        "--format",
                        "json",
                        once ? "--once" : NULL,
                        NULL};

        if (once)
                return proc_run(argv, DEADLINE_MS, ret_code);
        e->daemon = proc_spawn(argv);
        return e->daemon;
}

static const cJSON *find_condition(const cJSON *conditions, const char *type) {
        const cJSON *c;

        cJSON_ArrayForEach(c, conditions) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
                if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0)
                        return c;
        }
        return NULL;
}

static void assert_json_condition(const cJSON *conditions, const char *type, const char *status, const char *reason,
                                  const char *message) {
        const cJSON *c = find_condition(conditions, type);

        if (!c) {
                print_error("no condition %s\n", type);
                fail();
        }
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(c, "status")->valuestring, status);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(c, "reason")->valuestring, reason);
        if (message)
                assert_string_equal(cJSON_GetObjectItemCaseSensitive(c, "message")->valuestring, message);
}

static const char npd_once[] =
        "{\"plugin\": \"custom\",\n"
        " \"pluginConfig\": {\"invoke_interval\": \"30s\", \"timeout\": \"5s\", \"max_output_length\": 10},\n"
        " \"conditions\": [{\"type\": \"GPUHealthy\", \"reason\": \"GPUOK\", \"message\": \"gpu fine\"},\n"
        "                {\"type\": \"GPUBroken\", \"reason\": \"GPUNotBroken\"},\n"
        "                {\"type\": \"GPUUnsure\", \"reason\": \"GPUSure\"},\n"
        "                {\"type\": \"GPUSlow\", \"reason\": \"GPUFast\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"GPUHealthy\", \"reason\": \"GPUDown\",\n"
        "   \"path\": \"@F@/orphan.sh\", \"args\": [\"@T@/grandchild.pid\", \"2\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"GPUBroken\", \"reason\": \"XidError\",\n"
        "   \"path\": \"@F@/status.sh\", \"args\": [\"1\", \"Xid 79: GPU has fallen off the bus\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"GPUUnsure\", \"reason\": \"Unsure\",\n"
        "   \"path\": \"@F@/status.sh\", \"args\": [\"2\", \"no driver\"]},\n"
        "  {\"type\": \"permanent\", \"condition\": \"GPUSlow\", \"reason\": \"Slow\",\n"
        "   \"path\": \"@F@/sleep.sh\", \"args\": [\"60\"], \"timeout\": \"1s\"}]}\n";

static void test_once(void **state) {
        struct env *e = *state;
        struct proc *p;
        cJSON *root;
        const cJSON *conditions;
        char *expected = NULL, *script;
        int code = -1;

        write_config(e, npd_once);
        p = run_daemon(e, true, &code);
        if (code != 0)
                print_error("stdout:\n%s\nstderr:\n%s\n", p->out, p->err);
        assert_int_equal(code, 0);
        root = cJSON_Parse(p->out);
        assert_non_null(root);
        conditions = cJSON_GetObjectItemCaseSensitive(root, "conditions");
        assert_true(cJSON_IsArray(conditions));
        assert_int_equal(cJSON_GetArraySize(conditions), 4);

        assert_json_condition(conditions, "GPUHealthy", "False", "GPUOK", "gpu fine");
        /* max_output_length 10 */
        assert_json_condition(conditions, "GPUBroken", "True", "XidError", "Xid 79: GP");
        script = test_path(test_srcdir(), "tests/fixtures/custom/status.sh");
        assert_true(asprintf(&expected, "%s exited with status 2 (0 is OK, 1 a problem): no driver", script) >= 0);
        assert_json_condition(conditions, "GPUUnsure", "Unknown", "PluginStatusUnknown", expected);
        free(expected);
        free(script);
        assert_json_condition(conditions, "GPUSlow", "Unknown", "PluginTimeout", NULL);
        cJSON_Delete(root);
        proc_free(p);
}

static bool zombie_of(const struct test_pstat *p, const void *arg) {
        return p->state == 'Z' && p->ppid == *(const pid_t *) arg;
}

/* Zombies whose parent is `parent`. */
static size_t zombies_of(pid_t parent) {
        return test_pstat_count(zombie_of, &parent, false);
}

/* The parent of `pid`; -1 when it is gone, -2 when it is a zombie. */
static long parent_of(pid_t pid) {
        struct test_pstat p;

        if (!test_pstat(pid, &p))
                return -1;
        return p.state == 'Z' ? -2 : (long) p.ppid;
}

static const char npd_running[] =
        "{\"plugin\": \"custom\",\n"
        " \"pluginConfig\": {\"invoke_interval\": \"1s\", \"timeout\": \"5s\"},\n"
        " \"conditions\": [{\"type\": \"FlagProblem\", \"reason\": \"NoFlag\", \"message\": \"no flag\"}],\n"
        " \"rules\": [\n"
        "  {\"type\": \"permanent\", \"condition\": \"FlagProblem\", \"reason\": \"FlagRaised\",\n"
        "   \"path\": \"@F@/state.sh\", \"args\": [\"@T@/flag\"]},\n"
        "  {\"type\": \"temporary\", \"reason\": \"LeftChildren\",\n"
        "   \"path\": \"@F@/orphan.sh\", \"args\": [\"@T@/grandchild.pid\", \"1\"]}]}\n";

static void test_running(void **state) {
        struct env *e = *state;
        struct proc *p;
        char *flag, *pidfile, *text;
        long grandchild = 0;

        write_config(e, npd_running);
        flag = test_path(e->dir, "flag");
        p = run_daemon(e, false, NULL);
        assert_true(proc_wait_output(p, "\"conditions\"", false, DEADLINE_MS));
        assert_contains(p->out, "\"reason\":\"NoFlag\"");

        /* invoke_interval 1s, the probe's interval 30s: the scripts run again within seconds. */
        proc_mark(p);
        test_write_file(e->dir, "flag", "");
        assert_true(proc_wait_output(p, "\"reason\":\"FlagRaised\"", false, 10000));
        proc_mark(p);
        assert_int_equal(unlink(flag), 0);
        assert_true(proc_wait_output(p, "\"reason\":\"NoFlag\"", false, 10000));

        /* Grandchildren the scripts left behind were re-parented to the daemon (a subreaper) and reaped. */
        pidfile = test_path(e->dir, "grandchild.pid");
        /* Rewritten every second ("> FILE" truncates first): read until it holds a pid. */
        for (int i = 0; i < 100 && grandchild <= 0; i++) {
                text = test_read_file(pidfile);
                grandchild = text ? strtol(text, NULL, 10) : 0;
                free(text);
                if (grandchild <= 0)
                        (void) proc_wait_output(p, "\n\n\n", true, 100);
        }
        assert_true(grandchild > 0);
        free(pidfile);
        {
                long parent = parent_of((pid_t) grandchild);
                /* Gone already, or alive with the daemon as its parent: never a zombie left to init. */
                assert_true(parent == -1 || parent == (long) p->pid);
        }
        /* It sleeps a second; then the daemon reaps it: it goes away, it does not stay a zombie. */
        for (int i = 0; i < 100 && parent_of((pid_t) grandchild) != -1; i++)
                (void) proc_wait_output(p, "\n\n\n", true, 100); /* waits 100 ms, reading its output */
        assert_int_equal(parent_of((pid_t) grandchild), -1);
        for (int i = 0; i < 100 && zombies_of(p->pid) > 0; i++)
                (void) proc_wait_output(p, "\n\n\n", true, 100);
        assert_int_equal(zombies_of(p->pid), 0);

        kill(p->pid, SIGTERM);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
        free(flag);
}

static const char npd_bad[] = "{\"plugin\": \"custom\",\n"
                              " \"pluginConfig\": {\"timeout\": \"5\"},\n"
                              " \"rules\": []}\n";

static void test_bad_file(void **state) {
        struct env *e = *state;
        struct proc *p;
        int code = -1;

        write_config(e, npd_bad);
        p = run_daemon(e, true, &code);
        /* The probe cannot start; the daemon runs on and says where the mistake is. */
        assert_contains(p->err, "npd/gpu.json:2:30: pluginConfig: \"timeout\" is \"5\", not a duration");
        proc_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_running, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_file, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
