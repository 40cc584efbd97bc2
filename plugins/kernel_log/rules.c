/* SPDX-License-Identifier: MIT */
/*
 * node-problem-detector rule files and its buffer semantics.
 *
 * What node-problem-detector does (pkg/systemlogmonitor): every new line is pushed into a ring
 * of bufferSize lines; for each rule the ring is joined with "\n" (empty slots of a ring not yet
 * full are empty lines at the front) and the pattern, compiled with `\z` appended, is searched
 * in it; the lines from the one where the leftmost match starts to the newest are "the matched
 * lines", joined by "\n", and become the event's or the condition's message.
 *
 * What is done the same here: the joined text, the anchoring at its end, the leftmost match and
 * the lines it covers, TrimSpace of every line, the default bufferSize of 10.  Deliberate
 * differences, each because NPD's behaviour is an accident rather than a rule:
 *   - the pattern is compiled as "(?:PATTERN)\z", not "PATTERN\z": with a top-level "|" NPD
 *     anchors only the last alternative, so an old line matching another one matches again
 *     with every new line;
 *   - a permanent rule must name one of the file's conditions and a rule's type must be
 *     "temporary" or "permanent" (NPD silently ignores the first and takes any other type
 *     as permanent), and unknown keys are errors (Go's decoder ignores them: a typo in
 *     "pattern" made a rule that never matched);
 *   - patterns are PCRE2, a superset of RE2's syntax (lookarounds and back references are
 *     accepted here and refused by NPD).  Compiled with PCRE2_UTF and PCRE2_MATCH_INVALID_UTF
 *     (RE2 works on UTF-8, a kernel line may hold any byte), PCRE2_DOLLAR_ENDONLY (RE2's "$"
 *     without (?m) is the end of the text only) and without PCRE2_UCP (RE2's \w, \d, \s and \b are
 *     ASCII).  One RE2 escape means something else in PCRE2: "\v" is a vertical tab in RE2 and
 *     any vertical white space in PCRE2.  A match that exceeds PCRE2's match limit (a pattern
 *     that backtracks catastrophically) counts as no match.
 *
 * The fast path: a pattern that cannot match a "\n" can only match inside the newest line when
 * its match must end at the end of the text, so it is run from the start of the newest line
 * (with the whole buffer as the subject, so that lookbehinds and ^ see exactly what NPD's see).
 */
#include "rules.h"

#include "../common/go-duration.h"
#include "../common/read-file.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USEC_PER_SEC UINT64_C(1000000)
#define MAX_FILE_SIZE (4 * 1024 * 1024) /* rule files are a few KiB */
#define MAX_BUFFER_SIZE 1000 /* lines; NPD ships 10 */
#define DEFAULT_BUFFER_SIZE 10 /* NPD's ApplyDefaultConfiguration */
#define MATCH_LIMIT 1000000 /* backtracking steps per match: a pathological pattern cannot stall the loop */
#define JIT_STACK_MAX (512 * 1024)

/* ---- errors ---- */

__attribute__((format(printf, 3, 4))) static int fail(char **ret_error, const char *path, const char *format, ...) {
        char *what = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&what, format, ap) < 0)
                what = NULL;
        va_end(ap);
        if (!what || asprintf(ret_error, "%s: %s", path, what) < 0)
                *ret_error = NULL;
        free(what);
        return -EINVAL;
}

