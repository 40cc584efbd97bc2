/* SPDX-License-Identifier: MIT */
/* The plugin loader's refusals, and what a probe that fails looks like in the table. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"
#include "util.h"
#include "testlib.h"

struct fixture {
        char *dir; /* the plugin directory under test */
        char *dirs[2];
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        f->dir = test_mkdtemp();
        f->dirs[0] = f->dir;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        test_rmtree(f->dir);
        free(f->dir);
        free(f);
        return 0;
}

/* Copies the built test plugin `built`.so into the fixture directory as `as`.so, mode 0644. */
static void install(struct fixture *f, const char *built, const char *as) {
        char *from = NULL, *to = NULL, *text;
        FILE *in, *out;
        int c;

        assert_true(asprintf(&from, "%s/tests/plugins/.libs/%s.so", test_builddir(), built) >= 0);
        assert_true(asprintf(&to, "%s/%s.so", f->dir, as) >= 0);
        in = fopen(from, "re");
        assert_non_null(in);
        out = fopen(to, "we");
        assert_non_null(out);
        while ((c = fgetc(in)) != EOF)
                fputc(c, out);
        fclose(in);
        assert_int_equal(fclose(out), 0);
        assert_int_equal(chmod(to, 0644), 0);
        (void) text;
        free(from);
        free(to);
}

/* Opens `name` and returns the error text, or NULL when it loaded. */
static char *try_open(struct fixture *f, const char *name, int expected) {
        struct nh_plugin_handle *h = NULL;
        char *error = NULL;
        int r = nh_plugin_open(f->dirs, name, &h, &error);

        assert_int_equal(r, expected);
        if (r >= 0) {
                assert_non_null(h);
                assert_null(error);
                nh_plugin_close(h);
                return NULL;
        }
        assert_null(h);
        return error;
}

static void expect_refusal(struct fixture *f, const char *name, int expected, const char *text) {
        char *error = try_open(f, name, expected);
        assert_non_null(error);
        if (!strstr(error, text))
                fail_msg("\"%s\" does not contain \"%s\"", error, text);
        free(error);
}

static void test_good_plugin(void **state) {
        struct fixture *f = *state;
        struct nh_plugin_handle *h = NULL;
        char *error = NULL;

        install(f, "testprobe", "testprobe");
        assert_int_equal(nh_plugin_open(f->dirs, "testprobe", &h, &error), 0);
        assert_string_equal(h->desc.name, "testprobe");
        assert_int_equal(h->desc.abi_version, NH_PLUGIN_ABI_VERSION);
        assert_string_equal(h->desc.conditions[0].type, "TestProblem");
        assert_non_null(strstr(h->path, "/testprobe.so"));
        nh_plugin_close(h);
}

static void test_missing(void **state) {
        char *error = try_open(*state, "nothere", -ENOENT);
        assert_null(error);
}

static void test_not_regular(void **state) {
        struct fixture *f = *state;
        char *p = test_path(f->dir, "adir.so");

        assert_int_equal(mkdir(p, 0755), 0);
        expect_refusal(f, "adir", -EPERM, "adir.so is not a regular file");
        free(p);

        p = test_path(f->dir, "afifo.so");
        assert_int_equal(mkfifo(p, 0644), 0);
        expect_refusal(f, "afifo", -EPERM, "afifo.so is not a regular file");
        free(p);

        install(f, "testprobe", "testprobe");
        p = test_path(f->dir, "alink.so");
        assert_int_equal(symlink("testprobe.so", p), 0);
        expect_refusal(f, "alink", -EPERM, "alink.so is a symbolic link");
        free(p);
}

static void test_writable(void **state) {
        struct fixture *f = *state;
        char *p;

        install(f, "testprobe", "testprobe");
        p = test_path(f->dir, "testprobe.so");
        assert_int_equal(chmod(p, 0664), 0);
        expect_refusal(f, "testprobe", -EPERM, "testprobe.so is writable by its group (mode 0664)");
        assert_int_equal(chmod(p, 0646), 0);
        expect_refusal(f, "testprobe", -EPERM, "testprobe.so is writable by others (mode 0646)");
        assert_int_equal(chmod(p, 0644), 0);
        assert_null(try_open(f, "testprobe", 0));

        /* The directory too: whoever may write it may swap the file. */
        assert_int_equal(chmod(f->dir, 0777), 0);
        expect_refusal(f, "testprobe", -EPERM, "is writable by others (mode 0777)");
        assert_int_equal(chmod(f->dir, 0755), 0);
        free(p);
}

