/* SPDX-License-Identifier: MIT */
/*
 * The network probe, loaded through the real loader into a real condition table: exact
 * conditions for each fixture tree under tests/fixtures/network/, DNS lookups against a tiny
 * resolver this test runs on the loopback (answering, saying NXDOMAIN, or silent), TCP connects
 * to loopback sockets that accept, refuse, or never answer (a full accept queue), and, in a
 * private network namespace (root), the rtnetlink wake-ups and the resolver configuration.
 * No packet leaves the loopback or the test's own namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include "testlib.h"
#include "util.h"

#define DEADLINE_MS 10000

/* ---- helpers ---- */

static char *fixture_dir(const char *scenario, const char *tree) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/network/%s/%s", scenario, tree) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

/* The network probe with `keys` (JSON members, may be ""), reading the trees given (NULL: real). */
static struct harness *start_trees(const char *keys, const char *proc, const char *sys, const char *root) {
        struct harness *h = NULL;
        char *config = NULL;
        int r;

        assert_true(asprintf(&config,
                             "{\"probes\": {\"network\": {\"interval\": \"10s\", \"raise_after\": 1, "
                             "\"clear_after\": 1%s%s}}}",
                             *keys ? ", " : "", keys) >= 0);
        r = harness_new(config, proc, sys, root, &h);
        if (r < 0)
                print_error("harness_new: %s\n", h->last_error ? h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        assert_int_equal(h->n_probes, 1);
        free(config);
        return h;
}

static struct harness *start(const char *keys, const char *scenario) {
        char *proc = fixture_dir(scenario, "proc"), *sys = fixture_dir(scenario, "sys");
        struct harness *h = start_trees(keys, proc, sys, NULL);

        free(proc);
        free(sys);
        return h;
}

#define assert_message(h, type, needle) _assert_message(h, type, needle, __FILE__, __LINE__)
static void _assert_message(struct harness *h, const char *type, const char *needle, const char *file, int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c) {
                print_error("%s:%d: condition %s is not in the table\n", file, line, type);
                _fail(file, line);
                return;
        }
        if (!strstr(c->message, needle)) {
                print_error("%s:%d: %s message is \"%s\", expected it to contain \"%s\"\n", file, line, type,
                            c->message, needle);
                _fail(file, line);
        }
}

/* One run of the probe on a scenario with `keys`: the expected NetworkProblem. */
static void expect_network(const char *scenario, const char *keys, enum nh_status status, const char *reason,
                           const char *message) {
        struct harness *h = start(keys, scenario);

        harness_run(h);
        assert_condition(h, "NetworkProblem", status, reason);
        assert_message(h, "NetworkProblem", message);
        harness_free(h);
}

static void expect_conntrack(const char *scenario, const char *keys, enum nh_status status, const char *reason,
                             const char *message) {
        struct harness *h = start(keys, scenario);

        harness_run(h);
        assert_condition(h, "ConntrackFull", status, reason);
        assert_message(h, "ConntrackFull", message);
        harness_free(h);
}

/* ---- loopback servers ---- */

static int loopback_socket(int type, uint16_t *ret_port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        *ret_port = ntohs(a.sin_port);
        return fd;
}

/* A resolver on the loopback: answers A queries with 127.0.0.1, or NXDOMAIN, or nothing. */
enum dns_mode {
        DNS_ANSWER,
        DNS_NXDOMAIN,
        DNS_REFUSED,
        DNS_SILENT,
};

struct dns_server {
        int fd;
        uint16_t port;
        enum dns_mode mode;
        const char *nxdomain; /* this name is NXDOMAIN even in DNS_ANSWER mode */
        unsigned queries;
        sd_event_source *source;
};

static int dns_server_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct dns_server *d = userdata;
        uint8_t q[512], a[600];
        struct sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        char name[256] = "";
        size_t p = 12, n = 0, alen;
        ssize_t len;
        uint16_t qtype;
        int rcode;

        len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *) &from, &from_len);
        if (len < 12)
                return 0;
        d->queries++;
        if (d->mode == DNS_SILENT)
                return 0;
        while (p < (size_t) len && q[p] != 0) {
                size_t l = q[p];
                if (l > 63 || p + 1 + l >= (size_t) len || n + l + 2 > sizeof(name))
                        return 0;
                if (n > 0)
                        name[n++] = '.';
                memcpy(name + n, q + p + 1, l);
                n += l;
                name[n] = '\0';
                p += 1 + l;
        }
        p++;
        if (p + 4 > (size_t) len)
                return 0;
        qtype = (uint16_t) (q[p] << 8 | q[p + 1]);
        alen = p + 4;
        rcode = d->mode == DNS_REFUSED                                                           ? 5
                : d->mode == DNS_NXDOMAIN || (d->nxdomain && strcasecmp(name, d->nxdomain) == 0) ? 3
                                                                                                 : 0;

        memcpy(a, q, alen); /* header and question; an EDNS record is not echoed */
        a[2] = (uint8_t) (0x80 | (q[2] & 0x01)); /* QR, RD as asked */
        a[3] = (uint8_t) (0x80 | rcode); /* RA */
        memset(a + 6, 0, 6); /* ANCOUNT, NSCOUNT, ARCOUNT */
        if (rcode == 0 && qtype == 1) {
                static const uint8_t answer[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1};
                memcpy(a + alen, answer, sizeof(answer));
                alen += sizeof(answer);
                a[7] = 1;
        }
        (void) sendto(fd, a, alen, 0, (struct sockaddr *) &from, from_len);
        return 0;
}

static void dns_server_open(struct dns_server *d, enum dns_mode mode) {
        *d = (struct dns_server){.mode = mode};
        d->fd = loopback_socket(SOCK_DGRAM, &d->port);
}

static void dns_server_attach(struct dns_server *d, struct harness *h) {
        assert_int_equal(sd_event_add_io(h->event, &d->source, d->fd, EPOLLIN, dns_server_io, d), 0);
}

