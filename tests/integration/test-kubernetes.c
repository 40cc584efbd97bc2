/* SPDX-License-Identifier: MIT */
/*
 * The daemon against the fake API server (tests/fake-apiserver/, real HTTPS, a CA made by
 * openssl at test time, a simulated kubelet rewriting its own conditions every second).  The
 * testprobe plugin reports what root/testprobe/state says, so a test drives transitions by
 * writing that file.  Every assertion is on what the fake recorded (its requests) or stored
 * (the Node, the Events).  Waits are on file descriptors (the fake logs every API request on
 * its stderr, the daemon its transitions on stdout) with deadlines; nothing sleeps.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink-kubernetes.h"
#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 20000
#define NODE_PATH_FMT "/api/v1/nodes/%s"
#define EVENTS_PATH "/api/v1/namespaces/default/events"

struct env {
        char *dir; /* temporary: conf/, root/, fake/ */
        char *fake_dir;
        char *conf;
        char *root;
        char *plugin_dir;
        char node[64];
        char status_path[128]; /* /api/v1/nodes/NODE/status */
        char node_path[128];
        struct proc *fake;
        int port, cport;
};

static void dump(struct env *e, struct proc *daemon, const char *node);

/* ---- reading pipes without blocking ---- */

static bool drain_fd(int *fd, char **buf, size_t *len) {
        char chunk[4096];
        bool got = false;

        while (*fd >= 0) {
                ssize_t n = read(*fd, chunk, sizeof(chunk));
                if (n > 0) {
                        *buf = realloc(*buf, *len + (size_t) n + 1);
                        assert_non_null(*buf);
                        memcpy(*buf + *len, chunk, (size_t) n);
                        *len += (size_t) n;
                        (*buf)[*len] = '\0';
                        got = true;
                        continue;
                }
                if (n == 0) {
                        close(*fd);
                        *fd = -1;
                }
                break;
        }
        return got;
}

static uint64_t mono_ms(void) {
        return now_usec(CLOCK_MONOTONIC) / 1000;
}

static double real_now(void) {
        return (double) now_usec(CLOCK_REALTIME) / 1e6;
}

/*
 * Waits up to timeout_ms for something to happen: the fake answering an API request (a "] #"
 * line on its stderr) or the daemon writing anything.  Output is collected meanwhile.
 */
static void wait_activity(struct env *e, struct proc *daemon, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;
        size_t mark = e->fake->err_len;

        for (;;) {
                struct pollfd fds[3] = {{e->fake->err_fd, POLLIN, 0},
                                        {daemon ? daemon->out_fd : -1, POLLIN, 0},
                                        {daemon ? daemon->err_fd : -1, POLLIN, 0}};
                uint64_t now = mono_ms();
                bool daemon_spoke = false;

                if (now >= deadline)
                        return;
                (void) poll(fds, 3, (int) (deadline - now));
                drain_fd(&e->fake->err_fd, &e->fake->err, &e->fake->err_len);
                if (daemon) {
                        daemon_spoke |= drain_fd(&daemon->out_fd, &daemon->out, &daemon->out_len);
                        daemon_spoke |= drain_fd(&daemon->err_fd, &daemon->err, &daemon->err_len);
                }
                if (daemon_spoke || strstr(e->fake->err + mark, "] #"))
                        return;
        }
}

typedef bool (*pred_fn)(struct env *e, const void *arg);

/* Re-checks pred after every bit of activity (at least every 200 ms) until it holds or time is up. */
static bool wait_for(struct env *e, struct proc *daemon, int timeout_ms, pred_fn pred, const void *arg) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;

        for (;;) {
                if (pred(e, arg))
                        return true;
                uint64_t now = mono_ms();
                if (now >= deadline)
                        return false;
                wait_activity(e, daemon, (int) (deadline - now < 200 ? deadline - now : 200));
        }
}

static bool never(struct env *e, const void *arg) {
        return false;
}

/* Lets the daemon run for ms (collecting its output): time for something that must NOT happen. */
static void let_run(struct env *e, struct proc *daemon, int ms) {
        (void) wait_for(e, daemon, ms, never, NULL);
}

static bool daemon_says(struct env *e, const void *arg) {
        const struct {
                struct proc *p;
                const char *needle;
        } *a = arg;
        drain_fd(&a->p->err_fd, &a->p->err, &a->p->err_len);
        drain_fd(&a->p->out_fd, &a->p->out, &a->p->out_len);
        return strstr(a->p->err, a->needle) || strstr(a->p->out, a->needle);
}

static void expect_daemon_says(struct env *e, struct proc *p, const char *needle, int timeout_ms) {
        struct {
                struct proc *p;
                const char *needle;
        } a = {p, needle};
        if (!wait_for(e, p, timeout_ms, daemon_says, &a)) {
                dump(e, p, NULL);
                fail_msg("the daemon did not say \"%s\" within %d ms", needle, timeout_ms);
        }
}

/* ---- the fake's control API ---- */

static size_t collect(char *data, size_t size, size_t n, void *userdata) {
        FILE *f = userdata;
        return fwrite(data, size, n, f);
}

/* An HTTP request to the control API; returns the parsed JSON reply (asserted) and the status. */
static cJSON *control_full(struct env *e, const char *method, const char *path, const char *body, long *ret_code) {
        CURL *c = curl_easy_init();
        char *url = NULL, *reply = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&reply, &len);
        struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
        long code = 0;

        assert_non_null(c);
        assert_true(asprintf(&url, "http://127.0.0.1:%d%s", e->cport, path) >= 0);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        CURLcode r = curl_easy_perform(c);
        fclose(f);
        if (r != CURLE_OK)
                fail_msg("control %s %s: %s", method, path, curl_easy_strerror(r));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        cJSON *j = cJSON_Parse(reply);
        if (!j)
                fail_msg("control %s %s: not JSON: %s", method, path, reply);
        if (ret_code)
                *ret_code = code;
        else if (code >= 300)
                fail_msg("control %s %s: HTTP %ld: %s", method, path, code, reply);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        free(url);
        free(reply);
        return j;
}

static cJSON *control(struct env *e, const char *method, const char *path, const char *body) {
        return control_full(e, method, path, body, NULL);
}

static void control_void(struct env *e, const char *method, const char *path, const char *body) {
        cJSON_Delete(control(e, method, path, body));
}

static void add_fault(struct env *e, const char *json) {
        control_void(e, "POST", "/control/faults", json);
}

/* The Node as the fake stores it, or NULL when there is none. */
static cJSON *get_node(struct env *e, const char *name) {
        char *path = NULL;
        long code;

        assert_true(asprintf(&path, "/control/nodes/%s", name) >= 0);
        cJSON *n = control_full(e, "GET", path, NULL, &code);
        free(path);
        if (code == 404) {
                cJSON_Delete(n);
                return NULL;
        }
        assert_int_equal(code, 200);
        return n;
}

static const cJSON *find_condition(const cJSON *node, const char *type) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(node, "status"), "conditions")) {
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "type")), type) == 0)
                        return c;
        }
        return NULL;
}

static const char *field(const cJSON *o, const char *key) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
        return v ? v : "";
}

static void expect_field(const cJSON *o, const char *key, const char *value) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
        if (!v || strcmp(v, value) != 0) {
                char *text = cJSON_Print(o);
                fail_msg("%s is \"%s\", expected \"%s\" in\n%s", key, v ? v : "(missing)", value, text);
        }
}

static const char *annotation(const cJSON *node) {
        return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItem(cJSON_GetObjectItem(node, "metadata"), "annotations"), NH_KUBE_OWNED_ANNOTATION));
}

struct cond_want {
        const char *node; /* NULL: e->node */
        const char *type;
        const char *status; /* NULL: only that it exists */
        const char *message; /* NULL: any */
};

