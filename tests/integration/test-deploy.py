#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks the Kubernetes manifests and the container build file against the daemon they ship.

deploy/kubernetes/ (listed by its kustomization.yaml) and deploy/Containerfile are parsed and
checked: RBAC exactly the rules the daemon needs; the binding; the DaemonSet's flags, mounts,
environment, tolerations, security context, resources and liveness probe consistent with the
daemon's options, conf/nodehealthd.json and bench/README.md; the ConfigMap equal to
conf/nodehealthd.json; the DaemonSet's command line run for real against this machine's /proc,
/sys and / with the capabilities the manifest leaves it; every library the built daemon and its
probes load provided by a package the image installs.

TAP on stdout.  NH_SRCDIR is the source tree (default: two levels above this script),
NH_BUILDDIR the build tree (default: NH_SRCDIR).  Needs python3-yaml; uses dpkg-query, readelf,
ldd, pkg-config, setpriv and kubectl when present (checks that need a missing one are skipped).
"""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.environ.get("NH_SRCDIR") or os.path.join(HERE, "..", ".."))
BUILDDIR_SET = bool(os.environ.get("NH_BUILDDIR"))
BUILDDIR = os.path.abspath(os.environ.get("NH_BUILDDIR") or SRCDIR)

K8S_DIR = os.path.join(SRCDIR, "deploy", "kubernetes")
CONTAINERFILE = os.path.join(SRCDIR, "deploy", "Containerfile")
CONF = os.path.join(SRCDIR, "conf", "nodehealthd.json")
BENCH_README = os.path.join(SRCDIR, "bench", "README.md")
CONFIGURE_AC = os.path.join(SRCDIR, "configure.ac")
PLUGIN_BUILD_DIR = os.path.join(BUILDDIR, "plugins", ".libs")

# The rules the daemon needs at the API server (shared/k8s-api-behaviour.md, "Minimal RBAC").
EXPECTED_RULES = {
    ("", "nodes", "get"),
    ("", "nodes/status", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
}
# Each root flag and the host directory it must read.
ROOT_FLAGS = {"--proc-path": "/proc", "--sys-path": "/sys", "--root-path": "/"}
# Where the kernel_log probe finds the host's journal, as sd-journal looks for it.
JOURNAL_DIRS = ["/var/log/journal", "/run/log/journal"]
TEST_NODE = "nodehealthd-deploy-test-node"
# Sanitizer run-times appear in ldd's output of an --enable-sanitizers build, never in the image.
SANITIZER_RUNTIME = re.compile(r"^lib(asan|ubsan|lsan|tsan|hwasan)\.so")


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Fail(message)


# ---------------------------------------------------------------- loading


class Manifests:
    def __init__(self):
        self.error = None
        self.objects = []
        self.files = []
        try:
            self._load()
        except Exception as e:  # reported by the first test, and by every test that needs them
            self.error = "%s: %s" % (type(e).__name__, e)

    def _load(self):
        kpath = os.path.join(K8S_DIR, "kustomization.yaml")
        with open(kpath, encoding="utf-8") as f:
            kust = yaml.safe_load(f)
        if not isinstance(kust, dict) or not isinstance(kust.get("resources"), list):
            raise Fail("%s has no resources list" % kpath)
        for res in kust["resources"]:
            path = os.path.normpath(os.path.join(K8S_DIR, res))
            self.files.append(path)
            with open(path, encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    if doc is None:
                        continue
                    if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion") \
                            or not (doc.get("metadata") or {}).get("name"):
                        raise Fail("%s: a document without apiVersion, kind or metadata.name" % res)
                    doc["__file__"] = res
                    self.objects.append(doc)

    def need(self):
        if self.error:
            raise Fail("the manifests did not load: " + self.error)

    def one(self, kind):
        self.need()
        found = [o for o in self.objects if o["kind"] == kind]
        check(len(found) == 1, "expected exactly one %s, found %d" % (kind, len(found)))
        return found[0]


M = Manifests()


def ds_pod():
    return M.one("DaemonSet")["spec"]["template"]["spec"]


def ds_container():
    containers = ds_pod().get("containers") or []
    check(len(containers) == 1, "the DaemonSet should run one container, not %d" % len(containers))
    return containers[0]


def conf_text():
    with open(CONF, encoding="utf-8") as f:
        return f.read()


def configmap_files():
    """The ConfigMap's data: file name -> text."""
    cm = M.one("ConfigMap")
    data = cm.get("data") or {}
    check(isinstance(data, dict) and data, "ConfigMap %s has no data" % cm["metadata"]["name"])
    return data


def config_from_configmap():
    files = configmap_files()
    check("nodehealthd.json" in files, "the ConfigMap has no key nodehealthd.json")
    return json.loads(files["nodehealthd.json"])


def namespace_of(obj):
    return (obj.get("metadata") or {}).get("namespace") or "default"


# ---------------------------------------------------------------- the daemon