static void dns_server_close(struct dns_server *d) {
        d->source = sd_event_source_disable_unref(d->source);
        close(d->fd);
}

/* The probe with `keys` plus dns_servers naming d, d's resolver on the harness's loop. */
static struct harness *start_dns(struct dns_server *d, const char *keys) {
        char *all = NULL;
        struct harness *h;

        assert_true(asprintf(&all, "\"dns_servers\": [\"127.0.0.1:%u\"], \"require_default_route\": []%s%s",
                             (unsigned) d->port, *keys ? ", " : "", keys) >= 0);
        h = start(all, "healthy");
        dns_server_attach(d, h);
        free(all);
        return h;
}

static struct harness *start_connect(uint16_t port, const char *host, const char *keys) {
        char *all = NULL;
        struct harness *h;

        assert_true(asprintf(&all, "\"apiserver\": \"%s:%u\", \"require_default_route\": []%s%s", host, (unsigned) port,
                             *keys ? ", " : "", keys) >= 0);
        h = start(all, "healthy");
        free(all);
        return h;
}

/* ---- fixtures: routes ---- */

static void test_healthy(void **state) {
        struct harness *h =
                start("\"require_default_route\": [\"ipv4\", \"ipv6\"], \"interfaces\": [\"eth0\"]", "healthy");

        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        /* Every check is healthy: the first one's words are the message. */
        assert_message(h, "NetworkProblem", "interface eth0 is up with carrier");
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackOK");
        assert_message(h, "ConntrackFull", "conntrack table 1523 of 262144 entries (0.6%), limit 90%");
        /* The CNI's type is not ours, not even declared. */
        assert_null(harness_condition(h, "NetworkUnavailable"));
        assert_int_equal(nh_table_size(h->table), 2);
        /* Nothing asynchronous to do: no cycle trigger, nothing pending. */
        assert_int_equal(h->n_triggers, 0);
        harness_free(h);
}

static void test_default_routes(void **state) {
        /* The lowest metric wins (eth1's default has 200). */
        expect_network("healthy", "", NH_STATUS_FALSE, "NetworkReady", "IPv4 default route via 10.0.0.1 dev eth0");
        expect_network("healthy", "\"require_default_route\": [\"ipv6\"]", NH_STATUS_FALSE, "NetworkReady",
                       "IPv6 default route via fd00::1 dev eth0");
}

static void test_no_default_route_v4(void **state) {
        /* The only 0/0 route is "unreachable default": no way out. */
        expect_network("no-default-route-v4", "\"require_default_route\": [\"ipv4\", \"ipv6\"]", NH_STATUS_TRUE,
                       "NoDefaultRoute", "no IPv4 default route in /proc/net/route");
        /* Not required: not checked. */
        expect_network("no-default-route-v4", "\"require_default_route\": [\"ipv6\"]", NH_STATUS_FALSE, "NetworkReady",
                       "IPv6 default route");
}

static void test_no_default_route_v6(void **state) {
        /* The null entry on lo (a 0/0 route with RTF_REJECT) is not a default route. */
        expect_network("no-default-route-v6", "\"require_default_route\": [\"ipv4\", \"ipv6\"]", NH_STATUS_TRUE,
                       "NoDefaultRoute", "no IPv6 default route in /proc/net/ipv6_route");
        /* IPv4 alone is the default requirement. */
        expect_network("no-default-route-v6", "", NH_STATUS_FALSE, "NetworkReady", "IPv4 default route");
}

/* ---- fixtures: interfaces ---- */

static void test_no_carrier(void **state) {
        expect_network("no-carrier", "\"interfaces\": [\"eth0\"]", NH_STATUS_TRUE, "NoCarrier",
                       "interface eth0 has no carrier (operstate down)");
}

static void test_interface_down(void **state) {
        /* The default route went with the link: the interface is the reason shown. */
        expect_network("interface-down", "\"interfaces\": [\"eth0\"]", NH_STATUS_TRUE, "InterfaceDown",
                       "interface eth0 is administratively down (operstate down)");
        expect_network("interface-down", "", NH_STATUS_TRUE, "NoDefaultRoute", "no IPv4 default route");
}

static void test_interface_not_found(void **state) {
        expect_network("healthy", "\"interfaces\": [\"eth0\", \"bond0\"]", NH_STATUS_TRUE, "InterfaceNotFound",
                       "interface bond0 does not exist (no /sys/class/net/bond0)");
}

static void test_interface_dormant(void **state) {
        char *dir = test_mkdtemp(), *sys = test_path(dir, "sys"), *proc = fixture_dir("healthy", "proc");
        struct harness *h;

        test_write_file(sys, "class/net/wlan0/operstate", "dormant\n");
        test_write_file(sys, "class/net/wlan0/flags", "0x1003\n");
        test_write_file(sys, "class/net/wlan0/carrier", "1\n");
        /* Drivers without operational state say "unknown": up, when carrier is there. */
        test_write_file(sys, "class/net/tun0/operstate", "unknown\n");
        test_write_file(sys, "class/net/tun0/flags", "0x1091\n");
        test_write_file(sys, "class/net/tun0/carrier", "1\n");
        h = start_trees("\"interfaces\": [\"tun0\", \"wlan0\"], \"require_default_route\": []", proc, sys, NULL);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "InterfaceDown");
        assert_message(h, "NetworkProblem", "interface wlan0 has carrier but its operstate is dormant");
        harness_free(h);

        h = start_trees("\"interfaces\": [\"tun0\"], \"require_default_route\": []", proc, sys, NULL);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "interface tun0 is up with carrier");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(sys);
        free(proc);
}

/* ---- fixtures: conntrack ---- */

