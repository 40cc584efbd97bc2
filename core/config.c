/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cfgmap.h"
#include "http.h"
#include "util.h"

/* A configuration file larger than this is a mistake, not a configuration. */
#define CONFIG_FILE_MAX (4u * 1024u * 1024u)

char *const nh_probe_core_keys[] = {
        "plugin",      "enabled",   "interval",  "timeout",      "raise_after",
        "clear_after", "isolation", "take_over", "memory_limit", NULL,
};

char *const nh_shipped_plugins[] = {"memory", "pid", "network", "disk", "kernel_log", "custom", "example", NULL};

static const char *const isolation_names[_NH_ISOLATION_MAX] = {
        [NH_ISOLATION_INPROCESS] = "inprocess",
        [NH_ISOLATION_PROCESS] = "process",
};

static const struct {
        const char *type, *owner;
} reserved_types[] = {
        {"Ready", "the kubelet"},
        {"MemoryPressure", "the kubelet"},
        {"DiskPressure", "the kubelet"},
        {"PIDPressure", "the kubelet"},
        {"NetworkUnavailable", "the CNI plugin or the route controller"},
};

const char *nh_condition_owner(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(reserved_types); i++)
                if (strcmp(reserved_types[i].type, type) == 0)
                        return reserved_types[i].owner;
        return NULL;
}

static const struct nh_cfg_entry top_table[] = {
        {.type = NH_CFG_STRING,
         .key = "node_name",
         .def = NULL,
         .offset = offsetof(struct nh_config, node_name),
         .help = "the Node's name"},
        {.type = NH_CFG_STRING_LIST,
         .key = "plugin_dirs",
         .def = NH_PLUGINDIR, /* where "make install" puts the probes */
         .offset = offsetof(struct nh_config, plugin_dirs),
         .help = "directories searched for PLUGIN.so"},
        {0},
};

static const struct nh_cfg_entry defaults_table[] = {
        {.type = NH_CFG_DURATION,
         .key = "interval",
         .def = NH_DEFAULT_INTERVAL,
         .offset = offsetof(struct nh_probe_defaults, interval),
         .help = "time between two observations",
         .min = 0.01,
         .max = 86400},
        {.type = NH_CFG_DURATION,
         .key = "timeout",
         .def = NH_DEFAULT_TIMEOUT,
         .offset = offsetof(struct nh_probe_defaults, timeout),
         .help = "longest one observation may take",
         .min = 0.001,
         .max = 3600},
        {.type = NH_CFG_INT,
         .key = "raise_after",
         .def = NH_DEFAULT_RAISE_AFTER,
         .offset = offsetof(struct nh_probe_defaults, raise_after),
         .help = "consecutive problem observations before a condition turns True",
         .min = 1,
         .max = 1000},
        {.type = NH_CFG_INT,
         .key = "clear_after",
         .def = NH_DEFAULT_CLEAR_AFTER,
         .offset = offsetof(struct nh_probe_defaults, clear_after),
         .help = "consecutive healthy observations before it turns False again",
         .min = 1,
         .max = 1000},
        {0},
};

static const struct nh_cfg_entry kubernetes_table[] = {
        {.type = NH_CFG_DURATION,
         .key = "heartbeat",
         .def = "5m",
         .offset = offsetof(struct nh_config, kubernetes_heartbeat),
         .help = "period of the status heartbeat",
         .min = 10,
         .max = 86400},
        {.type = NH_CFG_BOOL,
         .key = "events",
         .def = "true",
         .offset = offsetof(struct nh_config, kubernetes_events),
         .help = "post Kubernetes Events"},
        {0},
};

static const struct nh_cfg_entry journal_table[] = {
        {.type = NH_CFG_BOOL,
         .key = "enabled",
         .def = "true",
         .offset = offsetof(struct nh_config, journal_enabled),
         .help = "write a journal record per transition"},
        {0},
};

static const struct nh_cfg_entry http_table[] = {
        {.type = NH_CFG_STRING,
         .key = "listen",
         .def = "127.0.0.1:20258",
         .offset = offsetof(struct nh_config, http_listen),
         .help = "address of the metrics and health endpoint"},
        {0},
};

