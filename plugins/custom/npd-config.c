/* SPDX-License-Identifier: MIT */
/*
 * node-problem-detector's custom-plugin-monitor files (see npd-config.h).  Positions come from
 * the core's json-pos (compiled into the probe), so every error names FILE:LINE:COLUMN.
 */
#include "npd-config.h"

#include "../common/go-duration.h"
#include "../common/read-file.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json-pos.h"
#include "util.h"

#define MAX_FILE_SIZE (4 * 1024 * 1024) /* monitor files are a few KiB */
#define MAX_RULES 1000
#define MAX_ARGS 1000
#define MAX_CONCURRENCY 1024
#define DEFAULT_INVOKE_INTERVAL (30 * USEC_PER_SEC) /* NPD's defaults (types/config.go) */
#define DEFAULT_TIMEOUT (5 * USEC_PER_SEC)
#define DEFAULT_MAX_OUTPUT_LENGTH 80
#define DEFAULT_CONCURRENCY 3

struct parser {
        const char *path;
        struct json_positions *positions;
        char **error;
};

/* "FILE:LINE:COLUMN: what" at a node's value (or its key), returns -EINVAL. */
__attribute__((format(printf, 4, 5))) static int fail(struct parser *p, const cJSON *node, bool at_key,
                                                      const char *format, ...) {
        struct json_pos pos = {0};
        char *what = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&what, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (node)
                pos = at_key ? json_pos_key(p->positions, node) : json_pos_value(p->positions, node);
        if (!pos.file)
                pos.file = p->path;
        free(*p->error);
        *p->error = json_pos_error(pos, "%s", what);
        free(what);
        return *p->error ? -EINVAL : -ENOMEM;
}

static char *where(struct parser *p, const cJSON *node) {
        struct json_pos pos = json_pos_value(p->positions, node);
        char *s = NULL;

        if (asprintf(&s, "%s:%u:%u", p->path, pos.line, pos.column) < 0)
                return NULL;
        return s;
}

/* ---- members ---- */

static int check_keys(struct parser *p, const cJSON *obj, const char *const *known, const char *what) {
        const cJSON *item;

        cJSON_ArrayForEach(item, obj) {
                char list[512] = "";
                size_t n = 0;
                bool ok = false;

                for (size_t i = 0; known[i] && !ok; i++)
                        ok = strcmp(item->string, known[i]) == 0;
                if (ok)
                        continue;
                for (size_t i = 0; known[i] && n < sizeof(list); i++)
                        n += (size_t) snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", known[i]);
                return fail(p, item, true, "unknown key \"%.64s\" in %s (known: %s)", item->string, what, list);
        }
        return 0;
}

/* A string member: 0 (NULL when absent and not required), -EINVAL, -ENOMEM. */
static int get_string(struct parser *p, const cJSON *obj, const char *key, bool required, const char *what,
                      char **ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        *ret = NULL;
        if (!j) {
                if (required)
                        return fail(p, obj, false, "%s: \"%s\" is missing", what, key);
                return 0;
        }
        if (!cJSON_IsString(j))
                return fail(p, j, false, "%s: \"%s\" must be a string, not %s", what, key, json_type_name(j));
        *ret = strdup(j->valuestring);
        return *ret ? 0 : -ENOMEM;
}

/* A duration member, more than 0: 0 (untouched when absent), -EINVAL. */
static int get_duration(struct parser *p, const cJSON *obj, const char *key, const char *what, uint64_t *ret,
                        bool *ret_present) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
        uint64_t v;
        int r;

        if (ret_present)
                *ret_present = j != NULL;
        if (!j)
                return 0;
        if (!cJSON_IsString(j))
                return fail(p, j, false, "%s: \"%s\" must be a duration string such as \"30s\", not %s", what, key,
                            json_type_name(j));
        r = go_parse_duration(j->valuestring, &v);
        if (r == -ERANGE)
                return fail(p, j, false, "%s: \"%s\" is \"%.64s\", longer than 100 years", what, key, j->valuestring);
        if (r < 0)
                return fail(p, j, false,
                            "%s: \"%s\" is \"%.64s\", not a duration such as \"500ms\", \"30s\", \"5m\" or \"1m30s\"",
                            what, key, j->valuestring);
        if (v == 0)
                return fail(p, j, false, "%s: \"%s\" must be longer than 0", what, key);
        *ret = v;
        return 0;
}

