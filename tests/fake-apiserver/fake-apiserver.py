#!/usr/bin/python3
"""fake-apiserver: a fake Kubernetes API server for nodehealthd's tests.

It serves the part of the core/v1 API a node condition reporter uses (nodes,
nodes/status, events) over real HTTPS with certificates made by openssl, and
reproduces the real server's behaviour described in
shared/k8s-api-behaviour.md: strategic merge of conditions by type, the error
Status objects, authentication and authorization failures, 429 with
Retry-After, a simulated kubelet rewriting its own conditions, and so on.

A second, plain-HTTP listener serves a control API (/control/...) for tests:
recorded requests, stored objects, fault injection, token rotation, kubelet
ticks.  See README.md next to this file.

Python 3.11 standard library only.
"""

import argparse
import datetime
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

PROG = "fake-apiserver"

KUBELET_TYPES = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
KUBELET_DEFAULTS = {
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
}
NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")

# What the real server lists in its 415 message.  Only the two merge flavours
# are implemented here; the others answer 415 too (see README.md).
PATCH_MEDIA_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]
PATCH_IMPLEMENTED = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
CREATE_MEDIA_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]

CA_CN = "fake-apiserver-ca"
WRONG_CA_CN = "fake-apiserver-wrong-ca"

DEFAULT_TOKEN_USER = "system:serviceaccount:kube-system:nodehealthd"
DEFAULT_NORBAC_USER = "system:serviceaccount:default:no-rbac"

# ---------------------------------------------------------------- small helpers


def log(msg):
    if not QUIET:
        ts = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        try:
            sys.stderr.write(f"[{PROG} {ts}] {msg}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


QUIET = False


# The server's clock (POST /control/clock): the real clock plus an offset, or frozen.
CLOCK = {"offset": 0.0, "frozen": None}


def now_utc():
    if CLOCK["frozen"] is not None:
        return CLOCK["frozen"]
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=CLOCK["offset"])


def fmt_time(dt):
    dt = dt.astimezone(datetime.timezone.utc)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}Z"


def fmt_micro(dt):
    dt = dt.astimezone(datetime.timezone.utc)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond:06d}Z")


def now_str():
    return fmt_time(now_utc())


def write_atomic(path, text, mode=0o644):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def go_quote(s):
    """Quote a string the way Go's %q does (close enough: JSON escaping)."""
    return json.dumps(s, ensure_ascii=False)


def go_value(v):
    """Format a decoded JSON value the way Go's %v prints interface{} values."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _reject_constant(name):
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def parse_json_bytes(body):
    """Parse JSON like Go's encoding/json would (no NaN/Infinity, UTF-8 only)."""
    text = body.decode("utf-8")
    return json.loads(text, parse_constant=_reject_constant)


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    """An error reply: a Status object (or plain text for 429)."""

    def __init__(self, code, reason, message, details=None, headers=None, plain=False):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or []
        self.plain = plain

    def response(self):
        if self.plain:
            return Response(self.code, self.message.encode(), "text/plain; charset=utf-8", headers=self.headers)
        return Response(self.code, status_object(self.code, self.reason, self.message, self.details),
                        headers=self.headers)


def status_object(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    if reason:
        s["reason"] = reason
    if details is not None:
        s["details"] = details
    s["code"] = code
    return s


def err_not_found(resource, name):
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def err_no_resource():
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def err_conflict(resource, name):
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
                    f"please apply your changes to the latest version and try again",
                    {"name": name, "kind": resource})


def err_already_exists(resource, name):
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name, "kind": resource})


def err_bad_request(message):
    return ApiError(400, "BadRequest", message)


def err_unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def err_unsupported_media(types):
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(types))


def err_method_not_allowed():
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def err_internal_plain(message):
    # A plain Go error returned by the handler: reason is StatusReasonUnknown (""), omitted.
    return ApiError(500, "", message)


def err_invalid(kind, name, causes):
    """causes: list of (field, message-after-field)."""
    texts = [f"{f}: {m}" for f, m in causes]
    agg = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qual = kind if kind else ""
    return ApiError(422, "Invalid", f"{qual} {go_quote(name)} is invalid: {agg}",
                    {"name": name, "kind": kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]})


def err_patch_invalid(patch, detail):
    # What applyPatchToObject returns when the patched object does not decode.
    value = go_value(patch)
    return ApiError(422, "Invalid", f' "" is invalid: patch: Invalid value: {go_quote(value)}: {detail}',
                    {"causes": [{"reason": "FieldValueInvalid",
                                 "message": f"Invalid value: {go_quote(value)}: {detail}", "field": "patch"}]})


STATUS_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}


