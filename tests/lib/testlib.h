/* SPDX-License-Identifier: MIT */
/*
 * Shared test helpers: temporary trees, a probe harness that loads real plugins through the
 * real loader into a real condition table with a clock the test moves, and a way to run the
 * daemon binary and read its output with a deadline (tests never sleep to wait).
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conditions.h"
#include "config.h"
#include "probe.h"

/* cmocka needs these before its header. */
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

/* Paths of the build and source trees (set by the Makefile's test environment). */
const char *test_builddir(void);
const char *test_srcdir(void);

/* A fresh directory under $TMPDIR; removed (recursively) by test_rmtree(). */
char *test_mkdtemp(void);
void test_rmtree(const char *path);

/* Writes `content` to dir/relpath, creating parent directories; asserts on failure. */
void test_write_file(const char *dir, const char *relpath, const char *content);
char *test_path(const char *dir, const char *relpath); /* asprintf'd join */
char *test_read_file(const char *path); /* whole file or NULL */

/* Makes directory `to` and copies the tree `from` into it (cp -a); asserts on failure. */
void test_copy_tree(const char *from, const char *to);

/*
 * The memory fixtures (tests/fixtures/memory/SCENARIO/proc) as a --proc-path tree: use puts a
 * fresh copy at `proc`; swap replaces the files a running daemon reads, each by an atomic
 * rename (a file the scenario lacks is removed).
 */
void test_use_memory_fixture(const char *proc, const char *scenario);
void test_swap_memory_fixture(const char *proc, const char *scenario);

/* A process as /proc/PID/stat shows it. */
struct test_pstat {
        pid_t pid, ppid, pgrp;
        char state; /* 'R', 'S', 'D', 'Z', ... */
        char line[512]; /* the line itself (cut), to print */
};

/* Reads /proc/PID/stat: true, or false when there is no such process (reaped) or its line does not parse. */
bool test_pstat(pid_t pid, struct test_pstat *ret);

/* How many of the processes /proc lists `match` accepts; `show` prints each one as a "# " line. */
size_t test_pstat_count(bool (*match)(const struct test_pstat *p, const void *arg), const void *arg, bool show);

/*
 * The one journald all tests share (./test.sh starts it).  A test that reads back what a daemon
 * wrote holds it shared; one that stops and restarts it (test-kernel-log-real) holds it alone,
 * so neither runs beside the other though make check runs test programs in parallel.  Held
 * until the process exits.  Fails the test when there is no journald socket.
 */
void test_require_journald(bool alone);

/* ---- probe harness ---- */

#define HARNESS_MAX_EVENTS 64

struct harness {
        char *dir; /* temporary: holds the config file */
        struct nh_config *config;
        struct nh_table *table;
        struct nh_probe_host host;
        struct nh_probe_ctx *probes[8];
        size_t n_probes;
        uint64_t mono, real; /* the fake clock, µs */
        char *last_error; /* of harness_new when it fails */
        size_t n_transitions;
        size_t n_events; /* every nh_event() */
        struct {
                char *reason, *message;
        } events[HARNESS_MAX_EVENTS]; /* the first HARNESS_MAX_EVENTS of them */
        char last_event_reason[64];
        sd_event *event; /* a real loop for probes that watch fds or set timers */
        struct nh_children *children; /* reaps the probes' children, as the daemon does */
        size_t n_triggers; /* nh_trigger() calls: the harness does not run cycles by itself */
        size_t n_triggers_while_pending; /* host triggers that a pending cycle would have lost */
};

/*
 * Loads `config_json` (a whole nodehealthd.json text; plugin_dirs default to the build's
 * plugin directories), with the given trees (NULL: the real /proc, /sys, /), starts every
 * enabled probe.  Returns 0 or the error of the step that failed, message in h->last_error.
 */
int harness_new(const char *config_json, const char *proc, const char *sys, const char *root, struct harness **ret);
void harness_free(struct harness *h);
/*
 * One cycle of every probe; for a probe whose cycle is pending, runs the loop until it ends
 * (its timeout, real time, bounds the wait).
 */
void harness_run(struct harness *h);
/* Runs the loop until no probe's cycle is pending (bounded by their timeouts). */
void harness_run_pending(struct harness *h);
/* Runs the loop for at most timeout_ms, or until `done(h)` says so; returns done(h). */

bool harness_loop(struct harness *h, int timeout_ms, bool (*done)(struct harness *h));

void harness_advance(struct harness *h, uint64_t usec); /* moves the fake clock */
const struct nh_condition *harness_condition(struct harness *h, const char *type);

/* Asserts type's status and reason (reason NULL: not checked). */
#define assert_condition(h, type, status, reason) _assert_condition(h, type, status, reason, __FILE__, __LINE__)
void _assert_condition(struct harness *h, const char *type, enum nh_status status, const char *reason, const char *file,
                       int line);

/* ---- running the daemon ---- */

struct proc {
        pid_t pid;
        int out_fd, err_fd; /* non-blocking pipes */
        char *out, *err; /* everything read so far, NUL-terminated */
        size_t out_len, err_len;
        size_t out_mark; /* proc_wait_output() looks at stdout from here on */
        size_t err_mark; /* … and at stderr from here on */
};

/* From now on, proc_wait_output() on stdout only sees what comes next. */
#define proc_mark(p) ((p)->out_mark = (p)->out_len)
/* The same for stderr. */
#define proc_mark_err(p) ((p)->err_mark = (p)->err_len)

/* Fails the test, showing the whole text, unless it contains needle. */
#define assert_contains(text, needle) _assert_contains(text, needle, __FILE__, __LINE__)
void _assert_contains(const char *text, const char *needle, const char *file, int line);

/* Starts argv[0] (a path) with argv; stdout and stderr are pipes.  Asserts on failure. */
struct proc *proc_spawn(char *const *argv);
/* Reads until `needle` appears in stdout (or stderr when from_stderr) or the deadline passes. */
bool proc_wait_output(struct proc *p, const char *needle, bool from_stderr, int timeout_ms);
/* Waits for exit (killing it with SIGKILL after timeout_ms); returns the exit code, or 128+signal. */
int proc_wait(struct proc *p, int timeout_ms);
void proc_free(struct proc *p);

/* Runs a command to completion: exit code, and stdout/stderr in the returned proc. */
struct proc *proc_run(char *const *argv, int timeout_ms, int *ret_code);

/* The daemon binary in the build tree. */
const char *test_daemon_path(void);