static bool node_has(struct env *e, const void *arg) {
        const struct cond_want *w = arg;
        cJSON *n = get_node(e, w->node ? w->node : e->node);
        const cJSON *c = n ? find_condition(n, w->type) : NULL;
        bool ok = c && (!w->status || strcmp(field(c, "status"), w->status) == 0) &&
                  (!w->message || strcmp(field(c, "message"), w->message) == 0);
        cJSON_Delete(n);
        return ok;
}

/* Shows what the fake stored and heard and what the daemon said (cmocka's messages are short). */
static void dump(struct env *e, struct proc *daemon, const char *node) {
        cJSON *n = get_node(e, node ? node : e->node);
        cJSON *conditions = n ? cJSON_GetObjectItem(cJSON_GetObjectItem(n, "status"), "conditions") : NULL;
        char *text = conditions ? cJSON_PrintUnformatted(conditions) : NULL;
        cJSON *all = control(e, "GET", "/control/requests", NULL);
        const cJSON *r;

        fprintf(stderr, "# Node %s conditions: %s\n", node ? node : e->node, text ? text : "(no node)");
        cJSON_ArrayForEach(r, all) {
                char *body = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "body"));
                fprintf(stderr, "# request #%.0f %.3f %s %s -> %ld %.300s\n",
                        cJSON_GetNumberValue(cJSON_GetObjectItem(r, "id")),
                        cJSON_GetNumberValue(cJSON_GetObjectItem(r, "time")),
                        cJSON_GetStringValue(cJSON_GetObjectItem(r, "method")),
                        cJSON_GetStringValue(cJSON_GetObjectItem(r, "path")),
                        cJSON_IsNumber(cJSON_GetObjectItem(r, "code"))
                                ? (long) cJSON_GetNumberValue(cJSON_GetObjectItem(r, "code"))
                                : -1L,
                        body ? body : "");
                free(body);
        }
        if (daemon)
                fprintf(stderr, "# daemon stderr:\n%s\n# daemon stdout:\n%s\n", daemon->err, daemon->out);
        free(text);
        cJSON_Delete(all);
        cJSON_Delete(n);
}

static void expect_node_has(struct env *e, struct proc *daemon, const struct cond_want *w, int timeout_ms) {
        if (!wait_for(e, daemon, timeout_ms, node_has, w)) {
                dump(e, daemon, w->node);
                fail_msg("node %s: no %s %s within %d ms", w->node ? w->node : e->node, w->type,
                         w->status ? w->status : "", timeout_ms);
        }
}

/* ---- recorded requests ---- */

static cJSON *requests(struct env *e) {
        return control(e, "GET", "/control/requests", NULL);
}

static double last_request_id(struct env *e) {
        cJSON *all = requests(e);
        double id = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, all) {
                id = cJSON_GetNumberValue(cJSON_GetObjectItem(r, "id"));
        }
        cJSON_Delete(all);
        return id;
}

/* Matches when method is NULL or equal, and path is equal (or a prefix when it ends with '*'). */
static bool request_matches(const cJSON *r, double since, const char *method, const char *path) {
        const char *p = field(r, "path");
        size_t n = strlen(path);

        if (cJSON_GetNumberValue(cJSON_GetObjectItem(r, "id")) <= since)
                return false;
        if (method && strcmp(field(r, "method"), method) != 0)
                return false;
        if (n > 0 && path[n - 1] == '*')
                return strncmp(p, path, n - 1) == 0;
        return strcmp(p, path) == 0;
}

/* The matching records, oldest first, detached into a new array. */
static cJSON *select_requests(struct env *e, double since, const char *method, const char *path) {
        cJSON *all = requests(e), *out = cJSON_CreateArray();
        cJSON *r;

        cJSON_ArrayForEach(r, all) {
                if (request_matches(r, since, method, path))
                        cJSON_AddItemToArray(out, cJSON_Duplicate(r, true));
        }
        cJSON_Delete(all);
        return out;
}

static int count_requests(struct env *e, double since, const char *method, const char *path) {
        cJSON *l = select_requests(e, since, method, path);
        int n = cJSON_GetArraySize(l);
        cJSON_Delete(l);
        return n;
}

struct count_want {
        double since;
        const char *method, *path;
        int at_least;
        long code; /* 0: any */
};

static bool has_requests(struct env *e, const void *arg) {
        const struct count_want *w = arg;
        cJSON *l = select_requests(e, w->since, w->method, w->path);
        const cJSON *r;
        int n = 0;
        cJSON_ArrayForEach(r, l) {
                if (!w->code || (long) cJSON_GetNumberValue(cJSON_GetObjectItem(r, "code")) == w->code)
                        n++;
        }
        cJSON_Delete(l);
        return n >= w->at_least;
}

static void expect_requests(struct env *e, struct proc *daemon, const struct count_want *w, int timeout_ms) {
        if (!wait_for(e, daemon, timeout_ms, has_requests, w)) {
                dump(e, daemon, NULL);
                fail_msg("fewer than %d %s %s (code %ld) after #%.0f within %d ms", w->at_least,
                         w->method ? w->method : "*", w->path, w->code, w->since, timeout_ms);
        }
}

static double req_time(const cJSON *r) {
        return cJSON_GetNumberValue(cJSON_GetObjectItem(r, "time"));
}

static long req_code(const cJSON *r) {
        const cJSON *c = cJSON_GetObjectItem(r, "code");
        return cJSON_IsNumber(c) ? (long) c->valuedouble : -1;
}

/* The conditions of a recorded status PATCH's body. */
static const cJSON *patch_condition(const cJSON *r, const char *type) {
        const cJSON *c;
        cJSON_ArrayForEach(
                c, cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "body"), "status"), "conditions")) {
                if (strcmp(field(c, "type"), type) == 0)
                        return c;
        }
        return NULL;
}

/* ---- environment ---- */

/* The probe's interval and hysteresis (NULL: every 200 ms, no hysteresis) and more "kubernetes" keys. */
static void write_conf(struct env *e, const char *probe_fields, const char *kube_extra) {
        char *text = NULL;

        assert_true(asprintf(&text,
                             "{\"plugin_dirs\": [], \"journal\": {\"enabled\": false},\n"
                             " \"kubernetes\": {\"heartbeat\": \"10s\"%s},\n"
                             " \"probes\": {\"t\": {\"plugin\": \"testprobe\", %s}}}\n",
                             kube_extra ? kube_extra : "",
                             probe_fields ? probe_fields
                                          : "\"interval\": \"200ms\", \"raise_after\": 1, \"clear_after\": 1") >= 0);
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        free(text);
}

static void set_state(struct env *e, const char *state) {
        test_write_file(e->root, "testprobe/state", state);
}

static char *fake_file(struct env *e, const char *name) {
        return test_path(e->fake_dir, name);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        static unsigned counter;
        char *script = test_path(test_srcdir(), "tests/fake-apiserver/fake-apiserver.py");

        e->dir = test_mkdtemp();
        e->fake_dir = test_path(e->dir, "fake");
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->root = test_path(e->dir, "root");
        e->plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        snprintf(e->node, sizeof(e->node), "ktest-%d-%u", (int) getpid(), counter++);
        snprintf(e->status_path, sizeof(e->status_path), NODE_PATH_FMT "/status", e->node);
        snprintf(e->node_path, sizeof(e->node_path), NODE_PATH_FMT, e->node);
        assert_int_equal(mkdir(e->fake_dir, 0755), 0);
        write_conf(e, NULL, NULL);
        set_state(e, "TestProblem False TestOK fine\n");

        char *argv[] = {"/usr/bin/python3",   script, "--dir", e->fake_dir, "--node", e->node, "--kubelet-tick", "1",
                        "--exit-with-parent", NULL};
        e->fake = proc_spawn(argv);
        /* It prints its URLs on stdout once everything (certificates, kubeconfigs) is written. */
        if (!proc_wait_output(e->fake, "http://127.0.0.1:", false, DEADLINE_MS))
                fail_msg("the fake API server did not start:\n%s", e->fake->err);
        char *port = fake_file(e, "port"), *cport = fake_file(e, "control-port");
        char *p = test_read_file(port), *cp = test_read_file(cport);
        uint64_t v;
        assert_non_null(p);
        assert_non_null(cp);
        assert_int_equal(parse_uint64(strstrip(p), &v), 0);
        e->port = (int) v;
        assert_int_equal(parse_uint64(strstrip(cp), &v), 0);
        e->cport = (int) v;
        free(p);
        free(cp);
        free(port);
        free(cport);
        free(script);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        if (e->fake) {
                kill(e->fake->pid, SIGTERM);
                (void) proc_wait(e->fake, 5000);
                proc_free(e->fake);
        }
        test_rmtree(e->dir);
        free(e->dir);
        free(e->fake_dir);
        free(e->conf);
        free(e->root);
        free(e->plugin_dir);
        free(e);
        return 0;
}

