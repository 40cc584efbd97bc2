/* SPDX-License-Identifier: MIT */
/*
 * Kubernetes credentials: every source (--kubeconfig, --apiserver, $KUBECONFIG lists, the
 * in-cluster environment), every kubeconfig field, and every error with its position.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kubeconfig.h"
#include "testlib.h"
#include "util.h"

/* "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" and friends, base64'd. */
#define PEM_CA "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
#define PEM_CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define PEM_CERT "-----BEGIN CERTIFICATE-----\nME\n-----END CERTIFICATE-----\n"
#define PEM_CERT_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1FCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define PEM_KEY "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"
#define PEM_KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCktFWQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg=="

struct fixture {
        char *dir;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        f->dir = test_mkdtemp();
        test_write_file(f->dir, "ca.crt", PEM_CA);
        test_write_file(f->dir, "sub/client.crt", PEM_CERT);
        test_write_file(f->dir, "sub/client.key", PEM_KEY);
        test_write_file(f->dir, "token", "  tok-from-file\n");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        test_rmtree(f->dir);
        free(f->dir);
        free(f);
        return 0;
}

static char *path(struct fixture *f, const char *rel) {
        return test_path(f->dir, rel);
}

/* Loads with `s`; returns 0 and the credentials, or the error with f->dir replaced by "DIR". */
static int load(struct fixture *f, const struct nh_kube_sources *s, struct nh_kube_credentials **ret,
                char **ret_error) {
        char *error = NULL;
        int r = nh_kube_credentials_load(s, ret, &error);

        *ret_error = NULL;
        if (r >= 0 || r == -ENODATA) {
                assert_null(error);
                return r;
        }
        assert_int_equal(r, -EINVAL);
        assert_non_null(error);
        /* Make messages comparable: every occurrence of the temporary directory becomes DIR. */
        size_t n = strlen(f->dir);
        char *out = calloc(1, strlen(error) + 1), *o = out;
        for (const char *p = error; *p;) {
                if (strncmp(p, f->dir, n) == 0) {
                        memcpy(o, "DIR", 3);
                        o += 3;
                        p += n;
                } else
                        *o++ = *p++;
        }
        free(error);
        *ret_error = out;
        return r;
}

static struct nh_kube_credentials *load_ok(struct fixture *f, const struct nh_kube_sources *s) {
        struct nh_kube_credentials *c = NULL;
        char *error = NULL;
        int r = load(f, s, &c, &error);

        if (r < 0)
                fail_msg("unexpected error %d: %s", r, error ? error : "(none)");
        assert_non_null(c);
        return c;
}

static void expect_error(struct fixture *f, const struct nh_kube_sources *s, const char *expected) {
        struct nh_kube_credentials *c = NULL;
        char *error = NULL;

        assert_int_equal(load(f, s, &c, &error), -EINVAL);
        assert_null(c);
        assert_string_equal(error, expected);
        free(error);
}

/* Writes dir/kubeconfig and returns the sources naming it with --kubeconfig. */
static struct nh_kube_sources kubeconfig(struct fixture *f, const char *yaml, char **ret_path) {
        test_write_file(f->dir, "kubeconfig", yaml);
        *ret_path = path(f, "kubeconfig");
        return (struct nh_kube_sources){.kubeconfig = *ret_path};
}

static void expect_kubeconfig_error(struct fixture *f, const char *yaml, const char *expected) {
        char *p;
        struct nh_kube_sources s = kubeconfig(f, yaml, &p);
        expect_error(f, &s, expected);
        free(p);
}

#define CLUSTER_HEAD                           \
        "apiVersion: v1\n"                     \
        "kind: Config\n"                       \
        "current-context: ctx\n"               \
        "contexts:\n"                          \
        "- name: ctx\n"                        \
        "  context: {cluster: c1, user: u1}\n" \
        "clusters:\n"                          \
        "- name: c1\n"                         \
        "  cluster:\n"                         \
        "    server: https://10.1.2.3:6443/\n"

/* ---- base64 ---- */