/* Line and column (from 1) of byte `offset` of `text`. */
static void line_column(const char *text, size_t offset, unsigned *ret_line, unsigned *ret_column) {
        unsigned line = 1, column = 1;

        for (size_t i = 0; i < offset && text[i]; i++) {
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

/* ---- patterns ---- */

/* An escape inside or outside a class that matches one character which is never "\n". */
static bool safe_escape(char c) {
        /* \d \w \S, \N (not a newline), escaped punctuation, \t \f \r \e \a, \b \B \A \z \Z \G anchors. */
        return strchr("dwSNtfreaAbBzZG", c) || (ispunct((unsigned char) c) && c != '\\') || c == '\\';
}

/*
 * Can this pattern never match text containing "\n"?  Conservative: false whenever in doubt
 * (a "\n", \s, \W, \D, \v, \R, \x.., \p{..}, octal or control escapes, a negated class, a class
 * with escapes it does not know, (?s) or any other inline option group that could enable it).
 */
static bool pattern_single_line(const char *p) {
        bool in_class = false, class_start = false;

        for (size_t i = 0; p[i]; i++) {
                unsigned char c = (unsigned char) p[i];

                if (c < 0x20)
                        return false; /* a literal control character, "\n" included */
                if (c == '\\') {
                        char e = p[i + 1];
                        if (!e)
                                return false;
                        if (e == 'Q')
                                return false; /* \Q…\E quoting: not worth reading */
                        if (!safe_escape(e) || (in_class && strchr("bBAzZG", e)))
                                return false;
                        i++;
                        class_start = false;
                        continue;
                }
                if (in_class) {
                        if (class_start && c == '^') {
                                /* Negated: matches "\n" unless it names it ([^\n…]). */
                                size_t j = i + 1;
                                bool names_newline = false;
                                if (p[j] == ']')
                                        j++;
                                for (; p[j] && p[j] != ']'; j++)
                                        if (p[j] == '\\' && p[j + 1]) {
                                                names_newline = names_newline || p[j + 1] == 'n';
                                                j++;
                                        }
                                if (!names_newline || !p[j])
                                        return false;
                                i = j;
                                in_class = false;
                                continue;
                        }
                        if (c == '[' && p[i + 1] == ':')
                                return false; /* [:space:], [:cntrl:], … */
                        if (c == ']' && !class_start)
                                in_class = false;
                        class_start = false;
                        continue;
                }
                if (c == '[') {
                        in_class = true;
                        class_start = true;
                        continue;
                }
                if (c == '(' && p[i + 1] == '?') {
                        /* Inline options could switch on s (dotall): refuse any letter group but plain ones. */
                        size_t j = i + 2;
                        if (p[j] == ':' || p[j] == '=' || p[j] == '!' || p[j] == '>')
                                continue;
                        if (p[j] == '<' && (p[j + 1] == '=' || p[j + 1] == '!'))
                                continue;
                        if (p[j] == 'P' || p[j] == '<' || p[j] == '\'')
                                continue; /* named group */
                        for (; isalpha((unsigned char) p[j]) || p[j] == '-' || p[j] == '^'; j++)
                                if (p[j] == 's' || p[j] == 'x')
                                        return false;
                        continue;
                }
        }
        return !in_class;
}

static void pattern_done(struct kl_pattern *p) {
        pcre2_code_free(p->code);
        free(p->text);
        free(p->literal);
        *p = (struct kl_pattern){0};
}

static void pattern_literal(struct kl_pattern *pat);

/* Compiles NPD-style: the match must end at the end of the buffer.  0 or -EINVAL with the error. */
static int pattern_compile(struct kl_pattern *p, const char *text, const char *path, const char *what,
                           char **ret_error) {
        char *anchored = NULL;
        PCRE2_UCHAR message[256];
        PCRE2_SIZE offset = 0;
        int error = 0;

        /* Syntax errors first, on the pattern as written, so that offsets point into it. */
        p->code = pcre2_compile((PCRE2_SPTR) text, PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &error, &offset, NULL);
        if (!p->code) {
                pcre2_get_error_message(error, message, sizeof(message));
                return fail(ret_error, path, "%s: pattern \"%s\" is not a valid regular expression: %s at offset %zu",
                            what, text, (const char *) message, (size_t) offset);
        }
        pcre2_code_free(p->code);
        p->code = NULL;

        if (asprintf(&anchored, "(?:%s)\\z", text) < 0)
                return -ENOMEM;
        p->code = pcre2_compile((PCRE2_SPTR) anchored, PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &error, &offset, NULL);
        free(anchored);
        if (!p->code) {
                /* "(?:" + a pattern that closes a group of its own: "a)(b" compiles alone. */
                pcre2_get_error_message(error, message, sizeof(message));
                return fail(ret_error, path, "%s: pattern \"%s\" cannot be anchored at the end: %s", what, text,
                            (const char *) message);
        }
        /* Without JIT (a kernel or SELinux policy that forbids executable memory) it still works, slower. */
        (void) pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);
        p->text = strdup(text);
        if (!p->text)
                return -ENOMEM;
        p->single_line = pattern_single_line(text);
        pattern_literal(p);
        return 0;
}

/*
 * The longest run of literal bytes that every match must contain within the newest line: from
 * the top-level atoms after the last one that could match a "\n" (before it, a literal may lie
 * in an older line).  None when the pattern has a top-level "|", inline options, or no run of
 * at least 4 bytes.  Conservative: a pattern without one is simply always run.
 */
struct atom {
        size_t start, end; /* in the pattern */
        int literal; /* the byte, or -1 */
        bool optional; /* followed by ?, * or {0 */
        bool quantified;
};

/* The end of the group that opens at p[i] == '(' (index after its ')'), or 0 when unbalanced. */
static size_t group_end(const char *p, size_t i) {
        int depth = 0;
        bool in_class = false;

        for (; p[i]; i++) {
                if (p[i] == '\\') {
                        if (!p[i + 1])
                                return 0;
                        i++;
                        continue;
                }
                if (in_class) {
                        if (p[i] == ']')
                                in_class = false;
                        continue;
                }
                if (p[i] == '[') {
                        in_class = true;
                        if (p[i + 1] == '^')
                                i++;
                        if (p[i + 1] == ']')
                                i++;
                        continue;
                }
                if (p[i] == '(')
                        depth++;
                else if (p[i] == ')' && --depth == 0)
                        return i + 1;
        }
        return 0;
}

static int literal_escape(char c) {
        return ispunct((unsigned char) c) ? c : c == 't' ? '\t' : -2; /* -2: a class or an anchor */
}

static void pattern_literal(struct kl_pattern *pat) {
        const char *p = pat->text;
        struct atom atoms[512];
        size_t n = 0, i = 0, first = 0, best_start = 0, best_len = 0;

        while (p[i]) {
                struct atom a = {.start = i, .literal = -1};

                if (n == sizeof(atoms) / sizeof(atoms[0]))
                        return;
                if (p[i] == '|' || (p[i] == '(' && p[i + 1] == '?' && isalpha((unsigned char) p[i + 2])))
                        return; /* top-level alternation, or inline options such as (?i) */
                if (p[i] == '\\') {
                        if (!p[i + 1] || p[i + 1] == 'Q')
                                return;
                        a.literal = literal_escape(p[i + 1]);
                        if (a.literal == -2)
                                a.literal = -1;
                        i += 2;
                } else if (p[i] == '[') {
                        size_t j = i + 1;
                        if (p[j] == '^')
                                j++;
                        if (p[j] == ']')
                                j++;
                        for (; p[j] && p[j] != ']'; j++)
                                if (p[j] == '\\' && p[j + 1])
                                        j++;
                        if (!p[j])
                                return;
                        i = j + 1;
                } else if (p[i] == '(') {
                        size_t e = group_end(p, i);
                        if (e == 0)
                                return;
                        i = e;
                } else if (strchr(".^$", p[i]))
                        i++;
                else if (strchr("*+?{)", p[i]))
                        return; /* a quantifier with nothing before it: not worth understanding */
                else
                        a.literal = (unsigned char) p[i++];
                /* A quantifier (and its lazy or possessive mark) belongs to the atom. */
                if (p[i] == '*' || p[i] == '?' || p[i] == '+' || (p[i] == '{' && isdigit((unsigned char) p[i + 1]))) {
                        a.quantified = true;
                        a.optional = p[i] != '+' && !(p[i] == '{' && p[i + 1] != '0');
                        if (p[i] == '{') {
                                while (p[i] && p[i] != '}')
                                        i++;
                                if (!p[i])
                                        return;
                        }
                        i++;
                        if (p[i] == '?' || p[i] == '+')
                                i++;
                }
                a.end = i;
                atoms[n++] = a;
        }

        /* Atoms after the last one that could match a "\n" lie in the newest line. */
        for (size_t k = 0; k < n; k++) {
                char *text = strndup(p + atoms[k].start, atoms[k].end - atoms[k].start);
                bool safe = text && pattern_single_line(text);
                free(text);
                if (!safe)
                        first = k + 1;
        }
        for (size_t k = first; k < n;) {
                size_t run = k;
                while (run < n && atoms[run].literal >= 0 && !atoms[run].quantified)
                        run++;
                /* A literal with "+" is there once, and ends the run. */
                if (run < n && atoms[run].literal >= 0 && !atoms[run].optional)
                        run++;
                if (run - k > best_len) {
                        best_start = k;
                        best_len = run - k;
                }
                k = run > k ? run : k + 1;
        }
        if (best_len < 4)
                return;
        pat->literal = malloc(best_len + 1);
        if (!pat->literal)
                return; /* no prefilter for it: still correct */
        for (size_t k = 0; k < best_len; k++)
                pat->literal[k] = (char) atoms[best_start + k].literal;
        pat->literal[best_len] = '\0';
        pat->literal_len = best_len;
}

/*
 * The prefilter: the first 4 bytes of every literal, hashed into a 4096-bit table.  A pass over
 * the line loads 4 bytes at each position and tests one bit; a hit is confirmed with memcmp.
 * What Hyperscan's FDR does, for a few dozen literals.
 */
#define PREFILTER_BITS 12

struct prefilter_entry {
        uint32_t key;
        const struct kl_pattern *pattern;
        size_t id; /* index into candidates */
};

struct kl_prefilter {
        uint64_t bitmap[(1u << PREFILTER_BITS) / 64];
        struct prefilter_entry *entries;
        size_t n_entries;
        size_t *always; /* ids of patterns without a literal */
        size_t n_always;
};

static uint32_t load32(const char *s) {
        uint32_t v;
        memcpy(&v, s, sizeof(v));
        return v;
}

static uint32_t prefilter_hash(uint32_t key) {
        return (key * UINT32_C(2654435761)) >> (32 - PREFILTER_BITS);
}

static int prefilter_build(struct kl_rules *r) {
        struct kl_prefilter *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        r->prefilter = f;
        f->entries = calloc(2 * r->n_rules + 1, sizeof(*f->entries));
        f->always = calloc(2 * r->n_rules + 1, sizeof(*f->always));
        r->candidates = calloc(2 * r->n_rules + 1, 1);
        if (!f->entries || !f->always || !r->candidates)
                return -ENOMEM;
        for (size_t i = 0; i < 2 * r->n_rules; i++) {
                const struct kl_pattern *p = i % 2 ? &r->rules[i / 2].clear_pattern : &r->rules[i / 2].pattern;
                uint32_t h;

                if (!p->code)
                        continue;
                if (!p->literal) {
                        f->always[f->n_always++] = i;
                        continue;
                }
                f->entries[f->n_entries++] = (struct prefilter_entry){.key = load32(p->literal), .pattern = p, .id = i};
                h = prefilter_hash(load32(p->literal));
                f->bitmap[h / 64] |= UINT64_C(1) << (h % 64);
        }
        return 0;
}

void kl_rules_prefilter(struct kl_rules *r, const char *line, size_t len) {
        const struct kl_prefilter *f = r->prefilter;

        memset(r->candidates, 0, 2 * r->n_rules);
        for (size_t i = 0; i < f->n_always; i++)
                r->candidates[f->always[i]] = 1;
        for (size_t i = 0; i + 4 <= len; i++) {
                uint32_t key = load32(line + i), h = prefilter_hash(key);

                if (!(f->bitmap[h / 64] & (UINT64_C(1) << (h % 64))))
                        continue;
                for (size_t e = 0; e < f->n_entries; e++) {
                        const struct prefilter_entry *en = &f->entries[e];
                        if (en->key == key && en->pattern->literal_len <= len - i &&
                            memcmp(line + i, en->pattern->literal, en->pattern->literal_len) == 0)
                                r->candidates[en->id] = 1;
                }
        }
}

/* ---- the file ---- */

struct kl_rules *kl_rules_free(struct kl_rules *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_conditions; i++) {
                free(r->conditions[i].type);
                free(r->conditions[i].reason);
                free(r->conditions[i].message);
        }
        free(r->conditions);
        for (size_t i = 0; i < r->n_rules; i++) {
                pattern_done(&r->rules[i].pattern);
                pattern_done(&r->rules[i].clear_pattern);
                free(r->rules[i].reason);
                free(r->rules[i].message_suffix);
        }
        free(r->rules);
        if (r->skip_list)
                for (char **s = r->skip_list; *s; s++)
                        free(*s);
        free(r->skip_list);
        if (r->prefilter) {
                free(r->prefilter->entries);
                free(r->prefilter->always);
                free(r->prefilter);
        }
        free(r->candidates);
        pcre2_match_data_free(r->match_data);
        pcre2_match_context_free(r->match_context);
        pcre2_jit_stack_free(r->jit_stack);
        free(r->path);
        free(r->plugin);
        free(r->journal_identifier);
        free(r->log_path);
        free(r->source);
        free(r);
        return NULL;
}