class Response:
    def __init__(self, code, body, ctype="application/json", headers=None, warnings=None):
        self.code = code
        self.body = body
        self.ctype = ctype
        self.headers = headers or []
        self.warnings = warnings or []

    def encoded(self):
        if isinstance(self.body, (bytes, bytearray)):
            return bytes(self.body)
        return (json.dumps(self.body, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- times

RFC3339_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
GO_LAYOUT = "2006-01-02T15:04:05Z07:00"


class DecodeError(Exception):
    pass


def parse_time(value, micro=False):
    """Parse an RFC 3339 time as Go's time.Parse(time.RFC3339, ...) does.
    Returns the normalised UTC string (whole seconds, or microseconds for
    MicroTime), or None for Go's zero time (which metav1.Time writes as null)."""
    if not isinstance(value, str):
        raise DecodeError(f"json: cannot unmarshal {json_type(value)} into Go value of type string")
    m = RFC3339_RE.match(value)
    if not m:
        raise DecodeError(f"parsing time {go_quote(value)} as {go_quote(GO_LAYOUT)}: cannot parse "
                          f"{go_quote(value)} as {go_quote(GO_LAYOUT)}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7)
    us = int((frac[1:] + "000000")[:6]) if frac else 0
    tz = m.group(8)
    try:
        if tz == "Z":
            tzinfo = datetime.timezone.utc
        else:
            sign = 1 if tz[0] == "+" else -1
            oh, om = int(tz[1:3]), int(tz[4:6])
            if oh > 23 or om > 59:
                raise ValueError("time zone offset out of range")
            tzinfo = datetime.timezone(sign * datetime.timedelta(hours=oh, minutes=om))
        dt = datetime.datetime(y, mo, d, h, mi, s, us, tzinfo=tzinfo)
        utc = dt.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError) as e:
        raise DecodeError(f"parsing time {go_quote(value)}: {e}")
    if utc == datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc):
        return None
    return fmt_micro(utc) if micro else fmt_time(utc)


# ---------------------------------------------------------------- strategic merge patch


class _Delete:
    pass


DELETE = _Delete()
DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/")


def is_directive_key(k):
    return k in ("$patch", "$retainKeys") or k.startswith(DIRECTIVE_PREFIXES)


def strip(v):
    """A patch value with no original to merge into: drop nulls and directives."""
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if x is not None and not is_directive_key(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def smp_map(orig, patch, path, merge_keys):
    directive = patch.get("$patch")
    if directive == "replace":
        return strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return DELETE
    if directive not in (None, "merge"):
        raise err_bad_request(f"unknown patch type: {go_value(directive)} in map: {go_value(patch)}")
    result = dict(orig) if isinstance(orig, dict) else {}
    for k, v in patch.items():
        if is_directive_key(k):
            continue
        p = path + (k,)
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            r = smp_map(result.get(k) if isinstance(result.get(k), dict) else None, v, p, merge_keys)
            if r is DELETE:
                result.pop(k, None)
            else:
                result[k] = r
        elif isinstance(v, list) and p in merge_keys:
            result[k] = smp_list(result.get(k), v, p, merge_keys)
        else:
            result[k] = strip(v)
    return result


def smp_list(orig, patch, path, merge_keys):
    key = merge_keys[path]
    items = [x for x in orig] if isinstance(orig, list) else []
    for e in patch:
        if isinstance(e, dict) and e.get("$patch") == "replace":
            return [strip(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    for e in patch:
        if not isinstance(e, dict):
            raise err_bad_request(f"unable to find api field in struct NodeStatus for the json field: "
                                  f"list element {go_value(e)} is not a map")
        if key not in e:
            if e.get("$patch") == "delete":
                raise err_internal_plain("delete patch type with no merge key defined")
            raise err_internal_plain(f"map: {go_value(e)} does not contain declared merge key: {key}")
    # Like apimachinery: the delete directives first, then the merges.
    for e in patch:
        if e.get("$patch") == "delete":
            items = [x for x in items if not (isinstance(x, dict) and _same(x.get(key), e[key]))]
    for e in patch:
        directive = e.get("$patch")
        if directive == "delete":
            continue
        if directive not in (None, "merge"):
            raise err_bad_request(f"unknown patch type: {go_value(directive)} in map: {go_value(e)}")
        idx = next((i for i, x in enumerate(items) if isinstance(x, dict) and _same(x.get(key), e[key])), None)
        if idx is None:
            items.append(strip(e))
        else:
            items[idx] = smp_map(items[idx], e, path, merge_keys)
    return items


def _same(a, b):
    return type(a) is type(b) and a == b


def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


# ---------------------------------------------------------------- decoding ("into the Go types")

META_ORDER = ["name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
              "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
              "ownerReferences", "finalizers", "managedFields"]
META_STR = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion"}
NODE_TOP = ["kind", "apiVersion", "metadata", "spec", "status"]
NODE_SPEC = ["podCIDR", "podCIDRs", "providerID", "unschedulable", "taints", "configSource", "externalID"]
NODE_STATUS = ["capacity", "allocatable", "phase", "conditions", "addresses", "daemonEndpoints", "nodeInfo",
               "images", "volumesInUse", "volumesAttached", "config", "runtimeHandlers", "features"]
COND_FIELDS = ["type", "status", "lastHeartbeatTime", "lastTransitionTime", "reason", "message"]
EVENT_TOP = ["kind", "apiVersion", "metadata", "involvedObject", "reason", "message", "source", "firstTimestamp",
             "lastTimestamp", "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
             "reportingInstance"]
OBJREF = ["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"]
NODE_MERGE_KEYS = {("status", "conditions"): "type", ("status", "addresses"): "type",
                   ("metadata", "ownerReferences"): "uid"}
EVENT_MERGE_KEYS = {("metadata", "ownerReferences"): "uid"}


def want_str(v, where):
    if not isinstance(v, str):
        raise DecodeError(f"json: cannot unmarshal {json_type(v)} into Go struct field {where} of type string")
    return v


def want_int(v, where, bits=64):
    if isinstance(v, bool) or not isinstance(v, int):
        shown = json_type(v)
        if isinstance(v, float):
            shown = f"number {go_value(v)}"
        raise DecodeError(f"json: cannot unmarshal {shown} into Go struct field {where} of type int{bits}")
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        raise DecodeError(f"json: cannot unmarshal number {v} into Go struct field {where} of type int{bits}")
    return v


def want_time(v, where, micro=False):
    if not isinstance(v, str):
        raise DecodeError(f"json: cannot unmarshal {json_type(v)} into Go struct field {where} of type string")
    return parse_time(v, micro)


def want_dict(v, where):
    if not isinstance(v, dict):
        raise DecodeError(f"json: cannot unmarshal {json_type(v)} into Go struct field {where} of type object")
    return v


def decode_str_map(v, where):
    want_dict(v, where)
    out = {}
    for k in sorted(v):
        x = v[k]
        if x is None:
            x = ""
        out[k] = want_str(x, f"{where}.{k}")
    return out


def decode_meta(m, warn, typename):
    if m is None:
        m = {}
    want_dict(m, f"{typename}.metadata")
    out = {}
    for k in META_ORDER:
        if k not in m or m[k] is None:
            continue
        v = m[k]
        where = f"{typename}.metadata.{k}"
        if k in META_STR:
            if want_str(v, where):
                out[k] = v
        elif k in ("labels", "annotations"):
            d = decode_str_map(v, where)
            if d:
                out[k] = d
        elif k in ("creationTimestamp", "deletionTimestamp"):
            t = want_time(v, where)
            if t is not None:
                out[k] = t
        elif k in ("generation", "deletionGracePeriodSeconds"):
            out[k] = want_int(v, where)
        elif k == "finalizers":
            if not isinstance(v, list):
                raise DecodeError(f"json: cannot unmarshal {json_type(v)} into Go struct field {where} "
                                  f"of type []string")
            out[k] = [want_str(x, where) for x in v]
        else:
            out[k] = v
    for k in m:
        if k not in META_ORDER:
            warn(f"metadata.{k}")
    return out


def decode_condition(c, idx, warn):
    where = "NodeCondition"
    if not isinstance(c, dict):
        raise DecodeError(f"json: cannot unmarshal {json_type(c)} into Go struct field NodeStatus.status.conditions "
                          f"of type v1.NodeCondition")
    out = {}
    for f in ("type", "status"):
        v = c.get(f)
        out[f] = "" if v is None else want_str(v, f"{where}.status.conditions.{f}")
    for f in ("lastHeartbeatTime", "lastTransitionTime"):
        v = c.get(f)
        out[f] = None if v is None else want_time(v, f"{where}.status.conditions.{f}")
    for f in ("reason", "message"):
        v = c.get(f)
        if v is not None and want_str(v, f"{where}.status.conditions.{f}"):
            out[f] = v
    for k in c:
        if k not in COND_FIELDS:
            warn(f"status.conditions[{idx}].{k}")
    return out


def decode_node(obj, warn):
    if not isinstance(obj, dict):
        raise DecodeError(f"json: cannot unmarshal {json_type(obj)} into Go value of type v1.Node")
    for k in ("kind", "apiVersion"):
        if k in obj and obj[k] is not None:
            want_str(obj[k], f"Node.{k}")
    for k in obj:
        if k not in NODE_TOP:
            warn(k)
    meta = decode_meta(obj.get("metadata"), warn, "Node")
    spec_in = obj.get("spec")
    spec = {}
    if spec_in is not None:
        want_dict(spec_in, "Node.spec")
        for k in NODE_SPEC:
            if spec_in.get(k) is not None:
                if k in ("podCIDR", "providerID", "externalID"):
                    want_str(spec_in[k], f"Node.spec.{k}")
                if k == "unschedulable" and not isinstance(spec_in[k], bool):
                    raise DecodeError(f"json: cannot unmarshal {json_type(spec_in[k])} into Go struct field "
                                      f"NodeSpec.spec.unschedulable of type bool")
                spec[k] = spec_in[k]
        for k in spec_in:
            if k not in NODE_SPEC:
                warn(f"spec.{k}")
    st_in = obj.get("status")
    status = {}
    if st_in is not None:
        want_dict(st_in, "Node.status")
        for k in NODE_STATUS:
            v = st_in.get(k)
            if v is None:
                continue
            if k == "conditions":
                if not isinstance(v, list):
                    raise DecodeError(f"json: cannot unmarshal {json_type(v)} into Go struct field "
                                      f"NodeStatus.status.conditions of type []v1.NodeCondition")
                conds = [decode_condition(c, i, warn) for i, c in enumerate(v)]
                if conds:
                    status[k] = conds
            elif k == "phase":
                if want_str(v, "NodeStatus.status.phase"):
                    status[k] = v
            else:
                status[k] = v
        for k in st_in:
            if k not in NODE_STATUS:
                warn(f"status.{k}")
    return {"kind": "Node", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}


def decode_event(obj, warn):
    if not isinstance(obj, dict):
        raise DecodeError(f"json: cannot unmarshal {json_type(obj)} into Go value of type v1.Event")
    for k in ("kind", "apiVersion"):
        if k in obj and obj[k] is not None:
            want_str(obj[k], f"Event.{k}")
    for k in obj:
        if k not in EVENT_TOP:
            warn(k)
    out = {"kind": "Event", "apiVersion": "v1", "metadata": decode_meta(obj.get("metadata"), warn, "Event")}
    io_in = obj.get("involvedObject")
    io = {}
    if io_in is not None:
        want_dict(io_in, "Event.involvedObject")
        for k in OBJREF:
            if io_in.get(k) is not None and want_str(io_in[k], f"Event.involvedObject.{k}"):
                io[k] = io_in[k]
        for k in io_in:
            if k not in OBJREF:
                warn(f"involvedObject.{k}")
    out["involvedObject"] = io
    for k in ("reason", "message"):
        if obj.get(k) is not None and want_str(obj[k], f"Event.{k}"):
            out[k] = obj[k]
    src_in = obj.get("source")
    src = {}
    if src_in is not None:
        want_dict(src_in, "Event.source")
        for k in ("component", "host"):
            if src_in.get(k) is not None and want_str(src_in[k], f"Event.source.{k}"):
                src[k] = src_in[k]
        for k in src_in:
            if k not in ("component", "host"):
                warn(f"source.{k}")
    out["source"] = src
    for k in ("firstTimestamp", "lastTimestamp"):
        v = obj.get(k)
        out[k] = None if v is None else want_time(v, f"Event.{k}")
    if obj.get("count") is not None:
        c = want_int(obj["count"], "Event.count", 32)
        if c:
            out["count"] = c
    if obj.get("type") is not None and want_str(obj["type"], "Event.type"):
        out["type"] = obj["type"]
    v = obj.get("eventTime")
    out["eventTime"] = None if v is None else want_time(v, "Event.eventTime", micro=True)
    for k in ("series", "related"):
        if obj.get(k) is not None:
            out[k] = want_dict(obj[k], f"Event.{k}")
    if obj.get("action") is not None and want_str(obj["action"], "Event.action"):
        out["action"] = obj["action"]
    for k in ("reportingComponent", "reportingInstance"):
        v = obj.get(k)
        out[k] = "" if v is None else want_str(v, f"Event.{k}")
    return out


# ---------------------------------------------------------------- validation

QNAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_SUB_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QNAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def qualified_name_errors(key):
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
        prefix = None
    elif len(parts) == 2:
        prefix, name = parts
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
                "and '/' (e.g. 'example.com/MyName')"]
    errs = []
    if prefix is not None:
        if not prefix:
            errs.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not DNS1123_SUB_RE.match(prefix):
            errs.append("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                        "characters, '-' or '.', and must start and end with an alphanumeric character")
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not QNAME_RE.match(name):
        errs.append(QNAME_MSG)
    return errs


def validate_meta(meta):
    causes = []
    total = 0
    for k, v in meta.get("annotations", {}).items():
        for e in qualified_name_errors(k.lower()):
            causes.append(("metadata.annotations", f"Invalid value: {go_quote(k)}: {e}"))
        total += len(k) + len(v)
    if total > 256 * 1024:
        causes.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))
    for k, v in meta.get("labels", {}).items():
        for e in qualified_name_errors(k):
            causes.append(("metadata.labels", f"Invalid value: {go_quote(k)}: {e}"))
        if len(v) > 63 or not LABEL_VALUE_RE.match(v):
            causes.append(("metadata.labels", f"Invalid value: {go_quote(v)}: a valid label must be an empty "
                                              f"string or consist of alphanumeric characters, '-', '_' or '.', and "
                                              f"must start and end with an alphanumeric character"))
    return causes


def validate_event(ev):
    causes = []
    meta = ev["metadata"]
    ns = meta.get("namespace", "")
    io = ev["involvedObject"]
    # legacyValidateEvent: the event's namespace and the involved object's agree.
    if not io.get("namespace"):
        if ns not in ("", "default"):
            causes.append(("involvedObject.namespace",
                           f"Invalid value: {go_quote(io.get('namespace', ''))}: does not match event.namespace"))
    elif io["namespace"] != ns:
        causes.append(("involvedObject.namespace",
                       f"Invalid value: {go_quote(io['namespace'])}: does not match event.namespace"))
    # Stricter than core/v1 (as the behaviour spec asks): a node reporter must get these right.
    if not io.get("kind"):
        causes.append(("involvedObject.kind", "Required value"))
    if not io.get("name"):
        causes.append(("involvedObject.name", "Required value"))
    t = ev.get("type", "")
    if t not in ("Normal", "Warning"):
        causes.append(("type", f'Unsupported value: {go_quote(t)}: supported values: "Normal", "Warning"'))
    name = meta.get("name", "")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif name in (".", "..") or "/" in name or "%" in name:
        causes.append(("metadata.name", f"Invalid value: {go_quote(name)}: may not be '.' or '..' and may not "
                                        f"contain '/' or '%'"))
    causes += validate_meta(meta)
    return causes


# ---------------------------------------------------------------- state


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.rv = 1000
        self.nodes = {}          # name -> Node (output form)
        self.kubelets = {}       # name -> {"enabled": bool, "view": {type: (status, reason, message)}}
        self.events = {}         # (ns, name) -> Event
        self.tokens = {}         # token -> {"user", "groups", "rbac", "serial"}
        self.token_serial = 0
        self.faults = []
        self.fault_serial = 0
        self.requests = []
        self.request_serial = 0
        self.connections = {}
        self.conn_serial = 0
        self.ticks = 0
        self.dir = None
        self.port = None
        self.control_port = None

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    # tokens
    def add_token(self, token, user, rbac=True, groups=None):
        self.token_serial += 1
        self.tokens[token] = {"user": user, "rbac": rbac, "serial": self.token_serial,
                              "groups": groups or ["system:serviceaccounts", "system:authenticated"]}
        return self.token_serial

    # nodes
    def create_node(self, name, kubelet=True, conditions=None, labels=None, annotations=None):
        t = now_str()
        conds = []
        view = {}
        if kubelet:
            for ty in KUBELET_TYPES:
                st, reason, msg = KUBELET_DEFAULTS[ty]
                view[ty] = (st, reason, msg)
                conds.append({"type": ty, "status": st, "lastHeartbeatTime": t, "lastTransitionTime": t,
                              "reason": reason, "message": msg})
        lab = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
               "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        lab.update(labels or {})
        ann = {"node.alpha.kubernetes.io/ttl": "0",
               "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        ann.update(annotations or {})
        raw = {
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": t, "labels": lab,
                         "annotations": ann},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
            "status": {
                "capacity": {"cpu": "4", "ephemeral-storage": "61255492Ki", "memory": "8148920Ki", "pods": "110"},
                "allocatable": {"cpu": "4", "ephemeral-storage": "56453061334", "memory": "8046520Ki",
                                "pods": "110"},
                "conditions": conds + list(conditions or []),
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "6.1.0",
                             "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion":
                             "containerd://1.7.0", "kubeletVersion": "v1.31.0", "kubeProxyVersion": "v1.31.0",
                             "operatingSystem": "linux", "architecture": "amd64"},
            },
        }
        node = decode_node(raw, lambda p: None)
        node["metadata"]["resourceVersion"] = self.next_rv()
        node = decode_node(node, lambda p: None)
        self.nodes[name] = node
        self.kubelets[name] = {"enabled": bool(kubelet), "view": view}
        return node

    def kubelet_tick(self, only=None):
        """The kubelet rewrites its four conditions from its own view."""
        names = []
        t = now_str()
        for name, node in list(self.nodes.items()):
            k = self.kubelets.get(name)
            if not k or not k["enabled"] or (only and name != only):
                continue
            conds = node["status"].setdefault("conditions", [])
            before = json.dumps(node, sort_keys=True)
            for ty in KUBELET_TYPES:
                st, reason, msg = k["view"].get(ty, KUBELET_DEFAULTS[ty])
                cur = next((c for c in conds if c["type"] == ty), None)
                new = {"type": ty, "status": st, "lastHeartbeatTime": t,
                       "lastTransitionTime": t if cur is None or cur["status"] != st else cur["lastTransitionTime"],
                       "reason": reason, "message": msg}
                if not reason:
                    del new["reason"]
                if not msg:
                    del new["message"]
                if cur is None:
                    conds.append(new)
                else:
                    conds[conds.index(cur)] = new
            if json.dumps(node, sort_keys=True) != before:
                node["metadata"]["resourceVersion"] = self.next_rv()
            self.nodes[name] = decode_node(node, lambda p: None)
            names.append(name)
        self.ticks += 1
        return names

    # faults
    def take_fault(self, method, path):
        for f in self.faults:
            if f["remaining"] == 0:
                continue
            if f.get("method") and not re.fullmatch(f["method"], method, re.IGNORECASE):
                continue
            if f.get("path") and not re.search(f["path"], path):
                continue
            if f.get("skip", 0) > 0:
                f["skip"] -= 1
                continue
            if f["remaining"] > 0:
                f["remaining"] -= 1
            f["hits"] += 1
            return dict(f)
        return None

    def record(self, rec):
        self.request_serial += 1
        rec["id"] = self.request_serial
        self.requests.append(rec)
        return rec["id"]


STATE = State()
STOP = threading.Event()

# ---------------------------------------------------------------- certificates

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:kubernetes.default, DNS:kubernetes
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr.strip()}")


