#!/usr/bin/python3
"""Proves that fake-apiserver.py behaves as shared/k8s-api-behaviour.md says the
real kube-apiserver does, over real HTTPS.  Output is TAP; exit 0 only when
every test passed.  Run by `make check` (automake TAP driver) or by hand:

    /usr/bin/python3 tests/fake-apiserver/test-fake-apiserver.py
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake-apiserver.py")

TOKEN = "tok-main-0123"
NORBAC = "tok-norbac-4567"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
KUBELET = {"MemoryPressure": ("False", "KubeletHasSufficientMemory"),
           "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
           "PIDPressure": ("False", "KubeletHasSufficientPID"),
           "Ready": ("True", "KubeletReady")}


class Failure(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Failure(msg)


def expect_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


class Resp:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data

    @property
    def json(self):
        try:
            return json.loads(self.data)
        except ValueError:
            raise Failure(f"reply is not JSON: {self.data[:300]!r}")

    def __repr__(self):
        return f"<{self.status} {self.data[:400]!r}>"


class Fake:
    """One fake-apiserver process in its own temporary directory."""

    def __init__(self, *extra):
        self.top = tempfile.mkdtemp(prefix="nh-fake-apiserver-test.")
        self.dir = os.path.join(self.top, "srv")
        self.logpath = os.path.join(self.top, "server.log")
        self.proc = None
        self.log = open(self.logpath, "w")
        cmd = [sys.executable, FAKE, "--dir", self.dir, "--exit-with-parent", "--max-lifetime", "300", *extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"fake-apiserver exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            if os.path.exists(os.path.join(self.dir, "ready")):
                self.port = int(open(os.path.join(self.dir, "port")).read())
                self.cport = int(open(os.path.join(self.dir, "control-port")).read())
                return
            time.sleep(0.02)
        raise Failure("fake-apiserver did not become ready")

    def log_text(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def path(self, name):
        return os.path.join(self.dir, name)

    def context(self, ca="ca.crt", cert=None):
        c = ssl.create_default_context(cafile=self.path(ca))
        if cert:
            c.load_cert_chain(self.path(cert + ".crt"), self.path(cert + ".key"))
        return c

    def connect(self, context=None, host="127.0.0.1", server_hostname=None):
        if server_hostname:
            c = http.client.HTTPSConnection(host, self.port, context=context or self.context(), timeout=10)
            # http.client has no server_hostname knob: wrap by hand.
            sock = socket.create_connection((host, self.port), timeout=10)
            c.sock = (context or self.context()).wrap_socket(sock, server_hostname=server_hostname)
            return c
        return http.client.HTTPSConnection(host, self.port, context=context or self.context(), timeout=10)

    def api(self, method, path, body=None, ctype=None, token=TOKEN, conn=None, context=None, raw=None,
            headers=None):
        own = conn is None
        if own:
            conn = self.connect(context)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if ctype:
            h["Content-Type"] = ctype
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            out = Resp(r.status, r.headers, r.read())
        finally:
            if own:
                conn.close()
        return out

    def patch(self, node, body, ctype=SMP, sub="/status", **kw):
        return self.api("PATCH", f"/api/v1/nodes/{node}{sub}", body, ctype, **kw)

    def ctl(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.cport, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def node(self, name):
        code, n = self.ctl("GET", f"/control/nodes/{name}")
        expect_eq(code, 200, f"control GET node {name}")
        return n

    def requests(self):
        return self.ctl("GET", "/control/requests")[1]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl("POST", "/control/stop")
            except (OSError, http.client.HTTPException, ValueError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def cleanup(self):
        try:
            self.stop()
        finally:
            self.log.close()
            shutil.rmtree(self.top, ignore_errors=True)


def conds_by_type(node):
    return {c["type"]: c for c in node["status"].get("conditions", [])}


def expect_status(resp, code, reason):
    expect_eq(resp.status, code, "HTTP status")
    s = resp.json
    expect_eq(s.get("kind"), "Status", "kind")
    expect_eq(s.get("apiVersion"), "v1", "apiVersion")
    expect_eq(s.get("metadata"), {}, "metadata")
    expect_eq(s.get("status"), "Failure", "status")
    expect_eq(s.get("code"), code, "code")
    if reason is not None:
        expect_eq(s.get("reason"), reason, "reason")
    expect(isinstance(s.get("message"), str) and s["message"], "message present")
    return s


# ---------------------------------------------------------------- the tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


F = None      # main server: --kubelet-tick 0
F2 = None     # second server: fast kubelet tick
_serial = [0]


def fresh_node(**kw):
    _serial[0] += 1
    name = f"t{_serial[0]}"
    code, _ = F.ctl("POST", "/control/nodes", {"name": name, **kw})
    expect_eq(code, 201, "control create node")
    return name


@test
def server_files_written():
    """certificates, keys, port files, token and service account directory written"""
    for f in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key", "wrong-ca.crt",
              "wrong-client.crt", "wrong-client.key", "port", "control-port", "ready", "token", "kubeconfig",
              "kubeconfig-cert", "serviceaccount/token", "serviceaccount/ca.crt", "serviceaccount/namespace"):
        expect(os.path.exists(F.path(f)), f"{f} missing")
    expect_eq(open(F.path("token")).read().strip(), TOKEN, "DIR/token")
    expect_eq(open(F.path("serviceaccount/token")).read(), TOKEN, "serviceaccount/token")
    expect(os.path.islink(F.path("serviceaccount/..data")), "..data is a symlink")
    expect(f"https://127.0.0.1:{F.port}" in open(F.path("kubeconfig")).read(), "kubeconfig server")


@test
def tls_server_cert_names():
    """server certificate verifies for 127.0.0.1, localhost and kubernetes.default.svc"""
    for host, sni in (("127.0.0.1", None), ("localhost", None), ("127.0.0.1", "kubernetes.default.svc")):
        c = F.connect(host=host, server_hostname=sni)
        try:
            c.request("GET", "/version", headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse()
            expect_eq(r.status, 200, f"GET /version via {host} sni={sni}")
            r.read()
        finally:
            c.close()


@test
def wrong_ca_refused_by_client():
    """a client trusting another CA refuses the server certificate"""
    try:
        F.api("GET", "/api/v1/nodes/node1", context=F.context(ca="wrong-ca.crt"))
    except ssl.SSLCertVerificationError as e:
        expect("certificate verify failed" in str(e), str(e))
        return
    raise Failure("request succeeded with the wrong CA")


@test
def get_node():
    """GET node: 200 Node with resourceVersion and the kubelet's four conditions"""
    r = F.api("GET", "/api/v1/nodes/node1")
    expect_eq(r.status, 200, "status")
    n = r.json
    expect_eq((n["kind"], n["apiVersion"], n["metadata"]["name"]), ("Node", "v1", "node1"), "identity")
    expect(isinstance(n["metadata"]["resourceVersion"], str) and n["metadata"]["resourceVersion"].isdigit(),
           "resourceVersion is a numeric string")
    c = conds_by_type(n)
    for ty, (st, reason) in KUBELET.items():
        expect(ty in c, f"{ty} missing")
        expect_eq((c[ty]["status"], c[ty]["reason"]), (st, reason), ty)
    expect_eq(len(c), 4, "exactly four conditions")


