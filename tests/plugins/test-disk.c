/* SPDX-License-Identifier: MIT */
/*
 * The disk probe, loaded through the real loader into a real condition table.
 *
 * Fixture trees under tests/fixtures/disk/ give the mount table (proc/1/mountinfo) and the
 * mount point directories (root/...), on which statvfs runs for real: the figures are those
 * of the disk holding the source tree, so fixture tests set the floors to 0% (never below) or
 * 100% (always below) and assert what the probe can know for sure: which filesystems it
 * watches, how it names them, read-only transitions, unreadable tables.
 *
 * As root (the suite runs as root), real filesystems: small tmpfs mounts filled until they are
 * out of space or inodes and remounted read-only, and a FUSE filesystem served by this test
 * over /dev/fuse, which hangs statvfs for real (as a dead NFS server does) until the test
 * answers its requests or aborts the connection.
 *
 * udev paths run in a child of this test under umockdev (umockdev-wrapper preloads its
 * library; libumockdev is opened with dlopen()): a fake block device with a model and a
 * serial, and uevents that must trigger a cycle.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define UMOCKDEV_CHILD_ENV "NH_TEST_DISK_UMOCKDEV"
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* linux/pidfd.h of Linux 6.9 */
#endif
#define WAIT_MS 5000
#define WATCHDOG_S 30
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* Lines of the healthy fixture's mount table, to build variants from. */
#define MI_PROC "21 26 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
#define MI_ROOT "26 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
#define MI_BOOT_RO "27 26 253:2 / /boot ro,relatime shared:30 - ext4 /dev/vda2 ro\n"
#define MI_BOOT_RW "27 26 253:2 / /boot rw,relatime shared:30 - ext4 /dev/vda2 rw\n"
#define MI_DATA_RW "29 26 253:33 / /mnt/data\\040disk rw,noatime shared:32 master:1 - ext4 /dev/vdc1 rw\n"
#define MI_DATA_RO "29 26 253:33 / /mnt/data\\040disk ro,noatime shared:32 master:1 - ext4 /dev/vdc1 ro\n"

/* ---- helpers ---- */

static char *fixture(const char *scenario, const char *sub) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/disk/%s/%s", scenario, sub) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

/* A whole configuration: the disk probe with hysteresis off and the given keys. */
__attribute__((format(printf, 1, 2))) static char *config(const char *format, ...) {
        char *keys = NULL, *text = NULL;
        va_list ap;

        va_start(ap, format);
        assert_true(vasprintf(&keys, format, ap) >= 0);
        va_end(ap);
        assert_true(asprintf(&text, "{\"probes\": {\"disk\": {\"raise_after\": 1, \"clear_after\": 1%s%s}}}",
                             *keys ? ", " : "", keys) >= 0);
        free(keys);
        return text;
}

static struct harness *start(const char *config_json, const char *proc, const char *root) {
        struct harness *h = NULL;
        int r = harness_new(config_json, proc, NULL, root, &h);

        if (r < 0)
                print_error("harness_new: %s\n", h->last_error ? h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        assert_int_equal(h->n_probes, 1);
        return h;
}

/* The healthy fixture's root with the scenario's (or a written) mount table. */
static struct harness *start_fixture(const char *keys, const char *scenario) {
        char *proc = fixture(scenario, "proc"), *root = fixture("healthy", "root"), *c = config("%s", keys);
        struct harness *h = start(c, proc, root);

        free(proc);
        free(root);
        free(c);
        return h;
}

/* A temporary proc tree whose 1/mountinfo the test rewrites, over the healthy fixture's root. */
struct table {
        char *proc, *root;
};

static void table_write(struct table *t, const char *mountinfo) {
        test_write_file(t->proc, "1/mountinfo", mountinfo);
}

/* root: taken; NULL for the healthy fixture's. */
static struct harness *start_table_root(struct table *t, const char *keys, const char *mountinfo, char *root) {
        char *c = config("%s", keys);
        struct harness *h;

        t->proc = test_mkdtemp();
        t->root = root ? root : fixture("healthy", "root");
        table_write(t, mountinfo);
        h = start(c, t->proc, t->root);
        free(c);
        return h;
}

static struct harness *start_table(struct table *t, const char *keys, const char *mountinfo) {
        return start_table_root(t, keys, mountinfo, NULL);
}

static void table_free(struct table *t) {
        test_rmtree(t->proc);
        free(t->proc);
        free(t->root);
}

static const char *message(struct harness *h, const char *type) {
        const struct nh_condition *c = harness_condition(h, type);

        assert_non_null(c);
        return c->message;
}

/* Whatever the message is, the failure output shows it. */
#define assert_message(h, type, needle) _assert_message(h, type, needle, true, __FILE__, __LINE__)
#define assert_no_message(h, type, needle) _assert_message(h, type, needle, false, __FILE__, __LINE__)
static void _assert_message(struct harness *h, const char *type, const char *needle, bool present, const char *file,
                            int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c) {
                print_error("%s:%d: condition %s is not in the table\n", file, line, type);
                _fail(file, line);
                return;
        }
        if (!strstr(c->message, needle) != !present) {
                print_error("%s:%d: %s message is \"%s\", expected it %s \"%s\"\n", file, line, type, c->message,
                            present ? "to contain" : "not to contain", needle);
                _fail(file, line);
        }
}

#define assert_message_starts(h, type, prefix) _assert_message_starts(h, type, prefix, __FILE__, __LINE__)
static void _assert_message_starts(struct harness *h, const char *type, const char *prefix, const char *file,
                                   int line) {
        const char *m = message(h, type);

        if (strncmp(m, prefix, strlen(prefix)) != 0) {
                print_error("%s:%d: %s message is \"%s\", expected it to start with \"%s\"\n", file, line, type, m,
                            prefix);
                _fail(file, line);
        }
}

/* Expects harness_new to fail with an error containing each of the NULL-terminated needles. */
static void expect_config_error(const char *keys, ...) {
        char *c = config("%s", keys);
        struct harness *h = NULL;
        const char *needle;
        va_list ap;
        int r;

        r = harness_new(c, "/proc", NULL, NULL, &h);
        free(c);
        if (r >= 0)
                print_error("configuration {%s} was accepted\n", keys);
        assert_true(r < 0);
        assert_non_null(h->last_error);
        va_start(ap, keys);
        while ((needle = va_arg(ap, const char *))) {
                if (!strstr(h->last_error, needle)) {
                        print_error("error \"%s\" does not contain \"%s\"\n", h->last_error, needle);
                        va_end(ap);
                        harness_free(h);
                        fail();
                }
        }
        va_end(ap);
        harness_free(h);
}

static void require_root(void) {
        if (geteuid() != 0)
                fail_msg("this test mounts filesystems and must run as root (the test suite runs as root)");
}

/* Threads of this process besides the main one: the probe's helper threads. */
static size_t helper_threads(void) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                n += de->d_name[0] != '.' && strtol(de->d_name, NULL, 10) != getpid();
        closedir(d);
        return n;
}

/*
 * pidfds (Linux 6.9's PIDFD_THREAD) for every helper thread that exists now: each becomes
 * readable when its thread has ended.  A joined thread may linger in /proc/self/task for a
 * moment, so waiting on these is what tells for sure.
 */
