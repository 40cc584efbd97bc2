/* SPDX-License-Identifier: MIT */
/*
 * nodehealthctl: reads nodehealthd's journal records (this machine's journal, or a journal
 * copied from another node) and shows the current conditions or the history of transitions.
 * Journal fields are untrusted: a record missing a field or carrying garbage is skipped.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

#include "conditions.h"
#include "macro.h"
#include "sink.h"
#include "util.h"

#define EXIT_USAGE 64

enum {
        OPT_JSON = 0x100,
        OPT_CONDITION,
        OPT_SINCE,
        OPT_NODE,
        OPT_DIRECTORY,
        OPT_FILE,
        OPT_EVENTS,
        OPT_VERSION,
};

static const struct option options[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"condition", required_argument, NULL, OPT_CONDITION},
        {"since", required_argument, NULL, OPT_SINCE},
        {"node", required_argument, NULL, OPT_NODE},
        {"directory", required_argument, NULL, OPT_DIRECTORY},
        {"file", required_argument, NULL, OPT_FILE},
        {"events", no_argument, NULL, OPT_EVENTS},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {0},
};

struct ctl_options {
        bool json, events;
        const char *condition, *node, *directory;
        char **files; /* strings borrowed from argv */
        size_t n_files;
        uint64_t since; /* realtime µs; 0: from the beginning */
};

/* One transition record, fields copied out of the journal. */
struct record {
        char *node;
        struct nh_condition c;
        enum nh_status previous;
};

static void record_done(struct record *r) {
        free(r->node);
        free(r->c.type);
        free(r->c.reason);
        free(r->c.message);
        *r = (struct record){};
}

static void help(const char *program) {
        printf("Usage: %s [OPTIONS] conditions\n"
               "       %s [OPTIONS] history\n"
               "Shows nodehealthd's Node Conditions from the journal records of their transitions.\n\n"
               "Commands:\n"
               "  conditions             the latest state of every condition, per node\n"
               "  history                every transition in time order\n\n"
               "Options:\n"
               "      --json             one JSON object per line\n"
               "      --node NAME        only this node (default: every node found)\n"
               "      --condition TYPE   only this condition type\n"
               "      --since TIME       only records since TIME: RFC 3339, or a duration ago (\"1h\")\n"
               "      --events           history: include events too\n"
               "  -D, --directory DIR    read the journal files in DIR (as journalctl -D)\n"
               "      --file FILE        read this journal file; repeatable\n"
               "  -h, --help             show this help\n"
               "      --version          show the version\n\n"
               "Exit status: 0 success, 64 bad usage, 1 other failure.  See nodehealthctl(1).\n",
               program, program);
}

static int parse_since(const char *s, uint64_t *ret) {
        uint64_t t, now = now_usec(CLOCK_REALTIME);

        if (parse_rfc3339(s, &t) >= 0) {
                *ret = t;
                return 0;
        }
        if (parse_duration(s, &t) < 0)
                return -EINVAL;
        *ret = t < now ? now - t : 0;
        return 0;
}

