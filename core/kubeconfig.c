/* SPDX-License-Identifier: MIT */
#include "kubeconfig.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "util.h"

/* A kubeconfig larger than this is a mistake, not a kubeconfig. */
#define KUBECONFIG_MAX (4u * 1024u * 1024u)

static void yaml_parser_deletep(yaml_parser_t *p) {
        yaml_parser_delete(p); /* safe on a zeroed parser */
}

static void curl_url_cleanupp(CURLU **u) {
        if (*u)
                curl_url_cleanup(*u);
}

static void curl_freep(char **p) {
        if (*p)
                curl_free(*p);
}

static void blob_done(struct nh_blob *b) {
        if (b->data) {
                explicit_bzero(b->data, b->size); /* a private key or a CA: do not leave it around */
                free(b->data);
        }
        *b = (struct nh_blob){0};
}

static void free_secret(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

struct nh_kube_credentials *nh_kube_credentials_free(struct nh_kube_credentials *c) {
        if (!c)
                return NULL;
        free(c->server);
        free(c->origin);
        free(c->ca_file);
        blob_done(&c->ca_data);
        free(c->tls_server_name);
        free(c->client_cert_file);
        free(c->client_key_file);
        blob_done(&c->client_cert_data);
        blob_done(&c->client_key_data);
        free_secret(c->token);
        free(c->token_file);
        free(c);
        return NULL;
}

void nh_kube_sources_from_env(struct nh_kube_sources *s) {
        s->kubeconfig_env = getenv("KUBECONFIG");
        s->service_host = getenv("KUBERNETES_SERVICE_HOST");
        s->service_port = getenv("KUBERNETES_SERVICE_PORT");
        s->serviceaccount_dir = getenv(NH_SERVICEACCOUNT_DIR_ENV);
}

static int b64_value(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int nh_base64_decode(const char *text, size_t len, struct nh_blob *ret) {
        _cleanup_free_ char *out = NULL;
        size_t n = 0, pad = 0, quantum = 0;
        uint32_t acc = 0;

        out = malloc(len / 4 * 3 + 4);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) text[i];
                int v;

                if (isspace(c))
                        continue;
                if (c == '=') {
                        pad++;
                        continue;
                }
                v = b64_value(c);
                if (v < 0 || pad > 0) /* a character after the padding */
                        return -EINVAL;
                acc = acc << 6 | (uint32_t) v;
                if (++quantum == 4) {
                        out[n++] = (char) (acc >> 16);
                        out[n++] = (char) (acc >> 8);
                        out[n++] = (char) acc;
                        acc = 0;
                        quantum = 0;
                }
        }
        /* A final group of 2 or 3 characters carries 1 or 2 bytes; padding must fit it. */
        if (quantum == 1 || pad > 2 || (pad > 0 && quantum + pad != 4))
                return -EINVAL;
        if (quantum == 2)
                out[n++] = (char) (acc >> 4);
        else if (quantum == 3) {
                out[n++] = (char) (acc >> 10);
                out[n++] = (char) (acc >> 2);
        }
        if (n == 0)
                return -EINVAL;
        out[n] = '\0';
        *ret = (struct nh_blob){.data = TAKE_PTR(out), .size = n};
        return 0;
}

/* ---- one kubeconfig file ---- */

struct kc_file {
        char *path;
        char *dir; /* relative paths in the file resolve against this */
        yaml_document_t doc;
        bool loaded;
};

static void kc_file_done(struct kc_file *f) {
        if (f->loaded)
                yaml_document_delete(&f->doc);
        free(f->path);
        free(f->dir);
        *f = (struct kc_file){0};
}

static char *format_error(const char *path, const yaml_node_t *node, const char *format, va_list ap) _printf_(3, 0);

static char *format_error(const char *path, const yaml_node_t *node, const char *format, va_list ap) {
        _cleanup_free_ char *what = NULL;
        char *out = NULL;

        if (vasprintf(&what, format, ap) < 0)
                return NULL;
        if (node &&
            asprintf(&out, "%s:%zu:%zu: %s", path, node->start_mark.line + 1, node->start_mark.column + 1, what) < 0)
                return NULL;
        if (!node && asprintf(&out, "%s: %s", path, what) < 0)
                return NULL;
        return out;
}

