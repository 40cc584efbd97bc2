/* SPDX-License-Identifier: MIT */
/*
 * disk — is a filesystem that matters full, out of inodes, or gone read-only?
 *
 * Which filesystems.  The mount table of the host's init, /proc/1/mountinfo under the proc
 * root (--proc-path), decides.  A mount is watched when
 *     its mount point matches include_mounts, or
 *     its mount point does not match exclude_mounts, and
 *         it holds the kubelet's or a container runtime's directory (/var/lib/kubelet,
 *         /var/lib/containerd, /var/lib/docker, /var/lib/containers): mounted there, or the
 *         mount under which the directory lies, when the directory exists there (a
 *         symlink is followed inside the root: one to another disk is that disk's); or
 *         its source is a block device (/dev/...) and its type does not match exclude_types
 *         (pseudo, overlay, tmpfs and always-full image filesystems by default), or its type
 *         matches include_types (e.g. "nfs4", "zfs").
 * Lists hold fnmatch(3) patterns ("*" also matches "/").  A mount point mounted over is not
 * watched (the last mount wins), and a filesystem mounted at several places (bind mounts, the
 * same device twice) is checked once, at the included, kubelet or runtime mount point if there
 * is one, else at the mount of its root.  Mount points are opened under the root
 * (--root-path), so a DaemonSet checks the host's filesystems and tests check fixture trees.
 *
 * Free space and inodes come from open() + fstatvfs() in a helper thread per filesystem: a
 * statvfs that does not return (a dead NFS server, a hung FUSE daemon) must not stall the
 * event loop or the other probes.  A check that has not answered within statvfs_timeout is
 * reported as such; no second check of that filesystem starts until the first returns.  Keep
 * statvfs_timeout below the probe's timeout, or the whole cycle ends as ProbeTimeout.
 *
 * A change of the mount table (a remount read-only, a new mount; seen by polling the
 * mountinfo file for POLLPRI) and a udev "add", "remove" or "change" of a block device start a
 * cycle at once, at most one a second; the interval is the fallback (a filesystem that the
 * kernel turns read-only after an error changes no mount table: it is seen at the interval).
 * libudev (the real /sys and /run/udev, not the configured roots) names the device behind
 * each filesystem by its model and serial; without udev the probe goes on without them.
 *
 * Every watched filesystem is its own problem (keyed by its mount point), so one full disk
 * makes the condition True whatever the others say; the problem "mount table" carries the
 * summary shown while all is well.
 *
 * OutOfDisk (healthy reason DiskSpaceAvailable)
 *         True  OutOfDisk             available blocks (f_bavail, what unprivileged writers
 *                                     get) below min_free_percent of the filesystem's size
 *         True  OutOfInodes           available inodes below min_free_inodes_percent (a
 *                                     filesystem without an inode limit, such as btrfs, is
 *                                     not checked for inodes)
 *         False DiskSpaceAvailable
 *         Unknown StatvfsTimeout      the filesystem's check has not returned within
 *                                     statvfs_timeout, or an earlier check still hangs
 *         Unknown StatvfsFailed       open() or fstatvfs() failed (e.g. ENOTCONN for a FUSE
 *                                     filesystem whose daemon died)
 *         Unknown MountTableUnreadable  /proc/1/mountinfo is missing, garbage, truncated or
 *                                     larger than 1 MiB
 *         Unknown NoFilesystemWatched no mount matches the rules above
 *
 * ReadonlyFilesystem (healthy reason FilesystemIsNotReadOnly; node-problem-detector's names)
 *     From the mount table: a filesystem is read-only when its mount options or its
 *     superblock options say "ro".
 *         True  FilesystemIsReadOnly  a filesystem seen read-write is read-only now; or the
 *                                     superblock is read-only under a read-write mount,
 *                                     which is what errors=remount-ro does after an I/O or
 *                                     metadata error (seen even on the first observation)
 *         False FilesystemIsNotReadOnly  read-write, or read-only since it was first seen
 *                                     (a read-only mount by design is not a problem)
 *         Unknown MountTableUnreadable, NoFilesystemWatched  as above
 *     A one-shot run (--once) sees every filesystem for the first time: there only the
 *     superblock case can be True.
 *
 * A filesystem that is no longer mounted (or no longer watched) is reported False from then
 * on (the last 1024 are remembered), so that its last verdict does not linger.
 *
 * Keys
 *     min_free_percent         (number, 0-100, default 5) OutOfDisk below this share of
 *                              available space
 *     min_free_inodes_percent  (number, 0-100, default 2.5) OutOfInodes below this share of
 *                              available inodes
 *     include_mounts           (list, default empty) mount points watched whatever their type
 *                              or source, even if they match exclude_mounts
 *     exclude_mounts           (list, default the kubelet's pod volume and CSI mounts and the
 *                              container runtimes' per-container mounts) mount points not
 *                              watched unless include_mounts lists them
 *     include_types            (list, default empty) filesystem types watched even when their
 *                              source is not a block device
 *     exclude_types            (list, default pseudo, overlay, tmpfs and image filesystems)
 *                              types of block-backed filesystems not watched
 *     (A list in the configuration replaces the default list: keep the default entries.)
 *     statvfs_timeout          (duration, 10ms-10m, default 2s) how long one check may take
 *     udev                     (boolean, default true) name devices by udev's model and serial
 *                              and re-check on block device events
 *
 * Messages carry the figures, e.g. "/var/lib/kubelet on /dev/vdb1 (QEMU HARDDISK, serial
 * QM00002): 312 MiB free of 20.0 GiB (1.5%), below 5%; 1203 of 1310720 inodes free (0.1%),
 * below 2.5%", "statvfs of /mnt/nfs on server:/export has not returned within 2s (statvfs_timeout)".
 *
 * Threads and memory.  Each check is a heap job shared by the loop and its thread through a
 * reference count; the thread touches nothing else but a small refcounted struct holding a
 * duplicate of the root fd and the eventfd it signals.  A thread that has answered is
 * joined.  When the probe stops while a check hangs, done() detaches its thread and drops the
 * probe's references, leaving the job and those fds to the thread, which frees them whenever
 * it returns; this object is then kept mapped (RTLD_NODELETE), because that thread returns
 * into its code after the loader's dlclose().
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <libudev.h>
#include <linux/openat2.h>
#include <nodehealth/plugin.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "../common/probe-text.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define MOUNTINFO_PATH "1/mountinfo"
#define MOUNTINFO_MAX (1024 * 1024) /* ~150 bytes a mount: room for several thousand pod mounts */
#define MESSAGE_SIZE 1024
#define EXCERPT_SIZE 48
#define PROBLEM_KEY_MAX 64 /* the core's limit on problem keys */
#define SUMMARY_PROBLEM "mount table" /* never a mount point: those start with '/' */
#define TRIGGER_SPACING USEC_PER_SEC /* a burst of mount or udev events makes one cycle a second */
#define WORKER_STACK_SIZE (256 * 1024) /* open + fstatvfs need little; sanitizers more */
#define UDEV_EVENTS_PER_WAKEUP 64 /* the rest waits for the next wake-up: the loop is shared */
#define MAX_MOUNTS_KEPT 1024 /* bound on remembered mounts (gone ones are forgotten first) */

struct disk_config {
        double min_free_percent;
        double min_free_inodes_percent;
        char **include_mounts;
        char **exclude_mounts;
        char **include_types;
        char **exclude_types;
        uint64_t statvfs_timeout; /* µs */
        bool udev;
};

