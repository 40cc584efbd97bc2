/* SPDX-License-Identifier: MIT */
/*
 * network — can this node reach what it needs, and is its conntrack table filling up?
 *
 * Reads /proc/net/route, /proc/net/ipv6_route and /proc/sys/net/netfilter/ through the proc root
 * (--proc-path), /sys/class/net/IF/ through the sys root (--sys-path) and the resolver
 * configuration through the root (--root-path), so a DaemonSet reads the host's files and
 * tests read fixture trees.  /proc/net and the netlink socket show the network namespace the
 * daemon runs in: in a DaemonSet the pod needs hostNetwork: true to see the node's network.
 * NetworkUnavailable belongs to the CNI plugin and the route controller and is never reported.
 *
 * NetworkProblem (healthy reason NetworkReady)
 *     One check per problem key, each with its own hysteresis; True when any is.  Checks are
 *     reported in this order, so when a link goes down the interface is the reason shown, not
 *     the default route that vanished with it.
 *     problem "carrier:IF", for each name in `interfaces`, from /sys/class/net/IF/{operstate,
 *     flags,carrier}:
 *         True  InterfaceNotFound    there is no /sys/class/net/IF
 *         True  InterfaceDown        administratively down (no IFF_UP), or carrier but an
 *                                    operstate other than up or unknown (dormant, testing, …)
 *         True  NoCarrier            up, but carrier is 0 (cable, switch port or veth peer down)
 *         Unknown InterfaceStateUnreadable  a file is garbage, truncated or unreadable
 *     problem "route4" / "route6", for "ipv4" / "ipv6" in `require_default_route`: a default
 *     route (destination 0/0, up, not unreachable or prohibit) in /proc/net/route or
 *     /proc/net/ipv6_route; the message names the gateway and device of the lowest metric.
 *         True  NoDefaultRoute       none; the message says IPv4 or IPv6 (a kernel without
 *                                    IPv6 has no ipv6_route file: no IPv6 default route)
 *         Unknown RouteTableUnreadable  garbage, truncated or unreadable (/proc/net/route is
 *                                    always there on Linux: missing means a wrong --proc-path)
 *     problem "dns", when `dns_names` is not empty: every name is looked up (A and AAAA, as
 *     written: no search domains, no /etc/hosts) at the nameservers of `dns_servers`, or else
 *     of `resolv_conf` (its first three, as the C library; none or no file: 127.0.0.1, as
 *     the C library).  The lookups run on the loop (c-ares) and share one dns_timeout.
 *         True  DNSResolutionFailed  a name did not resolve: the message names it, with the
 *                                    resolver's error (not found, refused, …) or the timeout
 *         Unknown ResolverUnavailable  the resolver configuration cannot be read
 *     problem "connect", when `apiserver` is set, or else in a pod (KUBERNETES_SERVICE_HOST and
 *     KUBERNETES_SERVICE_PORT: the service address pods use; outside a pod no check): a
 *     non-blocking TCP connect to each address in turn, name resolution included, within
 *     connect_timeout.  Only TCP: no TLS, so the API server may log a handshake error per check.
 *         True  APIServerUnreachable the connection was refused, failed or timed out, or the
 *                                    name did not resolve: the message says which, with host:port
 *         Unknown ResolverUnavailable  as for "dns", when the address is a name
 *     With no check configured the condition is False with reason NoNetworkChecks.
 *     The DNS and connect checks run at once, on the loop: a cycle lasts up to the larger of
 *     dns_timeout and connect_timeout, which must stay below the probe's `timeout` (else the
 *     core ends the cycle first: ProbeTimeout).  The plugin ABI does not tell a probe its
 *     timeout, so an overrun is logged (once) rather than refused at start.
 *
 * ConntrackFull (healthy reason ConntrackOK)
 *     From nf_conntrack_count and nf_conntrack_max in /proc/sys/net/netfilter/.  A full table
 *     makes the kernel drop packets of new connections ("nf_conntrack: table full").
 *         True  ConntrackFull        count at or above conntrack_threshold_percent of max
 *         False ConntrackOK
 *         False ConntrackNotLoaded   no nf_conntrack module: no table that could fill (logged once)
 *         Unknown ConntrackUnreadable  garbage, truncated, unreadable, or only one of the files
 *
 * A link going down or a default route vanishing is seen at once, not at the next interval: an
 * rtnetlink socket (RTMGRP_LINK and the route groups of the required families) wakes the probe
 * when a default route changes or a link changes that is named in `interfaces` or carried a
 * default route at the last cycle (IPv4 drops the routes of a link that goes down without a
 * word), and the probe asks the core for a cycle (nh_trigger).  A change seen while the DNS or
 * connect checks of a cycle still run asks for the next cycle as soon as this one ends.
 *
 * Keys (each row of the table below says why its default is what it is):
 *     require_default_route  list of "ipv4", "ipv6"      default ["ipv4"]
 *     interfaces             list of interface names      default [] (names differ per machine)
 *     dns_names              list of DNS names            default [] (the node's resolver does not
 *                                                         know "kubernetes.default")
 *     dns_servers            list of "addr", "addr:port", "[v6]:port"   default []: resolv_conf's
 *     resolv_conf            path under --root-path       default "/etc/resolv.conf"
 *     dns_timeout            duration, 10ms … 60s         default "2s"
 *     apiserver              "host:port", "[v6]:port"     default "": in a pod
 *                                                         KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT
 *     connect_timeout        duration, 10ms … 60s         default "2s"
 *     conntrack_threshold_percent  number, 1 … 100        default 90
 *
 * Messages carry the figures, e.g. "interface eth0 has no carrier (operstate down)",
 * "no IPv4 default route in /proc/net/route", "example.com did not resolve: no answer within 2s
 * (nameserver 10.0.0.10 from /etc/resolv.conf)", "TCP connect to the API server at
 * 10.96.0.1:443 failed: Connection refused", "conntrack table 235930 of 262144 entries (90.0%),
 * at or above 90%".
 */
#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <nodehealth/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../common/probe-text.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define MESSAGE_SIZE 1024
#define SMALL_FILE_SIZE 256 /* sysfs attributes and conntrack counters are a line */
#define RESOLV_CONF_SIZE 65536 /* glibc reads any size; real ones are a few hundred bytes */
#define LINE_BUFFER_SIZE 4096 /* route lines are 128 (IPv4) and 149 (IPv6) bytes */
#define NETLINK_BUFFER_SIZE 32768 /* a link message with all its attributes fits with room */
#define MAX_NAMESERVERS 3 /* glibc's MAXNS: the C library ignores further nameserver lines */
#define MAX_ROUTE_DEVICES 16 /* devices of default routes whose link changes wake the probe */
#define MAX_APISERVER_ADDRESSES 8
#define SERVERS_TEXT_SIZE 256

struct network_config {
        char **require_default_route;
        char **interfaces;
        char **dns_names;
        char **dns_servers;
        char *resolv_conf;
        uint64_t dns_timeout; /* µs */
        char *apiserver;
        uint64_t connect_timeout; /* µs */
        double conntrack_threshold_percent;
};