/* Sets *ret_error to "FILE:LINE:COLUMN: what" at node (NULL: "FILE: what"); returns -EINVAL. */
static int kc_error(const struct kc_file *f, const yaml_node_t *node, char **ret_error, const char *format, ...)
        _printf_(4, 5);

static int kc_error(const struct kc_file *f, const yaml_node_t *node, char **ret_error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        *ret_error = format_error(f->path, node, format, ap);
        va_end(ap);
        return *ret_error ? -EINVAL : -ENOMEM;
}

static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t) (slash - path));
}

/* Loads and parses `path`; -ENOENT (no message) when it does not exist and `missing_ok`. */
static int kc_file_load(struct kc_file *f, const char *path, bool missing_ok, char **ret_error) {
        _cleanup_(yaml_parser_deletep) yaml_parser_t parser = {0};
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        *f = (struct kc_file){0};
        f->path = strdup(path);
        f->dir = dir_of(path);
        if (!f->path || !f->dir)
                return -ENOMEM;
        r = read_regular_file(path, KUBECONFIG_MAX, &text, &len);
        if (r == -ENOENT && missing_ok)
                return r;
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return kc_error(f, NULL, ret_error, "cannot read the kubeconfig: %s",
                                r == -EFBIG    ? "larger than 4 MiB"
                                : r == -EINVAL ? "not a regular file"
                                               : strerror(-r));

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        if (!yaml_parser_load(&parser, &f->doc)) {
                if (parser.error == YAML_MEMORY_ERROR)
                        return -ENOMEM;
                *ret_error = NULL;
                if (asprintf(ret_error, "%s:%zu:%zu: invalid YAML: %s%s%s", path, parser.problem_mark.line + 1,
                             parser.problem_mark.column + 1, parser.problem ? parser.problem : "syntax error",
                             parser.context ? " " : "", parser.context ? parser.context : "") < 0)
                        return -ENOMEM;
                return -EINVAL;
        }
        f->loaded = true;
        return 0;
}

static yaml_node_t *kc_root(struct kc_file *f) {
        return yaml_document_get_root_node(&f->doc);
}

static bool is_null_node(const yaml_node_t *n) {
        /* "key:" with nothing, "~" or "null": YAML's null, as Go's YAML reads it. */
        if (!n)
                return true;
        if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        const char *v = (const char *) n->data.scalar.value;
        return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
               strcmp(v, "NULL") == 0;
}

/* The value of `key` in mapping `map`, or NULL. */
static yaml_node_t *map_get(struct kc_file *f, yaml_node_t *map, const char *key) {
        if (!map || map->type != YAML_MAPPING_NODE)
                return NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(&f->doc, p->key);
                if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
                    memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
                        return yaml_document_get_node(&f->doc, p->value);
        }
        return NULL;
}

static const char *node_kind(const yaml_node_t *n) {
        switch (n->type) {
        case YAML_MAPPING_NODE:
                return "a mapping";
        case YAML_SEQUENCE_NODE:
                return "a list";
        default:
                return "a scalar";
        }
}

/* A string field: NULL (absent or null) is fine; anything but a scalar, or an embedded NUL, is not. */
static int get_string(struct kc_file *f, yaml_node_t *map, const char *key, const char *what, char **ret,
                      yaml_node_t **ret_node, char **ret_error) {
        yaml_node_t *n = map_get(f, map, key);
        char *s;

        *ret = NULL;
        if (ret_node)
                *ret_node = n;
        if (is_null_node(n))
                return 0;
        if (n->type != YAML_SCALAR_NODE)
                return kc_error(f, n, ret_error, "%s: \"%s\" must be a string, not %s", what, key, node_kind(n));
        if (strlen((const char *) n->data.scalar.value) != n->data.scalar.length)
                return kc_error(f, n, ret_error, "%s: \"%s\" contains a NUL byte", what, key);
        s = strdup((const char *) n->data.scalar.value);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int get_bool(struct kc_file *f, yaml_node_t *map, const char *key, const char *what, bool *ret,
                    char **ret_error) {
        static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
        static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
        yaml_node_t *n = map_get(f, map, key);

        *ret = false;
        if (is_null_node(n))
                return 0;
        if (n->type == YAML_SCALAR_NODE)
                for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                        if (strcmp((const char *) n->data.scalar.value, yes[i]) == 0) {
                                *ret = true;
                                return 0;
                        }
                        if (strcmp((const char *) n->data.scalar.value, no[i]) == 0)
                                return 0;
                }
        return kc_error(f, n, ret_error, "%s: \"%s\" must be true or false", what, key);
}