ssize_t kl_rules_find_condition(const struct kl_rules *r, const char *type) {
        for (size_t i = 0; i < r->n_conditions; i++)
                if (strcmp(r->conditions[i].type, type) == 0)
                        return (ssize_t) i;
        return -1;
}

/* Kubernetes-style names, as the core requires of types and reasons. */
static bool camel_case(const char *s) {
        size_t n;

        if (!s || !isupper((unsigned char) s[0]))
                return false;
        for (n = 0; s[n]; n++)
                if (!isalnum((unsigned char) s[n]))
                        return false;
        return n <= 128;
}

static const char *json_type_name(const cJSON *j) {
        if (cJSON_IsString(j))
                return "a string";
        if (cJSON_IsNumber(j))
                return "a number";
        if (cJSON_IsBool(j))
                return "a boolean";
        if (cJSON_IsNull(j))
                return "null";
        if (cJSON_IsArray(j))
                return "an array";
        return "an object";
}

/* Rejects keys not in `known` (NULL-terminated); `what` names the object. */
static int check_keys(const cJSON *obj, const char *const *known, const char *path, const char *what,
                      char **ret_error) {
        const cJSON *item;

        cJSON_ArrayForEach(item, obj) {
                bool ok = false;
                for (size_t i = 0; known[i] && !ok; i++)
                        ok = strcmp(item->string, known[i]) == 0;
                if (!ok) {
                        char list[512] = "";
                        size_t n = 0;
                        for (size_t i = 0; known[i] && n < sizeof(list); i++)
                                n += (size_t) snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", known[i]);
                        return fail(ret_error, path, "%s: unknown key \"%s\" (known: %s)", what, item->string, list);
                }
        }
        return 0;
}