struct threads {
        int fds[16];
        size_t n, n_ended;
        sd_event_source *sources[16];
};

static void threads_open(struct threads *t) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;

        *t = (struct threads){0};
        assert_non_null(d);
        while ((de = readdir(d))) {
                int64_t tid;
                int fd;

                if (de->d_name[0] == '.' || parse_int64(de->d_name, &tid) < 0 || tid == getpid())
                        continue;
                fd = (int) syscall(SYS_pidfd_open, (pid_t) tid, PIDFD_THREAD);
                if (fd < 0 && errno == ESRCH)
                        continue; /* ended meanwhile */
                if (fd < 0)
                        fail_msg("pidfd_open(%lld, PIDFD_THREAD): %s (Linux 6.9 or later is needed)", (long long) tid,
                                 strerror(errno));
                assert_true(t->n < ELEMENTSOF(t->fds));
                t->fds[t->n++] = fd;
        }
        closedir(d);
}

static void threads_close(struct threads *t) {
        for (size_t i = 0; i < t->n; i++) {
                t->sources[i] = sd_event_source_disable_unref(t->sources[i]);
                close(t->fds[i]);
        }
        t->n = 0;
}

/* Without a loop (the probe is gone): poll them all. */
static bool threads_wait(struct threads *t, int timeout_ms) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * USEC_PER_MSEC;

        for (size_t i = 0; i < t->n; i++) {
                struct pollfd p = {t->fds[i], POLLIN, 0};
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                if (now >= deadline || poll(&p, 1, (int) ((deadline - now) / USEC_PER_MSEC) + 1) != 1)
                        return false;
        }
        return true;
}

static int on_thread_end(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct threads *t = userdata;

        t->n_ended++;
        return sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

static struct threads *waited_threads;
static bool threads_ended(struct harness *h) {
        return waited_threads->n_ended == waited_threads->n;
}

/* With the harness's loop running, which the ending threads may need (their answers come from it). */
static bool threads_wait_in_loop(struct threads *t, struct harness *h, int timeout_ms) {
        for (size_t i = 0; i < t->n; i++)
                assert_int_equal(sd_event_add_io(h->event, &t->sources[i], t->fds[i], EPOLLIN, on_thread_end, t), 0);
        waited_threads = t;
        return harness_loop(h, timeout_ms, threads_ended);
}

static size_t base_triggers;
static bool triggered(struct harness *h) {
        return h->n_triggers > base_triggers;
}

/* ---- the mount table: which filesystems are watched ---- */

static void test_healthy(void **state) {
        struct harness *h = start_fixture("\"min_free_percent\": 0, \"min_free_inodes_percent\": 0", "healthy");
        const char *m;

        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        assert_message_starts(h, "OutOfDisk", "watching 4 filesystems, none below 0% free space or 0% free inodes: ");
        /* Block-backed ones in mount table order; the escaped space decoded. */
        m = message(h, "OutOfDisk");
        assert_non_null(strstr(m, ": / ("));
        assert_true(strstr(m, ": / (") < strstr(m, " /boot ("));
        assert_true(strstr(m, " /boot (") < strstr(m, " /var/lib/kubelet ("));
        assert_true(strstr(m, " /var/lib/kubelet (") < strstr(m, " /mnt/data disk ("));
        /* Pseudo, tmpfs, overlay, squashfs and iso9660, a pod's volume, NFS, and the bind mount of /. */
        static const char *const skipped[] = {"/proc", "/sys",       "/dev",         "/snap",   "/run/containerd",
                                              "pvc-1", "/run/netns", "/media/cdrom", "/mnt/nfs"};
        for (size_t i = 0; i < ELEMENTSOF(skipped); i++)
                assert_no_message(h, "OutOfDisk", skipped[i]);

        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_message(h, "ReadonlyFilesystem",
                       "none of the 4 watched filesystems went read-only (read-only from the start: /boot)");
        assert_int_equal(nh_table_size(h->table), 2);

        /* Nothing changes on a second look. */
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        harness_free(h);
}

static void test_messages_name_filesystems(void **state) {
        struct harness *h;

        /* 100% is a floor no real filesystem clears: every one is True, the first one speaks. */
        h = start_fixture("\"min_free_percent\": 100", "healthy");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        /* /var/lib/containerd exists in the fixture's root, on the root filesystem. */
        assert_message_starts(h, "OutOfDisk", "/ on /dev/vda1, holding /var/lib/containerd: ");
        assert_message(h, "OutOfDisk", " free of ");
        assert_message(h, "OutOfDisk", "%), below 100%; ");
        assert_message(h, "OutOfDisk", " inodes free (");
        assert_no_message(h, "OutOfDisk", "/var/lib/docker");
        harness_free(h);

        h = start_fixture("\"min_free_percent\": 100, \"exclude_mounts\": [\"*\"], "
                          "\"include_mounts\": [\"/mnt/data disk\"]",
                          "healthy");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", "/mnt/data disk on /dev/vdc1: ");
        harness_free(h);

        /* Inodes only. */
        h = start_fixture("\"min_free_inodes_percent\": 100, \"min_free_percent\": 0, \"exclude_mounts\": [\"*\"], "
                          "\"include_mounts\": [\"/boot\"]",
                          "healthy");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfInodes");
        assert_message_starts(h, "OutOfDisk", "/boot on /dev/vda2: ");
        assert_message(h, "OutOfDisk", " inodes free (");
        assert_message(h, "OutOfDisk", "%), below 100%; ");
        harness_free(h);
}

static void test_include_exclude(void **state) {
        static const struct {
                const char *keys;
                const char *summary;
                const char *listed, *not_listed;
        } cases[] = {
                {"\"include_types\": [\"nfs*\"]", "watching 5 filesystems", " /mnt/nfs (", NULL},
                {"\"include_mounts\": [\"/dev/shm\"]", "watching 5 filesystems", " /dev/shm (", NULL},
                /* A list replaces the default: the pods' volumes are no longer skipped. */
                {"\"exclude_mounts\": [\"/boot\", \"/mnt/*\"]", "watching 3 filesystems", " /var/lib/kubelet (",
                 " /boot ("},
                /* Not block-backed by type any more, yet the kubelet's and containerd's homes. */
                {"\"exclude_types\": [\"ext4\", \"xfs\", \"squashfs\", \"iso9660\"]", "watching 2 filesystems", ": / (",
                 " /boot ("},
                {"\"exclude_mounts\": [\"/var/lib/kubelet\", \"/var/lib/kubelet/*\"]", "watching 3 filesystems",
                 " /boot (", " /var/lib/kubelet"},
                /* include_mounts wins over exclude_mounts. */
                {"\"exclude_mounts\": [\"*\"], \"include_mounts\": [\"/bo?t\"]", "watching 1 filesystem, ", ": /boot (",
                 ": / ("},
                /* The runtimes' and pods' mounts are skipped by default, not by necessity. */
                {"\"exclude_mounts\": [], \"exclude_types\": [\"squashfs\", \"iso9660\"]", "watching 5 filesystems",
                 "pvc-1/mount (", "/run/netns"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *keys = NULL;
                struct harness *h;

                assert_true(asprintf(&keys, "\"min_free_percent\": 0, \"min_free_inodes_percent\": 0, %s",
                                     cases[i].keys) >= 0);
                h = start_fixture(keys, "healthy");
                harness_run(h);
                if (harness_condition(h, "OutOfDisk")->status != NH_STATUS_FALSE ||
                    !strstr(message(h, "OutOfDisk"), cases[i].summary) ||
                    !strstr(message(h, "OutOfDisk"), cases[i].listed) ||
                    (cases[i].not_listed && strstr(message(h, "OutOfDisk"), cases[i].not_listed))) {
                        print_error("case %zu {%s}: OutOfDisk %s: %s\n", i, cases[i].keys,
                                    nh_status_to_string(harness_condition(h, "OutOfDisk")->status),
                                    message(h, "OutOfDisk"));
                        fail();
                }
                harness_free(h);
                free(keys);
        }
}

static void test_nothing_watched(void **state) {
        struct harness *h = start_fixture("\"exclude_mounts\": [\"*\"]", "healthy");

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "NoFilesystemWatched");
        assert_message(h, "OutOfDisk", "no mount in /proc/1/mountinfo matches the rules");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "NoFilesystemWatched");
        harness_free(h);
}