static int get_int(struct parser *p, const cJSON *obj, const char *key, const char *what, int64_t min, int64_t max,
                   int64_t *ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!j)
                return 0;
        if (!cJSON_IsNumber(j) || j->valuedouble != (double) (int64_t) j->valuedouble)
                return fail(p, j, false, "%s: \"%s\" must be a whole number, not %s", what, key,
                            cJSON_IsNumber(j) ? "a fraction" : json_type_name(j));
        if (j->valuedouble < (double) min || j->valuedouble > (double) max)
                return fail(p, j, false, "%s: \"%s\" is %g; it must be from %lld to %lld", what, key, j->valuedouble,
                            (long long) min, (long long) max);
        *ret = (int64_t) j->valuedouble;
        return 0;
}

static int get_bool(struct parser *p, const cJSON *obj, const char *key, const char *what, bool *ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!j)
                return 0;
        if (!cJSON_IsBool(j))
                return fail(p, j, false, "%s: \"%s\" must be true or false, not %s", what, key, json_type_name(j));
        *ret = cJSON_IsTrue(j);
        return 0;
}

/* ---- the file ---- */

struct npd_config *npd_config_free(struct npd_config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_conditions; i++) {
                free(c->conditions[i].type);
                free(c->conditions[i].reason);
                free(c->conditions[i].message);
                free(c->conditions[i].where);
        }
        free(c->conditions);
        for (size_t i = 0; i < c->n_rules; i++) {
                free(c->rules[i].reason);
                free(c->rules[i].path);
                strv_free(c->rules[i].argv);
                free(c->rules[i].where);
        }
        free(c->rules);
        free(c->path);
        free(c->source);
        free(c);
        return NULL;
}

static int parse_plugin_config(struct parser *p, struct npd_config *c, const cJSON *j) {
        static const char *const keys[] = {"invoke_interval",
                                           "timeout",
                                           "max_output_length",
                                           "concurrency",
                                           "enable_message_change_based_condition_update",
                                           "skip_initial_status",
                                           NULL};
        const char *what = "pluginConfig";
        int r;

        if (!cJSON_IsObject(j))
                return fail(p, j, false, "\"pluginConfig\" must be an object, not %s", json_type_name(j));
        if ((r = check_keys(p, j, keys, what)) < 0 ||
            (r = get_duration(p, j, "invoke_interval", what, &c->invoke_interval, NULL)) < 0 ||
            (r = get_duration(p, j, "timeout", what, &c->timeout, NULL)) < 0 ||
            /* NPD never reads more than 4 KiB; a larger limit is harmless, 0 gives empty messages. */
            (r = get_int(p, j, "max_output_length", what, 0, INT32_MAX, &c->max_output_length)) < 0 ||
            /* 0 deadlocks NPD (an unbuffered channel); more than a thousand processes at once is a fork bomb. */
            (r = get_int(p, j, "concurrency", what, 1, MAX_CONCURRENCY, &c->concurrency)) < 0 ||
            (r = get_bool(p, j, "enable_message_change_based_condition_update", what, &c->message_change_update)) < 0 ||
            (r = get_bool(p, j, "skip_initial_status", what, &c->skip_initial_status)) < 0)
                return r;
        return 0;
}

static int parse_conditions(struct parser *p, struct npd_config *c, const cJSON *array) {
        /* types.Condition also has status and transition: NPD overwrites them, so do we. */
        static const char *const keys[] = {"type", "reason", "message", "status", "transition", NULL};
        const cJSON *j;

        if (!cJSON_IsArray(array))
                return fail(p, array, false, "\"conditions\" must be an array, not %s", json_type_name(array));
        c->conditions = calloc((size_t) cJSON_GetArraySize(array) + 1, sizeof(*c->conditions));
        if (!c->conditions)
                return -ENOMEM;
        cJSON_ArrayForEach(j, array) {
                struct npd_condition *cond = &c->conditions[c->n_conditions];
                char what[64];
                const cJSON *type;
                int r;

                snprintf(what, sizeof(what), "condition %zu", c->n_conditions + 1);
                if (!cJSON_IsObject(j))
                        return fail(p, j, false, "%s must be an object, not %s", what, json_type_name(j));
                c->n_conditions++;
                if ((r = check_keys(p, j, keys, what)) < 0 ||
                    (r = get_string(p, j, "type", true, what, &cond->type)) < 0 ||
                    (r = get_string(p, j, "reason", false, what, &cond->reason)) < 0 ||
                    (r = get_string(p, j, "message", false, what, &cond->message)) < 0)
                        return r;
                type = cJSON_GetObjectItemCaseSensitive(j, "type");
                if (!is_camel_case(cond->type))
                        return fail(p, type, false, "%s: type \"%.64s\" must be CamelCase (letters and digits)", what,
                                    cond->type);
                for (size_t i = 0; i + 1 < c->n_conditions; i++)
                        if (strcmp(c->conditions[i].type, cond->type) == 0)
                                return fail(p, type, false, "%s: type \"%s\" is listed twice", what, cond->type);
                if (!cond->reason || !*cond->reason) {
                        /* NPD allows none; a False condition needs a reason for the API server. */
                        free(cond->reason);
                        if (asprintf(&cond->reason, "No%s", cond->type) < 0) {
                                cond->reason = NULL;
                                return -ENOMEM;
                        }
                }
                if (!is_camel_case(cond->reason))
                        return fail(p, cJSON_GetObjectItemCaseSensitive(j, "reason"), false,
                                    "%s: reason \"%.64s\" must be CamelCase (letters and digits): it is the reason "
                                    "of %s while False",
                                    what, cond->reason, cond->type);
                if (!cond->message && !(cond->message = strdup("")))
                        return -ENOMEM;
                if (!(cond->where = where(p, j)))
                        return -ENOMEM;
        }
        return 0;
}

