/* SPDX-License-Identifier: MIT */
/* The command line: every flag of DESIGN.md, and usage errors that become exit 64. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli.h"
#include "config.h"
#include "util.h"

static int parse(struct nh_options *o, char **error, ...) {
        char *argv[32] = {"nodehealthd"};
        int argc = 1;
        va_list ap;

        va_start(ap, error);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        return nh_options_parse(argc, argv, o, error);
}

static void test_defaults(void **state) {
        struct nh_options o;
        char *error = NULL;

        assert_int_equal(parse(&o, &error, NULL), 0);
        assert_int_equal(o.action, NH_ACTION_RUN);
        assert_string_equal(o.config_path, NH_DEFAULT_CONFIG);
        assert_int_equal(o.format, NH_FORMAT_TABLE);
        assert_false(o.standalone);
        assert_null(o.plugin_dirs);
        nh_options_done(&o);
}

static void test_all_flags(void **state) {
        struct nh_options o;
        char *error = NULL;

        assert_int_equal(parse(&o, &error, "--config", "/c.json", "--once", "--format", "json", "--standalone",
                               "--node-name", "n1", "--kubeconfig", "/k", "--apiserver", "https://a", "--token-file",
                               "/t", "--ca-file", "/ca", "--proc-path", "/p", "--sys-path", "/s", "--root-path", "/r",
                               "--plugin-dir", "/d1", "--plugin-dir=/d2", NULL),
                         0);
        assert_int_equal(o.action, NH_ACTION_ONCE);
        assert_string_equal(o.config_path, "/c.json");
        assert_int_equal(o.format, NH_FORMAT_JSON);
        assert_true(o.standalone);
        assert_string_equal(o.node_name, "n1");
        assert_string_equal(o.kubeconfig, "/k");
        assert_string_equal(o.apiserver, "https://a");
        assert_string_equal(o.token_file, "/t");
        assert_string_equal(o.ca_file, "/ca");
        assert_string_equal(o.proc_path, "/p");
        assert_string_equal(o.sys_path, "/s");
        assert_string_equal(o.root_path, "/r");
        assert_int_equal(strv_length(o.plugin_dirs), 2);
        assert_string_equal(o.plugin_dirs[1], "/d2");
        nh_options_done(&o);

        assert_int_equal(parse(&o, &error, "-c", "/x", "--check-config", NULL), 0);
        assert_int_equal(o.action, NH_ACTION_CHECK_CONFIG);
        nh_options_done(&o);
        assert_int_equal(parse(&o, &error, "--version", NULL), 0);
        assert_int_equal(o.action, NH_ACTION_VERSION);
        nh_options_done(&o);
        assert_int_equal(parse(&o, &error, "--once", "-h", NULL), 0);
        assert_int_equal(o.action, NH_ACTION_HELP);
        nh_options_done(&o);
}

static void expect_usage_error(const char *text, ...) {
        char *argv[32] = {"nodehealthd"};
        int argc = 1;
        struct nh_options o;
        char *error = NULL;
        va_list ap;

        va_start(ap, text);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        assert_int_equal(nh_options_parse(argc, argv, &o, &error), -EINVAL);
        assert_non_null(error);
        if (strcmp(error, text) != 0)
                fail_msg("\"%s\" != \"%s\"", error, text);
        free(error);
        nh_options_done(&o);
}

static void test_usage_errors(void **state) {
        expect_usage_error("--format must be table or json, not \"yaml\"", "--format", "yaml", NULL);
        expect_usage_error("unknown option --frobnicate (see --help)", "--frobnicate", NULL);
        expect_usage_error("--config needs a value", "--config", NULL);
        expect_usage_error("unexpected argument \"extra\" (see --help)", "extra", NULL);
        expect_usage_error("--node-name needs a non-empty value", "--node-name", "", NULL);
        expect_usage_error("--once and --check-config exclude each other", "--once", "--check-config", NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_all_flags),
                cmocka_unit_test(test_usage_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