/* The kubelet's directory makes its filesystem watched, whatever it is, when it exists. */
static void test_special_dirs(void **state) {
        const char *overlay_root = "1 0 0:31 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
                                   "2 1 0:32 / /tmp rw - tmpfs tmpfs rw\n";
        struct table t;
        struct harness *h;

        /* A root on overlay (a node in a container): not block-backed, but /var/lib/kubelet is on it. */
        h = start_table(&t, "\"min_free_percent\": 100", overlay_root);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", "/ on overlay, holding /var/lib/kubelet and /var/lib/containerd: ");
        harness_free(h);
        table_free(&t);

        /* All of them there, the runtimes' symlinked or not: each is named. */
        {
                char *root = test_mkdtemp(), *target = test_path(root, "data/containers"), *link;

                test_write_file(root, "var/lib/kubelet/.keep", "");
                test_write_file(root, "var/lib/docker/.keep", "");
                test_write_file(root, "data/containers/.keep", "");
                link = test_path(root, "var/lib/containers");
                assert_int_equal(symlink("/data/containers", link), 0);
                h = start_table_root(&t, "\"min_free_percent\": 100", overlay_root, root);
                harness_run(h);
                assert_message_starts(
                        h, "OutOfDisk",
                        "/ on overlay, holding /var/lib/kubelet, /var/lib/docker and /var/lib/containers: ");
                harness_free(h);
                test_rmtree(t.root);
                table_free(&t);
                free(target);
                free(link);
        }

        /* Without those directories the same table has nothing to watch. */
        h = start_table_root(&t, "\"min_free_percent\": 100", overlay_root, test_mkdtemp());
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "NoFilesystemWatched");
        harness_free(h);
        test_rmtree(t.root);
        table_free(&t);

        /* A mount point of its own is enough, even on tmpfs; a directory under it is named too. */
        h = start_table(&t, "\"min_free_percent\": 100", MI_PROC "30 1 0:40 / /var/lib/kubelet rw - tmpfs tmpfs rw\n");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", "/var/lib/kubelet on tmpfs: ");
        harness_free(h);
        table_free(&t);
}

static void test_one_check_per_filesystem(void **state) {
        struct table t;
        struct harness *h;

        /* Mounted over: the later mount is what the path reaches. */
        h = start_table(&t, "\"min_free_percent\": 100, \"exclude_mounts\": [\"/\", \"/boot\"]",
                        MI_ROOT MI_DATA_RW "40 26 253:48 / /mnt/data\\040disk rw - ext4 /dev/vdd1 rw\n");
        harness_run(h);
        assert_message_starts(h, "OutOfDisk", "/mnt/data disk on /dev/vdd1: ");
        harness_free(h);
        table_free(&t);

        /* The same filesystem at two places: checked once, at the mount of its root. */
        h = start_table(&t, "\"min_free_percent\": 0",
                        "33 26 253:1 /srv/netns /run/netns rw - ext4 /dev/vda1 rw\n" MI_ROOT);
        harness_run(h);
        assert_message(h, "OutOfDisk", "watching 1 filesystem, ");
        assert_message(h, "OutOfDisk", ": / (");
        harness_free(h);
        table_free(&t);

        /* ... or at the kubelet's directory when it is a bind mount of it. */
        h = start_table(&t, "\"min_free_percent\": 0",
                        MI_ROOT "34 26 253:1 /srv/kubelet /var/lib/kubelet rw - ext4 /dev/vda1 rw\n");
        harness_run(h);
        assert_message(h, "OutOfDisk", "watching 1 filesystem, ");
        assert_message(h, "OutOfDisk", ": /var/lib/kubelet (");
        harness_free(h);
        table_free(&t);
}

static void test_parsing(void **state) {
        char *root = test_mkdtemp();
        char *proc = test_mkdtemp();
        char *c = config("\"min_free_percent\": 100, \"exclude_mounts\": [\"*\"], "
                         "\"include_mounts\": [\"/mnt/*\"]");
        struct harness *h;

        /* Escaped space, tab, newline and backslash; many optional fields; an empty source. */
        test_write_file(root, "mnt/a b\tc\nd\\e/.keep", ""); /* creates the directories */
        test_write_file(proc, "1/mountinfo",
                        "50 1 0:60 / /mnt/a\\040b\\011c\\012d\\134e rw,relatime shared:7 master:3 "
                        "propagate_from:2 unbindable - tmpfs  rw,size=1024k\n");
        h = start(c, proc, root);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", "/mnt/a b\tc\nd\\e on tmpfs: ");
        harness_free(h);
        test_rmtree(root);
        test_rmtree(proc);
        free(root);
        free(proc);
        free(c);
}

/* ---- ReadonlyFilesystem ---- */

static void test_readonly_transitions(void **state) {
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0", MI_ROOT MI_BOOT_RO MI_DATA_RW);

        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_message(h, "ReadonlyFilesystem",
                       "none of the 3 watched filesystems went read-only (read-only from the start: /boot)");

        table_write(&t, MI_ROOT MI_BOOT_RO MI_DATA_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem",
                       "/mnt/data disk on /dev/vdc1 is read-only now (mount options \"ro\"); it was read-write before");
        /* Read-only is not full. */
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");

        table_write(&t, MI_ROOT MI_BOOT_RO MI_DATA_RW);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");

        /* /boot was read-only by design; once seen read-write, read-only again is a problem. */
        table_write(&t, MI_ROOT MI_BOOT_RW MI_DATA_RW);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_message(h, "ReadonlyFilesystem", "none of the 3 watched filesystems went read-only");
        assert_no_message(h, "ReadonlyFilesystem", "from the start");
        table_write(&t, MI_ROOT MI_BOOT_RO MI_DATA_RW);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message_starts(h, "ReadonlyFilesystem", "/boot on /dev/vda2 is read-only now");
        harness_free(h);
        table_free(&t);
}