@test
def get_unknown_node_404():
    """GET unknown node: 404 NotFound Status with details {name, kind}"""
    s = expect_status(F.api("GET", "/api/v1/nodes/nope"), 404, "NotFound")
    expect_eq(s["message"], 'nodes "nope" not found', "message")
    expect_eq(s["details"], {"name": "nope", "kind": "nodes"}, "details")


@test
def smp_merge_by_type_keeps_kubelet():
    """strategic merge by type: new type appended, kubelet conditions kept, new resourceVersion"""
    n = fresh_node()
    before = F.node(n)
    r = F.patch(n, {"status": {"conditions": [{"type": "KernelDeadlock", "status": "False",
                                               "reason": "KernelHasNoDeadlock", "message": "kernel has no deadlock",
                                               "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    expect_eq(r.status, 200, f"status {r}")
    body = r.json
    expect_eq((body["kind"], body["apiVersion"]), ("Node", "v1"), "whole Node returned")
    expect(int(body["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"]),
           "resourceVersion increased")
    types = [c["type"] for c in body["status"]["conditions"]]
    expect_eq(types, ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready", "KernelDeadlock"], "types")
    expect_eq(body["status"]["conditions"][:4], before["status"]["conditions"], "kubelet conditions unchanged")
    expect_eq(F.node(n), body, "stored equals reply")
    r = F.patch(n, {"status": {"conditions": [{"type": "X2", "status": "True"}]}}, ctype=SMP + "; charset=utf-8")
    expect_eq(r.status, 200, "charset suffix accepted")
    expect("X2" in conds_by_type(F.node(n)), "X2 stored")


@test
def smp_field_merge_and_null():
    """within a condition: omitted fields keep old values, null removes a field"""
    n = fresh_node()
    F.patch(n, {"status": {"conditions": [{"type": "A", "status": "True", "reason": "R1", "message": "M1"}]}})
    r = F.patch(n, {"status": {"conditions": [{"type": "A", "status": "False"}]}})
    expect_eq(r.status, 200, "status")
    a = conds_by_type(F.node(n))["A"]
    expect_eq((a["status"], a.get("reason"), a.get("message")), ("False", "R1", "M1"), "omitted fields kept")
    r = F.patch(n, {"status": {"conditions": [{"type": "A", "message": None}]}})
    expect_eq(r.status, 200, "status")
    a = conds_by_type(F.node(n))["A"]
    expect("message" not in a, f"message removed: {a}")
    expect_eq(a.get("reason"), "R1", "reason kept")


@test
def smp_patch_delete():
    """$patch delete removes a type; deleting an absent type is 200 with no change"""
    n = fresh_node()
    F.patch(n, {"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}})
    r = F.patch(n, {"status": {"conditions": [{"type": "A", "$patch": "delete"}]}})
    expect_eq(r.status, 200, "status")
    c = conds_by_type(F.node(n))
    expect("A" not in c and "B" in c and "Ready" in c, f"A deleted, others kept: {sorted(c)}")
    before = F.node(n)
    r = F.patch(n, {"status": {"conditions": [{"type": "Absent", "$patch": "delete"}]}})
    expect_eq(r.status, 200, "absent delete status")
    expect_eq(F.node(n), before, "no change at all (same resourceVersion)")


@test
def smp_missing_type_500():
    """an element without type: 500 and nothing stored"""
    n = fresh_node()
    before = F.node(n)
    r = F.patch(n, {"status": {"conditions": [{"type": "Good", "status": "True"}, {"status": "True", "reason": "X"}]}})
    s = expect_status(r, 500, None)
    expect("does not contain declared merge key: type" in s["message"], s["message"])
    expect_eq(F.node(n), before, "nothing stored")
    r = F.patch(n, {"status": {"conditions": [{"$patch": "delete"}]}})
    expect_status(r, 500, None)


@test
def merge_patch_replaces_list():
    """merge-patch+json replaces the conditions list wholesale (kubelet's vanish)"""
    n = fresh_node()
    r = F.patch(n, {"status": {"conditions": [{"type": "Mine", "status": "True"}]}}, ctype=MERGE)
    expect_eq(r.status, 200, "status")
    expect_eq([c["type"] for c in F.node(n)["status"]["conditions"]], ["Mine"], "only Mine left")


@test
def unsupported_media_type_415():
    """415 UnsupportedMediaType: application/json, text/plain, wrong case, none, json-patch"""
    n = fresh_node()
    before = F.node(n)
    body = {"status": {"conditions": [{"type": "Z", "status": "True"}]}}
    for ct in ("application/json", "text/plain", "Application/Strategic-Merge-Patch+json",
               "application/STRATEGIC-merge-patch+json", None, "application/json-patch+json",
               "application/strategic-merge-patch+json ; charset=utf-8", "application/yaml"):
        s = expect_status(F.patch(n, body, ctype=ct), 415, "UnsupportedMediaType")
        expect("application/strategic-merge-patch+json" in s["message"], s["message"])
    expect_eq(F.node(n), before, "nothing stored")


@test
def bad_body_400():
    """400 BadRequest: body not JSON, empty, array, string, number"""
    n = fresh_node()
    for raw in (b"{not json", b"", b"[]", b'[{"type":"A"}]', b'"str"', b"42", b"true", b"{\"a\":NaN}"):
        expect_status(F.patch(n, None, raw=raw), 400, "BadRequest")
        expect_status(F.patch(n, None, raw=raw, ctype=MERGE), 400, "BadRequest")


@test
def patch_unknown_node_404():
    """PATCH of an unknown node: 404 NotFound with details"""
    s = expect_status(F.patch("ghost", {"status": {"conditions": [{"type": "A", "status": "True"}]}}), 404,
                      "NotFound")
    expect_eq(s["message"], 'nodes "ghost" not found', "message")
    expect_eq(s["details"], {"name": "ghost", "kind": "nodes"}, "details")


@test
def resource_version_409():
    """409 Conflict on a stale resourceVersion; matching one is fine; none sent is never a 409"""
    n = fresh_node()
    rv = F.node(n)["metadata"]["resourceVersion"]
    r = F.patch(n, {"metadata": {"resourceVersion": rv}, "status": {"conditions": [{"type": "A", "status": "True"}]}})
    expect_eq(r.status, 200, "matching resourceVersion")
    s = expect_status(F.patch(n, {"metadata": {"resourceVersion": rv},
                                  "status": {"conditions": [{"type": "A", "status": "False"}]}}), 409, "Conflict")
    expect(s["message"].endswith("please apply your changes to the latest version and try again"), s["message"])
    expect_eq(s["message"], f'Operation cannot be fulfilled on nodes "{n}": the object has been modified; please '
                            f'apply your changes to the latest version and try again', "message")
    expect_eq(conds_by_type(F.node(n))["A"]["status"], "True", "conflicting patch not stored")
    F.ctl("POST", "/control/kubelet-tick", {"node": n})
    r = F.patch(n, {"status": {"conditions": [{"type": "A", "status": "False"}]}})
    expect_eq(r.status, 200, "no resourceVersion after other writers")


@test
def rotation_401_then_new_token():
    """401 Unauthorized after token rotation; the new token works; token files swapped"""
    code, _ = F.ctl("POST", "/control/tokens", {"token": "tok-rot-a"})
    expect_eq(code, 200, "add token")
    expect_eq(F.api("GET", "/api/v1/nodes/node1", token="tok-rot-a").status, 200, "old token before rotation")
    old_data = os.readlink(F.path("serviceaccount/..data"))
    code, out = F.ctl("POST", "/control/rotate-token", {"old": "tok-rot-a", "new": "tok-rot-b"})
    expect_eq(code, 200, f"rotate {out}")
    s = expect_status(F.api("GET", "/api/v1/nodes/node1", token="tok-rot-a"), 401, "Unauthorized")
    expect_eq(s["message"], "Unauthorized", "message")
    expect_status(F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}},
                          token="tok-rot-a"), 401, "Unauthorized")
    expect_eq(F.api("GET", "/api/v1/nodes/node1", token="tok-rot-b").status, 200, "new token")
    expect_eq(open(F.path("token")).read().strip(), "tok-rot-b", "DIR/token rewritten")
    expect_eq(open(F.path("serviceaccount/token")).read(), "tok-rot-b", "serviceaccount/token rewritten")
    expect(os.readlink(F.path("serviceaccount/..data")) != old_data, "..data swapped")
    reqs = [r for r in F.requests() if r["path"] == "/api/v1/nodes/node1" and r["auth"] == "bearer"][-2:]
    expect_eq([r["token_valid"] for r in reqs], [False, True], "token_valid recorded")
    expect_eq(reqs[1]["token_serial"], out["serial"], "token_serial recorded")
    expect_status(F.api("GET", "/api/v1/nodes/node1", token="never-issued"), 401, "Unauthorized")


@test
def anonymous_403_exact_message():
    """no credentials: 403 Forbidden with the exact apiserver message"""
    s = expect_status(F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}}, token=None),
                      403, "Forbidden")
    expect_eq(s["message"], 'nodes "node1" is forbidden: User "system:anonymous" cannot patch resource '
                            '"nodes/status" in API group "" at the cluster scope', "message")
    s = expect_status(F.api("GET", "/api/v1/nodes/node1", token=None), 403, "Forbidden")
    expect_eq(s["message"], 'nodes "node1" is forbidden: User "system:anonymous" cannot get resource "nodes" in '
                            'API group "" at the cluster scope', "GET message")
    s = expect_status(F.api("GET", "/api/v1/nodes/node1", token=None, headers={"Authorization": "Basic eDp5"}),
                      403, "Forbidden")
    reqs = F.requests()
    expect_eq(reqs[-1]["auth"], "other", "non-bearer Authorization recorded as other")
    expect_eq(reqs[-2]["auth"], "none", "no credentials recorded as none")


@test
def norbac_token_403():
    """a token without RBAC: 403 naming the user"""
    s = expect_status(F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}}, token=NORBAC),
                      403, "Forbidden")
    expect_eq(s["message"], 'nodes "node1" is forbidden: User "system:serviceaccount:default:no-rbac" cannot '
                            'patch resource "nodes/status" in API group "" at the cluster scope', "message")
    s = expect_status(F.api("POST", "/api/v1/namespaces/default/events", {"metadata": {"name": "x"}},
                            "application/json", token=NORBAC), 403, "Forbidden")
    expect_eq(s["message"], 'events is forbidden: User "system:serviceaccount:default:no-rbac" cannot create '
                            'resource "events" in API group "" in the namespace "default"', "events message")