/* Rows whose default is NULL take the "defaults" section's value, set before the table runs. */
static const struct nh_cfg_entry probe_table[] = {
        {.type = NH_CFG_STRING,
         .key = "plugin",
         .def = NULL,
         .offset = offsetof(struct nh_probe_config, plugin),
         .help = "plugin file PLUGIN.so"},
        {.type = NH_CFG_BOOL,
         .key = "enabled",
         .def = "true",
         .offset = offsetof(struct nh_probe_config, enabled),
         .help = "run this probe"},
        {.type = NH_CFG_DURATION,
         .key = "interval",
         .def = NULL,
         .offset = offsetof(struct nh_probe_config, interval),
         .help = "",
         .min = 0.01,
         .max = 86400},
        {.type = NH_CFG_DURATION,
         .key = "timeout",
         .def = NULL,
         .offset = offsetof(struct nh_probe_config, timeout),
         .help = "",
         .min = 0.001,
         .max = 3600},
        {.type = NH_CFG_INT,
         .key = "raise_after",
         .def = NULL,
         .offset = offsetof(struct nh_probe_config, raise_after),
         .help = "",
         .min = 1,
         .max = 1000},
        {.type = NH_CFG_INT,
         .key = "clear_after",
         .def = NULL,
         .offset = offsetof(struct nh_probe_config, clear_after),
         .help = "",
         .min = 1,
         .max = 1000},
        {.type = NH_CFG_STRING,
         .key = "isolation",
         .def = NULL, /* by the plugin: see load_probe() */
         .offset = offsetof(struct nh_probe_config, isolation_name),
         .help = ""},
        {.type = NH_CFG_STRING,
         .key = "memory_limit",
         .def = NULL, /* isolated probes: NH_DEFAULT_MEMORY_LIMIT */
         .offset = offsetof(struct nh_probe_config, memory_limit_name),
         .help = ""},
        {.type = NH_CFG_STRING_LIST,
         .key = "take_over",
         .def = "",
         .offset = offsetof(struct nh_probe_config, take_over),
         .help = ""},
        {0},
};

static void probe_config_done(struct nh_probe_config *p) {
        cfgmap_free(probe_table, p);
        free(p->name);
}

struct nh_config *nh_config_free(struct nh_config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_probes; i++)
                probe_config_done(&c->probes[i]);
        free(c->probes);
        cfgmap_free(top_table, c);
        cfgmap_free(http_table, c);
        strv_free(c->files);
        cJSON_Delete(c->tree);
        json_positions_free(c->positions);
        free(c);
        return NULL;
}

static int read_text(const char *path, char **ret_text, size_t *ret_len, char **ret_error) {
        int r = read_regular_file(path, CONFIG_FILE_MAX, ret_text, ret_len);
        int k;

        if (r >= 0)
                return 0;
        if (r == -EFBIG)
                k = asprintf(ret_error, "%s: file too large for a configuration", path);
        else if (r == -EINVAL || r == -EISDIR)
                k = asprintf(ret_error, "%s: not a regular file", path);
        else
                k = asprintf(ret_error, "%s: cannot read: %s", path, strerror(-r));
        if (k < 0)
                *ret_error = NULL;
        return r == -EFBIG || r == -EISDIR ? -EINVAL : r;
}

/* Moves src's members into dst: objects merge recursively, anything else replaces. */
static void merge(struct json_positions *positions, cJSON *dst, cJSON *src) {
        while (src->child) {
                cJSON *item = cJSON_DetachItemViaPointer(src, src->child);
                cJSON *old = cJSON_GetObjectItemCaseSensitive(dst, item->string);

                if (old && cJSON_IsObject(old) && cJSON_IsObject(item)) {
                        merge(positions, old, item);
                        json_pos_forget(positions, item);
                        cJSON_Delete(item);
                        continue;
                }
                if (old) {
                        json_pos_forget(positions, old);
                        cJSON_DeleteItemFromObjectCaseSensitive(dst, item->string);
                }
                /* item->string is reused as the key: cJSON frees it with the item. */
                cJSON_AddItemToObject(dst, item->string, item);
        }
}