static const struct nh_cfg_entry network_config_table[] = {
        /* A node without an IPv4 default route reaches nothing outside its own subnets; IPv6 is
         * required only where the cluster is dual-stack or IPv6-only, which the operator knows. */
        {.type = NH_CFG_STRING_LIST,
         .key = "require_default_route",
         .def = "ipv4",
         .offset = offsetof(struct network_config, require_default_route),
         .help = "address families that must have a default route: \"ipv4\", \"ipv6\""},
        /* Interface names differ per machine (eth0, ens5, bond0): none can be a default. */
        {.type = NH_CFG_STRING_LIST,
         .key = "interfaces",
         .def = "",
         .offset = offsetof(struct network_config, interfaces),
         .help = "interfaces that must be up with carrier"},
        /* Empty: the lookups go to the node's resolver (the host's resolv.conf), which does not
         * know cluster names such as "kubernetes.default" (those need the cluster DNS and a pod's
         * search path), and no external name is one every cluster, air-gapped ones included,
         * must resolve.  List the names the node needs, such as its image registry. */
        {.type = NH_CFG_STRING_LIST,
         .key = "dns_names",
         .def = "",
         .offset = offsetof(struct network_config, dns_names),
         .help = "DNS names that must resolve, looked up as written (no search domains)"},
        {.type = NH_CFG_STRING_LIST,
         .key = "dns_servers",
         .def = "",
         .offset = offsetof(struct network_config, dns_servers),
         .help = "nameservers to ask (\"10.0.0.10\", \"10.0.0.10:53\", \"[fd00::a]:53\") instead of "
                 "those of resolv_conf"},
        {.type = NH_CFG_STRING,
         .key = "resolv_conf",
         .def = "/etc/resolv.conf",
         .offset = offsetof(struct network_config, resolv_conf),
         .help = "resolver configuration whose nameservers are asked, relative to --root-path"},
        /* The C library's resolver waits 5 s per server; a healthy one answers in milliseconds,
         * and 2 s leaves room within the default probe timeout of 5 s. */
        {.type = NH_CFG_DURATION,
         .key = "dns_timeout",
         .def = "2s",
         .offset = offsetof(struct network_config, dns_timeout),
         .help = "time all dns_names have to resolve; keep it below the probe's timeout",
         .min = 0.01,
         .max = 60},
        {.type = NH_CFG_STRING,
         .key = "apiserver",
         .def = "",
         .offset = offsetof(struct network_config, apiserver),
         .help = "API server \"host:port\" that must accept a TCP connection; empty: in a pod, "
                 "KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, else no check"},
        /* A SYN answered within a round trip; one lost SYN is retransmitted after 1 s, so 2 s
         * survives a single loss and still fits the default probe timeout of 5 s. */
        {.type = NH_CFG_DURATION,
         .key = "connect_timeout",
         .def = "2s",
         .offset = offsetof(struct network_config, connect_timeout),
         .help = "time the API server has to accept the connection, name resolution included; keep "
                 "it below the probe's timeout",
         .min = 0.01,
         .max = 60},
        /* node-problem-detector's network_problem.sh warns at 90% as well: at 100% the kernel
         * drops new connections, and the last 10% fill within seconds in a connection storm. */
        {.type = NH_CFG_DOUBLE,
         .key = "conntrack_threshold_percent",
         .def = "90",
         .offset = offsetof(struct network_config, conntrack_threshold_percent),
         .help = "share of nf_conntrack_max at or above which ConntrackFull is True",
         .min = 1,
         .max = 100},
        {0},
};

static const struct nh_condition_decl network_conditions[] = {
        {.type = "NetworkProblem",
         .healthy_reason = "NetworkReady",
         .help = "no default route, an interface down or without carrier, a DNS name that does not "
                 "resolve, or an API server that does not accept a TCP connection"},
        {.type = "ConntrackFull",
         .healthy_reason = "ConntrackOK",
         .help = "the conntrack table is at or above conntrack_threshold_percent of nf_conntrack_max"},
        {0},
};

enum connect_state {
        CONNECT_OFF, /* no check this cycle */
        CONNECT_RESOLVING,
        CONNECT_CONNECTING,
        CONNECT_DONE,
};

struct network;

struct dns_query {
        struct network *n;
        const char *name; /* the config's */
        bool done;
        int status; /* ARES_SUCCESS or an ARES_E* code; ARES_ETIMEOUT also when the deadline passed */
};

struct network {
        struct nh_probe_ctx *ctx;
        const struct network_config *config;
        bool want_route4, want_route6;

        /* The API server; host NULL: no connect check. */
        char *api_host;
        char api_port[8];
        uint16_t api_port_number;
        char *api_label; /* "10.96.0.1:443", "[fd00::1]:443", "api.example.com:6443" */
        bool api_from_env;
        bool api_literal; /* an address: no lookup */

        /* rtnetlink */
        int netlink_fd;
        bool netlink_error_logged;
        char route_devices[MAX_ROUTE_DEVICES][IF_NAMESIZE];
        size_t n_route_devices;

        /* The cycle's asynchronous part. */
        bool cycle_running; /* DNS or connect checks in flight */
        bool in_probe; /* inside probe(): its return value ends the cycle, not nh_cycle_done() */
        bool trigger_deferred; /* a change seen during the cycle: another cycle when it ends */
        bool stopping; /* in done(): the core's watches are gone already */
        bool overlap_logged;
        ares_channel channel;
        char servers_csv[SERVERS_TEXT_SIZE];
        char servers_text[SERVERS_TEXT_SIZE]; /* "nameserver 10.0.0.10 from /etc/resolv.conf" */

        struct dns_query *queries;
        size_t n_queries, dns_pending;
        bool dns_started;
        uint64_t dns_deadline; /* CLOCK_MONOTONIC µs */

        enum connect_state connect_state;
        int connect_fd;
        struct sockaddr_storage addresses[MAX_APISERVER_ADDRESSES];
        socklen_t address_lengths[MAX_APISERVER_ADDRESSES];
        size_t n_addresses, next_address;
        uint64_t connect_deadline;
        bool connect_ok, connect_timed_out;
        int connect_error; /* errno of the last failed attempt */
        int resolve_status; /* ARES_SUCCESS, or why the name did not resolve */

        bool conntrack_absent_logged;
        char line[LINE_BUFFER_SIZE];
        char buf[RESOLV_CONF_SIZE];
        _Alignas(struct nlmsghdr) char netlink_buf[NETLINK_BUFFER_SIZE];
};

static void cycle_step(struct network *n);

/* ---- small helpers ---- */

