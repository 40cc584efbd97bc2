/* SPDX-License-Identifier: MIT */
/* The condition table: hysteresis, aggregation, staleness, timestamps, transitions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conditions.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define T0 (UINT64_C(1764115200) * SEC) /* 2025-11-26T00:00:00Z */

struct recorder {
        struct nh_table *t;
        unsigned transitions;
        enum nh_status last_old, last_new;
        char last_type[64];
        uint64_t mono, real;
};

static void record(void *userdata, const struct nh_condition *c, enum nh_status old) {
        struct recorder *r = userdata;
        r->transitions++;
        r->last_old = old;
        r->last_new = c->status;
        snprintf(r->last_type, sizeof(r->last_type), "%s", c->type);
}

static int setup(void **state) {
        struct recorder *r = calloc(1, sizeof(*r));
        r->t = nh_table_new(record, r);
        r->mono = 100 * SEC;
        r->real = T0;
        *state = r;
        return 0;
}

static int teardown(void **state) {
        struct recorder *r = *state;
        nh_table_free(r->t);
        free(r);
        return 0;
}

static void tick(struct recorder *r, uint64_t usec) {
        r->mono += usec;
        r->real += usec;
}

static void add(struct recorder *r, const char *owner, const char *type, unsigned raise, unsigned clear,
                uint64_t stale) {
        struct nh_feed_params p = {.raise_after = raise, .clear_after = clear, .stale_after = stale};
        assert_int_equal(nh_table_add_feed(r->t, owner, type, &p, r->mono, r->real), 0);
}

static void obs(struct recorder *r, const char *owner, const char *type, const char *problem, enum nh_status s,
                const char *reason) {
        struct nh_observation o = {.type = type, .problem = problem, .status = s, .reason = reason, .message = reason};
        assert_int_equal(nh_table_observe(r->t, owner, &o, r->mono, r->real), 0);
}

static const struct nh_condition *get(struct recorder *r, const char *type) {
        const struct nh_condition *c = nh_table_find(r->t, type);
        assert_non_null(c);
        return c;
}

static void test_initial_unknown(void **state) {
        struct recorder *r = *state;

        add(r, "p", "Thing", 2, 2, 0);
        const struct nh_condition *c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_UNKNOWN);
        assert_string_equal(c->reason, NH_REASON_NOT_YET_OBSERVED);
        assert_string_equal(c->message, "probe p has not reported yet");
        assert_true(c->last_transition == T0);
        assert_int_equal(r->transitions, 0);
        assert_int_equal(nh_table_size(r->t), 1);
}

static void test_first_healthy_is_immediate(void **state) {
        struct recorder *r = *state;

        add(r, "p", "Thing", 2, 2, 0);
        tick(r, 5 * SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        const struct nh_condition *c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_FALSE);
        assert_string_equal(c->reason, "ThingOK");
        assert_true(c->last_transition == T0 + 5 * SEC);
        assert_true(c->last_heartbeat == T0 + 5 * SEC);
        assert_int_equal(r->transitions, 1);
        assert_int_equal(r->last_old, NH_STATUS_UNKNOWN);
        assert_int_equal(r->last_new, NH_STATUS_FALSE);
}

static void test_raise_and_clear_after(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "p", "Thing", 2, 3, 0);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        tick(r, 10 * SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingBroken");
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_FALSE); /* one problem observation is not enough */
        assert_string_equal(c->reason, "ThingOK");
        assert_true(c->last_transition == T0);
        assert_true(c->last_heartbeat == T0 + 10 * SEC);

        tick(r, 10 * SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingBroken");
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_TRUE);
        assert_string_equal(c->reason, "ThingBroken");
        assert_true(c->last_transition == T0 + 20 * SEC);
        assert_int_equal(r->transitions, 2);

        /* Two healthy observations of three needed: still True, transition time unchanged. */
        for (int i = 0; i < 2; i++) {
                tick(r, 10 * SEC);
                obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        }
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_TRUE);
        assert_true(c->last_transition == T0 + 20 * SEC);
        assert_true(c->last_heartbeat == T0 + 40 * SEC);

        tick(r, 10 * SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_FALSE);
        assert_true(c->last_transition == T0 + 50 * SEC);
        assert_int_equal(r->transitions, 3);
}

static void test_flapping_never_raises(void **state) {
        struct recorder *r = *state;

        add(r, "p", "Thing", 2, 2, 0);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        for (int i = 0; i < 10; i++) {
                tick(r, SEC);
                obs(r, "p", "Thing", NULL, i % 2 ? NH_STATUS_FALSE : NH_STATUS_TRUE, i % 2 ? "ThingOK" : "ThingBroken");
        }
        assert_int_equal(get(r, "Thing")->status, NH_STATUS_FALSE);
        assert_int_equal(r->transitions, 1);
}