static int dropin_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);
        return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".json") == 0;
}

static int byte_order(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int load_file(struct nh_config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        cJSON *root = NULL;
        char *copy;
        int r;

        r = read_text(path, &text, &len, ret_error);
        if (r < 0)
                return r;
        r = json_pos_parse(c->positions, path, text, len, &root, ret_error);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(root)) {
                *ret_error = json_pos_error(json_pos_value(c->positions, root),
                                            "the configuration must be a JSON object, not %s", json_type_name(root));
                json_pos_forget(c->positions, root);
                cJSON_Delete(root);
                return -EINVAL;
        }
        copy = strdup(path);
        if (!copy || strv_push(&c->files, copy) < 0) {
                free(copy);
                cJSON_Delete(root);
                return -ENOMEM;
        }
        if (!c->tree)
                c->tree = root;
        else {
                merge(c->positions, c->tree, root);
                json_pos_forget(c->positions, root);
                cJSON_Delete(root);
        }
        return 0;
}

static int load_dropins(struct nh_config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_free_ char *dir = NULL;
        struct dirent **entries = NULL;
        int n, r = 0;

        if (!copy)
                return -ENOMEM;
        if (asprintf(&dir, "%s/conf.d", dirname(copy)) < 0)
                return -ENOMEM;
        n = scandir(dir, &entries, dropin_filter, byte_order);
        if (n < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                r = -errno;
                if (asprintf(ret_error, "%s: cannot list drop-ins: %s", dir, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *file = NULL;
                if (r >= 0) {
                        if (asprintf(&file, "%s/%s", dir, entries[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = load_file(c, file, ret_error);
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

static bool valid_probe_name(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
                      *s == '-'))
                        return false;
        return true;
}

static int section(struct nh_config *c, const char *key, const struct nh_cfg_entry *table, void *base,
                   char **ret_error) {
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(c->tree, key);
        struct cfg_section s = {table, base};
        _cleanup_free_ char *what = NULL;

        if (asprintf(&what, "\"%s\"", key) < 0)
                return -ENOMEM;
        return cfgmap_apply(&s, 1, obj, c->positions, what, NULL, ret_error);
}

/* "64MiB", "512KiB", "2GiB" (K, M, G alone are binary too) or a number of bytes. 0 or -EINVAL. */
static int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                unsigned shift;
        } units[] = {{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"K", 10}, {"M", 20}, {"G", 30}, {"B", 0}, {"", 0}};
        char *end = NULL;
        unsigned long long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(end, units[i].suffix) == 0) {
                        if (v > (UINT64_MAX >> units[i].shift))
                                return -EINVAL;
                        *ret = (uint64_t) v << units[i].shift;
                        return 0;
                }
        return -EINVAL;
}

static int load_memory_limit(struct nh_config *c, const cJSON *obj, struct nh_probe_config *p, const char *what,
                             char **ret_error) {
        struct json_pos pos = json_pos_value(c->positions, cJSON_GetObjectItemCaseSensitive(obj, "memory_limit"));
        uint64_t v = 0;

        if (p->isolation != NH_ISOLATION_PROCESS) {
                if (!p->memory_limit_name)
                        return 0;
                *ret_error = json_pos_error(pos,
                                            "\"memory_limit\" in %s applies only to a probe with \"isolation\": "
                                            "\"process\"",
                                            what);
                return -EINVAL;
        }
        if (parse_size(p->memory_limit_name ? p->memory_limit_name : NH_DEFAULT_MEMORY_LIMIT, &v) < 0 ||
            v < NH_MEMORY_LIMIT_MIN || v > NH_MEMORY_LIMIT_MAX) {
                *ret_error = json_pos_error(pos,
                                            "\"memory_limit\" in %s must be a size from 8MiB to 64GiB, such as "
                                            "\"128MiB\" or \"1GiB\" (a bare number is bytes)",
                                            what);
                return -EINVAL;
        }
        p->memory_limit = v;
        return 0;
}

static int load_probe(struct nh_config *c, const cJSON *obj, struct nh_probe_config *p, char **ret_error) {
        struct cfg_section s = {probe_table, p};
        _cleanup_free_ char *what = NULL;
        _cleanup_strv_free_ char **own = NULL;
        const cJSON *member;
        int r;

        *p = (struct nh_probe_config){
                .interval = c->defaults.interval,
                .timeout = c->defaults.timeout,
                .raise_after = c->defaults.raise_after,
                .clear_after = c->defaults.clear_after,
                .json = obj,
        };
        p->name = strdup(obj->string);
        if (!p->name || asprintf(&what, "probe \"%s\"", obj->string) < 0)
                return -ENOMEM;
        if (!valid_probe_name(p->name)) {
                *ret_error = json_pos_error(json_pos_key(c->positions, obj),
                                            "probe name \"%s\" may only use letters, digits, '_' and '-'", p->name);
                return -EINVAL;
        }
        /* The plugin's own keys are checked once its table is known (probe_configure). */
        cJSON_ArrayForEach(member, obj) {
                char *k;
                if (strv_contains(nh_probe_core_keys, member->string))
                        continue;
                k = strdup(member->string);
                if (!k || strv_push(&own, k) < 0) {
                        free(k);
                        return -ENOMEM;
                }
        }
        r = cfgmap_apply(&s, 1, obj, c->positions, what, own, ret_error);
        if (r < 0)
                return r;
        if (!p->plugin) {
                p->plugin = strdup(p->name);
                if (!p->plugin)
                        return -ENOMEM;
        }
        if (!valid_probe_name(p->plugin)) {
                *ret_error =
                        json_pos_error(json_pos_value(c->positions, cJSON_GetObjectItemCaseSensitive(obj, "plugin")),
                                       "plugin name \"%s\" may only use letters, digits, '_' and '-'", p->plugin);
                return -EINVAL;
        }

        /* What nodehealthd ships runs in the daemon; anything else is someone else's code. */
        if (!p->isolation_name) {
                p->isolation_name = strdup(strv_contains(nh_shipped_plugins, p->plugin) ? "inprocess" : "process");
                if (!p->isolation_name)
                        return -ENOMEM;
        }
        p->isolation = _NH_ISOLATION_INVALID;
        for (int i = 0; i < _NH_ISOLATION_MAX; i++)
                if (strcmp(p->isolation_name, isolation_names[i]) == 0)
                        p->isolation = (enum nh_isolation) i;
        if (p->isolation < 0) {
                struct json_pos pos = json_pos_value(c->positions, cJSON_GetObjectItemCaseSensitive(obj, "isolation"));
                *ret_error = json_pos_error(pos, "\"isolation\" in %s must be \"inprocess\" or \"process\"", what);
                return -EINVAL;
        }
        r = load_memory_limit(c, obj, p, what, ret_error);
        if (r < 0)
                return r;

        for (size_t i = 0; p->take_over && p->take_over[i]; i++) {
                const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "take_over");
                struct json_pos pos = json_pos_value(c->positions, cJSON_GetArrayItem(list, (int) i));

                if (!nh_condition_owner(p->take_over[i])) {
                        *ret_error = json_pos_error(pos,
                                                    "\"take_over\" in %s lists \"%s\", which is not a kubelet- or "
                                                    "CNI-owned type; the probe may write its own types without it",
                                                    what, p->take_over[i]);
                        return -EINVAL;
                }
                if (strcmp(p->take_over[i], "Ready") == 0) {
                        *ret_error = json_pos_error(pos,
                                                    "\"take_over\" in %s lists \"Ready\": only the kubelet may "
                                                    "write the Ready condition",
                                                    what);
                        return -EINVAL;
                }
        }
        return 0;
}

static int load_probes(struct nh_config *c, char **ret_error) {
        const cJSON *probes = cJSON_GetObjectItemCaseSensitive(c->tree, "probes");
        const cJSON *member;
        int r;

        if (!probes)
                return 0;
        if (!cJSON_IsObject(probes)) {
                *ret_error = json_pos_error(json_pos_value(c->positions, probes),
                                            "\"probes\" must be an object, not %s", json_type_name(probes));
                return -EINVAL;
        }
        c->probes = calloc((size_t) cJSON_GetArraySize(probes) + 1, sizeof(*c->probes));
        if (!c->probes)
                return -ENOMEM;
        cJSON_ArrayForEach(member, probes) {
                if (!cJSON_IsObject(member)) {
                        *ret_error = json_pos_error(json_pos_value(c->positions, member),
                                                    "probe \"%s\" must be an object, not %s", member->string,
                                                    json_type_name(member));
                        return -EINVAL;
                }
                r = load_probe(c, member, &c->probes[c->n_probes], ret_error);
                c->n_probes++; /* counted even on failure so nh_config_free() frees it */
                if (r < 0)
                        return r;
        }
        return 0;
}

/* http.listen: "" (no endpoint), "IPV4:PORT" or "[IPV6]:PORT". */
static int check_listen(struct nh_config *c, char **ret_error) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->tree, "http"), "listen");
        struct sockaddr_storage ss;
        socklen_t len;
        const char *why = NULL;

        if (!c->http_listen || !*c->http_listen || nh_http_parse_listen(c->http_listen, &ss, &len, &why) >= 0)
                return 0;
        *ret_error = json_pos_error(json_pos_value(c->positions, v),
                                    "\"listen\" in \"http\" must be \"IPV4:PORT\", \"[IPV6]:PORT\" or \"\" (off), not "
                                    "\"%s\": %s",
                                    c->http_listen, why);
        return -EINVAL;
}