static void test_foreign_owner(void **state) {
        struct fixture *f = *state;
        char *p;

        if (geteuid() != 0) {
                /* Without root the check is still exercised through the rule itself. */
                char *error = NULL;
                assert_int_equal(nh_plugin_check_owner("/x.so", geteuid() + 1, 0644, &error), -EPERM);
                assert_non_null(strstr(error, "neither root nor the daemon's user"));
                free(error);
                return;
        }
        install(f, "testprobe", "testprobe");
        p = test_path(f->dir, "testprobe.so");
        assert_int_equal(chown(p, 65534, 65534), 0);
        expect_refusal(f, "testprobe", -EPERM,
                       "testprobe.so is owned by uid 65534, neither root nor the daemon's user");
        assert_int_equal(chown(p, 0, 0), 0);
        assert_int_equal(chown(f->dir, 65534, 0), 0);
        expect_refusal(f, "testprobe", -EPERM, "is owned by uid 65534");
        assert_int_equal(chown(f->dir, 0, 0), 0);
        assert_null(try_open(f, "testprobe", 0));
        free(p);
}

static void test_bad_descriptors(void **state) {
        struct fixture *f = *state;

        install(f, "nodesc", "nodesc");
        expect_refusal(f, "nodesc", -ENOEXEC, "no descriptor: the symbol nodehealth_plugin is missing");
        install(f, "badabi", "badabi");
        expect_refusal(f, "badabi", -ENOEXEC, "plugin ABI 2.0, this daemon speaks 1.1");
        install(f, "badsize", "badsize");
        expect_refusal(f, "badsize", -ENOEXEC, "descriptor size 12 does not match ABI 1.1");
        install(f, "badname", "badname");
        expect_refusal(f, "badname", -EINVAL, "descriptor names the plugin \"somebodyelse\", expected \"badname\"");
        /* Whatever the file is called, the descriptor must agree. */
        install(f, "testprobe", "renamed");
        expect_refusal(f, "renamed", -EINVAL, "descriptor names the plugin \"testprobe\", expected \"renamed\"");
}

static void test_not_a_library(void **state) {
        struct fixture *f = *state;
        char *p;

        test_write_file(f->dir, "garbage.so", "\177ELF but not really a shared object\n");
        p = test_path(f->dir, "garbage.so");
        assert_int_equal(chmod(p, 0644), 0);
        expect_refusal(f, "garbage", -ENOEXEC, "garbage.so: cannot load");
        free(p);
}

static void test_search_order(void **state) {
        struct fixture *f = *state;
        struct nh_plugin_handle *h = NULL;
        char *error = NULL;
        char *second = test_mkdtemp();
        char *dirs[] = {second, f->dir, NULL};

        install(f, "testprobe", "testprobe");
        assert_int_equal(nh_plugin_open(dirs, "testprobe", &h, &error), 0);
        assert_memory_equal(h->path, f->dir, strlen(f->dir));
        nh_plugin_close(h);
        test_rmtree(second);
        free(second);
}

/* ---- a probe that fails, as the table shows it ---- */

static void test_init_failure(void **state) {
        struct harness *h = NULL;

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"init_fail\": true}}}", NULL,
                                     NULL, NULL, &h),
                         0);
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        assert_condition(h, "OtherProblem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        assert_string_equal(harness_condition(h, "TestProblem")->message, "probe t could not start: No such device");
        harness_run(h); /* a probe that did not start is not run */
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        harness_free(h);
}

