/* SPDX-License-Identifier: MIT */
/* The command line of nodehealthd(8), parsed into options; no side effects. */
#pragma once

#include <stdbool.h>

#include "macro.h"
#include "sink.h"

/* Exit codes (sysexits.h's numbers, as DESIGN.md promises). */
enum {
        NH_EXIT_OK = 0,
        NH_EXIT_FAILURE = 1,
        NH_EXIT_USAGE = 64,
        NH_EXIT_CONFIG = 78,
};

enum nh_action {
        NH_ACTION_RUN,
        NH_ACTION_ONCE,
        NH_ACTION_CHECK_CONFIG,
        NH_ACTION_HELP,
        NH_ACTION_VERSION,
};

struct nh_options {
        enum nh_action action;
        char *config_path;
        enum nh_format format;
        bool standalone;
        char *node_name;
        char *kubeconfig, *apiserver, *token_file, *ca_file;
        char *proc_path, *sys_path, *root_path;
        char **plugin_dirs; /* replaces the configured ones when set */
};

/* 0, or -EINVAL with a one-line message in *ret_error.  Frees nothing on failure: call _done. */
int nh_options_parse(int argc, char **argv, struct nh_options *ret, char **ret_error);
void nh_options_done(struct nh_options *o);

void nh_options_help(const char *program);