static int parse_args(struct parser *p, struct npd_rule *rule, const cJSON *j, const char *what) {
        const cJSON *arg;
        size_t n = 0;

        if (j && !cJSON_IsArray(j))
                return fail(p, j, false, "%s: \"args\" must be an array of strings, not %s", what, json_type_name(j));
        if (j && cJSON_GetArraySize(j) > MAX_ARGS)
                return fail(p, j, false, "%s: more than %d args", what, MAX_ARGS);
        rule->argv = calloc((j ? (size_t) cJSON_GetArraySize(j) : 0) + 2, sizeof(char *));
        if (!rule->argv)
                return -ENOMEM;
        /* argv[0] is the path as written, as Go's exec.Command sets it. */
        if (!(rule->argv[n++] = strdup(rule->path)))
                return -ENOMEM;
        cJSON_ArrayForEach(arg, j) {
                if (!cJSON_IsString(arg))
                        return fail(p, arg, false, "%s: argument %zu must be a string, not %s", what, n,
                                    json_type_name(arg));
                if (!(rule->argv[n++] = strdup(arg->valuestring)))
                        return -ENOMEM;
        }
        return 0;
}

static int parse_rule(struct parser *p, struct npd_config *c, struct npd_rule *rule, const cJSON *j, size_t index) {
        static const char *const keys[] = {"type", "condition", "reason",          "path",
                                           "args", "timeout",   "invoke_interval", NULL};
        const cJSON *node;
        char what[64], *type = NULL, *condition = NULL;
        bool has_timeout = false, has_interval = false;
        int r;

        snprintf(what, sizeof(what), "rule %zu", index + 1);
        if (!cJSON_IsObject(j))
                return fail(p, j, false, "%s must be an object, not %s", what, json_type_name(j));
        if (!(rule->where = where(p, j)))
                return -ENOMEM;
        if ((r = check_keys(p, j, keys, what)) < 0 || (r = get_string(p, j, "type", true, what, &type)) < 0)
                return r;
        node = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (strcmp(type, "permanent") == 0)
                rule->permanent = true;
        else if (strcmp(type, "temporary") != 0) {
                /* NPD takes any other type as permanent: a typo would turn an event into a condition. */
                r = fail(p, node, false, "%s: type \"%.64s\" is neither \"temporary\" nor \"permanent\"", what, type);
                free(type);
                return r;
        }
        free(type);

        if ((r = get_string(p, j, "reason", true, what, &rule->reason)) < 0)
                return r;
        if (!is_camel_case(rule->reason))
                return fail(p, cJSON_GetObjectItemCaseSensitive(j, "reason"), false,
                            "%s: reason \"%.64s\" must be CamelCase (letters and digits)", what, rule->reason);

        /* A temporary rule's condition is ignored, as NPD ignores it; a permanent one needs one. */
        if ((r = get_string(p, j, "condition", rule->permanent, what, &condition)) < 0)
                return r;
        if (rule->permanent) {
                bool found = false;
                for (size_t i = 0; i < c->n_conditions && !found; i++)
                        if (strcmp(c->conditions[i].type, condition) == 0) {
                                rule->condition = i;
                                found = true;
                        }
                if (!found)
                        r = fail(p, cJSON_GetObjectItemCaseSensitive(j, "condition"), false,
                                 "%s: condition \"%.64s\" is not in \"conditions\"", what, condition);
        }
        free(condition);
        if (r < 0)
                return r;

        if ((r = get_string(p, j, "path", true, what, &rule->path)) < 0)
                return r;
        if (!*rule->path)
                return fail(p, cJSON_GetObjectItemCaseSensitive(j, "path"), false, "%s: \"path\" is empty", what);
        if ((r = parse_args(p, rule, cJSON_GetObjectItemCaseSensitive(j, "args"), what)) < 0)
                return r;

        rule->timeout = c->timeout;
        if ((r = get_duration(p, j, "timeout", what, &rule->timeout, &has_timeout)) < 0)
                return r;
        if (has_timeout && rule->timeout > c->timeout) {
                char a[32], b[32];
                return fail(p, cJSON_GetObjectItemCaseSensitive(j, "timeout"), false,
                            "%s: \"timeout\" %s is longer than pluginConfig's timeout %s (node-problem-detector "
                            "refuses that too)",
                            what, format_duration(a, sizeof(a), rule->timeout),
                            format_duration(b, sizeof(b), c->timeout));
        }
        rule->invoke_interval = c->invoke_interval;
        return get_duration(p, j, "invoke_interval", what, &rule->invoke_interval, &has_interval);
}