static void test_readonly_superblock(void **state) {
        struct table t;
        struct harness *h;

        /* errors=remount-ro at work: the superblock is read-only under a read-write mount.  That is
         * a problem from the first look, unlike a read-only mount. */
        h = start_table(&t, "\"min_free_percent\": 0",
                        "26 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 ro,errors=remount-ro\n" MI_BOOT_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem",
                       "/ on /dev/vda1, holding /var/lib/kubelet and /var/lib/containerd is read-only: the "
                       "filesystem (superblock options \"ro\") went read-only under a read-write mount, as "
                       "errors=remount-ro does");
        harness_free(h);
        table_free(&t);
}

static void test_gone_filesystem(void **state) {
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0", MI_ROOT MI_DATA_RW);

        harness_run(h);
        table_write(&t, MI_ROOT MI_DATA_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        /* Unmounted while True: its verdict must not linger. */
        table_write(&t, MI_ROOT);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        assert_message(h, "ReadonlyFilesystem", "none of the 1 watched filesystem went read-only");
        /* Back, and read-only: it was seen read-write under that mount point. */
        table_write(&t, MI_ROOT MI_DATA_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        harness_free(h);
        table_free(&t);
}

/* ---- unreadable mount tables ---- */

static void test_garbage(void **state) {
        struct harness *h = start_fixture("", "garbage");

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        assert_message(h, "OutOfDisk",
                       "/proc/1/mountinfo line 2 is not a mountinfo line: \"this is not a mount table\"");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        harness_free(h);
}

static void test_truncated(void **state) {
        struct harness *h = start_fixture("", "truncated");

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        assert_message(h, "OutOfDisk", "/proc/1/mountinfo ends in the middle of a line (truncated)");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        harness_free(h);
}

static void test_missing(void **state) {
        struct harness *h = start_fixture("", "missing");

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        assert_message(h, "OutOfDisk", "cannot read /proc/1/mountinfo: No such file or directory");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        harness_free(h);
}

static void test_bad_tables(void **state) {
        static const struct {
                const char *mountinfo, *message;
        } cases[] = {
                {"", "/proc/1/mountinfo is empty"},
                {MI_ROOT "27 26 253:2 / /boot\\04x rw - ext4 /dev/vda2 rw\n", "line 2 is not a mountinfo line"},
                {MI_ROOT "27 26 253:2 / /boot\\000 rw - ext4 /dev/vda2 rw\n", "line 2 is not"},
                {"27 26 x:2 / /boot rw - ext4 /dev/vda2 rw\n", "line 1 is not a mountinfo line: \"27 26 x:2"},
                {"27 26 253: / /boot rw - ext4 /dev/vda2 rw\n", "line 1 is not"},
                {"27 26 253:2 / /boot rw ext4 /dev/vda2 rw\n", "line 1 is not"},
                {"27 26 253:2 / /boot rw - ext4 /dev/vda2\n", "line 1 is not"},
                {"27 26 253:2 / /boot rw - ext4 /dev/vda2 rw extra\n", "line 1 is not"},
                {"27 26 253:2 / boot rw - ext4 /dev/vda2 rw\n", "line 1 is not"},
                {"-27 26 253:2 / /boot rw - ext4 /dev/vda2 rw\n", "line 1 is not"},
                {MI_ROOT "\n", "line 2 is not a mountinfo line: \"\""},
                {MI_ROOT "27 26 253:2 / /boot rw - ext4 /dev/vda2 rw", "ends in the middle of a line (truncated)"},
        };
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0", MI_ROOT);

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                table_write(&t, cases[i].mountinfo);
                harness_run(h);
                if (harness_condition(h, "OutOfDisk")->status != NH_STATUS_UNKNOWN ||
                    strcmp(harness_condition(h, "OutOfDisk")->reason, "MountTableUnreadable") != 0 ||
                    !strstr(message(h, "OutOfDisk"), cases[i].message)) {
                        print_error("case %zu: OutOfDisk %s %s: %s (expected \"%s\")\n", i,
                                    nh_status_to_string(harness_condition(h, "OutOfDisk")->status),
                                    harness_condition(h, "OutOfDisk")->reason, message(h, "OutOfDisk"),
                                    cases[i].message);
                        fail();
                }
                /* A sane table again: the Unknown clears at once. */
                table_write(&t, MI_ROOT);
                harness_run(h);
                assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        }
        harness_free(h);
        table_free(&t);
}

static void test_too_large(void **state) {
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0", MI_ROOT);
        size_t size = 1024 * 1024 + 100, len = 0;
        char *big = malloc(size + 200);

        assert_non_null(big);
        while (len < size)
                len += (size_t) snprintf(big + len, size + 200 - len, "%zu 26 0:99 / /run/pod%zu rw - tmpfs tmpfs rw\n",
                                         len, len);
        table_write(&t, big);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        assert_message(h, "OutOfDisk", "/proc/1/mountinfo is larger than 1 MiB");
        harness_free(h);
        table_free(&t);
        free(big);
}

/* What was known turns Unknown with the table: no stale True or False. */
static void test_unreadable_after_known(void **state) {
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0", MI_ROOT MI_DATA_RW);

        harness_run(h);
        table_write(&t, MI_ROOT MI_DATA_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        table_write(&t, "garbage\n");
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "MountTableUnreadable");
        table_write(&t, MI_ROOT MI_DATA_RO);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        harness_free(h);
        table_free(&t);
}

static void test_statvfs_failed(void **state) {
        struct table t;
        struct harness *h = start_table(&t, "\"min_free_percent\": 0",
                                        MI_ROOT "40 26 253:64 / /mnt/absent rw - ext4 /dev/vde1 rw\n");

        /* The mount point is not in the root tree: open() fails, the others still count. */
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsFailed");
        assert_message(h, "OutOfDisk",
                       "cannot check free space of /mnt/absent on /dev/vde1: No such file or directory");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        harness_free(h);
        table_free(&t);
}

/* ---- configuration ---- */

static void test_config_errors(void **state) {
        expect_config_error("\"min_free_precent\": 5", "unknown key \"min_free_precent\" in probe \"disk\"",
                            "did you mean \"min_free_percent\"?", NULL);
        expect_config_error("\"min_free_percent\": 150",
                            "nodehealthd.json:1:78: \"min_free_percent\" in probe \"disk\" must be between 0 and 100",
                            NULL);
        expect_config_error("\"min_free_inodes_percent\": -1", "\"min_free_inodes_percent\"", "between 0 and 100",
                            NULL);
        expect_config_error("\"statvfs_timeout\": \"1h\"",
                            "\"statvfs_timeout\" in probe \"disk\" must be between 0.01s "
                            "and 600s",
                            NULL);
        expect_config_error("\"statvfs_timeout\": \"soon\"", "\"soon\" is not a duration", NULL);
        expect_config_error("\"include_mounts\": \"/data\"",
                            "\"include_mounts\" in probe \"disk\" must be an array "
                            "of strings, not a string",
                            NULL);
        expect_config_error("\"exclude_types\": [\"tmpfs\", 7]",
                            "\"exclude_types\" in probe \"disk\" must list strings, not a number", NULL);
        expect_config_error("\"udev\": \"yes\"", "\"udev\" in probe \"disk\" must be a boolean, not a string", NULL);
}

/* A relative mount point can never match: the probe refuses to start rather than watch nothing. */
static void test_config_bad_pattern(void **state) {
        struct harness *h = start_fixture("\"include_mounts\": [\"data\"]", "healthy");

        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        assert_message(h, "OutOfDisk", "probe disk could not start: Invalid argument");
        harness_free(h);

        h = start_fixture("\"exclude_types\": [\"\"]", "healthy");
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        harness_free(h);
}

/* ---- real filesystems (root) ---- */

struct fuse_fs {
        char *dir;
        int fd; /* /dev/fuse: closing it aborts the connection, hung requests fail with ENOTCONN */
        sd_event_source *source; /* serving on a harness's loop */
        struct fuse_kstatfs st; /* what STATFS answers */
        bool hold; /* leave STATFS requests unanswered */
        uint64_t held[8]; /* their ids */
        size_t n_held;
        unsigned n_statfs; /* STATFS requests seen: one per check that reached the filesystem */
        _Alignas(uint64_t) char buf[FUSE_MIN_READ_BUFFER + 4096]; /* requests are read into it as structs */
};

struct real {
        char *dir; /* temporary */
        char *mnt[2]; /* tmpfs mount points */
        struct fuse_fs fuse;
        struct harness *h;
};

static struct real *current_real; /* for the watchdog */

/* A probe that blocks the loop on a hung statvfs would hang this test for ever: fail it instead. */
static void on_watchdog(int sig) {
        static const char text[] = "Bail out! a test with a hanging filesystem did not finish within " STRINGIFY(
                WATCHDOG_S) "s: the probe blocks on statvfs\n";
        struct real *r = current_real;

        (void) write(STDOUT_FILENO, text, sizeof(text) - 1);
        /* System calls only: abort the FUSE connection (the hung statfs fails), drop the mounts. */
        if (r && r->fuse.fd >= 0)
                close(r->fuse.fd);
        if (r && r->fuse.dir)
                (void) umount2(r->fuse.dir, MNT_DETACH);
        for (size_t i = 0; r && i < ELEMENTSOF(r->mnt); i++)
                if (r->mnt[i])
                        (void) umount2(r->mnt[i], MNT_DETACH);
        _exit(1);
}

static int real_setup(void **state) {
        struct real *r = calloc(1, sizeof(*r));

        assert_non_null(r);
        current_real = r;
        signal(SIGALRM, on_watchdog);
        alarm(WATCHDOG_S);
        r->dir = test_mkdtemp();
        r->fuse.fd = -1;
        *state = r;
        return 0;
}

/* Runs whether the test passed or not: no mount or hung request outlives a test. */
static int real_teardown(void **state) {
        struct real *r = *state;

        alarm(0);
        current_real = NULL;
        r->fuse.source = sd_event_source_disable_unref(r->fuse.source);
        harness_free(r->h);
        if (r->fuse.fd >= 0)
                close(r->fuse.fd);
        if (r->fuse.dir) {
                (void) umount2(r->fuse.dir, MNT_DETACH);
                free(r->fuse.dir);
        }
        for (size_t i = 0; i < ELEMENTSOF(r->mnt); i++)
                if (r->mnt[i]) {
                        (void) umount2(r->mnt[i], MNT_DETACH);
                        free(r->mnt[i]);
                }
        test_rmtree(r->dir);
        free(r->dir);
        free(r);
        return 0;
}

static char *mount_tmpfs(struct real *r, size_t i, const char *options) {
        char *mnt = NULL;

        require_root();
        assert_true(asprintf(&mnt, "%s/tmpfs%zu", r->dir, i) >= 0);
        assert_int_equal(mkdir(mnt, 0755), 0);
        if (mount("nhtest", mnt, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0)
                fail_msg("mount -t tmpfs -o %s %s: %s", options, mnt, strerror(errno));
        r->mnt[i] = mnt;
        return mnt;
}

static void fill(const char *dir, const char *name, size_t kib) {
        char *path = test_path(dir, name), chunk[1024];
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        memset(chunk, 'x', sizeof(chunk));
        for (size_t i = 0; i < kib; i++)
                assert_int_equal(write(fd, chunk, sizeof(chunk)), (ssize_t) sizeof(chunk));
        assert_int_equal(close(fd), 0);
        free(path);
}

static void remove_file(const char *dir, const char *name) {
        char *path = test_path(dir, name);

        assert_int_equal(unlink(path), 0);
        free(path);
}

/* The probe watching only these mount points (and nothing of the machine's own disks). */
static struct harness *start_real(struct real *r, const char *keys, const char *mnt0, const char *mnt1) {
        char *c = config("\"exclude_mounts\": [\"*\"], \"include_mounts\": [\"%s\"%s%s%s]%s%s", mnt0,
                         mnt1 ? ", \"" : "", mnt1 ? mnt1 : "", mnt1 ? "\"" : "", *keys ? ", " : "", keys);

        r->h = start(c, NULL, NULL);
        free(c);
        return r->h;
}

static void test_tmpfs_space(void **state) {
        struct real *r = *state;
        const char *mnt = mount_tmpfs(r, 0, "size=1m,nr_inodes=1000");
        struct harness *h = start_real(r, "", mnt, NULL);
        char *expect = NULL;

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        assert_message(h, "OutOfDisk", "watching 1 filesystem, none below 5% free space or 2.5% free inodes: ");

        /* 1 MiB is 256 pages; a 1000 KiB file takes 250 of them. */
        fill(mnt, "big", 1000);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_true(asprintf(&expect,
                             "%s on nhtest: 24.0 KiB free of 1.0 MiB (2.3%%), below 5%%; 998 of 1000 inodes "
                             "free (99.8%%)",
                             mnt) >= 0);
        assert_string_equal(message(h, "OutOfDisk"), expect);

        remove_file(mnt, "big");
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        assert_message(h, "OutOfDisk", " (100.0% free)");
        free(expect);
}

static void test_tmpfs_inodes(void **state) {
        struct real *r = *state;
        const char *mnt = mount_tmpfs(r, 0, "size=1m,nr_inodes=64");
        struct harness *h = start_real(r, "", mnt, NULL);
        char name[32], *expect = NULL;

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        /* The root directory holds one inode: 62 files leave 1 of 64 (1.6%). */
        for (int i = 0; i < 62; i++) {
                snprintf(name, sizeof(name), "f%d", i);
                fill(mnt, name, 0);
        }
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfInodes");
        assert_true(asprintf(&expect,
                             "%s on nhtest: 1 of 64 inodes free (1.6%%), below 2.5%%; 1.0 MiB free of 1.0 MiB "
                             "(100.0%%)",
                             mnt) >= 0);
        assert_string_equal(message(h, "OutOfDisk"), expect);
        for (int i = 0; i < 62; i++) {
                snprintf(name, sizeof(name), "f%d", i);
                remove_file(mnt, name);
        }
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
        free(expect);
}

/* The root holds no runtime directory that is a symlink to another filesystem. */
static void test_special_dir_elsewhere(void **state) {
        struct real *r = *state;
        char *root = test_mkdtemp(), *data = test_path(root, "data"), *link = test_path(root, "var/lib/docker");
        struct table t;
        struct harness *h;

        require_root();
        test_write_file(root, "var/lib/.keep", "");
        assert_int_equal(mkdir(data, 0755), 0);
        assert_int_equal(mount("nhtest", data, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"), 0);
        r->mnt[0] = data; /* unmounted by the teardown */
        test_write_file(data, "docker/.keep", "");
        assert_int_equal(symlink("/data/docker", link), 0);
        h = start_table_root(&t, "\"min_free_percent\": 100",
                             "1 0 0:31 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n",
                             root);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "NoFilesystemWatched");
        harness_free(h);
        assert_int_equal(umount2(data, MNT_DETACH), 0);
        r->mnt[0] = NULL;
        test_rmtree(t.root);
        table_free(&t);
        free(data);
        free(link);
}

/* A remount is a mount table change: the probe asks for a cycle at once, not at the interval. */
static void test_remount_triggers(void **state) {
        struct real *r = *state;
        const char *mnt = mount_tmpfs(r, 0, "size=1m");
        struct harness *h = start_real(r, "", mnt, NULL);

        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
        harness_advance(h, 10 * USEC_PER_SEC); /* past the one-second spacing of triggered cycles */
        base_triggers = h->n_triggers;
        assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m"), 0);
        if (!harness_loop(h, WAIT_MS, triggered))
                fail_msg("no cycle asked for within %d ms of the remount", WAIT_MS);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_TRUE, "FilesystemIsReadOnly");
        assert_message(h, "ReadonlyFilesystem", "is read-only now (mount options \"ro\"); it was read-write before");

        harness_advance(h, 10 * USEC_PER_SEC);
        base_triggers = h->n_triggers;
        assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "size=1m"), 0);
        if (!harness_loop(h, WAIT_MS, triggered))
                fail_msg("no cycle asked for within %d ms of the remount", WAIT_MS);
        harness_run(h);
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");
}