static const struct nh_cfg_entry disk_config_table[] = {
        /* OutOfDisk is the "writes are about to fail" signal, after the kubelet's DiskPressure:
         * its default hard eviction starts at nodefs.available < 10% (imagefs.available < 15%).
         * When eviction has not kept the disk there and half of that margin is gone too,
         * something the kubelet cannot evict (system logs, images, a host daemon) is filling
         * it: at 5% a 100 GiB disk has minutes of image pulls or heavy logging left. */
        {.type = NH_CFG_DOUBLE,
         .key = "min_free_percent",
         .def = "5",
         .offset = offsetof(struct disk_config, min_free_percent),
         .help = "OutOfDisk is True when available space falls below this percentage of a watched filesystem",
         .min = 0,
         .max = 100},
        /* Likewise half of the kubelet's nodefs.inodesFree < 5% hard eviction threshold:
         * inodes go in bursts (an image layer unpacks thousands of files), so the signal has
         * to come well before none are left; 2.5% of a 100 GiB ext4 is ~160,000 files. */
        {.type = NH_CFG_DOUBLE,
         .key = "min_free_inodes_percent",
         .def = "2.5",
         .offset = offsetof(struct disk_config, min_free_inodes_percent),
         .help = "OutOfDisk (OutOfInodes) is True when available inodes fall below this percentage",
         .min = 0,
         .max = 100},
        {.type = NH_CFG_STRING_LIST,
         .key = "include_mounts",
         .def = "",
         .offset = offsetof(struct disk_config, include_mounts),
         .help = "mount points (fnmatch patterns) watched whatever their source, type or exclude_mounts"},
        /* Pod volumes (PersistentVolumes, CSI global mounts) are block-backed but belong to
         * their workloads, not to the node: a full PV must not mark the node OutOfDisk.  The
         * runtimes' per-container mounts (devicemapper, overlay snapshots) are their images'. */
        {.type = NH_CFG_STRING_LIST,
         .key = "exclude_mounts",
         .def = "/var/lib/kubelet/pods/*, /var/lib/kubelet/plugins/*, /var/lib/containerd/*, /var/lib/docker/*, "
                "/var/lib/containers/*, /run/containerd/*",
         .offset = offsetof(struct disk_config, exclude_mounts),
         .help = "mount points (fnmatch patterns) not watched unless include_mounts lists them; a list set in the "
                 "configuration replaces this default, so keep its entries"},
        {.type = NH_CFG_STRING_LIST,
         .key = "include_types",
         .def = "",
         .offset = offsetof(struct disk_config, include_types),
         .help = "filesystem types (fnmatch patterns) watched even when not backed by a block device, "
                 "e.g. nfs4, cifs, zfs"},
        /* Pseudo filesystems have no disk behind them; squashfs, iso9660, erofs, udf, cramfs and
         * romfs are images, full by construction (every snap is a loop-mounted squashfs). */
        {.type = NH_CFG_STRING_LIST,
         .key = "exclude_types",
         .def = "autofs, binfmt_misc, bpf, cgroup, cgroup2, configfs, cramfs, debugfs, devpts, devtmpfs, efivarfs, "
                "erofs, fusectl, hugetlbfs, iso9660, mqueue, nsfs, overlay, proc, pstore, ramfs, romfs, rpc_pipefs, "
                "securityfs, selinuxfs, squashfs, sysfs, tmpfs, tracefs, udf",
         .offset = offsetof(struct disk_config, exclude_types),
         .help = "types (fnmatch patterns) of block-backed filesystems that are not watched; a list set in the "
                 "configuration replaces this default, so keep its entries"},
        /* A local statvfs answers in microseconds and a healthy NFS server in milliseconds;
         * 2 s is a server that does not answer, and stays below the default probe timeout (5s). */
        {.type = NH_CFG_DURATION,
         .key = "statvfs_timeout",
         .def = "2s",
         .offset = offsetof(struct disk_config, statvfs_timeout),
         .help = "how long one filesystem's check may take before OutOfDisk says StatvfsTimeout; keep it "
                 "below the probe's timeout",
         .min = 0.01,
         .max = 600},
        {.type = NH_CFG_BOOL,
         .key = "udev",
         .def = "true",
         .offset = offsetof(struct disk_config, udev),
         .help = "name devices by udev's model and serial, and check again at once on block device events"},
        {0},
};

static const struct nh_condition_decl disk_conditions[] = {
        {.type = "OutOfDisk",
         .healthy_reason = "DiskSpaceAvailable",
         .help = "available space or inodes of a watched filesystem below min_free_percent or "
                 "min_free_inodes_percent"},
        {.type = "ReadonlyFilesystem",
         .healthy_reason = "FilesystemIsNotReadOnly",
         .help = "a watched filesystem that was read-write has become read-only"},
        {0},
};

/* The kubelet's and the container runtimes' state: watched wherever they live. */
static const char *const special_dirs[] = {
        "/var/lib/kubelet",
        "/var/lib/containerd",
        "/var/lib/docker",
        "/var/lib/containers",
};
#define N_SPECIAL (sizeof(special_dirs) / sizeof(special_dirs[0]))

/* ---- checks in helper threads ---- */

/* What the helper threads need besides their jobs; one reference for the probe, one per job. */
struct shared {
        atomic_uint refs;
        int root_fd; /* a duplicate of the host root: the core's may be closed before a thread returns */
        int event_fd; /* signalled when a job finishes; the loop watches it while the probe runs */
};

struct job {
        atomic_uint refs; /* the thread's and the probe's */
        atomic_bool finished; /* set (release) after the results below are written */
        struct shared *shared;
        unsigned holds; /* special_dirs to look for (bits), besides the mount point itself */
        int error; /* 0, or the errno of open() or fstatvfs() */
        unsigned present; /* the special_dirs of `holds` that exist */
        struct statvfs st;
        char path[]; /* the mount point, relative to the root ("." for "/") */
};

static struct shared *shared_ref(struct shared *s) {
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        return s;
}

static struct shared *shared_unref(struct shared *s) {
        if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
                if (s->root_fd >= 0)
                        close(s->root_fd);
                if (s->event_fd >= 0)
                        close(s->event_fd);
                free(s);
        }
        return NULL;
}

static struct job *job_unref(struct job *j) {
        if (j && atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1) {
                shared_unref(j->shared);
                free(j);
        }
        return NULL;
}

/* path (relative) under the root fd, symlinks resolved inside that root when the kernel can. */
static int open_in_root(int root_fd, const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        int fd;

        for (int attempt = 0; attempt < 3; attempt++) {
                fd = (int) syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
                if (fd >= 0 || errno != EAGAIN) /* EAGAIN: a rename raced with RESOLVE_IN_ROOT */
                        break;
        }
        /* Before Linux 5.6, or under a seccomp filter that does not know openat2. */
        if (fd < 0 && (errno == ENOSYS || errno == EPERM))
                fd = openat(root_fd, path, flags | O_CLOEXEC);
        return fd;
}

/* The thread: may block for ever in the kernel; touches only its job and the shared fds. */
static void *job_run(void *userdata) {
        struct job *j = userdata;
        struct stat mount_st, dir_st;
        int fd;

        fd = open_in_root(j->shared->root_fd, j->path, O_PATH | O_DIRECTORY);
        if (fd < 0)
                j->error = errno;
        else {
                if (fstatvfs(fd, &j->st) < 0 || fstat(fd, &mount_st) < 0)
                        j->error = errno;
                close(fd);
        }
        /* A directory is held where it resolves to: a symlink to another disk is not this one's. */
        for (unsigned k = 0; k < N_SPECIAL && !j->error; k++) {
                if (!(j->holds & (1u << k)))
                        continue;
                fd = open_in_root(j->shared->root_fd, special_dirs[k] + 1, O_PATH | O_DIRECTORY);
                if (fd < 0)
                        continue;
                if (fstat(fd, &dir_st) == 0 && dir_st.st_dev == mount_st.st_dev)
                        j->present |= 1u << k;
                close(fd);
        }
        atomic_store_explicit(&j->finished, true, memory_order_release);
        (void) eventfd_write(j->shared->event_fd, 1);
        job_unref(j);
        return NULL;
}

/* ---- state ---- */

enum check_state {
        CHECK_NONE, /* not checked this cycle */
        CHECK_WAITING, /* started this cycle, not answered yet */
        CHECK_DONE, /* answered: error or st below */
        CHECK_TIMEOUT, /* started this cycle, no answer within statvfs_timeout */
        CHECK_HUNG, /* an earlier cycle's check has still not returned */
        CHECK_START_FAILED, /* the thread could not be created: error below */
};