@test
def throttled_429_plain_text():
    """429: plain text body and Retry-After, one-shot"""
    code, out = F.ctl("POST", "/control/faults", [{"method": "PATCH", "path": "^/api/v1/nodes/node1/status$",
                                                   "code": 429, "retry_after": 2}])
    expect_eq(code, 200, f"add fault {out}")
    r = F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}})
    expect_eq(r.status, 429, "status")
    expect_eq(r.headers.get("Retry-After"), "2", "Retry-After")
    expect(r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type"))
    try:
        json.loads(r.data)
        raise Failure("429 body is JSON")
    except ValueError:
        pass
    expect(b"Too many requests" in r.data, r.data)
    expect_eq(F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}}).status, 200,
              "one-shot fault consumed")
    expect_eq(F.requests()[-2]["fault"]["code"], 429, "fault recorded")


@test
def injected_500_503_409_n_times():
    """injected 500 / 503 / 409 are Status objects; times=N fires N times"""
    F.ctl("POST", "/control/faults", [{"method": "GET", "path": "/nodes/node1$", "code": 500, "times": 2},
                                      {"method": "GET", "path": "/nodes/node1$", "code": 503, "retry_after": 1}])
    expect_status(F.api("GET", "/api/v1/nodes/node1"), 500, "InternalError")
    expect_status(F.api("GET", "/api/v1/nodes/node1"), 500, "InternalError")
    r = F.api("GET", "/api/v1/nodes/node1")
    expect_status(r, 503, "ServiceUnavailable")
    expect_eq(r.headers.get("Retry-After"), "1", "503 Retry-After")
    expect_eq(F.api("GET", "/api/v1/nodes/node1").status, 200, "faults used up")
    F.ctl("POST", "/control/faults", {"method": "PATCH", "code": 409})
    s = expect_status(F.patch("node1", {"status": {"conditions": [{"type": "A", "status": "True"}]}}), 409,
                      "Conflict")
    expect(s["message"].endswith("please apply your changes to the latest version and try again"), s["message"])
    code, faults = F.ctl("GET", "/control/faults")
    expect(all(f["remaining"] == 0 for f in faults), f"all used: {faults}")
    F.ctl("DELETE", "/control/faults")


