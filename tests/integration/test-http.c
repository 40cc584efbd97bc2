/* SPDX-License-Identifier: MIT */
/*
 * The HTTP endpoint of a running daemon: /metrics (checked with promtool, values asserted
 * after known problems), /healthz (ok, then 503 when a probe's source is gone or the loop
 * stalls), /conditions (compared with what --format json prints), and what hostile or
 * merely wrong requests get.  The built daemon, fixture /proc trees, libcurl as the client.
 * Every wait has a deadline.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000

struct env {
        char *dir; /* temporary: conf/, proc/, root/ */
        char *conf;
        char *proc;
        char *root;
        char *plugin_dir;
        char *test_plugin_dir;
        char node[64];
        unsigned port;
        char base[64]; /* http://127.0.0.1:PORT */
        struct proc *daemon; /* killed by teardown */
};

/* ---- the daemon ---- */
/* A port nobody listens on now: bound to 127.0.0.1:0, read back, released. */
static unsigned free_port(void) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *shipped = test_path(test_srcdir(), "conf/nodehealthd.json");
        char *text = test_read_file(shipped);
        static unsigned counter;

        assert_non_null(text);
        e->dir = test_mkdtemp();
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        e->proc = test_path(e->dir, "proc");
        e->root = test_path(e->dir, "root");
        assert_int_equal(mkdir(e->root, 0755), 0);
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        snprintf(e->node, sizeof(e->node), "httptest-%d-%u", (int) getpid(), counter++);
        e->port = free_port();
        snprintf(e->base, sizeof(e->base), "http://127.0.0.1:%u", e->port);
        free(text);
        free(shipped);
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        proc_free(e->daemon); /* SIGKILL if it still runs */
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->proc);
        free(e->root);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e);
        return 0;
}

/* The shipped configuration with a drop-in: the test's port, no journal, then `probes` (JSON members). */
static void configure(struct env *e, const char *listen, const char *probes) {
        char *text = NULL, *addr = NULL;

        if (!listen) {
                assert_true(asprintf(&addr, "127.0.0.1:%u", e->port) >= 0);
                listen = addr;
        }
        assert_true(asprintf(&text,
                             "{\"journal\": {\"enabled\": false}, \"http\": {\"listen\": \"%s\"},\n"
                             " \"probes\": {\"pid\": {\"enabled\": false}, \"network\": {\"enabled\": false}, "
                             "\"disk\": {\"enabled\": false}%s%s}}\n",
                             listen, *probes ? ", " : "", probes) >= 0);
        test_write_file(e->dir, "conf/conf.d/90-http.json", text);
        free(text);
        free(addr);
}

static struct proc *spawn(struct env *e, bool wait_exit, int *ret_code, ...) {
        char *argv[32] = {(char *) test_daemon_path(),
                          "--config",
                          e->conf,
                          "--plugin-dir",
                          e->plugin_dir,
                          "--plugin-dir",
                          e->test_plugin_dir,
                          "--proc-path",
                          e->proc,
                          "--root-path",
                          e->root,
                          "--node-name",
                          e->node,
                          "--standalone"};
        int argc = 14;
        va_list ap;

        va_start(ap, ret_code);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        if (wait_exit)
                return proc_run(argv, DEADLINE_MS, ret_code);
        assert_null(e->daemon);
        e->daemon = proc_spawn(argv);
        return e->daemon;
}

/* Starts the daemon and waits for its endpoint and its first table. */
static struct proc *start(struct env *e, const char *format) {
        struct proc *p = spawn(e, false, NULL, "--format", format, NULL);

        if (!proc_wait_output(p, "Serving /metrics, /healthz and /conditions on http://", true, DEADLINE_MS))
                fail_msg("the endpoint did not start; stderr:\n%s", p->err);
        if (!proc_wait_output(p, strcmp(format, "json") == 0 ? "\"conditions\":[" : "TYPE", false, DEADLINE_MS))
                fail_msg("no start table; stdout:\n%s\nstderr:\n%s", p->out, p->err);
        return p;
}

