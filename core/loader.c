/* SPDX-License-Identifier: MIT */
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <ltdl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfgmap.h"
#include "config.h"
#include "util.h"

/* The size of ABI 1.0's struct nh_plugin: the smallest descriptor this loader accepts. */
#define NH_PLUGIN_SIZE_1_0 (offsetof(struct nh_plugin, done) + sizeof(void (*)(void *)))

static int fail(char **ret_error, int r, const char *format, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

int nh_plugin_check_owner(const char *path, uid_t uid, mode_t mode, char **ret_error) {
        if (uid != 0 && uid != geteuid())
                return fail(ret_error, -EPERM, "%s is owned by uid %u, neither root nor the daemon's user", path,
                            (unsigned) uid);
        if (mode & (S_IWGRP | S_IWOTH))
                return fail(ret_error, -EPERM, "%s is writable by %s (mode %04o)", path,
                            (mode & S_IWOTH) ? "others" : "its group", (unsigned) (mode & 07777));
        return 0;
}

struct nh_plugin_handle *nh_plugin_close(struct nh_plugin_handle *h) {
        if (!h)
                return NULL;
        if (h->dl)
                lt_dlclose(h->dl);
        free(h->path);
        free(h);
        return NULL;
}

static int check_descriptor(const char *path, const char *name, const struct nh_plugin *raw, struct nh_plugin *ret,
                            char **ret_error) {
        uint32_t abi, size;
        struct nh_plugin d = {0};
        _cleanup_free_ char *table_error = NULL;

        /* Only the first two fields may be read before they are checked. */
        memcpy(&abi, &raw->abi_version, sizeof(abi));
        if (NH_PLUGIN_ABI_VERSION_MAJOR(abi) != NH_PLUGIN_ABI_MAJOR ||
            NH_PLUGIN_ABI_VERSION_MINOR(abi) > NH_PLUGIN_ABI_MINOR)
                return fail(ret_error, -ENOEXEC, "%s: plugin ABI %u.%u, this daemon speaks %u.%u", path,
                            NH_PLUGIN_ABI_VERSION_MAJOR(abi), NH_PLUGIN_ABI_VERSION_MINOR(abi), NH_PLUGIN_ABI_MAJOR,
                            NH_PLUGIN_ABI_MINOR);
        memcpy(&size, &raw->struct_size, sizeof(size));
        if (size < NH_PLUGIN_SIZE_1_0 || size > sizeof(struct nh_plugin))
                return fail(ret_error, -ENOEXEC, "%s: descriptor size %u does not match ABI %u.%u (%zu to %zu bytes)",
                            path, size, NH_PLUGIN_ABI_VERSION_MAJOR(abi), NH_PLUGIN_ABI_VERSION_MINOR(abi),
                            (size_t) NH_PLUGIN_SIZE_1_0, sizeof(struct nh_plugin));
        memcpy(&d, raw, size); /* fields of later minors stay zero */

        if (!d.name || strcmp(d.name, name) != 0)
                return fail(ret_error, -EINVAL, "%s: descriptor names the plugin \"%s\", expected \"%s\"", path,
                            d.name ? d.name : "(null)", name);
        if (!d.probe)
                return fail(ret_error, -EINVAL, "%s: descriptor has no probe function", path);
        /* No static conditions is fine: such a probe declares its types at init. */
        for (size_t i = 0; d.conditions && d.conditions[i].type; i++) {

                if (!is_camel_case(d.conditions[i].type))
                        return fail(ret_error, -EINVAL, "%s: condition type \"%s\" is not CamelCase", path,
                                    d.conditions[i].type);
                if (!d.conditions[i].healthy_reason || !is_camel_case(d.conditions[i].healthy_reason))
                        return fail(ret_error, -EINVAL, "%s: condition %s has no CamelCase healthy_reason", path,
                                    d.conditions[i].type);
                if (i >= 64)
                        return fail(ret_error, -EINVAL, "%s: more than 64 condition types", path);
        }
        if (d.config) {
                if (d.config_size == 0 || d.config_size > 65536)
                        return fail(ret_error, -EINVAL, "%s: config table with a config_size of %zu", path,
                                    d.config_size);
                if (cfgmap_check_table(d.config, d.config_size, &table_error) < 0)
                        return fail(ret_error, -EINVAL, "%s: %s", path, table_error ? table_error : "bad config table");
                for (size_t i = 0; d.config[i].key; i++)
                        if (strv_contains(nh_probe_core_keys, d.config[i].key))
                                return fail(ret_error, -EINVAL, "%s: config key \"%s\" is reserved for the core", path,
                                            d.config[i].key);
        }
        *ret = d;
        return 0;
}

static int ltdl_ready(void) {
        static bool initialised;

        if (!initialised) {
                if (lt_dlinit() != 0)
                        return -ENOMEM;
                initialised = true;
        }
        return 0;
}

static int open_one(const char *dir, const char *name, struct nh_plugin_handle **ret, char **ret_error) {
        _cleanup_(nh_plugin_closep) struct nh_plugin_handle *h = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *path = NULL;
        struct stat st, dir_st;
        const struct nh_plugin *raw;
        int r;

        if (asprintf(&path, "%s/%s.so", dir, name) < 0)
                return -ENOMEM;

        /* O_NOFOLLOW: a symbolic link could point anywhere. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return -ENOENT;
                if (errno == ELOOP)
                        return fail(ret_error, -EPERM, "%s is a symbolic link; refusing it", path);
                return fail(ret_error, -errno, "%s: cannot open: %s", path, strerror(errno));
        }
        if (fstat(fd, &st) < 0)
                return fail(ret_error, -errno, "%s: cannot stat: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return fail(ret_error, -EPERM, "%s is not a regular file; refusing it", path);
        r = nh_plugin_check_owner(path, st.st_uid, st.st_mode, ret_error);
        if (r < 0)
                return r;

        if (stat(dir, &dir_st) < 0)
                return fail(ret_error, -errno, "%s: cannot stat: %s", dir, strerror(errno));
        r = nh_plugin_check_owner(dir, dir_st.st_uid, dir_st.st_mode, ret_error);
        if (r < 0)
                return r;

        r = ltdl_ready();
        if (r < 0)
                return fail(ret_error, r, "cannot initialise libltdl: %s", lt_dlerror());

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->path = TAKE_PTR(path);
        h->file = st;
        /*
         * Load by path, not through /proc/self/fd: glibc matches already loaded objects by
         * name, so two plugins opened through the same fd number would alias.  The checks
         * above make the path safe: only root or the daemon's user can replace the file.
         */
        h->dl = lt_dlopen(h->path);
        if (!h->dl) {
                const char *e = lt_dlerror();
                return fail(ret_error, -ENOEXEC, "%s: cannot load: %s", h->path, e ? e : "unknown error");
        }

        raw = lt_dlsym(h->dl, NH_PLUGIN_SYMBOL_NAME);
        if (!raw)
                return fail(ret_error, -ENOEXEC, "%s: no descriptor: the symbol %s is missing", h->path,
                            NH_PLUGIN_SYMBOL_NAME);
        r = check_descriptor(h->path, name, raw, &h->desc, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(h);
        return 0;
}

int nh_plugin_open(char *const *dirs, const char *name, struct nh_plugin_handle **ret, char **ret_error) {
        *ret_error = NULL;
        for (size_t i = 0; dirs && dirs[i]; i++) {
                int r = open_one(dirs[i], name, ret, ret_error);
                if (r != -ENOENT)
                        return r;
        }
        return -ENOENT;
}
