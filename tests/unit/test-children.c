/* SPDX-License-Identifier: MIT */
/* The child registry: watched children are reported once and reaped; orphans are reaped. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "children.h"
#include "testlib.h"
#include "util.h"

struct fixture {
        sd_event *event;
        struct nh_children *children;
        unsigned calls;
        pid_t last_pid;
        int last_code, last_status;
        pid_t respawned;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        sigset_t chld;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        assert_int_equal(sigprocmask(SIG_BLOCK, &chld, NULL), 0);
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(nh_children_new(f->event, true, &f->children), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        nh_children_free(f->children);
        sd_event_unref(f->event);
        free(f);
        return 0;
}

static void on_exit_cb(void *userdata, pid_t pid, int code, int status) {
        struct fixture *f = userdata;

        f->calls++;
        f->last_pid = pid;
        f->last_code = code;
        f->last_status = status;
}

/* Runs the loop until `*counter` reaches `want` or 10 s pass. */
static void loop_until(struct fixture *f, const unsigned *counter, unsigned want) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

        while (*counter < want && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
}

static pid_t spawn_exit(int status) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0)
                _exit(status);
        return pid;
}

/* Is `pid` a zombie child of ours?  (It is gone once reaped.) */
static bool is_zombie(pid_t pid) {
        struct test_pstat p;

        return test_pstat(pid, &p) && p.state == 'Z';
}

static void test_watched_exit_and_signal(void **state) {
        struct fixture *f = *state;
        pid_t a = spawn_exit(3), b = fork();

        assert_true(b >= 0);
        if (b == 0) {
                pause();
                _exit(0);
        }
        assert_int_equal(nh_children_watch(f->children, a, on_exit_cb, f, NULL), 0);
        assert_int_equal(nh_children_watch(f->children, a, on_exit_cb, f, NULL), -EEXIST);
        assert_int_equal(nh_children_watched(f->children), 1);
        loop_until(f, &f->calls, 1);
        assert_int_equal(f->calls, 1);
        assert_int_equal(f->last_pid, a);
        assert_int_equal(f->last_code, CLD_EXITED);
        assert_int_equal(f->last_status, 3);
        assert_false(is_zombie(a));
        assert_int_equal(nh_children_watched(f->children), 0);

        assert_int_equal(nh_children_watch(f->children, b, on_exit_cb, f, NULL), 0);
        kill(b, SIGKILL);
        loop_until(f, &f->calls, 2);
        assert_int_equal(f->last_pid, b);
        assert_int_equal(f->last_code, CLD_KILLED);
        assert_int_equal(f->last_status, SIGKILL);
        assert_false(is_zombie(b));
}

static void test_not_our_child(void **state) {
        struct fixture *f = *state;

        assert_int_equal(nh_children_watch(f->children, 1, on_exit_cb, f, NULL), -EINVAL);
        assert_int_equal(nh_children_watch(f->children, getpid(), on_exit_cb, f, NULL), -EINVAL);
        assert_int_equal(nh_children_watch(f->children, 0, on_exit_cb, f, NULL), -EINVAL);
        assert_int_equal(nh_children_watched(f->children), 0);
}

/* A child that leaves a grandchild behind: the grandchild comes to us and is reaped. */
static void test_orphans_are_reaped(void **state) {
        struct fixture *f = *state;
        int pipefd[2];
        pid_t child, grandchild = 0;
        uint64_t end;

        assert_int_equal(pipe(pipefd), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                pid_t g = fork();
                if (g == 0) {
                        usleep(200 * 1000); /* outlives its parent */
                        _exit(0);
                }
                (void) !write(pipefd[1], &g, sizeof(g));
                _exit(0);
        }
        close(pipefd[1]);
        assert_int_equal(read(pipefd[0], &grandchild, sizeof(grandchild)), (ssize_t) sizeof(grandchild));
        close(pipefd[0]);
        assert_int_equal(nh_children_watch(f->children, child, on_exit_cb, f, NULL), 0);
        loop_until(f, &f->calls, 1);
        assert_int_equal(f->last_pid, child);

        /* The grandchild now has us as parent, nobody watches it, and it ends: SIGCHLD reaps it. */
        end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        while (kill(grandchild, 0) == 0 && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(f->event, 50 * USEC_PER_MSEC) >= 0);
        assert_int_equal(kill(grandchild, 0), -1); /* neither running nor a zombie */
        assert_int_equal(errno, ESRCH);
}