static void test_base64(void **state) {
        struct nh_blob b = {0};

        assert_int_equal(nh_base64_decode(PEM_CA_B64, strlen(PEM_CA_B64), &b), 0);
        assert_int_equal(b.size, strlen(PEM_CA));
        assert_string_equal(b.data, PEM_CA);
        free(b.data);
        /* Padding is optional, whitespace (as in a folded YAML scalar) ignored. */
        assert_int_equal(nh_base64_decode("aGk", 3, &b), 0);
        assert_string_equal(b.data, "hi");
        free(b.data);
        assert_int_equal(nh_base64_decode("aG\n k=", 6, &b), 0);
        assert_string_equal(b.data, "hi");
        free(b.data);
        assert_int_equal(nh_base64_decode("aGVsbG8h", 8, &b), 0);
        assert_string_equal(b.data, "hello!");
        free(b.data);
        b = (struct nh_blob){0};
        assert_int_equal(nh_base64_decode("a", 1, &b), -EINVAL); /* 6 bits make no byte */
        assert_int_equal(nh_base64_decode("aGk=x", 5, &b), -EINVAL); /* after the padding */
        assert_int_equal(nh_base64_decode("aG==k", 5, &b), -EINVAL);
        assert_int_equal(nh_base64_decode("aGk==", 5, &b), -EINVAL); /* too much padding */
        assert_int_equal(nh_base64_decode("a$k=", 4, &b), -EINVAL);
        assert_int_equal(nh_base64_decode("", 0, &b), -EINVAL);
        assert_null(b.data); /* untouched on failure */
}

/* ---- sources ---- */

static void test_none_is_standalone(void **state) {
        struct fixture *f = *state;
        struct nh_kube_credentials *c = NULL;
        char *error = NULL;
        struct nh_kube_sources s = {0};

        assert_int_equal(load(f, &s, &c, &error), -ENODATA);
        assert_null(c);
        /* Half an in-cluster environment is none (client-go says the same). */
        s.service_host = "10.0.0.1";
        assert_int_equal(load(f, &s, &c, &error), -ENODATA);
        s = (struct nh_kube_sources){.service_port = "443"};
        assert_int_equal(load(f, &s, &c, &error), -ENODATA);
        assert_null(c);
}

static void test_kubeconfig_files_and_token(void **state) {
        struct fixture *f = *state;
        char *p;
        struct nh_kube_sources s = kubeconfig(f,
                                              CLUSTER_HEAD "    certificate-authority: ca.crt\n"
                                                           "    tls-server-name: api.example\n"
                                                           "users:\n"
                                                           "- name: u1\n"
                                                           "  user:\n"
                                                           "    client-certificate: sub/client.crt\n"
                                                           "    client-key: sub/client.key\n"
                                                           "    token: \"abc.def\"\n"
                                                           "    tokenFile: token\n"
                                                           "preferences: {}\n",
                                              &p);
        struct nh_kube_credentials *c = load_ok(f, &s);
        char *ca = path(f, "ca.crt"), *cert = path(f, "sub/client.crt"), *key = path(f, "sub/client.key");

        assert_string_equal(c->server, "https://10.1.2.3:6443"); /* no trailing slash */
        /* Relative paths resolve against the kubeconfig's directory. */
        assert_string_equal(c->ca_file, ca);
        assert_null(c->ca_data.data);
        assert_string_equal(c->client_cert_file, cert);
        assert_string_equal(c->client_key_file, key);
        assert_string_equal(c->tls_server_name, "api.example");
        assert_false(c->insecure_skip_tls_verify);
        /* token wins over tokenFile, as in client-go. */
        assert_string_equal(c->token, "abc.def");
        assert_null(c->token_file);
        assert_non_null(strstr(c->origin, "(context ctx)"));
        nh_kube_credentials_free(c);
        free(ca);
        free(cert);
        free(key);
        free(p);

        s = kubeconfig(f,
                       CLUSTER_HEAD "users:\n"
                                    "- name: u1\n"
                                    "  user: {tokenFile: token}\n",
                       &p);
        c = load_ok(f, &s);
        char *tok = path(f, "token");
        assert_null(c->token);
        assert_string_equal(c->token_file, tok);
        assert_null(c->ca_file); /* the system's CAs */
        nh_kube_credentials_free(c);
        free(tok);
        free(p);
}

