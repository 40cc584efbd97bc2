/* SPDX-License-Identifier: MIT */
/* How the built-in probes write figures (plugins/common/probe-text.h). */
#include <stdint.h>
#include <stdio.h>

#include "../../plugins/common/probe-text.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define MS UINT64_C(1000)
#define S UINT64_C(1000000)

static void test_span_rounds(void **state) {
        char buf[32];

        assert_string_equal(probe_format_span(buf, sizeof(buf), 250 * MS), "250ms");
        assert_string_equal(probe_format_span(buf, sizeof(buf), 1499 * MS), "1s");
        assert_string_equal(probe_format_span(buf, sizeof(buf), 1500 * MS), "2s");
        assert_string_equal(probe_format_span(buf, sizeof(buf), 90 * S), "1m30s");
        assert_string_equal(probe_format_span(buf, sizeof(buf), 3600 * S), "1h");
        assert_string_equal(probe_format_span(buf, sizeof(buf), 3660 * S), "1h1m");
}

static void test_setting_is_exact(void **state) {
        char buf[32];

        /* A measured span may round; a value the user wrote may not. */
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 1500 * MS), "1500ms");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 300 * MS), "300ms");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 1500), "1500us");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 0), "0ms");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 1 * S), "1s");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 90 * S), "1m30s");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 10 * 60 * S), "10m");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 3660 * S), "1h1m");
        assert_string_equal(probe_format_setting(buf, sizeof(buf), 2 * 3600 * S), "2h");
}

static void test_bytes(void **state) {
        char buf[32];

        assert_string_equal(probe_format_bytes(buf, sizeof(buf), 512), "512 B");
        assert_string_equal(probe_format_bytes(buf, sizeof(buf), 120 * 1024 * 1024), "120 MiB");
        assert_string_equal(probe_format_bytes(buf, sizeof(buf), UINT64_C(7800) * 1024 * 1024), "7.6 GiB");
        assert_string_equal(probe_format_bytes(buf, sizeof(buf), UINT64_MAX), "16.0 EiB");
}

static void test_percent_keeps_the_verdict(void **state) {
        char buf[32];

        assert_string_equal(probe_format_percent(buf, sizeof(buf), 42.0, 90), "42.0%");
        /* 4.96% is below 5%: "5.0%" would say otherwise. */
        assert_string_equal(probe_format_percent(buf, sizeof(buf), 4.96, 5), "4.96%");
        assert_string_equal(probe_format_percent(buf, sizeof(buf), 99.96, 100), "99.96%");
        assert_string_equal(probe_format_percent(buf, sizeof(buf), 150.0, 100), "150.0%");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_span_rounds),
                cmocka_unit_test(test_setting_is_exact),
                cmocka_unit_test(test_bytes),
                cmocka_unit_test(test_percent_keeps_the_verdict),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