static void test_same_status_updates_text_without_transition(void **state) {
        struct recorder *r = *state;

        add(r, "p", "Thing", 1, 1, 0);
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingBroken");
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingWorse");
        assert_string_equal(get(r, "Thing")->reason, "ThingWorse");
        assert_int_equal(r->transitions, 1);
}

static void test_unknown_pending_confirmation(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "p", "Thing", 2, 2, 0);
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingBroken");
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_UNKNOWN); /* never a premature False, nor an unconfirmed True */
        assert_string_equal(c->reason, NH_REASON_AWAITING_CONFIRMATION);
        assert_non_null(strstr(c->message, "ThingBroken seen in 1 of 2"));
        obs(r, "p", "Thing", NULL, NH_STATUS_TRUE, "ThingBroken");
        assert_int_equal(get(r, "Thing")->status, NH_STATUS_TRUE);
        assert_int_equal(r->transitions, 1);
        assert_int_equal(r->last_old, NH_STATUS_UNKNOWN);
}

static void test_aggregation_across_owners(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "a", "Shared", 1, 1, 0);
        add(r, "b", "Shared", 1, 1, 0);
        obs(r, "a", "Shared", NULL, NH_STATUS_FALSE, "AOK");
        /* b has not reported: we cannot say False for the whole type. */
        assert_int_equal(get(r, "Shared")->status, NH_STATUS_UNKNOWN);
        obs(r, "b", "Shared", NULL, NH_STATUS_FALSE, "BOK");
        assert_int_equal(get(r, "Shared")->status, NH_STATUS_FALSE);
        obs(r, "b", "Shared", NULL, NH_STATUS_TRUE, "BBroken");
        c = get(r, "Shared");
        assert_int_equal(c->status, NH_STATUS_TRUE);
        assert_string_equal(c->reason, "BBroken");
        obs(r, "a", "Shared", NULL, NH_STATUS_TRUE, "ABroken");
        assert_string_equal(get(r, "Shared")->reason, "ABroken"); /* first active source, in order */
        obs(r, "a", "Shared", NULL, NH_STATUS_FALSE, "AOK");
        c = get(r, "Shared");
        assert_int_equal(c->status, NH_STATUS_TRUE); /* b still has the problem */
        assert_string_equal(c->reason, "BBroken");
        obs(r, "b", "Shared", NULL, NH_STATUS_FALSE, "BOK");
        assert_int_equal(get(r, "Shared")->status, NH_STATUS_FALSE);
        assert_int_equal(nh_table_size(r->t), 1);
}

static void test_problems_within_one_feed(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "m", "MemoryThrashing", 1, 1, 0);
        obs(r, "m", "MemoryThrashing", "psi", NH_STATUS_FALSE, "MemoryNotThrashing");
        /* The "not reported yet" placeholder made way for the named problem. */
        assert_int_equal(get(r, "MemoryThrashing")->status, NH_STATUS_FALSE);
        obs(r, "m", "MemoryThrashing", "available", NH_STATUS_TRUE, "LowMemoryAvailable");
        c = get(r, "MemoryThrashing");
        assert_int_equal(c->status, NH_STATUS_TRUE);
        assert_string_equal(c->reason, "LowMemoryAvailable");
        obs(r, "m", "MemoryThrashing", "psi", NH_STATUS_TRUE, "MemoryStall");
        obs(r, "m", "MemoryThrashing", "available", NH_STATUS_FALSE, "MemoryNotThrashing");
        c = get(r, "MemoryThrashing");
        assert_int_equal(c->status, NH_STATUS_TRUE);
        assert_string_equal(c->reason, "MemoryStall");
        obs(r, "m", "MemoryThrashing", "psi", NH_STATUS_UNKNOWN, "PSIUnreadable");
        c = get(r, "MemoryThrashing");
        assert_int_equal(c->status, NH_STATUS_UNKNOWN);
        assert_string_equal(c->reason, "PSIUnreadable");
        assert_int_equal(r->transitions, 3);
}

static void test_staleness(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "p", "Thing", 1, 1, 30 * SEC);
        add(r, "q", "Other", 1, 1, 30 * SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        assert_int_equal(nh_table_next_stale(r->t), r->mono + 30 * SEC);
        tick(r, 29 * SEC);
        nh_table_check_stale(r->t, r->mono, r->real);
        assert_int_equal(get(r, "Thing")->status, NH_STATUS_FALSE);

        tick(r, 1 * SEC);
        nh_table_check_stale(r->t, r->mono, r->real);
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_UNKNOWN);
        assert_string_equal(c->reason, NH_REASON_PROBE_STALE);
        assert_string_equal(c->message, "probe p has not reported Thing for 30s");
        assert_true(c->last_transition == T0 + 30 * SEC);
        /* A feed never heard from goes stale too, counted from when it was added. */
        c = get(r, "Other");
        assert_string_equal(c->reason, NH_REASON_PROBE_STALE);
        assert_int_equal(nh_table_next_stale(r->t), UINT64_MAX);

        tick(r, SEC);
        obs(r, "p", "Thing", NULL, NH_STATUS_FALSE, "ThingOK");
        c = get(r, "Thing");
        assert_int_equal(c->status, NH_STATUS_FALSE); /* back at once: the first word after silence */
        assert_true(c->last_transition == T0 + 31 * SEC);
}