/* Returns the command (an argv string) or NULL after printing why the usage is bad. */
static const char *parse_args(int argc, char **argv, struct ctl_options *o, int *ret_exit) {
        int c;

        *ret_exit = -1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hD:", options, NULL)) >= 0) {
                switch (c) {
                case OPT_JSON:
                        o->json = true;
                        break;
                case OPT_EVENTS:
                        o->events = true;
                        break;
                case OPT_CONDITION:
                        o->condition = optarg;
                        break;
                case OPT_NODE:
                        o->node = optarg;
                        break;
                case 'D':
                case OPT_DIRECTORY:
                        o->directory = optarg;
                        break;
                case OPT_FILE: {
                        char **n = realloc(o->files, (o->n_files + 2) * sizeof(char *));
                        if (!n) {
                                fprintf(stderr, "nodehealthctl: out of memory\n");
                                *ret_exit = EXIT_FAILURE;
                                return NULL;
                        }
                        o->files = n;
                        o->files[o->n_files++] = optarg;
                        o->files[o->n_files] = NULL;
                        break;
                }
                case OPT_SINCE:
                        if (parse_since(optarg, &o->since) < 0) {
                                fprintf(stderr,
                                        "nodehealthctl: --since takes RFC 3339 (2026-11-25T23:30:18Z) or a "
                                        "duration (1h), not \"%s\"\n",
                                        optarg);
                                *ret_exit = EXIT_USAGE;
                                return NULL;
                        }
                        break;
                case 'h':
                        help(argv[0]);
                        *ret_exit = EXIT_SUCCESS;
                        return NULL;
                case OPT_VERSION:
                        printf("nodehealthctl %s\n", PACKAGE_VERSION);
                        *ret_exit = EXIT_SUCCESS;
                        return NULL;
                case ':':
                        fprintf(stderr, "nodehealthctl: %s needs a value\n", argv[optind - 1]);
                        *ret_exit = EXIT_USAGE;
                        return NULL;
                default:
                        fprintf(stderr, "nodehealthctl: unknown option %s; see --help\n", argv[optind - 1]);
                        *ret_exit = EXIT_USAGE;
                        return NULL;
                }
        }
        if ((o->condition && !*o->condition) || (o->node && !*o->node) || (o->directory && !*o->directory)) {
                fprintf(stderr, "nodehealthctl: options need non-empty values\n");
                *ret_exit = EXIT_USAGE;
                return NULL;
        }
        if (o->directory && o->files) {
                fprintf(stderr, "nodehealthctl: --directory and --file are exclusive\n");
                *ret_exit = EXIT_USAGE;
                return NULL;
        }
        if (optind != argc - 1) {
                fprintf(stderr, "nodehealthctl: expected one command, conditions or history; see --help\n");
                *ret_exit = EXIT_USAGE;
                return NULL;
        }
        if (strcmp(argv[optind], "conditions") != 0 && strcmp(argv[optind], "history") != 0) {
                fprintf(stderr, "nodehealthctl: unknown command \"%s\"; see --help\n", argv[optind]);
                *ret_exit = EXIT_USAGE;
                return NULL;
        }
        return argv[optind];
}

/* The value of `name` in the current entry, copied (stops at an embedded NUL); NULL if absent. */
static char *get_field(sd_journal *j, const char *name) {
        const void *data;
        size_t len, n = strlen(name);

        if (sd_journal_get_data(j, name, &data, &len) < 0 || len <= n || ((const char *) data)[n] != '=')
                return NULL;
        return strndup((const char *) data + n + 1, len - n - 1);
}

/* Reads the current entry as a transition: 0, or -EBADMSG when incomplete or garbled. */
static int read_transition(sd_journal *j, struct record *ret) {
        _cleanup_free_ char *status = NULL, *previous = NULL, *when = NULL;
        struct record r = {};

        r.node = get_field(j, "NODEHEALTH_NODE");
        r.c.type = get_field(j, "NODEHEALTH_CONDITION");
        r.c.reason = get_field(j, "NODEHEALTH_REASON");
        r.c.message = get_field(j, "NODEHEALTH_MESSAGE");
        status = get_field(j, "NODEHEALTH_STATUS");
        previous = get_field(j, "NODEHEALTH_PREVIOUS_STATUS");
        when = get_field(j, "NODEHEALTH_TRANSITION_TIME");
        if (!r.node || !*r.node || !r.c.type || !is_camel_case(r.c.type) || !r.c.reason || !r.c.message || !status ||
            !previous || !when)
                goto bad;
        r.c.status = nh_status_from_string(status);
        r.previous = nh_status_from_string(previous);
        if (r.c.status < 0 || r.previous < 0 || parse_rfc3339(when, &r.c.last_transition) < 0 ||
            sd_journal_get_realtime_usec(j, &r.c.last_heartbeat) < 0)
                goto bad;
        *ret = r;
        return 0;
bad:
        record_done(&r);
        return -EBADMSG;
}

/* Control characters would break a table line; the JSON output keeps the text as it is. */
static const char *printable(char *s) {
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return s;
}

static int print_json(cJSON *o) {
        _cleanup_free_ char *text = o ? cJSON_PrintUnformatted(o) : NULL;

        cJSON_Delete(o);
        if (!text)
                return -ENOMEM;
        puts(text);
        return 0;
}

static int open_journal(const struct ctl_options *o, sd_journal **ret) {
        int r;

        if (o->directory) {
                struct stat st;
                if (stat(o->directory, &st) < 0)
                        return -errno;
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                r = sd_journal_open_directory(ret, o->directory, 0);
        } else if (o->files)
                r = sd_journal_open_files(ret, (const char **) o->files, 0);
        else
                r = sd_journal_open(ret, SD_JOURNAL_LOCAL_ONLY);
        return r;
}

