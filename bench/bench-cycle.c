/* SPDX-License-Identifier: MIT */
/*
 * bench-cycle: what one full probe cycle costs, in-process, through the real loader, the real
 * probe wrapper and the real condition table.  Loads the probes the configuration enables,
 * warms up, runs N cycles of all of them, then N cycles of each alone, then a few cold cycles,
 * and prints figures one per line ("name value" or "name{probe=\"x\"} value", µs).  It
 * measures, it never judges.
 *
 * CPU time is read around a whole batch (CLOCK_PROCESS_CPUTIME_ID is a system call, too dear
 * to read per cycle); wall time is read around every cycle (CLOCK_MONOTONIC, in the vDSO) for
 * the median and the tail.
 *
 * Back-to-back cycles run with hot caches; the daemon runs a probe every few seconds, cold.
 * So a few "cold" cycles follow, each after an idle pause, with CPU read around each one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "conditions.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "probe.h"
#include "util.h"

#define DEFAULT_CONFIG TOP_SRCDIR "/conf/nodehealthd.json"
#define DEFAULT_CYCLES 10000
#define DEFAULT_COLD_CYCLES 20
#define DEFAULT_COLD_IDLE_MS 200
#define WARMUP_MAX 1000

enum {
        EXIT_USAGE = 64,
};

enum {
        OPT_PLUGIN_DIR = 0x100,
        OPT_CONFIG,
        OPT_CYCLES,
        OPT_PROC_PATH,
        OPT_SYS_PATH,
        OPT_ROOT_PATH,
        OPT_COLD_CYCLES,
        OPT_COLD_IDLE_MS,
};

struct options {
        char **plugin_dirs; /* replaces the configured ones when set */
        const char *config_path;
        uint64_t cycles;
        uint64_t cold_cycles, cold_idle_ms;
        const char *roots[_NH_ROOT_MAX];
};

struct bench {
        struct nh_config *config;
        struct nh_table *table;
        struct nh_probe_host host;
        struct nh_probe_ctx **probes;
        size_t n_probes;
        uint64_t n_transitions, n_events;
        sd_event *event; /* asynchronous probes (disk, network) end their cycles on it */
};

/* One cycle of one probe, to its end: a pending cycle runs on the loop, bounded by its timeout. */
static void run_probe(struct bench *b, struct nh_probe_ctx *p) {
        if (nh_probe_run(p) != NH_PROBE_PENDING)
                return;
        while (nh_probe_pending(p))
                if (sd_event_run(b->event, UINT64_MAX) < 0)
                        break;
}

/* One batch of cycles: CPU over the batch, wall time of each cycle (ns). */
struct batch {
        uint64_t cpu_ns, user_us, sys_us;
        uint64_t *wall_ns;
        uint64_t failures;
};

static const char *const default_roots[_NH_ROOT_MAX] = {
        [NH_ROOT_PROC] = "/proc",
        [NH_ROOT_SYS] = "/sys",
        [NH_ROOT_HOST] = "/",
};

static void help(const char *program) {
        printf("%s [OPTIONS]\n\n"
               "Measures the CPU time of one full cycle of the configured probes, in-process.\n\n"
               "  --plugin-dir DIR   look for PLUGIN.so here (repeatable; replaces the configured dirs)\n"
               "  --config FILE      configuration naming the probes (default %s)\n"
               "  --cycles N         measured cycles, for the whole set and for each probe (default %d)\n"
               "  --cold-cycles N    cycles run after an idle pause each, 0 for none (default %d)\n"
               "  --cold-idle-ms MS  the pause before each cold cycle (default %d)\n"
               "  --proc-path DIR    the probes' /proc (default /proc)\n"
               "  --sys-path DIR     the probes' /sys (default /sys)\n"
               "  --root-path DIR    the probes' host root (default /)\n"
               "  -h --help          this text\n",
               program, DEFAULT_CONFIG, DEFAULT_CYCLES, DEFAULT_COLD_CYCLES, DEFAULT_COLD_IDLE_MS);
}