static void test_cycle_failure_and_recovery(void **state) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"raise_after\": 1, "
                                     "\"clear_after\": 1}}}",
                                     NULL, NULL, root, &h),
                         0);
        test_write_file(root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem True OtherBad broken\n");
        harness_run(h);
        assert_condition(h, "TestProblem", NH_STATUS_FALSE, "TestOK");
        assert_condition(h, "OtherProblem", NH_STATUS_TRUE, "OtherBad");

        test_write_file(root, "testprobe/state", "fail\n");
        harness_run(h);
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "ProbeFailed");
        assert_condition(h, "OtherProblem", NH_STATUS_UNKNOWN, "ProbeFailed");
        assert_string_equal(harness_condition(h, "OtherProblem")->message, "probe t failed: Input/output error");

        test_write_file(root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        harness_run(h);
        assert_condition(h, "TestProblem", NH_STATUS_FALSE, "TestOK");
        assert_condition(h, "OtherProblem", NH_STATUS_FALSE, "OtherOK");
        harness_free(h);
        test_rmtree(root);
        free(root);
}

static void test_read_file_stays_in_root(void **state) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();
        char *outside = test_mkdtemp();
        char *link = NULL, buf[64];
        size_t len;

        test_write_file(outside, "secret", "outside\n");
        test_write_file(root, "inside", "inside\n");
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\"}}}", NULL, NULL, root, &h), 0);
        struct nh_probe_ctx *p = h->probes[0];

        assert_int_equal(nh_read_file(p, NH_ROOT_HOST, "/inside", buf, sizeof(buf), &len), 0);
        assert_string_equal(buf, "inside\n");
        assert_int_equal(len, 7);
        /* ".." and an absolute link both resolve inside the root, as in a chroot. */
        char *rel = NULL;
        assert_true(asprintf(&rel, "../../../../../../..%s/secret", outside) >= 0);
        assert_int_equal(nh_read_file(p, NH_ROOT_HOST, rel, buf, sizeof(buf), NULL), -ENOENT);
        free(rel);
        link = test_path(root, "escape");
        assert_true(asprintf(&rel, "%s/secret", outside) >= 0);
        assert_int_equal(symlink(rel, link), 0);

        assert_int_equal(nh_read_file(p, NH_ROOT_HOST, "escape", buf, sizeof(buf), NULL), -ENOENT);
        /* Exactly full is fine; one byte more is -EFBIG. */
        test_write_file(root, "seven", "1234567");
        assert_int_equal(nh_read_file(p, NH_ROOT_HOST, "seven", buf, 8, &len), 0);
        assert_int_equal(nh_read_file(p, NH_ROOT_HOST, "seven", buf, 7, &len), -EFBIG);
        harness_free(h);
        test_rmtree(root);
        test_rmtree(outside);
        free(root);
        free(outside);
        free(link);
        free(rel);
}

static void test_kubelet_owned_type(void **state) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();

        test_write_file(root, "testprobe/state",
                        "MemoryPressure True KubeletHasInsufficientMemory low\n"
                        "Undeclared True Whatever x\n");
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\"}}}", NULL, NULL, root, &h), 0);
        harness_run(h);
        /* Without take_over the kubelet's type is never written. */
        assert_null(harness_condition(h, "MemoryPressure"));
        assert_null(harness_condition(h, "Undeclared"));
        harness_free(h);

        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"raise_after\": 1, "
                                     "\"take_over\": [\"MemoryPressure\"]}}}",
                                     NULL, NULL, root, &h),
                         0);
        harness_run(h);
        assert_condition(h, "MemoryPressure", NH_STATUS_TRUE, "KubeletHasInsufficientMemory");
        harness_free(h);
        test_rmtree(root);
        free(root);
}

static void test_events_and_bad_reports(void **state) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();

        /* "lower" is not a CamelCase reason and "Bogus" not a status: both refused. */
        test_write_file(root, "testprobe/state",
                        "event OOMKilling Killed process 42\n"
                        "TestProblem True lower bad\n"
                        "OtherProblem Bogus Reason x\n");
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\"}}}", NULL, NULL, root, &h), 0);
        harness_run(h);
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->last_event_reason, "OOMKilling");
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "NotYetObserved");
        assert_condition(h, "OtherProblem", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_free(h);
        test_rmtree(root);
        free(root);
}

/* ---- asynchronous cycles: fds, timers, timeouts, triggers ---- */

static struct harness *start_async(const char *state, char **ret_root) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();

        test_write_file(root, "testprobe/state", state);
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"timeout\": \"200ms\", "
                                     "\"raise_after\": 1, \"clear_after\": 1}}}",
                                     NULL, NULL, root, &h),
                         0);
        *ret_root = root;
        return h;
}