static void test_kubeconfig_data_fields(void **state) {
        struct fixture *f = *state;
        char *p;
        struct nh_kube_sources s = kubeconfig(f,
                                              CLUSTER_HEAD "    certificate-authority-data: " PEM_CA_B64 "\n"
                                                           "    certificate-authority: ca.crt\n"
                                                           "users:\n"
                                                           "- name: u1\n"
                                                           "  user:\n"
                                                           "    client-certificate-data: " PEM_CERT_B64 "\n"
                                                           "    client-key-data: " PEM_KEY_B64 "\n",
                                              &p);
        struct nh_kube_credentials *c = load_ok(f, &s);

        /* The data fields override the files. */
        assert_null(c->ca_file);
        assert_string_equal(c->ca_data.data, PEM_CA);
        assert_int_equal(c->ca_data.size, strlen(PEM_CA));
        assert_string_equal(c->client_cert_data.data, PEM_CERT);
        assert_string_equal(c->client_key_data.data, PEM_KEY);
        assert_null(c->client_cert_file);
        assert_null(c->token);
        assert_null(c->token_file);
        nh_kube_credentials_free(c);
        free(p);
}

static void test_kubeconfig_insecure(void **state) {
        struct fixture *f = *state;
        char *p;
        struct nh_kube_sources s = kubeconfig(f,
                                              CLUSTER_HEAD "    insecure-skip-tls-verify: true\n"
                                                           "users:\n"
                                                           "- name: u1\n"
                                                           "  user: {token: t}\n",
                                              &p);
        struct nh_kube_credentials *c = load_ok(f, &s);

        assert_true(c->insecure_skip_tls_verify);
        nh_kube_credentials_free(c);
        free(p);

        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "    insecure-skip-tls-verify: true\n"
                                             "    certificate-authority: ca.crt\n",
                                "DIR/kubeconfig:11:31: cluster \"c1\": a certificate authority and "
                                "insecure-skip-tls-verify exclude each other");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    insecure-skip-tls-verify: maybe\n",
                                "DIR/kubeconfig:11:31: cluster \"c1\": \"insecure-skip-tls-verify\" must be true or "
                                "false");
}

static void test_kubeconfig_no_user_is_anonymous(void **state) {
        struct fixture *f = *state;
        char *p;
        struct nh_kube_sources s = kubeconfig(f,
                                              "current-context: ctx\n"
                                              "contexts: [{name: ctx, context: {cluster: c1}}]\n"
                                              "clusters: [{name: c1, cluster: {server: 'https://h'}}]\n",
                                              &p);
        struct nh_kube_credentials *c = load_ok(f, &s);

        assert_string_equal(c->server, "https://h");
        assert_null(c->token);
        assert_null(c->token_file);
        assert_null(c->client_cert_file);
        nh_kube_credentials_free(c);
        free(p);
}

static void test_kubeconfig_unsupported(void **state) {
        struct fixture *f = *state;

        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user:\n"
                                             "    exec:\n"
                                             "      command: aws\n",
                                "DIR/kubeconfig:15:7: user \"u1\": exec credential plugins are not supported: use a "
                                "token, a tokenFile or a client certificate (for example a service account token)");
        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user:\n"
                                             "    auth-provider: {name: gcp}\n",
                                "DIR/kubeconfig:14:20: user \"u1\": auth-provider plugins are not supported: use a "
                                "token, a tokenFile or a client certificate");
        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user: {username: admin, password: secret}\n",
                                "DIR/kubeconfig:13:20: user \"u1\": basic authentication (username/password) is not "
                                "supported: use a token, a tokenFile or a client certificate");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    proxy-url: http://proxy:3128\n",
                                "DIR/kubeconfig:11:16: cluster \"c1\": proxy-url is not supported (libcurl honours "
                                "$HTTPS_PROXY)");
}

