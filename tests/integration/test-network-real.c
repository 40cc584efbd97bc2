/* SPDX-License-Identifier: MIT */
/*
 * The network probe in the real daemon, inside network namespaces of its own: a veth pair from
 * the daemon's namespace to a peer namespace, addresses from TEST-NET-1 (192.0.2.0/24) and a
 * default route via the peer.  Links go down, the route vanishes, the resolver stops
 * answering, for real; each case asserts the transition the daemon prints and that its other
 * probe (testprobe) kept running.  The network probe runs with an interval of one hour: only
 * its rtnetlink wake-ups can make the link and route transitions prompt.
 *
 * Every packet stays in the two namespaces; both are deleted in the teardown, also after a
 * failed assertion.  Needs root (CI runs the tests as root).  Every wait has a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000
#define PEER_ADDRESS "192.0.2.1"

struct env {
        char *dir; /* temporary: conf/, root/ */
        char *conf; /* dir/conf/nodehealthd.json: the shipped file */
        char *root; /* dir/root: --root-path, with etc/resolv.conf and the testprobe's state */
        char *plugin_dir;
        char *test_plugin_dir;
        char node[64];
        char ns[40], peer_ns[40]; /* unique per test: parallel runs do not collide */
        bool ns_created, peer_created;
        struct proc *daemon;
        pid_t resolver; /* a DNS responder in the peer namespace, 0 when none */
        unsigned probe_flips; /* testprobe transitions asked for so far */
};

static const char *ip_path(void) {
        static const char *const candidates[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], X_OK) == 0)
                        return candidates[i];
        return NULL;
}

/* Runs ip(8) with the arguments (NULL-terminated); returns its exit code, its stderr in *ret_err. */
static int ipv(char **ret_err, const char *first, va_list ap) {
        char *argv[24] = {(char *) ip_path(), (char *) first};
        int argc = 2, code;
        struct proc *p;

        if (!argv[0])
                fail_msg("no ip(8): install iproute2");
        for (char *a; (a = va_arg(ap, char *)) && argc < (int) ELEMENTSOF(argv) - 1;)
                argv[argc++] = a;
        p = proc_run(argv, DEADLINE_MS, &code);
        if (ret_err)
                *ret_err = strdup(p->err);
        proc_free(p);
        return code;
}

/* ip(8) that must succeed. */
static void ip(const char *first, ...) {
        char *err = NULL;
        va_list ap;
        int code;

        va_start(ap, first);
        code = ipv(&err, first, ap);
        va_end(ap);
        if (code != 0)
                fail_msg("ip %s ... failed (exit %d): %s", first, code, err ? err : "");
        free(err);
}

/* ip(8) in teardown: failures are reported, not fatal, so the rest of the cleanup runs. */
static void ip_cleanup(const char *first, ...) {
        char *err = NULL;
        va_list ap;
        int code;

        va_start(ap, first);
        code = ipv(&err, first, ap);
        va_end(ap);
        if (code != 0)
                print_error("cleanup: ip %s ... failed (exit %d): %s\n", first, code, err ? err : "");
        free(err);
}

static void require_root(void) {
        if (geteuid() != 0)
                fail_msg("test-network-real needs root to create network namespaces and veth pairs "
                         "(CAP_SYS_ADMIN, CAP_NET_ADMIN); CI runs the tests as root");
}

/* ---- a resolver in the peer namespace ---- */

/* Answers every A query with the peer's address and every other query with no data. */
static void resolver_serve(int fd) {
        for (;;) {
                uint8_t q[512], a[600];
                struct sockaddr_storage from;
                socklen_t from_len = sizeof(from);
                ssize_t len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *) &from, &from_len);
                size_t p = 12, alen;

                if (len < 12)
                        continue;
                while (p < (size_t) len && q[p] != 0 && q[p] < 64)
                        p += 1u + q[p];
                if (p + 5 > (size_t) len)
                        continue;
                alen = p + 5;
                memcpy(a, q, alen);
                a[2] = (uint8_t) (0x80 | (q[2] & 0x01));
                a[3] = 0x80;
                memset(a + 6, 0, 6);
                if (q[p + 1] == 0 && q[p + 2] == 1) {
                        static const uint8_t answer[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
                        memcpy(a + alen, answer, sizeof(answer));
                        alen += sizeof(answer);
                        a[7] = 1;
                }
                (void) sendto(fd, a, alen, 0, (struct sockaddr *) &from, from_len);
        }
}

