/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util.h"

static void test_durations(void **state) {
        uint64_t v;

        assert_int_equal(parse_duration("500ms", &v), 0);
        assert_int_equal(v, 500 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("10s", &v), 0);
        assert_int_equal(v, 10 * USEC_PER_SEC);
        assert_int_equal(parse_duration("5m", &v), 0);
        assert_int_equal(v, 300 * USEC_PER_SEC);
        assert_int_equal(parse_duration("1h30m", &v), 0);
        assert_int_equal(v, 5400 * USEC_PER_SEC);
        assert_int_equal(parse_duration("1m30s", &v), 0);
        assert_int_equal(v, 90 * USEC_PER_SEC);
        assert_int_equal(parse_duration("250us", &v), 0);
        assert_int_equal(v, 250);
        assert_int_equal(parse_duration("1.5", &v), 0); /* a bare number is seconds */
        assert_int_equal(v, 1500 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("0", &v), 0);
        assert_int_equal(v, 0);

        assert_int_equal(parse_duration("", &v), -EINVAL);
        assert_int_equal(parse_duration("10", &v), 0);
        assert_int_equal(parse_duration("10 s", &v), -EINVAL);
        assert_int_equal(parse_duration("ten", &v), -EINVAL);
        assert_int_equal(parse_duration("5x", &v), -EINVAL);
        assert_int_equal(parse_duration("-5s", &v), -EINVAL);
        assert_int_equal(parse_duration("-5", &v), -EINVAL);
        assert_int_equal(parse_duration("s", &v), -EINVAL);
        assert_int_equal(parse_duration("99999999999999999999h", &v), -ERANGE);
}

static void test_format_duration(void **state) {
        char buf[32];

        assert_string_equal(format_duration(buf, sizeof(buf), 500 * USEC_PER_MSEC), "500ms");
        assert_string_equal(format_duration(buf, sizeof(buf), 10 * USEC_PER_SEC), "10s");
        assert_string_equal(format_duration(buf, sizeof(buf), 300 * USEC_PER_SEC), "5m");
        assert_string_equal(format_duration(buf, sizeof(buf), 7200 * USEC_PER_SEC), "2h");
        assert_string_equal(format_duration(buf, sizeof(buf), 90 * USEC_PER_SEC), "90s");
}

static void test_numbers(void **state) {
        int64_t i;
        uint64_t u;
        double d;
        bool b;

        assert_int_equal(parse_int64("-42", &i), 0);
        assert_int_equal(i, -42);
        assert_int_equal(parse_int64("42x", &i), -EINVAL);
        assert_int_equal(parse_int64(" 42", &i), -EINVAL);
        assert_int_equal(parse_int64("", &i), -EINVAL);
        assert_int_equal(parse_int64("9223372036854775808", &i), -ERANGE);
        assert_int_equal(parse_uint64("18446744073709551615", &u), 0);
        assert_true(u == UINT64_MAX);
        assert_int_equal(parse_uint64("-1", &u), -EINVAL);
        assert_int_equal(parse_double("0.25", &d), 0);
        assert_true(d == 0.25);
        assert_int_equal(parse_double("nan", &d), -EINVAL);
        assert_int_equal(parse_double("1e999", &d), -ERANGE);
        assert_int_equal(parse_bool("true", &b), 0);
        assert_true(b);
        assert_int_equal(parse_bool("no", &b), 0);
        assert_false(b);
        assert_int_equal(parse_bool("maybe", &b), -EINVAL);
}

static void test_rfc3339(void **state) {
        char buf[RFC3339_MAX];
        uint64_t t;

        assert_string_equal(format_rfc3339(buf, sizeof(buf), UINT64_C(1764115200) * USEC_PER_SEC + 999999),
                            "2025-11-26T00:00:00Z");
        assert_int_equal(parse_rfc3339("2025-11-26T00:00:00Z", &t), 0);
        assert_true(t == UINT64_C(1764115200) * USEC_PER_SEC);
        assert_int_equal(parse_rfc3339("2025-11-26T01:00:00+01:00", &t), 0);
        assert_true(t == UINT64_C(1764115200) * USEC_PER_SEC);
        assert_int_equal(parse_rfc3339("2025-11-26T00:00:00.123Z", &t), 0);
        assert_int_equal(parse_rfc3339("2025-11-26 00:00:00", &t), -EINVAL);
        assert_int_equal(parse_rfc3339("2025-11-26T00:00:00Zjunk", &t), -EINVAL);
}

static void test_strings(void **state) {
        char s[] = "  padded \n";

        assert_string_equal(strstrip(s), "padded");
        assert_true(is_camel_case("MemoryStall"));
        assert_false(is_camel_case("memoryStall"));
        assert_false(is_camel_case("Memory Stall"));
        assert_false(is_camel_case(""));
        assert_false(is_camel_case(NULL));
}

static void test_read_regular_file(void **state) {
        char dir[] = "/tmp/nhtest-util.XXXXXX", path[64];
        char *text = NULL;
        size_t len = 0;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/f", dir);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs("0123456789", f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(read_regular_file(path, 10, &text, &len), 0);
        assert_string_equal(text, "0123456789");
        assert_int_equal(len, 10);
        free(text);
        assert_int_equal(read_regular_file(path, 9, &text, &len), -EFBIG);
        assert_int_equal(read_regular_file(dir, 100, &text, &len), -EISDIR);
        assert_int_equal(read_regular_file("/nonexistent/f", 100, &text, &len), -ENOENT);
        /* A FIFO is refused at once: a blocking open would wait for a writer forever. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkfifo(path, 0600), 0);
        alarm(10);
        assert_int_equal(read_regular_file(path, 100, &text, &len), -EINVAL);
        alarm(0);
        /* A file whose size says 0 is read to its end all the same. */
        assert_int_equal(read_regular_file("/proc/self/stat", 4096, &text, &len), 0);
        assert_true(len > 0 && strlen(text) == len);
        free(text);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_durations), cmocka_unit_test(test_format_duration),
                cmocka_unit_test(test_numbers),   cmocka_unit_test(test_rfc3339),
                cmocka_unit_test(test_strings),   cmocka_unit_test(test_read_regular_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