/* Starts the daemon with the env's conf, root and node, plus arguments (NULL-terminated). */
static struct proc *start_daemon(struct env *e, ...) {
        char *argv[40] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--plugin-dir",
                          e->plugin_dir,
                          "--root-path",
                          e->root,
                          "--node-name",
                          e->node};
        int argc = 9;
        va_list ap;

        va_start(ap, e);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        return proc_spawn(argv);
}

static struct proc *start_with_kubeconfig(struct env *e) {
        char *kc = fake_file(e, "kubeconfig");
        struct proc *p = start_daemon(e, "--kubeconfig", kc, NULL);
        free(kc);
        return p;
}

static void stop(struct proc *p) {
        kill(p->pid, SIGTERM);
        int code = proc_wait(p, DEADLINE_MS);
        if (code != 0)
                fail_msg("the daemon exited %d after SIGTERM:\n%s", code, p->err);
}

/* Writes a kubeconfig (server, cluster fields, user fields as YAML lines) to dir/name. */
static char *write_kubeconfig(struct env *e, const char *name, const char *server, const char *cluster_fields,
                              const char *user_fields) {
        char *text = NULL, *url = NULL;

        if (!server) {
                assert_true(asprintf(&url, "https://127.0.0.1:%d", e->port) >= 0);
                server = url;
        }
        assert_true(asprintf(&text,
                             "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                             "contexts:\n- name: t\n  context: {cluster: c, user: u}\n"
                             "clusters:\n- name: c\n  cluster:\n    server: %s\n%s"
                             "users:\n- name: u\n  user:\n%s",
                             server, cluster_fields, user_fields) >= 0);
        test_write_file(e->dir, name, text);
        free(text);
        free(url);
        return test_path(e->dir, name);
}