static void stop_async(struct harness *h, char *root) {
        harness_free(h);
        test_rmtree(root);
        free(root);
}

static void test_cycle_ends_on_timer(void **state) {
        char *root;
        struct harness *h = start_async("later\n", &root);

        assert_int_equal(nh_probe_run(h->probes[0]), NH_PROBE_PENDING);
        assert_true(nh_probe_pending(h->probes[0]));
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "NotYetObserved");
        /* A second cycle while the first is pending is refused, not stacked. */
        assert_int_equal(nh_probe_run(h->probes[0]), -EBUSY);
        harness_run_pending(h);
        assert_false(nh_probe_pending(h->probes[0]));
        assert_condition(h, "TestProblem", NH_STATUS_TRUE, "TestLater");
        stop_async(h, root);
}

static void test_cycle_ends_on_fd(void **state) {
        char *root;
        struct harness *h = start_async("pipe\n", &root);

        harness_run(h);
        assert_condition(h, "OtherProblem", NH_STATUS_TRUE, "OtherPipe");
        assert_false(nh_probe_pending(h->probes[0]));
        stop_async(h, root);
}

static void test_pending_cycle_times_out(void **state) {
        char *root;
        struct harness *h = start_async("TestProblem False TestOK fine\nhang\n", &root);
        uint64_t start = now_usec(CLOCK_MONOTONIC);

        harness_run(h);
        /* Ended by the core after the probe's 200ms timeout, not before. */
        assert_true(now_usec(CLOCK_MONOTONIC) - start >= 150 * USEC_PER_MSEC);
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "ProbeTimeout");
        assert_string_equal(harness_condition(h, "TestProblem")->message,
                            "probe t did not finish a cycle within its timeout of 200ms");
        assert_int_equal(nh_probe_stats(h->probes[0])->failures, 1);

        /* The next cycle is allowed again and can recover. */
        test_write_file(root, "testprobe/state", "TestProblem False TestOK fine\n");
        harness_run(h);
        assert_condition(h, "TestProblem", NH_STATUS_FALSE, "TestOK");
        stop_async(h, root);
}

static void test_trigger(void **state) {
        char *root;
        struct harness *h = start_async("trigger\n", &root);

        harness_run(h);
        assert_int_equal(h->n_triggers, 2);
        stop_async(h, root);
}

static void test_trigger_during_pending_cycle(void **state) {
        char *root;
        struct harness *h = start_async("latertrigger\n", &root);

        assert_int_equal(nh_probe_run(h->probes[0]), NH_PROBE_PENDING);
        assert_int_equal(h->n_triggers, 0);
        harness_run_pending(h);
        /* Not lost, not run into -EBUSY: delivered once the pending cycle has ended. */
        assert_int_equal(h->n_triggers, 1);
        assert_int_equal(h->n_triggers_while_pending, 0);
        assert_condition(h, "TestProblem", NH_STATUS_TRUE, "TestLater");

        stop_async(h, root);
}

static void test_declare_at_init(void **state) {
        struct harness *h = NULL;
        char *root = test_mkdtemp();

        test_write_file(root, "testprobe/state",
                        "KernelDeadlock True DockerHung task docker:1 blocked\n"
                        "DiskPressure True Whatever x\ndeclarelate\n");
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"raise_after\": 1, "
                                     "\"declare\": [\"KernelDeadlock\", \"ReadonlyFilesystem\", \"DiskPressure\"]}}}",
                                     NULL, NULL, root, &h),
                         0);
        /* Declared types exist from the start, like the descriptor's. */
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "NotYetObserved");
        assert_null(harness_condition(h, "DiskPressure")); /* the kubelet's, not taken over */
        harness_run(h);
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "DockerHung");
        assert_null(harness_condition(h, "DiskPressure"));
        assert_null(harness_condition(h, "LateType"));
        assert_string_equal(h->last_event_reason, "DeclareRefused");
        harness_free(h);

        /* A bad name fails init: the probe's conditions say so. */
        assert_int_equal(harness_new("{\"probes\": {\"t\": {\"plugin\": \"testprobe\", \"declare\": [\"not camel\"]}}}",
                                     NULL, NULL, root, &h),
                         0);
        assert_condition(h, "TestProblem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        assert_string_equal(harness_condition(h, "TestProblem")->message, "probe t could not start: Invalid argument");
        harness_free(h);
        test_rmtree(root);
        free(root);
}