/* Forks a responder on PEER_ADDRESS:53 inside the peer namespace; returns once it listens. */
static pid_t resolver_start(const char *netns) {
        int ready[2];
        pid_t pid;
        char c;
        struct pollfd pfd;

        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
                char path[128];
                int nsfd, fd;

                /* The child leaves through _exit() only: no cmocka, no atexit handlers. */
                close(ready[0]);
                snprintf(path, sizeof(path), "/run/netns/%s", netns);
                nsfd = open(path, O_RDONLY | O_CLOEXEC);
                if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)
                        _exit(2);
                fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                inet_pton(AF_INET, PEER_ADDRESS, &a.sin_addr);
                if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
                        _exit(3);
                if (write(ready[1], "x", 1) != 1)
                        _exit(4);
                resolver_serve(fd);
                _exit(0);
        }
        close(ready[1]);
        pfd = (struct pollfd){.fd = ready[0], .events = POLLIN};
        if (poll(&pfd, 1, DEADLINE_MS) != 1 || read(ready[0], &c, 1) != 1) {
                int status = 0;
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                fail_msg("the resolver in namespace %s did not start (exit %d)", netns,
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        close(ready[0]);
        return pid;
}

static void resolver_kill(struct env *e) {
        if (e->resolver <= 0)
                return;
        kill(e->resolver, SIGKILL);
        waitpid(e->resolver, NULL, 0);
        e->resolver = 0;
}

/* ---- setup and teardown ---- */

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        char *shipped = test_path(test_srcdir(), "conf/nodehealthd.json");
        char *text = test_read_file(shipped);
        static unsigned counter;

        assert_non_null(e);
        assert_non_null(text);
        *state = e;
        e->dir = test_mkdtemp();
        test_write_file(e->dir, "conf/nodehealthd.json", text);
        e->conf = test_path(e->dir, "conf/nodehealthd.json");
        /* http.listen defaults to one port for every daemon here, and tests run in parallel: off. */
        test_write_file(e->dir, "conf/conf.d/00-http-off.json", "{\"http\": {\"listen\": \"\"}}\n");
        e->root = test_path(e->dir, "root");
        e->plugin_dir = test_path(test_builddir(), "plugins/.libs");
        e->test_plugin_dir = test_path(test_builddir(), "tests/plugins/.libs");
        snprintf(e->node, sizeof(e->node), "nettest-%d-%u", (int) getpid(), counter);
        snprintf(e->ns, sizeof(e->ns), "nhtest-%d-%u", (int) getpid(), counter);
        snprintf(e->peer_ns, sizeof(e->peer_ns), "nhtest-%d-%u-peer", (int) getpid(), counter);
        counter++;
        free(text);
        free(shipped);
        if (geteuid() != 0)
                return 0; /* the test says why it cannot run */

        /*
         *   namespace ns                          namespace peer_ns
         *   nh0 192.0.2.2/24  <---- veth ---->    nh1 192.0.2.1/24
         *   default via 192.0.2.1
         * The names inside the namespaces are fixed: nothing is created in the caller's.
         */
        ip("netns", "add", e->ns, NULL);
        e->ns_created = true;
        ip("netns", "add", e->peer_ns, NULL);
        e->peer_created = true;
        ip("-n", e->ns, "link", "add", "nh0", "type", "veth", "peer", "name", "nh1", "netns", e->peer_ns, NULL);
        ip("-n", e->ns, "link", "set", "lo", "up", NULL);
        ip("-n", e->peer_ns, "link", "set", "lo", "up", NULL);
        ip("-n", e->ns, "addr", "add", "192.0.2.2/24", "dev", "nh0", NULL);
        ip("-n", e->peer_ns, "addr", "add", PEER_ADDRESS "/24", "dev", "nh1", NULL);
        ip("-n", e->ns, "link", "set", "nh0", "up", NULL);
        ip("-n", e->peer_ns, "link", "set", "nh1", "up", NULL);
        ip("-n", e->ns, "route", "add", "default", "via", PEER_ADDRESS, NULL);
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        /* In this order: the daemon and the resolver hold the namespaces. */
        proc_free(e->daemon);
        resolver_kill(e);
        if (e->ns_created)
                ip_cleanup("netns", "del", e->ns, NULL);
        if (e->peer_created)
                ip_cleanup("netns", "del", e->peer_ns, NULL);
        test_rmtree(e->dir);
        free(e->dir);
        free(e->conf);
        free(e->root);
        free(e->plugin_dir);
        free(e->test_plugin_dir);
        free(e);
        return 0;
}

