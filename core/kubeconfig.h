/* SPDX-License-Identifier: MIT */
/*
 * Kubernetes credentials: where the API server is, how to trust it, who we are.  The base
 * is, in this order: --kubeconfig FILE; --apiserver URL alone (the environment is then not
 * consulted); $KUBECONFIG (a colon-separated list, merged as kubectl merges: missing files
 * are skipped, the first file that sets current-context names the context, and contexts,
 * clusters and users are looked up by name in the files in order, the first definition
 * winning); the in-cluster environment (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT,
 * and the service account directory's token and ca.crt).  --apiserver, --token-file and
 * --ca-file then override the base's server, token and CA, as kubectl's --server, --token
 * and --certificate-authority do.  No network, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

#define NH_SERVICEACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* Overrides NH_SERVICEACCOUNT_DIR (tests, or a pod that mounts the account elsewhere). */
#define NH_SERVICEACCOUNT_DIR_ENV "NODEHEALTHD_SERVICEACCOUNT_DIR"

/* What the caller found on the command line and in the environment (all may be NULL). */
struct nh_kube_sources {
        const char *kubeconfig; /* --kubeconfig */
        const char *apiserver, *token_file, *ca_file; /* --apiserver, --token-file, --ca-file */
        const char *kubeconfig_env; /* $KUBECONFIG */
        const char *service_host, *service_port; /* $KUBERNETES_SERVICE_HOST, _PORT */
        const char *serviceaccount_dir; /* NULL: NH_SERVICEACCOUNT_DIR */
};

/* Sets the environment's fields of *s from the process environment; leaves the flags alone. */
void nh_kube_sources_from_env(struct nh_kube_sources *s);

/* A PEM blob held in memory (a kubeconfig's *-data field, base64-decoded). */
struct nh_blob {
        char *data;
        size_t size;
};

struct nh_kube_credentials {
        char *server; /* "https://host[:port][/prefix]", no trailing slash */
        char *origin; /* for messages: "kubeconfig FILE (context NAME)", "--apiserver", "in-cluster" */
        char *ca_file; /* CA bundle file, or NULL */
        struct nh_blob ca_data; /* or a CA bundle in memory; neither: the system's CAs */
        bool insecure_skip_tls_verify; /* the server is not verified: the caller warns loudly */
        char *tls_server_name; /* the name the certificate must carry, or NULL (the URL's host) */
        char *client_cert_file, *client_key_file;
        struct nh_blob client_cert_data, client_key_data;
        char *token; /* a static bearer token, or NULL; never logged */
        char *token_file; /* a bearer token re-read from this file, or NULL */
};

/*
 * Finds and loads the credentials.  Returns 0 and new credentials in *ret; -ENODATA (and
 * *ret untouched, no message) when there are none of any kind, so the daemon is standalone;
 * -EINVAL with "FILE:LINE:COLUMN: what" (or "FILE: what", or a sentence naming the flag or
 * variable) in *ret_error for anything wrong: unreadable files, bad YAML, a missing context,
 * an `exec` or `auth-provider` user (not supported), bad base64; -ENOMEM.  *ret_error is
 * the caller's to free.  --token-file or --ca-file without any server is such an error too.
 */
int nh_kube_credentials_load(const struct nh_kube_sources *s, struct nh_kube_credentials **ret, char **ret_error);

struct nh_kube_credentials *nh_kube_credentials_free(struct nh_kube_credentials *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_kube_credentials *, nh_kube_credentials_free)

/*
 * Decodes standard base64 (padding optional, ASCII whitespace ignored) into a new
 * NUL-terminated buffer.  0, -EINVAL for anything else, -ENOMEM.
 */
int nh_base64_decode(const char *text, size_t len, struct nh_blob *ret);