static void test_kubeconfig_errors(void **state) {
        struct fixture *f = *state;
        struct nh_kube_sources s = {0};
        char *missing = path(f, "nope");

        s.kubeconfig = missing;
        expect_error(f, &s, "DIR/nope: cannot read the kubeconfig: No such file or directory");
        free(missing);

        expect_kubeconfig_error(f, "current-context: [a\n",
                                "DIR/kubeconfig:2:1: invalid YAML: did not find expected ',' or ']' while parsing a "
                                "flow sequence");
        expect_kubeconfig_error(f, "- a\n- b\n",
                                "DIR/kubeconfig:1:1: not a kubeconfig: the document is a list, not "
                                "a mapping");
        expect_kubeconfig_error(f, "", "DIR/kubeconfig: no current-context");
        expect_kubeconfig_error(f, "current-context: other\ncontexts: []\n",
                                "DIR/kubeconfig:1:18: current-context \"other\" is not among the contexts");
        expect_kubeconfig_error(f, "current-context: ctx\ncontexts:\n- name: ctx\n  context: {cluster: c9}\n",
                                "DIR/kubeconfig:4:22: context \"ctx\": cluster \"c9\" is not among the clusters");
        expect_kubeconfig_error(f, "current-context: ctx\ncontexts:\n- name: ctx\n  context: {user: u}\n",
                                "DIR/kubeconfig:4:12: context \"ctx\" names no cluster");
        expect_kubeconfig_error(f, CLUSTER_HEAD "users: []\n",
                                "DIR/kubeconfig:6:32: context \"ctx\": user \"u1\" is not among the users");
        expect_kubeconfig_error(f, "current-context: ctx\ncontexts: {ctx: 1}\n",
                                "DIR/kubeconfig:2:11: \"contexts\" must be a list, not a mapping");
        expect_kubeconfig_error(f,
                                "current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\n"
                                "clusters: [{name: c, cluster: {server: 'http://h:8080'}}]\n",
                                "DIR/kubeconfig:3:40: cluster \"c\": server \"http://h:8080\": the API server must be "
                                "reached over https://");
        expect_kubeconfig_error(f,
                                "current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\n"
                                "clusters: [{name: c, cluster: {insecure-skip-tls-verify: true}}]\n",
                                "DIR/kubeconfig:3:31: cluster \"c\" has no \"server\"");
        expect_kubeconfig_error(f,
                                "current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\n"
                                "clusters: [{name: c, cluster: {server: {a: 1}}}]\n",
                                "DIR/kubeconfig:3:40: cluster \"c\": \"server\" must be a string, not a mapping");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    certificate-authority: missing.crt\n",
                                "DIR/kubeconfig:11:28: cluster \"c1\": certificate-authority DIR/missing.crt: No such "
                                "file or directory");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    certificate-authority-data: not*base64\n",
                                "DIR/kubeconfig:11:33: cluster \"c1\": \"certificate-authority-data\" is not valid "
                                "base64");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    tls-server-name: 'a:1'\n",
                                "DIR/kubeconfig:11:22: cluster \"c1\": tls-server-name \"a:1\" is not a host name");
        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user: {client-certificate: sub/client.crt}\n",
                                "DIR/kubeconfig:13:9: user \"u1\": a client certificate needs its key and a key its "
                                "certificate");
        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user: {tokenFile: /nonexistent/token}\n",
                                "DIR/kubeconfig:13:21: user \"u1\": tokenFile /nonexistent/token: No such file or "
                                "directory");
        expect_kubeconfig_error(f,
                                CLUSTER_HEAD "users:\n"
                                             "- name: u1\n"
                                             "  user: {token: ''}\n",
                                "DIR/kubeconfig:13:17: user \"u1\": \"token\" is empty");
}

