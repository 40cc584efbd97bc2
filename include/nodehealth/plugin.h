/* SPDX-License-Identifier: MIT */
/*
 * nodehealthd probe ABI — the only header a probe includes.
 *
 * A probe is a shared object that exports exactly one symbol, NH_PLUGIN_SYMBOL, a
 * `const struct nh_plugin` built with designated initialisers:
 *
 *     NH_PLUGIN_DEFINE(
 *             .name = "example",
 *             .conditions = example_conditions,
 *             .config = example_config,
 *             .config_size = sizeof(struct example_config),
 *             .init = example_init,
 *             .probe = example_probe,
 *             .done = example_done,
 *     );
 *
 * The loader checks `abi_version` (major must match, minor may be lower than the
 * daemon's) and `struct_size` before it reads any other field.
 *
 * ABI rules.  Within one major version the core only ever *appends*: new fields at the
 * end of struct nh_plugin (a probe built against an older minor has a smaller
 * struct_size and the loader treats the missing fields as zero), new functions, new
 * config types.  Removing or reordering a field, changing a signature or a
 * meaning bumps NH_PLUGIN_ABI_MAJOR, and the daemon then refuses older probes.
 *
 * Threading and time.  Every callback runs on the daemon's event loop.  A probe never
 * sleeps, never blocks on the network and never calls exit(); it reads what it needs
 * (through the root directories the core hands out, so fixture trees and a DaemonSet's
 * /host mounts work) and reports.  The core schedules `probe` every `interval`.
 *
 * Ownership.  Strings passed to the core are copied before the call returns.  Strings and
 * lists in the filled config struct belong to the core and stay valid until `done`.
 */
#ifndef NODEHEALTH_PLUGIN_H
#define NODEHEALTH_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NH_PLUGIN_ABI_MAJOR 1
#define NH_PLUGIN_ABI_MINOR 1
#define NH_PLUGIN_ABI_VERSION ((uint32_t) ((NH_PLUGIN_ABI_MAJOR << 16) | NH_PLUGIN_ABI_MINOR))
#define NH_PLUGIN_ABI_VERSION_MAJOR(v) ((uint32_t) (v) >> 16)
#define NH_PLUGIN_ABI_VERSION_MINOR(v) ((uint32_t) (v) &0xffffu)

/* The exported descriptor's name; see NH_PLUGIN_DEFINE. */
#define NH_PLUGIN_SYMBOL nodehealth_plugin
#define NH_PLUGIN_SYMBOL_NAME "nodehealth_plugin"

/* Condition status, as Kubernetes spells it: True means the problem is present. */
enum nh_status {
        NH_STATUS_FALSE,
        NH_STATUS_TRUE,
        NH_STATUS_UNKNOWN,
        _NH_STATUS_MAX,
        _NH_STATUS_INVALID = -22, /* -EINVAL */
};

/* Log levels, syslog's numbers. */
enum nh_log_level {
        NH_LOG_ERR = 3,
        NH_LOG_WARNING = 4,
        NH_LOG_NOTICE = 5,
        NH_LOG_INFO = 6,
        NH_LOG_DEBUG = 7,
};

/* The trees a probe reads from: --proc-path, --sys-path, --root-path. */
enum nh_root {
        NH_ROOT_PROC,
        NH_ROOT_SYS,
        NH_ROOT_HOST,
        _NH_ROOT_MAX,
};

/* A condition type a probe may report, with what "healthy" reads like. */
struct nh_condition_decl {
        const char *type; /* "MemoryThrashing": CamelCase, as Kubernetes types are */
        const char *healthy_reason; /* reason shown while False, e.g. "MemoryNotThrashing" */
        const char *help; /* one sentence for --help and the man page */
};

/* Types of a probe's own configuration keys. */
enum nh_cfg_type {
        NH_CFG_BOOL, /* bool */
        NH_CFG_INT, /* int64_t; a JSON integer */
        NH_CFG_DOUBLE, /* double; a JSON number */
        NH_CFG_DURATION, /* uint64_t microseconds; "500ms", "10s", "5m", "1h" or a number of seconds */
        NH_CFG_STRING, /* char *, NULL when unset and no default */
        NH_CFG_STRING_LIST, /* char **, NULL-terminated, never NULL once filled */
        _NH_CFG_TYPE_MAX,
};