/* ---- a statvfs that does not return: FUSE served (or not) by this test ---- */

static void fuse_mount(struct real *r) {
        char opts[128];

        require_root();
        r->fuse.dir = test_path(r->dir, "fuse");
        assert_int_equal(mkdir(r->fuse.dir, 0755), 0);
        r->fuse.fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (r->fuse.fd < 0)
                fail_msg("cannot open /dev/fuse: %s (the kernel's fuse module is needed)", strerror(errno));
        snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", r->fuse.fd);
        if (mount("nhtest", r->fuse.dir, "fuse.nhtest", MS_NOSUID | MS_NODEV, opts) < 0)
                fail_msg("mount -t fuse.nhtest %s: %s", r->fuse.dir, strerror(errno));
        /* Until the test serves it, every statfs on it waits, as on a dead NFS server. */
}

static void fuse_reply(struct fuse_fs *f, uint64_t unique, int error, const void *data, size_t size) {
        struct fuse_out_header h = {.len = (uint32_t) (sizeof(h) + size), .error = error, .unique = unique};
        struct iovec iov[2] = {{&h, sizeof(h)}, {(void *) data, size}};

        assert_int_equal(writev(f->fd, iov, size ? 2 : 1), (ssize_t) h.len);
}

static void fuse_reply_statfs(struct fuse_fs *f, uint64_t unique) {
        struct fuse_statfs_out out = {.st = f->st};

        fuse_reply(f, unique, 0, &out, sizeof(out));
}

