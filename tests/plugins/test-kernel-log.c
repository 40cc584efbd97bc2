/* SPDX-License-Identifier: MIT */
/*
 * The kernel_log probe, loaded through the real loader into a real condition table.
 *
 * Lines reach it two ways.  A kmsg-format file (`kmsg_path`: records "PRI,SEQ,USEC,-;TEXT" as
 * /dev/kmsg returns them) is what most tests write: the probe reads it like the device, and
 * its lookback makes the first cycle cover what is already there.  Real journal files, made by
 * systemd-journal-remote from export format in a temporary directory that `journal_directory`
 * names (under --root-path, the same directory), test the journal reader: the lookback window,
 * the current boot only, kernel transport only, new entries appended while it runs, and a
 * journal that is missing and then appears.
 *
 * Rule semantics are checked against node-problem-detector's: its own kernel-monitor.json and
 * readonly-monitor.json load unchanged; the buffer is the last bufferSize lines joined by
 * "\n", a match must end at the newest line, and the lines it starts in become the message.
 * Every rule of the shipped conf/npd/kernel-monitor.json has its test line, and near misses.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define JOURNAL_REMOTE "/lib/systemd/systemd-journal-remote"

static char *shipped_rules(void) {
        return test_path(test_srcdir(), "conf/npd/kernel-monitor.json");
}

static char *npd_fixture(const char *name) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/kernel_log/npd/%s", name) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

static uint64_t mono_usec(void) {
        return now_usec(CLOCK_MONOTONIC);
}

/* ---- a kmsg-format file ---- */

struct kmsg {
        char *dir;
        char *path;
        unsigned long long seq;
};

static struct kmsg *kmsg_new(void) {
        struct kmsg *k = calloc(1, sizeof(*k));

        assert_non_null(k);
        k->dir = test_mkdtemp();
        k->path = test_path(k->dir, "kmsg");
        test_write_file(k->dir, "kmsg", "");
        return k;
}

static void kmsg_free(struct kmsg *k) {
        if (!k)
                return;
        test_rmtree(k->dir);
        free(k->dir);
        free(k->path);
        free(k);
}

/* Appends records (kernel facility, priority 4) stamped now; each argument is one line. */
static void kmsg_append_at(struct kmsg *k, uint64_t usec, const char *first, ...) {
        FILE *f = fopen(k->path, "ae");
        va_list ap;

        assert_non_null(f);
        va_start(ap, first);
        for (const char *line = first; line; line = va_arg(ap, const char *))
                fprintf(f, "4,%llu,%llu,-;%s\n", k->seq++, (unsigned long long) usec, line);
        va_end(ap);
        assert_int_equal(fclose(f), 0);
}
#define kmsg_append(k, ...) kmsg_append_at(k, mono_usec(), __VA_ARGS__, NULL)

/* ---- starting the probe ---- */

static struct harness *start_with(const char *probe_json, const char *root) {
        struct harness *h = NULL;
        char *config = NULL;
        int r;

        assert_true(
                asprintf(&config,
                         "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, "
                         "\"pid\": {\"enabled\": false}, \"network\": {\"enabled\": false}, \"kernel\": {\"plugin\": "
                         "\"kernel_log\", \"interval\": \"10s\", \"raise_after\": 1, \"clear_after\": 1, %s}}}",
                         probe_json) >= 0);
        r = harness_new(config, NULL, NULL, root, &h);
        free(config);
        if (r < 0)
                print_error("harness_new: %s\n", h->last_error ? h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        assert_int_equal(h->n_probes, 1);
        return h;
}

/* The probe reading `k` with the rule file `rules`; extra: more keys ("" or ", \"k\": v"). */
static struct harness *start_kmsg(struct kmsg *k, const char *rules, const char *extra) {
        char *json = NULL;
        struct harness *h;

        assert_true(asprintf(&json, "\"source\": \"kmsg\", \"kmsg_path\": \"%s\", \"npd_config\": \"%s\"%s%s", k->path,
                             rules, strstr(extra, "event_burst") ? "" : ", \"event_burst\": 1000", extra) >= 0);
        h = start_with(json, NULL);
        free(json);
        return h;
}

static bool has_events(struct harness *h, size_t n) {
        return h->n_events >= n;
}

static size_t want_events;
static bool enough_events(struct harness *h) {
        return has_events(h, want_events);
}

/* Runs the loop until `n` events were recorded (the file is polled every 10 ms). */
static void wait_events(struct harness *h, size_t n) {
        want_events = n;
        if (!harness_loop(h, 5000, enough_events)) {
                print_error("waited for %zu events, got %zu\n", n, h->n_events);
                fail();
        }
}

/* Lets the probe read whatever was appended (polls every 10 ms), with nothing to wait for. */
static void settle(struct harness *h) {
        (void) harness_loop(h, 100, NULL);
}

#define assert_message(h, type, text) _assert_message(h, type, text, __FILE__, __LINE__)
static void _assert_message(struct harness *h, const char *type, const char *text, const char *file, int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c || strcmp(c->message, text) != 0) {
                print_error("%s:%d: %s message is \"%s\", expected \"%s\"\n", file, line, type,
                            c ? c->message : "(none)", text);
                _fail(file, line);
        }
}

static void write_rules(const char *dir, const char *json) {
        test_write_file(dir, "rules.json", json);
}

/* ---- node-problem-detector's own files ---- */