/*
 * One row of a probe's configuration table.  The core validates the probe's JSON object
 * against the table (unknown keys and wrong types are errors naming file:line:column),
 * applies `def` (parsed as if it had been written in the JSON file; a list default is
 * comma-separated) and writes the value at `offset` in a struct of `config_size` bytes.
 * For numbers and durations, `min` < `max` declares an inclusive range (durations in
 * seconds); min == max means no range.
 */
struct nh_cfg_entry {
        enum nh_cfg_type type;
        const char *key;
        const char *def;
        size_t offset;
        const char *help;
        double min, max;
};

/* Opaque: the core's handle for one probe instance. */
struct nh_probe_ctx;

/* What a probe observed about one condition type. */
struct nh_observation {
        const char *type; /* one of the probe's declared condition types */
        const char *problem; /* optional: names one check when several feed the same type */
        enum nh_status status;
        const char *reason; /* CamelCase, e.g. "MemoryStall" */
        const char *message; /* one human sentence with the figures */
};

struct nh_plugin {
        uint32_t abi_version; /* NH_PLUGIN_ABI_VERSION; checked first */
        uint32_t struct_size; /* sizeof(struct nh_plugin); checked second */

        const char *name; /* the plugin's name, matches the file name PLUGIN.so */
        const char *description; /* one line */

        const struct nh_condition_decl *conditions; /* terminated by type NULL; NULL: declared at init */

        const struct nh_cfg_entry *config; /* terminated by an entry with key NULL; may be NULL */
        size_t config_size; /* size of the struct the table fills */

        /*
         * Called once with the filled config.  Returns 0 and a per-instance state in
         * *ret_state, or a negative errno (and frees whatever it allocated).  Probes keep
         * no file-scope mutable state: two instances must not see each other.
         */
        int (*init)(struct nh_probe_ctx *ctx, const void *config, void **ret_state);

        /*
         * One observation cycle: read, then report every declared condition with
         * nh_report().  Returns 0 when the cycle is complete, NH_PROBE_PENDING when it goes on
         * asynchronously (fds or a timer; the probe calls nh_cycle_done() at its end), or a
         * negative errno when it failed as a whole: the core then marks the probe's conditions
         * Unknown with reason ProbeFailed.  A pending cycle that has not ended after the
         * probe's timeout makes them Unknown with reason ProbeTimeout.
         */
        int (*probe)(struct nh_probe_ctx *ctx, void *state);

        /* Frees the state.  Called once, also when the daemon stops; accepts NULL. */
        void (*done)(void *state);
};

#define NH_PLUGIN_DEFINE(...)                                                              \
        __attribute__((visibility("default"))) const struct nh_plugin NH_PLUGIN_SYMBOL = { \
                .abi_version = NH_PLUGIN_ABI_VERSION, .struct_size = sizeof(struct nh_plugin), __VA_ARGS__}

/* ---- What the core offers a probe.  Every call checks its arguments (-EINVAL). ---- */

/* probe() returns this when its cycle continues on the loop; see nh_cycle_done(). */
#define NH_PROBE_PENDING 1

/*
 * Report one observation.  The core deep-copies it.  Returns 0, -EINVAL for a type the
 * probe did not declare or a bad status, -EPERM for a type the kubelet or the CNI owns
 * that the configuration did not take over.
 */
int nh_report(struct nh_probe_ctx *ctx, const struct nh_observation *obs);

/*
 * Declares a condition type at init, for probes whose types come from their configuration
 * (a rule file names them).  Only valid inside `init`; the type then behaves exactly like
 * one of the descriptor's `conditions`.  Returns 0, -EINVAL (not CamelCase), -EEXIST
 * (declared already), -E2BIG (more than 64 types), -EBUSY (called outside init).  A type
 * the kubelet or the CNI owns is accepted but not reported unless `take_over` lists it.
 */
int nh_declare_condition(struct nh_probe_ctx *ctx, const char *type, const char *healthy_reason);

/*
 * Report a temporary problem (an event, such as one OOM kill): one journal record, one
 * JSON line in --format json.  `reason` is CamelCase, `message` the matched lines.
 */
int nh_event(struct nh_probe_ctx *ctx, const char *reason, const char *message);

/* Log a line prefixed with the probe's instance and plugin names. */
void nh_log(struct nh_probe_ctx *ctx, enum nh_log_level level, const char *format, ...)
        __attribute__((format(printf, 3, 4)));

/* A directory fd (O_PATH) for --proc-path, --sys-path or --root-path; -EINVAL otherwise. */
int nh_root_fd(struct nh_probe_ctx *ctx, enum nh_root root);