static void test_watch_arguments(void **state) {
        char *root;
        struct harness *h = start_async("", &root);
        struct nh_probe_ctx *p = h->probes[0];

        assert_int_equal(nh_watch_fd(NULL, 0, 0, NULL, NULL), -EINVAL);
        assert_int_equal(nh_watch_fd(p, -1, 0, NULL, NULL), -EINVAL);
        assert_int_equal(nh_unwatch_fd(p, 12345), -ENOENT);
        assert_int_equal(nh_set_timer(p, 1000, NULL, NULL), 0); /* cancelling nothing is fine */
        /* A stray pointer is refused, not followed into a crash. */
        char not_a_ctx[64] = {0};
        assert_int_equal(nh_trigger((struct nh_probe_ctx *) not_a_ctx), -EINVAL);
        assert_int_equal(nh_report((struct nh_probe_ctx *) not_a_ctx, NULL), -EINVAL);
        stop_async(h, root);
}

static void on_child(struct nh_probe_ctx *ctx, pid_t pid, int code, int status, void *userdata) {
        int *got = userdata;

        *got = code == CLD_EXITED ? status : -1;
}

static bool child_reported(struct harness *h) {
        return false;
}

/* ABI 1.1: counters and child processes, with their argument checks. */
static void test_counters_and_children(void **state) {
        char *root, name[32];
        struct harness *h = start_async("", &root);
        struct nh_probe_ctx *p = h->probes[0];
        const struct nh_probe_counter *c;
        size_t n;
        int got = -2;
        pid_t pid;

        assert_int_equal(nh_counter_set(p, "entries_read", 5), 0);
        assert_int_equal(nh_counter_set(p, "entries_read", 7), 0);
        assert_int_equal(nh_counter_set(p, "Bad", 1), -EINVAL);
        assert_int_equal(nh_counter_set(p, "9lives", 1), -EINVAL);
        assert_int_equal(nh_counter_set(p, "with space", 1), -EINVAL);
        assert_int_equal(nh_counter_set(p, NULL, 1), -EINVAL);
        c = nh_probe_counters(p, &n);
        assert_int_equal(n, 1);
        assert_string_equal(c[0].name, "entries_read");
        assert_int_equal(c[0].value, 7);
        for (int i = 1; i < 32; i++) {
                snprintf(name, sizeof(name), "c%d", i);
                assert_int_equal(nh_counter_set(p, name, (uint64_t) i), 0);
        }
        assert_int_equal(nh_counter_set(p, "one_too_many", 1), -E2BIG);

        assert_int_equal(nh_watch_child(p, 1, on_child, &got), -EINVAL); /* not ours */
        assert_int_equal(nh_watch_child(p, 0, on_child, &got), -EINVAL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(42);
        assert_int_equal(nh_watch_child(p, pid, on_child, &got), 0);
        assert_int_equal(nh_watch_child(p, pid, on_child, &got), -EEXIST);
        for (int i = 0; i < 100 && got == -2; i++)
                (void) harness_loop(h, 100, child_reported);
        assert_int_equal(got, 42);
        stop_async(h, root);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_good_plugin, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_regular, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_owner, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_descriptors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_a_library, setup, teardown),
                cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
                cmocka_unit_test(test_init_failure),
                cmocka_unit_test(test_cycle_failure_and_recovery),
                cmocka_unit_test(test_kubelet_owned_type),
                cmocka_unit_test(test_read_file_stays_in_root),
                cmocka_unit_test(test_counters_and_children),

                cmocka_unit_test(test_events_and_bad_reports),
                cmocka_unit_test(test_cycle_ends_on_timer),
                cmocka_unit_test(test_cycle_ends_on_fd),
                cmocka_unit_test(test_pending_cycle_times_out),
                cmocka_unit_test(test_trigger),
                cmocka_unit_test(test_trigger_during_pending_cycle),
                cmocka_unit_test(test_declare_at_init),

                cmocka_unit_test(test_watch_arguments),

        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