/* A path from the file: relative ones resolve against the file's directory. */
static int resolve_path(const struct kc_file *f, char *path, char **ret) {
        char *out;

        if (path[0] == '/') {
                *ret = path;
                return 0;
        }
        if (asprintf(&out, "%s/%s", f->dir, path) < 0)
                return -ENOMEM;
        free(path);
        *ret = out;
        return 0;
}

/*
 * Checks now that a file named by the configuration can be read, for an error with a position:
 * NULL, or what is wrong.  A FIFO or a device is refused: libcurl would block the loop on it.
 */
static const char *check_readable(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return strerror(errno);
        if (S_ISDIR(st.st_mode))
                return strerror(EISDIR);
        if (!S_ISREG(st.st_mode))
                return "not a regular file";
        return NULL;
}

/* Reads a path field, resolves it and checks it; *ret NULL when absent. */
static int get_path(struct kc_file *f, yaml_node_t *map, const char *key, const char *what, char **ret,
                    char **ret_error) {
        _cleanup_free_ char *raw = NULL;
        yaml_node_t *n;
        const char *why;
        char *path = NULL;
        int r;

        *ret = NULL;
        r = get_string(f, map, key, what, &raw, &n, ret_error);
        if (r < 0 || !raw || !*raw)
                return r;
        r = resolve_path(f, TAKE_PTR(raw), &path);
        if (r < 0)
                return r;
        if ((why = check_readable(path))) {
                r = kc_error(f, n, ret_error, "%s: %s %s: %s", what, key, path, why);
                free(path);
                return r;
        }
        *ret = path;
        return 0;
}

static int get_base64(struct kc_file *f, yaml_node_t *map, const char *key, const char *what, struct nh_blob *ret,
                      char **ret_error) {
        _cleanup_free_ char *text = NULL;
        yaml_node_t *n;
        int r;

        r = get_string(f, map, key, what, &text, &n, ret_error);
        if (r < 0 || !text)
                return r;
        r = nh_base64_decode(text, strlen(text), ret);
        if (r == -EINVAL)
                return kc_error(f, n, ret_error, "%s: \"%s\" is not valid base64", what, key);
        return r;
}

/* A named entry of a list such as "clusters": [{name: N, cluster: {...}}]. */
struct named {
        struct kc_file *file;
        yaml_node_t *value;
        yaml_node_t *entry;
};

/*
 * Finds `name` in list `section` of each file in turn (the first definition wins, as kubectl
 * merges).  0 and *ret; -ENOENT when nowhere; -EINVAL with a message when a file is malformed.
 */
static int find_named(struct kc_file *files, size_t n_files, const char *section, const char *field, const char *name,
                      struct named *ret, char **ret_error) {
        for (size_t i = 0; i < n_files; i++) {
                struct kc_file *f = &files[i];
                yaml_node_t *list = map_get(f, kc_root(f), section);

                if (is_null_node(list))
                        continue;
                if (list->type != YAML_SEQUENCE_NODE)
                        return kc_error(f, list, ret_error, "\"%s\" must be a list, not %s", section, node_kind(list));
                for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
                        yaml_node_t *entry = yaml_document_get_node(&f->doc, *it);
                        yaml_node_t *n = map_get(f, entry, "name");

                        if (!entry || entry->type != YAML_MAPPING_NODE)
                                return kc_error(f, entry, ret_error, "an entry of \"%s\" must be a mapping", section);
                        if (!n || n->type != YAML_SCALAR_NODE || strcmp((const char *) n->data.scalar.value, name))
                                continue;
                        yaml_node_t *v = map_get(f, entry, field);
                        if (is_null_node(v) || v->type != YAML_MAPPING_NODE)
                                return kc_error(f, v ? v : entry, ret_error, "%s \"%s\" has no \"%s\" mapping", section,
                                                name, field);
                        *ret = (struct named){.file = f, .value = v, .entry = entry};
                        return 0;
                }
        }
        return -ENOENT;
}