def daemon_binary():
    path = os.path.join(BUILDDIR, "nodehealthd")
    if not os.path.exists(path):
        if not BUILDDIR_SET:
            raise Skip("no build tree (NH_BUILDDIR unset, no %s)" % path)
        raise Fail("%s does not exist: build first" % path)
    with open(path, "rb") as f:
        if f.read(2) == b"#!":  # a libtool wrapper: the ELF is in .libs
            path = os.path.join(BUILDDIR, ".libs", "nodehealthd")
    return path


_help_flags = None


def help_flags():
    """{--flag: takes_value} from nodehealthd --help."""
    global _help_flags
    if _help_flags is None:
        r = subprocess.run([daemon_binary(), "--help"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "nodehealthd --help exited %d: %s" % (r.returncode, r.stderr.strip()))
        flags = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^\s+(?:-\w,\s+)?(--[a-z][a-z0-9-]*)(?: ([A-Z][A-Z_]*|[a-z]+(?:\|[a-z]+)+))?(?=\s{2,}|$)",
                         line)
            if m:
                flags[m.group(1)] = m.group(2) is not None
        check("--config" in flags and flags["--config"], "could not read the options from --help:\n" + r.stdout)
        _help_flags = flags
    return _help_flags


def parse_args(args):
    """[(flag, value or None)] from a DaemonSet's args, checked against --help."""
    flags = help_flags()
    out = []
    i = 0
    while i < len(args):
        a = str(args[i])
        i += 1
        check(a.startswith("--"), "argument %r is not an option: the daemon takes no operands" % a)
        name, eq, value = a.partition("=")
        check(name in flags, "%s is not an option of nodehealthd (its --help lists %s)" % (name, " ".join(sorted(flags))))
        if flags[name]:
            if not eq:
                check(i < len(args), "%s needs a value" % name)
                value = str(args[i])
                i += 1
            out.append((name, value))
        else:
            check(not eq, "%s takes no value" % name)
            out.append((name, None))
    return out


def ds_args():
    c = ds_container()
    command = c.get("command")
    if command:
        check(command == ["/usr/sbin/nodehealthd"], "the container's command %r is not the image's daemon" % command)
    return parse_args(c.get("args") or [])


def arg_value(args, flag):
    values = [v for f, v in args if f == flag]
    check(len(values) == 1, "the DaemonSet passes %s %d times" % (flag, len(values)))
    return values[0]


# ---------------------------------------------------------------- mounts


def mounts():
    """[(mountPath, volume, mount)] of the DaemonSet's container."""
    pod = ds_pod()
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    out = []
    for m in ds_container().get("volumeMounts") or []:
        check(m.get("name") in volumes, "volumeMount %s names no volume" % m.get("name"))
        out.append((m["mountPath"].rstrip("/") or "/", volumes[m["name"]], m))
    return out


def mount_for(path):
    """The mount that holds a container path: (mountPath, volume, mount, rest) or None."""
    best = None
    for mp, vol, m in mounts():
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) > len(best[0]):
                best = (mp, vol, m)
    if best is None:
        return None
    rest = path[len(best[0]):].lstrip("/")
    return best + (rest,)


def host_path_of(path):
    """(host path, mount) that a container path shows, or (None, mount/None) when it is not a host path."""
    found = mount_for(path)
    if not found:
        return None, None
    mp, vol, m, rest = found
    if "hostPath" not in vol:
        return None, m
    base = vol["hostPath"]["path"]
    if m.get("subPath"):
        base = os.path.join(base, m["subPath"])
    return os.path.normpath(os.path.join(base, rest)) if rest else os.path.normpath(base), m


