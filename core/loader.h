/* SPDX-License-Identifier: MIT */
/*
 * The plugin loader: finds PLUGIN.so in the plugin directories, refuses files an attacker
 * could have planted or changed, opens them with libltdl and checks the descriptor's ABI
 * version and size before it reads anything else.  A plugin is untrusted input.
 */
#pragma once

#include <nodehealth/plugin.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "macro.h"

struct nh_plugin_handle {
        char *path; /* where it was found */
        struct stat file; /* the file when it was opened: a reload reopens a changed one */
        struct nh_plugin desc; /* a checked copy of the descriptor, zero-extended */
        void *dl; /* lt_dlhandle */
        bool remote; /* the proxy of an isolated probe (probe-remote.c): nothing loaded here */
};

/*
 * Opens plugin `name` from the first of `dirs` that holds NAME.so.  Returns 0 and a handle,
 * -ENOENT when no directory holds it, or -EPERM / -EINVAL / -ENOEXEC with one line saying
 * why in *ret_error (the caller frees it and logs it).
 */
int nh_plugin_open(char *const *dirs, const char *name, struct nh_plugin_handle **ret, char **ret_error);
struct nh_plugin_handle *nh_plugin_close(struct nh_plugin_handle *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_plugin_handle *, nh_plugin_close)

/*
 * The ownership and mode rules, for a file or a directory: owned by root or by the
 * daemon's effective user, writable by neither group nor others.  0, or -EPERM with the
 * reason in *ret_error.
 */
int nh_plugin_check_owner(const char *path, uid_t uid, mode_t mode, char **ret_error);