static void test_conntrack_full(void **state) {
        expect_conntrack("conntrack-full", "", NH_STATUS_TRUE, "ConntrackFull",
                         "conntrack table 240000 of 262144 entries (91.6%), at or above 90%");
        expect_conntrack("conntrack-full", "\"conntrack_threshold_percent\": 95", NH_STATUS_FALSE, "ConntrackOK",
                         "conntrack table 240000 of 262144 entries (91.6%), limit 95%");
}

static void test_conntrack_edge(void **state) {
        char *dir = test_mkdtemp(), *path;
        struct harness *h;

        /* 89.99% is not 90%: the figure says so rather than round to the limit. */
        test_write_file(dir, "sys/net/netfilter/nf_conntrack_count", "8999\n");
        test_write_file(dir, "sys/net/netfilter/nf_conntrack_max", "10000\n");
        h = start_trees("\"require_default_route\": []", dir, NULL, NULL);
        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackOK");
        assert_message(h, "ConntrackFull", "conntrack table 8999 of 10000 entries (89.99%), limit 90%");
        /* At the limit is full. */
        test_write_file(dir, "sys/net/netfilter/nf_conntrack_count", "9000\n");
        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_TRUE, "ConntrackFull");
        /* The kernel checks no limit when nf_conntrack_max is 0. */
        test_write_file(dir, "sys/net/netfilter/nf_conntrack_max", "0\n");
        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackOK");
        assert_message(h, "ConntrackFull", "nf_conntrack_max is 0 (no limit)");
        /* One file without the other is not "not loaded". */
        path = test_path(dir, "sys/net/netfilter/nf_conntrack_count");
        assert_int_equal(unlink(path), 0);
        free(path);
        test_write_file(dir, "sys/net/netfilter/nf_conntrack_max", "10000\n");
        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_UNKNOWN, "ConntrackUnreadable");
        assert_message(h, "ConntrackFull", "nf_conntrack_max exists but nf_conntrack_count does not");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_no_conntrack(void **state) {
        struct harness *h = start("", "no-conntrack");

        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackNotLoaded");
        assert_message(h, "ConntrackFull", "the nf_conntrack module is not loaded");
        harness_run(h);
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackNotLoaded");
        /* The other checks go on. */
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        harness_free(h);
}

/* ---- fixtures: files that cannot be trusted ---- */

static void test_garbage(void **state) {
        expect_network("garbage", "", NH_STATUS_UNKNOWN, "RouteTableUnreadable",
                       "/proc/net/route line 3 is not a route: \"eth0?default?via?10.0.0.1\"");
        expect_network("garbage", "\"require_default_route\": [\"ipv6\"]", NH_STATUS_UNKNOWN, "RouteTableUnreadable",
                       "/proc/net/ipv6_route line 1 is not a route: \"default via fd00::1 dev eth0 metric 1024");
        expect_network("garbage", "\"interfaces\": [\"eth0\"], \"require_default_route\": []", NH_STATUS_UNKNOWN,
                       "InterfaceStateUnreadable", "/sys/class/net/eth0/operstate is not understood: \"sideways\"");
        expect_conntrack("garbage", "", NH_STATUS_UNKNOWN, "ConntrackUnreadable",
                         "/proc/sys/net/netfilter/nf_conntrack_count is not a number: \"lots\"");
}

static void test_garbage_header(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        test_write_file(dir, "net/route", "Kernel IP routing table\n0.0.0.0 10.0.0.1 UG eth0\n");
        h = start_trees("", dir, NULL, NULL);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "RouteTableUnreadable");
        assert_message(h, "NetworkProblem",
                       "/proc/net/route does not start with the Iface header: \"Kernel IP routing table\"");
        test_write_file(dir, "net/route", "");
        harness_run(h);
        assert_message(h, "NetworkProblem", "/proc/net/route is empty");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_truncated(void **state) {
        expect_network("truncated", "", NH_STATUS_UNKNOWN, "RouteTableUnreadable",
                       "/proc/net/route ends in the middle of line 4 (truncated)");
        expect_network("truncated", "\"require_default_route\": [\"ipv6\"]", NH_STATUS_UNKNOWN, "RouteTableUnreadable",
                       "/proc/net/ipv6_route ends in the middle of line 2 (truncated)");
        expect_network("truncated", "\"interfaces\": [\"eth0\"], \"require_default_route\": []", NH_STATUS_UNKNOWN,
                       "InterfaceStateUnreadable",
                       "/sys/class/net/eth0/operstate is empty or ends mid-line (truncated)");
        expect_conntrack("truncated", "", NH_STATUS_UNKNOWN, "ConntrackUnreadable",
                         "/proc/sys/net/netfilter/nf_conntrack_count is not a number: \"15\" (truncated)");
}

static void test_missing(void **state) {
        /* /proc/net/route exists on every Linux: missing means a wrong --proc-path. */
        expect_network("missing", "", NH_STATUS_UNKNOWN, "RouteTableUnreadable",
                       "cannot read /proc/net/route: No such file or directory");
        /* A kernel without IPv6 has no ipv6_route, and no IPv6 default route either. */
        expect_network("missing", "\"require_default_route\": [\"ipv6\"]", NH_STATUS_TRUE, "NoDefaultRoute",
                       "no IPv6 default route: /proc/net/ipv6_route does not exist");
        expect_network("missing", "\"interfaces\": [\"eth0\"], \"require_default_route\": []", NH_STATUS_TRUE,
                       "InterfaceNotFound", "interface eth0 does not exist");
        expect_conntrack("missing", "", NH_STATUS_FALSE, "ConntrackNotLoaded", "not loaded");
}