int nh_config_add_probe(struct nh_config *c, const char *name, char **ret_error) {
        cJSON *probes = cJSON_GetObjectItemCaseSensitive(c->tree, "probes"), *obj;
        struct nh_probe_config *grown;
        int r;

        *ret_error = NULL;
        if (!probes) {
                probes = cJSON_AddObjectToObject(c->tree, "probes");
                if (!probes)
                        return -ENOMEM;
        }
        if (cJSON_GetObjectItemCaseSensitive(probes, name))
                return -EEXIST;
        grown = realloc(c->probes, (c->n_probes + 2) * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        c->probes = grown;
        memset(&c->probes[c->n_probes], 0, 2 * sizeof(*grown));
        obj = cJSON_AddObjectToObject(probes, name);
        if (!obj)
                return -ENOMEM;
        r = load_probe(c, obj, &c->probes[c->n_probes], ret_error);
        c->n_probes++; /* counted even on failure so nh_config_free() frees it */
        return r;
}

static const char *const sections[] = {"defaults", "probes", "kubernetes", "journal", "http", NULL};

int nh_config_load(const char *path, struct nh_config **ret, char **ret_error) {
        _cleanup_(nh_config_freep) struct nh_config *c = NULL;
        struct cfg_section top;
        int r;

        *ret_error = NULL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->positions = json_positions_new();
        if (!c->positions)
                return -ENOMEM;

        r = load_file(c, path, ret_error);
        if (r < 0)
                return r;
        r = load_dropins(c, path, ret_error);
        if (r < 0)
                return r;

        top = (struct cfg_section){top_table, c};
        r = cfgmap_apply(&top, 1, c->tree, c->positions, "the configuration", (char *const *) sections, ret_error);
        if (r < 0)
                return r;
        if (c->node_name && !*c->node_name) {
                *ret_error = json_pos_error(
                        json_pos_value(c->positions, cJSON_GetObjectItemCaseSensitive(c->tree, "node_name")),
                        "\"node_name\" must not be empty");
                return -EINVAL;
        }
        r = section(c, "defaults", defaults_table, &c->defaults, ret_error);
        if (r < 0)
                return r;
        r = section(c, "kubernetes", kubernetes_table, c, ret_error);
        if (r < 0)
                return r;
        r = section(c, "journal", journal_table, c, ret_error);
        if (r < 0)
                return r;
        r = section(c, "http", http_table, c, ret_error);
        if (r < 0)
                return r;
        r = check_listen(c, ret_error);
        if (r < 0)
                return r;
        r = load_probes(c, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}