/*
 * Answers the kernel's requests: INIT, GETATTR of the root, ENOSYS for the rest, and STATFS
 * with f->st, or, while f->hold, not at all: the request waits, as on a server that went
 * silent, until fuse_release() answers it.
 */
static int on_fuse_request(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct fuse_fs *f = userdata;
        const struct fuse_in_header *in = (const void *) f->buf;
        ssize_t n = read(fd, f->buf, sizeof(f->buf));

        if (n < (ssize_t) sizeof(*in))
                return 0;
        switch (in->opcode) {
        case FUSE_INIT: {
                const struct fuse_init_in *init = (const void *) (in + 1);
                struct fuse_init_out out = {.major = FUSE_KERNEL_VERSION,
                                            .minor = FUSE_KERNEL_MINOR_VERSION,
                                            .max_readahead = init->max_readahead,
                                            .max_write = 4096};
                fuse_reply(f, in->unique, 0, &out, sizeof(out));
                break;
        }
        case FUSE_STATFS:
                f->n_statfs++;
                if (!f->hold) {
                        fuse_reply_statfs(f, in->unique);
                        break;
                }
                assert_true(f->n_held < ELEMENTSOF(f->held));
                f->held[f->n_held++] = in->unique;
                break;
        case FUSE_GETATTR: {
                struct fuse_attr_out out = {.attr = {.ino = FUSE_ROOT_ID, .mode = S_IFDIR | 0755, .nlink = 2}};
                fuse_reply(f, in->unique, 0, &out, sizeof(out));
                break;
        }
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
                break; /* no answer expected */
        default:
                fuse_reply(f, in->unique, -ENOSYS, NULL, 0);
        }
        return 0;
}

/* Serves the filesystem on the harness's loop; while `hold`, STATFS requests are left waiting. */
static void fuse_serve(struct real *r, bool hold, const struct fuse_kstatfs *st) {
        r->fuse.st = *st;
        r->fuse.hold = hold;
        assert_int_equal(sd_event_add_io(r->h->event, &r->fuse.source, r->fuse.fd, EPOLLIN, on_fuse_request, &r->fuse),
                         0);
}

/* The server answers again, the held requests first. */
static void fuse_release(struct real *r) {
        r->fuse.hold = false;
        for (size_t i = 0; i < r->fuse.n_held; i++)
                fuse_reply_statfs(&r->fuse, r->fuse.held[i]);
        r->fuse.n_held = 0;
}

static const char *fuse_key(struct real *r) {
        return r->fuse.dir;
}

static const struct fuse_kstatfs fuse_figures = {.blocks = 1000,
                                                 .bavail = 10,
                                                 .bfree = 10,
                                                 .files = 100,
                                                 .ffree = 50,
                                                 .bsize = 4096,
                                                 .frsize = 4096,
                                                 .namelen = 255};