static void test_long_route_table(void **state) {
        char *dir = test_mkdtemp(), *text = NULL, *p;
        FILE *f;
        size_t len = 0;
        struct harness *h;

        /* Thousands of routes (a node routing to every other node's pod CIDR): streamed, not refused. */
        f = open_memstream(&text, &len);
        assert_non_null(f);
        fprintf(f, "%-127s\n", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT");
        for (unsigned i = 0; i < 5000; i++) {
                char line[128];
                snprintf(line, sizeof(line), "tunl0\t%02X%02X000A\t%08X\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0", i % 256,
                         i / 256, 0x0101000A + i);
                fprintf(f, "%-127s\n", line);
        }
        fprintf(f, "%-127s\n", "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0");
        assert_int_equal(fclose(f), 0);
        p = test_path(dir, "net");
        assert_int_equal(mkdir(p, 0755), 0);
        free(p);
        test_write_file(dir, "net/route", text);
        h = start_trees("", dir, NULL, NULL);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "IPv4 default route via 10.0.0.1 dev eth0");
        harness_free(h);
        free(text);
        test_rmtree(dir);
        free(dir);
}

static void test_no_checks(void **state) {
        /* Nothing to check is said, not dressed up as a healthy network. */
        expect_network("healthy", "\"require_default_route\": []", NH_STATUS_FALSE, "NoNetworkChecks",
                       "no network check is configured");
}

/* ---- DNS ---- */

static void test_dns_resolves(void **state) {
        struct dns_server d;
        struct harness *h;
        char expected[128];

        dns_server_open(&d, DNS_ANSWER);
        h = start_dns(&d, "\"dns_names\": [\"registry.example.test\"]");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        snprintf(expected, sizeof(expected),
                 "registry.example.test resolves (nameserver 127.0.0.1:%u from dns_servers)", (unsigned) d.port);
        assert_message(h, "NetworkProblem", expected);
        /* A and AAAA. */
        assert_int_equal(d.queries, 2);
        /* A second cycle asks again (a fresh resolver each cycle). */
        harness_run(h);
        assert_int_equal(d.queries, 4);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        dns_server_close(&d);
        harness_free(h);
}

static void test_dns_nxdomain(void **state) {
        struct dns_server d;
        struct harness *h;

        dns_server_open(&d, DNS_ANSWER);
        d.nxdomain = "gone.example.test";
        h = start_dns(&d, "\"dns_names\": [\"registry.example.test\", \"gone.example.test\"]");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        /* Only the name that failed, with the resolver's verdict. */
        assert_message(h, "NetworkProblem", "gone.example.test did not resolve: Domain name not found (nameserver");
        assert_null(strstr(harness_condition(h, "NetworkProblem")->message, "registry"));

        /* It comes back. */
        d.nxdomain = NULL;
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "all 2 DNS names resolve");
        dns_server_close(&d);
        harness_free(h);
}

static void test_dns_timeout(void **state) {
        struct dns_server d;
        struct harness *h;

        /* The resolver takes the queries and never answers. */
        dns_server_open(&d, DNS_SILENT);
        h = start_dns(&d, "\"dns_names\": [\"registry.example.test\"], \"dns_timeout\": \"300ms\"");
        harness_run(h);
        assert_true(d.queries >= 1);
        /* The check's own deadline ended the cycle, not the probe's timeout (5s). */
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_message(h, "NetworkProblem", "registry.example.test did not resolve: no answer within 300ms");
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackOK");
        dns_server_close(&d);
        harness_free(h);
}

static void test_dns_refused(void **state) {
        struct dns_server d;
        struct harness *h;
        const char *message;

        /* The server answers REFUSED; c-ares 1.18 tells it as it tells an unreachable server. */
        dns_server_open(&d, DNS_REFUSED);
        h = start_dns(&d, "\"dns_names\": [\"registry.example.test\"], \"dns_timeout\": \"300ms\"");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_message(h, "NetworkProblem", "registry.example.test did not resolve: Could not contact DNS servers");
        assert_int_equal(d.queries, 2);

        /* Nothing listens: the kernel answers ICMP port unreachable.  c-ares 1.18 sends A and AAAA on
         * one socket, and when the error comes back before the second query is sent, the second
         * send takes it and the first waits for its answer until the deadline. */
        dns_server_close(&d);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        message = harness_condition(h, "NetworkProblem")->message;
        if (!strstr(message, "registry.example.test did not resolve: Could not contact DNS servers") &&
            !strstr(message, "registry.example.test did not resolve: no answer within 300ms"))
                fail_msg("unexpected message \"%s\"", message);
        harness_free(h);
}

static void test_dns_second_server(void **state) {
        struct dns_server silent, good;
        struct harness *h;
        char *keys = NULL;

        /* The first nameserver says nothing; the second answers within the same budget. */
        dns_server_open(&silent, DNS_SILENT);
        dns_server_open(&good, DNS_ANSWER);
        assert_true(asprintf(&keys,
                             "\"dns_servers\": [\"127.0.0.1:%u\", \"127.0.0.1:%u\"], \"require_default_route\": [], "
                             "\"dns_names\": [\"registry.example.test\"], \"dns_timeout\": \"1s\"",
                             (unsigned) silent.port, (unsigned) good.port) >= 0);
        h = start(keys, "healthy");
        dns_server_attach(&silent, h);
        dns_server_attach(&good, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "registry.example.test resolves (nameservers 127.0.0.1:");
        assert_true(silent.queries >= 1);
        assert_true(good.queries >= 1);
        dns_server_close(&silent);
        dns_server_close(&good);
        harness_free(h);
        free(keys);
}

/* ---- the API server ---- */

static void test_connect_ok(void **state) {
        uint16_t port;
        int fd = loopback_socket(SOCK_STREAM, &port);
        struct harness *h;
        char expected[128];

        assert_int_equal(listen(fd, 16), 0);
        h = start_connect(port, "127.0.0.1", "");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        snprintf(expected, sizeof(expected), "the API server at 127.0.0.1:%u accepts TCP connections", (unsigned) port);
        assert_message(h, "NetworkProblem", expected);
        harness_free(h);
        close(fd);
}