static char *base64(const char *data) {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = strlen(data);
        char *out = malloc(n / 3 * 4 + 5), *o = out;
        const unsigned char *d = (const unsigned char *) data;

        for (size_t i = 0; i < n; i += 3) {
                uint32_t v =
                        (uint32_t) d[i] << 16 | (i + 1 < n ? (uint32_t) d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
                *o++ = tbl[v >> 18 & 63];
                *o++ = tbl[v >> 12 & 63];
                *o++ = i + 1 < n ? tbl[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? tbl[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

/* ---- tests ---- */

/*
 * Start-up: one GET, one strategic-merge PATCH with every field, the annotation, and the
 * kubelet's conditions intact.  A transition of two types in one cycle reaches the server as
 * exactly one PATCH, quickly, then Events (Warning when a problem appears, Normal when it clears).
 */
static void test_reports_and_coalesces(void **state) {
        struct env *e = *state;
        struct proc *p;

        set_state(e, "TestProblem False TestOK fine\nOtherProblem False OtherOK fine too\n");
        p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "OtherProblem", .status = "False"}, DEADLINE_MS);
        char *msg = NULL;
        assert_true(asprintf(&msg, "Reporting to the API server at https://127.0.0.1:%d as node %s", e->port,
                             e->node) >= 0);
        assert_contains(p->err, msg);
        free(msg);

        cJSON *n = get_node(e, e->node);
        const cJSON *c = find_condition(n, "TestProblem");
        assert_non_null(c);
        expect_field(c, "status", "False");
        expect_field(c, "reason", "TestOK");
        expect_field(c, "message", "fine");
        uint64_t t;
        assert_int_equal(parse_rfc3339(field(c, "lastHeartbeatTime"), &t), 0);
        assert_int_equal(parse_rfc3339(field(c, "lastTransitionTime"), &t), 0);
        /* The kubelet's conditions survive our writes. */
        static const char *const kubelet[] = {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"};
        for (size_t i = 0; i < ELEMENTSOF(kubelet); i++)
                assert_non_null(find_condition(n, kubelet[i]));
        expect_field(find_condition(n, "Ready"), "status", "True");
        assert_string_equal(annotation(n), "TestProblem,OtherProblem");
        cJSON_Delete(n);

        /* One GET at start, and only strategic merge patches of /status. */
        assert_int_equal(count_requests(e, 0, "GET", e->node_path), 1);
        assert_int_equal(count_requests(e, 0, "PATCH", e->node_path), 0);
        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        const cJSON *r;
        assert_true(cJSON_GetArraySize(patches) >= 1);
        cJSON_ArrayForEach(r, patches) {
                expect_field(r, "content_type", "application/strategic-merge-patch+json");
                const cJSON *pc = patch_condition(r, "TestProblem");
                assert_non_null(pc);
                /* Every field, so that nothing of an older write survives a merge. */
                assert_int_equal(cJSON_GetArraySize(pc), 6);
        }
        cJSON_Delete(patches);

        /* Two types change in one cycle: one PATCH, within a short time. */
        double mark = last_request_id(e);
        double t0 = real_now();
        set_state(e, "TestProblem True TestBroken disk on fire\nOtherProblem True OtherBroken also broken\n");
        expect_node_has(e, p, &(struct cond_want){.type = "OtherProblem", .status = "True"}, DEADLINE_MS);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);
        /* The Events follow the PATCH: once both are there, every PATCH of this change is too. */
        expect_requests(e, p, &(struct count_want){mark, "POST", EVENTS_PATH, 2, 201}, DEADLINE_MS);
        patches = select_requests(e, mark, "PATCH", e->status_path);
        assert_int_equal(cJSON_GetArraySize(patches), 1);
        r = cJSON_GetArrayItem(patches, 0);
        assert_int_equal(req_code(r), 200);
        expect_field(patch_condition(r, "TestProblem"), "status", "True");
        expect_field(patch_condition(r, "OtherProblem"), "status", "True");
        /* A 200 ms probe interval, a 20 ms coalescing delay: well under two seconds. */
        if (req_time(r) - t0 > 2.0)
                fail_msg("the transition reached the server %.3f s after the state changed", req_time(r) - t0);
        cJSON_Delete(patches);

        /* After a kubelet tick, both writers' conditions are there. */
        control_void(e, "POST", "/control/kubelet-tick", "{}");
        n = get_node(e, e->node);
        expect_field(find_condition(n, "TestProblem"), "status", "True");
        expect_field(find_condition(n, "TestProblem"), "reason", "TestBroken");
        expect_field(find_condition(n, "Ready"), "status", "True");
        const char *uid = field(cJSON_GetObjectItem(n, "metadata"), "uid");

        /* The Warning Event of the problem, on the Node, from nodehealthd. */
        cJSON *events = control(e, "GET", "/control/events", NULL);
        const cJSON *ev, *found = NULL;
        cJSON_ArrayForEach(ev, events) {
                if (strcmp(field(ev, "reason"), "TestBroken") == 0)
                        found = ev;
        }
        assert_non_null(found);
        expect_field(found, "type", "Warning");
        expect_field(found, "message", "disk on fire");
        expect_field(cJSON_GetObjectItem(found, "metadata"), "namespace", "default");
        expect_field(cJSON_GetObjectItem(found, "involvedObject"), "kind", "Node");
        expect_field(cJSON_GetObjectItem(found, "involvedObject"), "name", e->node);
        expect_field(cJSON_GetObjectItem(found, "involvedObject"), "uid", uid);
        expect_field(cJSON_GetObjectItem(found, "source"), "component", "nodehealthd");
        expect_field(cJSON_GetObjectItem(found, "source"), "host", e->node);
        assert_int_equal((int) cJSON_GetNumberValue(cJSON_GetObjectItem(found, "count")), 1);
        assert_int_equal(parse_rfc3339(field(found, "firstTimestamp"), &t), 0);
        cJSON_Delete(events);
        cJSON_Delete(n);

        /* The problem clears: a Normal Event. */
        mark = last_request_id(e);
        set_state(e, "TestProblem False TestOK fine again\nOtherProblem True OtherBroken also broken\n");
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        expect_requests(e, p, &(struct count_want){mark, "POST", EVENTS_PATH, 1, 201}, DEADLINE_MS);
        events = select_requests(e, mark, "POST", EVENTS_PATH);
        const cJSON *body = cJSON_GetObjectItem(cJSON_GetArrayItem(events, 0), "body");
        expect_field(body, "type", "Normal");
        expect_field(body, "reason", "TestOK");
        cJSON_Delete(events);
        stop(p);
        proc_free(p);
}

struct time_want {
        double at; /* realtime seconds */
};

static bool time_reached(struct env *e, const void *arg) {
        const struct time_want *w = arg;
        return real_now() >= w->at;
}

/* The heartbeat refreshes lastHeartbeatTime, keeps lastTransitionTime and repairs a deletion; no GET. */
static void test_heartbeat_repairs(void **state) {
        struct env *e = *state;
        struct proc *p = start_with_kubeconfig(e);

        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        double first = req_time(cJSON_GetArrayItem(patches, 0));
        cJSON_Delete(patches);
        cJSON *n = get_node(e, e->node);
        char *transition = strdup(field(find_condition(n, "TestProblem"), "lastTransitionTime"));
        char *heartbeat = strdup(field(find_condition(n, "TestProblem"), "lastHeartbeatTime"));
        double mark = last_request_id(e);

        /* Someone removes our condition (a kubectl edit, a controller). */
        cJSON *conditions = cJSON_GetObjectItem(cJSON_GetObjectItem(n, "status"), "conditions");
        for (int i = cJSON_GetArraySize(conditions) - 1; i >= 0; i--)
                if (strcmp(field(cJSON_GetArrayItem(conditions, i), "type"), "TestProblem") == 0)
                        cJSON_DeleteItemFromArray(conditions, i);
        char *text = cJSON_PrintUnformatted(n), *path = NULL;
        assert_true(asprintf(&path, "/control/nodes/%s", e->node) >= 0);
        control_void(e, "PUT", path, text);
        free(text);
        free(path);
        cJSON_Delete(n);
        assert_false(node_has(e, &(struct cond_want){.type = "TestProblem"}));

        /* The heartbeat (10 s ± 10%) puts it back, with the same transition time. */
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, 15000);
        patches = select_requests(e, mark, "PATCH", e->status_path);
        assert_int_equal(cJSON_GetArraySize(patches), 1);
        double elapsed = req_time(cJSON_GetArrayItem(patches, 0)) - first;
        if (elapsed < 8.9 || elapsed > 11.5)
                fail_msg("the heartbeat came %.3f s after the first PATCH, not 10 s ± 10%%", elapsed);
        cJSON_Delete(patches);
        n = get_node(e, e->node);
        const cJSON *c = find_condition(n, "TestProblem");
        expect_field(c, "lastTransitionTime", transition);
        if (strcmp(field(c, "lastHeartbeatTime"), heartbeat) <= 0)
                fail_msg("lastHeartbeatTime %s is not after %s", field(c, "lastHeartbeatTime"), heartbeat);
        cJSON_Delete(n);
        /* No polling: the only GET was the one at start. */
        assert_int_equal(count_requests(e, 0, "GET", "*"), 1);
        stop(p);
        proc_free(p);
        free(transition);
        free(heartbeat);
}

/*
 * A restart keeps lastTransitionTime and never says anything but True about a problem that
 * persists, even with raise_after 2 (the first cycle after the restart cannot confirm it).
 */
static void test_restart_keeps_transition_time(void **state) {
        struct env *e = *state;
        struct proc *p;

        write_conf(e, "\"raise_after\": 2, \"clear_after\": 2, \"interval\": \"300ms\"", NULL);
        set_state(e, "TestProblem True TestBroken still broken\n");
        p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);
        cJSON *n = get_node(e, e->node);
        char *transition = strdup(field(find_condition(n, "TestProblem"), "lastTransitionTime"));
        cJSON_Delete(n);
        stop(p);
        proc_free(p);

        /* Two seconds later a new transition time would differ from the old one. */
        uint64_t t1;
        assert_int_equal(parse_rfc3339(transition, &t1), 0);
        struct time_want w = {(double) t1 / 1e6 + 2.0};
        assert_true(wait_for(e, NULL, 5000, time_reached, &w));

        double mark = last_request_id(e);
        p = start_with_kubeconfig(e);
        /* The daemon's own output shows the restart's Unknown -> True; the Node must not. */
        expect_daemon_says(e, p, "Unknown -> True  TestBroken", DEADLINE_MS);
        struct count_want patched = {mark, "PATCH", e->status_path, 1, 200};
        expect_requests(e, p, &patched, DEADLINE_MS);
        let_run(e, p, 1500); /* room for a wrong PATCH or Event to show up */
        n = get_node(e, e->node);
        expect_field(find_condition(n, "TestProblem"), "status", "True");
        expect_field(find_condition(n, "TestProblem"), "lastTransitionTime", transition);
        cJSON_Delete(n);
        cJSON *patches = select_requests(e, mark, "PATCH", e->status_path);
        const cJSON *r;
        bool sent_true = false;
        cJSON_ArrayForEach(r, patches) {
                const cJSON *c = patch_condition(r, "TestProblem");
                if (!c)
                        continue;
                if (strcmp(field(c, "status"), "True") != 0)
                        fail_msg("after the restart a PATCH said TestProblem is %s", field(c, "status"));
                expect_field(c, "lastTransitionTime", transition);
                sent_true = true;
        }
        assert_true(sent_true);
        cJSON_Delete(patches);
        /* Not news either: no Event for a problem the Node already showed. */
        assert_int_equal(count_requests(e, mark, "POST", EVENTS_PATH), 0);
        stop(p);
        proc_free(p);
        free(transition);
}

/* Types owned before and reported no more are deleted; foreign and kubelet types are not. */
static void test_orphans_deleted(void **state) {
        struct env *e = *state;
        char *path = NULL;
        cJSON *n = get_node(e, e->node);
        cJSON *annotations = cJSON_GetObjectItem(cJSON_GetObjectItem(n, "metadata"), "annotations");
        cJSON *conditions = cJSON_GetObjectItem(cJSON_GetObjectItem(n, "status"), "conditions");

        cJSON_AddStringToObject(annotations, NH_KUBE_OWNED_ANNOTATION, "OldProblem,TestProblem,MemoryPressure");
        cJSON_AddItemToArray(conditions,
                             cJSON_Parse("{\"type\":\"OldProblem\",\"status\":\"True\",\"reason\":\"Old\","
                                         "\"message\":\"from an older configuration\",\"lastHeartbeatTime\":"
                                         "\"2026-01-01T00:00:00Z\",\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}"));
        cJSON_AddItemToArray(conditions,
                             cJSON_Parse("{\"type\":\"KernelDeadlock\",\"status\":\"False\",\"reason\":\"KernelHasNo"
                                         "Deadlock\",\"message\":\"node-problem-detector's\",\"lastHeartbeatTime\":"
                                         "\"2026-01-01T00:00:00Z\",\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}"));
        char *text = cJSON_PrintUnformatted(n);
        assert_true(asprintf(&path, "/control/nodes/%s", e->node) >= 0);
        control_void(e, "PUT", path, text);
        free(text);
        free(path);
        cJSON_Delete(n);

        struct proc *p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        n = get_node(e, e->node);
        assert_null(find_condition(n, "OldProblem"));
        assert_non_null(find_condition(n, "KernelDeadlock"));
        assert_non_null(find_condition(n, "MemoryPressure"));
        assert_string_equal(annotation(n), "TestProblem,OtherProblem");
        cJSON_Delete(n);

        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        const cJSON *first = cJSON_GetArrayItem(patches, 0), *c;
        int deletes = 0;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(first, "body"), "status"),
                                                  "conditions")) {
                if (strcmp(field(c, "$patch"), "delete") == 0) {
                        expect_field(c, "type", "OldProblem");
                        deletes++;
                }
        }
        assert_int_equal(deletes, 1);
        cJSON_Delete(patches);

        /* Once written, the annotation says what we own: the next start deletes nothing. */
        stop(p);
        proc_free(p);
        double mark = last_request_id(e);
        p = start_with_kubeconfig(e);
        expect_requests(e, p, &(struct count_want){mark, "PATCH", e->status_path, 1, 200}, DEADLINE_MS);
        patches = select_requests(e, mark, "PATCH", e->status_path);
        text = cJSON_PrintUnformatted(cJSON_GetArrayItem(patches, 0));
        assert_null(strstr(text, "$patch"));
        free(text);
        cJSON_Delete(patches);
        stop(p);
        proc_free(p);
}

