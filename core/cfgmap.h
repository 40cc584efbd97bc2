/* SPDX-License-Identifier: MIT */
/*
 * Configuration tables: a JSON object is checked against rows of struct nh_cfg_entry (the
 * same rows a probe declares in its descriptor) and the values are written into structs.
 * Unknown keys, wrong types and values out of range are errors naming file:line:column.
 */
#pragma once

#include <cjson/cJSON.h>
#include <nodehealth/plugin.h>

#include "json-pos.h"

/* One table and the struct it fills; several sections may share one JSON object. */
struct cfg_section {
        const struct nh_cfg_entry *entries; /* terminated by key NULL; may be NULL */
        void *base;
};

/*
 * Writes every entry's default (rows whose `def` is NULL keep what the struct holds),
 * then the values of `obj` (which may be NULL: defaults only).  `what` names the object
 * in messages ("probe \"memory\""); keys in `ignore_keys` (NULL-terminated, may be NULL)
 * are someone else's and skipped.  Returns 0, or -EINVAL with "FILE:LINE:COLUMN: ..." in
 * *ret_error; what was filled before the error is freed by cfgmap_free() as usual.
 */
int cfgmap_apply(const struct cfg_section *sections, size_t n_sections, const cJSON *obj,
                 const struct json_positions *positions, const char *what, char *const *ignore_keys, char **ret_error);

/* Frees the strings and lists a table filled in `base`, and zeroes them. */
void cfgmap_free(const struct nh_cfg_entry *entries, void *base);

/* Checks a table itself (a probe's descriptor is untrusted): 0 or -EINVAL with a message. */
int cfgmap_check_table(const struct nh_cfg_entry *entries, size_t config_size, char **ret_error);

/* "a duration", "a boolean", … */
const char *cfgmap_type_name(enum nh_cfg_type type);