enum {
        WATCH_INCLUDED = 1u << 0, /* include_mounts */
        WATCH_SPECIAL = 1u << 1, /* holds a special dir */
        WATCH_DEFAULT = 1u << 2, /* block-backed, or include_types */
};

/* One line of the mount table, decoded in place in the read buffer: valid for one cycle. */
struct mount_entry {
        unsigned major, minor;
        const char *root; /* of the mount within its filesystem: "/" unless a bind of a subdirectory */
        const char *mount_point;
        const char *fstype;
        const char *source;
        bool mount_ro, super_ro;
        unsigned why; /* WATCH_* */
        unsigned holds; /* special dirs under this mount point (bits) */
        unsigned holds_exact; /* special dirs that are this very mount point */
        struct mount_entry *merged_into; /* the same filesystem is checked at another mount point */
};

/* A watched filesystem, remembered across cycles by its mount point. */
struct mnt {
        char *mount_point;
        char key[PROBLEM_KEY_MAX + 1]; /* the problem key: the mount point, hashed when long */
        char *source, *fstype;
        dev_t devnum;
        bool mount_ro, super_ro;
        bool seen_rw; /* a later read-only is a problem */
        unsigned why, holds, holds_exact;
        unsigned holds_present; /* of holds, the dirs the last answered check found */
        bool holds_known; /* holds_present comes from a check */
        bool current; /* in this cycle's selection */
        bool reported; /* has problems in the condition table */

        struct job *job; /* outstanding check, or NULL */
        pthread_t thread; /* its thread: joined once it has finished, detached by done() if it hangs */
        uint64_t job_started; /* nh_now() */
        enum check_state check;
        int error;
        struct statvfs st;

        bool dev_looked_up;
        char *model, *serial, *devnode;
};

struct disk {
        struct nh_probe_ctx *ctx;
        const struct disk_config *config;
        struct shared *shared;
        char *buf; /* MOUNTINFO_MAX bytes */

        struct mount_entry *entries;
        size_t n_entries, cap_entries;
        struct mnt **mnts; /* current ones in mount table order first, after sync_mounts() */
        size_t n_mnts;
        size_t n_current;

        bool cycle_pending; /* probe() returned NH_PROBE_PENDING and the cycle has not ended */
        size_t waiting; /* checks of this cycle not answered yet */
        bool retrigger; /* a change was seen during the cycle: another one when it ends */
        uint64_t last_cycle_start;

        int mountinfo_fd; /* watched for POLLPRI: the mount table changed */
        struct udev *udev;
        struct udev_monitor *monitor;

        bool report_error_logged;
        char **include_unmatched_logged; /* exact include_mounts entries already said to match nothing */
};

/* ---- formatting ---- */

/* Appends to a message, marking a cut with "…"; never overflows. */
struct text {
        char *buf;
        size_t size, len;
};

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t, const char *format, ...) {
        va_list ap;
        int n;

        if (t->len + 1 >= t->size)
                return;
        va_start(ap, format);
        n = vsnprintf(t->buf + t->len, t->size - t->len, format, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t) n >= t->size - t->len) {
                t->len = t->size - 1;
                if (t->size > 4)
                        memcpy(t->buf + t->size - 4, "…", 4); /* 3 bytes and the NUL */
                return;
        }
        t->len += (size_t) n;
}

/* The first characters of the line at s, non-printable ones as '?': for error messages. */
static const char *excerpt(char *buf, size_t size, const char *s) {
        size_t n = 0;

        for (; s[n] && s[n] != '\n' && n + 1 < size; n++)
                buf[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
        buf[n] = '\0';
        return buf;
}

/* ---- the mount table ---- */

/* Decodes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) in place. */
static int unescape(char *s) {
        char *w = s;

        for (const char *r = s; *r;) {
                unsigned v;

                if (*r != '\\') {
                        *w++ = *r++;
                        continue;
                }
                if (r[1] < '0' || r[1] > '3' || r[2] < '0' || r[2] > '7' || r[3] < '0' || r[3] > '7')
                        return -EINVAL;
                v = (unsigned) (r[1] - '0') << 6 | (unsigned) (r[2] - '0') << 3 | (unsigned) (r[3] - '0');
                if (v == 0)
                        return -EINVAL;
                *w++ = (char) v;
                r += 4;
        }
        *w = '\0';
        return 0;
}

/* A decimal number that fills s up to `end` (a character that must follow it). */
static int parse_unsigned(const char *s, char end, unsigned *ret) {
        unsigned long v;
        char *p;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &p, 10);
        if (errno != 0 || v > UINT32_MAX || *p != end)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static bool has_option(const char *options, const char *option) {
        size_t len = strlen(option);

        for (const char *p = options; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);

                if (n == len && strncmp(p, option, len) == 0)
                        return true;
                p = comma ? comma + 1 : NULL;
        }
        return false;
}

#define MAX_FIELDS 40 /* 10 mandatory fields and the optional ones (shared:, master:, …) */

/*
 * One line of mountinfo (proc(5)), NUL-terminated, split and decoded in place:
 *     36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 */
static int parse_line(char *line, struct mount_entry *e) {
        char *fields[MAX_FIELDS];
        size_t n = 0, sep;
        unsigned id;

        for (char *p = line;;) {
                char *space = strchr(p, ' ');

                if (n == MAX_FIELDS)
                        return -EINVAL;
                fields[n++] = p;
                if (!space)
                        break;
                *space = '\0';
                p = space + 1;
        }
        for (sep = 6; sep < n && strcmp(fields[sep], "-") != 0; sep++)
                ;
        /* Exactly three fields after the separator: type, source (may be empty), super options. */
        if (n < 10 || sep + 4 != n)
                return -EINVAL;
        if (parse_unsigned(fields[0], '\0', &id) < 0 || parse_unsigned(fields[1], '\0', &id) < 0)
                return -EINVAL;
        if (parse_unsigned(fields[2], ':', &e->major) < 0 ||
            parse_unsigned(strchr(fields[2], ':') + 1, '\0', &e->minor) < 0)
                return -EINVAL;
        for (size_t i = 3; i < n; i++)
                if (unescape(fields[i]) < 0)
                        return -EINVAL;
        /* The root is a path, or not: nsfs bind mounts (ip netns) show "net:[4026532185]". */
        if (fields[3][0] == '\0' || fields[4][0] != '/' || fields[5][0] == '\0' || fields[sep + 1][0] == '\0')
                return -EINVAL;
        e->root = fields[3];
        e->mount_point = fields[4];
        e->mount_ro = has_option(fields[5], "ro");
        e->fstype = fields[sep + 1];
        e->source = fields[sep + 2];
        e->super_ro = has_option(fields[sep + 3], "ro");
        return 0;
}

/* Reads and parses the table into d->entries; on failure a message saying what is wrong. */
static int read_mount_table(struct disk *d, char *msg, size_t msg_size) {
        char what[EXCERPT_SIZE];
        size_t len = 0, line_no = 0;
        char *p;
        int r;

        d->n_entries = 0;
        r = nh_read_file(d->ctx, NH_ROOT_PROC, MOUNTINFO_PATH, d->buf, MOUNTINFO_MAX, &len);
        if (r == -EFBIG) {
                snprintf(msg, msg_size, "/proc/" MOUNTINFO_PATH " is larger than %d MiB", MOUNTINFO_MAX / 1024 / 1024);
                return r;
        }
        if (r < 0) {
                snprintf(msg, msg_size, "cannot read /proc/" MOUNTINFO_PATH ": %s", strerror(-r));
                return r;
        }
        if (len == 0) {
                snprintf(msg, msg_size, "/proc/" MOUNTINFO_PATH " is empty");
                return -ENODATA;
        }
        if (d->buf[len - 1] != '\n') {
                snprintf(msg, msg_size, "/proc/" MOUNTINFO_PATH " ends in the middle of a line (truncated)");
                return -EINVAL;
        }
        if (memchr(d->buf, '\0', len)) {
                snprintf(msg, msg_size, "/proc/" MOUNTINFO_PATH " contains NUL bytes: not a mount table");
                return -EINVAL;
        }

        for (p = d->buf; *p;) {
                char *eol = strchr(p, '\n');
                struct mount_entry e = {0};

                line_no++;
                excerpt(what, sizeof(what), p);
                *eol = '\0';
                if (parse_line(p, &e) < 0) {
                        snprintf(msg, msg_size, "/proc/" MOUNTINFO_PATH " line %zu is not a mountinfo line: \"%s\"",
                                 line_no, what);
                        return -EINVAL;
                }
                if (d->n_entries == d->cap_entries) {
                        size_t cap = d->cap_entries ? 2 * d->cap_entries : 64;
                        struct mount_entry *grown = realloc(d->entries, cap * sizeof(*grown));

                        if (!grown) {
                                snprintf(msg, msg_size, "out of memory for %zu mounts", cap);
                                return -ENOMEM;
                        }
                        d->entries = grown;
                        d->cap_entries = cap;
                }
                d->entries[d->n_entries++] = e;
                p = eol + 1;
        }
        return 0;
}