/* The loop's timers run on CLOCK_MONOTONIC; nh_now() is the core's clock, which tests move. */
static uint64_t now_mono(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* "2s", "1500ms": the way durations are written in the configuration. */
static const char *format_span(char *buf, size_t size, uint64_t usec) {
        if (usec >= USEC_PER_SEC && usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%llus", (unsigned long long) (usec / USEC_PER_SEC));
        else
                snprintf(buf, size, "%llums", (unsigned long long) ((usec + USEC_PER_MSEC / 2) / USEC_PER_MSEC));
        return buf;
}

/* Up to size-1 characters of the line at s, non-printable ones as '?': for error messages. */
static const char *excerpt(char *buf, size_t size, const char *s) {
        size_t n = 0;

        for (; s[n] && s[n] != '\n' && n + 1 < size; n++)
                buf[n] = isprint((unsigned char) s[n]) ? s[n] : '?';
        buf[n] = '\0';
        return buf;
}

/* Appends to a message; what does not fit is cut. */
__attribute__((format(printf, 3, 4))) static void append(char *msg, size_t size, const char *format, ...) {
        size_t len = strnlen(msg, size);
        va_list ap;

        if (len + 1 >= size)
                return;
        va_start(ap, format);
        vsnprintf(msg + len, size - len, format, ap);
        va_end(ap);
}

/* Exactly 1 to max_digits hexadecimal digits.  0 or -EINVAL. */
static int parse_hex32(const char *s, size_t max_digits, uint32_t *ret) {
        uint32_t v = 0;
        size_t i;

        for (i = 0; s[i]; i++) {
                int d;
                if (i >= max_digits || !isxdigit((unsigned char) s[i]))
                        return -EINVAL;
                d = isdigit((unsigned char) s[i]) ? s[i] - '0' : tolower((unsigned char) s[i]) - 'a' + 10;
                v = v << 4 | (uint32_t) d;
        }
        if (i == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* A decimal counter followed by a newline, as /proc/sys prints one.  0, -EINVAL, -ERANGE. */
static int parse_counter_line(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || strcmp(end, "\n") != 0)
                return -EINVAL;
        *ret = (uint64_t) v;
        return 0;
}

/* Splits a line at blanks, in place; returns the number of fields (at most max). */
static size_t split_fields(char *line, char **fields, size_t max) {
        size_t n = 0;
        char *p = line;

        while (n < max) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                fields[n++] = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                if (*p)
                        *p++ = '\0';
        }
        while (*p == ' ' || *p == '\t')
                p++;
        return *p ? max + 1 : n; /* max + 1: more fields than expected */
}

static bool valid_ifname(const char *s) {
        size_t len = strlen(s);

        if (len == 0 || len >= IF_NAMESIZE || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] == '/' || s[i] == ':' || !isgraph((unsigned char) s[i]))
                        return false;
        return true;
}

static bool valid_hostname(const char *s) {
        size_t len = strlen(s);

        if (len == 0 || len > 254)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
                        return false;
        return true;
}

static bool is_address(const char *s) {
        struct in6_addr a6;
        struct in_addr a4;

        return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

/*
 * Splits "host:port", "[v6]:port", and without a port (when default_port is not NULL) "host",
 * "[v6]" or a bare IPv6 address.  0, or -EINVAL.
 */
static int split_host_port(const char *s, const char *default_port, char *host, size_t host_size, char *port,
                           size_t port_size, uint16_t *ret_port) {
        const char *colon, *port_text = NULL;
        size_t host_len;
        char *end;
        unsigned long p;

        if (*s == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return -EINVAL;
                s++;
                host_len = (size_t) (close - s);
                if (close[1] == ':')
                        port_text = close + 2;
                else if (close[1] != '\0')
                        return -EINVAL;
                if (host_len == 0 || !memchr(s, ':', host_len))
                        return -EINVAL; /* brackets are for IPv6 addresses */
        } else {
                colon = strrchr(s, ':');
                if (colon && strchr(s, ':') == colon) {
                        host_len = (size_t) (colon - s);
                        port_text = colon + 1;
                } else
                        host_len = strlen(s); /* no colon, or a bare IPv6 address */
        }
        if (host_len == 0 || host_len >= host_size)
                return -EINVAL;
        if (!port_text && !default_port)
                return -EINVAL;
        if (port_text) {
                if (!isdigit((unsigned char) *port_text))
                        return -EINVAL;
                errno = 0;
                p = strtoul(port_text, &end, 10);
                if (errno != 0 || *end != '\0' || p < 1 || p > 65535)
                        return -EINVAL;
                snprintf(port, port_size, "%lu", p);
                if (ret_port)
                        *ret_port = (uint16_t) p;
        } else
                snprintf(port, port_size, "%s", default_port);
        memcpy(host, s, host_len);
        host[host_len] = '\0';
        return 0;
}

/* "10.0.0.1:53", "[fd00::1]:53": one element of a c-ares server list, or a message label. */
static void join_host_port(char *buf, size_t size, const char *host, const char *port) {
        snprintf(buf, size, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
}

/* ---- reading files line by line (route tables have no size limit) ---- */

struct line_reader {
        int fd;
        char *buf;
        size_t size, start, end;
        bool eof;
};

/*
 * The next line, NUL-terminated without its newline, in *ret; *ret_complete is false when the
 * file ended in the middle of it.  1, 0 at the end, -E2BIG for a line longer than the buffer,
 * or a read error.
 */
static int line_next(struct line_reader *lr, char **ret, bool *ret_complete) {
        for (;;) {
                char *nl = memchr(lr->buf + lr->start, '\n', lr->end - lr->start);
                ssize_t k;

                if (nl) {
                        *nl = '\0';
                        *ret = lr->buf + lr->start;
                        *ret_complete = true;
                        lr->start = (size_t) (nl - lr->buf) + 1;
                        return 1;
                }
                if (lr->eof) {
                        if (lr->start == lr->end)
                                return 0;
                        lr->buf[lr->end] = '\0';
                        *ret = lr->buf + lr->start;
                        *ret_complete = false;
                        lr->start = lr->end;
                        return 1;
                }
                memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
                lr->end -= lr->start;
                lr->start = 0;
                if (lr->end >= lr->size - 1)
                        return -E2BIG;
                k = read(lr->fd, lr->buf + lr->end, lr->size - 1 - lr->end);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        lr->eof = true;
                lr->end += (size_t) k;
        }
}

/* ---- interfaces ---- */

static const char *const operstates[] = {"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"};

/* A one-line sysfs attribute without its newline.  0, a read error, or -EBADMSG (truncated). */
static int read_attribute(struct network *n, const char *ifname, const char *attr, char *buf, size_t size) {
        char path[64];
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "class/net/%s/%s", ifname, attr);
        r = nh_read_file(n->ctx, NH_ROOT_SYS, path, buf, size, &len);
        if (r < 0)
                return r;
        if (len == 0 || buf[len - 1] != '\n')
                return -EBADMSG;
        buf[len - 1] = '\0';
        return 0;
}

static void attribute_error(char *msg, size_t size, const char *ifname, const char *attr, int r, const char *text) {
        char what[40];

        if (r == -EBADMSG)
                snprintf(msg, size, "/sys/class/net/%s/%s is empty or ends mid-line (truncated)", ifname, attr);
        else if (r == 0)
                snprintf(msg, size, "/sys/class/net/%s/%s is not understood: \"%s\"", ifname, attr,
                         excerpt(what, sizeof(what), text));
        else
                snprintf(msg, size, "cannot read /sys/class/net/%s/%s: %s", ifname, attr, strerror(-r));
}

static void check_interface(struct network *n, const char *ifname, struct nh_observation *obs, char *msg, size_t size) {
        char operstate[SMALL_FILE_SIZE], flags_text[SMALL_FILE_SIZE], carrier[SMALL_FILE_SIZE];
        bool known = false;
        uint32_t flags;
        int r;

        obs->status = NH_STATUS_UNKNOWN;
        obs->reason = "InterfaceStateUnreadable";

        r = read_attribute(n, ifname, "operstate", operstate, sizeof(operstate));
        if (r == -ENOENT) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "InterfaceNotFound";
                snprintf(msg, size, "interface %s does not exist (no /sys/class/net/%s)", ifname, ifname);
                return;
        }
        for (size_t i = 0; r == 0 && i < sizeof(operstates) / sizeof(operstates[0]); i++)
                known = known || strcmp(operstate, operstates[i]) == 0;
        if (r < 0 || !known) {
                attribute_error(msg, size, ifname, "operstate", r, operstate);
                return;
        }

        r = read_attribute(n, ifname, "flags", flags_text, sizeof(flags_text));
        if (r < 0 || strncmp(flags_text, "0x", 2) != 0 || parse_hex32(flags_text + 2, 8, &flags) < 0) {
                attribute_error(msg, size, ifname, "flags", r, flags_text);
                return;
        }
        if (!(flags & IFF_UP)) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "InterfaceDown";
                snprintf(msg, size, "interface %s is administratively down (operstate %s)", ifname, operstate);
                return;
        }

        /* The kernel refuses to read carrier (EINVAL) of an interface that is not running. */
        r = read_attribute(n, ifname, "carrier", carrier, sizeof(carrier));
        if (r == -EINVAL) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "InterfaceDown";
                snprintf(msg, size, "interface %s is not running (operstate %s)", ifname, operstate);
                return;
        }
        if (r < 0 || (strcmp(carrier, "0") != 0 && strcmp(carrier, "1") != 0)) {
                attribute_error(msg, size, ifname, "carrier", r, carrier);
                return;
        }
        if (strcmp(carrier, "0") == 0) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "NoCarrier";
                snprintf(msg, size, "interface %s has no carrier (operstate %s)", ifname, operstate);
                return;
        }
        /* "unknown" is what drivers without operational state (tun, dummy, some NICs) say. */
        if (strcmp(operstate, "up") != 0 && strcmp(operstate, "unknown") != 0) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "InterfaceDown";
                snprintf(msg, size, "interface %s has carrier but its operstate is %s", ifname, operstate);
                return;
        }
        obs->status = NH_STATUS_FALSE;
        obs->reason = "NetworkReady";
        snprintf(msg, size, "interface %s is up with carrier", ifname);
}

/* ---- default routes ---- */

struct default_route {
        bool found;
        uint32_t metric;
        char device[IF_NAMESIZE];
        char gateway[INET6_ADDRSTRLEN]; /* "" when the route has none (point-to-point) */
};

static void remember_route_device(struct network *n, const char *device) {
        for (size_t i = 0; i < n->n_route_devices; i++)
                if (strcmp(n->route_devices[i], device) == 0)
                        return;
        if (n->n_route_devices < MAX_ROUTE_DEVICES)
                snprintf(n->route_devices[n->n_route_devices++], IF_NAMESIZE, "%s", device);
}