/* A FIFO where a file should be is refused, not waited on: the loop (or libcurl on it) would block. */
static void test_kubeconfig_fifo(void **state) {
        struct fixture *f = *state;
        struct nh_kube_sources s = {0};
        char *fifo = path(f, "fifo");

        assert_int_equal(mkfifo(fifo, 0600), 0);
        alarm(10); /* a blocking open would wait for a writer forever */
        s.kubeconfig = fifo;
        expect_error(f, &s, "DIR/fifo: cannot read the kubeconfig: not a regular file");
        expect_kubeconfig_error(f, CLUSTER_HEAD "    certificate-authority: fifo\n",
                                "DIR/kubeconfig:11:28: cluster \"c1\": certificate-authority DIR/fifo: not a regular "
                                "file");
        alarm(0);
        free(fifo);
}

static void test_kubeconfig_env_list(void **state) {
        struct fixture *f = *state;
        /* kubectl's merge: the first current-context; names looked up file by file, first wins. */
        test_write_file(f->dir, "a.yaml",
                        "users:\n- name: u1\n  user: {token: from-a}\n"
                        "clusters:\n- name: c1\n  cluster: {server: 'https://first:1'}\n");
        test_write_file(
                f->dir, "conf/b.yaml",
                "current-context: ctx\n"
                "contexts:\n- name: ctx\n  context: {cluster: c1, user: u1}\n"
                "users:\n- name: u1\n  user: {token: from-b}\n"
                "clusters:\n- name: c1\n  cluster: {server: 'https://second:2', certificate-authority: ../ca.crt}\n"
                "- name: c2\n  cluster: {server: 'https://c2'}\n");
        test_write_file(f->dir, "c.yaml", "current-context: later\n");
        char *list = NULL;
        assert_true(asprintf(&list, "%s/missing.yaml::%s/a.yaml:%s/conf/b.yaml:%s/c.yaml", f->dir, f->dir, f->dir,
                             f->dir) >= 0);
        struct nh_kube_sources s = {.kubeconfig_env = list};
        struct nh_kube_credentials *c = load_ok(f, &s);

        assert_string_equal(c->server, "https://first:1");
        assert_string_equal(c->token, "from-a");
        assert_null(c->ca_file); /* c1 from a.yaml, which names no CA */
        assert_non_null(strstr(c->origin, "conf/b.yaml (context ctx)"));
        nh_kube_credentials_free(c);
        free(list);

        /* Relative paths resolve against the file that defines the entry. */
        assert_true(asprintf(&list, "%s/conf/b.yaml", f->dir) >= 0);
        s.kubeconfig_env = list;
        c = load_ok(f, &s);
        char *ca = path(f, "conf/../ca.crt");
        assert_string_equal(c->ca_file, ca);
        assert_string_equal(c->token, "from-b");
        nh_kube_credentials_free(c);
        free(ca);
        free(list);

        assert_true(asprintf(&list, "%s/x.yaml:%s/y.yaml", f->dir, f->dir) >= 0);
        s.kubeconfig_env = list;
        char *expected = NULL;
        assert_true(asprintf(&expected, "$KUBECONFIG: none of its files exists (DIR/x.yaml:DIR/y.yaml)") >= 0);
        expect_error(f, &s, expected);
        free(expected);
        free(list);

        assert_true(asprintf(&list, "%s/a.yaml", f->dir) >= 0);
        s.kubeconfig_env = list;
        expect_error(f, &s, "DIR/a.yaml: no current-context");
        free(list);

        s.kubeconfig_env = "::";
        expect_error(f, &s, "$KUBECONFIG=\"::\" names no file");
}

