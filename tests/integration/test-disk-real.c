/* SPDX-License-Identifier: MIT */
/*
 * The disk probe in the daemon itself, as a user runs it (the shipped conf/ plus a drop-in),
 * against real filesystems: a loop-mounted ext4 image filled until it is out of space and
 * emptied, remounted read-only and back, and a FUSE filesystem this test never answers, which
 * hangs statvfs as a dead NFS server does.  In every case the daemon must keep running its
 * other probes: the testprobe plugin keeps turning its condition True and False on request,
 * and the memory probe reads the real /proc alongside.
 *
 * Needs root (mount, loop devices, /dev/fuse); the test suite runs as root.  Mounts, loop
 * devices and FUSE connections are cleaned up by the teardown even when an assertion fails.
 * Every wait has a deadline; nothing sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000
/* A remount must show within this, with an interval of an hour; a sanitizer build on a loaded
 * 2-core machine once needed more than 5 s. */
#define PROMPT_MS 15000

struct env {
        char *dir; /* temporary: conf/, the image, the mount points, the testprobe's state */
        char *conf; /* dir/conf/nodehealthd.json: the shipped file */
        char *plugin_dir, *test_plugin_dir;
        char *image, *mnt; /* the ext4 image and where it is mounted */
        bool mounted;
        char *fuse_dir;
        int fuse_fd; /* /dev/fuse, never read: statfs on fuse_dir waits until it is closed */
        char *state; /* the testprobe's state file */
        char node[64];
        struct proc *daemon;
};

static void require_root(void) {
        if (geteuid() != 0)
                fail_msg("test-disk-real mounts filesystems (loop devices, FUSE) and must run as root; the test "
                         "suite runs as root");
}

static void run(const char *argv0, ...) {
        char *argv[16] = {(char *) argv0};
        struct proc *p;
        va_list ap;
        int argc = 1, code;

        va_start(ap, argv0);
        for (char *a; (a = va_arg(ap, char *)) && argc < 15;)
                argv[argc++] = a;
        va_end(ap);
        p = proc_run(argv, DEADLINE_MS, &code);
        if (code != 0)
                fail_msg("%s %s %s: exit %d\n%s%s", argv0, argv[1], argc > 2 ? argv[2] : "", code, p->out, p->err);
        proc_free(p);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *shipped = test_path(test_srcdir(), "conf/nodehealthd.json");
        char *text = test_read_file(shipped);
        static unsigned counter;

        assert_non_null(e);
        assert_non_null(text);
        e->dir = test_mkdtemp();
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        e->image = test_path(e->dir, "disk.img");
        e->mnt = test_path(e->dir, "mnt");
        e->state = test_path(e->dir, "state");
        e->fuse_fd = -1;
        snprintf(e->node, sizeof(e->node), "disktest-%d-%u", (int) getpid(), counter++);
        free(text);
        free(shipped);
        *state = e;
        return 0;
}

/* Runs whether the test passed or not: no daemon, mount, loop device or hung request is left. */
static int teardown(void **state) {
        struct env *e = *state;

        proc_free(e->daemon); /* SIGKILL if it still runs: it holds nothing the kernel keeps */
        if (e->fuse_fd >= 0)
                close(e->fuse_fd); /* aborts the connection: a hung statfs fails with ENOTCONN */
        if (e->fuse_dir)
                (void) umount2(e->fuse_dir, MNT_DETACH);
        /* The loop device was set up with autoclear: it goes with its last mount. */
        if (e->mounted)
                (void) umount2(e->mnt, MNT_DETACH);
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e->image);
        free(e->mnt);
        free(e->fuse_dir);
        free(e->state);
        free(e);
        return 0;
}

/* A 16 MiB ext4 image on a loop device, mounted at e->mnt. */
static void mount_image(struct env *e) {
        require_root();
        run("/usr/bin/truncate", "-s", "16M", e->image, NULL);
        run("/usr/sbin/mkfs.ext4", "-q", "-F", e->image, NULL);
        assert_int_equal(mkdir(e->mnt, 0755), 0);
        run("/usr/bin/mount", "-o", "loop", e->image, e->mnt, NULL);
        e->mounted = true;
}

/* A FUSE filesystem whose requests nobody reads: statfs on it hangs until the fd is closed. */
static void mount_dead_fuse(struct env *e) {
        char opts[128];

        require_root();
        e->fuse_dir = test_path(e->dir, "fuse");
        assert_int_equal(mkdir(e->fuse_dir, 0755), 0);
        e->fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (e->fuse_fd < 0)
                fail_msg("cannot open /dev/fuse: %s (the kernel's fuse module is needed)", strerror(errno));
        snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", e->fuse_fd);
        if (mount("nhtest", e->fuse_dir, "fuse.nhtest", MS_NOSUID | MS_NODEV, opts) < 0)
                fail_msg("mount -t fuse.nhtest %s: %s", e->fuse_dir, strerror(errno));
}