static void consider_route(struct network *n, struct default_route *best, uint32_t metric, const char *device,
                           const char *gateway) {
        remember_route_device(n, device);
        if (best->found && metric >= best->metric)
                return;
        best->found = true;
        best->metric = metric;
        snprintf(best->device, sizeof(best->device), "%s", device);
        snprintf(best->gateway, sizeof(best->gateway), "%s", gateway);
}

/* One line of /proc/net/route after the header.  0, or -EINVAL. */
static int parse_route4_line(struct network *n, char *line, struct default_route *best) {
        char *f[11], gateway[INET_ADDRSTRLEN] = "";
        uint32_t destination, gw, flags, mask;
        struct in_addr a;
        long metric;
        char *end;

        if (split_fields(line, f, 11) != 11 || !valid_ifname(f[0]) || parse_hex32(f[1], 8, &destination) < 0 ||
            parse_hex32(f[2], 8, &gw) < 0 || parse_hex32(f[3], 4, &flags) < 0 || parse_hex32(f[7], 8, &mask) < 0)
                return -EINVAL;
        errno = 0;
        metric = strtol(f[6], &end, 10); /* the kernel prints the u32 with %d */
        if (errno != 0 || end == f[6] || *end != '\0' || metric < INT32_MIN || metric > INT32_MAX)
                return -EINVAL;
        if (destination != 0 || mask != 0 || !(flags & RTF_UP) || (flags & RTF_REJECT))
                return 0;
        /* The kernel prints the address as the native-endian value of its network-order word. */
        a.s_addr = gw;
        if (gw != 0)
                inet_ntop(AF_INET, &a, gateway, sizeof(gateway));
        consider_route(n, best, (uint32_t) metric, f[0], gateway);
        return 0;
}

static int parse_hex128(const char *s, struct in6_addr *ret) {
        if (strlen(s) != 32)
                return -EINVAL;
        for (size_t i = 0; i < 16; i++) {
                char byte[3] = {s[2 * i], s[2 * i + 1], '\0'};
                uint32_t v;
                if (parse_hex32(byte, 2, &v) < 0)
                        return -EINVAL;
                ret->s6_addr[i] = (uint8_t) v;
        }
        return 0;
}

/* One line of /proc/net/ipv6_route.  0, or -EINVAL. */
static int parse_route6_line(struct network *n, char *line, struct default_route *best) {
        char *f[10], gateway[INET6_ADDRSTRLEN] = "";
        struct in6_addr destination, source, next_hop;
        uint32_t prefix, source_prefix, metric, refcnt, use, flags;

        if (split_fields(line, f, 10) != 10 || parse_hex128(f[0], &destination) < 0 ||
            parse_hex32(f[1], 2, &prefix) < 0 || parse_hex128(f[2], &source) < 0 ||
            parse_hex32(f[3], 2, &source_prefix) < 0 || parse_hex128(f[4], &next_hop) < 0 ||
            parse_hex32(f[5], 8, &metric) < 0 || parse_hex32(f[6], 8, &refcnt) < 0 || parse_hex32(f[7], 8, &use) < 0 ||
            parse_hex32(f[8], 8, &flags) < 0 || !valid_ifname(f[9]) || prefix > 128)
                return -EINVAL;
        /* The unreachable null entry on lo is a default route with RTF_REJECT: no way out. */
        if (prefix != 0 || !IN6_IS_ADDR_UNSPECIFIED(&destination) || !(flags & RTF_UP) || (flags & RTF_REJECT))
                return 0;
        if (!IN6_IS_ADDR_UNSPECIFIED(&next_hop))
                inet_ntop(AF_INET6, &next_hop, gateway, sizeof(gateway));
        consider_route(n, best, metric, f[9], gateway);
        return 0;
}

static void check_route(struct network *n, int family, struct nh_observation *obs, char *msg, size_t size) {
        const char *path = family == AF_INET ? "/proc/net/route" : "/proc/net/ipv6_route";
        const char *name = family == AF_INET ? "IPv4" : "IPv6";
        struct line_reader lr = {.buf = n->line, .size = sizeof(n->line)};
        struct default_route best = {0};
        char what[48], copy[48], *line = NULL;
        bool complete = false;
        unsigned lineno = 0;
        int r, dirfd = nh_root_fd(n->ctx, NH_ROOT_PROC);

        obs->status = NH_STATUS_UNKNOWN;
        obs->reason = "RouteTableUnreadable";
        /* Streamed, not read whole: a node routing to thousands of peers has a table that large. */
        lr.fd = dirfd < 0 ? dirfd : openat(dirfd, path + strlen("/proc/"), O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (lr.fd < 0) {
                r = dirfd < 0 ? dirfd : -errno;
                if (r == -ENOENT && family == AF_INET6) {
                        obs->status = NH_STATUS_TRUE;
                        obs->reason = "NoDefaultRoute";
                        snprintf(msg, size,
                                 "no IPv6 default route: %s does not exist (kernel without IPv6, or "
                                 "ipv6.disable=1)",
                                 path);
                } else
                        snprintf(msg, size, "cannot read %s: %s", path, strerror(-r));
                return;
        }
        while ((r = line_next(&lr, &line, &complete)) > 0) {
                lineno++;
                if (!complete) {
                        snprintf(msg, size, "%s ends in the middle of line %u (truncated)", path, lineno);
                        goto out;
                }
                if (family == AF_INET && lineno == 1) {
                        if (strncmp(line, "Iface\tDestination\t", 18) != 0) {
                                snprintf(msg, size, "%s does not start with the Iface header: \"%s\"", path,
                                         excerpt(what, sizeof(what), line));
                                goto out;
                        }
                        continue;
                }
                excerpt(copy, sizeof(copy), line); /* for the message: parsing splits the line */
                if ((family == AF_INET ? parse_route4_line(n, line, &best) : parse_route6_line(n, line, &best)) < 0) {
                        snprintf(msg, size, "%s line %u is not a route: \"%s\"", path, lineno, copy);
                        goto out;
                }
        }
        if (r < 0) {
                if (r == -E2BIG)
                        snprintf(msg, size, "%s line %u is longer than %d bytes: not a route table", path, lineno + 1,
                                 LINE_BUFFER_SIZE);
                else
                        snprintf(msg, size, "cannot read %s: %s", path, strerror(-r));
                goto out;
        }
        if (family == AF_INET && lineno == 0) {
                snprintf(msg, size, "%s is empty", path);
                goto out;
        }
        if (!best.found) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "NoDefaultRoute";
                snprintf(msg, size, "no %s default route in %s", name, path);
                goto out;
        }
        obs->status = NH_STATUS_FALSE;
        obs->reason = "NetworkReady";
        if (best.gateway[0])
                snprintf(msg, size, "%s default route via %s dev %s", name, best.gateway, best.device);
        else
                snprintf(msg, size, "%s default route dev %s", name, best.device);
out:
        close(lr.fd);
}

/* ---- conntrack ---- */

static int read_conntrack(struct network *n, const char *file, uint64_t *ret, char *msg, size_t size) {
        char path[64], text[SMALL_FILE_SIZE], what[40];
        int r;

        snprintf(path, sizeof(path), "sys/net/netfilter/%s", file);
        r = nh_read_file(n->ctx, NH_ROOT_PROC, path, text, sizeof(text), NULL);
        if (r < 0) {
                snprintf(msg, size, "cannot read /proc/%s: %s", path, strerror(-r));
                return r;
        }
        r = parse_counter_line(text, ret);
        if (r < 0)
                snprintf(msg, size, "/proc/%s is not a number: \"%s\"%s", path, excerpt(what, sizeof(what), text),
                         r == -ERANGE         ? " (out of range)"
                         : strchr(text, '\n') ? ""
                                              : " (truncated)");
        return r;
}

