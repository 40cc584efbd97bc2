/* SPDX-License-Identifier: MIT */
/* The configuration: values, drop-in merging, and every error naming FILE:LINE:COLUMN. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

struct fixture {
        char *dir;
        char *main;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        f->dir = test_mkdtemp();
        f->main = test_path(f->dir, "nodehealthd.json");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        test_rmtree(f->dir);
        free(f->dir);
        free(f->main);
        free(f);
        return 0;
}

/* Loads f->main; returns the error text ("" on success) with the directory replaced by "DIR". */
static char *load(struct fixture *f, struct nh_config **ret) {
        char *error = NULL, *out;
        struct nh_config *c = NULL;
        int r = nh_config_load(f->main, &c, &error);

        if (r >= 0) {
                assert_null(error);
                if (ret)
                        *ret = c;
                else
                        nh_config_free(c);
                return strdup("");
        }
        assert_int_equal(r, -EINVAL);
        assert_non_null(error);
        assert_null(c);
        /* Messages start with the full path; make them comparable. */
        size_t n = strlen(f->dir);
        assert_memory_equal(error, f->dir, n);
        assert_true(asprintf(&out, "DIR%s", error + n) >= 0);
        free(error);
        return out;
}

static void expect_error(struct fixture *f, const char *json, const char *expected) {
        test_write_file(f->dir, "nodehealthd.json", json);
        char *e = load(f, NULL);
        assert_string_equal(e, expected);
        free(e);
}

static void test_values(void **state) {
        struct fixture *f = *state;
        struct nh_config *c = NULL;

        test_write_file(f->dir, "nodehealthd.json",
                        "{\n"
                        "  \"node_name\": \"n1\",\n"
                        "  \"plugin_dirs\": [\"/a\", \"/b\"],\n"
                        "  \"defaults\": {\"interval\": \"15s\", \"timeout\": 2, \"raise_after\": 3},\n"
                        "  \"probes\": {\"memory\": {\"interval\": \"500ms\"}, \"k\": {\"plugin\": \"kernel_log\", "
                        "\"enabled\": false, \"x\": 1}},\n"
                        "  \"journal\": {\"enabled\": false}\n"
                        "}\n");
        char *e = load(f, &c);
        assert_string_equal(e, "");
        free(e);
        assert_string_equal(c->node_name, "n1");
        assert_string_equal(c->plugin_dirs[0], "/a");
        assert_string_equal(c->plugin_dirs[1], "/b");
        assert_null(c->plugin_dirs[2]);
        assert_true(c->defaults.interval == 15 * USEC_PER_SEC);
        assert_true(c->defaults.timeout == 2 * USEC_PER_SEC);
        assert_int_equal(c->defaults.raise_after, 3);
        assert_int_equal(c->defaults.clear_after, 2); /* built-in default */
        assert_false(c->journal_enabled);
        assert_true(c->kubernetes_heartbeat == 300 * USEC_PER_SEC);
        assert_int_equal(c->n_probes, 2);
        assert_string_equal(c->probes[0].name, "memory");
        assert_string_equal(c->probes[0].plugin, "memory"); /* defaults to the name */
        assert_true(c->probes[0].interval == 500 * USEC_PER_MSEC);
        assert_true(c->probes[0].timeout == 2 * USEC_PER_SEC); /* from "defaults" */
        assert_int_equal(c->probes[0].raise_after, 3);
        assert_true(c->probes[0].enabled);
        assert_int_equal(c->probes[0].isolation, NH_ISOLATION_INPROCESS);
        assert_string_equal(c->probes[1].plugin, "kernel_log");
        assert_false(c->probes[1].enabled);
        nh_config_free(c);
}

static void test_unknown_key(void **state) {
        expect_error(*state, "{\n  \"plugn_dirs\": []\n}\n",
                     "DIR/nodehealthd.json:2:3: unknown key \"plugn_dirs\" in the configuration (did you mean "
                     "\"plugin_dirs\"?)");
        expect_error(*state, "{\"defaults\": {\"intervall\": \"1s\"}}",
                     "DIR/nodehealthd.json:1:15: unknown key \"intervall\" in \"defaults\" (did you mean "
                     "\"interval\"?)");
        expect_error(*state, "{\"zzz\": 1}", "DIR/nodehealthd.json:1:2: unknown key \"zzz\" in the configuration");
        expect_error(*state, "{\"defualts\": {}}",
                     "DIR/nodehealthd.json:1:2: unknown key \"defualts\" in the configuration (did you mean "
                     "\"defaults\"?)");
        expect_error(*state, "{\"probes\": {\"m\": {\"intreval\": \"5s\"}}}", "");

        expect_error(*state, "{\"probes\": {\"m\": {\"raise_afterr\": 1, \"plugin\": \"memory\"}}}", "");
}