class LocalTree:
    """The DaemonSet's mounts on this machine: host paths as they are, ConfigMaps written out."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="nh-deploy-")
        os.chmod(self.tmp, 0o755)  # the daemon may run as the manifest's runAsUser
        self.sources = {}
        configmaps = {o["metadata"]["name"]: o for o in M.objects if o["kind"] == "ConfigMap"}
        for mp, vol, m in mounts():
            if "hostPath" in vol:
                src = vol["hostPath"]["path"]
            else:
                src = os.path.join(self.tmp, m["name"])
                os.makedirs(src, mode=0o755, exist_ok=True)
                if "configMap" in vol:
                    cm = configmaps.get(vol["configMap"]["name"])
                    check(cm is not None or vol["configMap"].get("optional"),
                          "volume %s names ConfigMap %s, which the manifests do not define" %
                          (m["name"], vol["configMap"]["name"]))
                    data = (cm or {}).get("data") or {}
                    items = vol["configMap"].get("items")
                    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
                    for key, rel in pairs:
                        dst = os.path.join(src, rel)
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        with open(dst, "w", encoding="utf-8") as f:
                            f.write(data[key])
                        os.chmod(dst, 0o644)
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
            self.sources[mp] = src

    def translate(self, path):
        found = mount_for(path)
        if not found:
            return path
        return os.path.join(self.sources[found[0]], found[3]) if found[3] else self.sources[found[0]]

    def argv(self, args):
        out = []
        for flag, value in args:
            if flag == "--plugin-dir":
                continue  # the build tree's probes replace the image's
            out.append(flag)
            if value is not None:
                out.append(self.translate(value) if value.startswith("/") else value)
        return out + ["--plugin-dir", PLUGIN_BUILD_DIR]

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def daemon_env():
    """The environment the manifest gives the daemon, with the downward API's node name faked."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "LANG", "LC_ALL", "TZ") or k.endswith("SAN_OPTIONS")}
    for e in ds_container().get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif (((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")) == "spec.nodeName":
            env[e["name"]] = TEST_NODE
    return env


# ---------------------------------------------------------------- quantities


def memory_bytes(q):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    check(m, "memory quantity %r not understood" % q)
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}[m.group(2)]
    return float(m.group(1)) * mult


def cpu_millis(q):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m)?", str(q))
    check(m, "cpu quantity %r not understood" % q)
    return float(m.group(1)) * (1 if m.group(2) else 1000)


# ---------------------------------------------------------------- Containerfile and dpkg


def containerfile_stages():
    with open(CONTAINERFILE, encoding="utf-8") as f:
        text = f.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    if cur:
        lines.append(cur)
    stages = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"image": words[0], "name": name, "run": [], "copy": [], "entrypoint": None,
                           "cmd": None})
            continue
        check(stages, "Containerfile: %s before any FROM" % instr)
        st = stages[-1]
        if instr == "RUN":
            st["run"].append(rest)
        elif instr in ("COPY", "ADD"):
            words = shlex.split(rest)
            frm = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            st["copy"].append((frm, paths[:-1], paths[-1]))
        elif instr == "ENTRYPOINT":
            st["entrypoint"] = json.loads(rest) if rest.startswith("[") else rest
        elif instr == "CMD":
            st["cmd"] = json.loads(rest) if rest.startswith("[") else rest
    return stages


def apt_installed(stage):
    """Packages a stage's RUN lines install with apt-get/apt install."""
    pkgs = []
    for run in stage["run"]:
        tokens = shlex.split(run, comments=False, posix=True)
        i = 0
        while i < len(tokens):
            if tokens[i] in ("apt-get", "apt") and "install" in tokens[i + 1:i + 8]:
                j = tokens.index("install", i + 1) + 1
                while j < len(tokens) and tokens[j] not in ("&&", "||", ";", "|") and not tokens[j].endswith(";"):
                    t = tokens[j]
                    if not t.startswith("-") and "$" not in t:
                        pkgs.append(t.split("=")[0].split(":")[0])
                    j += 1
                i = j
            i += 1
    return pkgs


def need_tool(name):
    path = shutil.which(name)
    if not path:
        raise Skip("%s is not installed" % name)
    return path


_dpkg = None