static void check_conntrack(struct network *n, struct nh_observation *obs, char *msg, size_t size) {
        double limit = n->config->conntrack_threshold_percent, percent;
        uint64_t count = 0, max = 0;
        char percent_text[32];
        int rc, rm;

        obs->status = NH_STATUS_UNKNOWN;
        obs->reason = "ConntrackUnreadable";
        rc = read_conntrack(n, "nf_conntrack_count", &count, msg, size);
        if (rc < 0 && rc != -ENOENT)
                return;
        rm = read_conntrack(n, "nf_conntrack_max", &max, msg, size);
        if (rc == -ENOENT && rm == -ENOENT) {
                if (!n->conntrack_absent_logged)
                        nh_log(n->ctx, NH_LOG_NOTICE,
                               "/proc/sys/net/netfilter/nf_conntrack_count does not exist: the nf_conntrack "
                               "module is not loaded; ConntrackFull says ConntrackNotLoaded");
                n->conntrack_absent_logged = true;
                obs->status = NH_STATUS_FALSE;
                obs->reason = "ConntrackNotLoaded";
                snprintf(msg, size, "the nf_conntrack module is not loaded: no connection tracking table to fill");
                return;
        }
        if (rc == -ENOENT) {
                snprintf(msg, size, "/proc/sys/net/netfilter/nf_conntrack_max exists but nf_conntrack_count does not");
                return;
        }
        if (rm < 0)
                return;
        if (max == 0) {
                /* The kernel checks the limit only when it is not 0. */
                obs->status = NH_STATUS_FALSE;
                obs->reason = "ConntrackOK";
                snprintf(msg, size, "conntrack table %llu entries, nf_conntrack_max is 0 (no limit)",
                         (unsigned long long) count);
                return;
        }
        percent = 100.0 * (double) count / (double) max;
        probe_format_percent(percent_text, sizeof(percent_text), percent, limit);
        if (percent >= limit) {
                obs->status = NH_STATUS_TRUE;
                obs->reason = "ConntrackFull";
                snprintf(msg, size, "conntrack table %llu of %llu entries (%s), at or above %g%%",
                         (unsigned long long) count, (unsigned long long) max, percent_text, limit);
        } else {
                obs->status = NH_STATUS_FALSE;
                obs->reason = "ConntrackOK";
                snprintf(msg, size, "conntrack table %llu of %llu entries (%s), limit %g%%", (unsigned long long) count,
                         (unsigned long long) max, percent_text, limit);
        }
}

/* ---- the resolver ---- */

/*
 * The nameservers to ask: dns_servers, else resolv_conf's.  Fills servers_csv (for c-ares)
 * and servers_text (for messages).  0, or a negative errno with the reason in msg.
 */
static int load_servers(struct network *n, char *msg, size_t size) {
        const char *path = n->config->resolv_conf, *source = "dns_servers";
        char host[INET6_ADDRSTRLEN + 8], port[8], entry[INET6_ADDRSTRLEN + 16], list[SERVERS_TEXT_SIZE] = "";
        size_t count = 0, len = 0;
        int r;

        n->servers_csv[0] = '\0';
        if (n->config->dns_servers[0]) {
                for (char **s = n->config->dns_servers; *s; s++) {
                        /* Checked in init. */
                        if (split_host_port(*s, "53", host, sizeof(host), port, sizeof(port), NULL) < 0)
                                return -EINVAL;
                        join_host_port(entry, sizeof(entry), host, port);
                        append(n->servers_csv, sizeof(n->servers_csv), "%s%s", count ? "," : "", entry);
                        append(list, sizeof(list), "%s%s", count ? ", " : "", entry);
                        count++;
                }
        } else {
                r = nh_read_file(n->ctx, NH_ROOT_HOST, path, n->buf, sizeof(n->buf), &len);
                if (r < 0 && r != -ENOENT) {
                        snprintf(msg, size, "cannot read %s: %s", path,
                                 r == -EFBIG ? "larger than 64 KiB" : strerror(-r));
                        return r;
                }
                for (char *p = r < 0 ? NULL : n->buf; p && *p && count < MAX_NAMESERVERS;) {
                        char *eol = strchr(p, '\n'), *f[3];

                        if (eol)
                                *eol = '\0';
                        /* "nameserver ADDRESS [...]", as the C library reads it; c-ares takes no scoped address. */
                        if (split_fields(p, f, 3) >= 2 && strcmp(f[0], "nameserver") == 0 && is_address(f[1])) {
                                join_host_port(entry, sizeof(entry), f[1], "53");
                                append(n->servers_csv, sizeof(n->servers_csv), "%s%s", count ? "," : "", entry);
                                append(list, sizeof(list), "%s%s", count ? ", " : "", f[1]);
                                count++;
                        }
                        p = eol ? eol + 1 : NULL;
                }
                if (count == 0) {
                        snprintf(n->servers_csv, sizeof(n->servers_csv), "127.0.0.1:53");
                        snprintf(n->servers_text, sizeof(n->servers_text),
                                 "nameserver 127.0.0.1, the C library's default: %s %s", path,
                                 r < 0 ? "does not exist" : "names none");
                        return 0;
                }
                source = path;
        }
        snprintf(n->servers_text, sizeof(n->servers_text), "%s %s from %s", count > 1 ? "nameservers" : "nameserver",
                 list, source);
        return 0;
}

static void on_ares_io(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct network *n = userdata;

        if (!n->channel)
                return;
        /* An ICMP error (port unreachable) is EPOLLERR: c-ares sees it when it reads. */
        ares_process_fd(n->channel, revents & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
                        revents & EPOLLOUT ? fd : ARES_SOCKET_BAD);
        cycle_step(n);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable) {
        struct network *n = data;
        int r;

        if (n->stopping)
                return; /* the core ended the watches before done() */
        if (!readable && !writable) {
                (void) nh_unwatch_fd(n->ctx, fd); /* c-ares closes it next */
                return;
        }
        r = nh_watch_fd(n->ctx, fd, (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0), on_ares_io, n);
        if (r < 0)
                nh_log(n->ctx, NH_LOG_ERR, "Cannot watch a resolver socket: %s; its lookups will time out",
                       strerror(-r));
}

static int channel_open(struct network *n, uint64_t budget, char *msg, size_t size) {
        size_t n_servers = 1;
        char lookups[] = "b"; /* DNS only: /etc/hosts would hide a broken resolver */
        struct ares_options o = {
                .flags = ARES_FLAG_NOSEARCH,
                .tries = 1,
                .ndots = 1,
                .ndomains = 0,
                .lookups = lookups,
                .sock_state_cb = on_sock_state,
                .sock_state_cb_data = n,
        };
        int r;

        for (const char *p = n->servers_csv; *p; p++)
                n_servers += *p == ',';
        /* One try per server, together within the budget: the deadline is the check's. */
        o.timeout = (int) (budget / n_servers / USEC_PER_MSEC);
        if (o.timeout < 1)
                o.timeout = 1;
        r = ares_init_options(&n->channel, &o,
                              ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS | ARES_OPT_DOMAINS |
                                      ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB | ARES_OPT_NOROTATE);
        if (r != ARES_SUCCESS) {
                n->channel = NULL;
                snprintf(msg, size, "cannot start a resolver: %s", ares_strerror(r));
                return r == ARES_ENOMEM ? -ENOMEM : -EIO;
        }
        r = ares_set_servers_ports_csv(n->channel, n->servers_csv);
        if (r != ARES_SUCCESS) {
                snprintf(msg, size, "the resolver does not take the nameservers \"%s\": %s", n->servers_csv,
                         ares_strerror(r));
                ares_destroy(n->channel);
                n->channel = NULL;
                return -EINVAL;
        }
        return 0;
}

static void channel_close(struct network *n) {
        ares_channel c = n->channel;

        /* Pending lookups are answered ARES_EDESTRUCTION, which the callbacks ignore. */
        n->channel = NULL;
        if (c)
                ares_destroy(c);
}

/* ---- DNS names ---- */

static void on_dns_answer(void *arg, int status, int timeouts, struct ares_addrinfo *result) {
        struct dns_query *q = arg;

        ares_freeaddrinfo(result);
        if (q->done)
                return;
        q->done = true;
        q->status = status;
        q->n->dns_pending--;
}