static bool node_lacks(struct env *e, const void *arg) {
        cJSON *n = get_node(e, e->node);
        bool gone = n && !find_condition(n, arg);

        cJSON_Delete(n);
        return gone;
}

/* A probe a reload removes takes its conditions off the Node (and leaves the kubelet's alone). */
static void test_reload_removes_conditions(void **state) {
        struct env *e = *state;
        struct proc *p;
        cJSON *n;

        set_state(e, "TestProblem True TestBroken now\nOtherProblem False OtherOK ok\n");
        p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);

        test_write_file(e->dir, "conf/nodehealthd.json",
                        "{\"plugin_dirs\": [], \"journal\": {\"enabled\": false},\n"
                        " \"kubernetes\": {\"heartbeat\": \"10s\"},\n"
                        " \"probes\": {\"t\": {\"plugin\": \"testprobe\", \"enabled\": false}}}\n");
        assert_int_equal(kill(p->pid, SIGHUP), 0);
        if (!wait_for(e, p, DEADLINE_MS, node_lacks, "TestProblem")) {
                dump(e, p, e->node);
                fail_msg("TestProblem is still on the Node after the reload");
        }
        n = get_node(e, e->node);
        assert_null(find_condition(n, "OtherProblem"));
        assert_non_null(find_condition(n, "MemoryPressure"));
        assert_string_equal(annotation(n), "");
        cJSON_Delete(n);
        expect_daemon_says(e, p, "0 probes (0 unchanged, 0 started, 1 stopped)", DEADLINE_MS);
        stop(p);
        proc_free(p);
}

/* 429: the next try waits at least Retry-After. */
static void test_429_waits_retry_after(void **state) {
        struct env *e = *state;
        char *fault = NULL;

        assert_true(asprintf(&fault, "{\"method\": \"PATCH\", \"path\": \"/status$\", \"code\": 429, \"retry_after\": "
                                     "2}") >= 0);
        add_fault(e, fault);
        free(fault);
        struct proc *p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        assert_int_equal(cJSON_GetArraySize(patches), 2);
        assert_int_equal(req_code(cJSON_GetArrayItem(patches, 0)), 429);
        assert_int_equal(req_code(cJSON_GetArrayItem(patches, 1)), 200);
        double gap = req_time(cJSON_GetArrayItem(patches, 1)) - req_time(cJSON_GetArrayItem(patches, 0));
        if (gap < 2.0)
                fail_msg("retried %.3f s after a 429 with Retry-After: 2", gap);
        cJSON_Delete(patches);
        assert_contains(p->err, "429");
        stop(p);
        proc_free(p);
}

/* 5xx: exponential backoff (each wait between half and all of 1 s, 2 s, 4 s). */
static void test_5xx_backs_off(void **state) {
        struct env *e = *state;

        add_fault(e, "{\"method\": \"PATCH\", \"path\": \"/status$\", \"code\": 503, \"times\": 3}");
        struct proc *p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        assert_int_equal(cJSON_GetArraySize(patches), 4);
        double t[4];
        for (int i = 0; i < 4; i++) {
                t[i] = req_time(cJSON_GetArrayItem(patches, i));
                assert_int_equal(req_code(cJSON_GetArrayItem(patches, i)), i < 3 ? 503 : 200);
        }
        double g1 = t[1] - t[0], g2 = t[2] - t[1], g3 = t[3] - t[2];
        if (g1 < 0.45 || g1 > 1.5 || g2 < 0.95 || g2 > 2.5 || g3 < 1.95 || g3 > 4.5)
                fail_msg("retries after %.3f, %.3f, %.3f s: not 0.5-1, 1-2, 2-4 s", g1, g2, g3);
        cJSON_Delete(patches);
        assert_contains(p->err, "HTTP 503 Service Unavailable");
        expect_daemon_says(e, p, "again (failing since", DEADLINE_MS);
        stop(p);
        proc_free(p);
}

struct says_want {
        struct proc *p;
        const char *needle;
        size_t from;
};

static bool stdout_says_since(struct env *e, const void *arg) {
        const struct says_want *w = arg;
        drain_fd(&w->p->out_fd, &w->p->out, &w->p->out_len);
        return strstr(w->p->out + w->from, w->needle) != NULL;
}

/*
 * The API server away: the state changes three times meanwhile; once it is back the latest
 * state goes out in one PATCH, not the history, and the outage cost a handful of tries.
 */
static void test_outage_sends_latest_state_once(void **state) {
        struct env *e = *state;
        struct proc *p = start_with_kubeconfig(e);

        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        add_fault(e, "{\"path\": \"^/api/\", \"code\": 503, \"times\": -1}");
        double mark = last_request_id(e);

        static const char *const states[] = {"TestProblem True TestBroken first\n",
                                             "TestProblem False TestOK between\n",
                                             "TestProblem True TestBroken latest\n"};
        static const char *const seen[] = {"False -> True", "True -> False", "False -> True"};
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                struct says_want w = {p, seen[i], p->out_len};
                set_state(e, states[i]);
                if (!wait_for(e, p, DEADLINE_MS, stdout_says_since, &w))
                        fail_msg("the daemon did not see \"%s\":\n%s", seen[i], p->out);
        }
        control_void(e, "DELETE", "/control/faults", NULL);
        double cleared = last_request_id(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True", .message = "latest"}, 15000);
        let_run(e, p, 1000); /* room for a second PATCH, which must not come */
        assert_int_equal(count_requests(e, cleared, "PATCH", e->status_path), 1);
        /* Backoff, not one try per transition: a few attempts in the few seconds of the outage. */
        cJSON *tries = select_requests(e, mark, "PATCH", e->status_path);
        int failed = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, tries) {
                failed += req_code(r) == 503;
        }
        if (failed < 1 || failed > 5)
                fail_msg("%d failed PATCHes during the outage", failed);
        cJSON_Delete(tries);
        stop(p);
        proc_free(p);
}

