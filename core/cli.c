/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

enum {
        OPT_ONCE = 0x100,
        OPT_FORMAT,
        OPT_STANDALONE,
        OPT_NODE_NAME,
        OPT_KUBECONFIG,
        OPT_APISERVER,
        OPT_TOKEN_FILE,
        OPT_CA_FILE,
        OPT_PROC_PATH,
        OPT_SYS_PATH,
        OPT_ROOT_PATH,
        OPT_PLUGIN_DIR,
        OPT_CHECK_CONFIG,
        OPT_VERSION,
};

static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"standalone", no_argument, NULL, OPT_STANDALONE},
        {"node-name", required_argument, NULL, OPT_NODE_NAME},
        {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
        {"apiserver", required_argument, NULL, OPT_APISERVER},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"ca-file", required_argument, NULL, OPT_CA_FILE},
        {"proc-path", required_argument, NULL, OPT_PROC_PATH},
        {"sys-path", required_argument, NULL, OPT_SYS_PATH},
        {"root-path", required_argument, NULL, OPT_ROOT_PATH},
        {"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
        {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {0},
};

void nh_options_help(const char *program) {
        printf("Usage: %s [OPTIONS]\n"
               "Watches this node's health with probe plugins and reports Node Conditions.\n\n"
               "  -c, --config FILE      configuration file (default %s), conf.d/ beside it\n"
               "      --once             run every probe once, print the verdict, exit\n"
               "      --format table|json  output for people or for machines (default table)\n"
               "      --standalone       report only locally, even inside a cluster\n"
               "      --node-name NAME   the Node's name (default: config, $NODE_NAME, hostname)\n"
               "      --kubeconfig FILE  Kubernetes credentials (default $KUBECONFIG, else in-cluster)\n"
               "      --apiserver URL    API server address (https://), instead of a kubeconfig's\n"
               "      --token-file FILE  bearer token file, re-read every minute and after a 401\n"
               "      --ca-file FILE     CA bundle that signed the API server's certificate\n"
               "      --proc-path DIR    read /proc from DIR (default /proc)\n"
               "      --sys-path DIR     read /sys from DIR (default /sys)\n"
               "      --root-path DIR    the host's root filesystem (default /)\n"
               "      --plugin-dir DIR   search DIR for probes; repeatable; replaces plugin_dirs\n"
               "      --check-config     validate the configuration and the probes' keys, exit 0 or 78\n"
               "  -h, --help             show this help\n"
               "      --version          show the version\n\n"
               "Exit status: 0 success, 64 bad usage, 78 bad configuration, 1 other failure.\n"
               "See nodehealthd(8) and nodehealthd.json(5).\n",
               program, NH_DEFAULT_CONFIG);
}

static int set_string(char **dst, const char *value, const char *flag, char **ret_error) {
        if (!*value) {
                if (asprintf(ret_error, "%s needs a non-empty value", flag) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        free(*dst);
        *dst = strdup(value);
        return *dst ? 0 : -ENOMEM;
}

int nh_options_parse(int argc, char **argv, struct nh_options *o, char **ret_error) {
        bool once = false, check = false, help = false, version = false;
        int c, r = 0;

        *o = (struct nh_options){.format = NH_FORMAT_TABLE};
        *ret_error = NULL;
        optind = 0; /* full re-initialisation: tests parse several command lines */
        opterr = 0;

        while ((c = getopt_long(argc, argv, ":c:h", options, NULL)) >= 0) {
                const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "option";
                switch (c) {
                case 'c':
                        r = set_string(&o->config_path, optarg, "--config", ret_error);
                        break;
                case OPT_ONCE:
                        once = true;
                        break;
                case OPT_FORMAT:
                        if (strcmp(optarg, "table") == 0)
                                o->format = NH_FORMAT_TABLE;
                        else if (strcmp(optarg, "json") == 0)
                                o->format = NH_FORMAT_JSON;
                        else {
                                if (asprintf(ret_error, "--format must be table or json, not \"%s\"", optarg) < 0)
                                        *ret_error = NULL;
                                r = -EINVAL;
                        }
                        break;
                case OPT_STANDALONE:
                        o->standalone = true;
                        break;
                case OPT_NODE_NAME:
                        r = set_string(&o->node_name, optarg, "--node-name", ret_error);
                        break;
                case OPT_KUBECONFIG:
                        r = set_string(&o->kubeconfig, optarg, "--kubeconfig", ret_error);
                        break;
                case OPT_APISERVER:
                        r = set_string(&o->apiserver, optarg, "--apiserver", ret_error);
                        break;
                case OPT_TOKEN_FILE:
                        r = set_string(&o->token_file, optarg, "--token-file", ret_error);
                        break;
                case OPT_CA_FILE:
                        r = set_string(&o->ca_file, optarg, "--ca-file", ret_error);
                        break;
                case OPT_PROC_PATH:
                        r = set_string(&o->proc_path, optarg, "--proc-path", ret_error);
                        break;
                case OPT_SYS_PATH:
                        r = set_string(&o->sys_path, optarg, "--sys-path", ret_error);
                        break;
                case OPT_ROOT_PATH:
                        r = set_string(&o->root_path, optarg, "--root-path", ret_error);
                        break;
                case OPT_PLUGIN_DIR: {
                        char *dir = NULL;
                        r = set_string(&dir, optarg, "--plugin-dir", ret_error);
                        if (r >= 0) {
                                r = strv_push(&o->plugin_dirs, dir);
                                if (r < 0)
                                        free(dir);
                        }
                        break;
                }
                case OPT_CHECK_CONFIG:
                        check = true;
                        break;
                case 'h':
                        help = true;
                        break;
                case OPT_VERSION:
                        version = true;
                        break;
                case ':':
                        if (asprintf(ret_error, "%s needs a value", flag) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                default:
                        if (asprintf(ret_error, "unknown option %s (see --help)", flag) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                if (asprintf(ret_error, "unexpected argument \"%s\" (see --help)", argv[optind]) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        if (once && check) {
                if (asprintf(ret_error, "--once and --check-config exclude each other") < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }

        o->action = help      ? NH_ACTION_HELP
                    : version ? NH_ACTION_VERSION
                    : check   ? NH_ACTION_CHECK_CONFIG
                    : once    ? NH_ACTION_ONCE
                              : NH_ACTION_RUN;
        if (!o->config_path) {
                o->config_path = strdup(NH_DEFAULT_CONFIG);
                if (!o->config_path)
                        return -ENOMEM;
        }
        return 0;
}

void nh_options_done(struct nh_options *o) {
        free(o->config_path);
        free(o->node_name);
        free(o->kubeconfig);
        free(o->apiserver);
        free(o->token_file);
        free(o->ca_file);
        free(o->proc_path);
        free(o->sys_path);
        free(o->root_path);
        strv_free(o->plugin_dirs);
        *o = (struct nh_options){0};
}