static void stop(struct proc *p) {
        assert_int_equal(kill(p->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(p, DEADLINE_MS), 0);
}

/* ---- the client ---- */

struct reply {
        long code;
        char *body;
        size_t size;
        char *headers;
        size_t headers_size;
};

static size_t on_data(char *data, size_t size, size_t n, void *userdata) {
        char **buf = userdata;
        size_t old = *buf ? strlen(*buf) : 0;
        char *grown = realloc(*buf, old + size * n + 1);

        assert_non_null(grown);
        memcpy(grown + old, data, size * n);
        grown[old + size * n] = '\0';
        *buf = grown;
        return size * n;
}

/* `method` NULL: GET.  `body` sent when not NULL.  Fails the test when no reply comes. */
static struct reply fetch(struct env *e, const char *method, const char *path, const char *body) {
        struct reply r = {0};
        char url[256];
        CURL *c = curl_easy_init();
        CURLcode code;

        assert_non_null(c);
        snprintf(url, sizeof(url), "%s%s", e->base, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) DEADLINE_MS);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
        if (method && strcmp(method, "HEAD") == 0)
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (method)
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        code = curl_easy_perform(c);
        if (code != CURLE_OK)
                fail_msg("%s %s: %s", method ? method : "GET", url, curl_easy_strerror(code));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.code);
        curl_easy_cleanup(c);
        if (!r.body)
                r.body = strdup("");
        if (!r.headers)
                r.headers = strdup("");
        return r;
}

static void reply_done(struct reply *r) {
        free(r->body);
        free(r->headers);
}

/* ---- /metrics ---- */

/* The value of the sample written exactly `series` (name and labels); fails when absent. */
static double sample(const char *text, const char *series) {
        size_t n = strlen(series);

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (strncmp(line, series, n) == 0 && line[n] == ' ')
                        return strtod(line + n + 1, NULL);
        fail_msg("no sample %s in:\n%s", series, text);
        return 0;
}

static bool has_sample(const char *text, const char *series) {
        size_t n = strlen(series);

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (strncmp(line, series, n) == 0 && line[n] == ' ')
                        return true;
        return false;
}

/*
 * promtool must accept the exposition.  Its lint objects to exactly two names, which are
 * node-problem-detector's and kept for its dashboards: problem_counter (no _total, says
 * "counter") and problem_gauge (says "gauge").  Anything else it says fails the test; exit
 * code 1 (cannot parse) fails it always.  A missing promtool fails it too (package prometheus).
 */
static void promtool_check(struct env *e, const char *text) {
        char *file = test_path(e->dir, "metrics.prom"), *cmd = NULL;
        char *argv[] = {"/bin/sh", "-c", NULL, NULL};
        struct proc *p;
        int code;

        test_write_file(e->dir, "metrics.prom", text);
        assert_true(asprintf(&cmd, "command -v promtool >/dev/null || exit 127; promtool check metrics < '%s'", file) >=
                    0);
        argv[2] = cmd;
        p = proc_run(argv, DEADLINE_MS, &code);
        if (code == 127)
                fail_msg("promtool is missing: install the Debian package prometheus (scripts/deps.sh lists it)");
        if (code != 0 && code != 3)
                fail_msg("promtool check metrics exited %d:\n%s%s\non:\n%s", code, p->out, p->err, text);
        /* Exit 3: lint problems only, one per line on stderr (or stdout, depending on the version). */
        char *all = NULL;
        assert_true(asprintf(&all, "%s%s", p->out, p->err) >= 0);
        for (char *line = all, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (!*line)
                        continue;
                if (strncmp(line, "problem_counter ", 16) != 0 && strncmp(line, "problem_gauge ", 14) != 0)
                        fail_msg("promtool check metrics: %s\non:\n%s", line, text);
        }
        free(all);
        proc_free(p);
        free(cmd);
        free(file);
}

static char *series(const char *format, ...) _printf_(1, 2);
static char *series(const char *format, ...) {
        char *s = NULL;
        va_list ap;

        va_start(ap, format);
        assert_true(vasprintf(&s, format, ap) >= 0);
        va_end(ap);
        return s;
}