static void test_connect_ipv6(void **state) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct harness *h;
        char expected[128];

        assert_true(fd >= 0);
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
                fail_msg("cannot bind [::1]: %s (is IPv6 enabled on lo?)", strerror(errno));
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        assert_int_equal(listen(fd, 16), 0);
        h = start_connect(ntohs(a.sin6_port), "[::1]", "");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        snprintf(expected, sizeof(expected), "the API server at [::1]:%u accepts", (unsigned) ntohs(a.sin6_port));
        assert_message(h, "NetworkProblem", expected);
        harness_free(h);
        close(fd);
}

static void test_connect_refused(void **state) {
        uint16_t port;
        /* Bound, not listening: the port is ours and the kernel answers a SYN with a reset. */
        int fd = loopback_socket(SOCK_STREAM, &port);
        struct harness *h = start_connect(port, "127.0.0.1", "");
        char expected[128];

        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "APIServerUnreachable");
        snprintf(expected, sizeof(expected), "TCP connect to the API server at 127.0.0.1:%u failed: Connection refused",
                 (unsigned) port);
        assert_message(h, "NetworkProblem", expected);
        harness_free(h);
        close(fd);
}

static void test_connect_timeout(void **state) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        uint16_t port;
        int fd = loopback_socket(SOCK_STREAM, &port), filler;
        struct pollfd pfd;
        struct harness *h;
        char expected[128];

        /* An accept queue of one, filled and never accepted: the kernel drops further SYNs. */
        assert_int_equal(listen(fd, 0), 0);
        filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        a.sin_port = htons(port);
        assert_true(connect(filler, (struct sockaddr *) &a, sizeof(a)) == 0 || errno == EINPROGRESS);
        pfd = (struct pollfd){.fd = filler, .events = POLLOUT};
        assert_int_equal(poll(&pfd, 1, DEADLINE_MS), 1);

        h = start_connect(port, "127.0.0.1", "\"connect_timeout\": \"200ms\"");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "APIServerUnreachable");
        snprintf(expected, sizeof(expected), "no TCP connection to the API server at 127.0.0.1:%u within 200ms",
                 (unsigned) port);
        assert_message(h, "NetworkProblem", expected);
        harness_free(h);
        close(filler);
        close(fd);
}

static void test_connect_by_name(void **state) {
        struct dns_server d;
        uint16_t port;
        int fd = loopback_socket(SOCK_STREAM, &port);
        struct harness *h;
        char *keys = NULL, expected[128];

        /* The name resolves (to 127.0.0.1) through the configured nameserver, then the connect. */
        assert_int_equal(listen(fd, 16), 0);
        dns_server_open(&d, DNS_ANSWER);
        assert_true(asprintf(&keys, "\"dns_servers\": [\"127.0.0.1:%u\"], \"connect_timeout\": \"300ms\"",
                             (unsigned) d.port) >= 0);
        h = start_connect(port, "api.example.test", keys);
        dns_server_attach(&d, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        snprintf(expected, sizeof(expected), "the API server at api.example.test:%u accepts TCP connections",
                 (unsigned) port);
        assert_message(h, "NetworkProblem", expected);
        assert_true(d.queries >= 1);

        d.nxdomain = "api.example.test";
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "APIServerUnreachable");
        assert_message(h, "NetworkProblem",
                       "the API server's name api.example.test did not resolve: Domain name not found");

        d.mode = DNS_SILENT;
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "APIServerUnreachable");
        assert_message(h, "NetworkProblem", "the API server's name api.example.test did not resolve within 300ms");
        dns_server_close(&d);
        harness_free(h);
        free(keys);
        close(fd);
}

static void test_connect_from_pod_environment(void **state) {
        uint16_t port;
        int fd = loopback_socket(SOCK_STREAM, &port);
        struct harness *h;
        char port_text[8], expected[160];

        /* In a pod, with "apiserver" empty, the service environment names the API server. */
        assert_int_equal(listen(fd, 16), 0);
        snprintf(port_text, sizeof(port_text), "%u", (unsigned) port);
        assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1), 0);
        assert_int_equal(setenv("KUBERNETES_SERVICE_PORT", port_text, 1), 0);
        h = start("\"require_default_route\": []", "healthy");
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
        assert_int_equal(unsetenv("KUBERNETES_SERVICE_PORT"), 0);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        snprintf(expected, sizeof(expected),
                 "the API server at 127.0.0.1:%u accepts TCP connections (from KUBERNETES_SERVICE_HOST and "
                 "KUBERNETES_SERVICE_PORT)",
                 (unsigned) port);
        assert_message(h, "NetworkProblem", expected);
        harness_free(h);
        close(fd);
}

static void test_dns_and_connect_together(void **state) {
        struct dns_server d;
        uint16_t port;
        int fd = loopback_socket(SOCK_STREAM, &port);
        struct harness *h;
        char *keys = NULL;

        /* Both run at once on the loop; the cycle ends when the slower (DNS, silent) gives up. */
        assert_int_equal(listen(fd, 16), 0);
        dns_server_open(&d, DNS_SILENT);
        assert_true(asprintf(&keys,
                             "\"dns_servers\": [\"127.0.0.1:%u\"], \"dns_names\": [\"registry.example.test\"], "
                             "\"dns_timeout\": \"300ms\", \"interfaces\": [\"eth0\"]",
                             (unsigned) d.port) >= 0);
        h = start_connect(port, "127.0.0.1", keys);
        dns_server_attach(&d, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_condition(h, "ConntrackFull", NH_STATUS_FALSE, "ConntrackOK");
        d.mode = DNS_ANSWER;
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "interface eth0 is up with carrier");
        dns_server_close(&d);
        harness_free(h);
        free(keys);
        close(fd);
}