static void test_wrong_type(void **state) {
        expect_error(*state, "{\n\t\"defaults\": {\n\t\t\"interval\": true\n\t}\n}",
                     "DIR/nodehealthd.json:3:15: \"interval\" in \"defaults\" must be a duration such as \"500ms\", "
                     "\"10s\" or \"5m\", not a boolean");
        expect_error(*state, "{\"plugin_dirs\": \"/usr/lib\"}",
                     "DIR/nodehealthd.json:1:17: \"plugin_dirs\" in the configuration must be an array of strings, "
                     "not a string");
        expect_error(*state, "{\"plugin_dirs\": [\"/a\", 7]}",
                     "DIR/nodehealthd.json:1:24: \"plugin_dirs\" in the configuration must list strings, not a number");
        expect_error(*state, "{\"defaults\": {\"raise_after\": 1.5}}",
                     "DIR/nodehealthd.json:1:30: \"raise_after\" in \"defaults\" must be an integer, not 1.5");
        expect_error(*state, "{\"defaults\": {\"interval\": \"10 seconds\"}}",
                     "DIR/nodehealthd.json:1:27: \"interval\" in \"defaults\": \"10 seconds\" is not a duration "
                     "(write \"500ms\", \"10s\", \"5m\")");
        expect_error(*state, "{\"defaults\": []}",
                     "DIR/nodehealthd.json:1:14: \"defaults\" must be an object, not an array");
        expect_error(*state, "[1, 2]",
                     "DIR/nodehealthd.json:1:1: the configuration must be a JSON object, not an array");
        expect_error(*state, "{\"probes\": {\"m\": 3}}",
                     "DIR/nodehealthd.json:1:18: probe \"m\" must be an object, not a number");
}

static void test_out_of_range(void **state) {
        expect_error(*state, "{\"defaults\": {\"raise_after\": 0}}",
                     "DIR/nodehealthd.json:1:30: \"raise_after\" in \"defaults\" must be between 1 and 1000");
        expect_error(*state, "{\"probes\": {\"m\": {\"interval\": \"0s\"}}}",
                     "DIR/nodehealthd.json:1:31: \"interval\" in probe \"m\" must be between 0.01s and 86400s");
}

static void test_broken_json(void **state) {
        expect_error(*state, "{\n  \"node_name\": \"x\",\n  \"journal\": {\"enabled\": }\n}\n",
                     "DIR/nodehealthd.json:3:26: invalid JSON");
        expect_error(*state, "", "DIR/nodehealthd.json:1:1: empty file: expected a JSON object");
        expect_error(*state, "  \n\n", "DIR/nodehealthd.json:1:1: empty file: expected a JSON object");
        expect_error(*state, "{} {}", "DIR/nodehealthd.json:1:4: unexpected text after the JSON value");
        expect_error(*state, "{\"a\": \"unterminated}", "DIR/nodehealthd.json:1:8: invalid JSON");
        expect_error(*state, "{\"a\": [1,\n", "DIR/nodehealthd.json:2:1: invalid JSON: the text ends too early");
}

static void test_duplicate_key(void **state) {
        expect_error(*state, "{\n  \"node_name\": \"a\",\n  \"node_name\": \"b\"\n}",
                     "DIR/nodehealthd.json:3:3: duplicate key \"node_name\"");
        expect_error(*state, "{\"probes\": {\"m\": {\"interval\": 1, \"interval\": 2}}}",
                     "DIR/nodehealthd.json:1:34: duplicate key \"interval\"");
}