/* 0, 1 when --help was given, or -EINVAL after printing why. */
static int parse_argv(int argc, char **argv, struct options *o) {
        static const struct option options[] = {
                {"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
                {"config", required_argument, NULL, OPT_CONFIG},
                {"cycles", required_argument, NULL, OPT_CYCLES},
                {"proc-path", required_argument, NULL, OPT_PROC_PATH},
                {"sys-path", required_argument, NULL, OPT_SYS_PATH},
                {"root-path", required_argument, NULL, OPT_ROOT_PATH},
                {"cold-cycles", required_argument, NULL, OPT_COLD_CYCLES},
                {"cold-idle-ms", required_argument, NULL, OPT_COLD_IDLE_MS},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case OPT_PLUGIN_DIR: {
                        char *dir = strdup(optarg);
                        if (!dir)
                                return -ENOMEM;
                        r = strv_push(&o->plugin_dirs, dir);
                        if (r < 0) {
                                free(dir);
                                return r;
                        }
                        break;
                }
                case OPT_CONFIG:
                        o->config_path = optarg;
                        break;
                case OPT_CYCLES:
                        r = parse_uint64(optarg, &o->cycles);
                        if (r < 0 || o->cycles == 0 || o->cycles > SIZE_MAX / sizeof(uint64_t)) {
                                fprintf(stderr, "%s: --cycles wants a positive integer, not \"%s\"\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        break;
                case OPT_COLD_CYCLES:
                        r = parse_uint64(optarg, &o->cold_cycles);
                        if (r < 0 || o->cold_cycles > SIZE_MAX / sizeof(uint64_t)) {
                                fprintf(stderr, "%s: --cold-cycles wants an integer, not \"%s\"\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        break;
                case OPT_COLD_IDLE_MS:
                        r = parse_uint64(optarg, &o->cold_idle_ms);
                        if (r < 0 || o->cold_idle_ms > 3600 * 1000) {
                                fprintf(stderr, "%s: --cold-idle-ms wants milliseconds (at most an hour), not \"%s\"\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        break;
                case OPT_PROC_PATH:
                        o->roots[NH_ROOT_PROC] = optarg;
                        break;
                case OPT_SYS_PATH:
                        o->roots[NH_ROOT_SYS] = optarg;
                        break;
                case OPT_ROOT_PATH:
                        o->roots[NH_ROOT_HOST] = optarg;
                        break;
                case 'h':
                        help(program_invocation_short_name);
                        return 1;
                default:
                        /* getopt_long() said what was wrong. */
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", program_invocation_short_name,
                        argv[optind]);
                return -EINVAL;
        }
        return 0;
}

static void on_transition(void *userdata, const struct nh_condition *c, enum nh_status old_status) {
        struct bench *b = userdata;
        b->n_transitions++;
}

static void on_event(void *userdata, const char *probe, const char *reason, const char *message) {
        struct bench *b = userdata;
        b->n_events++;
}

static void bench_done(struct bench *b) {
        for (size_t i = 0; i < b->n_probes; i++)
                nh_probe_free(b->probes[i]);
        free(b->probes);
        nh_table_free(b->table);
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                if (b->host.root_fds[i] >= 0)
                        close(b->host.root_fds[i]);
        if (b->host.config_dir_fd >= 0)
                close(b->host.config_dir_fd);

        nh_config_free(b->config);
        sd_event_unref(b->event);
}

/* Loads the configuration and every enabled probe, as the daemon does.  Logs what failed. */
static int bench_setup(struct bench *b, const struct options *o) {
        _cleanup_free_ char *error = NULL;
        char *const *dirs;
        int r;

        for (int i = 0; i < _NH_ROOT_MAX; i++)
                b->host.root_fds[i] = -1;
        b->host.config_dir_fd = -1;
        {
                /* Probes resolve their relative paths (a rule file) beside the configuration. */
                _cleanup_free_ char *copy = strdup(o->config_path);
                b->host.config_dir_fd = copy ? open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
        }
        r = nh_config_load(o->config_path, &b->config, &error);

        if (r < 0 && error)
                return log_error_errno(r, "%s", error);
        if (r < 0)
                return log_error_errno(r, "Failed to load '%s': %m", o->config_path);

        for (int i = 0; i < _NH_ROOT_MAX; i++) {
                const char *path = o->roots[i] ? o->roots[i] : default_roots[i];
                b->host.root_fds[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (b->host.root_fds[i] < 0)
                        return log_error_errno(errno, "Failed to open '%s': %m", path);
        }

        b->table = nh_table_new(on_transition, b);
        if (!b->table)
                return log_error_errno(-ENOMEM, "Cannot create the condition table: %m");
        b->host.table = b->table;
        r = sd_event_new(&b->event);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop: %m");
        b->host.event = b->event;
        b->host.now = NULL; /* the real clocks */
        b->host.event_cb = on_event;
        b->host.userdata = b;

        b->probes = calloc(b->config->n_probes + 1, sizeof(*b->probes));
        if (!b->probes)
                return log_error_errno(-ENOMEM, "Cannot allocate the probe list: %m");
        dirs = o->plugin_dirs ? o->plugin_dirs : b->config->plugin_dirs;
        for (size_t i = 0; i < b->config->n_probes; i++) {
                const struct nh_probe_config *cfg = &b->config->probes[i];
                struct nh_plugin_handle *handle = NULL;

                if (!cfg->enabled)
                        continue;
                r = nh_plugin_open(dirs, cfg->plugin, &handle, &error);
                if (r == -ENOENT) {
                        _cleanup_free_ char *list = NULL;
                        size_t len = 0;
                        FILE *f = open_memstream(&list, &len);

                        for (size_t k = 0; f && dirs && dirs[k]; k++)
                                fprintf(f, "%s%s", k ? ", " : "", dirs[k]);
                        if (f)
                                fclose(f);
                        return log_error_errno(r, "probe %s: plugin %s.so is in none of: %s (see --plugin-dir)",
                                               cfg->name, cfg->plugin, list && *list ? list : "(no directory)");
                }
                if (r < 0 && error)
                        return log_error_errno(r, "probe %s: %s", cfg->name, error);
                if (r < 0)
                        return log_error_errno(r, "probe %s: cannot load %s.so: %m", cfg->name, cfg->plugin);
                printf("# probe %s: %s\n", cfg->name, handle->path);
                r = nh_probe_new(&b->host, cfg, handle, b->config->positions, &b->probes[b->n_probes], &error);
                if (r < 0 && error)
                        return log_error_errno(r, "%s", error);
                if (r < 0)
                        return log_error_errno(r, "probe %s: cannot configure it: %m", cfg->name);
                b->n_probes++;
        }

        /* A probe whose init fails stays loaded and does nothing, as in the daemon: say so. */
        for (size_t i = 0; i < b->n_probes; i++)
                if (nh_probe_start(b->probes[i]) < 0)
                        printf("# probe %s: init failed, its cycles do nothing and it is not measured\n",
                               nh_probe_name(b->probes[i]));
        return 0;
}

static uint64_t clock_ns(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static uint64_t timeval_us(const struct timeval *tv) {
        return (uint64_t) tv->tv_sec * USEC_PER_SEC + (uint64_t) tv->tv_usec;
}

static uint64_t failures(const struct bench *b, const struct nh_probe_ctx *only) {
        uint64_t n = 0;

        for (size_t i = 0; i < b->n_probes; i++)
                if (!only || b->probes[i] == only)
                        n += nh_probe_stats(b->probes[i])->failures;
        return n;
}

/* Runs `cycles` cycles of every probe (only == NULL) or of `only`; wall_ns has `cycles` slots. */
static void run_batch(struct bench *b, const struct nh_probe_ctx *only, uint64_t cycles, struct batch *ret) {
        struct rusage ru0, ru1;
        uint64_t cpu0, failed0 = failures(b, only);

        (void) getrusage(RUSAGE_SELF, &ru0);
        cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        for (uint64_t c = 0; c < cycles; c++) {
                uint64_t t0 = clock_ns(CLOCK_MONOTONIC);

                for (size_t i = 0; i < b->n_probes; i++)
                        if (!only || b->probes[i] == only)
                                run_probe(b, b->probes[i]);
                if (ret->wall_ns)
                        ret->wall_ns[c] = clock_ns(CLOCK_MONOTONIC) - t0;
        }
        ret->cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        (void) getrusage(RUSAGE_SELF, &ru1);
        /* The kernel splits precise runtime between user and sys by tick samples: roughly. */
        ret->user_us = timeval_us(&ru1.ru_utime) - timeval_us(&ru0.ru_utime);
        ret->sys_us = timeval_us(&ru1.ru_stime) - timeval_us(&ru0.ru_stime);
        ret->failures = failures(b, only) - failed0;
}

/* `n` cycles of every probe, each after `idle_ms` asleep: cpu_ns and wall_ns get one value each. */
static void run_cold(struct bench *b, uint64_t n, uint64_t idle_ms, uint64_t *cpu_ns, uint64_t *wall_ns) {
        for (uint64_t c = 0; c < n; c++) {
                /* Not waiting for anything: the pause is what makes the next cycle cold. */
                struct timespec idle = {(time_t) (idle_ms / 1000), (long) (idle_ms % 1000) * 1000000L};
                uint64_t cpu0, t0;

                while (nanosleep(&idle, &idle) < 0 && errno == EINTR)
                        ;
                cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
                t0 = clock_ns(CLOCK_MONOTONIC);
                for (size_t i = 0; i < b->n_probes; i++)
                        run_probe(b, b->probes[i]);
                wall_ns[c] = clock_ns(CLOCK_MONOTONIC) - t0;

                cpu_ns[c] = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

/* Nearest-rank percentile (q in (0, 1]) of sorted ns values, in µs. */
static double percentile_us(const uint64_t *sorted, uint64_t n, double q) {
        uint64_t rank = (uint64_t) ((double) n * q + 0.999999);

        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return (double) sorted[rank - 1] / 1000.0;
}

/* Prints one batch's figures: PREFIX_cpu_usSUFFIX, …, LABEL ("" or "{probe=\"x\"}") after each name. */
static void print_batch(const char *prefix, const char *suffix, const char *label, struct batch *m, uint64_t cycles) {
        qsort(m->wall_ns, cycles, sizeof(*m->wall_ns), cmp_u64);
        printf("%s_cpu_us%s%s %.3f\n", prefix, suffix, label, (double) m->cpu_ns / 1000.0 / (double) cycles);
        printf("%s_user_us%s%s %.3f\n", prefix, suffix, label, (double) m->user_us / (double) cycles);
        printf("%s_sys_us%s%s %.3f\n", prefix, suffix, label, (double) m->sys_us / (double) cycles);
        printf("%s_wall_us_p50%s %.3f\n", prefix, label, percentile_us(m->wall_ns, cycles, 0.50));
        printf("%s_wall_us_p99%s %.3f\n", prefix, label, percentile_us(m->wall_ns, cycles, 0.99));
        printf("%s_wall_us_max%s %.3f\n", prefix, label, (double) m->wall_ns[cycles - 1] / 1000.0);
        printf("%s_failures%s %" PRIu64 "\n", prefix, label, m->failures);
}

static int run(int argc, char **argv) {
        _cleanup_strv_free_ char **plugin_dirs = NULL;
        _cleanup_free_ uint64_t *wall_ns = NULL;
        _cleanup_free_ uint64_t *cold_cpu_ns = NULL, *cold_wall_ns = NULL;
        struct options o = {
                .config_path = DEFAULT_CONFIG,
                .cycles = DEFAULT_CYCLES,
                .cold_cycles = DEFAULT_COLD_CYCLES,
                .cold_idle_ms = DEFAULT_COLD_IDLE_MS,
        };
        struct bench b = {};
        struct batch m = {};
        uint64_t warmup;
        int r;

        r = parse_argv(argc, argv, &o);
        plugin_dirs = o.plugin_dirs;
        if (r < 0)
                return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
        if (r > 0)
                return EXIT_SUCCESS;

        wall_ns = calloc(o.cycles, sizeof(*wall_ns));
        cold_cpu_ns = calloc(o.cold_cycles + 1, sizeof(*cold_cpu_ns));
        cold_wall_ns = calloc(o.cold_cycles + 1, sizeof(*cold_wall_ns));
        if (!wall_ns || !cold_cpu_ns || !cold_wall_ns) {
                log_error_errno(-ENOMEM, "Cannot allocate %" PRIu64 " samples: %m", o.cycles + 2 * o.cold_cycles);
                return EXIT_FAILURE;
        }

        printf("# bench-cycle: config %s\n", o.config_path);
        r = bench_setup(&b, &o);
        if (r < 0) {
                bench_done(&b);
                return EXIT_FAILURE;
        }

        /* One cycle with the usual logging, so a failing probe shows why, once. */
        run_batch(&b, NULL, 1, &m);
        for (size_t i = 0; i < b.n_probes; i++)
                if (nh_probe_stats(b.probes[i])->failures > 0)
                        printf("# probe %s: its first cycle failed (see stderr); its figures measure failures\n",
                               nh_probe_name(b.probes[i]));
        /* From here a failing probe would warn every cycle, and the bench would time the terminal. */
        log_set_max_level(LOG_LEVEL_ERR);

        warmup = o.cycles / 10 < WARMUP_MAX ? o.cycles / 10 : WARMUP_MAX;
        run_batch(&b, NULL, warmup, &m);
        printf("# %zu probes, %" PRIu64 " warm-up cycles, %" PRIu64 " measured cycles of all probes, then of each\n",
               b.n_probes, warmup + 1, o.cycles);
        printf("cycles %" PRIu64 "\n", o.cycles);
        printf("probes %zu\n", b.n_probes);

        m = (struct batch){.wall_ns = wall_ns};
        run_batch(&b, NULL, o.cycles, &m);
        print_batch("cycle", "_per_cycle", "", &m, o.cycles);

        for (size_t i = 0; i < b.n_probes; i++) {
                _cleanup_free_ char *label = NULL;

                if (!nh_probe_running(b.probes[i]))
                        continue;
                if (asprintf(&label, "{probe=\"%s\"}", nh_probe_name(b.probes[i])) < 0) {
                        bench_done(&b);
                        return EXIT_FAILURE;
                }
                m = (struct batch){.wall_ns = wall_ns};
                run_batch(&b, b.probes[i], o.cycles, &m);
                print_batch("probe", "", label, &m, o.cycles);
        }
        if (o.cold_cycles > 0) {
                run_cold(&b, o.cold_cycles, o.cold_idle_ms, cold_cpu_ns, cold_wall_ns);
                qsort(cold_cpu_ns, o.cold_cycles, sizeof(*cold_cpu_ns), cmp_u64);
                qsort(cold_wall_ns, o.cold_cycles, sizeof(*cold_wall_ns), cmp_u64);
                printf("cold_cycles %" PRIu64 "\n", o.cold_cycles);
                printf("cold_idle_ms %" PRIu64 "\n", o.cold_idle_ms);
                printf("cycle_cold_cpu_us_p50 %.3f\n", percentile_us(cold_cpu_ns, o.cold_cycles, 0.50));
                printf("cycle_cold_cpu_us_max %.3f\n", (double) cold_cpu_ns[o.cold_cycles - 1] / 1000.0);
                printf("cycle_cold_wall_us_p50 %.3f\n", percentile_us(cold_wall_ns, o.cold_cycles, 0.50));
                printf("cycle_cold_wall_us_max %.3f\n", (double) cold_wall_ns[o.cold_cycles - 1] / 1000.0);
        }
        printf("# %" PRIu64 " condition transitions and %" PRIu64 " events during the run\n", b.n_transitions,
               b.n_events);

        bench_done(&b);
        return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv) {
        log_setup();
        return run(argc, argv);
}