/* An optional string member: 0 (and NULL when absent), -EINVAL, -ENOMEM. */
static int get_string(const cJSON *obj, const char *key, bool required, char **ret, const char *path, const char *what,
                      char **ret_error) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        *ret = NULL;
        if (!j) {
                if (required)
                        return fail(ret_error, path, "%s: \"%s\" is missing", what, key);
                return 0;
        }
        if (!cJSON_IsString(j))
                return fail(ret_error, path, "%s: \"%s\" must be a string, not %s", what, key, json_type_name(j));
        *ret = strdup(j->valuestring);
        return *ret ? 0 : -ENOMEM;
}

static int get_duration(const cJSON *obj, const char *key, uint64_t *ret, const char *path, const char *what,
                        char **ret_error) {
        char *text = NULL;
        int r = get_string(obj, key, false, &text, path, what, ret_error);

        if (r < 0 || !text)
                return r;
        r = go_parse_duration(text, ret);
        if (r < 0)
                r = fail(ret_error, path, "%s: \"%s\" is \"%s\", not a duration such as \"5m\", \"30s\" or \"1h30m\"",
                         what, key, text);
        free(text);
        return r;
}

static int parse_conditions(struct kl_rules *r, const cJSON *array, const char *path, char **ret_error) {
        static const char *const keys[] = {"type", "reason", "message", "status", "transition", NULL};
        const cJSON *c;
        size_t n = 0;
        int k;

        if (!cJSON_IsArray(array))
                return fail(ret_error, path, "\"conditions\" must be an array, not %s", json_type_name(array));
        r->conditions = calloc((size_t) cJSON_GetArraySize(array) + 1, sizeof(*r->conditions));
        if (!r->conditions)
                return -ENOMEM;
        cJSON_ArrayForEach(c, array) {
                struct kl_condition *cond = &r->conditions[n];
                char what[64];

                snprintf(what, sizeof(what), "condition %zu", n + 1);
                if (!cJSON_IsObject(c))
                        return fail(ret_error, path, "%s must be an object, not %s", what, json_type_name(c));
                r->n_conditions = ++n;
                if ((k = check_keys(c, keys, path, what, ret_error)) < 0 ||
                    (k = get_string(c, "type", true, &cond->type, path, what, ret_error)) < 0 ||
                    (k = get_string(c, "reason", false, &cond->reason, path, what, ret_error)) < 0 ||
                    (k = get_string(c, "message", false, &cond->message, path, what, ret_error)) < 0)
                        return k;
                if (!camel_case(cond->type))
                        return fail(ret_error, path, "%s: type \"%s\" must be CamelCase (letters and digits)", what,
                                    cond->type);
                if (!cond->reason || !*cond->reason) {
                        /* NPD allows none; the API server needs a reason for a False condition. */
                        free(cond->reason);
                        if (asprintf(&cond->reason, "No%s", cond->type) < 0)
                                return -ENOMEM;
                }
                if (!camel_case(cond->reason))
                        return fail(ret_error, path, "%s: reason \"%s\" must be CamelCase (letters and digits)", what,
                                    cond->reason);
                if (!cond->message && !(cond->message = strdup("")))
                        return -ENOMEM;
                for (size_t i = 0; i + 1 < n; i++)
                        if (strcmp(r->conditions[i].type, cond->type) == 0)
                                return fail(ret_error, path, "%s: type \"%s\" is listed twice", what, cond->type);
        }
        return 0;
}

