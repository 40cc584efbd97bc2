/* SPDX-License-Identifier: MIT */
#include "json-pos.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "util.h"

struct node_pos {
        const cJSON *node;
        struct json_pos key, value;
};

struct json_positions {
        struct node_pos *nodes;
        size_t n_nodes, n_allocated;
        char **files;
};

/* A cursor over text that cJSON already accepted, counting lines and columns. */
struct scanner {
        const char *p, *end;
        unsigned line, column;
        struct node_pos *out; /* pre-order, as cJSON links its children */
        size_t n_out, n_allocated;
};

struct json_positions *json_positions_new(void) {
        return calloc(1, sizeof(struct json_positions));
}

struct json_positions *json_positions_free(struct json_positions *p) {
        if (!p)
                return NULL;
        free(p->nodes);
        strv_free(p->files);
        free(p);
        return NULL;
}

static void scan_advance(struct scanner *s) {
        if (*s->p == '\n') {
                s->line++;
                s->column = 1;
        } else if (((unsigned char) *s->p & 0xc0) != 0x80)
                s->column++; /* count characters, not UTF-8 continuation bytes */
        s->p++;
}

static void scan_space(struct scanner *s) {
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                scan_advance(s);
}

static void scan_string(struct scanner *s) {
        scan_advance(s); /* opening quote */
        while (s->p < s->end && *s->p != '"') {
                if (*s->p == '\\' && s->p + 1 < s->end)
                        scan_advance(s);
                scan_advance(s);
        }
        if (s->p < s->end)
                scan_advance(s);
}