def dpkg_db():
    """{package: {essential, priority, deps: [[alternatives]], provides}} of installed packages."""
    global _dpkg
    if _dpkg is None:
        need_tool("dpkg-query")
        fmt = "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\t${Pre-Depends}\t${Depends}\t${Provides}\n"
        r = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, timeout=60)
        db = {}
        provides = {}
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) < 7 or not f[0].startswith("ii"):
                continue
            deps = []
            for field in (f[4], f[5]):
                for group in filter(None, (g.strip() for g in field.split(","))):
                    deps.append([re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")])
            db[f[1]] = {"essential": f[2] == "yes", "priority": f[3], "deps": deps}
            for p in filter(None, (p.strip() for p in f[6].split(","))):
                provides.setdefault(re.split(r"[\s(:]", p, maxsplit=1)[0], []).append(f[1])
        _dpkg = (db, provides)
    return _dpkg


def closure(pkgs):
    """The packages apt installs for pkgs (Depends and Pre-Depends, as installed on this machine)."""
    db, provides = dpkg_db()
    seen = set()
    todo = list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in db.get(p, {}).get("deps", []):
            chosen = [a for a in alts if a in db] or [q for a in alts for q in provides.get(a, [])]
            if chosen:
                todo.append(chosen[0])
    return seen


def base_image_packages():
    """What debian:12-slim holds: the Essential and required packages, apt, and their dependencies."""
    db, _ = dpkg_db()
    roots = [p for p, d in db.items() if d["essential"] or d["priority"] == "required"] + ["apt"]
    return closure(roots)


def usr_aliases(path):
    out = [path, os.path.realpath(path)]
    for p in list(out):
        if p.startswith("/usr/"):
            out.append(p[4:])
        else:
            out.append("/usr" + p)
    return list(dict.fromkeys(out))


def owners(paths):
    """{path: package} by dpkg-query -S, trying the merged-/usr aliases of each path."""
    need_tool("dpkg-query")
    queries = {}
    for p in paths:
        for alias in usr_aliases(p):
            queries.setdefault(alias, p)
    r = subprocess.run(["dpkg-query", "-S"] + list(queries), capture_output=True, text=True, timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        pkgs, _, path = line.rpartition(": ")
        if path in queries:
            out.setdefault(queries[path], pkgs.split(",")[0].strip().split(":")[0])
    return out


def elf_objects():
    objs = [daemon_binary()] + sorted(glob.glob(os.path.join(PLUGIN_BUILD_DIR, "*.so")))
    check(len(objs) > 1, "no probes in %s: build first" % PLUGIN_BUILD_DIR)
    return objs


def needed(obj):
    for tool, args in (("readelf", ["-d", "-W"]), ("objdump", ["-p"])):
        if shutil.which(tool):
            r = subprocess.run([tool] + args + [obj], capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, "%s %s failed: %s" % (tool, obj, r.stderr.strip()))
            found = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]|^\s*NEEDED\s+(\S+)", r.stdout, re.M)
            return [a or b for a, b in found]
    raise Skip("neither readelf nor objdump is installed")


def ldd(obj):
    """{soname: resolved path} of everything obj loads."""
    need_tool("ldd")
    r = subprocess.run(["ldd", obj], capture_output=True, text=True, timeout=60)
    libs = {}
    if "statically linked" in r.stdout + r.stderr or "not a dynamic executable" in r.stdout + r.stderr:
        return libs
    check(r.returncode == 0, "ldd %s failed: %s" % (obj, r.stderr.strip()))
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"^(\S+) => (\S+)", line)
        if m:
            check(m.group(2) != "not", "%s: %s is not found" % (obj, m.group(1)))
            libs[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(/\S+) \(0x", line)  # the dynamic loader
        if m:
            libs[os.path.basename(m.group(1))] = m.group(1)
    return libs


# ---------------------------------------------------------------- the tests

TESTS = []


def test(name):
    def wrap(fn):
        TESTS.append((name, fn))
        return fn

    return wrap


@test("kustomization.yaml lists every manifest in deploy/kubernetes, and each parses")
def t_load():
    M.need()
    listed = {os.path.basename(p) for p in M.files}
    present = {os.path.basename(p) for p in glob.glob(os.path.join(K8S_DIR, "*.y*ml"))} - {"kustomization.yaml"}
    check(present <= listed, "not in kustomization.yaml's resources: %s" % ", ".join(sorted(present - listed)))
    kinds = sorted(o["kind"] for o in M.objects)
    check(kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"]),
          "expected one each of ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet; got %s" % kinds)
    return "%d objects from %d files" % (len(M.objects), len(M.files))


@test("kubectl kustomize builds deploy/kubernetes into the same objects")
def t_kustomize():
    M.need()
    kubectl = need_tool("kubectl")
    r = subprocess.run([kubectl, "kustomize", K8S_DIR], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "kubectl kustomize failed: " + r.stderr.strip())
    built = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(r.stdout) if d)
    mine = sorted((o["kind"], o["metadata"]["name"]) for o in M.objects)
    check(built == mine, "kustomize built %s, the files hold %s" % (built, mine))


@test("ClusterRole grants exactly nodes get, nodes/status patch, events create and patch")
def t_rbac_rules():
    role = M.one("ClusterRole")
    check("aggregationRule" not in role, "the ClusterRole aggregates other roles")
    got = set()
    for rule in role.get("rules") or []:
        for key in ("resourceNames", "nonResourceURLs"):
            check(key not in rule, "a rule with %s: %r" % (key, rule))
        for g in rule.get("apiGroups") or []:
            for res in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    check("*" not in (g, res, verb), "a wildcard in %r" % rule)
                    got.add((g, res, verb))
    check(got == EXPECTED_RULES, "extra: %s; missing: %s" % (sorted(got - EXPECTED_RULES), sorted(EXPECTED_RULES - got)))


@test("ClusterRoleBinding binds that ClusterRole to the DaemonSet's ServiceAccount and nothing else")
def t_rbac_binding():
    role, sa, binding, ds = M.one("ClusterRole"), M.one("ServiceAccount"), M.one("ClusterRoleBinding"), M.one("DaemonSet")
    ref = binding.get("roleRef") or {}
    check(ref == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
          "roleRef %r is not ClusterRole %s" % (ref, role["metadata"]["name"]))
    want = [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": namespace_of(sa)}]
    check(binding.get("subjects") == want, "subjects %r, expected %r" % (binding.get("subjects"), want))
    check(ds_pod().get("serviceAccountName") == sa["metadata"]["name"],
          "the DaemonSet runs as %r, not ServiceAccount %s" % (ds_pod().get("serviceAccountName"), sa["metadata"]["name"]))
    check(ds_pod().get("automountServiceAccountToken", True) is not False, "the pod does not mount its token")
    spaces = {o["kind"]: namespace_of(o) for o in M.objects if o["kind"] in ("ServiceAccount", "ConfigMap", "DaemonSet")}
    check(len(set(spaces.values())) == 1, "ServiceAccount, ConfigMap and DaemonSet in different namespaces: %r" % spaces)
    return "ServiceAccount %s/%s" % (namespace_of(sa), sa["metadata"]["name"])


@test("every option in the DaemonSet's args is one that nodehealthd --help lists")
def t_flags_known():
    args = ds_args()
    return " ".join(f + ("" if v is None else " " + v) for f, v in args)


@test("nodehealthd --check-config accepts the DaemonSet's command line and ConfigMap")
def t_check_config():
    args = ds_args()
    tree = LocalTree()
    try:
        argv = [daemon_binary()] + tree.argv(args) + ["--check-config"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=daemon_env())
        check(r.returncode == 0, "%s exited %d:\n%s" % (" ".join(argv), r.returncode, r.stderr.strip()))
        return " ".join(argv[1:])
    finally:
        tree.close()


def setpriv_prefix():
    """setpriv arguments that give a process the user, groups and capabilities of the container."""
    pod, c = ds_pod(), ds_container()
    sc = dict(pod.get("securityContext") or {})
    sc.update(c.get("securityContext") or {})
    caps = sc.get("capabilities") or {}
    check("ALL" in (caps.get("drop") or []), "the container keeps the runtime's default capabilities")
    add = ["+" + a.lower().removeprefix("cap_") for a in caps.get("add") or []]
    prefix = [need_tool("setpriv"), "--reuid=%d" % int(sc.get("runAsUser", 0)),
              "--regid=%d" % int(sc.get("runAsGroup", sc.get("runAsUser", 0)))]
    groups = (pod.get("securityContext") or {}).get("supplementalGroups") or []
    prefix += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    prefix += ["--bounding-set=" + ",".join(["-all"] + add), "--inh-caps=-all"]
    if sc.get("allowPrivilegeEscalation") is False:
        prefix.append("--no-new-privs")
    return prefix, add


@test("the configured probes run once with the DaemonSet's mounts, NODE_NAME, user and capabilities")
def t_once():
    args = ds_args()
    prefix, add = [], []
    note = "not root: run without the container's user and capabilities"
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix, add = setpriv_prefix()
        note = "as the container's user with capabilities: %s" % (", ".join(add) or "none")
    tree = LocalTree()
    try:
        argv = prefix + [daemon_binary()] + tree.argv([(f, v) for f, v in args if f != "--format"]) + \
            ["--once", "--format", "json"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=daemon_env())
        check(r.returncode == 0, "%s exited %d:\n%s" % (" ".join(argv), r.returncode, r.stderr.strip()))
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = json.loads(r.stdout.splitlines()[0])
        check(out.get("node") == TEST_NODE, "the daemon reports node %r, not NODE_NAME's %r" % (out.get("node"), TEST_NODE))
        conds = out.get("conditions") or []
        check(conds, "no conditions reported:\n" + r.stdout)
        # KernelLogUnreadable: the kernel_log probe can read neither the host's journal nor /dev/kmsg.
        failed = [c for c in conds if c.get("reason") in ("ProbeInitFailed", "ProbeFailed", "KernelLogUnreadable")]
        check(not failed, "probes failed with the container's privileges:\n" +
              "\n".join("%s %s: %s" % (c["type"], c["reason"], c.get("message")) for c in failed) +
              "\n" + r.stderr.strip())
        probes = json.loads(conf_text()).get("probes") or {}
        if any((p or {}).get("plugin", name) == "kernel_log" and (p or {}).get("enabled", True) is not False
               for name, p in probes.items()):
            # Its types come from the rule file: proof that npd/kernel-monitor.json was found in the ConfigMap.
            check(any(c.get("type") == "KernelDeadlock" for c in conds),
                  "kernel_log is configured but reported no KernelDeadlock:\n" + r.stdout + r.stderr)
            reading = re.search(r"kernel \(kernel_log\): .*reading [^\n]*", r.stderr)
            note += "; " + (reading.group(0) if reading else "kernel_log")
        return "%s; %d conditions, none ProbeInitFailed/ProbeFailed/KernelLogUnreadable" % (note, len(conds))
    finally:
        tree.close()


@test("--proc-path, --sys-path and --root-path point into read-only mounts of the host's /proc, /sys and /")
def t_root_flags():
    args = ds_args()
    for flag, host in ROOT_FLAGS.items():
        value = arg_value(args, flag)
        got, m = host_path_of(value)
        check(got == host, "%s %s shows %s of the host, not %s" % (flag, value, got or "nothing", host))
        check(m.get("readOnly") is True, "%s %s is mounted read-write" % (flag, value))


@test("every host path is mounted read-only, is used, and is not a device")
def t_host_mounts():
    pod = ds_pod()
    used = {m["name"] for m in ds_container().get("volumeMounts") or []}
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            check(vol["name"] in used, "hostPath volume %s is mounted nowhere" % vol["name"])
            path = vol["hostPath"]["path"]
            check(not path.startswith("/dev/") and vol["hostPath"].get("type") not in ("CharDevice", "BlockDevice"),
                  "%s: a device cannot be opened by a container that is not privileged (device cgroup)" % path)
    for mp, vol, m in mounts():
        if "hostPath" in vol:
            check(m.get("readOnly") is True, "host path %s is mounted read-write at %s" % (vol["hostPath"]["path"], mp))
            check(m.get("mountPropagation") in (None, "None", "HostToContainer"),
                  "%s: mountPropagation %s lets the container mount on the host" % (mp, m.get("mountPropagation")))


@test("the host's journal directories are read-only at their usual paths")
def t_journal():
    for d in JOURNAL_DIRS:
        got, m = host_path_of(d)
        check(got == d, "%s shows %s of the host" % (d, got or "nothing"))
        check(m.get("readOnly") is True, "%s is mounted read-write" % d)


@test("NODE_NAME comes from the downward API's spec.nodeName")
def t_node_name():
    env = [e for e in ds_container().get("env") or [] if e.get("name") == "NODE_NAME"]
    check(len(env) == 1, "NODE_NAME is set %d times" % len(env))
    ref = ((env[0].get("valueFrom") or {}).get("fieldRef") or {})
    check(ref.get("fieldPath") == "spec.nodeName" and "value" not in env[0], "NODE_NAME is %r" % env[0])


@test("tolerations admit every NoSchedule and NoExecute taint (operator Exists), the node.kubernetes.io/* ones included")
def t_tolerations():
    tols = ds_pod().get("tolerations") or []
    covered = set()
    for t in tols:
        if t.get("operator") == "Exists" and not t.get("key"):
            covered |= {"NoSchedule", "NoExecute", "PreferNoSchedule"} if not t.get("effect") else {t["effect"]}
    missing = {"NoSchedule", "NoExecute"} - covered
    check(not missing, "no keyless Exists toleration for %s: %r" % (", ".join(sorted(missing)), tols))
    for t in tols:
        check("tolerationSeconds" not in t, "a toleration that evicts after %ss: %r" % (t.get("tolerationSeconds"), t))


@test("priorityClassName is system-node-critical, on Linux nodes only")
def t_priority():
    check(ds_pod().get("priorityClassName") == "system-node-critical",
          "priorityClassName is %r" % ds_pod().get("priorityClassName"))
    check((ds_pod().get("nodeSelector") or {}).get("kubernetes.io/os") == "linux",
          "no nodeSelector kubernetes.io/os: linux: the Exists toleration would admit Windows nodes too")


@test("hostNetwork for the network probe and the health endpoint; no hostPID, no hostIPC")
def t_host_namespaces():
    pod = ds_pod()
    check(pod.get("hostNetwork") is True, "without hostNetwork the network probe sees the pod's routes and links")
    check(not pod.get("hostPID"), "hostPID lets UID 0 in the pod signal the host's processes; /host/proc is enough")
    check(not pod.get("hostIPC"), "hostIPC is not needed")


@test("security context: read-only root filesystem, not privileged, no escalation, drop ALL add none, seccomp RuntimeDefault")
def t_security():
    pod, c = ds_pod(), ds_container()
    sc = c.get("securityContext") or {}
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is %r" % sc.get("readOnlyRootFilesystem"))
    check(not sc.get("privileged"), "the container is privileged")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is %r" % sc.get("allowPrivilegeEscalation"))
    caps = sc.get("capabilities") or {}
    check(caps.get("drop") == ["ALL"], "capabilities.drop is %r, not [ALL]" % caps.get("drop"))
    check(not caps.get("add"), "capabilities added: %r (every probe runs without any: see the run-once test)" % caps.get("add"))
    seccomp = (sc.get("seccompProfile") or (pod.get("securityContext") or {}).get("seccompProfile") or {})
    check(seccomp.get("type") == "RuntimeDefault", "seccompProfile is %r" % seccomp)
    return "runAsUser %s" % sc.get("runAsUser", (pod.get("securityContext") or {}).get("runAsUser", "of the image"))


@test("resources: cpu and memory requests and a memory limit, sized from bench/README.md's RSS")
def t_resources():
    res = ds_container().get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    check("cpu" in req and "memory" in req, "requests %r lack cpu or memory" % req)
    check("memory" in lim, "no memory limit: %r" % lim)
    check(cpu_millis(req["cpu"]) > 0, "a cpu request of 0")
    with open(BENCH_README, encoding="utf-8") as f:
        figures = [int(v) for v in re.findall(r"^(?:rss_kib_after_\w+|hwm_kib) (\d+)$", f.read(), re.M)]
    check(figures, "bench/README.md quotes no rss_kib_after_*/hwm_kib figure")
    rss = max(figures) * 1024
    check(memory_bytes(req["memory"]) >= 2 * rss,
          "memory request %s is less than twice the measured RSS (%d KiB)" % (req["memory"], rss // 1024))
    check(memory_bytes(lim["memory"]) >= memory_bytes(req["memory"]), "memory limit below the request")
    return "RSS %d KiB measured; requests %s, limits %s" % (rss // 1024, req, lim)


# The daemon serves /healthz on http.listen (core/http.c): the DaemonSet must probe it there.
HEALTHZ_IMPLEMENTED = True


@test("liveness probe: GET /healthz on http.listen once the daemon serves it, none before")
def t_liveness():
    if not HEALTHZ_IMPLEMENTED:
        check("livenessProbe" not in ds_container(),
              "a livenessProbe against an endpoint the daemon does not serve yet would crash-loop the pod")
        return "no liveness probe until /healthz exists"
    probe = (ds_container().get("livenessProbe") or {}).get("httpGet")

    check(probe, "no livenessProbe.httpGet")
    check(probe.get("path") == "/healthz", "path %r" % probe.get("path"))
    listen = (config_from_configmap().get("http") or {}).get("listen")
    check(listen, "the configuration has no http.listen")
    m = re.fullmatch(r"\[?([^\]]*)\]?:(\d+)", listen)
    check(m, "http.listen %r not understood" % listen)
    host, port = m.group(1), int(m.group(2))
    check(probe.get("port") == port, "probe port %r, the daemon listens on %d" % (probe.get("port"), port))
    if host not in ("", "0.0.0.0", "::"):
        check(probe.get("host") == host, "probe host %r, the daemon listens on %s only" % (probe.get("host"), host))
        if host.startswith("127.") or host == "::1":
            check(ds_pod().get("hostNetwork") is True,
                  "the kubelet reaches %s in the pod only with hostNetwork" % host)


@test("the ConfigMap's nodehealthd.json is JSON-equal to conf/nodehealthd.json")
def t_configmap_json():
    check(config_from_configmap() == json.loads(conf_text()), "they differ: run deploy/kubernetes/gen-configmap.sh")


@test("the ConfigMap holds conf/nodehealthd.json byte for byte, and gen-configmap.sh --check agrees")
def t_configmap_bytes():
    check(configmap_files().get("nodehealthd.json") == conf_text(),
          "the texts differ (whitespace at least): run deploy/kubernetes/gen-configmap.sh")
    r = subprocess.run(["sh", os.path.join(K8S_DIR, "gen-configmap.sh"), "--check"], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, "gen-configmap.sh --check exited %d:\n%s" % (r.returncode, r.stderr.strip()))


@test("the ConfigMap holds every conf/npd/*.json byte for byte, mounted beside nodehealthd.json as in conf/")
def t_configmap_rule_files():
    files = configmap_files()
    conf_dir = os.path.dirname(CONF)
    rules = sorted(glob.glob(os.path.join(conf_dir, "npd", "*.json")))
    check(rules, "conf/npd/ holds no rule file")
    found = mount_for(arg_value(ds_args(), "--config"))
    check(found, "--config lies in no mount")
    mp, vol, m, rest = found
    check("configMap" in vol and not m.get("subPath"), "--config is not in a whole ConfigMap volume")
    items = vol["configMap"].get("items")
    paths = {i["key"]: i["path"] for i in items} if items else {k: k for k in files}
    # The pod's directory of nodehealthd.json, as conf/ is: every file at its path relative to conf/.
    base = os.path.dirname(paths.get("nodehealthd.json", ""))
    for path in rules:
        rel = os.path.relpath(path, conf_dir)
        key = "npd-" + os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        check(files.get(key) == text, "ConfigMap key %s is not %s byte for byte: run deploy/kubernetes/gen-configmap.sh"
              % (key, rel))
        check(key in paths, "the DaemonSet's volume %s does not mount key %s (add it to its items)" % (m["name"], key))
        check(os.path.normpath(os.path.join(base, paths[key])) == os.path.normpath(os.path.join(base, rel)),
              "key %s is mounted at %s, not at %s beside nodehealthd.json" % (key, paths[key], rel))
    for key in files:
        check(key in paths, "ConfigMap key %s is mounted nowhere: the volume's items leave it out" % key)
    return "%d rule file(s): %s" % (len(rules), ", ".join(os.path.relpath(r, conf_dir) for r in rules))


@test("--config points at the ConfigMap's nodehealthd.json, mounted read-only")
def t_config_mount():
    path = arg_value(ds_args(), "--config")
    found = mount_for(path)
    check(found, "--config %s lies in no mount" % path)
    mp, vol, m, rest = found
    cm = M.one("ConfigMap")
    check((vol.get("configMap") or {}).get("name") == cm["metadata"]["name"],
          "--config %s is in volume %s, not ConfigMap %s" % (path, m["name"], cm["metadata"]["name"]))
    items = vol["configMap"].get("items")
    key = rest if not items else next((i["key"] for i in items if i["path"] == rest), None)
    if m.get("subPath"):
        key = m["subPath"]
    check(key == "nodehealthd.json", "--config %s shows ConfigMap key %r" % (path, key))
    check(m.get("readOnly") is True, "the configuration is mounted read-write")


@test("the image the DaemonSet runs is tagged with configure.ac's version")
def t_image_tag():
    with open(CONFIGURE_AC, encoding="utf-8") as f:
        m = re.search(r"AC_INIT\(\[[^\]]*\],\s*\[([^\]]+)\]", f.read())
    check(m, "no version in configure.ac's AC_INIT")
    image = ds_container().get("image", "")
    check(image.endswith(":" + m.group(1)), "image %r is not tagged %s" % (image, m.group(1)))
    return image


@test("Containerfile: debian:12-slim build and final stages, the build's /out copied, ENTRYPOINT the daemon")
def t_containerfile_stages():
    stages = containerfile_stages()
    check(len(stages) >= 2, "%d stage(s): expected a build stage and a final one" % len(stages))
    build, final = stages[0], stages[-1]
    check(build["image"] == "debian:12-slim" and build["name"], "first stage is %r AS %r" % (build["image"], build["name"]))
    check(final["image"] == "debian:12-slim", "final stage is built on %r" % final["image"])
    runs = " ".join(build["run"])
    for step in ("./autogen.sh", "./configure", "--prefix=/usr", "--sysconfdir=/etc", "make install DESTDIR=/out"):
        check(step in runs, "the build stage does not run %r" % step)
    check(any(frm == build["name"] and srcs and all(s.rstrip("/") == "/out" for s in srcs) and dst == "/"
              for frm, srcs, dst in final["copy"]),
          "the final stage does not COPY --from=%s /out/ /: %r" % (build["name"], final["copy"]))
    check(final["entrypoint"] == ["/usr/sbin/nodehealthd"], "ENTRYPOINT is %r" % final["entrypoint"])
    # --sysconfdir=/etc puts the shipped configuration where the DaemonSet mounts the ConfigMap.
    check(mount_for("/etc/nodehealthd/nodehealthd.json") and arg_value(ds_args(), "--config") ==
          "/etc/nodehealthd/nodehealthd.json", "the DaemonSet's --config is not the image's /etc/nodehealthd/nodehealthd.json")


@test("Containerfile: the build stage installs the packages configure.ac requires")
def t_containerfile_build_deps():
    stages = containerfile_stages()
    listed = apt_installed(stages[0])
    have = closure(listed)
    for tools in (["gcc", "clang", "build-essential"], ["make", "build-essential"], ["autoconf"], ["automake"],
                  ["libtool"], ["pkg-config", "pkgconf"]):
        check(set(tools) & set(listed), "the build stage installs none of %s" % ", ".join(tools))
    check("libc6-dev" in have, "the build stage lacks libc6-dev (gcc only recommends it)")
    with open(CONFIGURE_AC, encoding="utf-8") as f:
        ac = f.read()
    paths = {}
    need_tool("pkg-config")
    for mod in re.findall(r"PKG_CHECK_MODULES\(\[\w+\],\s*\[\s*([\w.+-]+)[^\]]*\]\s*\)", ac):
        r = subprocess.run(["pkg-config", "--path", mod], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and r.stdout.strip(), "pkg-config cannot find %s on this machine" % mod)
        paths[r.stdout.strip()] = mod
    for header in re.findall(r"AC_CHECK_HEADER\(\[([^\]]+)\],\s*\[[^\]]*\],\s*\[AC_MSG_ERROR", ac):
        hp = next((p for p in glob.glob("/usr/include/" + header) + glob.glob("/usr/include/*/" + header)), None)
        check(hp, "%s (required by configure.ac) is not installed here" % header)
        paths[hp] = header
    check(paths, "found no requirement in configure.ac")
    own = owners(list(paths))
    missing = []
    for p, what in sorted(paths.items()):
        check(p in own, "no package owns %s" % p)
        if own[p] not in have:
            missing.append("%s (%s)" % (own[p], what))
    check(not missing, "the build stage does not install: " + ", ".join(missing))
    return "%d requirements of configure.ac: %s" % (len(paths), " ".join(sorted(set(own.values()))))


@test("Containerfile: the final stage installs every library the daemon and its probes load")
def t_containerfile_runtime():
    stages = containerfile_stages()
    listed = apt_installed(stages[-1])
    base = base_image_packages()
    have = closure(listed) | base
    always = closure(["libc6"])  # the C library and what it pulls in (libgcc-s1) are in any image
    direct, everything = {}, {}
    for obj in elf_objects():
        libs = ldd(obj)
        everything.update(libs)
        for soname in needed(obj):
            check(soname in libs, "%s needs %s, which ldd does not resolve" % (obj, soname))
            direct[soname] = libs[soname]
    libs = {s: p for s, p in everything.items() if not SANITIZER_RUNTIME.match(s)}
    own = owners(list(libs.values()))
    problems = []
    for soname, path in sorted(libs.items()):
        pkg = own.get(path)
        if pkg is None:
            problems.append("%s (%s): no package owns it" % (soname, path))
        elif soname in direct and pkg not in listed and pkg not in always:
            problems.append("%s is linked directly: install %s explicitly" % (soname, pkg))
        elif pkg not in have:
            problems.append("%s comes from %s, which the final stage does not install" % (soname, pkg))
    check(not problems, "\n".join(problems))
    return "%d libraries (%d linked directly) from %s" % (
        len(libs), len(direct), " ".join(sorted({own[p] for p in libs.values()} & (set(listed) | always))))


def main():
    print("1..%d" % len(TESTS))
    failed = 0
    for n, (name, fn) in enumerate(TESTS, 1):
        try:
            note = fn()
            print("ok %d - %s" % (n, name))
            if note:
                for line in str(note).splitlines():
                    print("# " + line)
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (n, name, e))
        except Fail as e:
            failed += 1
            print("not ok %d - %s" % (n, name))
            for line in str(e).splitlines():
                print("# " + line)
        except Exception as e:  # a bug or a broken file: a failure, with what happened
            failed += 1
            print("not ok %d - %s" % (n, name))
            print("# %s: %s" % (type(e).__name__, e))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
