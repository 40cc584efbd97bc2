/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "conditions.h"
#include "http.h"
#include "kubeconfig.h"
#include "loader.h"
#include "log.h"
#include "probe-remote.h"
#include "probe.h"
#include "sink-kubernetes.h"
#include "sink.h"
#include "util.h"

#define MAX_SINKS 8

struct nh_daemon {
        const struct nh_options *opts;
        struct nh_config *config;
        char *node_name;
        struct nh_kube_credentials *kube; /* NULL: standalone */
        char **plugin_dirs;
        sd_event *event;
        struct nh_children *children;
        struct nh_table *table;
        struct nh_probe_host host;

        struct nh_probe_ctx **probes;
        sd_event_source **timers;
        size_t n_probes;
        sd_event_source *stale_timer;

        struct nh_sink *sinks[MAX_SINKS];
        size_t n_sinks;
        bool sinks_started; /* the first cycle has ended and the sinks have the table */
        bool ready; /* READY=1 sent: transitions update systemd's STATUS= */
        uint64_t n_reloads, n_reload_failures; /* SIGHUP: applied, refused */
        struct nh_http *http; /* /metrics, /healthz, /conditions; NULL when http.listen is "" */
};

static const char *const default_roots[_NH_ROOT_MAX] = {
        [NH_ROOT_PROC] = "/proc",
        [NH_ROOT_SYS] = "/sys",
        [NH_ROOT_HOST] = "/",
};

struct nh_daemon *nh_daemon_free(struct nh_daemon *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_probes; i++) {
                sd_event_source_disable_unref(d->timers[i]);
                nh_probe_free(d->probes[i]);
        }
        free(d->probes);
        free(d->timers);
        sd_event_source_disable_unref(d->stale_timer);
        nh_http_free(d->http); /* before the sinks: it reads the metrics sink */
        for (size_t i = 0; i < d->n_sinks; i++)
                nh_sink_free(d->sinks[i]);
        nh_table_free(d->table);
        nh_children_free(d->children);
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                if (d->host.root_fds[i] >= 0)
                        close(d->host.root_fds[i]);
        if (d->host.config_dir_fd >= 0)
                close(d->host.config_dir_fd);
        sd_event_unref(d->event);
        strv_free(d->plugin_dirs);
        free(d->node_name);
        nh_kube_credentials_free(d->kube);
        nh_config_free(d->config);
        free(d);
        return NULL;
}

static void notify_status(struct nh_daemon *d, bool ready);
static void on_trigger(void *userdata, struct nh_probe_ctx *p);
static void on_cycle_done(void *userdata, struct nh_probe_ctx *p);

static void on_transition(void *userdata, const struct nh_condition *c, enum nh_status old) {
        struct nh_daemon *d = userdata;

        for (size_t i = 0; i < d->n_sinks; i++)
                if (d->sinks[i]->ops->transition)
                        d->sinks[i]->ops->transition(d->sinks[i], d->node_name, c, old);
        if (d->ready)
                notify_status(d, false);
}

static void on_removal(void *userdata, const char *type) {
        struct nh_daemon *d = userdata;

        for (size_t i = 0; i < d->n_sinks; i++)
                if (d->sinks[i]->ops->removed)
                        d->sinks[i]->ops->removed(d->sinks[i], d->node_name, type);
}

static void on_event(void *userdata, const char *probe, const char *reason, const char *message) {
        struct nh_daemon *d = userdata;

        for (size_t i = 0; i < d->n_sinks; i++)
                if (d->sinks[i]->ops->event)
                        d->sinks[i]->ops->event(d->sinks[i], d->node_name, probe, reason, message);
}

static uint64_t host_now(void *userdata, clockid_t clock) {
        struct nh_daemon *d = userdata;
        uint64_t t;

        /* The loop's cached time: every report of one wakeup carries the same stamp. */
        if (clock == CLOCK_MONOTONIC && d->event && sd_event_now(d->event, CLOCK_MONOTONIC, &t) >= 0)
                return t;
        return now_usec(clock);
}

/* The directory of the main configuration file: probes resolve their relative paths there. */
static int open_config_dir(const char *config_path) {
        _cleanup_free_ char *copy = strdup(config_path);

        return copy ? open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
}

static int resolve_node_name(struct nh_daemon *d) {

        const char *name = d->opts->node_name;
        char host[256];

        if (!name)
                name = d->config->node_name;
        if (!name)
                name = getenv("NODE_NAME");
        if (!name || !*name) {
                if (gethostname(host, sizeof(host)) < 0)
                        return -errno;
                host[sizeof(host) - 1] = '\0';
                name = host;
        }
        d->node_name = strdup(name);
        return d->node_name ? 0 : -ENOMEM;
}