static void test_npd_kernel_monitor_unchanged(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = npd_fixture("kernel-monitor.json");
        struct harness *h = start_kmsg(k, rules, "");

        /* The types come from the file, declared at init, NotYetObserved until the lookback is read. */
        assert_int_equal(nh_table_size(h->table), 3);
        assert_condition(h, "KernelDeadlock", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_run(h);
        assert_condition(h, "KernelDeadlock", NH_STATUS_FALSE, "KernelHasNoDeadlock");
        assert_message(h, "KernelDeadlock", "kernel has no deadlock");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_condition(h, "XfsShutdown", NH_STATUS_FALSE, "XfsHasNotShutDown");
        assert_int_equal(h->n_events, 0);

        kmsg_append(k, "Out of memory: Killed process 4321 (stress-ng-vm) total-vm:2142800kB, anon-rss:1933788kB, "
                       "file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:3864kB oom_score_adj:1000");
        wait_events(h, 1);
        assert_string_equal(h->events[0].reason, "OOMKilling");
        kmsg_append(k, "EXT4-fs (sdc1): Remounting filesystem read-only");
        kmsg_append(k, "INFO: task docker:1234 blocked for more than 120 seconds.");
        wait_events(h, 2);
        assert_string_equal(h->events[1].reason, "TaskHung");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem", "EXT4-fs (sdc1): Remounting filesystem read-only");
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "DockerHung");
        /* NPD's pattern misses the trailing PTI of current kernels (the shipped file does not). */
        kmsg_append(k, "divide error: 0000 [#1] SMP PTI", "divide error: 0000 [#2] SMP");
        wait_events(h, 3);
        assert_string_equal(h->events[2].reason, "KernelOops");
        assert_string_equal(h->events[2].message, "divide error: 0000 [#2] SMP");
        settle(h);
        assert_int_equal(h->n_events, 3);

        harness_free(h);
        free(rules);
        kmsg_free(k);
}