/* ---- the daemon ---- */

/*
 * The shipped configuration plus a drop-in: the network probe with `network_keys`, a testprobe
 * instance on a short interval, nothing else.  The daemon runs inside the namespace.
 */
static void start_daemon(struct env *e, const char *network_keys) {
        char *dropin = NULL;
        char *argv[] = {(char *) ip_path(),
                        "netns",
                        "exec",
                        e->ns,
                        (char *) test_daemon_path(),
                        "--config",
                        e->conf,
                        "--plugin-dir",
                        e->plugin_dir,
                        "--plugin-dir",
                        e->test_plugin_dir,
                        "--root-path",
                        e->root,
                        "--node-name",
                        e->node,
                        NULL};

        assert_true(asprintf(&dropin,
                             "{\"journal\": {\"enabled\": false}, \"probes\": {"
                             "\"memory\": {\"enabled\": false},"
                             "\"network\": {\"raise_after\": 1, \"clear_after\": 1, %s},"
                             "\"t\": {\"plugin\": \"testprobe\", \"interval\": \"100ms\", \"raise_after\": 1, "
                             "\"clear_after\": 1}}}",
                             network_keys) >= 0);
        test_write_file(e->dir, "conf/conf.d/90-network.json", dropin);
        free(dropin);
        test_write_file(e->root, "testprobe/state", "TestProblem False TestOK fine\n");
        e->daemon = proc_spawn(argv);
}

static void wait_for(struct env *e, const char *needle) {
        if (!proc_wait_output(e->daemon, needle, false, DEADLINE_MS))
                fail_msg("no \"%s\" within %d ms; stdout:\n%s\nstderr:\n%s", needle, DEADLINE_MS,
                         e->daemon->out + e->daemon->out_mark, e->daemon->err);
}

/* The first cycle of every probe ended: the table is printed, NetworkProblem with this reason. */
static void wait_started(struct env *e, const char *network_reason) {
        const char *line;

        wait_for(e, "TestProblem");
        line = strstr(e->daemon->out, "\nNetworkProblem ");
        if (!line || !strstr(line, network_reason) || strchr(line + 1, '\n') < strstr(line, network_reason))
                fail_msg("the start table does not say %s; stdout:\n%s\nstderr:\n%s", network_reason, e->daemon->out,
                         e->daemon->err);
        proc_mark(e->daemon);
}

/* The daemon's other probe still runs: its state file flips, the daemon says so. */
static void expect_other_probe_alive(struct env *e) {
        bool broken = e->probe_flips++ % 2 == 0;

        proc_mark(e->daemon);
        test_write_file(e->root, "testprobe/state",
                        broken ? "TestProblem True TestBroken flip\n" : "TestProblem False TestOK fine\n");
        wait_for(e, broken ? "TestProblem  False -> True  TestBroken: flip" : "TestProblem  True -> False  TestOK");
        proc_mark(e->daemon);
}

static void stop_daemon(struct env *e) {
        assert_int_equal(kill(e->daemon->pid, SIGTERM), 0);
        assert_int_equal(proc_wait(e->daemon, DEADLINE_MS), 0);
}