int npd_config_parse(const char *text, size_t len, const char *path, struct npd_config **ret, char **ret_error) {
        static const char *const keys[] = {"plugin",     "pluginConfig", "source", "metricsReporting",
                                           "conditions", "rules",        NULL};
        struct parser p = {.path = path, .error = ret_error};
        struct npd_config *c = NULL;
        cJSON *root = NULL;
        const cJSON *j;
        char *plugin = NULL;
        int r;

        *ret_error = NULL;
        p.positions = json_positions_new();
        if (!p.positions)
                return -ENOMEM;
        r = json_pos_parse(p.positions, path, text, len, &root, ret_error);
        if (r < 0)
                goto out;
        if (!cJSON_IsObject(root)) {
                r = fail(&p, root, false, "must hold a JSON object, not %s", json_type_name(root));
                goto out;
        }
        if ((r = check_keys(&p, root, keys, "the top level")) < 0)
                goto out;

        r = -ENOMEM;
        c = calloc(1, sizeof(*c));
        if (!c || !(c->path = strdup(path)))
                goto out;
        c->invoke_interval = DEFAULT_INVOKE_INTERVAL;
        c->timeout = DEFAULT_TIMEOUT;
        c->max_output_length = DEFAULT_MAX_OUTPUT_LENGTH;
        c->concurrency = DEFAULT_CONCURRENCY;
        c->metrics_reporting = true;

        if ((r = get_string(&p, root, "plugin", false, "the top level", &plugin)) < 0)
                goto out;
        if (plugin && strcmp(plugin, "custom") != 0) {
                r = fail(&p, cJSON_GetObjectItemCaseSensitive(root, "plugin"), false,
                         "\"plugin\" is \"%.64s\": a custom-plugin-monitor file says \"custom\" (a system-log-monitor "
                         "file such as kernel-monitor.json belongs to the kernel_log probe)",
                         plugin);
                goto out;
        }
        j = cJSON_GetObjectItemCaseSensitive(root, "pluginConfig");
        if (j && (r = parse_plugin_config(&p, c, j)) < 0)
                goto out;
        if ((r = get_string(&p, root, "source", false, "the top level", &c->source)) < 0 ||
            (r = get_bool(&p, root, "metricsReporting", "the top level", &c->metrics_reporting)) < 0)
                goto out;
        j = cJSON_GetObjectItemCaseSensitive(root, "conditions");
        if (j && (r = parse_conditions(&p, c, j)) < 0)
                goto out;

        j = cJSON_GetObjectItemCaseSensitive(root, "rules");
        if (j) {
                const cJSON *item;

                if (!cJSON_IsArray(j)) {
                        r = fail(&p, j, false, "\"rules\" must be an array, not %s", json_type_name(j));
                        goto out;
                }
                if (cJSON_GetArraySize(j) > MAX_RULES) {
                        r = fail(&p, j, false, "more than %d rules", MAX_RULES);
                        goto out;
                }
                c->rules = calloc((size_t) cJSON_GetArraySize(j) + 1, sizeof(*c->rules));
                if (!c->rules) {
                        r = -ENOMEM;
                        goto out;
                }
                cJSON_ArrayForEach(item, j) {
                        size_t i = c->n_rules++;
                        if ((r = parse_rule(&p, c, &c->rules[i], item, i)) < 0)
                                goto out;
                }
        }
        *ret = c;
        c = NULL;
        r = 0;
out:
        free(plugin);
        cJSON_Delete(root);
        json_positions_free(p.positions);
        npd_config_free(c);
        return r;
}

int npd_config_load(int dirfd, const char *path, struct npd_config **ret, char **ret_error) {
        char *text = NULL;
        size_t len = 0;
        int r;

        r = probe_read_file(dirfd, path, MAX_FILE_SIZE, &text, &len, ret_error);
        if (r < 0)
                return r;
        r = npd_config_parse(text, len, path, ret, ret_error);
        free(text);
        return r;
}