static void dns_start(struct network *n) {
        struct ares_addrinfo_hints hints = {.ai_flags = ARES_AI_NOSORT, .ai_family = AF_UNSPEC};

        n->dns_started = true;
        n->dns_deadline = now_mono() + n->config->dns_timeout;
        n->dns_pending = n->n_queries;
        for (size_t i = 0; i < n->n_queries; i++)
                n->queries[i] = (struct dns_query){.n = n, .name = n->config->dns_names[i]};
        /* An answer may come at once (an address as name): counted before the first lookup. */
        for (size_t i = 0; i < n->n_queries; i++)
                ares_getaddrinfo(n->channel, n->queries[i].name, NULL, &hints, on_dns_answer, &n->queries[i]);
}

static void dns_report(struct network *n) {
        char msg[MESSAGE_SIZE] = "", span[32];
        size_t failed = 0;
        int r;

        format_span(span, sizeof(span), n->config->dns_timeout);
        for (size_t i = 0; i < n->n_queries; i++) {
                const struct dns_query *q = &n->queries[i];

                if (q->status == ARES_SUCCESS)
                        continue;
                if (q->status == ARES_ETIMEOUT)
                        append(msg, sizeof(msg), "%s%s did not resolve: no answer within %s", failed ? "; " : "",
                               q->name, span);
                else
                        append(msg, sizeof(msg), "%s%s did not resolve: %s", failed ? "; " : "", q->name,
                               ares_strerror(q->status));
                failed++;
        }
        if (failed == 0) {
                if (n->n_queries == 1)
                        append(msg, sizeof(msg), "%s resolves", n->queries[0].name);
                else
                        append(msg, sizeof(msg), "all %zu DNS names resolve", n->n_queries);
        }
        append(msg, sizeof(msg), " (%s)", n->servers_text);
        r = nh_report(n->ctx, &(struct nh_observation){
                                      .type = "NetworkProblem",
                                      .problem = "dns",
                                      .status = failed ? NH_STATUS_TRUE : NH_STATUS_FALSE,
                                      .reason = failed ? "DNSResolutionFailed" : "NetworkReady",
                                      .message = msg,
                              });
        if (r < 0)
                nh_log(n->ctx, NH_LOG_ERR, "Cannot report the DNS check: %s", strerror(-r));
}

/* ---- the API server ---- */

static void connect_close(struct network *n) {
        if (n->connect_fd < 0)
                return;
        if (!n->stopping)
                (void) nh_unwatch_fd(n->ctx, n->connect_fd);
        close(n->connect_fd);
        n->connect_fd = -1;
}

static void on_connect_io(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata);

/* Tries the next address; state CONNECT_DONE when none is left. */
static void connect_next(struct network *n) {
        while (n->next_address < n->n_addresses) {
                const struct sockaddr_storage *a = &n->addresses[n->next_address];
                socklen_t len = n->address_lengths[n->next_address++];
                int fd, r;

                fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        n->connect_error = errno;
                        continue;
                }
                if (connect(fd, (const struct sockaddr *) a, len) == 0) {
                        close(fd);
                        n->connect_ok = true;
                        n->connect_state = CONNECT_DONE;
                        return;
                }
                if (errno != EINPROGRESS) {
                        n->connect_error = errno;
                        close(fd);
                        continue;
                }
                r = nh_watch_fd(n->ctx, fd, EPOLLOUT, on_connect_io, n);
                if (r < 0) {
                        n->connect_error = -r;
                        close(fd);
                        continue;
                }
                n->connect_fd = fd;
                return;
        }
        n->connect_state = CONNECT_DONE;
}

static void on_connect_io(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct network *n = userdata;
        socklen_t len = sizeof(int);
        int error = 0;

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        connect_close(n);
        if (error == 0) {
                n->connect_ok = true;
                n->connect_state = CONNECT_DONE;
        } else {
                n->connect_error = error;
                connect_next(n);
        }
        cycle_step(n);
}

static void on_api_resolved(void *arg, int status, int timeouts, struct ares_addrinfo *result) {
        struct network *n = arg;

        if (n->stopping || n->connect_state != CONNECT_RESOLVING || status == ARES_EDESTRUCTION ||
            status == ARES_ECANCELLED) {
                ares_freeaddrinfo(result);
                return;
        }
        for (const struct ares_addrinfo_node *a = status == ARES_SUCCESS ? result->nodes : NULL;
             a && n->n_addresses < MAX_APISERVER_ADDRESSES; a = a->ai_next) {
                if (a->ai_addrlen > sizeof(n->addresses[0]))
                        continue;
                memcpy(&n->addresses[n->n_addresses], a->ai_addr, a->ai_addrlen);
                n->address_lengths[n->n_addresses++] = a->ai_addrlen;
        }
        ares_freeaddrinfo(result);
        if (n->n_addresses == 0) {
                n->resolve_status = status == ARES_SUCCESS ? ARES_ENODATA : status;
                n->connect_state = CONNECT_DONE;
                return;
        }
        n->connect_state = CONNECT_CONNECTING;
        connect_next(n);
}

static void connect_start(struct network *n) {
        n->connect_deadline = now_mono() + n->config->connect_timeout;
        n->connect_ok = n->connect_timed_out = false;
        n->connect_error = 0;
        n->resolve_status = ARES_SUCCESS;
        n->n_addresses = n->next_address = 0;

        if (n->api_literal) {
                struct sockaddr_in *in = (struct sockaddr_in *) &n->addresses[0];
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &n->addresses[0];
                uint16_t port = n->api_port_number;

                memset(&n->addresses[0], 0, sizeof(n->addresses[0]));
                if (inet_pton(AF_INET, n->api_host, &in->sin_addr) == 1) {
                        in->sin_family = AF_INET;
                        in->sin_port = htons(port);
                        n->address_lengths[0] = sizeof(*in);
                } else {
                        (void) inet_pton(AF_INET6, n->api_host, &in6->sin6_addr);
                        in6->sin6_family = AF_INET6;
                        in6->sin6_port = htons(port);
                        n->address_lengths[0] = sizeof(*in6);
                }
                n->n_addresses = 1;
                n->connect_state = CONNECT_CONNECTING;
                connect_next(n);
                return;
        }
        n->connect_state = CONNECT_RESOLVING;
        ares_getaddrinfo(n->channel, n->api_host, n->api_port,
                         &(struct ares_addrinfo_hints){.ai_flags = ARES_AI_NOSORT | ARES_AI_NUMERICSERV,
                                                       .ai_family = AF_UNSPEC,
                                                       .ai_socktype = SOCK_STREAM},
                         on_api_resolved, n);
}

static void connect_report(struct network *n) {
        char msg[MESSAGE_SIZE], span[32], from[64] = "";
        int r;

        format_span(span, sizeof(span), n->config->connect_timeout);
        if (n->api_from_env)
                snprintf(from, sizeof(from), " (from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)");
        if (n->connect_ok)
                snprintf(msg, sizeof(msg), "the API server at %s accepts TCP connections%s", n->api_label, from);
        else if ((n->connect_timed_out && n->n_addresses == 0) || n->resolve_status == ARES_ETIMEOUT)
                snprintf(msg, sizeof(msg), "the API server's name %s did not resolve within %s%s", n->api_host, span,
                         from);
        else if (n->connect_timed_out)
                snprintf(msg, sizeof(msg), "no TCP connection to the API server at %s within %s%s", n->api_label, span,
                         from);
        else if (n->n_addresses == 0)
                snprintf(msg, sizeof(msg), "the API server's name %s did not resolve: %s (%s)%s", n->api_host,
                         ares_strerror(n->resolve_status), n->servers_text, from);
        else
                snprintf(msg, sizeof(msg), "TCP connect to the API server at %s failed: %s%s", n->api_label,
                         strerror(n->connect_error), from);
        r = nh_report(n->ctx, &(struct nh_observation){
                                      .type = "NetworkProblem",
                                      .problem = "connect",
                                      .status = n->connect_ok ? NH_STATUS_FALSE : NH_STATUS_TRUE,
                                      .reason = n->connect_ok ? "NetworkReady" : "APIServerUnreachable",
                                      .message = msg,
                              });
        if (r < 0)
                nh_log(n->ctx, NH_LOG_ERR, "Cannot report the API server check: %s", strerror(-r));
}