@test
def bad_time_422():
    """unparseable lastTransitionTime / lastHeartbeatTime: 422 Invalid, nothing stored"""
    n = fresh_node()
    before = F.node(n)
    for bad in ("yesterday", "2026-01-01 00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "", 12345):
        for field in ("lastTransitionTime", "lastHeartbeatTime"):
            r = F.patch(n, {"status": {"conditions": [{"type": "T", "status": "True", field: bad}]}})
            expect_status(r, 422, "Invalid")
    expect_eq(F.node(n), before, "nothing stored")


@test
def times_normalised():
    """times stored as RFC 3339 UTC whole seconds; never computed by the server"""
    n = fresh_node()
    r = F.patch(n, {"status": {"conditions": [
        {"type": "T", "status": "True", "lastHeartbeatTime": "2026-01-01T01:00:00.987654+01:00",
         "lastTransitionTime": "2025-12-31T23:59:59.5Z"},
        {"type": "U", "status": "False"}]}})
    expect_eq(r.status, 200, "status")
    c = conds_by_type(r.json)
    expect_eq(c["T"]["lastHeartbeatTime"], "2026-01-01T00:00:00Z", "heartbeat normalised")
    expect_eq(c["T"]["lastTransitionTime"], "2025-12-31T23:59:59Z", "transition normalised")
    expect_eq((c["U"]["lastHeartbeatTime"], c["U"]["lastTransitionTime"]), (None, None),
              "absent times are not filled in (null)")


@test
def unknown_field_warning():
    """unknown field inside a condition: dropped, Warning header in the reply"""
    n = fresh_node()
    r = F.patch(n, {"status": {"conditions": [{"type": "W", "status": "True", "foo": "bar"}]}})
    expect_eq(r.status, 200, "status")
    expect_eq(r.headers.get_all("Warning"), ['299 - "unknown field \\"status.conditions[4].foo\\""'], "Warning")
    expect("foo" not in conds_by_type(F.node(n))["W"], "foo dropped")
    n2 = fresh_node(kubelet=False)
    r = F.patch(n2, {"status": {"conditions": [{"type": "W", "status": "True", "foo": 1}]}})
    expect_eq(r.headers.get("Warning"), '299 - "unknown field \\"status.conditions[0].foo\\""', "index 0")
    r = F.api("PATCH", f"/api/v1/nodes/{n}/status?fieldValidation=Strict",
              {"status": {"conditions": [{"type": "W", "bar": 1}]}}, SMP)
    expect_status(r, 400, "BadRequest")
    r = F.patch(n, {"status": {"conditions": [{"type": "W", "status": "False"}]}})
    expect_eq(r.headers.get("Warning"), None, "no warning without unknown fields")


@test
def patch_main_resource_ignores_status():
    """PATCH /api/v1/nodes/NAME (no /status): 200, status ignored, metadata applied"""
    n = fresh_node()
    before = F.node(n)
    r = F.patch(n, {"metadata": {"annotations": {"example.com/x": "1"}},
                    "status": {"conditions": [{"type": "Ignored", "status": "True"},
                                              {"type": "Ready", "status": "False"}]}}, sub="")
    expect_eq(r.status, 200, "status")
    after = F.node(n)
    expect_eq(after["status"], before["status"], "status unchanged")
    expect_eq(after["metadata"]["annotations"].get("example.com/x"), "1", "annotation applied")
    r = F.patch(n, {"status": {"conditions": [{"type": "Ignored", "status": "True"}]}}, sub="")
    expect_eq(r.status, 200, "status-only patch of the main resource")
    expect_eq(F.node(n)["status"], before["status"], "still unchanged")


@test
def annotations_merge():
    """metadata.annotations merge through /status: add, keep others, null deletes"""
    n = fresh_node()
    r = F.patch(n, {"metadata": {"annotations": {"nodehealthd.io/owned": "A,B", "other/x": "y"}},
                    "status": {"conditions": [{"type": "A", "status": "True"}]}})
    expect_eq(r.status, 200, "status")
    ann = F.node(n)["metadata"]["annotations"]
    expect_eq((ann.get("nodehealthd.io/owned"), ann.get("other/x")), ("A,B", "y"), "added")
    expect("node.alpha.kubernetes.io/ttl" in ann, "existing annotation kept")
    F.patch(n, {"metadata": {"annotations": {"other/x": None, "nodehealthd.io/owned": "A"}}})
    ann = F.node(n)["metadata"]["annotations"]
    expect("other/x" not in ann, "null deleted the key")
    expect_eq(ann.get("nodehealthd.io/owned"), "A", "value replaced")
    expect_status(F.patch(n, {"metadata": {"annotations": {"bad key!": "v"}}}), 422, "Invalid")
    expect_status(F.patch(n, {"metadata": {"annotations": {"k": 5}}}), 422, "Invalid")


@test
def kubelet_tick_overwrites_own_types_only():
    """kubelet tick rewrites its four types (heartbeat bumped), leaves other types alone"""
    n = fresh_node()
    F.patch(n, {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Foreign", "message": "written by someone else"},
        {"type": "DiskPressure", "$patch": "delete"},
        {"type": "KernelDeadlock", "status": "True", "reason": "Mine", "lastHeartbeatTime": "2020-01-01T00:00:00Z"}]}})
    mine_before = conds_by_type(F.node(n))["KernelDeadlock"]
    F.ctl("POST", "/control/clock", {"freeze": True, "advance": 60})     # the fake's clock, not a sleep
    code, out = F.ctl("POST", "/control/kubelet-tick", {"node": n})
    expect_eq((code, out.get("nodes")), (200, [n]), "tick")
    c = conds_by_type(F.node(n))
    expect_eq((c["Ready"]["status"], c["Ready"]["reason"]), ("True", "KubeletReady"), "Ready overwritten")
    expect("DiskPressure" in c, "deleted kubelet condition re-added")
    expect_eq(c["KernelDeadlock"], mine_before, "custom type untouched")
    t0 = c["MemoryPressure"]["lastHeartbeatTime"]
    code, clock = F.ctl("POST", "/control/clock", {"advance": 10})
    expect_eq(code, 200, "advance clock")
    F.ctl("POST", "/control/kubelet-tick", {"node": n})
    c2 = conds_by_type(F.node(n))
    expect(c2["MemoryPressure"]["lastHeartbeatTime"] > t0, "heartbeat bumped")
    expect_eq(c2["MemoryPressure"]["lastHeartbeatTime"], clock["now"][:19] + "Z", "heartbeat is the fake clock's now")
    expect_eq(c2["MemoryPressure"]["lastTransitionTime"], c["MemoryPressure"]["lastTransitionTime"],
              "transition kept while status unchanged")
    code, _ = F.ctl("POST", f"/control/nodes/{n}/kubelet",
                    {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                     "message": "PLEG is not healthy"}]})
    expect_eq(code, 200, "set kubelet view")
    F.ctl("POST", "/control/kubelet-tick", {"node": n})
    c3 = conds_by_type(F.node(n))
    expect_eq((c3["Ready"]["status"], c3["Ready"]["reason"]), ("False", "KubeletNotReady"), "kubelet view")
    expect_eq(c3["KernelDeadlock"], mine_before, "custom type still untouched")
    expect_eq(c3["Ready"]["lastTransitionTime"], clock["now"][:19] + "Z", "Ready transition at the tick")
    code, clock = F.ctl("POST", "/control/clock", {"reset": True})
    expect_eq((code, clock["frozen"], clock["offset"]), (200, False, 0.0), "clock reset")