/* 401 after the token was rotated: the file is read again and the request retried at once. */
static void test_401_rereads_token(void **state) {
        struct env *e = *state;
        struct proc *p = start_with_kubeconfig(e);

        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        double mark = last_request_id(e);
        /* The kubelet rotates the token: the old one is refused from now on, the file has the new one. */
        char *tok_path = fake_file(e, "token"), *rotate = NULL;
        char *tok = test_read_file(tok_path);
        assert_non_null(tok);
        strstrip(tok);
        assert_true(asprintf(&rotate, "{\"old\": \"%s\", \"new\": \"tok-rotated-1\"}", tok) >= 0);
        cJSON *rotated = control(e, "POST", "/control/rotate-token", rotate);
        double new_serial = cJSON_GetNumberValue(cJSON_GetObjectItem(rotated, "serial"));
        cJSON_Delete(rotated);
        free(rotate);
        set_state(e, "TestProblem True TestBroken after rotation\n");
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);
        cJSON *patches = select_requests(e, mark, "PATCH", e->status_path);
        if (cJSON_GetArraySize(patches) != 2)
                dump(e, p, NULL);
        assert_int_equal(cJSON_GetArraySize(patches), 2);
        const cJSON *a = cJSON_GetArrayItem(patches, 0), *b = cJSON_GetArrayItem(patches, 1);
        assert_int_equal(req_code(a), 401);
        assert_int_equal(req_code(b), 200);
        /* The retry carried the new token, read from the file. */
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "token_serial")) == new_serial);
        if (req_time(b) - req_time(a) > 0.5)
                fail_msg("the retry after the 401 came %.3f s later: it should be at once", req_time(b) - req_time(a));
        cJSON_Delete(patches);

        /* Rotated, but the file not (yet) rewritten: one retry, then backoff, and it says so. */
        mark = last_request_id(e);
        control_void(e, "POST", "/control/rotate-token",
                     "{\"old\": \"tok-rotated-1\", \"new\": \"tok-manual-2\", \"write_files\": false}");
        set_state(e, "TestProblem False TestOK file not rewritten\n");
        expect_daemon_says(e, p, "refuses our credentials", DEADLINE_MS);
        assert_contains(p->err, "also after re-reading the token file");
        patches = select_requests(e, mark, "PATCH", e->status_path);
        assert_true(cJSON_GetArraySize(patches) >= 2);
        assert_int_equal(req_code(cJSON_GetArrayItem(patches, 0)), 401);
        assert_int_equal(req_code(cJSON_GetArrayItem(patches, 1)), 401);
        cJSON_Delete(patches);
        let_run(e, p, 400);
        patches = select_requests(e, mark, "PATCH", e->status_path);
        if (cJSON_GetArraySize(patches) > 2) {
                double gap = req_time(cJSON_GetArrayItem(patches, 2)) - req_time(cJSON_GetArrayItem(patches, 1));
                if (gap < 0.45)
                        fail_msg("tried again %.3f s after the second 401: no backoff", gap);
        }
        cJSON_Delete(patches);
        /* No token ever reaches a log line. */
        assert_null(strstr(p->err, tok));
        assert_null(strstr(p->err, "tok-rotated-1"));
        assert_null(strstr(p->err, "tok-manual-2"));
        free(tok);

        /* The kubelet's rotation lands: the next try reads it and succeeds. */
        test_write_file(e->fake_dir, "token", "tok-manual-2\n");
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        free(tok_path);
        stop(p);
        proc_free(p);
}

/* 403: the missing RBAC rule, plainly. */
static void test_403_names_rbac_rule(void **state) {
        struct env *e = *state;
        char *ca = fake_file(e, "ca.crt"), *url = NULL;

        control_void(e, "POST", "/control/tokens", "{\"token\": \"norbac-token\", \"rbac\": false}");
        test_write_file(e->dir, "norbac", "norbac-token\n");
        char *tok = test_path(e->dir, "norbac");
        assert_true(asprintf(&url, "https://127.0.0.1:%d", e->port) >= 0);
        struct proc *p = start_daemon(e, "--apiserver", url, "--token-file", tok, "--ca-file", ca, NULL);
        expect_daemon_says(e, p, "RBAC rule: apiGroups [\"\"], verbs [get] on resource \"nodes\"", DEADLINE_MS);
        assert_contains(p->err, "forbids us to read node");
        assert_contains(p->err, "cannot get resource");
        stop(p);
        proc_free(p);

        add_fault(e, "{\"method\": \"PATCH\", \"path\": \"/status$\", \"code\": 403, \"times\": -1}");
        p = start_with_kubeconfig(e);
        expect_daemon_says(e, p, "RBAC rule: apiGroups [\"\"], verbs [patch] on resource \"nodes/status\"",
                           DEADLINE_MS);
        stop(p);
        proc_free(p);

        control_void(e, "DELETE", "/control/faults", NULL);
        add_fault(e, "{\"method\": \"POST\", \"path\": \"/events$\", \"code\": 403, \"times\": -1}");
        p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        set_state(e, "TestProblem True TestBroken needs an event\n");
        expect_daemon_says(e, p, "RBAC rule: apiGroups [\"\"], verbs [create] on resource \"events\"", DEADLINE_MS);
        /* The Node's status does not wait for the Events' backoff. */
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);
        stop(p);
        proc_free(p);
        free(tok);
        free(url);
        free(ca);
}

/* Dropped connections are retried (backoff) and the state gets through. */
static void test_dropped_connection(void **state) {
        struct env *e = *state;

        add_fault(e, "{\"method\": \"PATCH\", \"path\": \"/status$\", \"drop\": true, \"times\": 2}");
        struct proc *p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        cJSON *patches = select_requests(e, 0, "PATCH", e->status_path);
        assert_int_equal(cJSON_GetArraySize(patches), 3);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(patches, 0), "dropped")));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(patches, 1), "dropped")));
        assert_int_equal(req_code(cJSON_GetArrayItem(patches, 2)), 200);
        cJSON_Delete(patches);
        stop(p);
        proc_free(p);
}

/* A server certificate from another CA, or for another name, is refused, and the daemon says why. */
static void test_tls_wrong_ca_refused(void **state) {
        struct env *e = *state;
        char *wrong = fake_file(e, "wrong-ca.crt"), *ca = fake_file(e, "ca.crt"), *tok = fake_file(e, "token");
        char *fields = NULL, *user = NULL;

        assert_true(asprintf(&fields, "    certificate-authority: %s\n", wrong) >= 0);
        assert_true(asprintf(&user, "    tokenFile: %s\n", tok) >= 0);
        char *kc = write_kubeconfig(e, "wrong-ca.yaml", NULL, fields, user);
        struct proc *p = start_daemon(e, "--kubeconfig", kc, NULL);
        expect_daemon_says(e, p, "over TLS", DEADLINE_MS);
        assert_contains(p->err, "certificate");
        /* Nothing got through: no request was ever answered, and the handshakes failed. */
        assert_int_equal(count_requests(e, 0, NULL, "*"), 0);
        cJSON *conns = control(e, "GET", "/control/connections", NULL);
        assert_true(cJSON_GetArraySize(conns) >= 1);
        cJSON_Delete(conns);
        stop(p);
        proc_free(p);
        free(kc);
        free(fields);

        /* The right CA but a tls-server-name the certificate does not carry. */
        assert_true(asprintf(&fields, "    certificate-authority: %s\n    tls-server-name: wrong.example\n", ca) >= 0);
        kc = write_kubeconfig(e, "wrong-name.yaml", NULL, fields, user);
        p = start_daemon(e, "--kubeconfig", kc, NULL);
        expect_daemon_says(e, p, "over TLS", DEADLINE_MS);
        assert_contains(p->err, "wrong.example");
        assert_int_equal(count_requests(e, 0, NULL, "*"), 0);
        stop(p);
        proc_free(p);
        free(kc);
        free(fields);
        free(user);
        free(wrong);
        free(ca);
        free(tok);
}

/* Runs the daemon with the arguments until its start PATCH lands; checks how it authenticated. */
static void expect_variant_works(struct env *e, const char *authenticated_by, const char *says, ...) {
        char *argv[40] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--plugin-dir",
                          e->plugin_dir,
                          "--root-path",
                          e->root,
                          "--node-name",
                          e->node};
        int argc = 9;
        va_list ap;
        double mark = last_request_id(e);

        va_start(ap, says);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        struct proc *p = proc_spawn(argv);
        expect_requests(e, p, &(struct count_want){mark, "PATCH", e->status_path, 1, 200}, DEADLINE_MS);
        cJSON *patches = select_requests(e, mark, "PATCH", e->status_path);
        expect_field(cJSON_GetArrayItem(patches, 0), "authenticated_by", authenticated_by);
        cJSON_Delete(patches);
        if (says)
                assert_contains(p->err, says);
        stop(p);
        proc_free(p);
}