def make_certs(d, key_type, client_subject):
    cnf = "openssl.cnf"
    write_atomic(os.path.join(d, cnf), OPENSSL_CNF)
    if key_type == "rsa":
        newkey = ["-newkey", "rsa:2048"]
    else:
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

    def ca(name, cn):
        openssl("req", "-x509", "-new", *newkey, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
                "-days", "3650", "-subj", f"/CN={cn}", "-config", cnf, "-extensions", "v3_ca", cwd=d)

    def leaf(name, subj, ca_name, ext):
        openssl("req", "-new", *newkey, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subj, "-config", cnf, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.crt", "-CAkey", f"{ca_name}.key",
                "-set_serial", "0x" + secrets.token_hex(8), "-out", f"{name}.crt", "-days", "825",
                "-extfile", cnf, "-extensions", ext, cwd=d)
        os.unlink(os.path.join(d, f"{name}.csr"))

    ca("ca", CA_CN)
    ca("wrong-ca", WRONG_CA_CN)
    leaf("server", "/CN=kube-apiserver", "ca", "server_ext")
    leaf("client", client_subject, "ca", "client_ext")
    leaf("wrong-client", client_subject, "wrong-ca", "client_ext")
    for f in os.listdir(d):
        if f.endswith(".key"):
            os.chmod(os.path.join(d, f), 0o600)


