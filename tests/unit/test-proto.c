/* SPDX-License-Identifier: MIT */
/* The daemon's parser of what a probe host sends: hostile input, every byte of it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe-proto.h"

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

static int parse(const char *text, struct nh_proto_msg *m, const char **why) {
        cJSON *json = NULL;
        int r = nh_proto_parse(text, strlen(text), &json, m, why);

        if (r >= 0)
                assert_non_null(json);
        cJSON_Delete(json);
        return r;
}

static void expect_bad(const char *text, const char *why_part) {
        struct nh_proto_msg m;
        const char *why = NULL;

        assert_int_equal(parse(text, &m, &why), -EBADMSG);
        assert_non_null(why);
        if (!strstr(why, why_part))
                fail_msg("%s: \"%s\" does not contain \"%s\"", text, why, why_part);
}

static void test_good_messages(void **state) {
        struct nh_proto_msg m;
        const char *why = NULL;
        cJSON *json = NULL;
        const char *text = "{\"op\":\"report\",\"type\":\"BadProblem\",\"problem\":\"p1\",\"status\":\"True\","
                           "\"reason\":\"Broken\",\"message\":\"x\"}";

        assert_int_equal(nh_proto_parse(text, strlen(text), &json, &m, &why), 0);
        assert_int_equal(m.op, NH_OP_REPORT);
        assert_string_equal(m.type, "BadProblem");
        assert_string_equal(m.problem, "p1");
        assert_int_equal(m.status, NH_STATUS_TRUE);
        assert_string_equal(m.reason, "Broken");
        cJSON_Delete(json);

        assert_int_equal(parse("{\"op\":\"report\",\"type\":\"T\",\"status\":\"False\"}", &m, &why), 0);
        assert_null(m.reason);
        assert_null(m.message);
        assert_int_equal(parse("{\"op\":\"done\"}", &m, &why), 0);
        assert_int_equal(m.op, NH_OP_DONE);
        assert_int_equal(
                parse("{\"op\":\"fatal\",\"kind\":\"refused\",\"errno\":-1,\"error\":\"x.so is writable\"}", &m, &why),
                0);
        assert_int_equal(m.error_code, -EPERM);

        /* Counters travel as decimal strings: every uint64_t, exactly. */
        text = "{\"op\":\"counter\",\"name\":\"entries_read\",\"value\":\"18446744073709551615\"}";
        assert_int_equal(nh_proto_parse(text, strlen(text), &json, &m, &why), 0);
        assert_int_equal(m.op, NH_OP_COUNTER);
        assert_string_equal(m.name, "entries_read");
        assert_true(m.value == UINT64_MAX);
        cJSON_Delete(json);
        assert_int_equal(parse("{\"op\":\"counter\",\"name\":\"n\",\"value\":\"0\"}", &m, &why), 0);
        assert_true(m.value == 0);
}

static void test_hostile_messages(void **state) {
        char *big;

        expect_bad("", "size");
        expect_bad("not json", "not JSON");
        expect_bad("[1,2]", "not a JSON object");
        expect_bad("\"op\"", "not a JSON object");
        expect_bad("{}", "unknown \"op\"");
        expect_bad("{\"op\":42}", "unknown \"op\"");
        expect_bad("{\"op\":\"cycle\"}", "unknown \"op\"");
        expect_bad("{\"op\":\"done\",\"extra\":1}", "a key its \"op\" does not have");
        expect_bad("{\"op\":\"report\",\"type\":\"T\"}", "missing or malformed");
        expect_bad("{\"op\":\"report\",\"type\":\"T\",\"status\":\"Maybe\"}", "missing or malformed");
        expect_bad("{\"op\":\"report\",\"type\":7,\"status\":\"True\"}", "missing or malformed");
        expect_bad("{\"op\":\"declare\",\"type\":\"T\"}", "missing or malformed");
        expect_bad("{\"op\":\"fatal\",\"kind\":\"whatever\",\"errno\":-1,\"error\":\"\"}", "missing or malformed");
        expect_bad("{\"op\":\"fatal\",\"kind\":\"init\",\"errno\":5,\"error\":\"\"}", "missing or malformed");
        expect_bad("{\"op\":\"fatal\",\"kind\":\"init\",\"errno\":-1.5,\"error\":\"\"}", "missing or malformed");
        expect_bad("{\"op\":\"fatal\",\"kind\":\"init\",\"errno\":-1e300,\"error\":\"\"}", "missing or malformed");
        expect_bad("{\"op\":\"done\"", "not JSON");
        expect_bad("{\"op\":\"counter\",\"name\":\"n\",\"value\":\"18446744073709551616\"}", "missing or malformed");
        expect_bad("{\"op\":\"counter\",\"name\":\"n\",\"value\":\"-1\"}", "missing or malformed");
        expect_bad("{\"op\":\"counter\",\"name\":\"n\",\"value\":\" 1\"}", "missing or malformed");
        expect_bad("{\"op\":\"counter\",\"name\":\"n\",\"value\":\"\"}", "missing or malformed");
        expect_bad("{\"op\":\"counter\",\"name\":\"n\",\"value\":12}", "missing or malformed");
        expect_bad("{\"op\":\"counter\",\"value\":\"12\"}", "missing or malformed");

        /* A NUL inside, or a type longer than any CamelCase name may be. */
        {
                struct nh_proto_msg m;
                const char *why = NULL;
                cJSON *json = NULL;
                static const char nul[] = "{\"op\":\"done\"}\0{\"op\":\"ready\"}";
                assert_int_equal(nh_proto_parse(nul, sizeof(nul) - 1, &json, &m, &why), -EBADMSG);
                assert_null(json);
        }
        big = malloc(300);
        assert_non_null(big);
        memset(big, 'A', 299);
        big[299] = '\0';
        char *text = NULL;
        assert_true(asprintf(&text, "{\"op\":\"declare\",\"type\":\"%s\",\"healthy_reason\":\"OK\"}", big) > 0);
        expect_bad(text, "missing or malformed");
        free(text);
        free(big);

        /* Larger than a message may be. */
        big = malloc(NH_PROTO_MESSAGE_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', NH_PROTO_MESSAGE_MAX + 1);
        big[NH_PROTO_MESSAGE_MAX + 1] = '\0';
        expect_bad(big, "size");
        free(big);
}

static void test_send_fits(void **state) {
        int sv[2];
        char buf[128];
        ssize_t n;

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(nh_proto_send_strings(sv[0], "event", "reason", "OOMKilling", "message", "killed", NULL), 0);
        n = recv(sv[1], buf, sizeof(buf), 0);
        assert_true(n > 0);
        assert_memory_equal(buf, "{\"op\":\"event\",\"reason\":\"OOMKilling\",\"message\":\"killed\"}", (size_t) n);
        close(sv[0]);
        close(sv[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good_messages),
                cmocka_unit_test(test_hostile_messages),
                cmocka_unit_test(test_send_fits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