static int check_token(const char *token) {
        if (!*token)
                return -ENODATA;
        for (const char *p = token; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f) /* no header injection */
                        return -EBADMSG;
        return 0;
}

/* Validates an https URL and strips a trailing slash; -EINVAL with why in *ret_why (static). */
static int check_server(char *url, const char **ret_why) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *fragment = NULL;
        size_t len;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
                *ret_why = "not a URL";
                return -EINVAL;
        }
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "https") != 0) {
                *ret_why = "the API server must be reached over https://";
                return -EINVAL;
        }
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
                *ret_why = "no host";
                return -EINVAL;
        }
        if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK) {
                *ret_why = "a user, query or fragment has no place in the API server's URL";
                return -EINVAL;
        }
        len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
                url[--len] = '\0';
        return 0;
}

/* The parts of one user entry, read from file f. */
static int load_user(struct kc_file *f, yaml_node_t *user, const char *name, struct nh_kube_credentials *c,
                     char **ret_error) {
        _cleanup_free_ char *what = NULL;
        _cleanup_free_ char *token_file = NULL;
        yaml_node_t *n;
        int r;

        if (asprintf(&what, "user \"%s\"", name) < 0)
                return -ENOMEM;

        /* Credentials we cannot produce: say so rather than talk to the server anonymously. */
        static const struct {
                const char *key, *why;
        } unsupported[] = {
                {"exec", "exec credential plugins are not supported: use a token, a tokenFile or a client "
                         "certificate (for example a service account token)"},
                {"auth-provider", "auth-provider plugins are not supported: use a token, a tokenFile or a client "
                                  "certificate"},
                {"username", "basic authentication (username/password) is not supported: use a token, a tokenFile "
                             "or a client certificate"},
                {"password", "basic authentication (username/password) is not supported: use a token, a tokenFile "
                             "or a client certificate"},
                {"as", "impersonation (\"as\") is not supported"},
                {"as-groups", "impersonation (\"as-groups\") is not supported"},
        };
        for (size_t i = 0; i < ELEMENTSOF(unsupported); i++) {
                n = map_get(f, user, unsupported[i].key);
                if (!is_null_node(n))
                        return kc_error(f, n, ret_error, "%s: %s", what, unsupported[i].why);
        }

        r = get_path(f, user, "client-certificate", what, &c->client_cert_file, ret_error);
        if (r < 0)
                return r;
        r = get_path(f, user, "client-key", what, &c->client_key_file, ret_error);
        if (r < 0)
                return r;
        r = get_base64(f, user, "client-certificate-data", what, &c->client_cert_data, ret_error);
        if (r < 0)
                return r;
        r = get_base64(f, user, "client-key-data", what, &c->client_key_data, ret_error);
        if (r < 0)
                return r;
        /* The data fields override the files, as in client-go. */
        if (c->client_cert_data.data) {
                free(c->client_cert_file);
                c->client_cert_file = NULL;
        }
        if (c->client_key_data.data) {
                free(c->client_key_file);
                c->client_key_file = NULL;
        }
        bool has_cert = c->client_cert_file || c->client_cert_data.data;
        bool has_key = c->client_key_file || c->client_key_data.data;
        if (has_cert != has_key)
                return kc_error(f, user, ret_error, "%s: a client certificate needs its key and a key its certificate",
                                what);

        r = get_string(f, user, "token", what, &c->token, &n, ret_error);
        if (r < 0)
                return r;
        if (c->token) {
                r = check_token(c->token);
                if (r < 0)
                        return kc_error(f, n, ret_error, "%s: \"token\" %s", what,
                                        r == -ENODATA ? "is empty" : "contains control characters");
        }
        r = get_path(f, user, "tokenFile", what, &token_file, ret_error);
        if (r < 0)
                return r;
        /* token wins over tokenFile when both are set, as in client-go. */
        if (!c->token)
                c->token_file = TAKE_PTR(token_file);
        return 0;
}