def write_serviceaccount(d, token):
    """Lay out DIR/serviceaccount like the kubelet's atomic writer does:
    timestamped directory, ..data symlink swapped with rename(2), and the
    visible files as symlinks through ..data."""
    sa = os.path.join(d, "serviceaccount")
    os.makedirs(sa, exist_ok=True)
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.") + secrets.token_hex(4)
    new = os.path.join(sa, ts)
    os.mkdir(new)
    with open(os.path.join(new, "token"), "w") as f:
        f.write(token)
    shutil.copyfile(os.path.join(d, "ca.crt"), os.path.join(new, "ca.crt"))
    with open(os.path.join(new, "namespace"), "w") as f:
        f.write("kube-system")
    data = os.path.join(sa, "..data")
    old = os.readlink(data) if os.path.islink(data) else None
    tmp = os.path.join(sa, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(ts, tmp)
    os.replace(tmp, data)
    for f in ("token", "ca.crt", "namespace"):
        p = os.path.join(sa, f)
        if not os.path.lexists(p):
            os.symlink(os.path.join("..data", f), p)
    if old and old != ts:
        shutil.rmtree(os.path.join(sa, old), ignore_errors=True)


def write_token_files(token):
    d = STATE.dir
    write_atomic(os.path.join(d, "token"), token + "\n", 0o600)
    write_serviceaccount(d, token)


def write_kubeconfigs(d, port, token_user, cert_user):
    def kc(user_name, user_body):
        return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
                f"    server: https://127.0.0.1:{port}\n    certificate-authority: ca.crt\n"
                f"contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: {user_name}\n"
                f"current-context: fake\nusers:\n- name: {user_name}\n  user:\n{user_body}")
    write_atomic(os.path.join(d, "kubeconfig"), kc(token_user, "    tokenFile: token\n"))
    write_atomic(os.path.join(d, "kubeconfig-cert"),
                 kc(cert_user, "    client-certificate: client.crt\n    client-key: client.key\n"))


# ---------------------------------------------------------------- HTTP plumbing


class HandshakeFailed(Exception):
    pass