/* ---- the asynchronous part of a cycle ---- */

static void on_timer(struct nh_probe_ctx *ctx, void *userdata) {
        struct network *n = userdata;

        if (n->channel)
                ares_process_fd(n->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* its own timeouts */
        cycle_step(n);
}

/* Asks for a cycle now, or as soon as the running one ends (the core skips a cycle asked for meanwhile). */
static void request_cycle(struct network *n) {
        if (n->cycle_running)
                n->trigger_deferred = true;
        else
                (void) nh_trigger(n->ctx);
}

static void cycle_end(struct network *n) {
        nh_set_timer(n->ctx, 0, NULL, NULL);
        channel_close(n);
        connect_close(n);
        n->cycle_running = false;
        n->dns_started = false;
        n->connect_state = CONNECT_OFF;
}

static void cycle_finish(struct network *n) {
        if (n->dns_started)
                dns_report(n);
        if (n->connect_state != CONNECT_OFF)
                connect_report(n);
        cycle_end(n);
        if (!n->in_probe)
                nh_cycle_done(n->ctx);
        if (n->trigger_deferred) {
                n->trigger_deferred = false;
                (void) nh_trigger(n->ctx);
        }
}

/* After every event: applies the deadlines, ends the cycle when all checks are answered, else waits. */
static void cycle_step(struct network *n) {
        uint64_t now = now_mono(), next = UINT64_MAX;
        struct timeval tv;
        int r;

        if (!n->cycle_running)
                return;
        if (n->dns_pending > 0 && now >= n->dns_deadline) {
                for (size_t i = 0; i < n->n_queries; i++)
                        if (!n->queries[i].done) {
                                n->queries[i].done = true;
                                n->queries[i].status = ARES_ETIMEOUT;
                        }
                n->dns_pending = 0;
        }
        if ((n->connect_state == CONNECT_RESOLVING || n->connect_state == CONNECT_CONNECTING) &&
            now >= n->connect_deadline) {
                connect_close(n);
                n->connect_timed_out = true;
                n->connect_state = CONNECT_DONE;
        }
        if (n->dns_pending == 0 && n->connect_state != CONNECT_RESOLVING && n->connect_state != CONNECT_CONNECTING) {
                cycle_finish(n);
                return;
        }

        if (n->dns_pending > 0)
                next = n->dns_deadline;
        if ((n->connect_state == CONNECT_RESOLVING || n->connect_state == CONNECT_CONNECTING) &&
            n->connect_deadline < next)
                next = n->connect_deadline;
        if (n->channel && ares_timeout(n->channel, NULL, &tv)) {
                uint64_t t = now + (uint64_t) tv.tv_sec * USEC_PER_SEC + (uint64_t) tv.tv_usec;
                if (t < next)
                        next = t;
        }
        r = nh_set_timer(n->ctx, next - now, on_timer, n);
        if (r < 0) {
                /* Nothing would wake the cycle: it ends now, as if every deadline had passed. */
                nh_log(n->ctx, NH_LOG_ERR, "Cannot set a timer: %s; ending the network checks", strerror(-r));
                n->dns_deadline = n->connect_deadline = 0;
                cycle_step(n);
        }
}

/* An Unknown for a check that could not start. */
static void report_unavailable(struct network *n, const char *problem, const char *msg) {
        (void) nh_report(n->ctx, &(struct nh_observation){.type = "NetworkProblem",
                                                          .problem = problem,
                                                          .status = NH_STATUS_UNKNOWN,
                                                          .reason = "ResolverUnavailable",
                                                          .message = msg});
}

/* Starts the DNS and connect checks; the cycle is pending while n->cycle_running. */
static void cycle_start(struct network *n) {
        bool dns = n->n_queries > 0, api = n->api_host != NULL;
        char msg[MESSAGE_SIZE];

        if (dns || (api && !n->api_literal)) {
                uint64_t budget = dns ? n->config->dns_timeout : n->config->connect_timeout;

                if (load_servers(n, msg, sizeof(msg)) < 0 || channel_open(n, budget, msg, sizeof(msg)) < 0) {
                        if (dns)
                                report_unavailable(n, "dns", msg);
                        if (api && !n->api_literal) {
                                report_unavailable(n, "connect", msg);
                                api = false;
                        }
                        dns = false;
                }
        }
        if (!dns && !api)
                return;
        n->cycle_running = true;
        if (dns)
                dns_start(n);
        if (api)
                connect_start(n);
        cycle_step(n);
}

/* ---- rtnetlink ---- */

static bool watched_device(struct network *n, const char *name) {
        for (char **i = n->config->interfaces; *i; i++)
                if (strcmp(*i, name) == 0)
                        return true;
        for (size_t i = 0; i < n->n_route_devices; i++)
                if (strcmp(n->route_devices[i], name) == 0)
                        return true;
        return false;
}

/* Does this batch of messages change anything a check looks at? */
static bool netlink_relevant(struct network *n, const void *buf, size_t len) {
        for (const struct nlmsghdr *h = buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
                if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) {
                        const struct ifinfomsg *ifi = NLMSG_DATA(h);
                        size_t attrs_len;

                        /* AF_INET6 and AF_BRIDGE ones tell of per-protocol settings, not of the link. */
                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)) || ifi->ifi_family != AF_UNSPEC)
                                continue;
                        attrs_len = IFLA_PAYLOAD(h);
                        for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, attrs_len); a = RTA_NEXT(a, attrs_len)) {
                                const char *name = RTA_DATA(a);
                                if (a->rta_type == IFLA_IFNAME && strnlen(name, RTA_PAYLOAD(a)) < RTA_PAYLOAD(a) &&
                                    watched_device(n, name))
                                        return true;
                        }
                } else if (h->nlmsg_type == RTM_NEWROUTE || h->nlmsg_type == RTM_DELROUTE) {
                        const struct rtmsg *rt = NLMSG_DATA(h);

                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)) || rt->rtm_dst_len != 0)
                                continue;
                        if ((rt->rtm_family == AF_INET && n->want_route4) ||
                            (rt->rtm_family == AF_INET6 && n->want_route6))
                                return true;
                }
        }
        return false;
}

static void on_netlink(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct network *n = userdata;
        bool relevant = false;

        for (;;) {
                struct sockaddr_nl from = {0};
                socklen_t from_len = sizeof(from);
                ssize_t len = recvfrom(fd, n->netlink_buf, sizeof(n->netlink_buf), MSG_TRUNC, (struct sockaddr *) &from,
                                       &from_len);

                if (len < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        if (errno == ENOBUFS) {
                                relevant = true; /* messages were lost: look again */
                                continue;
                        }
                        if (!n->netlink_error_logged)
                                nh_log(ctx, NH_LOG_WARNING, "Reading the rtnetlink socket failed: %s", strerror(errno));
                        n->netlink_error_logged = true;
                        relevant = true;
                        break;
                }
                if (from.nl_pid != 0)
                        continue; /* only the kernel speaks for the network */
                if ((size_t) len > sizeof(n->netlink_buf))
                        relevant = true; /* cut: cannot tell what it said */
                else
                        relevant = relevant || netlink_relevant(n, n->netlink_buf, (size_t) len);
        }
        if (relevant)
                request_cycle(n);
}

/* Subscribes to link and default-route changes; without it the probe still sees them at its interval. */
static void netlink_open(struct network *n) {
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        int fd, r;

        if (!n->config->interfaces[0] && !n->want_route4 && !n->want_route6)
                return;
        sa.nl_groups =
                RTMGRP_LINK | (n->want_route4 ? RTMGRP_IPV4_ROUTE : 0) | (n->want_route6 ? RTMGRP_IPV6_ROUTE : 0);
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                nh_log(n->ctx, NH_LOG_WARNING,
                       "Cannot open an rtnetlink socket: %s; link and route changes are seen at the next interval",
                       strerror(errno));
                if (fd >= 0)
                        close(fd);
                return;
        }
        r = nh_watch_fd(n->ctx, fd, EPOLLIN, on_netlink, n);
        if (r < 0) {
                /* No loop (a one-shot run): the cycle reads everything anyway. */
                if (r != -EOPNOTSUPP)
                        nh_log(n->ctx, NH_LOG_WARNING,
                               "Cannot watch the rtnetlink socket: %s; link and route changes are seen at the next "
                               "interval",
                               strerror(-r));
                close(fd);
                return;
        }
        n->netlink_fd = fd;
}