@test
def kubelet_periodic_tick():
    """--kubelet-tick SECONDS: the kubelet rewrites its conditions on its own"""
    F2.wait_ready()
    r = F2.api("PATCH", "/api/v1/nodes/node1/status",
               {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Foreign"},
                                          {"type": "Mine", "status": "True"}]}}, SMP, token="fake-token-1")
    expect_eq(r.status, 200, "patch")
    hb = conds_by_type(r.json)["MemoryPressure"]["lastHeartbeatTime"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c = conds_by_type(F2.node("node1"))
        if c["Ready"]["status"] == "True" and c["MemoryPressure"]["lastHeartbeatTime"] > hb:
            expect_eq(c["Mine"]["status"], "True", "Mine kept")
            return
        time.sleep(0.1)
    raise Failure(f"no periodic tick: {c}")


def event_body(name="node1.abc123", ns="default", **over):
    ev = {"apiVersion": "v1", "kind": "Event",
          "metadata": {"name": name, "namespace": ns},
          "involvedObject": {"kind": "Node", "name": "node1", "uid": "node1"},
          "reason": "KernelOops", "message": "kernel: BUG: unable to handle page fault", "type": "Warning",
          "source": {"component": "nodehealthd", "host": "node1"}, "count": 1,
          "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    ev.update(over)
    return ev


@test
def events_post_get_patch():
    """events: POST 201, GET list, PATCH count/lastTimestamp 200, generateName"""
    r = F.api("POST", "/api/v1/namespaces/default/events", event_body("node1.ev1"), "application/json")
    expect_eq(r.status, 201, f"POST {r}")
    ev = r.json
    expect_eq((ev["kind"], ev["metadata"]["name"], ev["metadata"]["namespace"], ev["count"]),
              ("Event", "node1.ev1", "default", 1), "created")
    expect(ev["metadata"].get("uid") and ev["metadata"].get("resourceVersion"), "uid and resourceVersion set")
    r = F.api("GET", "/api/v1/namespaces/default/events")
    expect_eq(r.status, 200, "list")
    expect_eq(r.json["kind"], "EventList", "EventList")
    expect("node1.ev1" in [e["metadata"]["name"] for e in r.json["items"]], "listed")
    r = F.api("PATCH", "/api/v1/namespaces/default/events/node1.ev1",
              {"count": 2, "lastTimestamp": "2026-01-01T00:05:00Z"}, SMP)
    expect_eq(r.status, 200, f"PATCH {r}")
    expect_eq((r.json["count"], r.json["lastTimestamp"], r.json["firstTimestamp"], r.json["message"]),
              (2, "2026-01-01T00:05:00Z", "2026-01-01T00:00:00Z", ev["message"]), "merged")
    body = event_body()
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "node1."
    r = F.api("POST", "/api/v1/namespaces/default/events", body, "application/json")
    expect_eq(r.status, 201, f"generateName {r}")
    expect(r.json["metadata"]["name"].startswith("node1.") and len(r.json["metadata"]["name"]) == 11,
           r.json["metadata"]["name"])
    code, evs = F.ctl("GET", "/control/events")
    expect(len(evs) >= 2, "control lists events")


@test
def events_errors():
    """events: PATCH unknown 404, wrong namespace 422/400, bad type 422, duplicate 409, 415"""
    s = expect_status(F.api("PATCH", "/api/v1/namespaces/default/events/nope", {"count": 3}, SMP), 404, "NotFound")
    expect_eq(s["details"], {"name": "nope", "kind": "events"}, "details")
    s = expect_status(F.api("POST", "/api/v1/namespaces/kube-system/events", event_body("n.ks", ns="kube-system"),
                            "application/json"), 422, "Invalid")
    expect("involvedObject.namespace" in s["message"] and "does not match event.namespace" in s["message"],
           s["message"])
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", event_body("n.ns", ns="kube-system"),
                        "application/json"), 400, "BadRequest")
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", event_body("n.t", type="Error"),
                        "application/json"), 422, "Invalid")
    expect_status(F.api("POST", "/api/v1/namespaces/default/events",
                        event_body("n.io", involvedObject={"kind": "Node"}), "application/json"), 422, "Invalid")
    body = event_body()
    del body["metadata"]["name"]
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", body, "application/json"), 422, "Invalid")
    expect_eq(F.api("POST", "/api/v1/namespaces/default/events", event_body("n.dup"), "application/json").status,
              201, "first")
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", event_body("n.dup"), "application/json"),
                  409, "AlreadyExists")
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", event_body("n.ct"), "text/plain"),
                  415, "UnsupportedMediaType")
    expect_status(F.api("POST", "/api/v1/namespaces/default/events", None, "application/json", raw=b"[1]"),
                  400, "BadRequest")
    expect_status(F.api("PATCH", "/api/v1/namespaces/default/events/n.dup", {"type": "Bogus"}, SMP), 422, "Invalid")
    expect_status(F.api("PATCH", "/api/v1/namespaces/default/events/n.dup", {"count": 2}, "application/json"),
                  415, "UnsupportedMediaType")