static void test_probe_timeout_shorter_than_checks(void **state) {
        struct dns_server d;
        struct harness *h;
        char *keys = NULL;

        /* A probe timeout below dns_timeout: the core ends the cycle (ProbeTimeout); the next cycle
         * starts afresh, and stopping the probe mid-lookup frees everything. */
        dns_server_open(&d, DNS_SILENT);
        assert_true(asprintf(&keys,
                             "\"timeout\": \"100ms\", \"dns_servers\": [\"127.0.0.1:%u\"], \"dns_names\": "
                             "[\"registry.example.test\"], \"dns_timeout\": \"5s\"",
                             (unsigned) d.port) >= 0);
        h = start(keys, "healthy");
        dns_server_attach(&d, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "ProbeTimeout");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "ProbeTimeout");
        assert_true(d.queries >= 2);
        assert_true(nh_probe_run(h->probes[0]) == NH_PROBE_PENDING);
        dns_server_close(&d);
        harness_free(h);
        free(keys);
}

static void test_two_instances(void **state) {
        struct dns_server a, b;
        struct harness *h = NULL;
        char *config = NULL;

        /* Two instances, each with its own resolver and state: one fails, the other does not. */
        dns_server_open(&a, DNS_ANSWER);
        dns_server_open(&b, DNS_NXDOMAIN);
        assert_true(asprintf(&config,
                             "{\"probes\": {"
                             "\"net_a\": {\"plugin\": \"network\", \"raise_after\": 1, \"dns_names\": [\"a.test\"], "
                             "\"dns_servers\": [\"127.0.0.1:%u\"], \"require_default_route\": []},"
                             "\"net_b\": {\"plugin\": \"network\", \"raise_after\": 1, \"dns_names\": [\"b.test\"], "
                             "\"dns_servers\": [\"127.0.0.1:%u\"], \"require_default_route\": []}}}",
                             (unsigned) a.port, (unsigned) b.port) >= 0);
        assert_int_equal(harness_new(config, NULL, NULL, NULL, &h), 0);
        assert_int_equal(h->n_probes, 2);
        dns_server_attach(&a, h);
        dns_server_attach(&b, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_message(h, "NetworkProblem", "b.test did not resolve: Domain name not found");
        assert_int_equal(a.queries, 2);
        assert_int_equal(b.queries, 2);
        dns_server_close(&a);
        dns_server_close(&b);
        harness_free(h);
        free(config);
}

/* ---- configuration ---- */

static void expect_init_fails(const char *keys) {
        struct harness *h = start(keys, "healthy");

        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        assert_condition(h, "ConntrackFull", NH_STATUS_UNKNOWN, "ProbeInitFailed");
        harness_free(h);
}

static void expect_config_error(const char *keys, const char *needle) {
        struct harness *h = NULL;
        char *config = NULL;

        assert_true(asprintf(&config, "{\"probes\": {\"network\": {%s}}}", keys) >= 0);
        assert_true(harness_new(config, NULL, NULL, NULL, &h) < 0);
        assert_non_null(h->last_error);
        if (!strstr(h->last_error, needle)) {
                print_error("error \"%s\" does not contain \"%s\"\n", h->last_error, needle);
                fail();
        }
        harness_free(h);
        free(config);
}

static void test_config_errors(void **state) {
        expect_init_fails("\"require_default_route\": [\"ipv5\"]");
        expect_init_fails("\"interfaces\": [\"../etc\"]");
        expect_init_fails("\"interfaces\": [\"averyveryverylongname\"]");
        expect_init_fails("\"dns_names\": [\"not a name\"]");
        expect_init_fails("\"dns_servers\": [\"dns.example.test\"]");
        expect_init_fails("\"dns_servers\": [\"127.0.0.1:0\"]");
        expect_init_fails("\"apiserver\": \"10.96.0.1\"");
        expect_init_fails("\"apiserver\": \"10.96.0.1:65536\"");
        expect_init_fails("\"apiserver\": \"fd00::1:443\"");
        expect_init_fails("\"apiserver\": \"[10.96.0.1]:443\"");
        expect_init_fails("\"resolv_conf\": \"\"");

        expect_config_error("\"dns_timeout\": \"2m\"",
                            "\"dns_timeout\" in probe \"network\" must be between 0.01s and 60s");
        expect_config_error("\"connect_timeout\": \"0\"", "\"connect_timeout\" in probe \"network\" must be between");
        expect_config_error("\"conntrack_threshold_percent\": 101", "must be between 1 and 100");
        expect_config_error("\"interfaces\": \"eth0\"", "\"interfaces\" in probe \"network\" must be");
        expect_config_error("\"dns_name\": [\"a.test\"]", "did you mean \"dns_names\"?");
}

/* ---- a private network namespace (root): rtnetlink and resolv.conf ---- */

struct netns {
        int original;
};

static const char *ip_path(void) {
        static const char *const candidates[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], X_OK) == 0)
                        return candidates[i];
        fail_msg("no ip(8): install iproute2");
        return NULL;
}

/* Runs ip(8) with the arguments, NULL-terminated; asserts success. */
static void ip(const char *first, ...) {
        char *argv[16] = {(char *) ip_path(), (char *) first};
        int argc = 2, code;
        struct proc *p;
        va_list ap;

        va_start(ap, first);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        p = proc_run(argv, DEADLINE_MS, &code);
        if (code != 0)
                fail_msg("ip %s ... failed (%d): %s", first, code, p->err);
        proc_free(p);
}

/* Runs ip(8) and tells whether it succeeded; for probing what this kernel offers. */
static bool ip_ok(char *const *args) {
        char *argv[16] = {(char *) ip_path()};
        int argc = 1, code;

        for (size_t i = 0; args[i]; i++)
                argv[argc++] = args[i];
        proc_free(proc_run(argv, DEADLINE_MS, &code));
        return code == 0;
}