static int parse_rule(struct kl_rules *r, struct kl_rule *rule, const cJSON *j, size_t index, const char *path,
                      char **ret_error) {
        static const char *const keys[] = {
                "type",       "condition",    "reason", "pattern", "patternGeneratedMessageSuffix",
                "clearAfter", "clearPattern", NULL};
        char what[64], *type = NULL, *condition = NULL, *pattern = NULL, *clear = NULL;
        int k;

        snprintf(what, sizeof(what), "rule %zu", index + 1);
        if (!cJSON_IsObject(j))
                return fail(ret_error, path, "%s must be an object, not %s", what, json_type_name(j));
        if ((k = check_keys(j, keys, path, what, ret_error)) < 0 ||
            (k = get_string(j, "type", true, &type, path, what, ret_error)) < 0)
                return k;
        if (strcmp(type, "temporary") == 0)
                rule->type = KL_RULE_TEMPORARY;
        else if (strcmp(type, "permanent") == 0)
                rule->type = KL_RULE_PERMANENT;
        else {
                k = fail(ret_error, path, "%s: type \"%s\" is neither \"temporary\" nor \"permanent\"", what, type);
                free(type);
                return k;
        }
        free(type);

        if ((k = get_string(j, "reason", true, &rule->reason, path, what, ret_error)) < 0)
                return k;
        if (!camel_case(rule->reason))
                return fail(ret_error, path, "%s: reason \"%s\" must be CamelCase (letters and digits)", what,
                            rule->reason);
        if ((k = get_string(j, "patternGeneratedMessageSuffix", false, &rule->message_suffix, path, what, ret_error)) <
            0)
                return k;

        if ((k = get_string(j, "condition", rule->type == KL_RULE_PERMANENT, &condition, path, what, ret_error)) < 0)
                return k;
        if (rule->type == KL_RULE_PERMANENT) {
                ssize_t c = kl_rules_find_condition(r, condition);
                if (c < 0)
                        k = fail(ret_error, path, "%s: condition \"%s\" is not in \"conditions\"", what, condition);
                else
                        rule->condition = (size_t) c;
        } else if (condition)
                k = fail(ret_error, path, "%s: \"condition\" belongs to permanent rules; a temporary one is an event",
                         what);
        free(condition);
        if (k < 0)
                return k;

        if ((k = get_string(j, "pattern", true, &pattern, path, what, ret_error)) < 0)
                return k;
        k = pattern_compile(&rule->pattern, pattern, path, what, ret_error);
        free(pattern);
        if (k < 0)
                return k;

        if (rule->type == KL_RULE_TEMPORARY &&
            (cJSON_GetObjectItemCaseSensitive(j, "clearAfter") || cJSON_GetObjectItemCaseSensitive(j, "clearPattern")))
                return fail(ret_error, path, "%s: \"clearAfter\" and \"clearPattern\" belong to permanent rules", what);
        if ((k = get_duration(j, "clearAfter", &rule->clear_after, path, what, ret_error)) < 0)
                return k;
        if (cJSON_GetObjectItemCaseSensitive(j, "clearAfter") && rule->clear_after == 0)
                return fail(ret_error, path, "%s: \"clearAfter\" must be longer than 0", what);
        if ((k = get_string(j, "clearPattern", false, &clear, path, what, ret_error)) < 0)
                return k;
        if (clear) {
                char clear_what[80];
                snprintf(clear_what, sizeof(clear_what), "%s: clearPattern", what);
                k = pattern_compile(&rule->clear_pattern, clear, path, clear_what, ret_error);
                free(clear);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int parse_plugin_config(struct kl_rules *r, const cJSON *j, const char *path, char **ret_error) {
        const cJSON *item;

        if (!cJSON_IsObject(j))
                return fail(ret_error, path, "\"pluginConfig\" must be an object, not %s", json_type_name(j));
        cJSON_ArrayForEach(item, j) {
                /* Go's map[string]string: every value a string. */
                if (!cJSON_IsString(item))
                        return fail(ret_error, path, "pluginConfig: \"%s\" must be a string, not %s", item->string,
                                    json_type_name(item));
                if (strcmp(item->string, "source") == 0 && strcmp(item->valuestring, "kernel") != 0) {
                        r->journal_identifier = strdup(item->valuestring);
                        if (!r->journal_identifier)
                                return -ENOMEM;
                }
                /* filelog's timestamp/message/timestampFormat: the lines come from the journal or kmsg here. */
        }
        return 0;
}

int kl_rules_parse(const char *text, size_t len, const char *path, struct kl_rules **ret, char **ret_error) {
        static const char *const keys[] = {"plugin",   "pluginConfig", "logPath", "lookback",
                                           "delay",    "bufferSize",   "source",  "metricsReporting",
                                           "skipList", "conditions",   "rules",   NULL};
        struct kl_rules *r = NULL;
        const char *end = NULL;
        cJSON *root, *j;
        int k = -EINVAL;

        *ret_error = NULL;
        root = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (!root) {
                unsigned line, column;
                size_t offset = end && end >= text && end <= text + len ? (size_t) (end - text) : 0;
                line_column(text, offset, &line, &column);
                return fail(ret_error, path, "%u:%u: not valid JSON", line, column);
        }
        if (!cJSON_IsObject(root)) {
                k = fail(ret_error, path, "must hold a JSON object, not %s", json_type_name(root));
                goto out;
        }
        if ((k = check_keys(root, keys, path, "top level", ret_error)) < 0)
                goto out;

        r = calloc(1, sizeof(*r));
        if (!r || !(r->path = strdup(path))) {
                k = -ENOMEM;
                goto out;
        }
        if ((k = get_string(root, "plugin", false, &r->plugin, path, "top level", ret_error)) < 0)
                goto out;
        if (r->plugin && strcmp(r->plugin, "kmsg") != 0 && strcmp(r->plugin, "journald") != 0 &&
            strcmp(r->plugin, "filelog") != 0) {
                k = fail(ret_error, path,
                         "\"plugin\" is \"%s\"; node-problem-detector knows \"kmsg\", \"journald\" and "
                         "\"filelog\"",
                         r->plugin);
                goto out;
        }
        j = cJSON_GetObjectItemCaseSensitive(root, "pluginConfig");
        if (j && (k = parse_plugin_config(r, j, path, ret_error)) < 0)
                goto out;
        if ((k = get_string(root, "logPath", false, &r->log_path, path, "top level", ret_error)) < 0 ||
            (k = get_string(root, "source", false, &r->source, path, "top level", ret_error)) < 0 ||
            (k = get_duration(root, "lookback", &r->lookback, path, "top level", ret_error)) < 0 ||
            (k = get_duration(root, "delay", &r->delay, path, "top level", ret_error)) < 0)
                goto out;

        r->buffer_size = DEFAULT_BUFFER_SIZE;
        j = cJSON_GetObjectItemCaseSensitive(root, "bufferSize");
        if (j) {
                if (!cJSON_IsNumber(j) || j->valuedouble != (double) (int64_t) j->valuedouble) {
                        k = fail(ret_error, path, "\"bufferSize\" must be a whole number of lines");
                        goto out;
                }
                if (j->valuedouble < 0 || j->valuedouble > MAX_BUFFER_SIZE) {
                        k = fail(ret_error, path,
                                 "\"bufferSize\" is %g; it must be from 1 to %d lines (0: the default, %d)",
                                 j->valuedouble, MAX_BUFFER_SIZE, DEFAULT_BUFFER_SIZE);
                        goto out;
                }
                if (j->valuedouble >= 1)
                        r->buffer_size = (size_t) j->valuedouble;
        }
        j = cJSON_GetObjectItemCaseSensitive(root, "metricsReporting");
        if (j && !cJSON_IsBool(j)) {
                k = fail(ret_error, path, "\"metricsReporting\" must be a boolean, not %s", json_type_name(j));
                goto out;
        }

        j = cJSON_GetObjectItemCaseSensitive(root, "skipList");
        r->skip_list = calloc(j && cJSON_IsArray(j) ? (size_t) cJSON_GetArraySize(j) + 1 : 1, sizeof(char *));
        if (!r->skip_list) {
                k = -ENOMEM;
                goto out;
        }
        if (j) {
                const cJSON *s;
                size_t n = 0;
                if (!cJSON_IsArray(j)) {
                        k = fail(ret_error, path, "\"skipList\" must be an array of strings, not %s",
                                 json_type_name(j));
                        goto out;
                }
                cJSON_ArrayForEach(s, j) {
                        if (!cJSON_IsString(s) || !*s->valuestring) {
                                k = fail(ret_error, path, "\"skipList\" entry %zu must be a non-empty string", n + 1);
                                goto out;
                        }
                        if (!(r->skip_list[n++] = strdup(s->valuestring))) {
                                k = -ENOMEM;
                                goto out;
                        }
                }
        }

        j = cJSON_GetObjectItemCaseSensitive(root, "conditions");
        if (j && (k = parse_conditions(r, j, path, ret_error)) < 0)
                goto out;

        j = cJSON_GetObjectItemCaseSensitive(root, "rules");
        if (j) {
                const cJSON *item;
                if (!cJSON_IsArray(j)) {
                        k = fail(ret_error, path, "\"rules\" must be an array, not %s", json_type_name(j));
                        goto out;
                }
                r->rules = calloc((size_t) cJSON_GetArraySize(j) + 1, sizeof(*r->rules));
                if (!r->rules) {
                        k = -ENOMEM;
                        goto out;
                }
                cJSON_ArrayForEach(item, j) {
                        size_t i = r->n_rules++;
                        if ((k = parse_rule(r, &r->rules[i], item, i, path, ret_error)) < 0)
                                goto out;
                        if (!r->rules[i].pattern.single_line ||
                            (r->rules[i].clear_pattern.code && !r->rules[i].clear_pattern.single_line))
                                r->any_multi_line = true;
                }
        }

        r->match_data = pcre2_match_data_create(1, NULL);
        r->match_context = pcre2_match_context_create(NULL);
        r->jit_stack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX, NULL);
        if (!r->match_data || !r->match_context || !r->jit_stack) {
                k = -ENOMEM;
                goto out;
        }
        if ((k = prefilter_build(r)) < 0)
                goto out;
        pcre2_set_match_limit(r->match_context, MATCH_LIMIT);
        pcre2_jit_stack_assign(r->match_context, NULL, r->jit_stack);
        *ret = r;
        r = NULL;
        k = 0;
out:
        cJSON_Delete(root);
        kl_rules_free(r);
        return k;
}

int kl_rules_load(int dirfd, const char *path, struct kl_rules **ret, char **ret_error) {
        char *text = NULL;
        size_t len = 0;
        int r;

        r = probe_read_file(dirfd, path, MAX_FILE_SIZE, &text, &len, ret_error);
        if (r < 0)
                return r;
        r = kl_rules_parse(text, len, path, ret, ret_error);
        free(text);
        return r;
}

bool kl_rules_skip(const struct kl_rules *r, const char *line, size_t len) {
        for (char **s = r->skip_list; s && *s; s++)
                if (memmem(line, len, *s, strlen(*s)))
                        return true;
        return false;
}

/* ---- the buffer ---- */

struct kl_buffer {
        size_t lines; /* bufferSize */
        size_t *len; /* ring of line lengths, oldest at `head` */
        size_t head;
        size_t real; /* lines pushed so far, at most `lines`: the others are the empty slots in front */
        char *data;
        size_t size, start, end; /* the joined text is data[start, end) */
};

struct kl_buffer *kl_buffer_free(struct kl_buffer *b) {
        if (!b)
                return NULL;
        free(b->len);
        free(b->data);
        free(b);
        return NULL;
}

void kl_buffer_reset(struct kl_buffer *b) {
        /* lines - 1 separators between lines empty slots: "\n\n…" */
        memset(b->len, 0, b->lines * sizeof(*b->len));
        b->head = 0;
        b->real = 0;
        b->start = 0;
        b->end = b->lines - 1;
        memset(b->data, '\n', b->end);
        b->data[b->end] = '\0';
}

struct kl_buffer *kl_buffer_new(size_t lines) {
        struct kl_buffer *b;

        if (lines < 1)
                return NULL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->lines = lines;
        b->len = calloc(lines, sizeof(*b->len));
        /* Room for the window twice over: compaction then happens once per window at most. */
        b->size = 2 * lines * (KL_MAX_LINE + 1) + 1;
        b->data = malloc(b->size);
        if (!b->len || !b->data)
                return kl_buffer_free(b);
        kl_buffer_reset(b);
        return b;
}

int kl_buffer_push(struct kl_buffer *b, const char *line, size_t len) {
        size_t oldest = b->len[b->head];

        /* TrimSpace, as every NPD watcher does. */
        while (len > 0 && isspace((unsigned char) line[0])) {
                line++;
                len--;
        }
        while (len > 0 && isspace((unsigned char) line[len - 1]))
                len--;
        if (len > KL_MAX_LINE)
                len = KL_MAX_LINE;

        /* Drop the oldest line and the separator after it. */
        b->start += oldest + (b->lines > 1 ? 1 : 0);
        if (b->lines == 1)
                b->start = b->end;
        if (b->end + 1 + len + 1 > b->size) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
        }
        if (b->lines > 1)
                b->data[b->end++] = '\n';
        memcpy(b->data + b->end, line, len);
        b->end += len;
        b->data[b->end] = '\0';
        b->len[b->head] = len;
        b->head = (b->head + 1) % b->lines;
        if (b->real < b->lines)
                b->real++;
        return 0;
}