/* (MESSAGE_ID=transition [∧ node] [∧ condition]) [∨ (MESSAGE_ID=event [∧ node])] */
static int add_matches(sd_journal *j, const struct ctl_options *o, bool events) {
        _cleanup_free_ char *node = NULL, *condition = NULL;
        int r;

        if (o->node && asprintf(&node, "NODEHEALTH_NODE=%s", o->node) < 0)
                return -ENOMEM;
        if (o->condition && asprintf(&condition, "NODEHEALTH_CONDITION=%s", o->condition) < 0)
                return -ENOMEM;
        r = sd_journal_add_match(j, "MESSAGE_ID=" NH_MESSAGE_ID_TRANSITION, 0);
        if (r >= 0 && node)
                r = sd_journal_add_match(j, node, 0);
        if (r >= 0 && condition)
                r = sd_journal_add_match(j, condition, 0);
        if (r >= 0 && events) {
                r = sd_journal_add_disjunction(j);
                if (r >= 0)
                        r = sd_journal_add_match(j, "MESSAGE_ID=" NH_MESSAGE_ID_EVENT, 0);
                if (r >= 0 && node)
                        r = sd_journal_add_match(j, node, 0);
        }
        return r;
}

static bool is_event(sd_journal *j) {
        _cleanup_free_ char *id = get_field(j, "MESSAGE_ID");
        return id && strcmp(id, NH_MESSAGE_ID_EVENT) == 0;
}

static int print_event(sd_journal *j, bool json) {
        _cleanup_free_ char *node = get_field(j, "NODEHEALTH_NODE"), *reason = get_field(j, "NODEHEALTH_EVENT"),
                            *probe = get_field(j, "NODEHEALTH_PROBE"), *message = get_field(j, "MESSAGE");
        char when[RFC3339_MAX];
        uint64_t t;

        if (!node || !*node || !reason || !probe || !message || sd_journal_get_realtime_usec(j, &t) < 0)
                return 0; /* incomplete: skipped */
        format_rfc3339(when, sizeof(when), t);
        if (!json) {
                printf("%s  %s  event %s %s: %s\n", when, printable(node), printable(probe), printable(reason),
                       printable(message));
                return 0;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "node", node) || !cJSON_AddStringToObject(o, "event", reason) ||
            !cJSON_AddStringToObject(o, "probe", probe) || !cJSON_AddStringToObject(o, "message", message) ||
            !cJSON_AddStringToObject(o, "time", when)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        return print_json(o);
}