/* ---- the descriptor's callbacks ---- */

static void network_free(struct network *n) {
        if (!n)
                return;
        n->stopping = true;
        channel_close(n);
        connect_close(n);
        if (n->netlink_fd >= 0)
                close(n->netlink_fd);
        free(n->queries);
        free(n->api_host);
        free(n->api_label);
        free(n);
        ares_library_cleanup();
}

/* The API server from `apiserver`, else from the environment of a pod.  0 or -EINVAL. */
static int setup_apiserver(struct nh_probe_ctx *ctx, struct network *n) {
        const char *spec = n->config->apiserver, *env_host, *env_port;
        char host[256], label[300], *joined = NULL;
        int r;

        if (!spec || !*spec) {
                env_host = getenv("KUBERNETES_SERVICE_HOST");
                env_port = getenv("KUBERNETES_SERVICE_PORT");
                if (!env_host || !*env_host)
                        return 0; /* not in a pod: no check */
                if (asprintf(&joined, strchr(env_host, ':') ? "[%s]:%s" : "%s:%s", env_host,
                             env_port && *env_port ? env_port : "") < 0)
                        return -ENOMEM;
                r = split_host_port(joined, NULL, host, sizeof(host), n->api_port, sizeof(n->api_port),
                                    &n->api_port_number);
                free(joined);
                if (r < 0 || !is_address(host)) {
                        /* The environment is not this probe's configuration: a bad one skips the check. */
                        nh_log(ctx, NH_LOG_WARNING,
                               "KUBERNETES_SERVICE_HOST/PORT (\"%s\", \"%s\") is not an address and port; the API "
                               "server check is off (set \"apiserver\")",
                               env_host, env_port ? env_port : "");
                        return 0;
                }
                n->api_from_env = true;
        } else {
                r = split_host_port(spec, NULL, host, sizeof(host), n->api_port, sizeof(n->api_port),
                                    &n->api_port_number);
                if (r < 0 || (!is_address(host) && !valid_hostname(host))) {
                        nh_log(ctx, NH_LOG_ERR,
                               "\"apiserver\" must be \"host:port\" or \"[IPv6]:port\" with a port from 1 to "
                               "65535, not \"%s\"",
                               spec);
                        return -EINVAL;
                }
        }
        n->api_literal = is_address(host);
        join_host_port(label, sizeof(label), host, n->api_port);
        n->api_host = strdup(host);
        n->api_label = strdup(label);
        return n->api_host && n->api_label ? 0 : -ENOMEM;
}

static int network_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct network_config *c = config;
        struct network *n;
        char host[INET6_ADDRSTRLEN + 8], port[8];
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->ctx = ctx;
        n->config = c;
        n->netlink_fd = n->connect_fd = -1;
        r = ares_library_init(ARES_LIB_INIT_ALL);
        if (r != ARES_SUCCESS) {
                free(n);
                nh_log(ctx, NH_LOG_ERR, "Cannot initialise c-ares: %s", ares_strerror(r));
                return -ENOMEM;
        }

        r = -EINVAL;
        for (char **f = c->require_default_route; *f; f++) {
                if (strcmp(*f, "ipv4") == 0)
                        n->want_route4 = true;
                else if (strcmp(*f, "ipv6") == 0)
                        n->want_route6 = true;
                else {
                        nh_log(ctx, NH_LOG_ERR,
                               "\"require_default_route\" lists \"%s\": only \"ipv4\" and \"ipv6\" exist", *f);
                        goto fail;
                }
        }
        for (char **i = c->interfaces; *i; i++)
                if (!valid_ifname(*i)) {
                        nh_log(ctx, NH_LOG_ERR, "\"interfaces\" lists \"%s\", which is not an interface name", *i);
                        goto fail;
                }
        for (char **d = c->dns_names; *d; d++) {
                if (!valid_hostname(*d)) {
                        nh_log(ctx, NH_LOG_ERR, "\"dns_names\" lists \"%s\", which is not a DNS name", *d);
                        goto fail;
                }
                n->n_queries++;
        }
        for (char **s = c->dns_servers; *s; s++)
                if (split_host_port(*s, "53", host, sizeof(host), port, sizeof(port), NULL) < 0 || !is_address(host)) {
                        nh_log(ctx, NH_LOG_ERR,
                               "\"dns_servers\" lists \"%s\": write an address, \"address:port\" or \"[IPv6]:port\"",
                               *s);
                        goto fail;
                }
        if (!c->resolv_conf || !*c->resolv_conf) {
                nh_log(ctx, NH_LOG_ERR, "\"resolv_conf\" must name a file");
                goto fail;
        }
        r = setup_apiserver(ctx, n);
        if (r < 0)
                goto fail;
        if (n->n_queries > 0) {
                n->queries = calloc(n->n_queries, sizeof(*n->queries));
                if (!n->queries) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        netlink_open(n); /* last: nothing fails after the watch */
        *ret_state = n;
        return 0;
fail:
        network_free(n);
        return r;
}

static int network_probe(struct nh_probe_ctx *ctx, void *state) {
        struct network *n = state;
        struct nh_observation obs;
        char msg[MESSAGE_SIZE], problem[32];
        bool any = false;
        int r = 0, k;

        if (n->cycle_running) {
                /* The core's timeout ended the last cycle before our deadlines did. */
                if (!n->overlap_logged)
                        nh_log(ctx, NH_LOG_WARNING,
                               "a cycle began before the DNS and connect checks of the last one ended: set the "
                               "probe's \"timeout\" above dns_timeout and connect_timeout");
                n->overlap_logged = true;
                cycle_end(n);
                n->trigger_deferred = false;
        }
        n->in_probe = true;
        n->n_route_devices = 0;

        /* Interfaces first: when a link goes down, it is the reason, not the route that went with it. */
        for (char **i = n->config->interfaces; *i; i++) {
                snprintf(problem, sizeof(problem), "carrier:%s", *i);
                obs = (struct nh_observation){.type = "NetworkProblem", .problem = problem, .message = msg};
                check_interface(n, *i, &obs, msg, sizeof(msg));
                k = nh_report(ctx, &obs);
                r = r < 0 ? r : k;
                any = true;
        }
        for (size_t i = 0; i < 2; i++) {
                int family = i == 0 ? AF_INET : AF_INET6;

                if (!(family == AF_INET ? n->want_route4 : n->want_route6))
                        continue;
                obs = (struct nh_observation){
                        .type = "NetworkProblem", .problem = family == AF_INET ? "route4" : "route6", .message = msg};
                check_route(n, family, &obs, msg, sizeof(msg));
                k = nh_report(ctx, &obs);
                r = r < 0 ? r : k;
                any = true;
        }
        if (!any && n->n_queries == 0 && !n->api_host) {
                k = nh_report(ctx, &(struct nh_observation){
                                           .type = "NetworkProblem",
                                           .status = NH_STATUS_FALSE,
                                           .reason = "NoNetworkChecks",
                                           .message = "no network check is configured (require_default_route, "
                                                      "interfaces and dns_names are empty, and no API server is known)",
                                   });
                r = r < 0 ? r : k;
        }

        obs = (struct nh_observation){.type = "ConntrackFull", .message = msg};
        check_conntrack(n, &obs, msg, sizeof(msg));
        k = nh_report(ctx, &obs);
        r = r < 0 ? r : k;

        if (r >= 0)
                cycle_start(n);
        n->in_probe = false;
        return r < 0 ? r : n->cycle_running ? NH_PROBE_PENDING : 0;
}

static void network_done(void *state) {
        network_free(state);
}

NH_PLUGIN_DEFINE(.name = "network",
                 .description = "default routes, interface carrier, DNS, the API server, and the conntrack table",
                 .conditions = network_conditions, .config = network_config_table,
                 .config_size = sizeof(struct network_config), .init = network_init, .probe = network_probe,
                 .done = network_done);
