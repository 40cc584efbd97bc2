/* SPDX-License-Identifier: MIT */
/*
 * JSON with positions.  cJSON parses but forgets where things were; configuration errors
 * must say file:line:column.  json_pos_parse() parses a file's text with cJSON and records,
 * for every node, the file and the line and column of its value and of its key.  The
 * registry outlives the individual files so a tree merged from several files (nodes are
 * moved, never copied) still knows where each node came from.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "macro.h"

struct json_pos {
        const char *file; /* owned by the registry */
        unsigned line, column;
};

struct json_positions;

struct json_positions *json_positions_new(void);
struct json_positions *json_positions_free(struct json_positions *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_positions *, json_positions_free)

/*
 * Parses `len` bytes of `text`, read from `file`.  On success returns 0 and the tree in
 * *ret_root (the caller frees it with cJSON_Delete) with the positions of all its nodes
 * added to `p`.  On failure returns -EINVAL (or -ENOMEM) and a message
 * "FILE:LINE:COLUMN: what" in *ret_error (the caller frees it).  Duplicate object keys
 * are an error: cJSON would silently keep both.
 */
int json_pos_parse(struct json_positions *p, const char *file, const char *text, size_t len, cJSON **ret_root,
                   char **ret_error);

/* Where a node's value starts, or where its key starts; {NULL, 0, 0} when unknown. */
struct json_pos json_pos_value(const struct json_positions *p, const cJSON *node);
struct json_pos json_pos_key(const struct json_positions *p, const cJSON *node);

/* Forgets a node and its descendants, before it is deleted. */
void json_pos_forget(struct json_positions *p, const cJSON *node);

/* Formats "FILE:LINE:COLUMN: message" (or "FILE: message" when the position is unknown). */
char *json_pos_error(struct json_pos pos, const char *format, ...) _printf_(2, 3);

/* "an object", "a string", … for messages. */
const char *json_type_name(const cJSON *node);