static void test_npd_readonly_monitor(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = npd_fixture("readonly-monitor.json");
        struct harness *h;

        kmsg_append(k, "EXT4-fs (dm-0): Remounting filesystem read-only");
        h = start_kmsg(k, rules, "");
        assert_int_equal(nh_table_size(h->table), 1);
        harness_run(h);
        /* Found by the lookback, in the first cycle: never False in between. */
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_int_equal(h->n_transitions, 1);
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

/* ---- the shipped rules: every rule's line, and near misses ---- */

struct rule_case {
        const char *lines[3];
        const char *event; /* the one event expected, or NULL */
        const char *condition, *reason; /* a condition expected True, or NULL */
};

static const struct rule_case shipped_cases[] = {
        /* OOM kills: the global and the cgroup killer of current kernels, names with spaces. */
        {{"Out of memory: Killed process 4321 (stress-ng-vm) total-vm:2142800kB, anon-rss:1933788kB, file-rss:4kB, "
          "shmem-rss:0kB, UID:0 pgtables:3864kB oom_score_adj:1000"},
         "OOMKilling",
         NULL,
         NULL},
        {{"Memory cgroup out of memory: Killed process 2813 (Web Content) total-vm:1042552kB, anon-rss:524060kB, "
          "file-rss:3328kB, shmem-rss:0kB, UID:1000 pgtables:1104kB oom_score_adj:985"},
         "OOMKilling",
         NULL,
         NULL},
        /* Older kernels: two lines, one event. */
        {{"Out of memory: Kill process 1234 (java) score 912 or sacrifice child",
          "Killed process 1234 (java) total-vm:4458536kB, anon-rss:3524424kB, file-rss:0kB, shmem-rss:0kB"},
         "OOMKilling",
         NULL,
         NULL},
        {{"Out of memory: Kill process 1234 (java) score 912 or sacrifice child"}, NULL, NULL, NULL},
        {{"oom_reaper: reaped process 4321 (stress-ng-vm), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"},
         NULL,
         NULL,
         NULL},
        /* Hung tasks, names with colons and spaces. */
        {{"INFO: task kworker/u8:2:123 blocked for more than 122 seconds."}, "TaskHung", NULL, NULL},
        {{"INFO: task Xorg worker:1234 blocked for more than 120 seconds."}, "TaskHung", NULL, NULL},
        {{"INFO: task docker:4711 blocked for more than 120 seconds."}, "TaskHung", "KernelDeadlock", "DockerHung"},
        {{"INFO: task containerd:812 blocked for more than 241 seconds."},
         "TaskHung",
         "KernelDeadlock",
         "ContainerdHung"},
        {{"\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message."}, NULL, NULL, NULL},
        {{"INFO: task kworker/0:1:55 blocked for more than 120 seconds, or so"}, NULL, NULL, NULL},
        /* unregister_netdevice. */
        {{"unregister_netdevice: waiting for eth0 to become free. Usage count = 1"}, "UnregisterNetDevice", NULL, NULL},
        {{"unregister_netdevice: waiting for flannel.1 to become free. Usage count = -2"},
         "UnregisterNetDevice",
         NULL,
         NULL},
        {{"unregister_netdevice: waiting for eth0"}, NULL, NULL, NULL},
        /* Oopses. */
        {{"BUG: unable to handle kernel NULL pointer dereference at 0000000000000010"}, "KernelOops", NULL, NULL},
        {{"BUG: kernel NULL pointer dereference, address: 0000000000000008"}, "KernelOops", NULL, NULL},
        {{"BUG: unable to handle page fault for address: ffffffffc0a1b000"}, "KernelOops", NULL, NULL},
        {{"Oops: 0002 [#1] SMP PTI"}, "KernelOops", NULL, NULL},
        {{"general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP NOPTI"},
         "KernelOops",
         NULL,
         NULL},
        {{"kernel BUG at mm/slub.c:305!"}, "KernelOops", NULL, NULL},
        {{"divide error: 0000 [#1] SMP"}, "KernelOops", NULL, NULL},
        {{"divide error: 0000 [#1] SMP PTI"}, "KernelOops", NULL, NULL},
        {{"Oops: divide error: 0000 [#1] PREEMPT SMP NOPTI"}, "KernelOops", NULL, NULL},
        {{"BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]"}, NULL, NULL, NULL},
        {{"traps: divide error ip:401136 sp:7ffd3c1c4f40 error:0 in a.out[401000+1000]"}, NULL, NULL, NULL},
        /* ext4 and XFS. */
        {{"EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0"},
         "Ext4Error",
         NULL,
         NULL},
        {{"EXT4-fs warning (device sdb1): ext4_dx_add_entry:2461: Directory (ino: 1234) index full, reduce fs "
          "performance"},
         "Ext4Warning",
         NULL,
         NULL},
        {{"EXT4-fs (sda1): mounted filesystem with ordered data mode. Opts: (null)"}, NULL, NULL, NULL},
        {{"XFS (sdb1): Corruption detected. Unmount and run xfs_repair"}, "XFSError", NULL, NULL},
        {{"XFS (dm-3): metadata I/O error in \"xfs_imap_to_bp+0x5c/0xa0\" at daddr 0x1c0 len 32 error 5"},
         "XFSError",
         NULL,
         NULL},
        {{"XFS (sdb1): Log I/O Error Detected. Shutting down filesystem"}, "XFSError", "XfsShutdown", "XfsHasShutdown"},
        {{"XFS (sda1): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x12e/0x160 [xfs] "
          "(fs/xfs/xfs_trans.c:1097).  Shutting down filesystem."},
         NULL,
         "XfsShutdown",
         "XfsHasShutdown"},
        {{"XFS (sdc): Filesystem has been shut down due to log error (0x2)."}, NULL, "XfsShutdown", "XfsHasShutdown"},
        {{"XFS (sdb1): Mounting V5 Filesystem 5a3c4f38-1f5e-4b3a-9a0c-3f6c7d8e9f00"}, NULL, NULL, NULL},
        /* Read-only remounts. */
        {{"EXT4-fs (sda1): Remounting filesystem read-only"}, NULL, "ReadonlyFilesystem", "FilesystemIsReadOnly"},
        {{"BTRFS info (device sdb): forced readonly"}, NULL, "ReadonlyFilesystem", "FilesystemIsReadOnly"},
        {{"EXT4-fs (sda1): re-mounted. Opts: errors=remount-ro. Quota mode: none."}, NULL, NULL, NULL},
        /* Hardware errors. */
        {{"{1}[Hardware Error]: event severity: fatal"}, "HardwareErrorFatal", NULL, NULL},
        {{"mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: b200000000070005"},
         "HardwareErrorFatal",
         NULL,
         NULL},
        {{"Kernel panic - not syncing: Fatal machine check"}, "HardwareErrorFatal", NULL, NULL},
        {{"{1}[Hardware Error]: event severity: recoverable"}, "HardwareErrorRecoverable", NULL, NULL},
        {{"{1}[Hardware Error]: event severity: corrected"}, "HardwareErrorCorrected", NULL, NULL},
        {{"mce: [Hardware Error]: Machine check events logged"}, "HardwareErrorCorrected", NULL, NULL},
        {{"EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x2a3c5 "
          "offset:0x0 grain:32 syndrome:0x0)"},
         "MemoryReadError",
         NULL,
         NULL},
        {{"EDAC MC1: 1 UE memory read error on CPU_SrcID#1_Ha#0_Chan#0_DIMM#0 (channel:0 slot:0 page:0x1 "
          "offset:0x0 grain:32)"},
         "UncorrectableMemoryError",
         NULL,
         NULL},
        {{"{1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 0"}, NULL, NULL, NULL},
        {{"mce: CPU0: Thermal monitoring enabled (TM1)"}, NULL, NULL, NULL},
        /* Buffer and block I/O errors. */
        {{"Buffer I/O error on dev sdb1, logical block 0, async page read"}, "IOError", NULL, NULL},
        {{"blk_update_request: I/O error, dev sdb, sector 2048 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0"},
         "IOError",
         NULL,
         NULL},
        {{"I/O error, dev nvme0n1, sector 1234 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2"},
         "IOError",
         NULL,
         NULL},
        {{"sd 2:0:0:0: [sdb] tag#0 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_OK"}, NULL, NULL, NULL},
        /* Socket memory. */
        {{"TCP: out of memory -- consider tuning tcp_mem"}, "TCPMemOverFlow", NULL, NULL},
        {{"TCP: too many orphaned sockets"}, "TCPSkOverFlow", NULL, NULL},
};

/* Every rule of the shipped file has a line here that matches it. */
static const char *const shipped_reasons[] = {
        "OOMKilling",
        "TaskHung",
        "DockerHung",
        "ContainerdHung",
        "UnregisterNetDevice",
        "KernelOops",
        "Ext4Error",
        "Ext4Warning",
        "XFSError",
        "XfsHasShutdown",
        "FilesystemIsReadOnly",
        "IOError",
        "HardwareErrorFatal",
        "HardwareErrorRecoverable",
        "HardwareErrorCorrected",
        "MemoryReadError",
        "UncorrectableMemoryError",
        "TCPMemOverFlow",
        "TCPSkOverFlow",
};

static void test_shipped_rules(void **state) {
        char *rules = shipped_rules();
        bool covered[ELEMENTSOF(shipped_reasons)] = {false};

        for (size_t c = 0; c < ELEMENTSOF(shipped_cases); c++) {
                const struct rule_case *rc = &shipped_cases[c];
                struct kmsg *k = kmsg_new();
                struct harness *h;

                for (size_t i = 0; i < 3 && rc->lines[i]; i++)
                        kmsg_append(k, rc->lines[i]);
                h = start_kmsg(k, rules, "");
                harness_run(h);
                if (h->n_events != (rc->event ? 1u : 0u) ||
                    (rc->event && strcmp(h->events[0].reason, rc->event) != 0)) {
                        print_error("\"%s\": %zu events (first: %s), expected %s\n", rc->lines[0], h->n_events,
                                    h->n_events ? h->events[0].reason : "none", rc->event ? rc->event : "none");
                        fail();
                }
                for (size_t i = 0; i < nh_table_size(h->table); i++) {
                        const struct nh_condition *cond = nh_table_get(h->table, i);
                        bool expected = rc->condition && strcmp(cond->type, rc->condition) == 0;

                        if (expected)
                                assert_condition(h, cond->type, NH_STATUS_TRUE, rc->reason);
                        else if (cond->status != NH_STATUS_FALSE) {
                                print_error("\"%s\": %s is %s (%s)\n", rc->lines[0], cond->type,
                                            nh_status_to_string(cond->status), cond->reason);
                                fail();
                        }
                }
                for (size_t r = 0; r < ELEMENTSOF(shipped_reasons); r++)
                        covered[r] = covered[r] || (rc->event && strcmp(rc->event, shipped_reasons[r]) == 0) ||
                                     (rc->reason && strcmp(rc->reason, shipped_reasons[r]) == 0);
                /* The two-line OOM kill: one event whose message is both lines. */
                if (rc->lines[1] && rc->event)
                        assert_string_equal(h->events[0].message,
                                            "Out of memory: Kill process 1234 (java) score 912 or "
                                            "sacrifice child\nKilled process 1234 (java) "
                                            "total-vm:4458536kB, anon-rss:3524424kB, file-rss:0kB, "
                                            "shmem-rss:0kB");
                harness_free(h);
                kmsg_free(k);
        }
        for (size_t r = 0; r < ELEMENTSOF(shipped_reasons); r++)
                if (!covered[r]) {
                        print_error("no test line for reason %s\n", shipped_reasons[r]);
                        fail();
                }
        free(rules);
}

/* The shipped file's every reason is in the table above, and nothing else. */
static void test_shipped_reasons_listed(void **state) {
        char *path = shipped_rules(), *text = test_read_file(path);
        size_t n = 0;

        assert_non_null(text);
        for (const char *p = text; (p = strstr(p, "\"reason\": \"")); p++) {
                char reason[64];
                const char *start = p + strlen("\"reason\": \""), *end = strchr(start, '"');
                bool known = false;

                assert_non_null(end);
                snprintf(reason, sizeof(reason), "%.*s", (int) (end - start), start);
                for (size_t r = 0; r < ELEMENTSOF(shipped_reasons); r++)
                        known = known || strcmp(reason, shipped_reasons[r]) == 0;
                /* The healthy reasons of "conditions" are not rules. */
                if (!known && strcmp(reason, "KernelHasNoDeadlock") != 0 &&
                    strcmp(reason, "FilesystemIsNotReadOnly") != 0 && strcmp(reason, "XfsHasNotShutDown") != 0) {
                        print_error("reason %s of %s has no test line\n", reason, path);
                        fail();
                }
                n++;
        }
        assert_true(n > 20);
        free(text);
        free(path);
}

/* ---- buffer semantics ---- */

static void test_buffer_multiline(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = test_path(k->dir, "rules.json");
        struct harness *h;

        write_rules(k->dir, "{\"bufferSize\": 3, \"rules\": ["
                            "{\"type\": \"temporary\", \"reason\": \"TwoLines\", \"pattern\": \"first\\nsecond\"},"
                            "{\"type\": \"temporary\", \"reason\": \"ThreeLines\", \"pattern\": \"a1\\na2\\na3\"},"
                            "{\"type\": \"temporary\", \"reason\": \"FourLines\", \"pattern\": \"b1\\nb2\\nb3\\nb4\"},"
                            "{\"type\": \"temporary\", \"reason\": \"FromSeparator\", \"pattern\": \"\\nsep\"},"
                            "{\"type\": \"temporary\", \"reason\": \"Alternation\", \"pattern\": \"old|new\"},"
                            "{\"type\": \"temporary\", \"reason\": \"Empty\", \"pattern\": \"^\\n\\nonly$\"}"
                            "]}");
        h = start_kmsg(k, rules, "");
        harness_run(h);
        assert_int_equal(nh_table_size(h->table), 0);

        /* Two lines joined by "\n": one event, both lines in its message. */
        kmsg_append(k, "first", "second");
        wait_events(h, 1);
        assert_string_equal(h->events[0].reason, "TwoLines");
        assert_string_equal(h->events[0].message, "first\nsecond");
        /* Anchored at the end: "second" is no longer the newest line, nothing matches again. */
        kmsg_append(k, "third");
        /* Three lines fit a buffer of 3, four do not. */
        kmsg_append(k, "a1", "a2", "a3", "b1", "b2", "b3", "b4");
        wait_events(h, 2);
        settle(h);
        assert_int_equal(h->n_events, 2);
        assert_string_equal(h->events[1].reason, "ThreeLines");
        assert_string_equal(h->events[1].message, "a1\na2\na3");

        /* A match that starts on the separator takes only the lines after it (as NPD counts). */
        kmsg_append(k, "x", "sep");
        wait_events(h, 3);
        assert_string_equal(h->events[2].reason, "FromSeparator");
        assert_string_equal(h->events[2].message, "sep");

        /* "old|new" is "(?:old|new)\z" here: an old line does not match again with the next. */
        kmsg_append(k, "old", "unrelated");
        wait_events(h, 4);
        settle(h);
        assert_int_equal(h->n_events, 4);
        assert_string_equal(h->events[3].reason, "Alternation");
        assert_string_equal(h->events[3].message, "old");
        harness_free(h);

        /* A buffer not yet full is empty lines in front, as NPD's ring: "^\n\nonly$" sees them. */
        kmsg_free(k);
        k = kmsg_new();
        free(rules);
        rules = test_path(k->dir, "rules.json");
        write_rules(k->dir, "{\"lookback\": \"1m\", \"bufferSize\": 3, \"rules\": [{\"type\": \"temporary\", "
                            "\"reason\": \"Empty\", "
                            "\"pattern\": \"^\\n\\nonly$\"}]}");
        kmsg_append(k, "only");
        h = start_kmsg(k, rules, "");
        harness_run(h);
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->events[0].message, "only");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

static void test_skip_list_and_trim(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = test_path(k->dir, "rules.json");
        struct harness *h;

        write_rules(k->dir, "{\"lookback\": \"1m\", \"skipList\": [\"NOISE\"], \"rules\": [{\"type\": \"temporary\", "
                            "\"reason\": \"Pair\", "
                            "\"pattern\": \"left\\nright\"}]}");
        /* Skipped lines are not in the buffer; leading and trailing blanks are trimmed (TrimSpace). */
        kmsg_append(k, "  left  ", "some NOISE here", "right\\x20");
        h = start_kmsg(k, rules, "");
        harness_run(h);
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->events[0].message, "left\nright");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

/* ---- permanent rules: NPD's message semantics, and the additions that clear ---- */

static void test_permanent_reason_change(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = shipped_rules();
        struct harness *h = start_kmsg(k, rules, "");

        harness_run(h);
        kmsg_append(k, "INFO: task docker:1 blocked for more than 120 seconds.");
        wait_events(h, 1);
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "DockerHung");
        assert_message(h, "KernelDeadlock", "INFO: task docker:1 blocked for more than 120 seconds.");
        /* The same reason again: NPD keeps the first message (and transition time). */
        kmsg_append(k, "INFO: task docker:2 blocked for more than 240 seconds.");
        wait_events(h, 2);
        assert_message(h, "KernelDeadlock", "INFO: task docker:1 blocked for more than 120 seconds.");
        /* Another reason: it takes over with its own message. */
        kmsg_append(k, "INFO: task containerd:3 blocked for more than 120 seconds.");
        wait_events(h, 3);
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "ContainerdHung");
        assert_message(h, "KernelDeadlock", "INFO: task containerd:3 blocked for more than 120 seconds.");
        /* No clearAfter, no clearPattern: True until the daemon restarts, as in NPD. */
        harness_advance(h, 24 * 3600 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "ContainerdHung");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

