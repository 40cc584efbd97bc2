/* SPDX-License-Identifier: MIT */
/*
 * The core's own log lines, on stderr.  Under systemd (JOURNAL_STREAM names our stderr)
 * each line carries a "<N>" syslog prefix so journald keeps its priority; otherwise a
 * word says the level.  The condition records themselves go through sink-journal.
 */
#pragma once

#include <stdarg.h>

#include "macro.h"

enum { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

void log_setup(void);
void log_set_max_level(int level);

/* Returns -abs(error) so callers can `return log_error_errno(r, "...: %m")`; sets errno for %m. */
int log_full_errno(int level, int error, const char *format, ...) _printf_(3, 4);
void log_fullv(int level, const char *prefix, const char *format, va_list ap) _printf_(3, 0);

#define log_error(...) ((void) log_full_errno(LOG_LEVEL_ERR, 0, __VA_ARGS__))
#define log_warning(...) ((void) log_full_errno(LOG_LEVEL_WARNING, 0, __VA_ARGS__))
#define log_notice(...) ((void) log_full_errno(LOG_LEVEL_NOTICE, 0, __VA_ARGS__))
#define log_info(...) ((void) log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__))
#define log_debug(...) ((void) log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__))
#define log_error_errno(e, ...) log_full_errno(LOG_LEVEL_ERR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