/* The server takes the request and never answers it, as a dead NFS server. */
static void test_statvfs_hangs(void **state) {
        struct real *r = *state;
        struct threads threads;
        const char *mnt;
        struct harness *h;
        char *expect = NULL;

        fuse_mount(r);
        mnt = mount_tmpfs(r, 0, "size=1m");
        h = start_real(r, "\"statvfs_timeout\": \"200ms\"", fuse_key(r), mnt);
        fuse_serve(r, true, &fuse_figures);

        /* The hung filesystem is Unknown, named; the other one was checked. */
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsTimeout");
        assert_true(asprintf(&expect,
                             "statvfs of %s on nhtest has not returned within 200ms (statvfs_timeout): a dead NFS "
                             "server or a hung device? Free space unknown",
                             fuse_key(r)) >= 0);
        assert_string_equal(message(h, "OutOfDisk"), expect);
        free(expect);
        assert_int_equal(r->fuse.n_statfs, 1);
        /* The mount table still answers for it. */
        assert_condition(h, "ReadonlyFilesystem", NH_STATUS_FALSE, "FilesystemIsNotReadOnly");

        /* The other filesystem's verdict counts, and no second check of the hung one starts. */
        fill(mnt, "big", 1000);
        harness_advance(h, 30 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", mnt);
        remove_file(mnt, "big");
        harness_advance(h, 30 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsTimeout");
        assert_true(asprintf(&expect, "statvfs of %s on nhtest has not returned for 1m; no new check until it does",
                             fuse_key(r)) >= 0);
        assert_message_starts(h, "OutOfDisk", expect);
        free(expect);
        assert_int_equal(r->fuse.n_statfs, 1);

        /* The server answers at last: the hung check returns and its thread ends; the next
         * cycle checks the filesystem again, and gets the figures it now gives. */
        threads_open(&threads);
        fuse_release(r);
        if (!threads_wait_in_loop(&threads, h, WAIT_MS))
                fail_msg("the hung check's thread did not end once its statfs was answered");
        threads_close(&threads);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_true(asprintf(&expect,
                             "%s on nhtest: 40.0 KiB free of 3.9 MiB (1.0%%), below 5%%; 50 of 100 inodes free "
                             "(50.0%%)",
                             fuse_key(r)) >= 0);
        assert_string_equal(message(h, "OutOfDisk"), expect);
        free(expect);
        assert_int_equal(r->fuse.n_statfs, 2);
}

/* A connection that dies (the FUSE daemon crashed) makes the hung check fail, not hang. */
static void test_statvfs_fails_after_hang(void **state) {
        struct real *r = *state;
        struct threads threads;
        struct harness *h;

        /* A server that never even answered INIT. */
        fuse_mount(r);
        h = start_real(r, "\"statvfs_timeout\": \"100ms\"", fuse_key(r), NULL);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsTimeout");

        threads_open(&threads);
        close(r->fuse.fd);
        r->fuse.fd = -1;
        if (!threads_wait_in_loop(&threads, h, WAIT_MS))
                fail_msg("the hung check's thread did not end once the connection was aborted");
        threads_close(&threads);
        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsFailed");
        assert_message(h, "OutOfDisk", "cannot check free space of ");
        assert_message(h, "OutOfDisk", ": Transport endpoint is not connected");
}

/*
 * The probe stops (and its plugin is unloaded) while a check hangs: the thread must free its
 * job when it returns, touch nothing of the probe's, and return into code that is still mapped.
 * Under AddressSanitizer a use after free or a leak fails this test; without the plugin kept
 * loaded the thread would crash the process.
 */
static void test_stop_while_hung(void **state) {
        struct real *r = *state;
        struct threads threads;

        fuse_mount(r);
        start_real(r, "\"statvfs_timeout\": \"100ms\"", fuse_key(r), NULL);
        harness_run(r->h);
        assert_condition(r->h, "OutOfDisk", NH_STATUS_UNKNOWN, "StatvfsTimeout");
        /* The only helper thread: no other check ran, so none lingers. */
        assert_int_equal(helper_threads(), 1);
        threads_open(&threads);
        harness_free(r->h);
        r->h = NULL;

        /* The kernel fails the request now: the thread returns, signals a closed probe, ends. */
        close(r->fuse.fd);
        r->fuse.fd = -1;
        if (!threads_wait(&threads, WAIT_MS))
                fail_msg("the orphaned check's thread did not end");
        threads_close(&threads);

        /* A new instance works as the first did. */
        char *mnt = mount_tmpfs(r, 0, "size=1m");
        start_real(r, "", mnt, NULL);
        harness_run(r->h);
        assert_condition(r->h, "OutOfDisk", NH_STATUS_FALSE, "DiskSpaceAvailable");
}

/* ---- udev, under umockdev (in a child: the preload library must be there from the start) ---- */

struct gerror {
        uint32_t domain;
        int code;
        char *message;
};

struct umockdev {
        void *lib;
        void *testbed;
        void *(*testbed_new)(void);
        int (*add_from_string)(void *testbed, const char *description, struct gerror **error);
        void (*set_property)(void *testbed, const char *devpath, const char *name, const char *value);
        void (*uevent)(void *testbed, const char *devpath, const char *action);
        void (*object_unref)(void *object);
};

#define SDA1_DEVPATH "/devices/pci0000:00/0000:00:01.1/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1"
#define SDA1 "/sys" SDA1_DEVPATH

static struct umockdev *umockdev_new(void) {
        struct umockdev *u = calloc(1, sizeof(*u));
        struct gerror *error = NULL;

        assert_non_null(u);
        u->lib = dlopen("libumockdev.so.0", RTLD_NOW | RTLD_GLOBAL);
        if (!u->lib)
                fail_msg("cannot load libumockdev (package libumockdev0): %s", dlerror());
        *(void **) &u->testbed_new = dlsym(u->lib, "umockdev_testbed_new");
        *(void **) &u->add_from_string = dlsym(u->lib, "umockdev_testbed_add_from_string");
        *(void **) &u->set_property = dlsym(u->lib, "umockdev_testbed_set_property");
        *(void **) &u->uevent = dlsym(u->lib, "umockdev_testbed_uevent");
        *(void **) &u->object_unref = dlsym(u->lib, "g_object_unref");
        assert_true(u->testbed_new && u->add_from_string && u->set_property && u->uevent && u->object_unref);
        u->testbed = u->testbed_new(); /* sets $UMOCKDEV_DIR: /sys is the testbed's from now on */
        assert_non_null(u->testbed);
        /* A SATA disk's first partition, as udev describes it (ID_MODEL_ENC keeps the spaces). */
        if (!u->add_from_string(u->testbed,
                                "P: " SDA1_DEVPATH "\nN: sda1\nE: DEVNAME=/dev/sda1\nE: DEVTYPE=partition\n"
                                "E: SUBSYSTEM=block\nE: MAJOR=8\nE: MINOR=1\nE: ID_MODEL=QEMU_HARDDISK\n"
                                "E: ID_MODEL_ENC=QEMU\\x20HARDDISK\\x20\\x20\\x20\nE: ID_SERIAL_SHORT=QM00001\n"
                                "A: dev=8:1\nA: partition=1\n",
                                &error))
                fail_msg("umockdev: %s", error ? error->message : "cannot add the device");
        return u;
}

/* A virtio-like disk: udev knows the model of the disk only, sysfs its serial (vdb/serial). */
#define SDB_DEVPATH "/devices/pci0000:00/0000:00:05.0/virtio2/block/sdb"
static void umockdev_add_sdb(struct umockdev *u) {
        struct gerror *error = NULL;

        if (!u->add_from_string(u->testbed,
                                "P: " SDB_DEVPATH "\nN: sdb\nE: DEVNAME=/dev/sdb\nE: DEVTYPE=disk\nE: SUBSYSTEM=block\n"
                                "E: MAJOR=8\nE: MINOR=16\nE: ID_MODEL=Virtual_Disk\nA: dev=8:16\nA: serial=VD-0042\n",
                                &error) ||
            !u->add_from_string(u->testbed,
                                "P: " SDB_DEVPATH "/sdb1\nN: sdb1\nE: DEVNAME=/dev/sdb1\nE: DEVTYPE=partition\n"
                                "E: SUBSYSTEM=block\nE: MAJOR=8\nE: MINOR=17\nA: dev=8:17\nA: partition=1\n",
                                &error))
                fail_msg("umockdev: %s", error ? error->message : "cannot add the device");
}

static void umockdev_free(struct umockdev *u) {
        u->object_unref(u->testbed);
        free(u);
}

static struct harness *start_udev(struct table *t, const char *keys) {
        struct harness *h;
        char *c = NULL;

        assert_true(asprintf(&c,
                             "\"min_free_percent\": 100, \"exclude_mounts\": [\"*\"], \"include_mounts\": "
                             "[\"/data\"]%s%s",
                             *keys ? ", " : "", keys) >= 0);

        char *root = test_mkdtemp(), *data = test_path(root, "data");

        assert_int_equal(mkdir(data, 0755), 0);
        free(data);
        h = start_table_root(t, c, "40 1 8:1 / /data rw,relatime shared:50 - ext4 /dev/sda1 rw\n", root);
        free(c);
        return h;
}

static void udev_table_free(struct table *t) {
        test_rmtree(t->root);
        table_free(t);
}

static void test_udev_names_device(void **state) {
        struct umockdev *u = umockdev_new();
        struct table t;
        struct harness *h = start_udev(&t, "");

        harness_run(h);
        assert_condition(h, "OutOfDisk", NH_STATUS_TRUE, "OutOfDisk");
        assert_message_starts(h, "OutOfDisk", "/data on /dev/sda1 (QEMU HARDDISK, serial QM00001): ");
        assert_message_starts(h, "ReadonlyFilesystem", "none of the 1 watched filesystem went read-only");

        /* A "change" uevent asks for a cycle, which looks the device up again. */
        u->set_property(u->testbed, SDA1, "ID_MODEL_ENC", "NEW\\x20MODEL");
        u->set_property(u->testbed, SDA1, "ID_SERIAL_SHORT", "QM00002");
        base_triggers = h->n_triggers;
        u->uevent(u->testbed, SDA1, "change");
        if (!harness_loop(h, WAIT_MS, triggered))
                fail_msg("a udev change of a block device did not ask for a cycle");
        harness_run(h);
        assert_message_starts(h, "OutOfDisk", "/data on /dev/sda1 (NEW MODEL, serial QM00002): ");

        /* A new device asks for one too. */
        base_triggers = h->n_triggers;
        u->uevent(u->testbed, SDA1, "add");
        if (!harness_loop(h, WAIT_MS, triggered))
                fail_msg("a udev add of a block device did not ask for a cycle");
        harness_free(h);
        udev_table_free(&t);
        umockdev_free(u);
}

static void test_udev_model_only(void **state) {
        struct umockdev *u = umockdev_new();
        struct table t;
        struct harness *h = start_udev(&t, "");

        u->set_property(u->testbed, SDA1, "ID_MODEL_ENC", "");
        u->set_property(u->testbed, SDA1, "ID_SERIAL_SHORT", "");
        harness_run(h);
        assert_message_starts(h, "OutOfDisk", "/data on /dev/sda1 (QEMU HARDDISK): ");
        harness_free(h);
        udev_table_free(&t);
        umockdev_free(u);
}

static void test_udev_partition_of_disk(void **state) {
        struct umockdev *u = umockdev_new();
        struct table t;
        struct harness *h;
        char *root = test_mkdtemp();

        umockdev_add_sdb(u);
        test_write_file(root, "srv/.keep", "");
        h = start_table_root(&t,
                             "\"min_free_percent\": 100, \"exclude_mounts\": [\"*\"], \"include_mounts\": [\"/srv\"]",
                             "41 1 8:17 / /srv rw,relatime - xfs /dev/sdb1 rw\n", root);
        harness_run(h);
        assert_message_starts(h, "OutOfDisk", "/srv on /dev/sdb1 (Virtual Disk, serial VD-0042): ");
        harness_free(h);
        test_rmtree(t.root);
        table_free(&t);
        umockdev_free(u);
}

static void test_udev_off(void **state) {
        struct umockdev *u = umockdev_new();
        struct table t;
        struct harness *h = start_udev(&t, "\"udev\": false");

        harness_run(h);
        assert_message_starts(h, "OutOfDisk", "/data on /dev/sda1: ");
        harness_free(h);
        udev_table_free(&t);
        umockdev_free(u);
}

static int run_umockdev_tests(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_udev_names_device),
                cmocka_unit_test(test_udev_model_only),
                cmocka_unit_test(test_udev_partition_of_disk),
                cmocka_unit_test(test_udev_off),
        };

        return cmocka_run_group_tests_name("udev under umockdev", tests, NULL, NULL);
}