/*
 * Read a whole small file (a /proc or /sys entry) relative to `root` into buf and
 * NUL-terminate it.  Returns 0 and the length in *ret_len, -ENOENT and other open or read
 * errors, -EFBIG when the file does not fit in size - 1 bytes.  A leading '/' in `path`
 * is allowed and still relative to the root.
 */
int nh_read_file(struct nh_probe_ctx *ctx, enum nh_root root, const char *path, char *buf, size_t size,
                 size_t *ret_len);

/*
 * Asynchronous work on the daemon's loop.  Probes never block: what can wait (a netlink
 * socket, a udev monitor, a DNS answer, a helper thread's pipe) is an fd the core watches.
 *
 * nh_watch_fd() calls `callback` whenever `fd` is ready for `events` (EPOLLIN, EPOLLOUT, …
 * from <sys/epoll.h>); watching an fd already watched changes its events, callback and
 * userdata.  The probe keeps owning the fd: it calls nh_unwatch_fd() before closing it.
 * Watches end by themselves when the probe stops, before `done` is called.  Returns 0,
 * -EINVAL, -ENOMEM, or -EOPNOTSUPP where no loop runs.
 */
typedef void (*nh_io_callback)(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata);
int nh_watch_fd(struct nh_probe_ctx *ctx, int fd, uint32_t events, nh_io_callback callback, void *userdata);
int nh_unwatch_fd(struct nh_probe_ctx *ctx, int fd);

/*
 * One wake-up timer per probe instance: `callback` runs once, `usec` microseconds from now.
 * Setting it again replaces it; a NULL callback cancels it.  Probes with several deadlines
 * set it to the earliest.  Returns 0, -EINVAL, -ENOMEM, -EOPNOTSUPP.
 */
typedef void (*nh_timer_callback)(struct nh_probe_ctx *ctx, void *userdata);
int nh_set_timer(struct nh_probe_ctx *ctx, uint64_t usec, nh_timer_callback callback, void *userdata);

/*
 * Asks for a cycle now instead of at the next interval (a link went down, a disk appeared).
 * Many triggers before the cycle runs make one cycle.
 */
int nh_trigger(struct nh_probe_ctx *ctx);

/* Ends a cycle that probe() left pending (it returned NH_PROBE_PENDING). */
void nh_cycle_done(struct nh_probe_ctx *ctx);

/*
 * A directory fd (O_PATH) of the directory that holds the main configuration file, so that
 * a probe's own files named with a relative path (a rule file) resolve beside it, as
 * conf.d/ does; -EINVAL for a bad context, -ENOENT when the core has none.
 */
int nh_config_dir_fd(struct nh_probe_ctx *ctx);

/* Monotonic time in microseconds, as the core's clock sees it (tests may move it). */

uint64_t nh_now(struct nh_probe_ctx *ctx);

/* The probe's instance name (the key under "probes" in the configuration). */
const char *nh_instance_name(struct nh_probe_ctx *ctx);

/* ---- ABI 1.1 ---- */

/*
 * Child processes.  A probe that starts a process (fork or posix_spawn) hands its pid to
 * the core at once, before it returns to the loop: the core reaps it and calls `callback`
 * once with how it ended: `code` is CLD_EXITED (then `status` is the exit status),
 * CLD_KILLED or CLD_DUMPED (then `status` is the signal), as waitid(2) has them.  The probe
 * never waits for a child itself.  The daemon is a child subreaper: grandchildren that
 * outlive their parents are reaped by the core too.  Watches end when the probe stops (the
 * child, if still running, is then reaped by the core when it ends).  Returns 0, -EINVAL
 * (not a child of this process), -EEXIST, -ENOMEM, -EOPNOTSUPP where no loop runs.
 */
typedef void (*nh_child_callback)(struct nh_probe_ctx *ctx, pid_t pid, int code, int status, void *userdata);
int nh_watch_child(struct nh_probe_ctx *ctx, pid_t pid, nh_child_callback callback, void *userdata);

/*
 * A counter the probe keeps, for /metrics: exported as
 * nodehealthd_probe_counts_total{probe="INSTANCE",counter="NAME"}.  `name` is
 * snake_case ([a-z][a-z0-9_]*, at most 63 bytes); a probe has at most 32.  Set the
 * running total (it should only grow).  Returns 0, -EINVAL, -E2BIG.
 */
int nh_counter_set(struct nh_probe_ctx *ctx, const char *name, uint64_t value);

#ifdef __cplusplus
}
#endif

#endif