static int load_cluster(struct kc_file *f, yaml_node_t *cluster, const char *name, struct nh_kube_credentials *c,
                        char **ret_error) {
        _cleanup_free_ char *what = NULL;
        const char *why = NULL;
        yaml_node_t *n;
        int r;

        if (asprintf(&what, "cluster \"%s\"", name) < 0)
                return -ENOMEM;
        r = get_string(f, cluster, "server", what, &c->server, &n, ret_error);
        if (r < 0)
                return r;
        if (!c->server || !*c->server)
                return kc_error(f, n ? n : cluster, ret_error, "%s has no \"server\"", what);
        r = check_server(c->server, &why);
        if (r == -EINVAL)
                return kc_error(f, n, ret_error, "%s: server \"%s\": %s", what, c->server, why);
        if (r < 0)
                return r;
        n = map_get(f, cluster, "proxy-url");
        if (!is_null_node(n))
                return kc_error(f, n, ret_error, "%s: proxy-url is not supported (libcurl honours $HTTPS_PROXY)", what);
        r = get_path(f, cluster, "certificate-authority", what, &c->ca_file, ret_error);
        if (r < 0)
                return r;
        r = get_base64(f, cluster, "certificate-authority-data", what, &c->ca_data, ret_error);
        if (r < 0)
                return r;
        if (c->ca_data.data) { /* overrides the file, as in client-go */
                free(c->ca_file);
                c->ca_file = NULL;
        }
        r = get_bool(f, cluster, "insecure-skip-tls-verify", what, &c->insecure_skip_tls_verify, ret_error);
        if (r < 0)
                return r;
        if (c->insecure_skip_tls_verify && (c->ca_file || c->ca_data.data))
                return kc_error(f, map_get(f, cluster, "insecure-skip-tls-verify"), ret_error,
                                "%s: a certificate authority and insecure-skip-tls-verify exclude each other", what);
        r = get_string(f, cluster, "tls-server-name", what, &c->tls_server_name, &n, ret_error);
        if (r < 0)
                return r;
        if (c->tls_server_name && (!*c->tls_server_name || strpbrk(c->tls_server_name, ":/[] \t")))
                return kc_error(f, n, ret_error, "%s: tls-server-name \"%s\" is not a host name", what,
                                c->tls_server_name);
        return 0;
}