static void test_mark_unknown(void **state) {
        struct recorder *r = *state;
        const struct nh_condition *c;

        add(r, "p", "A", 2, 2, 30 * SEC);
        add(r, "p", "B", 2, 2, 0);
        add(r, "q", "C", 2, 2, 0);
        obs(r, "p", "A", NULL, NH_STATUS_FALSE, "AOK");
        obs(r, "p", "B", NULL, NH_STATUS_FALSE, "BOK");
        obs(r, "q", "C", NULL, NH_STATUS_FALSE, "COK");
        assert_int_equal(nh_table_mark_unknown(r->t, "p", NH_REASON_PROBE_FAILED, "probe p failed: EIO", r->real), 0);
        c = get(r, "A");
        assert_int_equal(c->status, NH_STATUS_UNKNOWN);
        assert_string_equal(c->reason, NH_REASON_PROBE_FAILED);
        assert_int_equal(get(r, "B")->status, NH_STATUS_UNKNOWN);
        assert_int_equal(get(r, "C")->status, NH_STATUS_FALSE);
        assert_int_equal(nh_table_mark_unknown(r->t, "nobody", "X", "x", r->real), -ENOENT);

        /* A failure is an answer: it does not turn into ProbeStale later. */
        tick(r, 3600 * SEC);
        nh_table_check_stale(r->t, r->mono, r->real);
        assert_string_equal(get(r, "A")->reason, NH_REASON_PROBE_FAILED);
        obs(r, "p", "A", NULL, NH_STATUS_FALSE, "AOK");
        assert_int_equal(get(r, "A")->status, NH_STATUS_FALSE);
}

static void test_remove_owner(void **state) {
        struct recorder *r = *state;

        add(r, "a", "Shared", 1, 1, 0);
        add(r, "b", "Shared", 1, 1, 0);
        add(r, "b", "OnlyB", 1, 1, 0);
        add(r, "c", "OnlyC", 1, 1, 0);
        nh_table_remove_owner(r->t, "b");
        assert_int_equal(nh_table_size(r->t), 2);
        assert_null(nh_table_find(r->t, "OnlyB"));
        assert_non_null(nh_table_find(r->t, "Shared"));
        obs(r, "c", "OnlyC", NULL, NH_STATUS_TRUE, "CBroken");
        assert_int_equal(get(r, "OnlyC")->status, NH_STATUS_TRUE);
        obs(r, "a", "Shared", NULL, NH_STATUS_FALSE, "AOK");
        assert_int_equal(get(r, "Shared")->status, NH_STATUS_FALSE);
}

static void test_bad_arguments(void **state) {
        struct recorder *r = *state;
        struct nh_feed_params p = {.raise_after = 1, .clear_after = 1};
        struct nh_observation o = {.type = "Thing", .status = NH_STATUS_TRUE, .reason = "R", .message = "m"};

        add(r, "p", "Thing", 1, 1, 0);
        assert_int_equal(nh_table_add_feed(r->t, "p", "Thing", &p, 0, 0), -EEXIST);
        p.raise_after = 0;
        assert_int_equal(nh_table_add_feed(r->t, "p", "Other", &p, 0, 0), -EINVAL);
        o.type = "Undeclared";
        assert_int_equal(nh_table_observe(r->t, "p", &o, 0, 0), -ENOENT);
        o.type = "Thing";
        o.status = (enum nh_status) 7;
        assert_int_equal(nh_table_observe(r->t, "p", &o, 0, 0), -EINVAL);
        o.status = NH_STATUS_TRUE;
        o.reason = NULL;
        assert_int_equal(nh_table_observe(r->t, "p", &o, 0, 0), -EINVAL);
        assert_int_equal(r->transitions, 0);
}

static void test_status_names(void **state) {
        assert_string_equal(nh_status_to_string(NH_STATUS_TRUE), "True");
        assert_string_equal(nh_status_to_string(NH_STATUS_FALSE), "False");
        assert_string_equal(nh_status_to_string(NH_STATUS_UNKNOWN), "Unknown");
        assert_null(nh_status_to_string((enum nh_status) 3));
        assert_int_equal(nh_status_from_string("Unknown"), NH_STATUS_UNKNOWN);
        assert_int_equal(nh_status_from_string("true"), _NH_STATUS_INVALID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_initial_unknown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_healthy_is_immediate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_raise_and_clear_after, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flapping_never_raises, setup, teardown),
                cmocka_unit_test_setup_teardown(test_same_status_updates_text_without_transition, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_pending_confirmation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_aggregation_across_owners, setup, teardown),
                cmocka_unit_test_setup_teardown(test_problems_within_one_feed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_staleness, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mark_unknown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_owner, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test(test_status_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
