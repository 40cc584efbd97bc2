/* SPDX-License-Identifier: MIT */
/*
 * A probe's own file (a rule file, a monitor file), read whole as hostile input.  Shared by the
 * probes that read node-problem-detector files (kernel_log, custom); static inline so that each
 * stays a self-contained .so.  Not installed.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Reads `path` (relative to `dirfd`, as openat() takes it): a regular file of at most `max`
 * bytes.  Opened without blocking, so a FIFO or a device put there is refused, not waited on.
 * A file that shrinks while it is read is taken as far as it goes.  Returns 0 and the text,
 * NUL-terminated, in *ret_text (free() it) and its length in *ret_len; or a negative errno and
 * "PATH: what went wrong" in *ret_error (NULL when out of memory).
 */
static inline int probe_read_file(int dirfd, const char *path, size_t max, char **ret_text, size_t *ret_len,
                                  char **ret_error) {
        struct stat st;
        char *text;
        size_t len = 0;
        int fd, r;

        *ret_error = NULL;
        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                if (asprintf(ret_error, "%s: cannot open: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t) st.st_size > max) {
                if (asprintf(ret_error, "%s: not a regular file of at most %zu MiB", path, max >> 20) < 0)
                        *ret_error = NULL;
                close(fd);
                return -EINVAL;
        }
        text = malloc((size_t) st.st_size + 1);
        if (!text) {
                close(fd);
                return -ENOMEM;
        }
        while (len < (size_t) st.st_size) {
                ssize_t n = read(fd, text + len, (size_t) st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        if (asprintf(ret_error, "%s: cannot read: %s", path, strerror(-r)) < 0)
                                *ret_error = NULL;
                        free(text);
                        close(fd);
                        return r;
                }
                if (n == 0)
                        break; /* it shrank meanwhile: what is there */
                len += (size_t) n;
        }
        close(fd);
        text[len] = '\0';
        *ret_text = text;
        *ret_len = len;
        return 0;
}
