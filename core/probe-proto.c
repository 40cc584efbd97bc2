/* SPDX-License-Identifier: MIT */
#include "probe-proto.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>

#include "conditions.h"
#include "util.h"

#define NAME_MAX_LEN 128 /* CamelCase types and reasons: is_camel_case() caps them here */
#define PROBLEM_MAX_LEN 64
#define COUNTER_NAME_MAX_LEN 64

static const struct {
        const char *name;
        const char *const keys[6]; /* allowed besides "op" */
} ops[_NH_OP_MAX] = {
        [NH_OP_DECLARE] = {"declare", {"type", "healthy_reason"}},
        [NH_OP_REPORT] = {"report", {"type", "problem", "status", "reason", "message"}},
        [NH_OP_UNKNOWN] = {"unknown", {"reason", "message"}},
        [NH_OP_EVENT] = {"event", {"reason", "message"}},
        [NH_OP_TRIGGER] = {"trigger", {NULL}},
        [NH_OP_COUNTER] = {"counter", {"name", "value"}},
        [NH_OP_DONE] = {"done", {NULL}},
        [NH_OP_READY] = {"ready", {NULL}},
        [NH_OP_FATAL] = {"fatal", {"kind", "errno", "error"}},
};

/* A string member of at most `max` bytes; NULL when absent (then *ok stays), *ok = false when wrong. */
static const char *string_member(const cJSON *o, const char *key, size_t max, bool required, bool *ok) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!v) {
                if (required)
                        *ok = false;
                return NULL;
        }
        if (!cJSON_IsString(v) || !v->valuestring || strlen(v->valuestring) > max) {
                *ok = false;
                return NULL;
        }
        return v->valuestring;
}

/* A uint64_t in decimal digits, nothing else (no sign, no space, no overflow). */
static bool parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s || strlen(s) > 20)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return true;
}

static bool allowed_key(enum nh_proto_op op, const char *key) {
        if (strcmp(key, "op") == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(ops[op].keys) && ops[op].keys[i]; i++)
                if (strcmp(ops[op].keys[i], key) == 0)
                        return true;
        return false;
}

static int bad(const char **ret_why, const char *why) {
        *ret_why = why;
        return -EBADMSG;
}

int nh_proto_parse(const char *buf, size_t len, cJSON **ret_json, struct nh_proto_msg *ret, const char **ret_why) {
        cJSON *json = NULL;
        const cJSON *member;
        const char *op, *status;
        struct nh_proto_msg m = {.op = _NH_OP_INVALID, .status = _NH_STATUS_INVALID};
        bool ok = true;

        if (len == 0 || len > NH_PROTO_MESSAGE_MAX)
                return bad(ret_why, "a message of a size out of range");
        if (memchr(buf, '\0', len))
                return bad(ret_why, "a message with a NUL byte");
        json = cJSON_ParseWithLength(buf, len);
        if (!json)
                return bad(ret_why, "a message that is not JSON");
        if (!cJSON_IsObject(json)) {
                cJSON_Delete(json);
                return bad(ret_why, "a message that is not a JSON object");
        }
        op = string_member(json, "op", 16, true, &ok);
        for (int i = 0; op && i < _NH_OP_MAX; i++)
                if (strcmp(op, ops[i].name) == 0)
                        m.op = (enum nh_proto_op) i;
        if (m.op < 0) {
                cJSON_Delete(json);
                return bad(ret_why, "a message with an unknown \"op\"");
        }
        cJSON_ArrayForEach(member, json) {
                if (!member->string || !allowed_key(m.op, member->string)) {
                        cJSON_Delete(json);
                        return bad(ret_why, "a message with a key its \"op\" does not have");
                }
        }

        switch (m.op) {
        case NH_OP_DECLARE:
                m.type = string_member(json, "type", NAME_MAX_LEN, true, &ok);
                m.healthy_reason = string_member(json, "healthy_reason", NAME_MAX_LEN, true, &ok);
                break;
        case NH_OP_REPORT:
                m.type = string_member(json, "type", NAME_MAX_LEN, true, &ok);
                m.problem = string_member(json, "problem", PROBLEM_MAX_LEN, false, &ok);
                m.reason = string_member(json, "reason", NAME_MAX_LEN, false, &ok);
                m.message = string_member(json, "message", NH_PROTO_TEXT_MAX, false, &ok);
                status = string_member(json, "status", 16, true, &ok);
                m.status = status ? nh_status_from_string(status) : _NH_STATUS_INVALID;
                if (m.status < 0)
                        ok = false;
                break;
        case NH_OP_UNKNOWN:
        case NH_OP_EVENT:
                m.reason = string_member(json, "reason", NAME_MAX_LEN, true, &ok);
                m.message = string_member(json, "message", NH_PROTO_TEXT_MAX, true, &ok);
                break;
        case NH_OP_COUNTER:
                /* The name's rules are nh_counter_set()'s, which the receiver applies. */
                m.name = string_member(json, "name", COUNTER_NAME_MAX_LEN, true, &ok);
                if (!parse_u64(string_member(json, "value", 20, true, &ok), &m.value))
                        ok = false;
                break;
        case NH_OP_FATAL: {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(json, "errno");

                m.kind = string_member(json, "kind", 16, true, &ok);
                m.error = string_member(json, "error", NH_PROTO_TEXT_MAX, true, &ok);
                if (m.kind && strcmp(m.kind, "refused") != 0 && strcmp(m.kind, "config") != 0 &&
                    strcmp(m.kind, "init") != 0)
                        ok = false;
                if (!cJSON_IsNumber(e) || e->valuedouble > -1 || e->valuedouble < -4095 ||
                    e->valuedouble != (double) e->valueint)
                        ok = false;
                else
                        m.error_code = e->valueint;
                break;
        }
        default:
                break;
        }
        if (!ok) {
                cJSON_Delete(json);
                return bad(ret_why, "a message with a missing or malformed field");
        }
        *ret_json = json;
        *ret = m;
        return 0;
}

int nh_proto_send(int fd, const cJSON *msg) {
        _cleanup_free_ char *text = cJSON_PrintUnformatted(msg);
        size_t len;

        if (!text)
                return -ENOMEM;
        len = strlen(text);
        if (len > NH_PROTO_MESSAGE_MAX)
                return -EMSGSIZE;
        for (;;) {
                ssize_t n = send(fd, text, len, MSG_NOSIGNAL);
                if (n >= 0)
                        return 0;
                if (errno != EINTR)
                        return -errno;
        }
}

int nh_proto_send_strings(int fd, const char *op, ...) {
        cJSON *msg = cJSON_CreateObject();
        const char *key;
        va_list ap;
        int r = 0;

        if (!msg || !cJSON_AddStringToObject(msg, "op", op)) {
                cJSON_Delete(msg);
                return -ENOMEM;
        }
        va_start(ap, op);
        while ((key = va_arg(ap, const char *))) {
                const char *value = va_arg(ap, const char *);
                if (value && !cJSON_AddStringToObject(msg, key, value))
                        r = -ENOMEM;
        }
        va_end(ap);
        if (r >= 0)
                r = nh_proto_send(fd, msg);
        cJSON_Delete(msg);
        return r;
}