/* problem_gauge{node,type,reason} and problem_counter{node,reason} of the test's node. */
static double gauge(struct env *e, const char *text, const char *type, const char *reason) {
        char *s = series("problem_gauge{node=\"%s\",type=\"%s\",reason=\"%s\"}", e->node, type, reason);
        double v = sample(text, s);
        free(s);
        return v;
}

static double counter(struct env *e, const char *text, const char *reason) {
        char *s = series("problem_counter{node=\"%s\",reason=\"%s\"}", e->node, reason);
        double v = sample(text, s);
        free(s);
        return v;
}

static void test_metrics(void **state) {
        struct env *e = *state;
        struct reply r;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        /* memory every 100 ms (shipped: raise_after 1, clear_after 3); t once, with an event and counters. */
        configure(e, NULL,
                  "\"memory\": {\"interval\": \"100ms\"}, "
                  "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"1h\", \"raise_after\": 1, \"isolation\": "
                  "\"inprocess\"}");
        test_write_file(e->root, "testprobe/state",
                        "event OOMKilling Killed process 4242 (stress)\n"
                        "counter entries_read 1234\ncounter entries_dropped 5\n"
                        "TestProblem True TestBroken broken from the start\n"
                        "OtherProblem False OtherOK fine\n");
        p = start(e, "table");

        r = fetch(e, NULL, "/metrics", NULL);
        assert_int_equal(r.code, 200);
        assert_contains(r.headers, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
        promtool_check(e, r.body);
        /* node-problem-detector's families, with its help texts and a node label. */
        assert_contains(r.body, "# TYPE problem_counter counter\n");
        assert_contains(r.body, "# TYPE problem_gauge gauge\n");
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryNotThrashing") == 0);
        assert_true(gauge(e, r.body, "TestProblem", "TestBroken") == 1);
        assert_true(counter(e, r.body, "TestBroken") == 1);
        assert_true(counter(e, r.body, "OOMKilling") == 1);
        /* Healthy reasons are not problems: no counter for them. */
        char *s = series("problem_counter{node=\"%s\",reason=\"MemoryNotThrashing\"}", e->node);
        assert_false(has_sample(r.body, s));
        free(s);
        /* The daemon's own. */
        assert_true(sample(r.body, "nodehealthd_build_info{version=\"" PACKAGE_VERSION "\"}") == 1);
        assert_true(sample(r.body, "nodehealthd_reloads_total") == 0);
        assert_true(sample(r.body, "nodehealthd_start_time_seconds") > 1.7e9);
        assert_true(sample(r.body, "nodehealthd_loop_lag_seconds") >= 0);
        assert_true(sample(r.body, "nodehealthd_probe_running{probe=\"memory\"}") == 1);
        assert_true(sample(r.body, "nodehealthd_probe_cycles_total{probe=\"memory\"}") >= 1);
        assert_true(sample(r.body, "nodehealthd_probe_cycles_total{probe=\"t\"}") == 1);
        assert_true(sample(r.body, "nodehealthd_probe_failures_total{probe=\"memory\"}") == 0);
        assert_true(sample(r.body, "nodehealthd_probe_duration_seconds{probe=\"memory\"}") >= 0);
        assert_true(sample(r.body, "nodehealthd_probe_duration_max_seconds{probe=\"memory\"}") >= 0);
        assert_true(sample(r.body, "nodehealthd_probe_counts_total{probe=\"t\",counter=\"entries_read\"}") == 1234);
        assert_true(sample(r.body, "nodehealthd_probe_counts_total{probe=\"t\",counter=\"entries_dropped\"}") == 5);
        assert_true(sample(r.body, "nodehealthd_condition_status{type=\"TestProblem\",status=\"True\"}") == 1);
        assert_true(sample(r.body, "nodehealthd_condition_status{type=\"TestProblem\",status=\"Unknown\"}") == 0);
        /* Standalone: no API server, no request metrics. */
        assert_null(strstr(r.body, "nodehealthd_api_requests_total"));
        reply_done(&r);

        /* A known problem: the gauge flips to the new reason, the old one stays at 0, the counter counts. */
        proc_mark(p);
        test_swap_memory_fixture(e->proc, "thrashing");
        if (!proc_wait_output(p, "MemoryThrashing  False -> True  MemoryStall", false, DEADLINE_MS))
                fail_msg("no MemoryStall transition; stdout:\n%s", p->out);
        r = fetch(e, NULL, "/metrics", NULL);
        assert_int_equal(r.code, 200);
        promtool_check(e, r.body);
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryStall") == 1);
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryNotThrashing") == 0);
        assert_true(counter(e, r.body, "MemoryStall") == 1);
        assert_true(sample(r.body, "nodehealthd_condition_status{type=\"MemoryThrashing\",status=\"True\"}") == 1);
        reply_done(&r);

        /* It clears, and comes back: the gauge follows, the counter is at 2. */
        proc_mark(p);
        test_swap_memory_fixture(e->proc, "healthy");
        assert_true(proc_wait_output(p, "MemoryThrashing  True -> False", false, DEADLINE_MS));
        r = fetch(e, NULL, "/metrics", NULL);
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryStall") == 0);
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryNotThrashing") == 0);
        reply_done(&r);
        proc_mark(p);
        test_swap_memory_fixture(e->proc, "thrashing");
        assert_true(proc_wait_output(p, "MemoryThrashing  False -> True  MemoryStall", false, DEADLINE_MS));
        r = fetch(e, NULL, "/metrics", NULL);
        assert_true(counter(e, r.body, "MemoryStall") == 2);
        assert_true(gauge(e, r.body, "MemoryThrashing", "MemoryStall") == 1);
        promtool_check(e, r.body);
        reply_done(&r);

        /* HEAD: the headers, no body. */
        r = fetch(e, "HEAD", "/metrics", NULL);
        assert_int_equal(r.code, 200);
        assert_string_equal(r.body, "");
        reply_done(&r);
        stop(p);
}

/* Polls /metrics until it holds `line` (the whole line, value included). */
static bool wait_metric(struct env *e, struct proc *p, const char *line) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_MS * USEC_PER_MSEC;
        char *want = series("\n%s\n", line);
        bool found = false;

        while (!found && now_usec(CLOCK_MONOTONIC) < deadline) {
                struct reply r = fetch(e, NULL, "/metrics", NULL);
                found = r.code == 200 && strstr(r.body, want);
                reply_done(&r);
                if (!found)
                        (void) proc_wait_output(p, "\001never\001", false, 50);
        }
        free(want);
        return found;
}

