/* STUB: being written. */
#include "testlib.h"

static void test_stub(void **state) {
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_stub)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