/* A forgotten child is not reported, and is reaped as an orphan when it ends. */
static void test_forget(void **state) {
        struct fixture *f = *state;
        struct nh_child *handle = NULL;
        pid_t pid = fork();
        uint64_t end;

        assert_true(pid >= 0);
        if (pid == 0) {
                usleep(100 * 1000);
                _exit(0);
        }
        assert_int_equal(nh_children_watch(f->children, pid, on_exit_cb, f, &handle), 0);
        nh_child_forget(handle);
        assert_int_equal(nh_children_watched(f->children), 0);
        end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        while (kill(pid, 0) == 0 && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(f->event, 50 * USEC_PER_MSEC) >= 0);
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(f->calls, 0);
}

/*
 * A watched child and an orphan that end before the loop runs again: their SIGCHLDs merge
 * into one, which sd-event gives to the watched child's source.  The orphan is reaped anyway.
 */
static void test_orphan_ending_with_watched_child(void **state) {
        struct fixture *f = *state;
        int pipefd[2];
        pid_t child, grandchild = 0;
        uint64_t end;

        assert_int_equal(pipe(pipefd), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                pid_t parent = getpid(), g = fork();
                if (g == 0) {
                        while (getppid() == parent) /* until it is ours: re-parented */
                                usleep(1000);
                        _exit(0);
                }
                (void) !write(pipefd[1], &g, sizeof(g));
                _exit(0);
        }
        close(pipefd[1]);
        assert_int_equal(read(pipefd[0], &grandchild, sizeof(grandchild)), (ssize_t) sizeof(grandchild));
        close(pipefd[0]);
        assert_int_equal(nh_children_watch(f->children, child, on_exit_cb, f, NULL), 0);

        /* Both end while the loop does not run. */
        end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        while (!(is_zombie(child) && is_zombie(grandchild)) && now_usec(CLOCK_MONOTONIC) < end)
                usleep(1000);
        assert_true(is_zombie(grandchild));

        loop_until(f, &f->calls, 1);
        assert_int_equal(f->last_pid, child);
        end = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (kill(grandchild, 0) == 0 && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(f->event, 50 * USEC_PER_MSEC) >= 0);
        assert_int_equal(kill(grandchild, 0), -1);
        assert_int_equal(errno, ESRCH);
}

static void respawn_cb(void *userdata, pid_t pid, int code, int status) {
        struct fixture *f = userdata;

        f->calls++;
        /* A new child from inside the callback, watched at once: the registry stays sound. */
        if (f->calls == 1) {
                f->respawned = spawn_exit(7);
                assert_int_equal(nh_children_watch(f->children, f->respawned, respawn_cb, f, NULL), 0);
        } else {
                f->last_pid = pid;
                f->last_status = status;
        }
}

static void test_watch_from_callback(void **state) {
        struct fixture *f = *state;
        pid_t first = spawn_exit(0);

        assert_int_equal(nh_children_watch(f->children, first, respawn_cb, f, NULL), 0);
        loop_until(f, &f->calls, 2);
        assert_int_equal(f->calls, 2);
        assert_int_equal(f->last_pid, f->respawned);
        assert_int_equal(f->last_status, 7);
        assert_false(is_zombie(first));
        assert_false(is_zombie(f->respawned));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_watched_exit_and_signal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_our_child, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orphans_are_reaped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orphan_ending_with_watched_child, setup, teardown),
                cmocka_unit_test_setup_teardown(test_watch_from_callback, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