/*
 * An isolated probe's counters cross from its probe host to the daemon's /metrics, every
 * digit of them (2^53 + 1 is past what a JSON number holds exactly), and follow their changes.
 */
static void test_isolated_counters(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        configure(e, NULL,
                  "\"memory\": {\"interval\": \"1h\"}, "
                  "\"iso\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"state_file\": \"iso\"}");
        test_write_file(e->root, "iso", "counter entries_read 9007199254740993\ncounter entries_dropped 0\n");
        p = start(e, "table");
        assert_contains(p->err, "probe iso (testprobe): probe host started, pid");

        if (!wait_metric(e, p,
                         "nodehealthd_probe_counts_total{probe=\"iso\",counter=\"entries_read\"} 9007199254740993"))
                fail_msg("the isolated probe's counter did not reach /metrics; stderr:\n%s", p->err);
        assert_true(wait_metric(e, p, "nodehealthd_probe_counts_total{probe=\"iso\",counter=\"entries_dropped\"} 0"));

        test_write_file(e->root, "iso", "counter entries_read 9007199254740995\ncounter entries_dropped 2\n");
        if (!wait_metric(e, p,
                         "nodehealthd_probe_counts_total{probe=\"iso\",counter=\"entries_read\"} 9007199254740995"))
                fail_msg("the isolated probe's counter did not follow its change; stderr:\n%s", p->err);
        assert_true(wait_metric(e, p, "nodehealthd_probe_counts_total{probe=\"iso\",counter=\"entries_dropped\"} 2"));
        stop(p);
}