static bool match_any(char *const *patterns, const char *s) {
        for (; patterns && *patterns; patterns++)
                if (fnmatch(*patterns, s, 0) == 0)
                        return true;
        return false;
}

/* Is `prefix` the mount point `path` lies under (or is)? */
static bool is_path_prefix(const char *prefix, const char *path) {
        size_t len = strlen(prefix);

        if (strcmp(prefix, "/") == 0)
                return true;
        return strncmp(path, prefix, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

/* Which filesystem's check stands for the others mounted at several places. */
static unsigned preference(const struct mount_entry *e) {
        return (e->why & WATCH_INCLUDED ? 8u : 0) + (e->holds_exact ? 4u : 0) + (e->holds ? 2u : 0) +
               (strcmp(e->root, "/") == 0 ? 1u : 0);
}

/* Marks each entry's why/holds and merges the mounts of one filesystem. */
static void select_mounts(struct disk *d) {
        const struct disk_config *c = d->config;

        for (size_t i = 0; i < d->n_entries; i++) {
                struct mount_entry *e = &d->entries[i];

                if (match_any(c->include_mounts, e->mount_point))
                        e->why |= WATCH_INCLUDED;
                else if (((strncmp(e->source, "/dev/", 5) == 0 && !match_any(c->exclude_types, e->fstype)) ||
                          match_any(c->include_types, e->fstype)) &&
                         !match_any(c->exclude_mounts, e->mount_point))
                        e->why |= WATCH_DEFAULT;
        }

        for (unsigned k = 0; k < N_SPECIAL; k++) {
                struct mount_entry *holder = NULL;

                /* The deepest mount point above the directory; of equal ones the last mounted. */
                for (size_t i = 0; i < d->n_entries; i++) {
                        struct mount_entry *e = &d->entries[i];

                        if (is_path_prefix(e->mount_point, special_dirs[k]) &&
                            (!holder || strlen(e->mount_point) >= strlen(holder->mount_point)))
                                holder = e;
                }
                if (!holder || (!(holder->why & WATCH_INCLUDED) && match_any(c->exclude_mounts, holder->mount_point)))
                        continue;
                holder->why |= WATCH_SPECIAL;
                holder->holds |= 1u << k;
                if (strcmp(holder->mount_point, special_dirs[k]) == 0)
                        holder->holds_exact |= 1u << k;
        }

        for (size_t i = 0; i < d->n_entries; i++) {
                struct mount_entry *e = &d->entries[i];

                if (!e->why)
                        continue;
                /* Mounted over later: what the path reaches is the later mount. */
                for (size_t j = i + 1; j < d->n_entries; j++)
                        if (strcmp(d->entries[j].mount_point, e->mount_point) == 0) {
                                e->why = 0;
                                break;
                        }
                if (!e->why)
                        continue;
                /* One check per filesystem (major:minor names its superblock, bind mounts included). */
                for (size_t j = 0; j < i; j++) {
                        struct mount_entry *o = &d->entries[j];

                        if (!o->why || o->merged_into || o->major != e->major || o->minor != e->minor)
                                continue;
                        if (preference(e) > preference(o)) {
                                e->why |= o->why;
                                e->holds |= o->holds;
                                e->holds_exact |= o->holds_exact;
                                for (size_t m = 0; m < i; m++)
                                        if (d->entries[m].merged_into == o)
                                                d->entries[m].merged_into = e;
                                o->merged_into = e;
                        } else {
                                o->why |= e->why;
                                o->holds |= e->holds;
                                o->holds_exact |= e->holds_exact;
                                e->merged_into = o;
                        }
                        break;
                }
        }
}

/* ---- remembered mounts ---- */

/* The mount point, or for a long one its start and a hash: the core keeps keys short. */
static void make_key(char *key, const char *mount_point) {
        uint64_t h = UINT64_C(14695981039346656037);

        if (strlen(mount_point) <= PROBLEM_KEY_MAX) {
                snprintf(key, PROBLEM_KEY_MAX + 1, "%s", mount_point);
                return;
        }
        for (const char *p = mount_point; *p; p++)
                h = (h ^ (unsigned char) *p) * UINT64_C(1099511628211); /* FNV-1a */
        snprintf(key, PROBLEM_KEY_MAX + 1, "%.44s…#%016llx", mount_point, (unsigned long long) h);
}

static void mnt_forget_device(struct mnt *m) {
        free(m->model);
        free(m->serial);
        free(m->devnode);
        m->model = m->serial = m->devnode = NULL;
        m->dev_looked_up = false;
}

/* A thread whose check has not finished is detached and keeps its job (see done()). */
static struct mnt *mnt_free(struct mnt *m) {
        if (!m)
                return NULL;
        if (m->job) {
                if (atomic_load_explicit(&m->job->finished, memory_order_acquire))
                        (void) pthread_join(m->thread, NULL);
                else
                        (void) pthread_detach(m->thread);
        }
        job_unref(m->job);
        mnt_forget_device(m);
        free(m->mount_point);
        free(m->source);
        free(m->fstype);
        free(m);
        return NULL;
}

static int set_string(char **dst, const char *src) {
        char *copy;

        if (*dst && strcmp(*dst, src) == 0)
                return 0;
        copy = strdup(src);
        if (!copy)
                return -ENOMEM;
        free(*dst);
        *dst = copy;
        return 0;
}

static struct mnt *find_mnt(struct disk *d, const char *mount_point) {
        for (size_t i = 0; i < d->n_mnts; i++)
                if (strcmp(d->mnts[i]->mount_point, mount_point) == 0)
                        return d->mnts[i];
        return NULL;
}

/* Forgets gone mounts beyond the bound, oldest first, but never one whose check still runs. */
static void forget_gone(struct disk *d) {
        size_t kept = 0;
        size_t excess = d->n_mnts > MAX_MOUNTS_KEPT ? d->n_mnts - MAX_MOUNTS_KEPT : 0;

        for (size_t i = 0; i < d->n_mnts; i++) {
                struct mnt *m = d->mnts[i];
                bool forget = !m->current && !m->job && (!m->reported || excess > 0);

                if (forget) {
                        if (m->reported)
                                excess--;
                        mnt_free(m);
                        continue;
                }
                d->mnts[kept++] = m;
        }
        d->n_mnts = kept;
}

/* Makes d->mnts match this cycle's selection, current ones first in mount table order. */
static int sync_mounts(struct disk *d) {
        size_t n_current = 0;

        for (size_t i = 0; i < d->n_mnts; i++)
                d->mnts[i]->current = false;

        for (size_t i = 0; i < d->n_entries; i++) {
                const struct mount_entry *e = &d->entries[i];
                struct mnt *m;
                dev_t devnum;

                if (!e->why || e->merged_into)
                        continue;
                m = find_mnt(d, e->mount_point);
                if (!m) {
                        struct mnt **grown = realloc(d->mnts, (d->n_mnts + 1) * sizeof(*grown));

                        if (!grown)
                                return -ENOMEM;
                        d->mnts = grown;
                        m = calloc(1, sizeof(*m));
                        if (!m)
                                return -ENOMEM;
                        m->mount_point = strdup(e->mount_point);
                        if (!m->mount_point) {
                                free(m);
                                return -ENOMEM;
                        }
                        make_key(m->key, m->mount_point);
                        d->mnts[d->n_mnts++] = m;
                }
                if (set_string(&m->source, e->source) < 0 || set_string(&m->fstype, e->fstype) < 0)
                        return -ENOMEM;
                devnum = makedev(e->major, e->minor);
                if (devnum != m->devnum)
                        mnt_forget_device(m);
                if (e->holds != m->holds)
                        m->holds_known = false;
                m->devnum = devnum;
                m->mount_ro = e->mount_ro;
                m->super_ro = e->super_ro;
                m->why = e->why;
                m->holds = e->holds;
                m->holds_exact = e->holds_exact;
                m->current = true;
                m->check = CHECK_NONE;

                /* Current ones first, in mount table order: the order of reports and summaries. */
                for (size_t j = n_current; j < d->n_mnts; j++)
                        if (d->mnts[j] == m) {
                                d->mnts[j] = d->mnts[n_current];
                                d->mnts[n_current++] = m;
                                break;
                        }
        }
        d->n_current = n_current;
        forget_gone(d);
        return 0;
}

/* Watched only because a special dir might lie under it, and that is not known to be so. */
static bool reportable(const struct mnt *m) {
        unsigned held = m->holds & ~m->holds_exact;

        if (m->why & (WATCH_INCLUDED | WATCH_DEFAULT) || m->holds_exact)
                return true;
        if (!m->holds_known)
                return m->check == CHECK_TIMEOUT || m->check == CHECK_HUNG || m->check == CHECK_START_FAILED;
        return (m->holds_present & held) != 0;
}

/* ---- udev ---- */

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Copies a udev value: \xNN decoded (ID_MODEL_ENC), '_' as ' ' when asked (ID_MODEL), trimmed. */
static char *clean_udev_value(const char *v, bool underscores) {
        size_t n = 0, start = 0, len = strlen(v);
        char *out = malloc(len + 1);

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                unsigned c = (unsigned char) v[i];

                if (c == '\\' && i + 3 < len && v[i + 1] == 'x' && hex_digit(v[i + 2]) >= 0 &&
                    hex_digit(v[i + 3]) >= 0) {
                        c = (unsigned) (hex_digit(v[i + 2]) << 4 | hex_digit(v[i + 3]));
                        i += 3;
                }
                if (underscores && c == '_')
                        c = ' ';
                out[n++] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        while (n > 0 && out[n - 1] == ' ')
                n--;
        while (start < n && out[start] == ' ')
                start++;
        if (start == n) {
                free(out);
                return NULL;
        }
        memmove(out, out + start, n - start);
        out[n - start] = '\0';
        return out;
}

/* ID_MODEL_ENC keeps the model's spaces (ID_MODEL has '_' for them); ID_SERIAL_SHORT lacks the vendor. */
static void udev_names(struct udev_device *dev, struct mnt *m) {
        const char *v;

        if (!m->model && (v = udev_device_get_property_value(dev, "ID_MODEL_ENC")))
                m->model = clean_udev_value(v, false);
        if (!m->model && (v = udev_device_get_property_value(dev, "ID_MODEL")))
                m->model = clean_udev_value(v, true);
        if (!m->serial && (v = udev_device_get_property_value(dev, "ID_SERIAL_SHORT")))
                m->serial = clean_udev_value(v, false);
}

/* Model and serial from udev's database (the partition's, else its disk's), else from sysfs. */
static void lookup_device(struct disk *d, struct mnt *m) {
        struct udev_device *dev, *disk;
        const char *v;

        if (m->dev_looked_up)
                return;
        m->dev_looked_up = true;
        if (!d->udev || major(m->devnum) == 0)
                return;
        dev = udev_device_new_from_devnum(d->udev, 'b', m->devnum);
        if (!dev)
                return;
        if ((v = udev_device_get_devnode(dev)))
                m->devnode = strdup(v);
        udev_names(dev, m);
        v = udev_device_get_devtype(dev);
        disk = v && strcmp(v, "partition") == 0 ? udev_device_get_parent_with_subsystem_devtype(dev, "block", "disk")
                                                : dev;
        if (disk && disk != dev)
                udev_names(disk, m);

        /* Without udevd (a container without /run/udev) sysfs still knows most disks. */
        if (disk && !m->model && (v = udev_device_get_sysattr_value(disk, "device/model")))
                m->model = clean_udev_value(v, false);
        if (disk && !m->serial && (v = udev_device_get_sysattr_value(disk, "serial")))
                m->serial = clean_udev_value(v, false);
        if (disk && !m->serial && (v = udev_device_get_sysattr_value(disk, "device/serial")))
                m->serial = clean_udev_value(v, false);
        udev_device_unref(dev);
}

/* "/var/lib/kubelet on /dev/vdb1 (QEMU HARDDISK, serial QM00002), holding /var/lib/containerd" */
static const char *describe(struct disk *d, struct mnt *m, char *buf, size_t size) {
        struct text t = {buf, size, 0};
        const char *source = m->source[0] ? m->source : m->fstype;
        unsigned held = m->holds & ~m->holds_exact & (m->holds_known ? m->holds_present : 0);
        unsigned n = 0, count = (unsigned) __builtin_popcount(held);

        buf[0] = '\0';
        lookup_device(d, m);
        if (strcmp(source, "/dev/root") == 0 && m->devnode)
                source = m->devnode;
        text_add(&t, "%s on %s", m->mount_point, source);
        if (m->model && m->serial)
                text_add(&t, " (%s, serial %s)", m->model, m->serial);
        else if (m->model || m->serial)
                text_add(&t, " (%s%s)", m->serial ? "serial " : "", m->model ? m->model : m->serial);
        for (unsigned k = 0; k < N_SPECIAL; k++)
                if (held & (1u << k)) {
                        text_add(&t, "%s%s", n == 0 ? ", holding " : n + 1 == count ? " and " : ", ", special_dirs[k]);
                        n++;
                }
        return buf;
}

/* ---- reports ---- */

static void report(struct disk *d, const char *type, const char *problem, enum nh_status status, const char *reason,
                   const char *message) {
        int r = nh_report(d->ctx, &(struct nh_observation){
                                          .type = type,
                                          .problem = problem,
                                          .status = status,
                                          .reason = reason,
                                          .message = message,
                                  });

        if (r < 0 && !d->report_error_logged) {
                nh_log(d->ctx, NH_LOG_WARNING, "report of %s for %s refused: %s", type, problem, strerror(-r));
                d->report_error_logged = true;
        }
}

/* Available space as a percentage of the size; f_blocks > 0. */
static double space_percent(const struct statvfs *st) {
        return st->f_bavail >= st->f_blocks ? 100.0 : 100.0 * (double) st->f_bavail / (double) st->f_blocks;
}

static void report_space(struct disk *d, struct mnt *m) {
        const struct disk_config *c = d->config;
        char msg[MESSAGE_SIZE], what[MESSAGE_SIZE / 2], span[32], avail_text[32], total_text[32], pct[32];
        char space_text[160], inode_text[160] = "";
        const struct statvfs *st = &m->st;
        bool low_space, low_inodes = false;
        uint64_t frsize;
        double percent;

        describe(d, m, what, sizeof(what));
        switch (m->check) {
        case CHECK_DONE:
                break;
        case CHECK_TIMEOUT:
                snprintf(msg, sizeof(msg),
                         "statvfs of %s has not returned within %s (statvfs_timeout): a dead NFS server or a hung "
                         "device? Free space unknown",
                         what, probe_format_setting(span, sizeof(span), c->statvfs_timeout));
                report(d, "OutOfDisk", m->key, NH_STATUS_UNKNOWN, "StatvfsTimeout", msg);
                return;
        case CHECK_HUNG:
                snprintf(msg, sizeof(msg),
                         "statvfs of %s has not returned for %s; no new check until it does. Free space unknown", what,
                         probe_format_span(span, sizeof(span), nh_now(d->ctx) - m->job_started));
                report(d, "OutOfDisk", m->key, NH_STATUS_UNKNOWN, "StatvfsTimeout", msg);
                return;
        case CHECK_START_FAILED:
                snprintf(msg, sizeof(msg), "cannot start a check of %s: %s", what, strerror(m->error));
                report(d, "OutOfDisk", m->key, NH_STATUS_UNKNOWN, "StatvfsFailed", msg);
                return;
        default:
                return;
        }
        if (m->error) {
                snprintf(msg, sizeof(msg), "cannot check free space of %s: %s", what, strerror(m->error));
                report(d, "OutOfDisk", m->key, NH_STATUS_UNKNOWN, "StatvfsFailed", msg);
                return;
        }
        if (st->f_blocks == 0) {
                /* Some FUSE and network filesystems report no size: there is nothing to run out of. */
                snprintf(msg, sizeof(msg), "%s reports no size (statvfs: 0 blocks)", what);
                report(d, "OutOfDisk", m->key, NH_STATUS_FALSE, NULL, msg);
                return;
        }

        frsize = st->f_frsize ? st->f_frsize : st->f_bsize;
        percent = space_percent(st);
        low_space = percent < c->min_free_percent;
        snprintf(space_text, sizeof(space_text), "%s free of %s (%s)%s",
                 probe_format_bytes(avail_text, sizeof(avail_text), (uint64_t) st->f_bavail * frsize),
                 probe_format_bytes(total_text, sizeof(total_text), (uint64_t) st->f_blocks * frsize),
                 probe_format_percent(pct, sizeof(pct), percent, c->min_free_percent), low_space ? ", below " : "");
        if (low_space)
                snprintf(space_text + strlen(space_text), sizeof(space_text) - strlen(space_text), "%g%%",
                         c->min_free_percent);

        /* A filesystem without an inode limit (btrfs) says 0 inodes: nothing to check. */
        if (st->f_files > 0) {
                percent = st->f_favail >= st->f_files ? 100.0 : 100.0 * (double) st->f_favail / (double) st->f_files;
                low_inodes = percent < c->min_free_inodes_percent;
                snprintf(inode_text, sizeof(inode_text), "%llu of %llu inodes free (%s)%s",
                         (unsigned long long) st->f_favail, (unsigned long long) st->f_files,
                         probe_format_percent(pct, sizeof(pct), percent, c->min_free_inodes_percent),
                         low_inodes ? ", below " : "");
                if (low_inodes)
                        snprintf(inode_text + strlen(inode_text), sizeof(inode_text) - strlen(inode_text), "%g%%",
                                 c->min_free_inodes_percent);
        }

        if (low_inodes && !low_space) {
                snprintf(msg, sizeof(msg), "%s: %s; %s", what, inode_text, space_text);
                report(d, "OutOfDisk", m->key, NH_STATUS_TRUE, "OutOfInodes", msg);
                return;
        }
        snprintf(msg, sizeof(msg), "%s: %s%s%s", what, space_text, inode_text[0] ? "; " : "", inode_text);
        if (low_space)
                report(d, "OutOfDisk", m->key, NH_STATUS_TRUE, "OutOfDisk", msg);
        else
                report(d, "OutOfDisk", m->key, NH_STATUS_FALSE, NULL, msg);
}

static void report_readonly(struct disk *d, struct mnt *m) {
        char msg[MESSAGE_SIZE], what[MESSAGE_SIZE / 2];

        describe(d, m, what, sizeof(what));
        if (!m->mount_ro && !m->super_ro) {
                snprintf(msg, sizeof(msg), "%s is read-write", what);
                report(d, "ReadonlyFilesystem", m->key, NH_STATUS_FALSE, NULL, msg);
                return;
        }
        if (!m->mount_ro) {
                snprintf(msg, sizeof(msg),
                         "%s is read-only: the filesystem (superblock options \"ro\") went read-only under a "
                         "read-write mount, as errors=remount-ro does after an I/O or metadata error",
                         what);
                report(d, "ReadonlyFilesystem", m->key, NH_STATUS_TRUE, "FilesystemIsReadOnly", msg);
                return;
        }
        if (m->seen_rw) {
                snprintf(msg, sizeof(msg), "%s is read-only now (mount options \"ro\"); it was read-write before",
                         what);
                report(d, "ReadonlyFilesystem", m->key, NH_STATUS_TRUE, "FilesystemIsReadOnly", msg);
                return;
        }
        snprintf(msg, sizeof(msg), "%s is read-only since it was first seen: mounted read-only by design", what);
        report(d, "ReadonlyFilesystem", m->key, NH_STATUS_FALSE, NULL, msg);
}

/* Every problem known so far says the same Unknown: nothing current can be told. */
static void report_all_unknown(struct disk *d, const char *reason, const char *message) {
        report(d, "OutOfDisk", SUMMARY_PROBLEM, NH_STATUS_UNKNOWN, reason, message);
        report(d, "ReadonlyFilesystem", SUMMARY_PROBLEM, NH_STATUS_UNKNOWN, reason, message);
        for (size_t i = 0; i < d->n_mnts; i++)
                if (d->mnts[i]->reported) {
                        report(d, "OutOfDisk", d->mnts[i]->key, NH_STATUS_UNKNOWN, reason, message);
                        report(d, "ReadonlyFilesystem", d->mnts[i]->key, NH_STATUS_UNKNOWN, reason, message);
                }
}

static bool in_mount_table(struct disk *d, const char *mount_point) {
        for (size_t i = 0; i < d->n_entries; i++)
                if (strcmp(d->entries[i].mount_point, mount_point) == 0)
                        return true;
        return false;
}

/* The end of a cycle: the summaries first (their text is the conditions' while all is well). */
static void report_cycle(struct disk *d) {
        const struct disk_config *c = d->config;
        char space_msg[MESSAGE_SIZE], ro_msg[MESSAGE_SIZE], gone_msg[MESSAGE_SIZE], pct[32];
        struct text space = {space_msg, sizeof(space_msg), 0}, ro = {ro_msg, sizeof(ro_msg), 0};
        size_t n_watched = 0, n_by_design = 0;

        for (size_t i = 0; i < d->n_current; i++) {
                struct mnt *m = d->mnts[i];

                if (!reportable(m))
                        continue;
                n_watched++;
                if (!m->mount_ro && !m->super_ro)
                        m->seen_rw = true;
                n_by_design += m->mount_ro && !m->seen_rw;
        }
        if (n_watched == 0) {
                report(d, "OutOfDisk", SUMMARY_PROBLEM, NH_STATUS_UNKNOWN, "NoFilesystemWatched",
                       "no mount in /proc/" MOUNTINFO_PATH " matches the rules (block devices whose type is not in "
                       "exclude_types, include_mounts, include_types, the kubelet's and container runtimes' "
                       "directories): nothing to check");
                report(d, "ReadonlyFilesystem", SUMMARY_PROBLEM, NH_STATUS_UNKNOWN, "NoFilesystemWatched",
                       "no mount in /proc/" MOUNTINFO_PATH " matches the rules: nothing to check");
        } else {
                text_add(&space,
                         "watching %zu filesystem%s, none below %g%% free space or %g%% free inodes:", n_watched,
                         n_watched == 1 ? "" : "s", c->min_free_percent, c->min_free_inodes_percent);
                text_add(&ro, "none of the %zu watched filesystem%s went read-only", n_watched,
                         n_watched == 1 ? "" : "s");
                if (n_by_design > 0)
                        text_add(&ro, " (read-only from the start:");
                for (size_t i = 0, n = 0, k = 0; i < d->n_current; i++) {
                        struct mnt *m = d->mnts[i];
                        bool figures = m->check == CHECK_DONE && !m->error && m->st.f_blocks > 0;

                        if (!reportable(m))
                                continue;
                        if (figures)
                                text_add(&space, "%s %s (%s free)", n++ ? "," : "", m->mount_point,
                                         probe_format_percent(pct, sizeof(pct), space_percent(&m->st),
                                                              c->min_free_percent));
                        else
                                text_add(&space, "%s %s (%s)", n++ ? "," : "", m->mount_point,
                                         m->check == CHECK_DONE && !m->error ? "no size" : "not checked");
                        if (m->mount_ro && !m->seen_rw)
                                text_add(&ro, "%s %s", k++ ? "," : "", m->mount_point);
                }
                if (n_by_design > 0)
                        text_add(&ro, ")");
                report(d, "OutOfDisk", SUMMARY_PROBLEM, NH_STATUS_FALSE, NULL, space_msg);
                report(d, "ReadonlyFilesystem", SUMMARY_PROBLEM, NH_STATUS_FALSE, NULL, ro_msg);
        }

        for (size_t i = 0; i < d->n_current; i++) {
                struct mnt *m = d->mnts[i];

                if (!reportable(m))
                        continue;
                report_space(d, m);
                report_readonly(d, m);
                m->reported = true;
        }

        /* Gone (or no longer watched) filesystems: their last verdict must not linger. */
        for (size_t i = 0; i < d->n_mnts; i++) {
                struct mnt *m = d->mnts[i];

                if (!m->reported || (m->current && reportable(m)))
                        continue;
                snprintf(gone_msg, sizeof(gone_msg), "%s is no longer %s", m->mount_point,
                         in_mount_table(d, m->mount_point) ? "watched" : "mounted");
                report(d, "OutOfDisk", m->key, NH_STATUS_FALSE, NULL, gone_msg);
                report(d, "ReadonlyFilesystem", m->key, NH_STATUS_FALSE, NULL, gone_msg);
        }
}

/* ---- the cycle ---- */

static void request_cycle(struct disk *d);

static void on_spacing_timer(struct nh_probe_ctx *ctx, void *userdata) {
        nh_trigger(ctx);
}

/* A change was seen: a cycle now, or once TRIGGER_SPACING has passed since the last one. */
static void request_cycle(struct disk *d) {
        uint64_t now = nh_now(d->ctx), since = now - d->last_cycle_start;

        if (d->cycle_pending) {
                d->retrigger = true;
                return;
        }
        if (d->last_cycle_start == 0 || now < d->last_cycle_start || since >= TRIGGER_SPACING)
                nh_trigger(d->ctx);
        else
                (void) nh_set_timer(d->ctx, TRIGGER_SPACING - since, on_spacing_timer, d);
}

static void end_cycle(struct disk *d) {
        (void) nh_set_timer(d->ctx, 0, NULL, NULL);
        report_cycle(d);
        d->cycle_pending = false;
        d->waiting = 0;
        nh_cycle_done(d->ctx);
        if (d->retrigger) {
                d->retrigger = false;
                request_cycle(d);
        }
}

/* Takes the results of finished checks; ends the cycle when none of its checks is left. */
static void collect(struct disk *d) {
        char span[32];

        for (size_t i = 0; i < d->n_mnts; i++) {
                struct mnt *m = d->mnts[i];
                struct job *j = m->job;

                if (!j || !atomic_load_explicit(&j->finished, memory_order_acquire))
                        continue;
                /* It has finished its work and is about to exit: joining takes microseconds, and
                 * afterwards no thread runs this object's code (see done()). */
                (void) pthread_join(m->thread, NULL);
                if (m->check == CHECK_WAITING) {
                        m->check = CHECK_DONE;
                        m->error = j->error;
                        m->st = j->st;
                        if (!j->error) {
                                m->holds_present = j->present;
                                m->holds_known = true;
                        }
                        d->waiting--;
                } else
                        nh_log(d->ctx, NH_LOG_NOTICE, "statvfs of %s returned after %s%s%s", m->mount_point,
                               probe_format_span(span, sizeof(span), nh_now(d->ctx) - m->job_started),
                               j->error ? ": " : "", j->error ? strerror(j->error) : "");
                m->job = job_unref(j);
        }
        if (d->cycle_pending && d->waiting == 0)
                end_cycle(d);
}

static void on_job_done(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct disk *d = userdata;
        eventfd_t n;

        (void) eventfd_read(fd, &n);
        collect(d);
}

static void on_deadline(struct nh_probe_ctx *ctx, void *userdata) {
        struct disk *d = userdata;
        char span[32];

        collect(d); /* an answer may be in the eventfd still */
        if (!d->cycle_pending)
                return;
        for (size_t i = 0; i < d->n_mnts; i++) {
                struct mnt *m = d->mnts[i];

                if (m->check != CHECK_WAITING)
                        continue;
                m->check = CHECK_TIMEOUT;
                nh_log(ctx, NH_LOG_WARNING,
                       "statvfs of %s has not returned within %s; no further check of it until it does", m->mount_point,
                       probe_format_setting(span, sizeof(span), d->config->statvfs_timeout));
        }
        end_cycle(d);
}

static void start_check(struct disk *d, struct mnt *m) {
        size_t len = strlen(m->mount_point);
        pthread_attr_t attr;
        sigset_t all, old;
        struct job *j;
        int r;

        if (m->job) {
                m->check = CHECK_HUNG;
                return;
        }
        j = calloc(1, sizeof(*j) + len + 2);
        if (!j) {
                m->check = CHECK_START_FAILED;
                m->error = ENOMEM;
                return;
        }
        atomic_init(&j->refs, 2);
        atomic_init(&j->finished, false);
        j->shared = shared_ref(d->shared);
        j->holds = m->holds & ~m->holds_exact;
        if (len > 1)
                memcpy(j->path, m->mount_point + 1, len); /* with its NUL */
        else
                memcpy(j->path, ".", 2);

        r = pthread_attr_init(&attr);
        if (r == 0) {
                (void) pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
                /* Signals belong to the loop's thread (signalfd): none for the helpers. */
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                r = pthread_create(&m->thread, &attr, job_run, j);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                atomic_store(&j->refs, 1);
                job_unref(j);
                m->check = CHECK_START_FAILED;
                m->error = r;
                return;
        }
        m->job = j;
        m->job_started = nh_now(d->ctx);
        m->check = CHECK_WAITING;
        d->waiting++;
}

/* Exact include_mounts entries that match no mount: said once each, they may come later. */
static void log_unmatched_includes(struct disk *d) {
        for (char **p = d->config->include_mounts; p && *p; p++) {
                bool found = false;

                if (strpbrk(*p, "*?["))
                        continue;
                for (size_t i = 0; i < d->n_entries && !found; i++)
                        found = strcmp(d->entries[i].mount_point, *p) == 0;
                for (char **l = d->include_unmatched_logged; l && *l && !found; l++)
                        found = *l == *p;
                if (found)
                        continue;
                nh_log(d->ctx, NH_LOG_NOTICE, "include_mounts lists %s, which is not a mount point (yet)", *p);
                for (size_t n = 0;; n++)
                        if (!d->include_unmatched_logged[n]) {
                                d->include_unmatched_logged[n] = *p;
                                break;
                        }
        }
}

static int disk_probe(struct nh_probe_ctx *ctx, void *state) {
        struct disk *d = state;
        char msg[MESSAGE_SIZE];
        int r;

        if (d->cycle_pending) {
                /* The core ended our last cycle (its timeout): what it waited for hangs. */
                for (size_t i = 0; i < d->n_mnts; i++)
                        if (d->mnts[i]->check == CHECK_WAITING)
                                d->mnts[i]->check = CHECK_TIMEOUT;
                d->cycle_pending = false;
                d->waiting = 0;
        }
        (void) nh_set_timer(ctx, 0, NULL, NULL); /* a spacing timer: this is the cycle it asked for */
        d->retrigger = false;
        d->last_cycle_start = nh_now(ctx);
        collect(d); /* checks that returned since: their filesystems may be checked again */

        r = read_mount_table(d, msg, sizeof(msg));
        if (r < 0) {
                report_all_unknown(d, "MountTableUnreadable", msg);
                return 0;
        }
        select_mounts(d);
        log_unmatched_includes(d);
        r = sync_mounts(d);
        if (r < 0)
                return r;

        for (size_t i = 0; i < d->n_current; i++)
                start_check(d, d->mnts[i]);
        if (d->waiting == 0) {
                report_cycle(d);
                return 0;
        }
        r = nh_set_timer(ctx, d->config->statvfs_timeout, on_deadline, d);
        if (r < 0) {
                /* Nothing would end the wait: the checks started count as hung until they return. */
                for (size_t i = 0; i < d->n_current; i++)
                        if (d->mnts[i]->check == CHECK_WAITING)
                                d->mnts[i]->check = CHECK_TIMEOUT;
                d->waiting = 0;
                nh_log(ctx, NH_LOG_ERR, "cannot arm the statvfs deadline: %s", strerror(-r));
                return r;
        }
        d->cycle_pending = true;
        return NH_PROBE_PENDING;
}

/* ---- change notifications ---- */

static void on_mount_change(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        request_cycle(userdata);
}

static void on_udev_event(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct disk *d = userdata;
        struct udev_device *dev;
        bool relevant = false;

        for (unsigned n = 0; n < UDEV_EVENTS_PER_WAKEUP && (dev = udev_monitor_receive_device(d->monitor)); n++) {
                const char *action = udev_device_get_action(dev);

                if (action &&
                    (strcmp(action, "add") == 0 || strcmp(action, "remove") == 0 || strcmp(action, "change") == 0))
                        relevant = true;
                udev_device_unref(dev);
        }
        if (!relevant)
                return;
        /* A model or a serial may have changed with the device: look them up again. */
        for (size_t i = 0; i < d->n_mnts; i++)
                mnt_forget_device(d->mnts[i]);
        request_cycle(d);
}

static void watch_mount_table(struct disk *d) {
        int fd, r;

        fd = openat(nh_root_fd(d->ctx, NH_ROOT_PROC), MOUNTINFO_PATH, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                nh_log(d->ctx, NH_LOG_INFO, "mount table changes are not watched (cannot open /proc/%s: %s)",
                       MOUNTINFO_PATH, strerror(errno));
                return;
        }
        /* The kernel flags POLLPRI|POLLERR on mountinfo when the namespace's mounts change. */
        r = nh_watch_fd(d->ctx, fd, EPOLLPRI | EPOLLERR, on_mount_change, d);
        if (r < 0) {
                /* A fixture's plain file cannot be polled: EPERM. */
                nh_log(d->ctx, NH_LOG_INFO, "mount table changes are not watched (/proc/%s: %s)", MOUNTINFO_PATH,
                       strerror(-r));
                close(fd);
                return;
        }
        d->mountinfo_fd = fd;
}

static void start_udev(struct disk *d) {
        int r;

        if (access("/run/udev", F_OK) < 0)
                nh_log(d->ctx, NH_LOG_NOTICE,
                       "udev does not run here (no /run/udev): device models and serials only as sysfs knows them");
        d->udev = udev_new();
        if (!d->udev) {
                nh_log(d->ctx, NH_LOG_NOTICE, "cannot use libudev (%s): devices are named by their mount sources only",
                       strerror(errno));
                return;
        }
        d->monitor = udev_monitor_new_from_netlink(d->udev, "udev");
        if (!d->monitor) {
                r = -errno;
                goto fail;
        }
        r = udev_monitor_filter_add_match_subsystem_devtype(d->monitor, "block", NULL);
        if (r >= 0)
                r = udev_monitor_enable_receiving(d->monitor);
        if (r >= 0)
                r = nh_watch_fd(d->ctx, udev_monitor_get_fd(d->monitor), EPOLLIN, on_udev_event, d);
        if (r >= 0)
                return;
fail:
        nh_log(d->ctx, NH_LOG_NOTICE, "no udev monitor (%s): block device changes are seen at the next interval",
               strerror(r < 0 ? -r : EIO));
        d->monitor = udev_monitor_unref(d->monitor);
}

/* ---- the descriptor's callbacks ---- */

static int check_patterns(struct nh_probe_ctx *ctx, const char *key, char *const *patterns, bool paths) {
        for (; patterns && *patterns; patterns++)
                if (paths ? (*patterns)[0] != '/' && (*patterns)[0] != '*' : (*patterns)[0] == '\0') {
                        nh_log(ctx, NH_LOG_ERR, "%s: \"%s\" is not %s", key, *patterns,
                               paths ? "an absolute mount point or a pattern starting with \"/\" or \"*\""
                                     : "a filesystem type");
                        return -EINVAL;
                }
        return 0;
}

static void disk_done(void *state);

static int disk_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct disk_config *c = config;
        struct disk *d;
        size_t n_includes = 0;
        int r, root_fd;

        if (check_patterns(ctx, "include_mounts", c->include_mounts, true) < 0 ||
            check_patterns(ctx, "exclude_mounts", c->exclude_mounts, true) < 0 ||
            check_patterns(ctx, "include_types", c->include_types, false) < 0 ||
            check_patterns(ctx, "exclude_types", c->exclude_types, false) < 0)
                return -EINVAL;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->ctx = ctx;
        d->config = c;
        d->mountinfo_fd = -1;
        for (char **p = c->include_mounts; p && *p; p++)
                n_includes++;
        d->include_unmatched_logged = calloc(n_includes + 1, sizeof(char *));
        d->buf = malloc(MOUNTINFO_MAX);
        d->shared = calloc(1, sizeof(*d->shared));
        if (!d->include_unmatched_logged || !d->buf || !d->shared) {
                r = -ENOMEM;
                goto fail;
        }
        atomic_init(&d->shared->refs, 1);
        d->shared->root_fd = d->shared->event_fd = -1;
        root_fd = nh_root_fd(ctx, NH_ROOT_HOST);
        if (root_fd < 0) {
                r = root_fd;
                goto fail;
        }
        d->shared->root_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        d->shared->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->shared->root_fd < 0 || d->shared->event_fd < 0) {
                r = -errno;
                goto fail;
        }
        /* The checks answer through the loop: without one the probe cannot work. */
        r = nh_watch_fd(ctx, d->shared->event_fd, EPOLLIN, on_job_done, d);
        if (r < 0) {
                nh_log(ctx, NH_LOG_ERR, "cannot watch the helper threads' eventfd: %s", strerror(-r));
                goto fail;
        }
        watch_mount_table(d);
        if (c->udev)
                start_udev(d);
        *ret_state = d;
        return 0;
fail:
        disk_done(d);
        return r;
}