int kl_pattern_match(struct kl_rules *r, const struct kl_pattern *p, struct kl_buffer *b, struct kl_match *ret) {
        size_t total = b->end - b->start, newest = b->len[(b->head + b->lines - 1) % b->lines];
        size_t offset = p->single_line ? total - newest : 0, match_start, line_end, first = total - newest;
        const char *subject = b->data + b->start;
        PCRE2_SIZE *ovector;
        size_t n_lines = 0;
        int k;

        k = pcre2_match(p->code, (PCRE2_SPTR) subject, total, offset, 0, r->match_data, r->match_context);
        if (k == PCRE2_ERROR_NOMATCH || k == PCRE2_ERROR_MATCHLIMIT || k == PCRE2_ERROR_DEPTHLIMIT ||
            k == PCRE2_ERROR_HEAPLIMIT || k == PCRE2_ERROR_JIT_STACKLIMIT)
                return 0;
        if (k < 0)
                return k;
        ovector = pcre2_get_ovector_pointer(r->match_data);
        match_start = ovector[0];

        /*
         * The lines, newest first, back to the one the match starts in.  As in NPD, a match that
         * starts on the separator before a line does not take in the line before that separator.
         */
        line_end = total;
        for (size_t i = 0; i < b->real; i++) {
                size_t len = b->len[(b->head + b->lines - 1 - i) % b->lines];

                first = line_end - len;
                n_lines++;
                if (first == 0 || match_start + 1 >= first)
                        break;
                line_end = first - 1;
        }
        *ret = (struct kl_match){.text = subject + first, .len = total - first, .n_lines = n_lines};
        return 1;
}