/* ---- /conditions ---- */

static const cJSON *find_condition(const cJSON *list, const char *type) {
        const cJSON *c;

        cJSON_ArrayForEach(c, list) {
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "type")), type) == 0)
                        return c;
        }
        return NULL;
}

static void test_conditions(void **state) {
        struct env *e = *state;
        struct reply r;
        struct proc *p;
        cJSON *served, *printed;
        const cJSON *c, *want;
        const char *end;

        test_use_memory_fixture(e->proc, "thrashing");
        /* Nothing changes after the start: what --format json printed first is still true. */
        configure(e, NULL, "\"memory\": {\"interval\": \"1h\"}");
        p = start(e, "json");
        end = strchr(p->out, '\n');
        assert_non_null(end);
        printed = cJSON_ParseWithLength(p->out, (size_t) (end - p->out));
        assert_non_null(printed);

        r = fetch(e, NULL, "/conditions", NULL);
        assert_int_equal(r.code, 200);
        assert_contains(r.headers, "Content-Type: application/json");
        served = cJSON_Parse(r.body);
        if (!cJSON_IsArray(served))
                fail_msg("/conditions is not a JSON array: %s", r.body);
        const cJSON *list = cJSON_GetObjectItem(printed, "conditions");
        assert_int_equal(cJSON_GetArraySize(served), cJSON_GetArraySize(list));
        cJSON_ArrayForEach(want, list) {
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(want, "type"));
                static const char *const fields[] = {"status", "reason", "message", "lastTransitionTime"};
                uint64_t t;

                c = find_condition(served, type);
                if (!c)
                        fail_msg("%s is not in /conditions: %s", type, r.body);
                /* Exactly a NodeCondition's fields; the heartbeat may have moved on. */
                assert_int_equal(cJSON_GetArraySize(c), 6);
                assert_int_equal(parse_rfc3339(cJSON_GetStringValue(cJSON_GetObjectItem(c, "lastHeartbeatTime")), &t),
                                 0);
                for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, fields[i])),
                                            cJSON_GetStringValue(cJSON_GetObjectItem(want, fields[i])));
        }
        c = find_condition(served, "MemoryThrashing");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, "status")), "True");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")), "MemoryStall");
        cJSON_Delete(served);
        cJSON_Delete(printed);
        reply_done(&r);
        stop(p);
}

/* ---- /healthz ---- */

static void expect_health(struct env *e, long code, const char *needle) {
        struct reply r = fetch(e, NULL, "/healthz", NULL);

        if (r.code != code || (needle && !strstr(r.body, needle)))
                fail_msg("/healthz: %ld, expected %ld%s%s; body:\n%s", r.code, code, needle ? " with " : "",
                         needle ? needle : "", r.body);
        assert_contains(r.headers, "Content-Type: text/plain; charset=utf-8");
        reply_done(&r);
}