static int history(sd_journal *j, const struct ctl_options *o) {
        int r;

        while ((r = sd_journal_next(j)) > 0) {
                struct record rec;
                uint64_t t;

                if (o->since && sd_journal_get_realtime_usec(j, &t) >= 0 && t < o->since)
                        continue;
                if (o->events && is_event(j)) {
                        r = print_event(j, o->json);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (read_transition(j, &rec) < 0)
                        continue;
                if (!o->json) {
                        char when[RFC3339_MAX];
                        printf("%s  %s  %s  %s -> %s  %s: %s\n",
                               format_rfc3339(when, sizeof(when), rec.c.last_transition), printable(rec.node),
                               rec.c.type, nh_status_to_string(rec.previous), nh_status_to_string(rec.c.status),
                               printable(rec.c.reason), printable(rec.c.message));
                        record_done(&rec);
                        continue;
                }
                cJSON *out = cJSON_CreateObject(), *c = nh_condition_to_json(&rec.c);
                if (!out || !c || !cJSON_AddStringToObject(out, "node", rec.node) ||
                    !cJSON_AddItemToObject(out, "condition", c)) {
                        cJSON_Delete(c);
                        cJSON_Delete(out);
                        record_done(&rec);
                        return -ENOMEM;
                }
                if (!cJSON_AddStringToObject(out, "previousStatus", nh_status_to_string(rec.previous))) {
                        cJSON_Delete(out);
                        record_done(&rec);
                        return -ENOMEM;
                }
                record_done(&rec);
                r = print_json(out);
                if (r < 0)
                        return r;
        }
        return r;
}

static int record_compare(const void *a, const void *b) {
        const struct record *x = a, *y = b;
        int d = strcmp(x->node, y->node);
        return d ? d : strcmp(x->c.type, y->c.type);
}

static void free_records(struct record *l, size_t n) {
        for (size_t i = 0; i < n; i++)
                record_done(&l[i]);
        free(l);
}

static size_t width(size_t w, const char *s) {
        size_t n = strlen(s);
        return n > w ? n : w;
}

static int print_conditions_table(struct record *l, size_t n) {
        size_t wn = 4, wt = 4, ws = 6, wr = 6;
        char when[RFC3339_MAX];

        for (size_t i = 0; i < n; i++) {
                wn = width(wn, printable(l[i].node));
                wt = width(wt, l[i].c.type);
                ws = width(ws, nh_status_to_string(l[i].c.status));
                wr = width(wr, printable(l[i].c.reason));
        }
        printf("%-*s  %-*s  %-*s  %-*s  %-20s  %s\n", (int) wn, "NODE", (int) wt, "TYPE", (int) ws, "STATUS", (int) wr,
               "REASON", "SINCE", "MESSAGE");
        for (size_t i = 0; i < n; i++)
                printf("%-*s  %-*s  %-*s  %-*s  %-20s  %s\n", (int) wn, l[i].node, (int) wt, l[i].c.type, (int) ws,
                       nh_status_to_string(l[i].c.status), (int) wr, l[i].c.reason,
                       format_rfc3339(when, sizeof(when), l[i].c.last_transition), printable(l[i].c.message));
        return 0;
}

static int print_conditions_json(struct record *l, size_t n) {
        for (size_t i = 0; i < n;) {
                cJSON *o = cJSON_CreateObject(), *list = NULL;
                size_t k;

                if (!o || !cJSON_AddStringToObject(o, "node", l[i].node) ||
                    !(list = cJSON_AddArrayToObject(o, "conditions"))) {
                        cJSON_Delete(o);
                        return -ENOMEM;
                }
                for (k = i; k < n && strcmp(l[k].node, l[i].node) == 0; k++) {
                        cJSON *c = nh_condition_to_json(&l[k].c);
                        if (!c || !cJSON_AddItemToArray(list, c)) {
                                cJSON_Delete(c);
                                cJSON_Delete(o);
                                return -ENOMEM;
                        }
                }
                int r = print_json(o);
                if (r < 0)
                        return r;
                i = k;
        }
        return 0;
}

static int conditions(sd_journal *j, const struct ctl_options *o) {
        struct record *l = NULL;
        size_t n = 0;
        int r;

        while ((r = sd_journal_next(j)) > 0) {
                struct record rec;
                uint64_t t;
                size_t i;

                if (o->since && sd_journal_get_realtime_usec(j, &t) >= 0 && t < o->since)
                        continue;
                if (read_transition(j, &rec) < 0)
                        continue;
                /* Entries come in time order: a later record of the same condition replaces it. */
                for (i = 0; i < n; i++)
                        if (strcmp(l[i].node, rec.node) == 0 && strcmp(l[i].c.type, rec.c.type) == 0)
                                break;
                if (i < n) {
                        record_done(&l[i]);
                        l[i] = rec;
                        continue;
                }
                struct record *m = realloc(l, (n + 1) * sizeof(*l));
                if (!m) {
                        record_done(&rec);
                        free_records(l, n);
                        return -ENOMEM;
                }
                l = m;
                l[n++] = rec;
        }
        if (r >= 0) {
                if (n > 0)
                        qsort(l, n, sizeof(*l), record_compare);
                r = o->json ? print_conditions_json(l, n) : print_conditions_table(l, n);
        }
        free_records(l, n);
        return r;
}

int main(int argc, char **argv) {
        struct ctl_options o = {};
        sd_journal *j = NULL;
        const char *command;
        int code, r;

        command = parse_args(argc, argv, &o, &code);
        if (!command) {
                free(o.files);
                return code;
        }
        r = open_journal(&o, &j);
        if (r < 0) {
                const char *what = o.directory ? o.directory : o.files ? o.files[0] : "the local journal";
                fprintf(stderr, "nodehealthctl: cannot open the journal %s: %s\n", what, strerror(-r));
                free(o.files);
                return EXIT_FAILURE;
        }
        /* Messages are documents, not logs: do not cut them at the default 64 KiB. */
        (void) sd_journal_set_data_threshold(j, 0);
        r = add_matches(j, &o, strcmp(command, "history") == 0 && o.events);
        if (r >= 0 && o.since)
                r = sd_journal_seek_realtime_usec(j, o.since);
        if (r >= 0)
                r = strcmp(command, "history") == 0 ? history(j, &o) : conditions(j, &o);
        sd_journal_close(j);
        free(o.files);
        if (fflush(stdout) != 0 && r >= 0)
                r = -errno;
        if (r < 0) {
                fprintf(stderr, "nodehealthctl: failed to read the journal: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