class QuietServerMixin:
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, HandshakeFailed):
            return
        if isinstance(e, (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            log(f"connection from {client_address[0]}:{client_address[1]} ended: {e!r}")
            return
        import traceback
        log("internal error:\n" + traceback.format_exc())


class ApiServer(QuietServerMixin, http.server.ThreadingHTTPServer):
    pass


class ControlServer(QuietServerMixin, http.server.ThreadingHTTPServer):
    pass


def write_reply(handler, data):
    """End the headers and write them with the body in one send: two small
    writes would meet Nagle and delayed ACK (40 ms a reply)."""
    handler._headers_buffer.append(b"\r\n")
    handler._headers_buffer.append(data)
    handler.flush_headers()
    handler.wfile.flush()


def set_nodelay(sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def read_body(handler):
    te = handler.headers.get("Transfer-Encoding", "")
    if "chunked" in te.lower():
        chunks = []
        while True:
            line = handler.rfile.readline(65537)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline(65537)
        return b"".join(chunks)
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n > 0 else b""


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""
    timeout = 300

    def version_string(self):
        return self.server_version

    def setup(self):
        raw = self.request
        with STATE.lock:
            STATE.conn_serial += 1
            self.conn_id = STATE.conn_serial
            self.conn_info = {"id": self.conn_id, "opened": time.time(), "peer": f"{self.client_address[0]}:"
                              f"{self.client_address[1]}", "tls": None, "tls_error": None, "client_cert": None,
                              "requests": 0, "closed": None}
            STATE.connections[self.conn_id] = self.conn_info
        self.conn_requests = 0
        set_nodelay(raw)
        raw.settimeout(10)
        try:
            tls = self.server.ssl_context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with STATE.lock:
                self.conn_info["tls_error"] = str(e)
                self.conn_info["closed"] = time.time()
            log(f"conn={self.conn_id} TLS handshake failed: {e}")
            try:
                raw.close()
            except OSError:
                pass
            raise HandshakeFailed() from e
        self.request = tls
        self.peer_cert = tls.getpeercert() or None
        with STATE.lock:
            self.conn_info["tls"] = tls.version()
            if self.peer_cert:
                self.conn_info["client_cert"] = {"subject": cert_name(self.peer_cert, "subject"),
                                                 "issuer": cert_name(self.peer_cert, "issuer")}
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            with STATE.lock:
                self.conn_info["closed"] = time.time()

    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        log(f"conn={getattr(self, 'conn_id', '?')} " + (fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- one request
    def dispatch(self):
        t0 = time.monotonic()
        self.conn_requests += 1
        with STATE.lock:
            self.conn_info["requests"] = self.conn_requests
        body = read_body(self)
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        rec = {"time": time.time(), "time_iso": fmt_micro(now_utc()), "conn": self.conn_id,
               "conn_request": self.conn_requests, "method": self.command, "path": path, "query": url.query,
               "content_type": self.headers.get("Content-Type"), "user_agent": self.headers.get("User-Agent"),
               "auth": "none", "client_cert": bool(self.peer_cert), "user": None, "token_serial": None,
               "token_valid": None, "body": None, "code": None, "fault": None, "warnings": [],
               "dropped": False}
        if body:
            try:
                rec["body"] = parse_json_bytes(body)
            except (ValueError, UnicodeDecodeError):
                rec["body_text"] = body[:4096].decode("utf-8", "replace")
        fault = None
        resp = None
        try:
            with STATE.lock:
                fault = STATE.take_fault(self.command, path)
            if fault:
                rec["fault"] = {k: v for k, v in fault.items() if k not in ("remaining", "hits", "skip")}
                if fault.get("delay_ms"):
                    time.sleep(fault["delay_ms"] / 1000.0)
                if fault.get("drop") and not fault.get("apply"):
                    self.drop(rec, t0)
                    return
                if not fault.get("apply"):
                    resp = fault_response(fault, path)
            if resp is None:
                resp = self.handle_api(path, query, body, rec)
        except ApiError as e:
            resp = e.response()
        except Exception as e:  # a bug in the fake: say so loudly
            import traceback
            log("handler crashed:\n" + traceback.format_exc())
            resp = ApiError(500, "InternalError", f"Internal error occurred: fake-apiserver bug: {e!r}").response()
        if fault and fault.get("drop"):
            rec["applied_code"] = resp.code
            self.drop(rec, t0)
            return
        rec["code"] = resp.code
        rec["warnings"] = list(resp.warnings)
        rec["duration_ms"] = round((time.monotonic() - t0) * 1000, 3)
        # Recorded before the reply leaves: a client that has its reply finds
        # the request in /control/requests.
        with STATE.lock:
            rid = STATE.record(rec)
        log(f"#{rid} conn={self.conn_id}/{self.conn_requests} {self.command} {self.path} -> {resp.code} "
            f"auth={rec['auth']} user={rec['user']}" + (f" fault={rec['fault']}" if fault else "")
            + (f" warnings={resp.warnings}" if resp.warnings else ""))
        self.send(resp, close=bool(fault and fault.get("close")))

    def drop(self, rec, t0):
        rec["dropped"] = True
        rec["duration_ms"] = round((time.monotonic() - t0) * 1000, 3)
        with STATE.lock:
            rid = STATE.record(rec)
        log(f"#{rid} conn={self.conn_id}/{self.conn_requests} {self.command} {self.path} -> dropped connection")
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, resp, close=False):
        data = resp.encoded()
        self.send_response(resp.code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", resp.ctype)
        for name, value in resp.headers:
            self.send_header(name, value)
        for w in resp.warnings:
            self.send_header("Warning", "299 - " + go_quote(w))
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        write_reply(self, b"" if self.command == "HEAD" else data)

    # -- authentication / authorization
    def authenticate(self, rec):
        """Union of the x509 and bearer token authenticators, as in kube-apiserver
        (x509 first).  A header that is not "Bearer <token>", or an empty token,
        is no credential at all.  Returns (user, groups); no credentials give
        system:anonymous; a bad token or certificate raises 401."""
        auth = self.headers.get("Authorization")
        token = None
        if auth is not None:
            parts = auth.split(" ", 2)
            if len(parts) >= 2 and parts[0].lower() == "bearer":
                token = parts[1].strip() or None
        info = None
        if token:
            rec["auth"] = "bearer"
            with STATE.lock:
                info = STATE.tokens.get(token)
            rec["token_valid"] = info is not None
            if info:
                rec["token_serial"] = info["serial"]
        elif self.peer_cert:
            rec["auth"] = "client-cert"
        elif auth is not None:
            rec["auth"] = "other"
        failed = False
        if self.peer_cert:
            if cert_name(self.peer_cert, "issuer").get("commonName") == CA_CN:
                subj = cert_name(self.peer_cert, "subject")
                user = subj.get("commonName", "")
                rec["user"] = user
                rec["authenticated_by"] = "client-cert"
                return user, [subj["organizationName"]] if subj.get("organizationName") else []
            failed = True
        if token:
            if info:
                rec["user"] = info["user"]
                rec["authenticated_by"] = "bearer"
                self.rbac = info["rbac"]
                return info["user"], info["groups"]
            failed = True
        if failed:
            raise err_unauthorized()
        rec["user"] = "system:anonymous"
        rec["authenticated_by"] = None
        return "system:anonymous", ["system:unauthenticated"]

    def authorize(self, user, verb, resource, sub, name, ns):
        if user == "system:anonymous" or not getattr(self, "rbac", True):
            res = resource + (f"/{sub}" if sub else "")
            what = f'{resource} "{name}"' if name else resource
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            raise ApiError(403, "Forbidden",
                           f'{what} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group "" '
                           f"{scope}", {"name": name, "kind": resource} if name else {"kind": resource})
        if user.startswith("system:node:") and resource == "nodes" and verb in ("patch", "update", "delete"):
            own = user[len("system:node:"):]
            if name != own:
                raise ApiError(403, "Forbidden",
                               f'nodes "{name}" is forbidden: node "{own}" is not allowed to modify node "{name}"',
                               {"name": name, "kind": "nodes"})

    # -- routing
    def handle_api(self, path, query, body, rec):
        self.rbac = True
        user, _groups = self.authenticate(rec)
        method = self.command
        if path in ("/healthz", "/livez", "/readyz"):
            if method != "GET":
                raise err_method_not_allowed()
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return Response(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform":
                                  "linux/amd64", "goVersion": "go1.22.5", "compiler": "gc"})
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["api", "v1"]:
            if user == "system:anonymous":
                raise ApiError(403, "Forbidden",
                               f'forbidden: User "system:anonymous" cannot {method.lower()} path "{path}"', {})
            if path in ("/api", "/api/"):
                return Response(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{STATE.port}"}]})
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        rest = parts[2:]
        verb_of = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete",
                   "HEAD": "get", "OPTIONS": "options"}
        verb = verb_of.get(method, method.lower())
        # nodes
        if rest[:1] == ["nodes"] and len(rest) <= 3:
            name = rest[1] if len(rest) >= 2 else ""
            sub = rest[2] if len(rest) == 3 else ""
            if sub not in ("", "status"):
                self.authorize(user, verb, "nodes", sub, name, "")
                raise err_no_resource()
            if not name and method == "GET":
                verb = "list"
            self.authorize(user, verb, "nodes", sub, name, "")
            if not name:
                if method != "GET":
                    raise err_method_not_allowed()
                with STATE.lock:
                    items = [json.loads(json.dumps(n)) for n in STATE.nodes.values()]
                    return Response(200, {"kind": "NodeList", "apiVersion": "v1",
                                          "metadata": {"resourceVersion": str(STATE.rv)}, "items": items})
            if method == "GET":
                with STATE.lock:
                    node = STATE.nodes.get(name)
                    if node is None:
                        raise err_not_found("nodes", name)
                    return Response(200, json.loads(json.dumps(node)))
            if method == "PATCH":
                return patch_node(name, sub, body, self.headers.get("Content-Type"), query)
            raise err_method_not_allowed()
        # events
        ns = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] == "events" and len(rest) <= 4:
            ns = rest[1]
            ev_name = rest[3] if len(rest) == 4 else ""
        elif rest == ["events"]:
            ev_name = ""
        else:
            self.authorize(user, verb, rest[0] if rest else "", "", "", "")
            raise err_no_resource()
        if not ev_name and method == "GET":
            verb = "list"
        self.authorize(user, verb, "events", "", ev_name, ns or "")
        if not ev_name:
            if method == "GET":
                with STATE.lock:
                    items = [json.loads(json.dumps(e)) for (n, _), e in sorted(STATE.events.items())
                             if ns is None or n == ns]
                    return Response(200, {"kind": "EventList", "apiVersion": "v1",
                                          "metadata": {"resourceVersion": str(STATE.rv)}, "items": items})
            if method == "POST" and ns is not None:
                return create_event(ns, body, self.headers.get("Content-Type"), query)
            raise err_method_not_allowed()
        if method == "GET":
            with STATE.lock:
                ev = STATE.events.get((ns, ev_name))
                if ev is None:
                    raise err_not_found("events", ev_name)
                return Response(200, json.loads(json.dumps(ev)))
        if method == "PATCH":
            return patch_event(ns, ev_name, body, self.headers.get("Content-Type"), query)
        if method == "DELETE":
            with STATE.lock:
                ev = STATE.events.pop((ns, ev_name), None)
            if ev is None:
                raise err_not_found("events", ev_name)
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": ev_name, "kind": "events", "uid": ev["metadata"].get("uid")}})
        raise err_method_not_allowed()


def cert_name(cert, which):
    out = {}
    for rdn in cert.get(which, ()):
        for k, v in rdn:
            out[k] = v
    return out


def fault_response(fault, path):
    code = int(fault.get("code") or 0)
    if not code:
        return None
    headers = []
    if fault.get("retry_after") is not None:
        headers.append(("Retry-After", str(fault["retry_after"])))
    if "body" in fault:
        body = fault["body"]
        if not isinstance(body, str):
            body = json.dumps(body)
        return Response(code, body.encode(), fault.get("content_type", "application/json"), headers=headers)
    if code == 429:
        if not headers:
            headers.append(("Retry-After", "1"))
        return Response(429, b"Too many requests, please try again later.\n", "text/plain; charset=utf-8",
                        headers=headers)
    parts = [p for p in path.split("/") if p]
    resource, name = "", ""
    if parts[:3] == ["api", "v1", "nodes"] and len(parts) >= 4:
        resource, name = "nodes", parts[3]
    elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 6:
        resource, name = parts[4], parts[5]
    msg = fault.get("message")
    if code == 409 and resource and not msg:
        e = err_conflict(resource, name)
    elif code == 500:
        m = msg or "injected fault"
        e = ApiError(500, "InternalError", f"Internal error occurred: {m}", {"causes": [{"message": m}]})
    elif code == 503:
        e = ApiError(503, "ServiceUnavailable", msg or "the server is currently unable to handle the request", {})
    elif code == 401:
        e = err_unauthorized()
    else:
        e = ApiError(code, STATUS_REASONS.get(code, ""), msg or f"injected fault ({code})",
                     {"name": name, "kind": resource} if resource else None)
    e.headers = headers
    return e.response()


# ---------------------------------------------------------------- PATCH / POST implementations


def parse_patch_request(body, ctype, query):
    ct = ctype or ""
    idx = ct.find(";")
    if idx > 0:
        ct = ct[:idx]
    if ct not in PATCH_IMPLEMENTED:     # exact, case-sensitive, as in the real handler
        raise err_unsupported_media(PATCH_MEDIA_TYPES)
    kind = PATCH_IMPLEMENTED[ct]
    try:
        patch = parse_json_bytes(body)
    except UnicodeDecodeError as e:
        raise err_bad_request(f"error decoding patch: invalid UTF-8 in request body: {e}")
    except json.JSONDecodeError as e:
        if not body.strip():
            raise err_bad_request("error decoding patch: unexpected end of JSON input")
        raise err_bad_request(f"error decoding patch: invalid character in request body: {e.msg} "
                              f"(line {e.lineno} column {e.colno})")
    except ValueError as e:
        raise err_bad_request(f"error decoding patch: {e}")
    if patch is None and kind == "strategic":
        patch = {}
    if not isinstance(patch, dict):
        raise err_bad_request(f"error decoding patch: json: cannot unmarshal {json_type(patch)} into Go value of "
                              f"type map[string]interface {{}}")
    fv = (query.get("fieldValidation") or ["Warn"])[-1] or "Warn"
    if fv not in ("Ignore", "Warn", "Strict"):
        raise err_bad_request(f'fieldValidation parameter unsupported: {fv}, must be one of "Ignore", "Warn", '
                              f'"Strict"')
    dry = bool(query.get("dryRun"))
    return kind, patch, fv, dry


def apply_patch(kind, cur, patch, merge_keys):
    if kind == "strategic":
        return smp_map(json.loads(json.dumps(cur)), patch, (), merge_keys)
    return json_merge_patch(json.loads(json.dumps(cur)), patch)


def decode_patched(decoder, merged, patch, fv):
    unknown = []
    try:
        obj = decoder(merged, unknown.append)
    except DecodeError as e:
        raise err_patch_invalid(patch, str(e))
    warnings = []
    if unknown and fv == "Strict":
        raise err_bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
    if fv == "Warn":
        warnings = [f'unknown field "{u}"' for u in unknown]
    return obj, warnings


def precondition_rv(patch):
    meta = patch.get("metadata")
    if isinstance(meta, dict):
        rv = meta.get("resourceVersion")
        if isinstance(rv, str) and rv:
            return rv
    return None


def patch_node(name, sub, body, ctype, query):
    kind, patch, fv, dry = parse_patch_request(body, ctype, query)
    with STATE.lock:
        cur = STATE.nodes.get(name)
        if cur is None:
            raise err_not_found("nodes", name)
        merged = apply_patch(kind, cur, patch, NODE_MERGE_KEYS)
        new, warnings = decode_patched(decode_node, merged, patch, fv)
        want_rv = precondition_rv(patch)
        if want_rv is not None and want_rv != cur["metadata"]["resourceVersion"]:
            raise err_conflict("nodes", name)
        got_name = new["metadata"].get("name", "")
        if got_name and got_name != name:
            raise err_bad_request(f"the name of the object ({got_name}) does not match the name on the URL "
                                  f"({name})")
        # Fields the server owns come back from the stored object.
        for k in ("name", "uid", "creationTimestamp", "resourceVersion"):
            if k in cur["metadata"]:
                new["metadata"][k] = cur["metadata"][k]
            else:
                new["metadata"].pop(k, None)
        new["metadata"].pop("namespace", None)
        if sub == "status":
            new["spec"] = json.loads(json.dumps(cur["spec"]))       # nodeStatusStrategy.PrepareForUpdate
        else:
            new["status"] = json.loads(json.dumps(cur["status"]))   # nodeStrategy.PrepareForUpdate
        causes = validate_meta(new["metadata"])
        if causes:
            raise err_invalid("Node", name, causes)
        new = decode_node(new, lambda p: None)                      # canonical key order
        if new != cur and not dry:
            new["metadata"]["resourceVersion"] = STATE.next_rv()
            new = decode_node(new, lambda p: None)
            STATE.nodes[name] = new
        return Response(200, json.loads(json.dumps(new)), warnings=warnings)


def create_event(ns, body, ctype, query):
    ct = (ctype or "").split(";")[0].strip().lower()
    if ct != "application/json":
        raise err_unsupported_media(CREATE_MEDIA_TYPES)
    try:
        obj = parse_json_bytes(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise err_bad_request(f'Event in version "v1" cannot be handled as a Event: {e}')
    if not isinstance(obj, dict):
        raise err_bad_request(f'Event in version "v1" cannot be handled as a Event: json: cannot unmarshal '
                              f'{json_type(obj)} into Go value of type v1.Event')
    if obj.get("apiVersion") not in (None, "v1"):
        raise err_bad_request(f'the API version in the data ({obj["apiVersion"]}) does not match the expected API '
                              f'version (v1)')
    if obj.get("kind") not in (None, "Event"):
        raise err_bad_request(f'Event in version "v1" cannot be handled as a Event: no kind "{obj["kind"]}" is '
                              f'registered for version "v1"')
    fv = (query.get("fieldValidation") or ["Warn"])[-1] or "Warn"
    unknown = []
    try:
        ev = decode_event(obj, unknown.append)
    except DecodeError as e:
        raise err_bad_request(f'Event in version "v1" cannot be handled as a Event: {e}')
    if unknown and fv == "Strict":
        raise err_bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
    warnings = [f'unknown field "{u}"' for u in unknown] if fv == "Warn" else []
    meta = ev["metadata"]
    if meta.get("namespace", ns) != ns:
        raise err_bad_request("the namespace of the provided object does not match the namespace sent on the "
                              "request")
    meta["namespace"] = ns
    if not meta.get("name") and meta.get("generateName"):
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        meta["name"] = meta["generateName"] + "".join(secrets.choice(alphabet) for _ in range(5))
    causes = validate_event(ev)
    if causes:
        raise err_invalid("Event", meta.get("name", ""), causes)
    with STATE.lock:
        if ns not in NAMESPACES:
            raise err_not_found("namespaces", ns)
        if (ns, meta["name"]) in STATE.events:
            raise err_already_exists("events", meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_str()
        meta.pop("resourceVersion", None)
        meta["resourceVersion"] = STATE.next_rv()
        ev = decode_event(ev, lambda p: None)
        if not query.get("dryRun"):
            STATE.events[(ns, meta["name"])] = ev
        return Response(201, json.loads(json.dumps(ev)), warnings=warnings)


def patch_event(ns, name, body, ctype, query):
    kind, patch, fv, dry = parse_patch_request(body, ctype, query)
    with STATE.lock:
        cur = STATE.events.get((ns, name))
        if cur is None:
            raise err_not_found("events", name)
        merged = apply_patch(kind, cur, patch, EVENT_MERGE_KEYS)
        new, warnings = decode_patched(decode_event, merged, patch, fv)
        want_rv = precondition_rv(patch)
        if want_rv is not None and want_rv != cur["metadata"]["resourceVersion"]:
            raise err_conflict("events", name)
        got_name = new["metadata"].get("name", "")
        if got_name and got_name != name:
            raise err_bad_request(f"the name of the object ({got_name}) does not match the name on the URL "
                                  f"({name})")
        if new["metadata"].get("namespace", ns) != ns:
            raise err_bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
        for k in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            new["metadata"][k] = cur["metadata"][k]
        causes = validate_event(new)
        if causes:
            raise err_invalid("Event", name, causes)
        new = decode_event(new, lambda p: None)
        if new != cur and not dry:
            new["metadata"]["resourceVersion"] = STATE.next_rv()
            new = decode_event(new, lambda p: None)
            STATE.events[(ns, name)] = new
        return Response(200, json.loads(json.dumps(new)), warnings=warnings)


# ---------------------------------------------------------------- control API


class ControlError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver-control"
    sys_version = ""
    timeout = 300

    def setup(self):
        set_nodelay(self.request)
        super().setup()

    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        log("control: " + (fmt % args))

    def do_GET(self):
        body = read_body(self)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            data = None
            if body:
                try:
                    data = json.loads(body.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    raise ControlError(400, f"body is not JSON: {e}")
            code, out = self.route(self.command, url.path.rstrip("/") or "/", query, data)
        except ControlError as e:
            code, out = e.code, {"error": str(e)}
        except ApiError as e:
            code, out = e.code, {"error": e.message}
        except Exception as e:
            import traceback
            log("control handler crashed:\n" + traceback.format_exc())
            code, out = 500, {"error": repr(e)}
        if code >= 300 or self.command != "GET":
            log(f"control: {self.command} {self.path} -> {code}")
        data = (json.dumps(out, indent=1) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        write_reply(self, data)
        if getattr(self, "stop_after", False):
            STOP.set()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def route(self, method, path, query, data):
        S = STATE
        if path == "/control/info" and method == "GET":
            with S.lock:
                return 200, {"pid": os.getpid(), "dir": S.dir, "port": S.port, "control_port": S.control_port,
                             "url": f"https://127.0.0.1:{S.port}", "nodes": sorted(S.nodes),
                             "resource_version": str(S.rv), "kubelet_ticks": S.ticks,
                             "tokens": sorted((t["serial"], t["user"], t["rbac"]) for t in S.tokens.values())}
        if path == "/control/requests":
            if method == "GET":
                since = int((query.get("since") or ["0"])[0])
                with S.lock:
                    return 200, [r for r in S.requests if r["id"] > since]
            raise ControlError(405, "use GET")
        if path == "/control/reset-requests" and method == "POST":
            with S.lock:
                n = len(S.requests)
                S.requests.clear()
            return 200, {"ok": True, "cleared": n}
        if path == "/control/connections" and method == "GET":
            with S.lock:
                return 200, [dict(c) for c in S.connections.values()]
        if path == "/control/nodes":
            if method == "GET":
                with S.lock:
                    return 200, [json.loads(json.dumps(n)) for n in S.nodes.values()]
            if method == "POST":
                d = want_obj(data)
                name = d.get("name")
                if not isinstance(name, str) or not name:
                    raise ControlError(400, "name is required")
                with S.lock:
                    if name in S.nodes:
                        raise ControlError(409, f"node {name} exists")
                    try:
                        node = S.create_node(name, kubelet=d.get("kubelet", True),
                                             conditions=d.get("conditions"), labels=d.get("labels"),
                                             annotations=d.get("annotations"))
                    except DecodeError as e:
                        raise ControlError(400, str(e))
                    return 201, json.loads(json.dumps(node))
            raise ControlError(405, "use GET or POST")
        m = re.fullmatch(r"/control/nodes/([^/]+)(/kubelet)?", path)
        if m:
            name, kub = m.group(1), m.group(2)
            with S.lock:
                if name not in S.nodes:
                    raise ControlError(404, f"node {name} not found")
                if kub:
                    if method != "POST":
                        raise ControlError(405, "use POST")
                    d = want_obj(data)
                    k = S.kubelets[name]
                    if "enabled" in d:
                        k["enabled"] = bool(d["enabled"])
                    for c in d.get("conditions", []):
                        ty = c.get("type")
                        if ty not in KUBELET_TYPES:
                            raise ControlError(400, f"the kubelet owns only {', '.join(KUBELET_TYPES)}")
                        dflt = KUBELET_DEFAULTS[ty]
                        k["view"][ty] = (c.get("status", dflt[0]), c.get("reason", dflt[1]),
                                         c.get("message", dflt[2]))
                    return 200, {"ok": True, "enabled": k["enabled"],
                                 "view": {t: {"status": v[0], "reason": v[1], "message": v[2]}
                                          for t, v in k["view"].items()}}
                if method == "GET":
                    return 200, json.loads(json.dumps(S.nodes[name]))
                if method == "DELETE":
                    del S.nodes[name]
                    S.kubelets.pop(name, None)
                    return 200, {"ok": True}
                if method == "PUT":
                    d = want_obj(data)
                    cur = S.nodes[name]
                    try:
                        new = decode_node(d, lambda p: None)
                    except DecodeError as e:
                        raise ControlError(400, str(e))
                    for k in ("name", "uid", "creationTimestamp"):
                        new["metadata"][k] = cur["metadata"][k]
                    new["metadata"]["resourceVersion"] = S.next_rv()
                    S.nodes[name] = decode_node(new, lambda p: None)
                    return 200, json.loads(json.dumps(S.nodes[name]))
            raise ControlError(405, "use GET, PUT or DELETE")
        if path == "/control/events":
            with S.lock:
                if method == "GET":
                    return 200, [json.loads(json.dumps(e)) for _, e in sorted(S.events.items())]
                if method == "DELETE":
                    S.events.clear()
                    return 200, {"ok": True}
            raise ControlError(405, "use GET or DELETE")
        if path == "/control/faults":
            with S.lock:
                if method == "GET":
                    return 200, [dict(f) for f in S.faults]
                if method == "DELETE":
                    S.faults.clear()
                    return 200, {"ok": True}
                if method == "POST":
                    items = data if isinstance(data, list) else [want_obj(data)]
                    added = []
                    for f in items:
                        added.append(make_fault(f))
                    S.faults.extend(added)
                    return 200, {"ok": True, "faults": added}
            raise ControlError(405, "use GET, POST or DELETE")
        if path == "/control/rotate-token" and method == "POST":
            d = want_obj(data)
            old, new = d.get("old"), d.get("new")
            with S.lock:
                info = None
                if old is not None:
                    info = S.tokens.pop(old, None)
                    if info is None:
                        raise ControlError(400, "old token is not known")
                if new is not None:
                    if not isinstance(new, str) or not new.strip():
                        raise ControlError(400, "new token must be a non-empty string")
                    serial = S.add_token(new, d.get("user") or (info or {}).get("user") or DEFAULT_TOKEN_USER,
                                         d.get("rbac", (info or {}).get("rbac", True)))
                    if d.get("write_files", True):
                        write_token_files(new)
                    if d.get("file"):
                        write_atomic(d["file"], new + "\n", 0o600)
                    return 200, {"ok": True, "serial": serial}
            return 200, {"ok": True}
        if path == "/control/tokens" and method == "POST":
            d = want_obj(data)
            tok = d.get("token")
            if not isinstance(tok, str) or not tok.strip():
                raise ControlError(400, "token must be a non-empty string")
            with S.lock:
                serial = S.add_token(tok, d.get("user") or DEFAULT_TOKEN_USER, bool(d.get("rbac", True)))
            return 200, {"ok": True, "serial": serial}
        if path == "/control/kubelet-tick" and method == "POST":
            only = (data or {}).get("node") if isinstance(data, dict) else None
            with S.lock:
                names = S.kubelet_tick(only)
            return 200, {"ok": True, "nodes": names}
        if path == "/control/clock":
            if method == "POST":
                d = want_obj(data)
                with S.lock:
                    if d.get("reset"):
                        CLOCK.update(offset=0.0, frozen=None)
                    if "freeze" in d:
                        if d["freeze"] and CLOCK["frozen"] is None:
                            CLOCK["frozen"] = now_utc()
                        elif not d["freeze"] and CLOCK["frozen"] is not None:
                            CLOCK["offset"] = (CLOCK["frozen"] - datetime.datetime.now(datetime.timezone.utc)
                                               ).total_seconds()
                            CLOCK["frozen"] = None
                    if "set" in d:
                        try:
                            t = parse_time(d["set"], micro=True)
                        except DecodeError as e:
                            raise ControlError(400, str(e))
                        want = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                            tzinfo=datetime.timezone.utc)
                        if CLOCK["frozen"] is not None:
                            CLOCK["frozen"] = want
                        else:
                            CLOCK["offset"] = (want - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
                    if "advance" in d:
                        adv = d["advance"]
                        if not isinstance(adv, (int, float)) or isinstance(adv, bool):
                            raise ControlError(400, "advance is a number of seconds")
                        if CLOCK["frozen"] is not None:
                            CLOCK["frozen"] += datetime.timedelta(seconds=adv)
                        else:
                            CLOCK["offset"] += adv
            elif method != "GET":
                raise ControlError(405, "use GET or POST")
            with S.lock:
                return 200, {"now": fmt_micro(now_utc()), "offset": CLOCK["offset"],
                             "frozen": CLOCK["frozen"] is not None}
        if path == "/control/stop" and method == "POST":
            self.stop_after = True
            return 200, {"ok": True}
        raise ControlError(404, f"no control endpoint {method} {path}")


def want_obj(data):
    if not isinstance(data, dict):
        raise ControlError(400, "expected a JSON object body")
    return data


FAULT_KEYS = {"method", "path", "times", "skip", "code", "retry_after", "delay_ms", "drop", "close", "apply",
              "message", "body", "content_type"}


def make_fault(f):
    if not isinstance(f, dict):
        raise ControlError(400, "a fault is a JSON object")
    bad = set(f) - FAULT_KEYS
    if bad:
        raise ControlError(400, f"unknown fault keys: {sorted(bad)}")
    for k in ("method", "path"):
        if k in f:
            try:
                re.compile(f[k])
            except (re.error, TypeError) as e:
                raise ControlError(400, f"bad {k} regex: {e}")
    if not (f.get("code") or f.get("delay_ms") or f.get("drop") or f.get("close")):
        raise ControlError(400, "a fault needs code, delay_ms, drop or close")
    times = f.get("times", 1)
    if not isinstance(times, int) or times == 0 or times < -1:
        raise ControlError(400, "times is a positive count, or -1 for ever")
    STATE.fault_serial += 1
    out = dict(f)
    out.update({"id": STATE.fault_serial, "remaining": times, "hits": 0, "skip": int(f.get("skip", 0))})
    return out


# ---------------------------------------------------------------- main


def parse_token_list(spec, default_user, rbac):
    out = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        tok, _, user = item.partition("=")
        out.append((tok, user or default_user, rbac))
    return out


def main():
    global QUIET
    ap = argparse.ArgumentParser(prog=PROG, description="Fake Kubernetes API server for nodehealthd tests.")
    ap.add_argument("--dir", required=True, help="directory for certificates, keys, port files")
    ap.add_argument("--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--control-port", type=int, default=0, help="control API port (0: any free port)")
    ap.add_argument("--node", action="extend", nargs="+", default=[], metavar="NAME",
                    help="create these nodes (repeatable; default node1)")
    ap.add_argument("--kubelet-tick", type=float, default=10.0, help="kubelet status period in seconds (0: off)")
    ap.add_argument("--tokens", default="fake-token-1",
                    help="valid bearer tokens, comma separated, each TOKEN or TOKEN=USER")
    ap.add_argument("--norbac-tokens", default="",
                    help="tokens that authenticate but have no RBAC (403), each TOKEN or TOKEN=USER")
    ap.add_argument("--client-user", default=None,
                    help="CN of the client certificate (default system:node:FIRST-NODE)")
    ap.add_argument("--key-type", choices=("ec", "rsa"), default="ec")
    ap.add_argument("--reuse-certs", action="store_true", help="keep certificates already in DIR")
    ap.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process goes away")
    ap.add_argument("--max-lifetime", type=float, default=0, help="exit after this many seconds (0: never)")
    ap.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = ap.parse_args()
    QUIET = args.quiet

    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    for f in ("ready", "port", "control-port"):
        try:
            os.unlink(os.path.join(d, f))
        except FileNotFoundError:
            pass
    STATE.dir = d
    nodes = args.node or ["node1"]
    client_user = args.client_user or f"system:node:{nodes[0]}"
    subj = f"/CN={client_user}" if args.client_user else f"/O=system:nodes/CN={client_user}"
    if not (args.reuse_certs and os.path.exists(os.path.join(d, "ca.crt"))):
        make_certs(d, args.key_type, subj)

    tokens = parse_token_list(args.tokens, DEFAULT_TOKEN_USER, True) + \
        parse_token_list(args.norbac_tokens, DEFAULT_NORBAC_USER, False)
    with STATE.lock:
        for tok, user, rbac in tokens:
            STATE.add_token(tok, user, rbac)
        for n in nodes:
            if n not in STATE.nodes:
                STATE.create_node(n)
    if tokens:
        write_token_files(tokens[0][0])

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # Both CAs are trusted at the TLS layer so that a certificate from the wrong
    # CA gets a 401 from the "x509 authenticator" (as kube-apiserver does)
    # rather than a failed handshake.
    ctx.load_verify_locations(os.path.join(d, "ca.crt"))
    ctx.load_verify_locations(os.path.join(d, "wrong-ca.crt"))
    ctx.set_alpn_protocols(["http/1.1"])

    api = ApiServer(("127.0.0.1", args.port), ApiHandler)
    api.ssl_context = ctx
    control = ControlServer(("127.0.0.1", args.control_port), ControlHandler)
    STATE.port = api.server_address[1]
    STATE.control_port = control.server_address[1]

    write_kubeconfigs(d, STATE.port, "token-user", "cert-user")
    write_atomic(os.path.join(d, "pid"), f"{os.getpid()}\n")
    write_atomic(os.path.join(d, "control-port"), f"{STATE.control_port}\n")
    write_atomic(os.path.join(d, "port"), f"{STATE.port}\n")

    threads = [threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
               threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)]

    def ticker():
        while not STOP.wait(args.kubelet_tick):
            with STATE.lock:
                STATE.kubelet_tick()
    if args.kubelet_tick > 0:
        threads.append(threading.Thread(target=ticker, daemon=True))
    for t in threads:
        t.start()

    def on_signal(signum, frame):
        STOP.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    write_atomic(os.path.join(d, "ready"), f"https://127.0.0.1:{STATE.port}\n")
    log(f"listening on https://127.0.0.1:{STATE.port} (control http://127.0.0.1:{STATE.control_port}), "
        f"dir {d}, nodes {', '.join(nodes)}")
    try:
        print(f"https://127.0.0.1:{STATE.port} http://127.0.0.1:{STATE.control_port}", flush=True)
    except OSError:
        pass

    parent = os.getppid()
    started = time.monotonic()
    while not STOP.wait(0.2):
        if args.exit_with_parent and os.getppid() != parent:
            log("parent went away: exiting")
            break
        if args.max_lifetime and time.monotonic() - started > args.max_lifetime:
            log("max lifetime reached: exiting")
            break
    STOP.set()
    try:
        os.unlink(os.path.join(d, "ready"))
    except OSError:
        pass
    api.shutdown()
    control.shutdown()
    api.server_close()
    control.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