static void test_healthz_source_dies(void **state) {
        struct env *e = *state;
        struct reply r;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        configure(e, NULL,
                  "\"memory\": {\"interval\": \"100ms\"}, "
                  "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"timeout\": \"100ms\"}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        p = start(e, "table");
        assert_true(proc_wait_output(p, "OtherOK", false, DEADLINE_MS));
        r = fetch(e, NULL, "/healthz", NULL);
        assert_int_equal(r.code, 200);
        assert_string_equal(r.body, "ok\n");
        reply_done(&r);

        /* The source of OtherProblem goes silent: ProbeStale, and /healthz says so. */
        proc_mark(p);
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\n");
        assert_true(proc_wait_output(p, "OtherProblem  False -> Unknown  ProbeStale", false, DEADLINE_MS));
        expect_health(e, 503, "probe: OtherProblem is Unknown (ProbeStale): probe t has not reported OtherProblem");
        r = fetch(e, NULL, "/healthz", NULL);
        /* One line per failing check; the healthy ones are not listed. */
        assert_null(strstr(r.body, "TestProblem"));
        assert_null(strstr(r.body, "MemoryThrashing"));
        assert_null(strstr(r.body, "ok\n"));
        assert_int_equal(strchr(r.body, '\n') - r.body + 1, (long) strlen(r.body));
        reply_done(&r);
        r = fetch(e, "HEAD", "/healthz", NULL);
        assert_int_equal(r.code, 503);
        assert_string_equal(r.body, "");
        reply_done(&r);

        /* It reports again: healthy again. */
        proc_mark(p);
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        assert_true(proc_wait_output(p, "OtherProblem  Unknown -> False", false, DEADLINE_MS));
        expect_health(e, 200, "ok\n");

        /* A failing cycle is the probe telling us something: not a dead source, still healthy. */
        proc_mark(p);
        test_write_file(e->root, "testprobe/state", "fail\n");
        assert_true(proc_wait_output(p, "ProbeFailed", false, DEADLINE_MS));
        expect_health(e, 200, "ok\n");
        stop(p);
}

static void test_healthz_init_failed(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        configure(e, NULL, "\"u\": {\"plugin\": \"testprobe\", \"init_fail\": true, \"isolation\": \"inprocess\"}");
        p = start(e, "table");
        expect_health(e, 503, "probe: TestProblem is Unknown (ProbeInitFailed): ");
        expect_health(e, 503, "probe: OtherProblem is Unknown (ProbeInitFailed): ");
        struct reply r = fetch(e, NULL, "/metrics", NULL);
        assert_true(sample(r.body, "nodehealthd_probe_running{probe=\"u\"}") == 0);
        reply_done(&r);
        stop(p);
}

/* The pids of the daemon's children (its probe hosts), from /proc/PID/task/PID/children. */
static size_t children_of(pid_t pid, pid_t *out, size_t max) {
        char path[64], *text, *p, *end;
        size_t n = 0;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int) pid, (int) pid);
        text = test_read_file(path);
        for (p = text; p && *p && n < max; p = end) {
                long v = strtol(p, &end, 10);
                if (end == p)
                        break;
                out[n++] = (pid_t) v;
        }
        free(text);
        return n;
}

static void test_healthz_source_killed(void **state) {
        struct env *e = *state;
        struct proc *p;
        pid_t kids[8];
        size_t n;

        test_use_memory_fixture(e->proc, "healthy");
        /* The test probe in a probe host of its own, which the test kills as the OOM killer would. */
        configure(e, NULL,
                  "\"memory\": {\"interval\": \"1h\"}, "
                  "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"isolation\": \"process\"}");
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\nOtherProblem False OtherOK ok\n");
        p = start(e, "table");
        assert_true(proc_wait_output(p, "OtherOK", false, DEADLINE_MS));
        expect_health(e, 200, "ok\n");

        n = children_of(p->pid, kids, ELEMENTSOF(kids));
        if (n != 1)
                fail_msg("expected one probe host under the daemon, found %zu", n);
        proc_mark(p);
        assert_int_equal(kill(kids[0], SIGKILL), 0);
        if (!proc_wait_output(p, "ProbeCrashed", false, DEADLINE_MS))
                fail_msg("no ProbeCrashed after the probe host was killed; stdout:\n%s\nstderr:\n%s", p->out, p->err);
        /* The host comes back after 1 s at the earliest: until then the source is dead. */
        expect_health(e, 503, "probe: TestProblem is Unknown (ProbeCrashed): ");
        expect_health(e, 503, "probe: OtherProblem is Unknown (ProbeCrashed): ");
        /* It is started again and reports: healthy again. */
        assert_true(proc_wait_output(p, "OtherProblem  Unknown -> False", false, DEADLINE_MS));
        expect_health(e, 200, "ok\n");
        stop(p);
}

