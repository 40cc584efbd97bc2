/* SPDX-License-Identifier: MIT */
/*
 * node-problem-detector's system-log-monitor files (kernel-monitor.json, readonly-monitor.json,
 * …), loaded unchanged, and their rules matched the way node-problem-detector matches them:
 * the last `bufferSize` lines joined by "\n", and a rule's pattern must match up to the end of
 * that text, so it ends at the newest line.  Patterns are compiled once, with PCRE2's JIT.
 *
 * Nothing here logs or touches the loop: the probe (kernel_log.c) feeds lines and acts on the
 * matches, and the benchmark drives the same code.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum kl_rule_type {
        KL_RULE_TEMPORARY, /* an event per match */
        KL_RULE_PERMANENT, /* sets a condition True */
};

/* One entry of "conditions": a type and what it says while healthy. */
struct kl_condition {
        char *type;
        char *reason;
        char *message;
};

/* A compiled pattern, NPD-anchored: "(?:PATTERN)\z". */
struct kl_pattern {
        char *text; /* as written in the file */
        pcre2_code *code;
        bool single_line; /* cannot match across a "\n": only the newest line needs looking at */
        char *literal; /* text every match has in the newest line (>= 4 bytes), or NULL */
        size_t literal_len;
};

struct kl_rule {
        enum kl_rule_type type;
        char *reason;
        size_t condition; /* permanent rules: index into the file's conditions */
        struct kl_pattern pattern;
        char *message_suffix; /* patternGeneratedMessageSuffix, or NULL */
        /* nodehealthd's additions to permanent rules; NPD files without them keep NPD's behaviour. */
        uint64_t clear_after; /* µs of quiet after the last match that returns the condition to False; 0 never */
        struct kl_pattern clear_pattern; /* code NULL when absent */
};

struct kl_prefilter;

struct kl_rules {
        char *path;
        char *plugin; /* "kmsg", "journald" or "filelog"; NULL when the file does not say */
        char *journal_identifier; /* pluginConfig.source when it is not "kernel": SYSLOG_IDENTIFIER to match */
        char *log_path;
        uint64_t lookback; /* µs */
        uint64_t delay; /* µs */
        size_t buffer_size; /* lines */
        char *source;
        char **skip_list; /* NULL-terminated; lines containing any of these are not looked at */
        struct kl_condition *conditions;
        size_t n_conditions;
        struct kl_rule *rules;
        size_t n_rules;
        bool any_multi_line; /* some pattern can span lines */
        struct kl_prefilter *prefilter; /* one pass over the newest line finds the rules worth running */
        uint8_t *candidates; /* per pattern (rule i: 2i, its clearPattern 2i+1): worth running? */
        pcre2_match_data *match_data;
        pcre2_jit_stack *jit_stack;
        pcre2_match_context *match_context;
};

/*
 * Parses a monitor file's text.  `path` names it in errors.  Returns 0 and the rules, or
 * -EINVAL with "PATH: what" (rule and condition numbers count from 1, pattern errors give
 * PCRE2's message and the offset in the pattern, JSON syntax errors a line and column) in
 * *ret_error, or -ENOMEM.
 */
int kl_rules_parse(const char *text, size_t len, const char *path, struct kl_rules **ret, char **ret_error);
/* Reads and parses a file: as kl_rules_parse, plus the errors of open and read. */
int kl_rules_load(int dirfd, const char *path, struct kl_rules **ret, char **ret_error);
struct kl_rules *kl_rules_free(struct kl_rules *r);

/* The index of a condition type in r->conditions, or -1. */
ssize_t kl_rules_find_condition(const struct kl_rules *r, const char *type);

/* ---- the log buffer ---- */

/*
 * The last `lines` lines, kept joined by "\n" exactly as node-problem-detector's buffer
 * stringifies them (before it is full, its empty slots are empty lines at the front).
 */
struct kl_buffer;

struct kl_buffer *kl_buffer_new(size_t lines);
struct kl_buffer *kl_buffer_free(struct kl_buffer *b);
/* Appends a line (cut at max_line bytes; a "\n" inside becomes a space).  0 or -ENOMEM. */
int kl_buffer_push(struct kl_buffer *b, const char *line, size_t len);
/* Forgets every line (after a gap in the log: lines either side are not neighbours). */
void kl_buffer_reset(struct kl_buffer *b);

/* What a match covers: the lines it touches, joined by "\n", in the buffer's own memory. */
struct kl_match {
        const char *text;
        size_t len;
        size_t n_lines;
};

/*
 * Does `p` match the buffer so that the match ends at its end?  1 and *ret filled (valid until
 * the next push), 0, or a negative PCRE2 error (a match limit hit is reported as 0).
 */
int kl_pattern_match(struct kl_rules *r, const struct kl_pattern *p, struct kl_buffer *b, struct kl_match *ret);

/*
 * One pass over the newest line: r->candidates[2i] (rule i's pattern) and [2i+1] (its
 * clearPattern) say which patterns can match at all, from the literals their matches must hold.
 */
void kl_rules_prefilter(struct kl_rules *r, const char *line, size_t len);

/* Is the line to be skipped (skipList)? */
bool kl_rules_skip(const struct kl_rules *r, const char *line, size_t len);

/* Longest line kept; longer ones are cut (kernel lines are at most ~1 KiB). */
#define KL_MAX_LINE 8192