/* The drop-in: the disk probe on the given mount points only, and a testprobe instance "t". */
static void write_dropin(struct env *e, const char *disk_keys, const char *mounts) {
        char *text = NULL;

        assert_true(asprintf(&text,
                             "{\"journal\": {\"enabled\": false}, \"probes\": {"
                             "\"disk\": {\"raise_after\": 1, \"clear_after\": 1, \"exclude_mounts\": [\"*\"], "
                             "\"include_mounts\": [%s], %s},"
                             "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"raise_after\": 1, "
                             "\"clear_after\": 1, \"state_file\": \"%s\"}}}",
                             mounts, disk_keys, e->state + 1) >= 0);
        test_write_file(e->dir, "conf/conf.d/90-disk.json", text);
        free(text);
}

/*
 * The daemon on the real /proc and /: the shipped memory probe reads the machine's figures.
 * no_leak_check: LeakSanitizer (in the sanitizer build) stops every thread with ptrace at exit,
 * which a thread asleep in a FUSE request cannot obey, so an ASan daemon would never exit while
 * a check hangs; the leak check of that case is test-disk's test_stop_while_hung, which lets
 * the check return before the process ends.  Other builds ignore ASAN_OPTIONS.
 */
static struct proc *spawn(struct env *e, bool no_leak_check) {
        char *argv[] = {(char *) test_daemon_path(),
                        "--config",
                        e->conf,
                        "--plugin-dir",
                        e->plugin_dir,
                        "--plugin-dir",
                        e->test_plugin_dir,
                        "--proc-path",
                        "/proc",
                        "--root-path",
                        "/",
                        "--node-name",
                        e->node,
                        NULL};

        const char *old = getenv("ASAN_OPTIONS");
        char *saved = old ? strdup(old) : NULL, *options = NULL;

        test_write_file(e->dir, "state", "TestProblem False TestOK fine\n");
        if (no_leak_check) {
                assert_true(asprintf(&options, "%s%sdetect_leaks=0", old ? old : "", old ? ":" : "") >= 0);
                assert_int_equal(setenv("ASAN_OPTIONS", options, 1), 0);
        }
        e->daemon = proc_spawn(argv);
        if (no_leak_check)
                assert_int_equal(saved ? setenv("ASAN_OPTIONS", saved, 1) : unsetenv("ASAN_OPTIONS"), 0);
        free(saved);
        free(options);
        return e->daemon;
}

static void expect_output(struct env *e, const char *needle, int timeout_ms) {
        if (proc_wait_output(e->daemon, needle, false, timeout_ms))
                return;
        /* Whole, on stderr: cmocka's failure message would cut it short. */
        fprintf(stderr, "no \"%s\" within %d ms; stdout:\n%s\nstderr:\n%s\n", needle, timeout_ms, e->daemon->out,
                e->daemon->err);
        fail_msg("no \"%s\" within %d ms (the daemon's output is above)", needle, timeout_ms);
}

/* The other probes still run: the testprobe turns True and back on request, at once. */
static void expect_others_alive(struct env *e) {
        proc_mark(e->daemon);
        test_write_file(e->dir, "state", "TestProblem True TestBroken on request\n");
        expect_output(e, "TestProblem  False -> True  TestBroken: on request", DEADLINE_MS);
        proc_mark(e->daemon);
        test_write_file(e->dir, "state", "TestProblem False TestOK fine\n");
        expect_output(e, "TestProblem  True -> False  TestOK: fine", DEADLINE_MS);
}

static void expect_started(struct env *e) {
        /* The start table, after every probe's first cycle: the memory probe's types are in it. */
        expect_output(e, "TYPE", DEADLINE_MS);
        expect_output(e, "MemoryThrashing", DEADLINE_MS);
        expect_output(e, "TestProblem", DEADLINE_MS);
}

static void stop(struct env *e) {
        int code;

        assert_int_equal(kill(e->daemon->pid, SIGTERM), 0);
        code = proc_wait(e->daemon, DEADLINE_MS);
        if (code != 0)
                fail_msg("the daemon exited with %d on SIGTERM; stderr:\n%s", code, e->daemon->err);
        /* No probe, the disk probe included, overran its timeout, went stale or failed meanwhile. */
        for (const char *const *r = (const char *const[]){"ProbeTimeout", "ProbeStale", "ProbeFailed", NULL}; *r; r++)
                if (strstr(e->daemon->out, *r))
                        fail_msg("%s in the daemon's output:\n%s", *r, e->daemon->out);
}

/* Takes all but `percent` of the filesystem's size, as one allocated file. */
static void fill_to(const char *mnt, double percent) {
        char *path = test_path(mnt, "fill");
        struct statvfs st;
        int fd;
        off_t size;

        assert_int_equal(statvfs(mnt, &st), 0);
        size = (off_t) ((double) st.f_bavail - (double) st.f_blocks * percent / 100.0) * (off_t) st.f_frsize;
        assert_true(size > 0);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(posix_fallocate(fd, 0, size), 0);
        assert_int_equal(fsync(fd), 0);
        assert_int_equal(close(fd), 0);
        free(path);
}