/*
 * A link of its own that no cable changes: dummy, else ifb, else one end of a veth pair whose
 * peer stays down.  Without IPv6 address generation: no DAD or router solicitation later.
 */
static void add_link(const char *name) {
        char peer[IF_NAMESIZE];
        char *dummy[] = {"link", "add", (char *) name, "type", "dummy", NULL};
        char *ifb[] = {"link", "add", (char *) name, "type", "ifb", NULL};
        char *veth[] = {"link", "add", (char *) name, "type", "veth", "peer", "name", peer, NULL};

        snprintf(peer, sizeof(peer), "%sp", name);
        if (!ip_ok(dummy) && !ip_ok(ifb) && !ip_ok(veth))
                fail_msg("cannot create a dummy, ifb or veth link named %s", name);
        ip("link", "set", "dev", name, "addrgenmode", "none", NULL);
}

static int enter_netns(void **state) {
        struct netns *ns = calloc(1, sizeof(*ns));

        assert_non_null(ns);
        *state = ns;
        ns->original = -1;
        if (geteuid() != 0)
                return 0; /* the test says why it cannot run */
        ns->original = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        assert_true(ns->original >= 0);
        assert_int_equal(unshare(CLONE_NEWNET), 0);
        ip("link", "set", "lo", "up", NULL);
        return 0;
}

static int leave_netns(void **state) {
        struct netns *ns = *state;

        /* Even after a failed assertion: later tests run in the namespace they started in. */
        if (ns->original >= 0) {
                assert_int_equal(setns(ns->original, CLONE_NEWNET), 0);
                close(ns->original);
        }
        free(ns);
        return 0;
}

static void require_root(void) {
        if (geteuid() != 0)
                fail_msg("this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to make a private network "
                         "namespace; CI runs the tests as root");
}

/* Dispatches what is ready on the loop now (the kernel queued rtnetlink messages synchronously). */
static void dispatch_ready(struct harness *h) {
        int r;

        while ((r = sd_event_run(h->event, 0)) > 0)
                ;
        assert_true(r >= 0);
}

static void test_netlink_triggers(void **state) {
        struct harness *h;

        require_root();
        add_link("nhd0");
        add_link("nhd1");
        add_link("nhd2");
        ip("link", "set", "nhd0", "up", NULL);
        ip("link", "set", "nhd1", "up", NULL);
        ip("addr", "add", "192.0.2.2/24", "dev", "nhd0", NULL);
        ip("addr", "add", "198.51.100.2/24", "dev", "nhd1", NULL);

        /* The real /proc: this namespace's routes.  nhd2 is watched, nhd1 not (yet). */
        h = start_trees("\"require_default_route\": [\"ipv4\", \"ipv6\"], \"interfaces\": [\"nhd0\", \"nhd2\"]", NULL,
                        NULL, NULL);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, NULL);
        dispatch_ready(h);
        h->n_triggers = 0;

        /* Routes that are not default routes, and links nobody asked about: no cycle. */
        ip("route", "add", "203.0.113.0/24", "via", "192.0.2.1", "dev", "nhd0", "onlink", NULL);
        add_link("nhd3");
        ip("link", "set", "nhd3", "up", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 0);

        /* A default route comes: at once. */
        ip("route", "add", "default", "via", "192.0.2.1", "dev", "nhd0", "onlink", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 1);
        ip("-6", "route", "add", "default", "dev", "nhd1", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 2);

        /* A watched interface changes. */
        ip("link", "set", "nhd2", "up", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 3);

        /* nhd1 carries a default route now: after a cycle has seen that, its link is watched too. */
        ip("link", "set", "nhd1", "mtu", "1400", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 3);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "InterfaceNotFound"); /* /sys is the host's */
        ip("link", "set", "nhd1", "mtu", "1500", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 4);
        harness_free(h);
}

static void test_netlink_trigger_during_dns(void **state) {
        struct dns_server d;
        struct harness *h;
        char *keys = NULL;

        require_root();
        add_link("nhd0");
        ip("link", "set", "nhd0", "up", NULL);
        ip("addr", "add", "192.0.2.2/24", "dev", "nhd0", NULL);
        dns_server_open(&d, DNS_SILENT);
        assert_true(asprintf(&keys,
                             "\"dns_servers\": [\"127.0.0.1:%u\"], \"dns_names\": [\"registry.example.test\"], "
                             "\"dns_timeout\": \"300ms\"",
                             (unsigned) d.port) >= 0);
        h = start_trees(keys, NULL, NULL, NULL);
        dns_server_attach(&d, h);

        /* The cycle waits on the silent resolver; the core would skip a cycle asked for now. */
        assert_int_equal(nh_probe_run(h->probes[0]), NH_PROBE_PENDING);
        ip("route", "add", "default", "via", "192.0.2.1", "dev", "nhd0", "onlink", NULL);
        dispatch_ready(h);
        assert_int_equal(h->n_triggers, 0);
        /* So the probe asks when its cycle has ended. */
        harness_run_pending(h);
        assert_int_equal(h->n_triggers, 1);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "NoDefaultRoute");
        /* The cycle it asked for sees the route. */
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_int_equal(h->n_triggers, 1);
        dns_server_close(&d);
        harness_free(h);
        free(keys);
}

/* A resolver on port 53 of a loopback address: resolv.conf has no port syntax. */
static void dns_server_open_53(struct dns_server *d, enum dns_mode mode, const char *address) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};

        *d = (struct dns_server){.mode = mode, .port = 53};
        assert_int_equal(inet_pton(AF_INET, address, &a.sin_addr), 1);
        d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(d->fd >= 0);
        assert_int_equal(bind(d->fd, (struct sockaddr *) &a, sizeof(a)), 0);
}