/* Every way to give credentials: kubeconfig files and data fields, tokens, lists, the pod, flags. */
static void test_credential_variants(void **state) {
        struct env *e = *state;
        char *ca = fake_file(e, "ca.crt"), *tok = fake_file(e, "token"), *url = NULL;
        char *ca_pem = test_read_file(ca), *cert_path = fake_file(e, "client.crt"),
             *key_path = fake_file(e, "client.key");
        char *cert_pem = test_read_file(cert_path), *key_pem = test_read_file(key_path), *token = test_read_file(tok);
        char *fields = NULL, *user = NULL, *kc;

        assert_non_null(ca_pem);
        assert_non_null(cert_pem);
        assert_non_null(key_pem);
        assert_non_null(token);
        strstrip(token);
        assert_true(asprintf(&url, "https://127.0.0.1:%d", e->port) >= 0);

        /* The fake's own kubeconfigs: tokenFile and client certificate files, paths relative to it. */
        kc = fake_file(e, "kubeconfig");
        expect_variant_works(e, "bearer", "(context fake)", "--kubeconfig", kc, NULL);
        free(kc);
        kc = fake_file(e, "kubeconfig-cert");
        expect_variant_works(e, "client-cert", NULL, "--kubeconfig", kc, NULL);
        free(kc);

        /* Everything inline, base64. */
        char *b_ca = base64(ca_pem), *b_cert = base64(cert_pem), *b_key = base64(key_pem);
        assert_true(asprintf(&fields, "    certificate-authority-data: %s\n", b_ca) >= 0);
        assert_true(asprintf(&user, "    client-certificate-data: %s\n    client-key-data: %s\n", b_cert, b_key) >= 0);
        kc = write_kubeconfig(e, "data.yaml", NULL, fields, user);
        expect_variant_works(e, "client-cert", NULL, "--kubeconfig", kc, NULL);
        free(kc);
        free(user);

        /* A static token. */
        assert_true(asprintf(&user, "    token: %s\n", token) >= 0);
        kc = write_kubeconfig(e, "token.yaml", NULL, fields, user);
        expect_variant_works(e, "bearer", NULL, "--kubeconfig", kc, NULL);
        free(kc);
        free(user);
        free(fields);

        /* tls-server-name: the certificate names kubernetes.default.svc, not 127.0.0.1's... name. */
        assert_true(asprintf(&fields, "    certificate-authority: %s\n    tls-server-name: kubernetes.default.svc\n",
                             ca) >= 0);
        assert_true(asprintf(&user, "    tokenFile: %s\n", tok) >= 0);
        kc = write_kubeconfig(e, "sni.yaml", NULL, fields, user);
        expect_variant_works(e, "bearer", NULL, "--kubeconfig", kc, NULL);
        free(kc);
        free(fields);

        /* $KUBECONFIG, a list whose first file does not exist. */
        char *list = NULL;
        assert_true(asprintf(&list, "%s/nonexistent.yaml:%s/kubeconfig", e->dir, e->fake_dir) >= 0);
        setenv("KUBECONFIG", list, 1);
        expect_variant_works(e, "bearer", "(context fake)", NULL);
        unsetenv("KUBECONFIG");
        free(list);

        /* In a pod: the service account directory (overridden for the test) and the service's address. */
        char *sa = fake_file(e, "serviceaccount"), *port = NULL;
        assert_true(asprintf(&port, "%d", e->port) >= 0);
        setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", port, 1);
        setenv("NODEHEALTHD_SERVICEACCOUNT_DIR", sa, 1);
        expect_variant_works(e, "bearer", "in-cluster service account", NULL);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        unsetenv("NODEHEALTHD_SERVICEACCOUNT_DIR");
        free(sa);
        free(port);

        /* Flags. */
        expect_variant_works(e, "bearer", "(credentials: --apiserver)", "--apiserver", url, "--token-file", tok,
                             "--ca-file", ca, NULL);

        /* insecure-skip-tls-verify works, and says loudly what it costs. */
        kc = write_kubeconfig(e, "insecure.yaml", NULL, "    insecure-skip-tls-verify: true\n", user);
        expect_variant_works(e, "bearer", "INSECURE", "--kubeconfig", kc, NULL);
        free(kc);
        free(user);

        free(b_ca);
        free(b_cert);
        free(b_key);
        free(ca_pem);
        free(cert_pem);
        free(key_pem);
        free(token);
        free(cert_path);
        free(key_path);
        free(url);
        free(ca);
        free(tok);
}

/* No credentials: standalone, said at start; --standalone and --once never talk to the server. */
static void test_standalone(void **state) {
        struct env *e = *state;
        char *kc = fake_file(e, "kubeconfig");
        int code;

        struct proc *p = start_daemon(e, NULL);
        expect_daemon_says(e, p,
                           "Standalone: no Kubernetes credentials (no --kubeconfig, $KUBECONFIG, --apiserver or "
                           "in-cluster environment)",
                           DEADLINE_MS);
        expect_daemon_says(e, p, "TestProblem", DEADLINE_MS); /* the start table: it runs */
        stop(p);
        proc_free(p);

        p = start_daemon(e, "--standalone", "--kubeconfig", kc, NULL);
        expect_daemon_says(e, p, "Standalone (--standalone)", DEADLINE_MS);
        expect_daemon_says(e, p, "TestProblem", DEADLINE_MS);
        let_run(e, p, 1200); /* longer than the start-up spread of a 10 s heartbeat */
        stop(p);
        proc_free(p);

        char *argv[] = {(char *) test_daemon_path(),
                        "--config",
                        e->conf,
                        "--plugin-dir",
                        e->plugin_dir,
                        "--root-path",
                        e->root,
                        "--node-name",
                        e->node,
                        "--kubeconfig",
                        kc,
                        "--once",
                        NULL};
        p = proc_run(argv, DEADLINE_MS, &code);
        assert_int_equal(code, 0);
        assert_contains(p->out, "TestProblem");
        proc_free(p);
        assert_int_equal(count_requests(e, 0, NULL, "*"), 0);

        /* A kubeconfig the daemon cannot use is a configuration error (78), with its position. */
        char *bad = write_kubeconfig(e, "exec.yaml", NULL, "", "    exec: {command: aws}\n");
        argv[10] = bad;
        argv[11] = "--check-config";
        p = proc_run(argv, DEADLINE_MS, &code);
        assert_int_equal(code, 78);
        assert_contains(p->err, "exec.yaml:14:11: user \"u\": exec credential plugins are not supported");
        proc_free(p);
        argv[11] = NULL;
        p = start_daemon(e, "--kubeconfig", bad, NULL);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 78);
        proc_free(p);
        free(bad);
        free(kc);
}

/* A Node that does not exist (yet): said plainly, retried with backoff, local reporting goes on. */
static void test_node_not_found(void **state) {
        struct env *e = *state;
        char *name = NULL, *path = NULL, *body = NULL, *kc = fake_file(e, "kubeconfig");

        assert_true(asprintf(&name, "%s-late", e->node) >= 0);
        assert_true(asprintf(&path, NODE_PATH_FMT, name) >= 0);
        struct proc *p = start_daemon(e, "--kubeconfig", kc, "--node-name", name, NULL);
        expect_daemon_says(e, p, "does not exist on the API server", DEADLINE_MS);
        assert_contains(p->err, "(404)");
        expect_daemon_says(e, p, "TestProblem", DEADLINE_MS); /* stdout goes on */
        expect_requests(e, p, &(struct count_want){0, "GET", path, 2, 404}, DEADLINE_MS);
        cJSON *gets = select_requests(e, 0, "GET", path);
        double gap = req_time(cJSON_GetArrayItem(gets, 1)) - req_time(cJSON_GetArrayItem(gets, 0));
        if (gap < 0.45)
                fail_msg("asked again %.3f s after a 404: no backoff", gap);
        cJSON_Delete(gets);

        /* The kubelet registers the node: the daemon finds it and reports. */
        assert_true(asprintf(&body, "{\"name\": \"%s\", \"kubelet\": true}", name) >= 0);
        control_void(e, "POST", "/control/nodes", body);
        expect_node_has(e, p, &(struct cond_want){.node = name, .type = "TestProblem", .status = "False"}, DEADLINE_MS);
        stop(p);
        proc_free(p);
        free(name);
        free(path);
        free(body);
        free(kc);
}