static void empty(const char *mnt) {
        char *path = test_path(mnt, "fill");
        int fd;

        assert_int_equal(unlink(path), 0);
        /* ext4 returns freed blocks to the free count when its journal commits (every 5 s, later
         * under load): commit now, so statvfs tells what the test means. */
        fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(syncfs(fd), 0);
        assert_int_equal(close(fd), 0);
        free(path);
}

static void test_fill_and_empty(void **state) {
        struct env *e = *state;
        char *mounts = NULL, *needle = NULL;

        mount_image(e);
        assert_true(asprintf(&mounts, "\"%s\"", e->mnt) >= 0);
        write_dropin(e, "\"interval\": \"200ms\"", mounts);
        spawn(e, false);
        expect_started(e);
        expect_output(e, "DiskSpaceAvailable", DEADLINE_MS);
        expect_output(e, "FilesystemIsNotReadOnly", DEADLINE_MS);

        proc_mark(e->daemon);
        fill_to(e->mnt, 2);
        assert_true(asprintf(&needle, "OutOfDisk  False -> True  OutOfDisk: %s on /dev/loop", e->mnt) >= 0);
        expect_output(e, needle, DEADLINE_MS);
        expect_output(e, "), below 5%; ", DEADLINE_MS);
        expect_others_alive(e);

        proc_mark(e->daemon);
        empty(e->mnt);
        expect_output(e, "OutOfDisk  True -> False  DiskSpaceAvailable: watching 1 filesystem, ", DEADLINE_MS);
        expect_others_alive(e);
        stop(e);
        free(mounts);
        free(needle);
}

/* An hour between cycles: only the mount table watch can show a remount within seconds. */
static void test_remount_readonly_at_once(void **state) {
        struct env *e = *state;
        char *mounts = NULL, *needle = NULL;

        mount_image(e);
        assert_true(asprintf(&mounts, "\"%s\"", e->mnt) >= 0);
        write_dropin(e, "\"interval\": \"1h\"", mounts);
        spawn(e, false);
        expect_started(e);
        expect_output(e, "FilesystemIsNotReadOnly", DEADLINE_MS);

        proc_mark(e->daemon);
        run("/usr/bin/mount", "-o", "remount,ro", e->mnt, NULL);
        assert_true(asprintf(&needle, "ReadonlyFilesystem  False -> True  FilesystemIsReadOnly: %s on /dev/loop",
                             e->mnt) >= 0);
        expect_output(e, needle, PROMPT_MS);
        expect_output(e, "is read-only now (mount options \"ro\"); it was read-write before", PROMPT_MS);
        expect_others_alive(e);

        proc_mark(e->daemon);
        run("/usr/bin/mount", "-o", "remount,rw", e->mnt, NULL);
        expect_output(e, "ReadonlyFilesystem  True -> False  FilesystemIsNotReadOnly", PROMPT_MS);
        expect_others_alive(e);
        stop(e);
        free(mounts);
        free(needle);
}

/* A statvfs that never returns: that filesystem is Unknown, the rest of the daemon goes on. */
static void test_hung_statvfs(void **state) {
        struct env *e = *state;
        char *mounts = NULL, *needle = NULL;

        mount_image(e);
        mount_dead_fuse(e);
        assert_true(asprintf(&mounts, "\"%s\", \"%s\"", e->fuse_dir, e->mnt) >= 0);
        write_dropin(e, "\"interval\": \"300ms\", \"timeout\": \"2s\", \"statvfs_timeout\": \"200ms\"", mounts);
        spawn(e, true);
        expect_started(e);
        assert_true(asprintf(&needle, "statvfs of %s on nhtest has not returned within 200ms (statvfs_timeout)",
                             e->fuse_dir) >= 0);
        expect_output(e, needle, DEADLINE_MS);
        free(needle);
        expect_others_alive(e);

        /* The other filesystem's verdict still counts. */
        proc_mark(e->daemon);
        fill_to(e->mnt, 2);
        assert_true(asprintf(&needle, "OutOfDisk  Unknown -> True  OutOfDisk: %s on /dev/loop", e->mnt) >= 0);
        expect_output(e, needle, DEADLINE_MS);
        expect_others_alive(e);
        proc_mark(e->daemon);
        empty(e->mnt);
        expect_output(e, "OutOfDisk  True -> Unknown  StatvfsTimeout: statvfs of ", DEADLINE_MS);
        expect_output(e, "has not returned for ", DEADLINE_MS);

        /* The daemon stops at once, the hung check's thread notwithstanding. */
        stop(e);
        assert_contains(e->daemon->err, "stopping");
        free(mounts);
        free(needle);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_fill_and_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remount_readonly_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hung_statvfs, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