static void test_resolv_conf(void **state) {
        struct dns_server d1, d2;
        char *root = test_mkdtemp(), *path;
        struct harness *h;

        require_root();
        /* This namespace's loopback is ours: port 53 is free on all of 127/8. */
        dns_server_open_53(&d1, DNS_ANSWER, "127.0.0.1");
        dns_server_open_53(&d2, DNS_NXDOMAIN, "127.0.0.2");
        test_write_file(root, "etc/resolv.conf",
                        "# generated\nsearch cluster.local example.test\noptions ndots:5 timeout:9\n"
                        "nameserver bogus\nnameserver 127.0.0.1 # local\nnameserver 127.0.0.2\n"
                        "nameserver ::1\nnameserver 127.0.0.4\n");
        h = start_trees("\"dns_names\": [\"registry.example.test\"], \"require_default_route\": []", NULL, NULL, root);
        dns_server_attach(&d1, h);
        dns_server_attach(&d2, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        /* The first three, as the C library; neither ndots nor search is applied: A and AAAA of the name. */
        assert_message(h, "NetworkProblem",
                       "registry.example.test resolves (nameservers 127.0.0.1, 127.0.0.2, ::1 from /etc/resolv.conf)");
        assert_int_equal(d1.queries, 2);
        assert_int_equal(d2.queries, 0);

        /* Changes are read at the next cycle. */
        test_write_file(root, "etc/resolv.conf", "nameserver 127.0.0.2\n");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_TRUE, "DNSResolutionFailed");
        assert_message(h, "NetworkProblem",
                       "registry.example.test did not resolve: Domain name not found (nameserver 127.0.0.2 from "
                       "/etc/resolv.conf)");
        assert_int_equal(d2.queries, 2);

        /* None, or no file: 127.0.0.1, as the C library does. */
        test_write_file(root, "etc/resolv.conf", "search example.test\n");
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem",
                       "(nameserver 127.0.0.1, the C library's default: /etc/resolv.conf names none)");
        path = test_path(root, "etc/resolv.conf");
        assert_int_equal(unlink(path), 0);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "/etc/resolv.conf does not exist");
        assert_int_equal(d1.queries, 6);

        /* Unreadable: the check cannot tell. */
        assert_int_equal(mkdir(path, 0755), 0);
        free(path);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_UNKNOWN, "ResolverUnavailable");
        assert_message(h, "NetworkProblem", "cannot read /etc/resolv.conf: Is a directory");
        dns_server_close(&d1);
        dns_server_close(&d2);
        harness_free(h);
        test_rmtree(root);
        free(root);
}

static void test_resolv_conf_key(void **state) {
        struct dns_server d;
        char *root = test_mkdtemp(), *keys = NULL;
        struct harness *h;

        /* Another file, relative to --root-path; dns_servers would win over it. */
        dns_server_open(&d, DNS_ANSWER);
        test_write_file(root, "run/probe-resolv.conf", "nameserver 127.0.0.9\n");
        assert_true(asprintf(&keys, "\"resolv_conf\": \"/run/probe-resolv.conf\", \"dns_names\": [\"a.test\"], "
                                    "\"require_default_route\": [], \"dns_timeout\": \"300ms\"") >= 0);
        h = start_trees(keys, NULL, NULL, root);
        harness_run(h);
        assert_message(h, "NetworkProblem", "(nameserver 127.0.0.9 from /run/probe-resolv.conf)");
        harness_free(h);
        free(keys);
        assert_true(asprintf(&keys,
                             "\"resolv_conf\": \"/run/probe-resolv.conf\", \"dns_names\": [\"a.test\"], "
                             "\"require_default_route\": [], \"dns_servers\": [\"127.0.0.1:%u\"]",
                             (unsigned) d.port) >= 0);
        h = start_trees(keys, NULL, NULL, root);
        dns_server_attach(&d, h);
        harness_run(h);
        assert_condition(h, "NetworkProblem", NH_STATUS_FALSE, "NetworkReady");
        assert_message(h, "NetworkProblem", "from dns_servers");
        dns_server_close(&d);
        harness_free(h);
        free(keys);
        test_rmtree(root);
        free(root);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_healthy),
                cmocka_unit_test(test_default_routes),
                cmocka_unit_test(test_no_default_route_v4),
                cmocka_unit_test(test_no_default_route_v6),
                cmocka_unit_test(test_no_carrier),
                cmocka_unit_test(test_interface_down),
                cmocka_unit_test(test_interface_not_found),
                cmocka_unit_test(test_interface_dormant),
                cmocka_unit_test(test_conntrack_full),
                cmocka_unit_test(test_conntrack_edge),
                cmocka_unit_test(test_no_conntrack),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_garbage_header),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_long_route_table),
                cmocka_unit_test(test_no_checks),
                cmocka_unit_test(test_dns_resolves),
                cmocka_unit_test(test_dns_nxdomain),
                cmocka_unit_test(test_dns_timeout),
                cmocka_unit_test(test_dns_refused),
                cmocka_unit_test(test_dns_second_server),
                cmocka_unit_test(test_connect_ok),
                cmocka_unit_test(test_connect_ipv6),
                cmocka_unit_test(test_connect_refused),
                cmocka_unit_test(test_connect_timeout),
                cmocka_unit_test(test_connect_by_name),
                cmocka_unit_test(test_connect_from_pod_environment),
                cmocka_unit_test(test_dns_and_connect_together),
                cmocka_unit_test(test_probe_timeout_shorter_than_checks),
                cmocka_unit_test(test_two_instances),
                cmocka_unit_test(test_config_errors),
                cmocka_unit_test_setup_teardown(test_netlink_triggers, enter_netns, leave_netns),
                cmocka_unit_test_setup_teardown(test_netlink_trigger_during_dns, enter_netns, leave_netns),
                cmocka_unit_test_setup_teardown(test_resolv_conf, enter_netns, leave_netns),
                cmocka_unit_test_setup_teardown(test_resolv_conf_key, enter_netns, leave_netns),
        };

        /* A pod's environment would add an API server check to every test. */
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