static void sleep_ms(int ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void test_healthz_loop_stalled(void **state) {
        struct env *e = *state;
        struct proc *p;

        test_use_memory_fixture(e->proc, "healthy");
        configure(e, NULL, "\"memory\": {\"interval\": \"1h\"}");
        p = start(e, "table");
        expect_health(e, 200, "ok\n");
        /* A loop that does nothing for 4 s (the limit is 3 s), as a blocking probe would make it. */
        assert_int_equal(kill(p->pid, SIGSTOP), 0);
        sleep_ms(4000); /* not a wait for something: the stall itself */
        assert_int_equal(kill(p->pid, SIGCONT), 0);
        expect_health(e, 503, "loop: its 1 s timer ran ");
        struct reply r = fetch(e, NULL, "/metrics", NULL);
        assert_true(sample(r.body, "nodehealthd_loop_lag_seconds") >= 3.0);
        reply_done(&r);
        stop(p);
}

/* ---- wrong requests ---- */

/* Sends raw bytes on a new connection and returns what comes back before the server closes (or 5 s). */
static char *raw(struct env *e, const char *request, size_t len) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t) e->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char *out = calloc(1, 1);
        size_t n = 0;

        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        for (size_t sent = 0; sent < len;) {
                ssize_t w = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
                if (w <= 0)
                        break; /* the server gave up on us first: fine */
                sent += (size_t) w;
        }
        (void) shutdown(fd, SHUT_WR);
        for (;;) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                char buf[4096];
                if (poll(&pfd, 1, 5000) <= 0)
                        break;
                ssize_t got = recv(fd, buf, sizeof(buf), 0);
                if (got <= 0)
                        break;
                out = realloc(out, n + (size_t) got + 1);
                assert_non_null(out);
                memcpy(out + n, buf, (size_t) got);
                n += (size_t) got;
                out[n] = '\0';
        }
        close(fd);
        return out;
}

static void test_wrong_requests(void **state) {
        struct env *e = *state;
        struct reply r;
        struct proc *p;
        char *got;

        test_use_memory_fixture(e->proc, "healthy");
        configure(e, NULL, "\"memory\": {\"interval\": \"1h\"}");
        p = start(e, "table");

        static const char *const missing[] = {"/", "/metrics/", "/healthz/x", "/METRICS", "/conditions.json", "/%00"};
        for (size_t i = 0; i < ELEMENTSOF(missing); i++) {
                r = fetch(e, NULL, missing[i], NULL);
                if (r.code != 404)
                        fail_msg("GET %s: %ld, expected 404", missing[i], r.code);
                reply_done(&r);
        }
        /* The query string is not part of the path. */
        r = fetch(e, NULL, "/healthz?verbose=1", NULL);
        assert_int_equal(r.code, 200);
        reply_done(&r);

        static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"};
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                r = fetch(e, methods[i], "/metrics", i < 2 || i == 4 ? "a=1&b=2" : NULL);
                if (r.code != 405)
                        fail_msg("%s /metrics: %ld, expected 405", methods[i], r.code);
                assert_contains(r.headers, "Allow: GET, HEAD");
                reply_done(&r);
        }
        /* An unknown path is 404 whatever the method. */
        r = fetch(e, "POST", "/nope", "x");
        assert_int_equal(r.code, 404);
        reply_done(&r);

        /* Garbage, a header larger than a connection may hold, a large body: refused, and nothing breaks. */
        got = raw(e, "GARBAGE\r\n\r\n", 11);
        assert_null(strstr(got, " 200 "));
        free(got);
        size_t big = 256 * 1024;
        char *huge = malloc(big + 64);
        assert_non_null(huge);
        int k = snprintf(huge, 64, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
        memset(huge + k, 'a', big);
        memcpy(huge + k + big, "\r\n\r\n", 4);
        got = raw(e, huge, (size_t) k + big + 4);
        assert_null(strstr(got, " 200 "));
        free(got);
        k = snprintf(huge, 64, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", big);
        memset(huge + k, 'b', big);
        got = raw(e, huge, (size_t) k + big);
        assert_contains(got, "HTTP/1.1 405 ");
        free(got);
        free(huge);

        /* A client that connects and says nothing does not hold the endpoint up. */
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t) e->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int idle = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(idle, (struct sockaddr *) &a, sizeof(a)), 0);
        expect_health(e, 200, "ok\n");
        close(idle);

        expect_health(e, 200, "ok\n");
        stop(p);
}