static void test_isolation_defaults(void **state) {
        struct fixture *f = *state;
        struct nh_config *c = NULL;
        char *e;

        /* Shipped plugins run in the daemon, anything else in a probe host; an explicit value wins. */
        test_write_file(f->dir, "nodehealthd.json",
                        "{\"probes\": {\"memory\": {}, \"k\": {\"plugin\": \"kernel_log\"}, \"gpu\": {},"
                        "\"mine\": {\"plugin\": \"memory\", \"isolation\": \"process\", \"memory_limit\": \"64MiB\"},"
                        "\"trusted\": {\"plugin\": \"gpu\", \"isolation\": \"inprocess\"},"
                        "\"bytes\": {\"memory_limit\": \"16777216\"}}}");
        e = load(f, &c);
        assert_string_equal(e, "");
        free(e);
        assert_int_equal(c->probes[0].isolation, NH_ISOLATION_INPROCESS);
        assert_true(c->probes[0].memory_limit == 0);
        assert_int_equal(c->probes[1].isolation, NH_ISOLATION_INPROCESS);
        assert_int_equal(c->probes[2].isolation, NH_ISOLATION_PROCESS);
        assert_true(c->probes[2].memory_limit == UINT64_C(128) << 20);
        assert_int_equal(c->probes[3].isolation, NH_ISOLATION_PROCESS);
        assert_true(c->probes[3].memory_limit == UINT64_C(64) << 20);
        assert_int_equal(c->probes[4].isolation, NH_ISOLATION_INPROCESS);
        assert_true(c->probes[5].memory_limit == UINT64_C(16) << 20);
        nh_config_free(c);

        expect_error(f, "{\"probes\": {\"memory\": {\"memory_limit\": \"64MiB\"}}}",
                     "DIR/nodehealthd.json:1:40: \"memory_limit\" in probe \"memory\" applies only to a probe with "
                     "\"isolation\": \"process\"");
        expect_error(f, "{\"probes\": {\"gpu\": {\"memory_limit\": \"64 MB\"}}}",
                     "DIR/nodehealthd.json:1:37: \"memory_limit\" in probe \"gpu\" must be a size from 8MiB to 64GiB, "
                     "such as \"128MiB\" or \"1GiB\" (a bare number is bytes)");
        expect_error(f, "{\"probes\": {\"gpu\": {\"memory_limit\": \"1MiB\"}}}",
                     "DIR/nodehealthd.json:1:37: \"memory_limit\" in probe \"gpu\" must be a size from 8MiB to 64GiB, "
                     "such as \"128MiB\" or \"1GiB\" (a bare number is bytes)");
}

static void test_probe_rules(void **state) {
        expect_error(*state, "{\"probes\": {\"m\": {\"isolation\": \"thread\"}}}",
                     "DIR/nodehealthd.json:1:32: \"isolation\" in probe \"m\" must be \"inprocess\" or \"process\"");
        expect_error(*state, "{\"probes\": {\"m\": {\"take_over\": [\"MemoryPressure\", \"Custom\"]}}}",
                     "DIR/nodehealthd.json:1:51: \"take_over\" in probe \"m\" lists \"Custom\", which is not a "
                     "kubelet- or CNI-owned type; the probe may write its own types without it");
        expect_error(*state, "{\"probes\": {\"m\": {\"take_over\": [\"Ready\"]}}}",
                     "DIR/nodehealthd.json:1:33: \"take_over\" in probe \"m\" lists \"Ready\": only the kubelet may "
                     "write the Ready condition");
        expect_error(*state, "{\"probes\": {\"bad name\": {}}}",
                     "DIR/nodehealthd.json:1:13: probe name \"bad name\" may only use letters, digits, '_' and '-'");
        expect_error(*state, "{\"probes\": {\"m\": {\"plugin\": \"../evil\"}}}",
                     "DIR/nodehealthd.json:1:29: plugin name \"../evil\" may only use letters, digits, '_' and '-'");
}

static void test_missing_file(void **state) {
        struct fixture *f = *state;
        char *error = NULL;
        struct nh_config *c = NULL;

        assert_int_equal(nh_config_load(f->main, &c, &error), -ENOENT);
        assert_non_null(strstr(error, "nodehealthd.json: cannot read: No such file or directory"));
        free(error);
}

/* A FIFO as a drop-in is refused with its name, not waited on. */
static void test_fifo_dropin(void **state) {
        struct fixture *f = *state;
        char *fifo = test_path(f->dir, "conf.d/50-fifo.json");

        test_write_file(f->dir, "conf.d/10-ok.json", "{}");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        alarm(10); /* a blocking open would wait for a writer forever */
        expect_error(f, "{}", "DIR/conf.d/50-fifo.json: not a regular file");
        alarm(0);
        free(fifo);
}

