/* SPDX-License-Identifier: MIT */
/*
 * The wire protocol between the daemon and the probe host of an isolated probe: one JSON
 * object per SOCK_SEQPACKET message, at most NH_PROTO_MESSAGE_MAX bytes, "op" naming it.
 *
 * daemon -> host: {"op":"init","probe":NAME,"config":{the probe's object}}, then
 *                 {"op":"cycle"} per observation cycle.
 * host -> daemon: {"op":"declare","type","healthy_reason"}, {"op":"report","type",
 *                 "problem"?, "status", "reason"?, "message"?}, {"op":"unknown","reason",
 *                 "message"}, {"op":"event","reason","message"}, {"op":"trigger"},
 *                 {"op":"counter","name","value"} (a counter of nh_counter_set(), its value in
 *                 decimal digits: a JSON number cannot hold every uint64_t),
 *                 {"op":"done"} (a cycle ended), {"op":"ready"} (init succeeded, or in check
 *                 mode the plugin loaded and its keys fit), {"op":"fatal","kind":"refused"|
 *                 "config"|"init","errno","error"} (the host stops and exits).
 *
 * The daemon parses what a host sends as hostile input: anything that does not fit exactly
 * is a protocol error, and the host is killed for it.
 */
#pragma once

#include <cjson/cJSON.h>
#include <nodehealth/plugin.h>
#include <stddef.h>
#include <stdint.h>

#define NH_PROTO_MESSAGE_MAX 65536
#define NH_PROTO_TEXT_MAX 32768 /* messages and errors; longer ones are cut by the host */

enum nh_proto_op {
        NH_OP_DECLARE,
        NH_OP_REPORT,
        NH_OP_UNKNOWN,
        NH_OP_EVENT,
        NH_OP_TRIGGER,
        NH_OP_COUNTER,
        NH_OP_DONE,
        NH_OP_READY,
        NH_OP_FATAL,
        _NH_OP_MAX,
        _NH_OP_INVALID = -22,
};

/* A host's message, checked; the strings point into the cJSON tree it was parsed into. */
struct nh_proto_msg {
        enum nh_proto_op op;
        const char *type, *healthy_reason, *problem, *reason, *message, *kind, *error, *name;
        enum nh_status status;
        uint64_t value; /* "value" of a counter message */
        int error_code; /* "errno" of a fatal message: a negative errno */
};

/*
 * Parses `len` bytes a probe host sent.  Returns 0, the tree in *ret_json (the caller frees
 * it with cJSON_Delete) and the fields in *ret; or -EBADMSG and a constant text saying what
 * was wrong in *ret_why.
 */
int nh_proto_parse(const char *buf, size_t len, cJSON **ret_json, struct nh_proto_msg *ret, const char **ret_why);

/* Sends `msg` as one message; 0, -EMSGSIZE when it does not fit, or the errno of send(). */
int nh_proto_send(int fd, const cJSON *msg);

/* Builds and sends {"op": op, k1: v1, ...} from NULL-terminated pairs of string keys and values (a NULL value is left out). */
int nh_proto_send_strings(int fd, const char *op, ...);