/* ---- http.listen ---- */

static void test_listen_config(void **state) {
        struct env *e = *state;
        struct proc *p;
        int code;
        static const struct {
                const char *listen, *why;
        } bad[] = {
                {"localhost:20258", "the address is not an IPv4 address (host names are not looked up)"},
                {"127.0.0.1", "the port is missing"},
                {"127.0.0.1:0", "the port must be a number from 1 to 65535"},
                {"127.0.0.1:65536", "the port must be a number from 1 to 65535"},
                {"127.0.0.1:+80", "the port must be a number from 1 to 65535"},
                {":20258", "the address is missing"},
                {"::1:20258", "an IPv6 address is written [ADDRESS]:PORT"},
                {"[::1]", "an IPv6 address is written [ADDRESS]:PORT"},
                {"[127.0.0.1]:80", "the address is not an IPv6 address"},
                {"[fe80::1%eth0]:80", "the address is not an IPv6 address"},
        };

        test_use_memory_fixture(e->proc, "healthy");
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *text = NULL;
                assert_true(asprintf(&text, "{\n  \"http\": {\"listen\": \"%s\"}\n}\n", bad[i].listen) >= 0);
                test_write_file(e->dir, "conf/conf.d/90-http.json", text);
                free(text);
                p = spawn(e, true, &code, "--check-config", NULL);
                assert_int_equal(code, 78);
                /* The value's position in the drop-in. */
                assert_contains(p->err, "conf.d/90-http.json:2:22: \"listen\" in \"http\" must be");
                assert_contains(p->err, bad[i].why);
                proc_free(p);
        }

        /* "" turns the endpoint off. */
        configure(e, "", "\"memory\": {\"interval\": \"1h\"}");
        p = spawn(e, true, &code, "--check-config", NULL);
        assert_int_equal(code, 0);
        proc_free(p);
        p = spawn(e, false, NULL, NULL);
        assert_true(proc_wait_output(p, "No HTTP endpoint (http.listen is \"\")", true, DEADLINE_MS));
        assert_true(proc_wait_output(p, "TYPE", false, DEADLINE_MS));
        stop(p);
        proc_free(TAKE_PTR(e->daemon));

        /* A port somebody else holds: the daemon does not start (exit 1) and says why. */
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t) e->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 1), 0);
        configure(e, NULL, "\"memory\": {\"interval\": \"1h\"}");
        p = spawn(e, true, &code, NULL);
        assert_int_equal(code, 1);
        char *msg = series("Cannot serve HTTP on 127.0.0.1:%u (http.listen): Address already in use", e->port);
        assert_contains(p->err, msg);
        free(msg);
        proc_free(p);
        close(fd);
}

static void test_ipv6(void **state) {
        struct env *e = *state;
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        char listen[64];
        struct proc *p;
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
                if (fd >= 0)
                        close(fd);
                skip(); /* no ::1 here (IPv6 disabled): nothing to listen on */
        }
        close(fd);
        test_use_memory_fixture(e->proc, "healthy");
        snprintf(listen, sizeof(listen), "[::1]:%u", e->port);
        configure(e, listen, "\"memory\": {\"interval\": \"1h\"}");
        p = start(e, "table");
        snprintf(e->base, sizeof(e->base), "http://[::1]:%u", e->port);
        expect_health(e, 200, "ok\n");
        stop(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
                cmocka_unit_test_setup_teardown(test_isolated_counters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conditions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_healthz_source_dies, setup, teardown),
                cmocka_unit_test_setup_teardown(test_healthz_init_failed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_healthz_source_killed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_healthz_loop_stalled, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_requests, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
        };

        curl_global_init(CURL_GLOBAL_DEFAULT);
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