/* Runs this very binary again under umockdev-wrapper, which preloads umockdev's library. */
static void test_udev_under_umockdev(void **state) {
        char self[PATH_MAX], *argv[] = {"/usr/bin/umockdev-wrapper", self, NULL};
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        struct proc *p;
        int code;

        assert_true(n > 0);
        self[n] = '\0';
        if (access(argv[0], X_OK) < 0)
                fail_msg("%s is missing (package umockdev)", argv[0]);
        assert_int_equal(setenv(UMOCKDEV_CHILD_ENV, "1", 1), 0);
        p = proc_run(argv, 60000, &code);
        assert_int_equal(unsetenv(UMOCKDEV_CHILD_ENV), 0);
        /* The child's TAP lines as comments of ours. */
        for (char *line = p->out, *eol; line && *line; line = eol ? eol + 1 : NULL) {
                eol = strchr(line, '\n');
                printf("# %.*s\n", eol ? (int) (eol - line) : (int) strlen(line), line);
        }
        if (code != 0)
                fail_msg("the umockdev tests failed (exit %d):\n%s", code, p->err);
        proc_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_healthy),
                cmocka_unit_test(test_messages_name_filesystems),
                cmocka_unit_test(test_include_exclude),
                cmocka_unit_test(test_nothing_watched),
                cmocka_unit_test(test_special_dirs),
                cmocka_unit_test(test_one_check_per_filesystem),
                cmocka_unit_test(test_parsing),
                cmocka_unit_test(test_readonly_transitions),
                cmocka_unit_test(test_readonly_superblock),
                cmocka_unit_test(test_gone_filesystem),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_bad_tables),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_unreadable_after_known),
                cmocka_unit_test(test_statvfs_failed),
                cmocka_unit_test(test_config_errors),
                cmocka_unit_test(test_config_bad_pattern),
                cmocka_unit_test_setup_teardown(test_tmpfs_space, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_tmpfs_inodes, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_special_dir_elsewhere, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_remount_triggers, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_statvfs_hangs, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_statvfs_fails_after_hang, real_setup, real_teardown),
                cmocka_unit_test_setup_teardown(test_stop_while_hung, real_setup, real_teardown),
                cmocka_unit_test(test_udev_under_umockdev),
        };

        if (getenv(UMOCKDEV_CHILD_ENV))
                return run_umockdev_tests();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
