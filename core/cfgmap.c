/* SPDX-License-Identifier: MIT */
#include "cfgmap.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "util.h"

const char *cfgmap_type_name(enum nh_cfg_type type) {
        switch (type) {
        case NH_CFG_BOOL:
                return "a boolean";
        case NH_CFG_INT:
                return "an integer";
        case NH_CFG_DOUBLE:
                return "a number";
        case NH_CFG_DURATION:
                return "a duration such as \"500ms\", \"10s\" or \"5m\"";
        case NH_CFG_STRING:
                return "a string";
        case NH_CFG_STRING_LIST:
                return "an array of strings";
        default:
                return "an unknown type";
        }
}

static size_t type_size(enum nh_cfg_type type) {
        switch (type) {
        case NH_CFG_BOOL:
                return sizeof(bool);
        case NH_CFG_INT:
                return sizeof(int64_t);
        case NH_CFG_DOUBLE:
                return sizeof(double);
        case NH_CFG_DURATION:
                return sizeof(uint64_t);
        case NH_CFG_STRING:
                return sizeof(char *);
        case NH_CFG_STRING_LIST:
                return sizeof(char **);
        default:
                return 0;
        }
}

int cfgmap_check_table(const struct nh_cfg_entry *entries, size_t config_size, char **ret_error) {
        for (size_t i = 0; entries && entries[i].key; i++) {
                const struct nh_cfg_entry *e = &entries[i];
                size_t size = type_size(e->type);

                if (size == 0 || e->offset > config_size || config_size - e->offset < size ||
                    e->offset % (size < sizeof(void *) ? size : sizeof(void *)) != 0) {
                        if (asprintf(ret_error, "config key \"%s\" has a bad type or offset", e->key) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(entries[j].key, e->key) == 0) {
                                if (asprintf(ret_error, "config key \"%s\" is declared twice", e->key) < 0)
                                        *ret_error = NULL;
                                return -EINVAL;
                        }
        }
        return 0;
}

static unsigned edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned row[64];

        if (lb >= ELEMENTSOF(row))
                return 99;
        for (size_t j = 0; j <= lb; j++)
                row[j] = (unsigned) j;
        for (size_t i = 1; i <= la; i++) {
                unsigned diag = row[0];
                row[0] = (unsigned) i;
                for (size_t j = 1; j <= lb; j++) {
                        unsigned up = row[j];
                        unsigned best = diag + (a[i - 1] != b[j - 1]);
                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[lb];
}

static const struct nh_cfg_entry *lookup(const struct cfg_section *sections, size_t n, const char *key,
                                         void **ret_base) {
        for (size_t s = 0; s < n; s++)
                for (size_t i = 0; sections[s].entries && sections[s].entries[i].key; i++)
                        if (strcmp(sections[s].entries[i].key, key) == 0) {
                                *ret_base = sections[s].base;
                                return &sections[s].entries[i];
                        }
        return NULL;
}

/* The closest known key (from the tables or the keys handled elsewhere), if it is close. */
static const char *suggest(const struct cfg_section *sections, size_t n, char *const *ignore_keys, const char *key) {
        const char *best = NULL;
        unsigned best_distance = 3; /* suggest only close misspellings */

        for (size_t s = 0; s < n; s++)
                for (size_t i = 0; sections[s].entries && sections[s].entries[i].key; i++) {
                        unsigned d = edit_distance(key, sections[s].entries[i].key);
                        if (d < best_distance) {
                                best_distance = d;
                                best = sections[s].entries[i].key;
                        }
                }
        for (size_t i = 0; ignore_keys && ignore_keys[i]; i++) {
                unsigned d = edit_distance(key, ignore_keys[i]);
                if (d < best_distance) {
                        best_distance = d;
                        best = ignore_keys[i];
                }
        }
        return best;
}

static void free_value(const struct nh_cfg_entry *e, void *base) {
        void *field = (char *) base + e->offset;

        if (e->type == NH_CFG_STRING) {
                free(*(char **) field);
                *(char **) field = NULL;
        } else if (e->type == NH_CFG_STRING_LIST) {
                *(char ***) field = strv_free(*(char ***) field);
        }
}

static int check_range(const struct nh_cfg_entry *e, double v) {
        if (e->min < e->max && (v < e->min || v > e->max))
                return -ERANGE;
        return 0;
}

/* Parses text (a default, or a JSON string for durations) into the field. */
static int store_text(const struct nh_cfg_entry *e, void *base, const char *text) {
        void *field = (char *) base + e->offset;
        int r;

        switch (e->type) {
        case NH_CFG_BOOL:
                return parse_bool(text, (bool *) field);
        case NH_CFG_INT: {
                int64_t v;
                r = parse_int64(text, &v);
                if (r < 0)
                        return r;
                r = check_range(e, (double) v);
                if (r < 0)
                        return r;
                memcpy(field, &v, sizeof(v));
                return 0;
        }
        case NH_CFG_DOUBLE: {
                double v;
                r = parse_double(text, &v);
                if (r < 0)
                        return r;
                r = check_range(e, v);
                if (r < 0)
                        return r;
                memcpy(field, &v, sizeof(v));
                return 0;
        }
        case NH_CFG_DURATION: {
                uint64_t v;
                r = parse_duration(text, &v);
                if (r < 0)
                        return r;
                r = check_range(e, (double) v / (double) USEC_PER_SEC);
                if (r < 0)
                        return r;
                memcpy(field, &v, sizeof(v));
                return 0;
        }
        case NH_CFG_STRING: {
                char *copy = strdup(text);
                if (!copy)
                        return -ENOMEM;
                free_value(e, base);
                *(char **) field = copy;
                return 0;
        }
        case NH_CFG_STRING_LIST: {
                _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
                _cleanup_free_ char *copy = strdup(text);
                char *saveptr = NULL;

                if (!l || !copy)
                        return -ENOMEM;
                for (char *w = strtok_r(copy, ",", &saveptr); w; w = strtok_r(NULL, ",", &saveptr)) {
                        char *item = strdup(strstrip(w));
                        if (!item)
                                return -ENOMEM;
                        if (*item == '\0') {
                                free(item);
                                continue;
                        }
                        r = strv_push(&l, item);
                        if (r < 0) {
                                free(item);
                                return r;
                        }
                }
                free_value(e, base);
                *(char ***) field = TAKE_PTR(l);
                return 0;
        }
        default:
                return -EINVAL;
        }
}

static char *range_text(const struct nh_cfg_entry *e, char *buf, size_t size) {
        if (e->type == NH_CFG_DURATION)
                snprintf(buf, size, "between %gs and %gs", e->min, e->max);
        else
                snprintf(buf, size, "between %g and %g", e->min, e->max);
        return buf;
}

static int store_json(const struct nh_cfg_entry *e, void *base, const cJSON *v, const struct json_positions *positions,
                      const char *what, char **ret_error) {
        struct json_pos pos = json_pos_value(positions, v);
        void *field = (char *) base + e->offset;
        char range[96];
        int r;

        switch (e->type) {
        case NH_CFG_BOOL:
                if (!cJSON_IsBool(v))
                        goto wrong_type;
                *(bool *) field = cJSON_IsTrue(v);
                return 0;
        case NH_CFG_INT: {
                int64_t i;
                if (!cJSON_IsNumber(v))
                        goto wrong_type;
                if (v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9007199254740992.0) {
                        *ret_error = json_pos_error(pos, "\"%s\" in %s must be an integer, not %g", e->key, what,
                                                    v->valuedouble);
                        return -EINVAL;
                }
                i = (int64_t) v->valuedouble;
                if (check_range(e, (double) i) < 0)
                        goto out_of_range;
                memcpy(field, &i, sizeof(i));
                return 0;
        }
        case NH_CFG_DOUBLE:
                if (!cJSON_IsNumber(v))
                        goto wrong_type;
                if (check_range(e, v->valuedouble) < 0)
                        goto out_of_range;
                memcpy(field, &v->valuedouble, sizeof(double));
                return 0;
        case NH_CFG_DURATION: {
                char number[64];
                const char *text;

                if (cJSON_IsNumber(v)) {
                        if (v->valuedouble < 0)
                                goto bad_duration;
                        snprintf(number, sizeof(number), "%.17g", v->valuedouble);
                        text = number;
                } else if (cJSON_IsString(v))
                        text = v->valuestring;
                else
                        goto wrong_type;
                r = store_text(e, base, text);
                if (r == -ERANGE)
                        goto out_of_range;
                if (r < 0)
                        goto bad_duration;
                return 0;
        }
        case NH_CFG_STRING:
                if (!cJSON_IsString(v))
                        goto wrong_type;
                return store_text(e, base, v->valuestring) < 0 ? -ENOMEM : 0;
        case NH_CFG_STRING_LIST: {
                _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
                const cJSON *item;

                if (!l)
                        return -ENOMEM;
                if (!cJSON_IsArray(v))
                        goto wrong_type;
                cJSON_ArrayForEach(item, v) {
                        char *copy;
                        if (!cJSON_IsString(item)) {
                                *ret_error = json_pos_error(json_pos_value(positions, item),
                                                            "\"%s\" in %s must list strings, not %s", e->key, what,
                                                            json_type_name(item));
                                return -EINVAL;
                        }
                        copy = strdup(item->valuestring);
                        if (!copy || strv_push(&l, copy) < 0) {
                                free(copy);
                                return -ENOMEM;
                        }
                }
                free_value(e, base);
                *(char ***) field = TAKE_PTR(l);
                return 0;
        }
        default:
                return -EINVAL;
        }

wrong_type:
        *ret_error = json_pos_error(pos, "\"%s\" in %s must be %s, not %s", e->key, what, cfgmap_type_name(e->type),
                                    json_type_name(v));
        return -EINVAL;
bad_duration:
        *ret_error = json_pos_error(pos, "\"%s\" in %s: \"%s\" is not a duration (write \"500ms\", \"10s\", \"5m\")",
                                    e->key, what, cJSON_IsString(v) ? v->valuestring : "negative");
        return -EINVAL;
out_of_range:
        *ret_error = json_pos_error(pos, "\"%s\" in %s must be %s", e->key, what, range_text(e, range, sizeof(range)));
        return -EINVAL;
}

int cfgmap_apply(const struct cfg_section *sections, size_t n_sections, const cJSON *obj,
                 const struct json_positions *positions, const char *what, char *const *ignore_keys, char **ret_error) {
        const cJSON *member;
        int r;

        for (size_t s = 0; s < n_sections; s++)
                for (size_t i = 0; sections[s].entries && sections[s].entries[i].key; i++) {
                        const struct nh_cfg_entry *e = &sections[s].entries[i];
                        if (!e->def)
                                continue;
                        r = store_text(e, sections[s].base, e->def);
                        if (r < 0) {
                                if (asprintf(ret_error, "%s: built-in default of \"%s\" (\"%s\") is invalid", what,
                                             e->key, e->def) < 0)
                                        *ret_error = NULL;
                                return -EINVAL;
                        }
                }

        if (!obj)
                return 0;
        if (!cJSON_IsObject(obj)) {
                *ret_error = json_pos_error(json_pos_value(positions, obj), "%s must be an object, not %s", what,
                                            json_type_name(obj));
                return -EINVAL;
        }

        cJSON_ArrayForEach(member, obj) {
                void *base = NULL;
                const struct nh_cfg_entry *e;

                if (strv_contains(ignore_keys, member->string))
                        continue;
                e = lookup(sections, n_sections, member->string, &base);

                if (!e) {
                        const char *near = suggest(sections, n_sections, ignore_keys, member->string);

                        struct json_pos pos = json_pos_key(positions, member);
                        if (near)
                                *ret_error = json_pos_error(pos, "unknown key \"%s\" in %s (did you mean \"%s\"?)",
                                                            member->string, what, near);
                        else
                                *ret_error = json_pos_error(pos, "unknown key \"%s\" in %s", member->string, what);
                        return -EINVAL;
                }
                r = store_json(e, base, member, positions, what, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

void cfgmap_free(const struct nh_cfg_entry *entries, void *base) {
        for (size_t i = 0; entries && entries[i].key; i++)
                free_value(&entries[i], base);
}