static int stored_event_count(struct env *e, const char *reason, int *ret_n_events) {
        cJSON *events = control(e, "GET", "/control/events", NULL);
        const cJSON *ev;
        int total = 0, n = 0;
        cJSON_ArrayForEach(ev, events) {
                if (strcmp(field(ev, "reason"), reason) == 0) {
                        total += (int) cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "count"));
                        n++;
                }
        }
        cJSON_Delete(events);
        if (ret_n_events)
                *ret_n_events = n;
        return total;
}

struct events_want {
        const char *reason;
        int count;
};

static bool events_counted(struct env *e, const void *arg) {
        const struct events_want *w = arg;
        return stored_event_count(e, w->reason, NULL) >= w->count;
}

/* A repeated Event raises its count with a PATCH; an expired one is posted anew. */
static void test_event_repeats(void **state) {
        struct env *e = *state;

        write_conf(e, "\"interval\": \"300ms\", \"raise_after\": 1, \"clear_after\": 1", NULL);
        set_state(e, "TestProblem False TestOK fine\nevent OOMKilling Killed process 4242 (stress)\n");
        struct proc *p = start_with_kubeconfig(e);
        expect_requests(e, p, &(struct count_want){0, "PATCH", EVENTS_PATH "/*", 2, 200}, DEADLINE_MS);
        assert_int_equal(count_requests(e, 0, "POST", EVENTS_PATH), 1);
        cJSON *patches = select_requests(e, 0, "PATCH", EVENTS_PATH "/*");
        const cJSON *second = cJSON_GetArrayItem(patches, 1);
        expect_field(second, "content_type", "application/strategic-merge-patch+json");
        int sent_count = (int) cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(second, "body"), "count"));
        cJSON *events = control(e, "GET", "/control/events", NULL);
        assert_int_equal(cJSON_GetArraySize(events), 1);
        const cJSON *ev = cJSON_GetArrayItem(events, 0);
        /* The count only grows, one PATCH at a time. */
        assert_true(sent_count >= 3);
        assert_true((int) cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "count")) >= sent_count);
        cJSON_Delete(patches);
        expect_field(ev, "message", "Killed process 4242 (stress)");
        expect_field(ev, "type", "Warning");
        assert_true(strcmp(field(ev, "firstTimestamp"), field(ev, "lastTimestamp")) <= 0);
        cJSON_Delete(events);

        /* Events expire on a real server (1 h): the next PATCH finds none and posts it anew. */
        double mark = last_request_id(e);
        control_void(e, "DELETE", "/control/events", NULL);
        expect_requests(e, p, &(struct count_want){mark, "POST", EVENTS_PATH, 1, 201}, DEADLINE_MS);
        cJSON *after = select_requests(e, mark, NULL, EVENTS_PATH "*");
        const cJSON *r;
        bool saw_404 = false, posted_after = false;
        cJSON_ArrayForEach(r, after) {
                if (strcmp(field(r, "method"), "PATCH") == 0 && req_code(r) == 404)
                        saw_404 = true;
                else if (saw_404 && strcmp(field(r, "method"), "POST") == 0 && req_code(r) == 201)
                        posted_after = true;
        }
        assert_true(saw_404);
        assert_true(posted_after);
        cJSON_Delete(after);
        stop(p);
        proc_free(p);
}

/*
 * The rate limit (burst 25, as client-go) and folding (the 11th different message of one
 * reason joins a combined series): 12 different events a cycle.
 */
static void test_event_rate_limit_and_folding(void **state) {
        struct env *e = *state;
        char state_text[1024] = "TestProblem False TestOK fine\n";

        write_conf(e, "\"interval\": \"100ms\", \"raise_after\": 1, \"clear_after\": 1", NULL);
        for (int i = 1; i <= 12; i++) {
                char line[64];
                snprintf(line, sizeof(line), "event Flap message %d\n", i);
                strncat(state_text, line, sizeof(state_text) - strlen(state_text) - 1);
        }
        set_state(e, state_text);
        struct proc *p = start_with_kubeconfig(e);
        expect_daemon_says(e, p, "over the rate limit", DEADLINE_MS);
        if (!wait_for(e, p, DEADLINE_MS, events_counted, &(struct events_want){"Flap", 25}))
                fail_msg("the Flap events did not add up to 25: %d\n%s", stored_event_count(e, "Flap", NULL), p->err);
        double settled = last_request_id(e);
        let_run(e, p, 1000); /* the probe goes on every 100 ms: nothing more may be posted */
        int n_events = 0;
        assert_int_equal(stored_event_count(e, "Flap", &n_events), 25);
        assert_int_equal(count_requests(e, settled, NULL, EVENTS_PATH "*"), 0);
        /* Ten separate Events, then one combined series. */
        assert_int_equal(n_events, 11);
        cJSON *events = control(e, "GET", "/control/events", NULL);
        const cJSON *ev;
        int combined = 0;
        cJSON_ArrayForEach(ev, events) {
                if (strncmp(field(ev, "message"), "(combined from similar events): ", 32) == 0)
                        combined++;
        }
        assert_int_equal(combined, 1);
        cJSON_Delete(events);
        stop(p);
        proc_free(p);
}

/* "kubernetes": {"events": false}: conditions are reported, Events are not. */
static void test_events_disabled(void **state) {
        struct env *e = *state;

        write_conf(e, NULL, ", \"events\": false");
        set_state(e, "TestProblem False TestOK fine\nevent OOMKilling Killed process 4242 (stress)\n");
        struct proc *p = start_with_kubeconfig(e);
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "False"}, DEADLINE_MS);
        set_state(e, "TestProblem True TestBroken no event for this\nevent OOMKilling Killed process 4242 (stress)\n");
        expect_node_has(e, p, &(struct cond_want){.type = "TestProblem", .status = "True"}, DEADLINE_MS);
        let_run(e, p, 1000); /* five probe cycles, each with an event */
        assert_int_equal(count_requests(e, 0, NULL, EVENTS_PATH "*"), 0);
        stop(p);
        proc_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_reports_and_coalesces, setup, teardown),
                cmocka_unit_test_setup_teardown(test_heartbeat_repairs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_transition_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orphans_deleted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_removes_conditions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_429_waits_retry_after, setup, teardown),
                cmocka_unit_test_setup_teardown(test_5xx_backs_off, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outage_sends_latest_state_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_401_rereads_token, setup, teardown),
                cmocka_unit_test_setup_teardown(test_403_names_rbac_rule, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dropped_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tls_wrong_ca_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_credential_variants, setup, teardown),
                cmocka_unit_test_setup_teardown(test_standalone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_node_not_found, setup, teardown),
                cmocka_unit_test_setup_teardown(test_event_repeats, setup, teardown),
                cmocka_unit_test_setup_teardown(test_event_rate_limit_and_folding, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events_disabled, setup, teardown),
        };

        /* The environment of whoever runs the tests must not leak into the daemons. */
        unsetenv("KUBECONFIG");
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        unsetenv("NODEHEALTHD_SERVICEACCOUNT_DIR");
        unsetenv("NODE_NAME");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        /* NH_TEST_FILTER=test_name (a glob) runs only the matching tests. */
        if (getenv("NH_TEST_FILTER"))
                cmocka_set_test_filter(getenv("NH_TEST_FILTER"));
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