@test
def client_cert_auth():
    """client certificate authentication (CN=system:node:node1) without a token"""
    ctx = F.context(cert="client")
    r = F.patch("node1", {"status": {"conditions": [{"type": "CertWritten", "status": "True"}]}}, token=None,
                context=ctx)
    expect_eq(r.status, 200, f"patch with client cert {r}")
    rec = F.requests()[-1]
    expect_eq((rec["auth"], rec["user"], rec["client_cert"]), ("client-cert", "system:node:node1", True), "recorded")
    n = fresh_node()
    s = expect_status(F.patch(n, {"status": {"conditions": [{"type": "A", "status": "True"}]}}, token=None,
                              context=ctx), 403, "Forbidden")
    expect_eq(s["message"], f'nodes "{n}" is forbidden: node "node1" is not allowed to modify node "{n}"',
              "NodeRestriction message")


@test
def wrong_ca_client_cert_401():
    """a client certificate from another CA: 401 Unauthorized"""
    expect_status(F.api("GET", "/api/v1/nodes/node1", token=None, context=F.context(cert="wrong-client")), 401,
                  "Unauthorized")


@test
def drop_fault():
    """drop fault: the connection closes without a reply; recorded; next request fine"""
    F.ctl("POST", "/control/faults", [{"method": "PATCH", "path": "/nodes/node1/status$", "drop": True}])
    try:
        r = F.patch("node1", {"status": {"conditions": [{"type": "Dropped", "status": "True"}]}})
        raise Failure(f"got a reply: {r}")
    except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError, http.client.IncompleteRead):
        pass
    rec = F.requests()[-1]
    expect(rec["dropped"] and rec["code"] is None, f"recorded as dropped: {rec}")
    expect("Dropped" not in conds_by_type(F.node("node1")), "not applied")
    expect_eq(F.patch("node1", {"status": {"conditions": [{"type": "Dropped", "status": "True"}]}}).status, 200,
              "next request")
    F.ctl("POST", "/control/faults", [{"method": "PATCH", "path": "/nodes/node1/status$", "drop": True,
                                       "apply": True}])
    try:
        F.patch("node1", {"status": {"conditions": [{"type": "AppliedThenDropped", "status": "True"}]}})
        raise Failure("got a reply")
    except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError, http.client.IncompleteRead):
        pass
    expect("AppliedThenDropped" in conds_by_type(F.node("node1")), "apply+drop: stored, reply lost")