/*
 * A thread that outlives the probe returns into this object: keep it mapped after dlclose().
 * The handle dlopen() returns is never closed, on purpose: RTLD_NODELETE makes it for good.
 */
static void pin_module(struct disk *d) {
        Dl_info info;

        if (dladdr((void *) pin_module, &info) == 0 || !info.dli_fname ||
            !dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE))
                nh_log(d->ctx, NH_LOG_WARNING, "cannot keep the disk plugin loaded for its hanging checks: %s",
                       dlerror());
}

static void disk_done(void *state) {
        struct disk *d = state;
        bool outstanding = false;

        if (!d)
                return;
        for (size_t i = 0; i < d->n_mnts; i++) {
                /* A check still running now belongs to its thread alone (job, root fd, eventfd). */
                outstanding |= d->mnts[i]->job && !atomic_load(&d->mnts[i]->job->finished);
                mnt_free(d->mnts[i]);
        }
        if (outstanding)
                pin_module(d);
        free(d->mnts);
        if (d->mountinfo_fd >= 0)
                close(d->mountinfo_fd); /* the core ended its watch before calling done() */
        udev_monitor_unref(d->monitor);
        udev_unref(d->udev);
        shared_unref(d->shared); /* the eventfd and root fd live on while a thread holds them */
        free(d->entries);
        free(d->buf);
        free(d->include_unmatched_logged);
        free(d);
}

NH_PLUGIN_DEFINE(.name = "disk",
                 .description = "full or read-only filesystems: free space and inodes, remounts read-only",
                 .conditions = disk_conditions, .config = disk_config_table, .config_size = sizeof(struct disk_config),
                 .init = disk_init, .probe = disk_probe, .done = disk_done);