static int open_roots(struct nh_daemon *d, char **ret_error) {
        const char *paths[_NH_ROOT_MAX] = {d->opts->proc_path, d->opts->sys_path, d->opts->root_path};
        static const char *const flags[_NH_ROOT_MAX] = {"--proc-path", "--sys-path", "--root-path"};

        for (int i = 0; i < _NH_ROOT_MAX; i++) {
                const char *path = paths[i] ? paths[i] : default_roots[i];
                d->host.root_fds[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (d->host.root_fds[i] < 0) {
                        int r = -errno;
                        if (asprintf(ret_error, "%s %s: %s", flags[i], path, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
        }
        return 0;
}

/*
 * Begins the checks of the isolated probes among `cfgs` (NULL entries are not opened) all at
 * once, so that opening them waits one check's time at most: checks[i] for cfgs[i], or NULL.
 */
static struct nh_remote_check **begin_checks(struct nh_daemon *d, const struct nh_probe_config *const *cfgs, size_t n) {
        struct nh_remote_check **checks = calloc(n + 1, sizeof(*checks));

        for (size_t i = 0; checks && i < n; i++)
                if (cfgs[i] && cfgs[i]->enabled && cfgs[i]->isolation == NH_ISOLATION_PROCESS &&
                    nh_probe_remote_check_begin(&d->host, cfgs[i], &checks[i]) < 0)
                        checks[i] = NULL; /* begun again when the probe is opened */
        return checks;
}

/* Ends the checks no probe used. */
static void free_checks(struct nh_remote_check **checks, size_t n) {
        for (size_t i = 0; checks && i < n; i++)
                nh_probe_remote_check_free(checks[i]);
        free(checks);
}

/*
 * Loads and configures one probe of `config`.  Returns 0 and the instance in *ret, 0 and
 * NULL when the plugin is skipped (missing or refused: logged), or a config error.  `check`
 * (taken; may be NULL) is the isolated probe's check, begun with begin_checks().
 */
static int open_probe(struct nh_daemon *d, const struct nh_config *config, const struct nh_probe_config *cfg,
                      struct nh_remote_check *check, struct nh_probe_ctx **ret, char **ret_error) {
        _cleanup_free_ char *why = NULL;
        struct nh_plugin_handle *handle = NULL;
        bool strict = d->opts->action == NH_ACTION_CHECK_CONFIG;
        int r;

        if (cfg->isolation == NH_ISOLATION_PROCESS) {
                /* Checked in a throwaway probe host: its keys' errors are configuration errors too. */
                r = nh_probe_remote_open(&d->host, cfg, strict, check, &handle, &why);
                if (r == -EUCLEAN) {
                        *ret_error = TAKE_PTR(why);
                        return -EINVAL;
                }
        } else {
                nh_probe_remote_check_free(check);
                r = nh_plugin_open(d->plugin_dirs, cfg->plugin, &handle, &why);
        }
        if (r < 0) {
                _cleanup_free_ char *dirs = NULL;
                struct json_pos pos = json_pos_key(config->positions, cfg->json);
                size_t len = 0;
                FILE *f = open_memstream(&dirs, &len);

                for (size_t i = 0; f && d->plugin_dirs && d->plugin_dirs[i]; i++)
                        fprintf(f, "%s%s", i ? ", " : "", d->plugin_dirs[i]);
                if (f)
                        fclose(f);
                if (r == -ENOENT)
                        *ret_error = json_pos_error(pos, "probe \"%s\": plugin %s.so is in none of: %s", cfg->name,
                                                    cfg->plugin, dirs && *dirs ? dirs : "(no plugin directory)");
                else
                        *ret_error = json_pos_error(pos, "%sprobe \"%s\": %s", pos.file ? "" : "drop-in ", cfg->name,
                                                    why ? why : strerror(-r));
                if (strict)
                        return -EINVAL;
                log_error("%s; the probe is skipped", *ret_error ? *ret_error : "cannot load a plugin");
                free(*ret_error);
                *ret_error = NULL;
                *ret = NULL;
                return 0;
        }
        return nh_probe_new(&d->host, cfg, handle, config->positions, ret, ret_error);
}

/* Appends an instance (taken) to the daemon's probes, without a timer yet. */
static int append_probe(struct nh_daemon *d, struct nh_probe_ctx *p) {

        struct nh_probe_ctx **grown = realloc(d->probes, (d->n_probes + 1) * sizeof(*grown));
        sd_event_source **timers = grown ? realloc(d->timers, (d->n_probes + 1) * sizeof(*timers)) : NULL;
        if (grown)
                d->probes = grown;
        if (timers)
                d->timers = timers;
        if (!grown || !timers) {
                nh_probe_free(p);
                return -ENOMEM;
        }
        d->probes[d->n_probes] = p;
        d->timers[d->n_probes] = NULL;
        d->n_probes++;
        return 0;
}

static int add_probe(struct nh_daemon *d, const struct nh_probe_config *cfg, struct nh_remote_check *check,
                     char **ret_error) {
        struct nh_probe_ctx *p = NULL;
        int r = open_probe(d, d->config, cfg, check, &p, ret_error);

        if (r < 0 || !p)
                return r;
        return append_probe(d, p);
}

static bool uses_plugin(const struct nh_config *c, const char *name) {
        for (size_t i = 0; i < c->n_probes; i++)
                if (strcmp(c->probes[i].name, name) == 0 || strcmp(c->probes[i].plugin, name) == 0)
                        return true;
        return false;
}

/*
 * Drop-in probes: a NAME.so in a plugin directory of the configuration that nodehealthd does
 * not ship and that no probe of the configuration names runs as probe NAME with the default
 * settings (isolated, since it is not ours).  A probe entry with "enabled": false turns one
 * off.  Directories given with --plugin-dir (a build tree full of test plugins) are searched
 * for the configured probes only.
 */
static int add_dropins(const struct nh_daemon *d, struct nh_config *c) {
        char *const *dirs = d->opts->plugin_dirs ? NULL : d->plugin_dirs;

        for (size_t i = 0; dirs && dirs[i]; i++) {
                _cleanup_(closedirp) DIR *dir = opendir(dirs[i]);
                struct dirent *de;

                while (dir && (de = readdir(dir))) {
                        _cleanup_free_ char *name = NULL, *error = NULL;
                        size_t len = strlen(de->d_name);
                        int r;

                        if (len <= 3 || strcmp(de->d_name + len - 3, ".so") != 0 || de->d_name[0] == '.')
                                continue;
                        name = strndup(de->d_name, len - 3);
                        if (!name)
                                return -ENOMEM;
                        if (strv_contains(nh_shipped_plugins, name) || uses_plugin(c, name))
                                continue;
                        r = nh_config_add_probe(c, name, &error);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                log_warning("Drop-in %s/%s is not a usable probe name: %s", dirs[i], de->d_name,
                                            error ? error : strerror(-r));
                                continue;
                        }
                        log_info("Drop-in probe %s from %s/%s", name, dirs[i], de->d_name);
                }
        }
        return 0;
}

int nh_daemon_new(const struct nh_options *opts, struct nh_config *config, struct nh_daemon **ret, char **ret_error,
                  int *ret_exit_code) {
        _cleanup_(nh_daemon_freep) struct nh_daemon *d = NULL;
        int r;

        *ret_error = NULL;
        *ret_exit_code = NH_EXIT_FAILURE;
        d = calloc(1, sizeof(*d));
        if (!d) {
                nh_config_free(config);
                return -ENOMEM;
        }
        d->opts = opts;
        d->config = config;
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                d->host.root_fds[i] = -1;
        d->host.config_dir_fd = open_config_dir(opts->config_path);
        d->host.now = host_now;
        d->host.event_cb = on_event;
        d->host.trigger = on_trigger;
        d->host.cycle_done = on_cycle_done;

        d->host.userdata = d;

        d->plugin_dirs = strv_copy(opts->plugin_dirs ? opts->plugin_dirs : config->plugin_dirs);
        if (!d->plugin_dirs)
                return -ENOMEM;
        d->host.config_path = opts->config_path;
        d->host.plugin_dirs = d->plugin_dirs;

        r = resolve_node_name(d);
        if (r < 0)
                return r;
        r = open_roots(d, ret_error);
        if (r < 0) {
                *ret_exit_code = NH_EXIT_USAGE;
                return r;
        }

        /* --once never talks to the API server; --check-config validates the credentials too. */
        if (opts->action != NH_ACTION_ONCE && !opts->standalone) {
                struct nh_kube_sources src = {.kubeconfig = opts->kubeconfig,
                                              .apiserver = opts->apiserver,
                                              .token_file = opts->token_file,
                                              .ca_file = opts->ca_file};

                nh_kube_sources_from_env(&src);
                r = nh_kube_credentials_load(&src, &d->kube, ret_error);
                if (r == -EINVAL)
                        *ret_exit_code = NH_EXIT_CONFIG;
                if (r < 0 && r != -ENODATA)
                        return r;
        }

        r = sd_event_new(&d->event);
        if (r < 0)
                return r;
        d->host.event = d->event;
        /* A subreaper: what a probe's scripts leave behind is reaped here, not by init. */
        r = nh_children_new(d->event, opts->action != NH_ACTION_CHECK_CONFIG, &d->children);
        if (r < 0)
                return r;
        d->host.children = d->children;

        d->table = nh_table_new(on_transition, d);
        if (d->table)
                nh_table_set_removal_listener(d->table, on_removal);

        if (!d->table)
                return -ENOMEM;
        d->host.table = d->table;

        r = add_dropins(d, config);
        if (r < 0)
                return r;
        {
                _cleanup_free_ const struct nh_probe_config **cfgs = calloc(config->n_probes + 1, sizeof(*cfgs));
                struct nh_remote_check **checks = NULL;

                for (size_t i = 0; cfgs && i < config->n_probes; i++)
                        cfgs[i] = &config->probes[i];
                checks = cfgs ? begin_checks(d, cfgs, config->n_probes) : NULL;
                if (!checks)
                        return -ENOMEM;
                for (size_t i = 0; i < config->n_probes; i++) {
                        if (!config->probes[i].enabled)
                                continue;
                        r = add_probe(d, &config->probes[i], TAKE_PTR(checks[i]), ret_error);
                        if (r < 0) {
                                free_checks(checks, config->n_probes);
                                if (r == -EINVAL)
                                        *ret_exit_code = NH_EXIT_CONFIG;
                                return r;
                        }
                }
                free_checks(checks, config->n_probes);
        }

        *ret = TAKE_PTR(d);
        return 0;
}

static int add_sink(struct nh_daemon *d, struct nh_sink *s) {
        if (!s)
                return -ENOMEM;
        if (d->n_sinks >= MAX_SINKS) {
                nh_sink_free(s);
                return -E2BIG;
        }
        d->sinks[d->n_sinks++] = s;
        return 0;
}

static void start_probes(struct nh_daemon *d) {
        for (size_t i = 0; i < d->n_probes; i++)
                (void) nh_probe_start(d->probes[i]); /* a failed init is logged and shown as Unknown */
}

static void run_all(struct nh_daemon *d) {
        for (size_t i = 0; i < d->n_probes; i++)
                (void) nh_probe_run(d->probes[i]);
}

static bool any_pending(const struct nh_daemon *d) {
        for (size_t i = 0; i < d->n_probes; i++)
                if (nh_probe_pending(d->probes[i]))
                        return true;
        return false;
}

/* Once the first cycle of every probe has ended, the sinks get the table: it says what is true now. */
static void maybe_start_sinks(struct nh_daemon *d) {
        if (d->sinks_started || any_pending(d))
                return;
        d->sinks_started = true;
        for (size_t i = 0; i < d->n_sinks; i++)
                if (d->sinks[i]->ops->start)
                        d->sinks[i]->ops->start(d->sinks[i], d->node_name, d->table);
        if (d->opts->action == NH_ACTION_RUN) {
                d->ready = true;
                notify_status(d, true);
        }
}

static int arm_stale_timer(struct nh_daemon *d);

static void on_cycle_done(void *userdata, struct nh_probe_ctx *p) {
        struct nh_daemon *d = userdata;
        uint64_t t;

        /* An isolated probe declares its types once its probe host runs: the staleness timer learns of them here. */
        if (d->stale_timer && sd_event_source_get_time(d->stale_timer, &t) >= 0 && nh_table_next_stale(d->table) < t)
                (void) arm_stale_timer(d);
        maybe_start_sinks(userdata);
}

static void on_trigger(void *userdata, struct nh_probe_ctx *p) {
        struct nh_daemon *d = userdata;

        for (size_t i = 0; i < d->n_probes; i++)
                if (d->probes[i] == p && d->timers[i]) {
                        /* Now, through the probe's own timer: many triggers make one cycle. */
                        (void) sd_event_source_set_time(d->timers[i], 0);
                        (void) sd_event_source_set_enabled(d->timers[i], SD_EVENT_ONESHOT);
                }
}

int nh_daemon_run_once(struct nh_daemon *d) {
        int r;

        /* One observation: hysteresis belongs to a running daemon, not to a one-shot check. */
        for (size_t i = 0; i < d->config->n_probes; i++)
                d->config->probes[i].raise_after = d->config->probes[i].clear_after = 1;
        r = add_sink(d, nh_sink_stdout_new(stdout, d->opts->format));
        if (r < 0)
                return r;
        start_probes(d);
        run_all(d);
        /* Asynchronous probes finish on the loop; their timeouts bound the wait. */
        while (any_pending(d)) {
                r = sd_event_run(d->event, UINT64_MAX);
                if (r < 0)
                        return log_error_errno(r, "Event loop failed: %m");
        }
        maybe_start_sinks(d);
        return 0;
}

/* A uniform random µs in [0, max]; jitter spreads the probes and, later, the nodes. */
static uint64_t jitter(uint64_t max) {
        uint64_t v = 0;

        if (max == 0)
                return 0;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_usec(CLOCK_MONOTONIC) * 6364136223846793005ull;
        return v % (max + 1);
}

static uint64_t next_delay(const struct nh_probe_config *cfg) {
        /* interval ± 10%: never in lock-step with other probes or other nodes. */
        uint64_t spread = cfg->interval / 10;
        return cfg->interval - spread + jitter(2 * spread);
}

static int arm_stale_timer(struct nh_daemon *d);

static int on_probe_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_probe_ctx *p = userdata;
        const struct nh_probe_config *cfg = nh_probe_config(p);

        /* Re-armed before the run, so that a trigger during the run wins over the interval. */
        (void) sd_event_source_set_time_relative(s, next_delay(cfg));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        (void) nh_probe_run(p);
        return 0;
}

static int arm_probe_timer(struct nh_daemon *d, size_t i) {
        const struct nh_probe_config *cfg = nh_probe_config(d->probes[i]);
        uint64_t accuracy = cfg->interval / 20 > USEC_PER_MSEC ? cfg->interval / 20 : USEC_PER_MSEC;

        if (!nh_probe_running(d->probes[i]) || d->timers[i])
                return 0;
        return sd_event_add_time_relative(d->event, &d->timers[i], CLOCK_MONOTONIC, next_delay(cfg), accuracy,
                                          on_probe_timer, d->probes[i]);
}

static int on_stale_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct nh_daemon *d = userdata;

        nh_table_check_stale(d->table, usec, now_usec(CLOCK_REALTIME));
        return arm_stale_timer(d);
}

static int arm_stale_timer(struct nh_daemon *d) {
        uint64_t next = nh_table_next_stale(d->table);
        int r;

        /* Re-armed after every check; a report in between only moves the deadline later. */
        if (next == UINT64_MAX)
                next = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
        if (!d->stale_timer)
                return sd_event_add_time(d->event, &d->stale_timer, CLOCK_MONOTONIC, next, USEC_PER_SEC / 10,
                                         on_stale_timer, d);
        r = sd_event_source_set_time(d->stale_timer, next);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(d->stale_timer, SD_EVENT_ONESHOT);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received %s, stopping", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/* ---- reload (SIGHUP) ---- */

static bool strv_equal(char *const *a, char *const *b) {
        size_t i = 0;

        for (; a && b && a[i] && b[i]; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return (!a || !a[i]) && (!b || !b[i]);
}

/* Every setting of the probe the same, its own keys included. */
static bool same_probe(const struct nh_probe_config *a, const struct nh_probe_config *b) {
        return strcmp(a->plugin, b->plugin) == 0 && a->interval == b->interval && a->timeout == b->timeout &&
               a->raise_after == b->raise_after && a->clear_after == b->clear_after && a->isolation == b->isolation &&
               a->memory_limit == b->memory_limit && strv_equal(a->take_over, b->take_over) &&
               cJSON_Compare(a->json, b->json, true);
}

/* Is the plugin file the search finds now another one than the instance runs? */
static bool plugin_file_changed(const struct nh_daemon *d, const struct nh_probe_ctx *p) {
        const struct nh_plugin_handle *h = nh_probe_handle(p);
        const char *plugin = nh_probe_config(p)->plugin;

        if (!h || h->file.st_ino == 0)
                return false; /* nothing known to compare with */
        for (size_t i = 0; d->plugin_dirs && d->plugin_dirs[i]; i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;

                if (asprintf(&path, "%s/%s.so", d->plugin_dirs[i], plugin) < 0)
                        return false;
                if (lstat(path, &st) < 0)
                        continue;
                return st.st_dev != h->file.st_dev || st.st_ino != h->file.st_ino ||
                       st.st_mtim.tv_sec != h->file.st_mtim.tv_sec || st.st_mtim.tv_nsec != h->file.st_mtim.tv_nsec ||
                       st.st_size != h->file.st_size;
        }
        return true; /* gone: the open will say so */
}

static ssize_t find_probe(const struct nh_daemon *d, const char *name) {
        for (size_t i = 0; i < d->n_probes; i++)
                if (d->probes[i] && strcmp(nh_probe_name(d->probes[i]), name) == 0)
                        return (ssize_t) i;
        return -1;
}

/*
 * A probe that stopped (removed from the configuration, or its plugin from the directory):
 * its conditions say so in the journal and on stdout, then they leave the Node.  Without an
 * API server there is no Node: they stay, Unknown, so a removed check is not mistaken for a
 * healthy one.
 */
static void retire_probe(struct nh_daemon *d, const char *name) {
        _cleanup_free_ char *message = NULL;
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (asprintf(&message, "probe %s was removed from the configuration or its plugin directory", name) < 0)
                message = NULL;
        (void) nh_table_mark_unknown(d->table, name, NH_REASON_PROBE_REMOVED, message ? message : "probe removed", now);
        nh_table_remove_feeds(d->table, name, NULL, !d->kube, now);
}

/* A restarted instance's types that it no longer reports leave with it. */
static void drop_undeclared(struct nh_daemon *d, struct nh_probe_ctx *p) {
        const char *name = nh_probe_name(p);

        for (size_t i = nh_table_size(d->table); i-- > 0;) {
                const struct nh_condition *c = nh_table_get(d->table, i);
                if (c && nh_table_has_feed(d->table, name, c->type) && !nh_probe_declares(p, c->type)) {
                        _cleanup_free_ char *type = strdup(c->type);
                        if (type)
                                nh_table_remove_feeds(d->table, name, type, !d->kube, now_usec(CLOCK_REALTIME));
                }
        }
}

/* Settings that only a restart applies: said once per reload, the old value stays. */
static void warn_restart_only(const struct nh_config *old, const struct nh_config *new) {
        if (!streq_null(old->node_name, new->node_name))
                log_warning("Reload: \"node_name\" changed; it takes effect at the next restart");
        if (old->kubernetes_heartbeat != new->kubernetes_heartbeat || old->kubernetes_events != new->kubernetes_events)
                log_warning("Reload: \"kubernetes\" changed; it takes effect at the next restart");
        if (old->journal_enabled != new->journal_enabled)
                log_warning("Reload: \"journal\" changed; it takes effect at the next restart");
        if (!streq_null(old->http_listen, new->http_listen))
                log_warning("Reload: \"http\" changed; it takes effect at the next restart");
        if (!strv_equal(old->plugin_dirs, new->plugin_dirs))
                log_warning("Reload: \"plugin_dirs\" changed; it takes effect at the next restart");
}

int nh_daemon_reload(struct nh_daemon *d) {
        _cleanup_(nh_config_freep) struct nh_config *config = NULL;
        _cleanup_free_ char *error = NULL;
        struct nh_probe_ctx **next = NULL;
        const struct nh_probe_config **next_cfg = NULL, **opening = NULL;
        struct nh_remote_check **checks = NULL;
        bool *kept = NULL, *late = NULL, *reused = NULL;
        size_t n_next = 0, n_kept = 0, n_started = 0, n_stopped = 0;
        int r;

        (void) sd_notify(false, "RELOADING=1\nSTATUS=Reloading the configuration");
        r = nh_config_load(d->opts->config_path, &config, &error);
        if (r >= 0)
                r = add_dropins(d, config);
        if (r < 0)
                goto refused;

        next = calloc(config->n_probes + 1, sizeof(*next));
        next_cfg = calloc(config->n_probes + 1, sizeof(*next_cfg));
        late = calloc(config->n_probes + 1, sizeof(*late));
        reused = calloc(config->n_probes + 1, sizeof(*reused));
        kept = calloc(d->n_probes + 1, sizeof(*kept));
        opening = calloc(config->n_probes + 1, sizeof(*opening));
        if (!next || !next_cfg || !late || !reused || !kept || !opening) {
                r = -ENOMEM;
                goto refused;
        }

        /*
         * Prepare everything that can fail before anything changes: a probe key that does not
         * fit its plugin refuses the whole reload, and the old configuration stays in force.
         */
        for (size_t i = 0; i < config->n_probes; i++) {
                const struct nh_probe_config *cfg = &config->probes[i];
                ssize_t old;

                if (!cfg->enabled)
                        continue;
                old = find_probe(d, cfg->name);
                next_cfg[n_next] = cfg;
                if (old >= 0 && same_probe(nh_probe_config(d->probes[old]), cfg) &&
                    !plugin_file_changed(d, d->probes[old])) {
                        kept[old] = reused[n_next] = true;
                        next[n_next++] = d->probes[old];
                        continue;
                }
                if (old >= 0 && cfg->isolation == NH_ISOLATION_INPROCESS && plugin_file_changed(d, d->probes[old])) {
                        /* The loader would find the old mapping by name: opened once the old one is closed. */
                        late[n_next++] = true;
                        continue;
                }
                opening[n_next++] = cfg;
        }
        /* The isolated ones among them are checked side by side: one check's wait at most. */
        checks = begin_checks(d, opening, n_next);
        if (!checks) {
                r = -ENOMEM;
                goto refused;
        }
        for (size_t k = 0; k < n_next; k++) {
                if (!opening[k])
                        continue;
                r = open_probe(d, config, opening[k], TAKE_PTR(checks[k]), &next[k], &error);
                if (r < 0)
                        goto refused;
        }

        /* Commit. */
        warn_restart_only(d->config, config);
        for (size_t i = 0; i < d->n_probes; i++) {
                bool replaced = false;

                if (kept[i])
                        continue;
                for (size_t k = 0; k < n_next; k++)
                        replaced = replaced || ((next[k] || late[k]) &&
                                                strcmp(next_cfg[k]->name, nh_probe_name(d->probes[i])) == 0);
                if (!replaced) {
                        _cleanup_free_ char *name = strdup(nh_probe_name(d->probes[i]));
                        if (name)
                                retire_probe(d, name);
                }
                d->timers[i] = sd_event_source_disable_unref(d->timers[i]);
                d->probes[i] = nh_probe_free(d->probes[i]);
                n_stopped++;
        }
        for (size_t k = 0; k < n_next; k++) {
                if (!late[k])
                        continue;
                _cleanup_free_ char *late_error = NULL;
                if (open_probe(d, config, next_cfg[k], NULL, &next[k], &late_error) < 0)
                        log_error("Reload: %s; the probe is skipped", late_error ? late_error : "cannot load it");
                if (!next[k])
                        retire_probe(d, next_cfg[k]->name);
        }

        /* The new set: kept instances first move to the new configuration's settings. */
        for (size_t i = 0; i < d->n_probes; i++)
                d->timers[i] = sd_event_source_disable_unref(d->timers[i]);
        free(d->probes);
        free(d->timers);
        d->probes = calloc(n_next + 1, sizeof(*d->probes));
        d->timers = calloc(n_next + 1, sizeof(*d->timers));
        d->n_probes = 0;
        if (!d->probes || !d->timers) {
                log_error("Reload: out of memory; every probe stopped");
                for (size_t k = 0; k < n_next; k++)
                        nh_probe_free(next[k]);
                d->n_probes = 0;
                r = -ENOMEM;
                goto done;
        }
        for (size_t k = 0; k < n_next; k++) {
                struct nh_probe_ctx *p = next[k];

                if (!p)
                        continue;
                nh_probe_set_config(p, next_cfg[k]);
                d->probes[d->n_probes++] = p;
                if (reused[k])
                        continue;
                (void) nh_probe_start(p);
                drop_undeclared(d, p);
                n_started++;
        }
        n_kept = d->n_probes - n_started;
        free(next);
        next = NULL;

        nh_config_free(d->config);
        d->config = TAKE_PTR(config);
        for (size_t i = 0; i < d->n_probes; i++) {
                r = arm_probe_timer(d, i);
                if (r < 0)
                        log_error_errno(r, "Reload: cannot arm the timer of probe %s: %m", nh_probe_name(d->probes[i]));
        }
        /* New and restarted probes report at once, not an interval later. */
        for (size_t i = 0; i < d->n_probes; i++)
                if (d->timers[i] && !nh_probe_pending(d->probes[i]))
                        (void) sd_event_source_set_time(d->timers[i], 0);
        (void) arm_stale_timer(d);
        d->n_reloads++;
        log_info("Reloaded %s: %zu probes (%zu unchanged, %zu started, %zu stopped)", d->opts->config_path, d->n_probes,
                 n_kept, n_started, n_stopped);
        r = 0;
        goto done;

refused:
        for (size_t k = 0; next && reused && k < n_next; k++)
                if (!reused[k])
                        nh_probe_free(next[k]);
        d->n_reload_failures++;
        log_error("Reload refused, the configuration in force stays: %s", error          ? error
                                                                          : r == -ENOMEM ? "out of memory"
                                                                                         : strerror(-r));
done:
        free_checks(checks, n_next);
        free(opening);
        free(next);
        free(next_cfg);
        free(kept);
        free(late);
        free(reused);
        notify_status(d, true);
        return r;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received SIGHUP, reloading %s", ((struct nh_daemon *) userdata)->opts->config_path);
        (void) nh_daemon_reload(userdata);
        return 0;
}

static void notify_status(struct nh_daemon *d, bool ready) {
        size_t n_true = 0, n_unknown = 0;

        for (size_t i = 0; i < nh_table_size(d->table); i++) {
                enum nh_status s = nh_table_get(d->table, i)->status;
                n_true += s == NH_STATUS_TRUE;
                n_unknown += s == NH_STATUS_UNKNOWN;
        }
        (void) sd_notifyf(false, "%sSTATUS=%zu probes, %zu conditions: %zu True, %zu Unknown", ready ? "READY=1\n" : "",
                          d->n_probes, nh_table_size(d->table), n_true, n_unknown);
}

/* What /metrics, /healthz and /conditions read, at the moment a request asks. */
static void http_collect(void *userdata, struct nh_metrics_input *ret, struct nh_sink **ret_metrics) {
        struct nh_daemon *d = userdata;

        *ret = (struct nh_metrics_input){.node = d->node_name,
                                         .table = d->table,
                                         .probes = d->probes,
                                         .n_probes = d->n_probes,
                                         .n_reloads = d->n_reloads};
        for (size_t i = 0; i < d->n_sinks; i++) {
                if (!ret->kube)
                        ret->kube = nh_sink_kubernetes_client(d->sinks[i]);
                if (strcmp(d->sinks[i]->ops->name, "metrics") == 0)
                        *ret_metrics = d->sinks[i];
        }
}

/* A configured endpoint that cannot listen stops the start (exit 1): see nodehealthd(8), ENDPOINTS. */
static int start_http(struct nh_daemon *d) {
        const char *listen = d->config->http_listen;
        int r;

        if (!listen || !*listen) {
                log_info("No HTTP endpoint (http.listen is \"\")");
                return 0;
        }
        r = add_sink(d, nh_sink_metrics_new());
        if (r < 0)
                return log_error_errno(r, "Cannot set up the metrics sink: %m");
        r = nh_http_new(d->event, listen, http_collect, d, &d->http);
        if (r < 0)
                return log_error_errno(r, "Cannot serve HTTP on %s (http.listen): %m", listen);
        log_info("Serving /metrics, /healthz and /conditions on http://%s/", listen);
        return 0;
}

int nh_daemon_run(struct nh_daemon *d) {
        sigset_t mask;
        int r;

        log_info("Node %s: %zu probes; conditions go to stdout%s", d->node_name, d->n_probes,
                 d->config->journal_enabled ? " and the journal" : "");

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Cannot block signals: %m");
        if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, on_signal, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGINT, on_signal, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d)) < 0)
                return log_error_errno(r, "Cannot watch signals: %m");
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the watchdog: %m");

        r = add_sink(d, nh_sink_stdout_new(stdout, d->opts->format));
        if (r < 0)
                return log_error_errno(r, "Cannot set up the stdout sink: %m");
        if (d->config->journal_enabled) {
                r = add_sink(d, nh_sink_journal_new(d->event));
                if (r < 0)
                        return log_error_errno(r, "Cannot set up the journal sink: %m");
        }
        if (d->kube) {
                struct nh_sink *kube = NULL;

                if (d->kube->insecure_skip_tls_verify)
                        log_warning("INSECURE: %s sets insecure-skip-tls-verify: the API server's certificate is "
                                    "NOT verified, and anyone on the path can read the token and forge the replies",
                                    d->kube->origin);
                r = nh_sink_kubernetes_new(d->event, d->kube, d->node_name, d->config->kubernetes_heartbeat,
                                           d->config->kubernetes_events, &kube);
                if (r >= 0)
                        r = add_sink(d, kube);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up the Kubernetes sink: %m");
                log_info("Reporting to the API server at %s as node %s (credentials: %s)", d->kube->server,
                         d->node_name, d->kube->origin);
        } else if (d->opts->standalone)
                log_info("Standalone (--standalone): not reporting to any API server");
        else
                log_info("Standalone: no Kubernetes credentials (no --kubeconfig, $KUBECONFIG, --apiserver or "
                         "in-cluster environment)");

        r = start_http(d);
        if (r < 0)
                return r;

        start_probes(d);
        /* Timers before the first cycle: a probe may ask for the next one during it (nh_trigger). */
        for (size_t i = 0; i < d->n_probes; i++) {
                r = arm_probe_timer(d, i);
                if (r < 0)
                        return log_error_errno(r, "Cannot arm the timer of probe %s: %m", nh_probe_name(d->probes[i]));
        }
        r = arm_stale_timer(d);
        if (r < 0)
                return log_error_errno(r, "Cannot arm the staleness timer: %m");

        /* The first cycle runs at once; the start table waits for its end (see maybe_start_sinks). */
        run_all(d);
        maybe_start_sinks(d);

        r = sd_event_loop(d->event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}