@test
def delay_fault():
    """delay fault: the reply comes after delay_ms"""
    F.ctl("POST", "/control/faults", [{"method": "GET", "path": "/nodes/node1$", "delay_ms": 800}])
    t0 = time.monotonic()
    r = F.api("GET", "/api/v1/nodes/node1")
    dt = time.monotonic() - t0
    expect_eq(r.status, 200, "status")
    expect(dt >= 0.75, f"took {dt:.3f}s")
    t0 = time.monotonic()
    F.api("GET", "/api/v1/nodes/node1")
    expect(time.monotonic() - t0 < 0.5, "second one fast")


@test
def fault_variants():
    """faults: skip N, close after reply, custom body, bad fault rejected"""
    F.ctl("POST", "/control/faults", [{"method": "GET", "path": "/nodes/node1$", "skip": 1, "code": 500},
                                      {"method": "GET", "path": "/nodes/node1/status$", "code": 200,
                                       "body": "garbage{", "content_type": "application/json"}])
    expect_eq(F.api("GET", "/api/v1/nodes/node1").status, 200, "skipped one")
    expect_status(F.api("GET", "/api/v1/nodes/node1"), 500, "InternalError")
    r = F.api("GET", "/api/v1/nodes/node1/status")
    expect_eq((r.status, r.data), (200, b"garbage{"), "custom body")
    F.ctl("POST", "/control/faults", {"path": "/nodes/node1$", "close": True})
    conn = F.connect()
    try:
        r = F.api("GET", "/api/v1/nodes/node1", conn=conn)
        expect_eq((r.status, r.headers.get("Connection")), (200, "close"), "Connection: close")
        r = F.api("GET", "/api/v1/nodes/node1", conn=conn)    # http.client reconnects
        expect_eq(r.status, 200, "after close")
    finally:
        conn.close()
    reqs = F.requests()[-2:]
    expect(reqs[0]["conn"] != reqs[1]["conn"], "a new connection after close")
    expect_eq(F.ctl("POST", "/control/faults", {"path": "x", "bogus": 1})[0], 400, "unknown key rejected")
    expect_eq(F.ctl("POST", "/control/faults", {"path": "x"})[0], 400, "fault without effect rejected")


@test
def keepalive_connection_reuse():
    """HTTP/1.1 keep-alive: one connection serves several requests, visible in /control/requests"""
    F.ctl("POST", "/control/reset-requests")
    conn = F.connect()
    try:
        for i in range(3):
            r = F.api("GET", "/api/v1/nodes/node1", conn=conn)
            expect_eq(r.status, 200, f"request {i}")
        r = F.patch("node1", {"status": {"conditions": [{"type": "KA", "status": "True"}]}}, conn=conn)
        expect_eq(r.status, 200, "patch on same connection")
        expect_status(F.api("GET", "/api/v1/nodes/nope", conn=conn), 404, "NotFound")
        expect_eq(F.api("GET", "/api/v1/nodes/node1", conn=conn).status, 200, "after an error reply")
    finally:
        conn.close()
    F.api("GET", "/api/v1/nodes/node1")
    reqs = F.requests()
    expect_eq(len(reqs), 7, "seven recorded")
    expect_eq(len({r["conn"] for r in reqs[:6]}), 1, "first six on one connection")
    expect_eq([r["conn_request"] for r in reqs[:6]], [1, 2, 3, 4, 5, 6], "conn_request counts")
    expect(reqs[6]["conn"] != reqs[0]["conn"], "a new connection has a new id")
    code, conns = F.ctl("GET", "/control/connections")
    c = [x for x in conns if x["id"] == reqs[0]["conn"]][0]
    expect_eq(c["requests"], 6, "connection request count")