static void test_apiserver_flags(void **state) {
        struct fixture *f = *state;
        char *tok = path(f, "token"), *ca = path(f, "ca.crt");
        struct nh_kube_sources s = {.apiserver = "https://api.example:6443/", .token_file = tok, .ca_file = ca};
        struct nh_kube_credentials *c = load_ok(f, &s);

        assert_string_equal(c->server, "https://api.example:6443");
        assert_string_equal(c->token_file, tok);
        assert_string_equal(c->ca_file, ca);
        assert_string_equal(c->origin, "--apiserver");
        nh_kube_credentials_free(c);

        /* --apiserver alone: the environment is not consulted. */
        s = (struct nh_kube_sources){
                .apiserver = "https://h", .kubeconfig_env = "/nonexistent", .service_host = "x", .service_port = "1"};
        c = load_ok(f, &s);
        assert_string_equal(c->server, "https://h");
        assert_null(c->token_file);
        assert_null(c->ca_file);
        nh_kube_credentials_free(c);

        /* The flags override a kubeconfig's server, token and CA, as kubectl's do. */
        char *p;
        s = kubeconfig(f,
                       CLUSTER_HEAD "    certificate-authority-data: " PEM_CA_B64 "\n"
                                    "users:\n- name: u1\n  user: {token: static}\n",
                       &p);
        s.apiserver = "https://other:443";
        s.token_file = tok;
        s.ca_file = ca;
        c = load_ok(f, &s);
        assert_string_equal(c->server, "https://other:443");
        assert_null(c->token);
        assert_string_equal(c->token_file, tok);
        assert_string_equal(c->ca_file, ca);
        assert_null(c->ca_data.data);
        nh_kube_credentials_free(c);
        free(p);

        s = (struct nh_kube_sources){.apiserver = "http://h:8080"};
        expect_error(f, &s, "--apiserver http://h:8080: the API server must be reached over https://");
        s = (struct nh_kube_sources){.apiserver = "https://h", .token_file = "/nonexistent"};
        expect_error(f, &s, "--token-file /nonexistent: No such file or directory");
        s = (struct nh_kube_sources){.apiserver = "https://user@h/"};
        expect_error(f, &s,
                     "--apiserver https://user@h/: a user, query or fragment has no place in the API server's "
                     "URL");
        s = (struct nh_kube_sources){.token_file = tok};
        expect_error(f, &s,
                     "--token-file needs a server: --apiserver, --kubeconfig, $KUBECONFIG or the in-cluster "
                     "environment");
        free(tok);
        free(ca);
}

static void test_in_cluster(void **state) {
        struct fixture *f = *state;
        char *sa = path(f, "sa");
        test_write_file(f->dir, "sa/token", "sa-token\n");
        test_write_file(f->dir, "sa/ca.crt", PEM_CA);
        test_write_file(f->dir, "sa/namespace", "kube-system");
        struct nh_kube_sources s = {.service_host = "10.96.0.1", .service_port = "443", .serviceaccount_dir = sa};
        struct nh_kube_credentials *c = load_ok(f, &s);
        char *tok = path(f, "sa/token"), *ca = path(f, "sa/ca.crt");

        assert_string_equal(c->server, "https://10.96.0.1:443");
        assert_string_equal(c->token_file, tok);
        assert_string_equal(c->ca_file, ca);
        assert_null(c->token);
        assert_string_equal(c->origin, "in-cluster service account");
        nh_kube_credentials_free(c);

        s.service_host = "fd00::1";
        c = load_ok(f, &s);
        assert_string_equal(c->server, "https://[fd00::1]:443");
        nh_kube_credentials_free(c);

        /* A kubeconfig in the environment wins over the pod. */
        char *kc = NULL;
        test_write_file(f->dir, "k.yaml",
                        "current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\n"
                        "clusters: [{name: c, cluster: {server: 'https://from-kubeconfig'}}]\n");
        assert_true(asprintf(&kc, "%s/k.yaml", f->dir) >= 0);
        s.kubeconfig_env = kc;
        c = load_ok(f, &s);
        assert_string_equal(c->server, "https://from-kubeconfig");
        nh_kube_credentials_free(c);
        s.kubeconfig_env = NULL;
        free(kc);

        s.service_host = "10.96.0.1";
        s.service_port = "https";
        expect_error(f, &s, "in-cluster: KUBERNETES_SERVICE_PORT=\"https\" is not a port number");
        s.service_port = "443";
        assert_int_equal(unlink(tok), 0);
        expect_error(f, &s,
                     "in-cluster: DIR/sa/token: No such file or directory (is a service account token "
                     "mounted?)");
        free(tok);
        free(ca);
        free(sa);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64),
                cmocka_unit_test_setup_teardown(test_none_is_standalone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_files_and_token, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_data_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_insecure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_no_user_is_anonymous, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_unsupported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_fifo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_env_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_apiserver_flags, setup, teardown),
                cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