/* Loads the files in `paths`; with `env_list` (the text of $KUBECONFIG) missing files are skipped. */
static int load_kubeconfig(char **paths, const char *env_list, struct nh_kube_credentials *c, char **ret_error) {
        bool missing_ok = env_list != NULL;
        struct kc_file *files = NULL;
        size_t n_files = 0, n_paths = strv_length(paths);
        _cleanup_free_ char *context_name = NULL, *cluster_name = NULL, *user_name = NULL;
        struct kc_file *current = NULL;
        yaml_node_t *current_node = NULL;
        struct named context, cluster, user;
        int r = 0;

        files = calloc(n_paths ? n_paths : 1, sizeof(*files));
        if (!files)
                return -ENOMEM;
        for (size_t i = 0; i < n_paths; i++) {
                r = kc_file_load(&files[n_files], paths[i], missing_ok, ret_error);
                if (r == -ENOENT && missing_ok) {
                        kc_file_done(&files[n_files]);
                        r = 0;
                        continue;
                }
                n_files++; /* even on failure: freed below */
                if (r < 0)
                        goto out;
                struct kc_file *f = &files[n_files - 1];
                yaml_node_t *root = kc_root(f);
                if (root && !is_null_node(root) && root->type != YAML_MAPPING_NODE) {
                        r = kc_error(f, root, ret_error, "not a kubeconfig: the document is %s, not a mapping",
                                     node_kind(root));
                        goto out;
                }
        }
        if (n_files == 0) {
                if (asprintf(ret_error, "$KUBECONFIG: none of its files exists (%s)", env_list) < 0)
                        *ret_error = NULL;
                r = *ret_error ? -EINVAL : -ENOMEM;
                goto out;
        }

        /* The first file that sets current-context names the context. */
        for (size_t i = 0; i < n_files && !context_name; i++) {
                r = get_string(&files[i], kc_root(&files[i]), "current-context", "kubeconfig", &context_name,
                               &current_node, ret_error);
                if (r < 0)
                        goto out;
                if (context_name && !*context_name) {
                        free(context_name);
                        context_name = NULL;
                }
                current = &files[i];
        }
        if (!context_name) {
                if (n_files == 1)
                        r = kc_error(&files[0], NULL, ret_error, "no current-context");
                else if (asprintf(ret_error, "$KUBECONFIG: no current-context in any of its files") < 0)
                        r = -ENOMEM;
                else
                        r = -EINVAL;
                goto out;
        }

        r = find_named(files, n_files, "contexts", "context", context_name, &context, ret_error);
        if (r == -ENOENT)
                r = kc_error(current, current_node, ret_error, "current-context \"%s\" is not among the contexts",
                             context_name);
        if (r < 0)
                goto out;
        r = get_string(context.file, context.value, "cluster", "context", &cluster_name, NULL, ret_error);
        if (r < 0)
                goto out;
        r = get_string(context.file, context.value, "user", "context", &user_name, NULL, ret_error);
        if (r < 0)
                goto out;
        if (!cluster_name || !*cluster_name) {
                r = kc_error(context.file, context.value, ret_error, "context \"%s\" names no cluster", context_name);
                goto out;
        }

        r = find_named(files, n_files, "clusters", "cluster", cluster_name, &cluster, ret_error);
        if (r == -ENOENT)
                r = kc_error(context.file, map_get(context.file, context.value, "cluster"), ret_error,
                             "context \"%s\": cluster \"%s\" is not among the clusters", context_name, cluster_name);
        if (r < 0)
                goto out;
        r = load_cluster(cluster.file, cluster.value, cluster_name, c, ret_error);
        if (r < 0)
                goto out;

        /* A context without a user talks anonymously: allowed, the server decides (403). */
        if (user_name && *user_name) {
                r = find_named(files, n_files, "users", "user", user_name, &user, ret_error);
                if (r == -ENOENT)
                        r = kc_error(context.file, map_get(context.file, context.value, "user"), ret_error,
                                     "context \"%s\": user \"%s\" is not among the users", context_name, user_name);
                if (r < 0)
                        goto out;
                r = load_user(user.file, user.value, user_name, c, ret_error);
                if (r < 0)
                        goto out;
        }
        if (asprintf(&c->origin, "kubeconfig %s (context %s)", current->path, context_name) < 0) {
                c->origin = NULL;
                r = -ENOMEM;
        }
out:
        for (size_t i = 0; i < n_files; i++)
                kc_file_done(&files[i]);
        free(files);
        return r;
}

/* ---- the other sources ---- */

static int set_error(char **ret_error, const char *format, ...) _printf_(2, 3);