static void test_dropins(void **state) {
        struct fixture *f = *state;
        struct nh_config *c = NULL;

        test_write_file(
                f->dir, "nodehealthd.json",
                "{\"plugin_dirs\": [\"/a\", \"/b\"], \"defaults\": {\"interval\": \"10s\", \"timeout\": \"1s\"},"
                " \"probes\": {\"memory\": {\"interval\": \"20s\"}}}");
        /* Applied in name order: 20- after 10-; arrays replace, objects merge. */
        test_write_file(f->dir, "conf.d/20-late.json", "{\"defaults\": {\"interval\": \"30s\"}}");
        test_write_file(f->dir, "conf.d/10-early.json",
                        "{\"plugin_dirs\": [\"/c\"], \"defaults\": {\"interval\": \"25s\"},"
                        " \"probes\": {\"memory\": {\"raise_after\": 5}, \"extra\": {\"plugin\": \"example\"}}}");
        test_write_file(f->dir, "conf.d/ignored.txt", "not json");
        test_write_file(f->dir, "conf.d/.hidden.json", "not json");

        char *e = load(f, &c);
        assert_string_equal(e, "");
        free(e);
        assert_string_equal(c->plugin_dirs[0], "/c");
        assert_null(c->plugin_dirs[1]);
        assert_true(c->defaults.interval == 30 * USEC_PER_SEC);
        assert_true(c->defaults.timeout == 1 * USEC_PER_SEC);
        assert_int_equal(c->n_probes, 2);
        assert_string_equal(c->probes[0].name, "memory");
        assert_true(c->probes[0].interval == 20 * USEC_PER_SEC); /* the main file's, kept by the merge */
        assert_int_equal(c->probes[0].raise_after, 5);
        assert_string_equal(c->probes[1].plugin, "example");
        assert_int_equal(strv_length(c->files), 3);
        nh_config_free(c);
}

static void test_dropin_error_names_dropin(void **state) {
        struct fixture *f = *state;

        test_write_file(f->dir, "conf.d/50-x.json", "{\n  \"journal\": {\"enabled\": \"yes\"}\n}");
        expect_error(f, "{\"journal\": {\"enabled\": true}}",
                     "DIR/conf.d/50-x.json:2:26: \"enabled\" in \"journal\" must be a boolean, not a string");

        /* A value overridden by a drop-in is the drop-in's to answer for, even deep in probes. */
        test_write_file(f->dir, "conf.d/50-x.json", "{\"probes\": {\"m\": {\"timeout\": \"forever\"}}}");
        expect_error(f, "{\"probes\": {\"m\": {\"timeout\": \"1s\"}}}",
                     "DIR/conf.d/50-x.json:1:30: \"timeout\" in probe \"m\": \"forever\" is not a duration (write "
                     "\"500ms\", \"10s\", \"5m\")");

        test_write_file(f->dir, "conf.d/50-x.json", "{\"probes\": ");
        expect_error(f, "{}", "DIR/conf.d/50-x.json:1:12: invalid JSON: the text ends too early");
}

static void test_shipped_config(void **state) {
        char *path = test_path(test_srcdir(), "conf/nodehealthd.json");
        char *error = NULL;
        struct nh_config *c = NULL;

        assert_int_equal(nh_config_load(path, &c, &error), 0);
        assert_null(error);
        assert_true(c->n_probes >= 1);
        nh_config_free(c);
        free(path);
}

/* A probe's own keys are checked against its plugin's table, with positions too. */
static void test_plugin_keys(void **state) {
        struct harness *h = NULL;

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\",\n \"countt\": 4}}}", NULL, NULL,
                                     NULL, &h),
                         -EINVAL);
        assert_non_null(
                strstr(h->last_error,
                       "nodehealthd.json:2:2: unknown key \"countt\" in probe \"t\" (did you mean \"count\"?)"));
        harness_free(h);

        assert_int_equal(
                harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"count\": 101}}}", NULL, NULL, NULL, &h),
                -EINVAL);
        assert_non_null(strstr(h->last_error, ":1:51: \"count\" in probe \"t\" must be between 0 and 100"));
        harness_free(h);

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"names\": [\"x\", 1]}}}", NULL,
                                     NULL, NULL, &h),
                         -EINVAL);
        assert_non_null(strstr(h->last_error, ":1:57: \"names\" in probe \"t\" must list strings, not a number"));
        harness_free(h);

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"window\": \"1h\", \"share\": "
                                     "0.5, \"names\": [\"x\"], \"state_file\": \"s\", \"init_fail\": false}}}",
                                     NULL, NULL, NULL, &h),
                         0);
        harness_free(h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_values, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
                cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broken_json, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_probe_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_isolation_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dropins, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_dropin, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dropin_error_names_dropin, setup, teardown),
                cmocka_unit_test(test_shipped_config),
                cmocka_unit_test(test_plugin_keys),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
