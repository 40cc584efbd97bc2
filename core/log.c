/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int max_level = LOG_LEVEL_INFO;
static bool journal_prefix;

void log_setup(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* JOURNAL_STREAM=DEV:INODE is set by systemd when stderr is a journal stream. */
        journal_prefix = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                         st.st_dev == dev && st.st_ino == ino;
}

void log_set_max_level(int level) {
        max_level = level;
}

static const char *level_word(int level) {
        switch (level) {
        case LOG_LEVEL_ERR:
                return "error";
        case LOG_LEVEL_WARNING:
                return "warning";
        case LOG_LEVEL_NOTICE:
                return "notice";
        case LOG_LEVEL_INFO:
                return "info";
        default:
                return "debug";
        }
}

void log_fullv(int level, const char *prefix, const char *format, va_list ap) {
        if (level > max_level)
                return;
        if (journal_prefix)
                fprintf(stderr, "<%d>", level);
        else
                fprintf(stderr, "nodehealthd: %s: ", level_word(level));
        if (prefix)
                fputs(prefix, stderr);
        vfprintf(stderr, format, ap);
        fputc('\n', stderr);
}

int log_full_errno(int level, int error, const char *format, ...) {
        va_list ap;
        int saved = errno;

        if (error != 0)
                errno = error < 0 ? -error : error;
        va_start(ap, format);
        log_fullv(level, NULL, format, ap);
        va_end(ap);
        if (error == 0)
                errno = saved;
        return error < 0 ? error : -error;
}