static int set_error(char **ret_error, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(ret_error, format, ap);
        va_end(ap);
        if (r < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static int flag_file(const char *flag, const char *path, char **ret, char **ret_error) {
        const char *why;

        if (!path)
                return 0;
        if ((why = check_readable(path)))
                return set_error(ret_error, "%s %s: %s", flag, path, why);
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static int load_in_cluster(const struct nh_kube_sources *s, struct nh_kube_credentials *c, char **ret_error) {
        const char *dir =
                s->serviceaccount_dir && *s->serviceaccount_dir ? s->serviceaccount_dir : NH_SERVICEACCOUNT_DIR;
        const char *host = s->service_host;
        bool v6 = strchr(host, ':') != NULL;
        const char *why = NULL;
        const char *bad;
        uint64_t port;
        int r;

        if (parse_uint64(s->service_port, &port) < 0 || port == 0 || port > 65535)
                return set_error(ret_error, "in-cluster: KUBERNETES_SERVICE_PORT=\"%s\" is not a port number",
                                 s->service_port);
        if (asprintf(&c->server, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", s->service_port) < 0) {
                c->server = NULL;
                return -ENOMEM;
        }
        r = check_server(c->server, &why);
        if (r == -EINVAL)
                return set_error(ret_error, "in-cluster: KUBERNETES_SERVICE_HOST=\"%s\": %s", host, why);
        if (r < 0)
                return r;
        if (asprintf(&c->token_file, "%s/token", dir) < 0 || asprintf(&c->ca_file, "%s/ca.crt", dir) < 0)
                return -ENOMEM;
        /* The service account's token and CA are mounted into every pod that has one. */
        if ((bad = check_readable(c->token_file)))
                return set_error(ret_error, "in-cluster: %s: %s (is a service account token mounted?)", c->token_file,
                                 bad);
        if ((bad = check_readable(c->ca_file)))
                return set_error(ret_error, "in-cluster: %s: %s", c->ca_file, bad);
        c->origin = strdup("in-cluster service account");
        return c->origin ? 0 : -ENOMEM;
}

static int split_list(const char *list, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p = list;

        for (;;) {
                const char *end = strchrnul(p, ':');
                if (end > p) { /* empty entries are skipped, as kubectl does */
                        char *s = strndup(p, (size_t) (end - p));
                        if (!s || strv_push(&l, s) < 0) {
                                free(s);
                                return -ENOMEM;
                        }
                }
                if (!*end)
                        break;
                p = end + 1;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* --apiserver, --token-file and --ca-file override what a kubeconfig or the pod says, as kubectl's flags do. */
static int apply_flags(const struct nh_kube_sources *s, struct nh_kube_credentials *c, char **ret_error) {
        const char *why = NULL;
        int r;

        if (s->apiserver) {
                free(c->server);
                c->server = strdup(s->apiserver);
                if (!c->server)
                        return -ENOMEM;
                r = check_server(c->server, &why);
                if (r == -EINVAL)
                        return set_error(ret_error, "--apiserver %s: %s", s->apiserver, why);
                if (r < 0)
                        return r;
        }
        if (s->token_file) {
                free_secret(c->token);
                c->token = NULL;
                free(c->token_file);
                c->token_file = NULL;
                r = flag_file("--token-file", s->token_file, &c->token_file, ret_error);
                if (r < 0)
                        return r;
        }
        if (s->ca_file) {
                free(c->ca_file);
                c->ca_file = NULL;
                blob_done(&c->ca_data);
                c->insecure_skip_tls_verify = false;
                r = flag_file("--ca-file", s->ca_file, &c->ca_file, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

int nh_kube_credentials_load(const struct nh_kube_sources *s, struct nh_kube_credentials **ret, char **ret_error) {
        _cleanup_(nh_kube_credentials_freep) struct nh_kube_credentials *c = NULL;
        int r;

        *ret_error = NULL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;

        if (s->kubeconfig) {
                char *one[] = {(char *) s->kubeconfig, NULL};
                r = load_kubeconfig(one, NULL, c, ret_error);
        } else if (s->apiserver) {
                /* An explicit server: the environment's kubeconfig and pod are not consulted. */
                c->origin = strdup("--apiserver");
                r = c->origin ? 0 : -ENOMEM;
        } else if (s->kubeconfig_env && *s->kubeconfig_env) {
                _cleanup_strv_free_ char **paths = NULL;
                r = split_list(s->kubeconfig_env, &paths);
                if (r >= 0 && strv_length(paths) == 0)
                        r = set_error(ret_error, "$KUBECONFIG=\"%s\" names no file", s->kubeconfig_env);
                else if (r >= 0)
                        r = load_kubeconfig(paths, s->kubeconfig_env, c, ret_error);
        } else if (s->service_host && *s->service_host && s->service_port && *s->service_port)
                r = load_in_cluster(s, c, ret_error);
        else if (s->token_file || s->ca_file)
                return set_error(ret_error,
                                 "%s needs a server: --apiserver, --kubeconfig, $KUBECONFIG or the "
                                 "in-cluster environment",
                                 s->token_file ? "--token-file" : "--ca-file");
        else
                return -ENODATA;
        if (r >= 0)
                r = apply_flags(s, c, ret_error);
        if (r < 0) {
                if (r == -EINVAL && !*ret_error)
                        r = -ENOMEM;
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}