static int scan_push(struct scanner *s, struct json_pos key, struct json_pos value) {
        if (s->n_out == s->n_allocated) {
                size_t n = s->n_allocated ? s->n_allocated * 2 : 64;
                struct node_pos *grown = realloc(s->out, n * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                s->out = grown;
                s->n_allocated = n;
        }
        s->out[s->n_out++] = (struct node_pos){.key = key, .value = value};
        return 0;
}

static struct json_pos scan_here(const struct scanner *s) {
        return (struct json_pos){.line = s->line, .column = s->column};
}

static int scan_value(struct scanner *s, struct json_pos key, unsigned depth) {
        int r;

        if (depth > CJSON_NESTING_LIMIT)
                return -E2BIG;
        scan_space(s);
        r = scan_push(s, key, scan_here(s));
        if (r < 0)
                return r;
        if (s->p >= s->end)
                return -EINVAL;

        switch (*s->p) {
        case '{':
        case '[': {
                char close = *s->p == '{' ? '}' : ']';
                bool object = close == '}';

                scan_advance(s);
                scan_space(s);
                while (s->p < s->end && *s->p != close) {
                        struct json_pos member_key = {0};
                        if (object) {
                                member_key = scan_here(s);
                                scan_string(s);
                                scan_space(s);
                                if (s->p < s->end && *s->p == ':')
                                        scan_advance(s);
                        }
                        r = scan_value(s, member_key, depth + 1);
                        if (r < 0)
                                return r;
                        scan_space(s);
                        if (s->p < s->end && *s->p == ',') {
                                scan_advance(s);
                                scan_space(s);
                        }
                }
                if (s->p < s->end)
                        scan_advance(s);
                return 0;
        }
        case '"':
                scan_string(s);
                return 0;
        default:
                while (s->p < s->end && !strchr(" \t\r\n,]}", *s->p))
                        scan_advance(s);
                return 0;
        }
}

/* Pairs the scanner's pre-order list with cJSON's tree, and finds duplicate keys. */
static int zip(const cJSON *node, struct node_pos *list, size_t n, size_t *i, const cJSON **ret_duplicate) {
        if (*i >= n)
                return -EINVAL;
        list[(*i)++].node = node;
        for (const cJSON *c = node->child; c; c = c->next) {
                if (cJSON_IsObject(node) && !*ret_duplicate)
                        for (const cJSON *d = node->child; d != c; d = d->next)
                                if (strcmp(d->string, c->string) == 0) {
                                        *ret_duplicate = c;
                                        break;
                                }
                int r = zip(c, list, n, i, ret_duplicate);
                if (r < 0)
                        return r;
        }
        return 0;
}

static struct json_pos offset_to_pos(const char *text, size_t offset) {
        struct scanner s = {.p = text, .end = text + offset, .line = 1, .column = 1};

        while (s.p < s.end)
                scan_advance(&s);
        return scan_here(&s);
}

char *json_pos_error(struct json_pos pos, const char *format, ...) {
        _cleanup_free_ char *what = NULL;
        char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&what, format, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        if (!pos.file) /* a node no file holds (a drop-in probe's defaults): no position to give */
                return TAKE_PTR(what);
        if (pos.line > 0)
                r = asprintf(&msg, "%s:%u:%u: %s", pos.file, pos.line, pos.column, what);
        else
                r = asprintf(&msg, "%s: %s", pos.file, what);
        return r < 0 ? NULL : msg;
}

int json_pos_parse(struct json_positions *p, const char *file, const char *text, size_t len, cJSON **ret_root,
                   char **ret_error) {
        _cleanup_free_ char *file_copy = NULL;
        const char *parse_end = NULL;
        const cJSON *duplicate = NULL;
        struct scanner s = {.p = text, .end = text + len, .line = 1, .column = 1};
        cJSON *root;
        size_t i = 0;
        int r;

        if (memchr(text, '\0', len)) {
                struct json_pos pos = offset_to_pos(text, (size_t) ((const char *) memchr(text, '\0', len) - text));
                pos.file = file;
                *ret_error = json_pos_error(pos, "NUL byte in JSON text");
                return -EINVAL;
        }

        file_copy = strdup(file);
        if (!file_copy)
                return -ENOMEM;

        root = cJSON_ParseWithLengthOpts(text, len, &parse_end, false);
        if (!root) {
                struct scanner rest;
                size_t offset =
                        parse_end && parse_end >= text && parse_end <= text + len ? (size_t) (parse_end - text) : 0;
                struct json_pos pos = offset_to_pos(text, offset);

                pos.file = file;
                rest = (struct scanner){.p = text, .end = text + len, .line = 1, .column = 1};
                scan_space(&rest);
                if (rest.p >= rest.end)
                        *ret_error = json_pos_error((struct json_pos){.file = file, .line = 1, .column = 1},
                                                    "empty file: expected a JSON object");
                else {
                        /* cJSON points at the last byte when the text stops short: say so. */
                        rest = (struct scanner){.p = text + (offset < len ? offset + 1 : len), .end = text + len};
                        scan_space(&rest);
                        if (rest.p >= rest.end && text[offset] != '}' && text[offset] != ']') {
                                pos = offset_to_pos(text, len);
                                pos.file = file;
                                *ret_error = json_pos_error(pos, "invalid JSON: the text ends too early");
                        } else
                                *ret_error = json_pos_error(pos, "invalid JSON");
                }
                return -EINVAL;
        }

        /* cJSON stops after the first value; anything but whitespace after it is an error. */
        s.p = parse_end;
        s.end = text + len;
        {
                struct json_pos pos = offset_to_pos(text, (size_t) (parse_end - text));
                s.line = pos.line;
                s.column = pos.column;
        }
        scan_space(&s);
        if (s.p < s.end) {
                struct json_pos pos = scan_here(&s);
                pos.file = file;
                cJSON_Delete(root);
                *ret_error = json_pos_error(pos, "unexpected text after the JSON value");
                return -EINVAL;
        }

        s = (struct scanner){.p = text, .end = text + len, .line = 1, .column = 1};
        r = scan_value(&s, (struct json_pos){0}, 0);
        if (r >= 0)
                r = zip(root, s.out, s.n_out, &i, &duplicate);
        if (r >= 0 && i != s.n_out)
                r = -EINVAL;
        if (r < 0) {
                free(s.out);
                cJSON_Delete(root);
                *ret_error =
                        json_pos_error((struct json_pos){.file = file}, "cannot index JSON text: %s", strerror(-r));
                return r;
        }

        r = strv_push(&p->files, file_copy);
        if (r < 0) {
                free(s.out);
                cJSON_Delete(root);
                return r;
        }
        file = TAKE_PTR(file_copy);
        for (i = 0; i < s.n_out; i++) {
                s.out[i].key.file = s.out[i].key.line ? file : NULL;
                s.out[i].value.file = file;
        }

        if (duplicate) {
                struct json_pos pos = {0};
                for (i = 0; i < s.n_out; i++)
                        if (s.out[i].node == duplicate)
                                pos = s.out[i].key;
                *ret_error = json_pos_error(pos, "duplicate key \"%s\"", duplicate->string);
                free(s.out);
                cJSON_Delete(root);
                return -EINVAL;
        }

        if (p->n_nodes + s.n_out > p->n_allocated) {
                size_t n = (p->n_nodes + s.n_out) * 2;
                struct node_pos *grown = realloc(p->nodes, n * sizeof(*grown));
                if (!grown) {
                        free(s.out);
                        cJSON_Delete(root);
                        return -ENOMEM;
                }
                p->nodes = grown;
                p->n_allocated = n;
        }
        memcpy(p->nodes + p->n_nodes, s.out, s.n_out * sizeof(*s.out));
        p->n_nodes += s.n_out;
        free(s.out);
        *ret_root = root;
        return 0;
}

static const struct node_pos *find(const struct json_positions *p, const cJSON *node) {
        for (size_t i = 0; p && i < p->n_nodes; i++)
                if (p->nodes[i].node == node)
                        return &p->nodes[i];
        return NULL;
}

struct json_pos json_pos_value(const struct json_positions *p, const cJSON *node) {
        const struct node_pos *n = find(p, node);
        return n ? n->value : (struct json_pos){0};
}

struct json_pos json_pos_key(const struct json_positions *p, const cJSON *node) {
        const struct node_pos *n = find(p, node);
        if (!n)
                return (struct json_pos){0};
        return n->key.line ? n->key : n->value;
}

void json_pos_forget(struct json_positions *p, const cJSON *node) {
        for (const cJSON *c = node->child; c; c = c->next)
                json_pos_forget(p, c);
        for (size_t i = 0; i < p->n_nodes; i++)
                if (p->nodes[i].node == node) {
                        p->nodes[i] = p->nodes[--p->n_nodes];
                        return;
                }
}

const char *json_type_name(const cJSON *node) {
        if (cJSON_IsObject(node))
                return "an object";
        if (cJSON_IsArray(node))
                return "an array";
        if (cJSON_IsString(node))
                return "a string";
        if (cJSON_IsNumber(node))
                return "a number";
        if (cJSON_IsBool(node))
                return "a boolean";
        if (cJSON_IsNull(node))
                return "null";
        return "an invalid value";
}