/* ---- the cases ---- */

static void test_link_down_and_up(void **state) {
        struct env *e = *state;

        require_root();
        start_daemon(e, "\"interval\": \"1h\", \"interfaces\": [\"nh0\"], \"require_default_route\": [\"ipv4\"]");
        wait_started(e, "NetworkReady");

        /* The cable: the peer's end goes down, ours loses carrier, the route stays. */
        ip("-n", e->peer_ns, "link", "set", "nh1", "down", NULL);
        wait_for(e, "NetworkProblem  False -> True  NoCarrier: interface nh0 has no carrier");
        expect_other_probe_alive(e);
        ip("-n", e->peer_ns, "link", "set", "nh1", "up", NULL);
        wait_for(e, "NetworkProblem  True -> False  NetworkReady");
        expect_other_probe_alive(e);

        /* Ours, administratively: the kernel drops the IPv4 routes through it; the link is the reason. */
        ip("-n", e->ns, "link", "set", "nh0", "down", NULL);
        wait_for(e, "NetworkProblem  False -> True  InterfaceDown: interface nh0 is administratively down");
        expect_other_probe_alive(e);
        ip("-n", e->ns, "link", "set", "nh0", "up", NULL);
        ip("-n", e->ns, "route", "add", "default", "via", PEER_ADDRESS, NULL);
        wait_for(e, "NetworkProblem  True -> False  NetworkReady");
        expect_other_probe_alive(e);
        stop_daemon(e);
}

static void test_default_route_deleted(void **state) {
        struct env *e = *state;

        require_root();
        start_daemon(e, "\"interval\": \"1h\", \"interfaces\": [\"nh0\"], \"require_default_route\": [\"ipv4\"]");
        wait_started(e, "NetworkReady");

        ip("-n", e->ns, "route", "del", "default", NULL);
        wait_for(e, "NetworkProblem  False -> True  NoDefaultRoute: no IPv4 default route in /proc/net/route");
        expect_other_probe_alive(e);
        ip("-n", e->ns, "route", "add", "default", "via", PEER_ADDRESS, "dev", "nh0", NULL);
        wait_for(e, "NetworkProblem  True -> False  NetworkReady");
        expect_other_probe_alive(e);
        stop_daemon(e);
}

static void test_resolver_stops_answering(void **state) {
        struct env *e = *state;

        require_root();
        /* The node's resolver is the peer; nothing triggers a DNS check, so a short interval. */
        test_write_file(e->root, "etc/resolv.conf", "nameserver " PEER_ADDRESS "\n");
        e->resolver = resolver_start(e->peer_ns);
        start_daemon(e, "\"interval\": \"300ms\", \"timeout\": \"3s\", \"dns_names\": [\"registry.example.test\"], "
                        "\"dns_timeout\": \"1s\", \"require_default_route\": []");
        wait_started(e, "NetworkReady");
        assert_contains(e->daemon->out, "registry.example.test resolves (nameserver " PEER_ADDRESS);

        /* Stopped: the queries arrive and nobody answers. */
        assert_int_equal(kill(e->resolver, SIGSTOP), 0);
        wait_for(e, "NetworkProblem  False -> True  DNSResolutionFailed: registry.example.test did not resolve: no "
                    "answer within 1s (nameserver " PEER_ADDRESS " from /etc/resolv.conf)");
        expect_other_probe_alive(e);
        assert_int_equal(kill(e->resolver, SIGCONT), 0);
        wait_for(e, "NetworkProblem  True -> False  NetworkReady");
        expect_other_probe_alive(e);

        /* Gone: the peer answers with ICMP port unreachable. */
        resolver_kill(e);
        wait_for(e, "NetworkProblem  False -> True  DNSResolutionFailed: registry.example.test did not resolve: ");
        expect_other_probe_alive(e);
        stop_daemon(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_link_down_and_up, setup, teardown),
                cmocka_unit_test_setup_teardown(test_default_route_deleted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resolver_stops_answering, setup, teardown),
        };

        /* A pod's environment would give the daemon an API server to check: not this test's. */
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