static const char clearing_rules[] =
        "{\"conditions\": [{\"type\": \"ReadonlyFilesystem\", \"reason\": \"FilesystemIsNotReadOnly\", \"message\": "
        "\"Filesystem is not read-only\"}, {\"type\": \"FrequentNicReset\", \"reason\": \"NoFrequentNicReset\", "
        "\"message\": \"no NIC resets\"}],"
        " \"rules\": [{\"type\": \"permanent\", \"condition\": \"ReadonlyFilesystem\", \"reason\": "
        "\"FilesystemIsReadOnly\", \"pattern\": \"Remounting filesystem read-only\", \"clearPattern\": \"re-mounted "
        "read-write.*\"},"
        " {\"type\": \"permanent\", \"condition\": \"FrequentNicReset\", \"reason\": \"NicReset\", \"pattern\": "
        "\"NETDEV WATCHDOG: \\\\S+ \\\\(\\\\S+\\\\): transmit queue \\\\d+ timed out\", \"clearAfter\": \"10m\"}]}";

static void test_clear_after(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = test_path(k->dir, "rules.json");
        struct harness *h;

        write_rules(k->dir, clearing_rules);
        h = start_kmsg(k, rules, "");
        harness_run(h);
        /* A type of the file's own, not one of NPD's: declared at init like the others. */
        assert_condition(h, "FrequentNicReset", NH_STATUS_FALSE, "NoFrequentNicReset");
        kmsg_append(k, "NETDEV WATCHDOG: eth0 (ixgbe): transmit queue 2 timed out");
        settle(h);
        assert_condition(h, "FrequentNicReset", NH_STATUS_TRUE, "NicReset");

        harness_advance(h, 9 * 60 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentNicReset", NH_STATUS_TRUE, "NicReset");
        /* Another match restarts the quiet period. */
        kmsg_append(k, "NETDEV WATCHDOG: eth0 (ixgbe): transmit queue 3 timed out");
        settle(h);
        harness_advance(h, 9 * 60 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentNicReset", NH_STATUS_TRUE, "NicReset");
        harness_advance(h, 61 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentNicReset", NH_STATUS_FALSE, "NoFrequentNicReset");
        assert_message(h, "FrequentNicReset", "no NIC resets (no NicReset for 10m)");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

static void test_clear_pattern(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = test_path(k->dir, "rules.json");
        struct harness *h;

        write_rules(k->dir, clearing_rules);
        h = start_kmsg(k, rules, "");
        harness_run(h);
        kmsg_append(k, "EXT4-fs (sda1): Remounting filesystem read-only");
        settle(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        /* Time alone does not clear it: no clearAfter on this rule. */
        harness_advance(h, 3600 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        kmsg_append(k, "EXT4-fs (sda1): re-mounted read-write by admin");
        settle(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_message(h, "ReadonlyFilesystem",
                       "Filesystem is not read-only (cleared by: EXT4-fs (sda1): re-mounted read-write by admin)");
        /* And it can be set again. */
        kmsg_append(k, "EXT4-fs (sdb1): Remounting filesystem read-only");
        settle(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem", "EXT4-fs (sdb1): Remounting filesystem read-only");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

/* ---- events: rate limit, lookback window ---- */

static void test_event_rate_limit(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = shipped_rules();
        struct harness *h;
        const char *oom = "Out of memory: Killed process 1 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB";

        kmsg_append(k, oom, oom, oom, oom, oom);
        h = start_kmsg(k, rules, ", \"event_burst\": 3, \"event_interval\": \"1m\"");
        harness_run(h);
        assert_int_equal(h->n_events, 3);
        /* A token comes back after a minute; others keep theirs (another rule is not limited). */
        harness_advance(h, 60 * USEC_PER_SEC);
        kmsg_append(k, oom, oom, "TCP: too many orphaned sockets");
        wait_events(h, 5);
        settle(h);
        assert_int_equal(h->n_events, 5);
        assert_string_equal(h->events[3].reason, "OOMKilling");
        assert_string_equal(h->events[4].reason, "TCPSkOverFlow");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

static void test_kmsg_lookback_window(void **state) {
        struct kmsg *k = kmsg_new();
        char *rules = shipped_rules();
        uint64_t now = mono_usec();
        struct harness *h;

        /* Six minutes ago is outside the file's 5m lookback; four minutes ago is inside. */
        if (now > 7 * 60 * USEC_PER_SEC) {
                kmsg_append_at(k, now - 6 * 60 * USEC_PER_SEC, "TCP: out of memory -- consider tuning tcp_mem", NULL);
                kmsg_append_at(k, now - 4 * 60 * USEC_PER_SEC, "TCP: too many orphaned sockets", NULL);
        } else
                kmsg_append(k, "TCP: too many orphaned sockets");
        h = start_kmsg(k, rules, "");
        harness_run(h);
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->events[0].reason, "TCPSkOverFlow");
        harness_free(h);
        free(rules);
        kmsg_free(k);
}

/* ---- bad rule files ---- */

/* The daemon, --once, with the kernel probe on dir/rules.json: its init fails, and stderr says `needle`. */
static void expect_init_error(const char *dir, const char *needle) {
        char *rules = test_path(dir, "rules.json"), *config = NULL, *config_path;
        int code;

        assert_true(
                asprintf(&config,
                         "{\"journal\": {\"enabled\": false}, \"probes\": {\"memory\": {\"enabled\": false}, "
                         "\"pid\": {\"enabled\": false}, \"network\": {\"enabled\": false}, \"kernel\": {\"plugin\": "
                         "\"kernel_log\", \"source\": \"kmsg\", \"kmsg_path\": \"/dev/null\", \"npd_config\": "
                         "\"%s\"}}}",
                         rules) >= 0);
        test_write_file(dir, "nodehealthd.json", config);
        config_path = test_path(dir, "nodehealthd.json");
        {
                char *plugin_dir = test_path(test_builddir(), "plugins/.libs");
                char *argv[] = {(char *) test_daemon_path(),
                                "--config",
                                config_path,
                                "--once",
                                "--plugin-dir",
                                plugin_dir,
                                NULL};
                struct proc *p = proc_run(argv, 10000, &code);

                assert_contains(p->err, needle);
                assert_contains(p->err, "init failed");
                proc_free(p);
                free(plugin_dir);
        }
        free(config_path);
        free(config);
        free(rules);
}

static void expect_rules_error(const char *json, const char *needle) {
        char *dir = test_mkdtemp();

        write_rules(dir, json);
        expect_init_error(dir, needle);
        test_rmtree(dir);
        free(dir);
}

/* A rule file that is not a regular file is refused: a FIFO is not waited on (opened non-blocking). */
static void test_rule_file_not_regular(void **state) {
        char *dir = test_mkdtemp(), *rules = test_path(dir, "rules.json");

        assert_int_equal(mkfifo(rules, 0644), 0);
        expect_init_error(dir, "rules.json: not a regular file of at most 4 MiB");
        assert_int_equal(unlink(rules), 0);
        assert_int_equal(mkdir(rules, 0755), 0);
        expect_init_error(dir, "rules.json: not a regular file of at most 4 MiB");
        test_rmtree(dir);
        free(rules);
        free(dir);
}

static void test_bad_rule_files(void **state) {
        expect_rules_error("{\"rules\": [\n  {\"type\": \"temporary\",}\n]}", "rules.json: 2:");
        expect_rules_error("{\"rules\": [], \"bufferSze\": 10}", "rules.json: top level: unknown key \"bufferSze\"");
        expect_rules_error("{\"bufferSize\": \"10\"}", "rules.json: \"bufferSize\" must be a whole number of lines");
        expect_rules_error("{\"lookback\": \"5 minutes\"}", "\"lookback\" is \"5 minutes\", not a duration");
        expect_rules_error("{\"plugin\": \"syslog\"}", "\"plugin\" is \"syslog\"");
        expect_rules_error("{\"rules\": [{\"type\": \"temporary\", \"reason\": \"A\", \"pattern\": \"a\"}, "
                           "{\"type\": \"temprary\", \"reason\": \"B\", \"pattern\": \"b\"}]}",
                           "rules.json: rule 2: type \"temprary\" is neither \"temporary\" nor \"permanent\"");
        expect_rules_error("{\"rules\": [{\"type\": \"temporary\", \"reason\": \"Bad\", \"pattern\": \"ab(c\"}]}",
                           "rules.json: rule 1: pattern \"ab(c\" is not a valid regular expression: missing closing "
                           "parenthesis at offset 4");
        expect_rules_error("{\"rules\": [{\"type\": \"permanent\", \"condition\": \"Nope\", \"reason\": \"Bad\", "
                           "\"pattern\": \"x\"}]}",
                           "rule 1: condition \"Nope\" is not in \"conditions\"");
        expect_rules_error("{\"rules\": [{\"type\": \"temporary\", \"reason\": \"oom killing\", \"pattern\": \"x\"}]}",
                           "rule 1: reason \"oom killing\" must be CamelCase");
        expect_rules_error("{\"rules\": [{\"type\": \"temporary\", \"reason\": \"A\", \"pattern\": \"x\", "
                           "\"clearAfter\": \"1m\"}]}",
                           "rule 1: \"clearAfter\" and \"clearPattern\" belong to permanent rules");
        expect_rules_error("{\"rules\": [{\"type\": \"temporary\", \"reason\": \"A\"}]}",
                           "rule 1: \"pattern\" is missing");
        expect_rules_error("{\"conditions\": [{\"type\": \"A\", \"reason\": \"B\"}], \"rules\": [{\"type\": "
                           "\"permanent\", \"condition\": \"A\", \"reason\": \"C\", \"pattern\": \"x\", "
                           "\"clearPattern\": \"[z\"}]}",
                           "rule 1: clearPattern: pattern \"[z\" is not a valid regular expression");
        expect_rules_error("[]", "must hold a JSON object, not an array");
}

/* ---- the journal ---- */

static void require_journal_remote(void) {
        if (access(JOURNAL_REMOTE, X_OK) < 0)
                fail_msg("%s is missing (package systemd-journal-remote): journal files cannot be made",
                         JOURNAL_REMOTE);
}

struct entry {
        uint64_t age; /* µs before now */
        const char *transport; /* "kernel", "syslog", … */
        bool other_boot;
        const char *message;
};

/* Writes the entries in export format and has systemd-journal-remote turn them into dir/FILE. */
static void make_journal(const char *dir, const char *file, const struct entry *e, size_t n) {
        char *export_path = test_path(dir, "entries.export"), *out = NULL, boot[SD_ID128_STRING_MAX];
        uint64_t now = now_usec(CLOCK_REALTIME), mono = mono_usec();
        static unsigned long long cursor = 0;
        sd_id128_t boot_id;
        FILE *f;
        int code;

        assert_int_equal(sd_id128_get_boot(&boot_id), 0);
        f = fopen(export_path, "we");
        assert_non_null(f);
        for (size_t i = 0; i < n; i++)
                fprintf(f,
                        "__CURSOR=s=0;i=%llu\n__REALTIME_TIMESTAMP=%llu\n__MONOTONIC_TIMESTAMP=%llu\n_BOOT_ID=%s\n"
                        "_TRANSPORT=%s\nSYSLOG_IDENTIFIER=kernel\nPRIORITY=4\nMESSAGE=%s\n\n",
                        ++cursor, (unsigned long long) (now - e[i].age),
                        (unsigned long long) (mono > e[i].age ? mono - e[i].age : 1),
                        e[i].other_boot ? "0123456789abcdef0123456789abcdef" : sd_id128_to_string(boot_id, boot),
                        e[i].transport, e[i].message);
        assert_int_equal(fclose(f), 0);
        assert_true(asprintf(&out, "--output=%s/%s", dir, file) >= 0);
        {
                char *argv[] = {JOURNAL_REMOTE, out, export_path, NULL};
                struct proc *p = proc_run(argv, 20000, &code);
                if (code != 0)
                        print_error("systemd-journal-remote: %s\n", p->err);
                assert_int_equal(code, 0);
                proc_free(p);
        }
        unlink(export_path);
        free(export_path);
        free(out);
}

static struct harness *start_journal(const char *root, const char *dir, const char *extra) {
        char *rules = shipped_rules(), *json = NULL;
        struct harness *h;

        assert_true(asprintf(&json,
                             "\"source\": \"journal\", \"journal_directory\": \"%s\", \"npd_config\": \"%s\", "
                             "\"event_burst\": 1000%s",
                             dir, rules, extra) >= 0);
        h = start_with(json, root);
        free(json);
        free(rules);
        return h;
}

static void test_journal_directory(void **state) {
        char *root = test_mkdtemp(), *dir = test_path(root, "host/var/log/journal");
        struct harness *h;
        static const struct entry first[] = {
                /* Outside the 5m lookback, another boot, not the kernel's: none counts. */
                {10 * 60 * USEC_PER_SEC, "kernel", false, "TCP: too many orphaned sockets"},
                {60 * USEC_PER_SEC, "kernel", true, "EXT4-fs (sdb1): Remounting filesystem read-only"},
                {50 * USEC_PER_SEC, "syslog", false, "TCP: out of memory -- consider tuning tcp_mem"},
                /* These do. */
                {40 * USEC_PER_SEC, "kernel", false, "EXT4-fs (sda1): Remounting filesystem read-only"},
                {30 * USEC_PER_SEC, "kernel", false, "Out of memory: Kill process 77 (db) score 1 or sacrifice child"},
                {30 * USEC_PER_SEC, "kernel", false,
                 "Killed process 77 (db) total-vm:100kB, anon-rss:10kB, file-rss:0kB, shmem-rss:0kB"},
        };
        static const struct entry later[] = {
                {0, "kernel", false, "INFO: task docker:99 blocked for more than 120 seconds."},
        };

        require_journal_remote();
        test_write_file(root, "host/var/log/journal/.keep", ""); /* the directories, as a host has them */
        make_journal(dir, "remote.journal", first, ELEMENTSOF(first));

        /* journal_directory is under --root-path, as a DaemonSet mounts the host's journal. */
        h = start_journal(root, "/host/var/log/journal", "");
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem", "EXT4-fs (sda1): Remounting filesystem read-only");
        assert_int_equal(h->n_events, 1);
        assert_string_equal(h->events[0].reason, "OOMKilling");
        assert_string_equal(h->events[0].message, "Out of memory: Kill process 77 (db) score 1 or sacrifice child\n"
                                                  "Killed process 77 (db) total-vm:100kB, anon-rss:10kB, file-rss:0kB, "
                                                  "shmem-rss:0kB");
        assert_condition(h, "KernelDeadlock", NH_STATUS_FALSE, "KernelHasNoDeadlock");

        /* Appended while the probe runs: seen by the poll (or the journal's inotify). */
        make_journal(dir, "remote.journal", later, ELEMENTSOF(later));
        wait_events(h, 2);
        assert_string_equal(h->events[1].reason, "TaskHung");
        assert_condition(h, "KernelDeadlock", NH_STATUS_TRUE, "DockerHung");

        /* A new file in the directory (journald rotated) is read too. */
        make_journal(dir, "rotated.journal",
                     (const struct entry[]){{0, "kernel", false, "TCP: out of memory -- consider tuning tcp_mem"}}, 1);
        wait_events(h, 3);
        assert_string_equal(h->events[2].reason, "TCPMemOverFlow");
        harness_free(h);
        test_rmtree(root);
        free(root);
        free(dir);
}

static bool readable_again(struct harness *h) {
        const struct nh_condition *c = harness_condition(h, "KernelDeadlock");
        return c && c->status == NH_STATUS_FALSE;
}

static void test_journal_missing_then_appears(void **state) {
        char *root = test_mkdtemp(), *dir = test_path(root, "journal");
        struct harness *h;

        require_journal_remote();
        h = start_journal(root, "/journal", "");
        harness_run(h);
        assert_condition(h, "KernelDeadlock", NH_STATUS_UNKNOWN, "KernelLogUnreadable");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "KernelLogUnreadable");
        {
                const struct nh_condition *c = harness_condition(h, "KernelDeadlock");
                assert_non_null(strstr(c->message, "cannot open the journal directory /journal"));
        }
        /* The cycle says so again, and the retry (1 s, then doubling) finds it once it exists. */
        harness_run(h);
        assert_condition(h, "KernelDeadlock", NH_STATUS_UNKNOWN, "KernelLogUnreadable");
        assert_int_equal(mkdir(dir, 0755), 0);
        make_journal(dir, "remote.journal",
                     (const struct entry[]){{0, "kernel", false, "EXT4-fs (vdb): Remounting filesystem read-only"}}, 1);
        assert_true(harness_loop(h, 10000, readable_again));
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        harness_free(h);
        test_rmtree(root);
        free(root);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_npd_kernel_monitor_unchanged),
                cmocka_unit_test(test_npd_readonly_monitor),
                cmocka_unit_test(test_shipped_rules),
                cmocka_unit_test(test_shipped_reasons_listed),
                cmocka_unit_test(test_buffer_multiline),
                cmocka_unit_test(test_skip_list_and_trim),
                cmocka_unit_test(test_permanent_reason_change),
                cmocka_unit_test(test_clear_after),
                cmocka_unit_test(test_clear_pattern),
                cmocka_unit_test(test_event_rate_limit),
                cmocka_unit_test(test_kmsg_lookback_window),
                cmocka_unit_test(test_bad_rule_files),
                cmocka_unit_test(test_rule_file_not_regular),
                cmocka_unit_test(test_journal_directory),
                cmocka_unit_test(test_journal_missing_then_appears),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