@test
def control_requests_record():
    """/control/requests records method, path, content type, auth kind, body, code; never the token"""
    F.ctl("POST", "/control/reset-requests")
    body = {"status": {"conditions": [{"type": "Rec", "status": "True"}]}}
    F.patch("node1", body, ctype=SMP + "; charset=utf-8")
    reqs = F.requests()
    expect_eq(len(reqs), 1, "one request after reset")
    r = reqs[0]
    expect_eq((r["method"], r["path"], r["content_type"], r["auth"], r["body"], r["code"]),
              ("PATCH", "/api/v1/nodes/node1/status", SMP + "; charset=utf-8", "bearer", body, 200), "fields")
    expect(isinstance(r["time"], float) and isinstance(r["conn"], int) and isinstance(r["id"], int), "types")
    expect_eq(r["user"], "system:serviceaccount:kube-system:nodehealthd", "user")
    F.api("GET", "/api/v1/nodes/node1", token=TOKEN)
    F.api("GET", "/api/v1/nodes/node1", token="some-bad-token")
    c = http.client.HTTPConnection("127.0.0.1", F.cport, timeout=10)
    c.request("GET", "/control/requests")
    raw = c.getresponse().read().decode()
    c.close()
    expect(TOKEN not in raw and "some-bad-token" not in raw, "token values never recorded")
    since = reqs[0]["id"]
    expect_eq(len(F.ctl("GET", f"/control/requests?since={since}")[1]), 2, "since=ID")


@test
def control_nodes_create_delete():
    """control API: create node (201), GET via API, DELETE, then 404; PUT replaces"""
    code, n = F.ctl("POST", "/control/nodes", {"name": "ctl-node", "conditions": [
        {"type": "Seeded", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00+00:00"}]})
    expect_eq(code, 201, "create")
    expect_eq(F.ctl("POST", "/control/nodes", {"name": "ctl-node"})[0], 409, "duplicate")
    r = F.api("GET", "/api/v1/nodes/ctl-node")
    expect_eq(r.status, 200, "API GET")
    expect_eq(conds_by_type(r.json)["Seeded"]["lastHeartbeatTime"], "2026-01-01T00:00:00Z", "seeded condition")
    n = r.json
    n["status"]["conditions"] = [{"type": "Only", "status": "False"}]
    code, put = F.ctl("PUT", "/control/nodes/ctl-node", n)
    expect_eq(code, 200, "PUT")
    expect_eq([c["type"] for c in F.node("ctl-node")["status"]["conditions"]], ["Only"], "replaced")
    expect_eq(F.ctl("DELETE", "/control/nodes/ctl-node")[0], 200, "delete")
    expect_status(F.api("GET", "/api/v1/nodes/ctl-node"), 404, "NotFound")
    expect_eq(F.ctl("GET", "/control/nodes/ctl-node")[0], 404, "control 404")


@test
def misc_rejections():
    """unknown resource 404, PUT 405, name mismatch 400, SMP null body is a no-op"""
    expect_status(F.api("GET", "/api/v1/pods/x"), 404, "NotFound")
    expect_status(F.api("PUT", "/api/v1/nodes/node1/status", {}, "application/json"), 405, "MethodNotAllowed")
    expect_status(F.patch("node1", {"metadata": {"name": "other"}}), 400, "BadRequest")
    n = fresh_node()
    before = F.node(n)
    expect_eq(F.patch(n, None, raw=b"null").status, 200, "SMP null")
    expect_eq(F.node(n), before, "unchanged")
    r = F.api("GET", "/healthz", token=None)
    expect_eq((r.status, r.data), (200, b"ok"), "healthz anonymous")


@test
def stop_via_control():
    """POST /control/stop: the server exits 0"""
    code, _ = F2.ctl("POST", "/control/stop")
    expect_eq(code, 200, "stop")
    try:
        rc = F2.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise Failure("did not exit")
    expect_eq(rc, 0, "exit code")
    expect(not os.path.exists(F2.path("ready")), "ready removed")


@test
def sigterm_and_clean_log():
    """SIGTERM: the server exits 0; its log shows no internal error"""
    F.proc.send_signal(signal.SIGTERM)
    try:
        rc = F.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise Failure("did not exit on SIGTERM")
    expect_eq(rc, 0, "exit code")
    text = F.log_text() + F2.log_text()
    expect("Traceback" not in text and "crashed" not in text, "log: " + text[-3000:])


# ---------------------------------------------------------------- runner


def main():
    global F, F2
    results = []
    fakes = []

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        F = Fake("--node", "node1", "--kubelet-tick", "0", "--tokens", TOKEN, "--norbac-tokens", NORBAC)
        fakes.append(F)
        F2 = Fake("--node", "node1", "--kubelet-tick", "0.3")
        fakes.append(F2)
        F.wait_ready()
        for i, fn in enumerate(TESTS, 1):
            name = fn.__doc__.strip().splitlines()[0]
            try:
                fn()
                results.append((True, name, ""))
            except Failure as e:
                results.append((False, name, str(e)))
            except Exception:
                results.append((False, name, traceback.format_exc()))
            ok, _, diag = results[-1]
            print(f"{'ok' if ok else 'not ok'} {i} - {name}", flush=True)
            if not ok:
                for line in diag.rstrip().splitlines():
                    print(f"# {line}", flush=True)
    except BaseException as e:      # includes SystemExit from a signal
        results.append((False, "test harness", traceback.format_exc()))
        print(f"not ok {len(results)} - test harness: {e!r}", flush=True)
        for line in traceback.format_exc().rstrip().splitlines():
            print(f"# {line}", flush=True)
    finally:
        failed = [r for r in results if not r[0]]
        if failed:
            for f in fakes:
                tail = f.log_text()[-4000:]
                for line in tail.splitlines():
                    print(f"# server log: {line}")
        for f in fakes:
            f.cleanup()
    print(f"1..{len(results)}", flush=True)
    return 0 if all(r[0] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
