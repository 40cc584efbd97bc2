/* SPDX-License-Identifier: MIT */
/*
 * A probe for testing the core: each cycle it reads a state file (relative to --root-path)
 * and reports what the file says, one line each:
 *
 *     TYPE[/PROBLEM] True|False|Unknown REASON message words...
 *     event REASON message words...
 *     fail                       (the cycle fails with -EIO)
 *     hang                       (the cycle stays pending: the core times it out)
 *     later                      (TestProblem True TestLater, from a 20 ms timer)
 *     latertrigger               (the same, and nh_trigger() from the timer, mid-cycle)
 *     pipe                       (OtherProblem True OtherPipe once a watched pipe is readable)
 *     trigger                    (asks for a cycle now, twice)
 *     counter NAME VALUE         (nh_counter_set(), for /metrics)
 *
 * A missing file reports nothing.  Config: "state_file" (default "testprobe/state"),
 * "init_fail" (init returns -ENODEV), "count" (an integer it ignores; to test int keys),
 * "done_file" (an absolute path done() creates, to show it ran).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <nodehealth/plugin.h>
#include <stdlib.h>
#include <string.h>

struct testprobe_config {
        char *state_file;
        char *done_file;
        bool init_fail;
        int64_t count;
        uint64_t window;
        double share;
        char **names;
        char **declare; /* condition types declared at init with nh_declare_condition() */
};

struct testprobe {
        const struct testprobe_config *config;
        int pipe[2];
        bool trigger_later; /* "latertrigger": nh_trigger() from the timer, while the cycle is pending */
};

static void later(struct nh_probe_ctx *ctx, void *userdata) {
        struct testprobe *t = userdata;

        if (t->trigger_later)
                nh_trigger(ctx);

        nh_report(ctx, &(struct nh_observation){.type = "TestProblem",
                                                .status = NH_STATUS_TRUE,
                                                .reason = "TestLater",
                                                .message = "reported from a timer"});
        nh_cycle_done(ctx);
}

static void readable(struct nh_probe_ctx *ctx, int fd, uint32_t revents, void *userdata) {
        struct testprobe *t = userdata;
        char c;

        if (read(fd, &c, 1) != 1)
                return;
        nh_report(ctx, &(struct nh_observation){.type = "OtherProblem",
                                                .status = NH_STATUS_TRUE,
                                                .reason = "OtherPipe",
                                                .message = "reported from an fd"});
        nh_unwatch_fd(ctx, t->pipe[0]);
        close(t->pipe[0]);
        close(t->pipe[1]);
        t->pipe[0] = t->pipe[1] = -1;
        nh_cycle_done(ctx);
}

static const struct nh_condition_decl testprobe_conditions[] = {
        {.type = "TestProblem", .healthy_reason = "TestOK", .help = "what the state file says"},
        {.type = "OtherProblem", .healthy_reason = "OtherOK", .help = "a second type"},
        {.type = "MemoryPressure", .healthy_reason = "KubeletHasSufficientMemory", .help = "kubelet-owned"},
        {0},
};

static const struct nh_cfg_entry testprobe_config_table[] = {
        {.type = NH_CFG_STRING,
         .key = "state_file",
         .def = "testprobe/state",
         .offset = offsetof(struct testprobe_config, state_file),
         .help = "file"},
        {.type = NH_CFG_STRING,
         .key = "done_file",
         .def = "",
         .offset = offsetof(struct testprobe_config, done_file),
         .help = "created by done()"},
        {.type = NH_CFG_BOOL,
         .key = "init_fail",
         .def = "false",
         .offset = offsetof(struct testprobe_config, init_fail),
         .help = "fail init"},
        {.type = NH_CFG_INT,
         .key = "count",
         .def = "3",
         .offset = offsetof(struct testprobe_config, count),
         .help = "an integer",
         .min = 0,
         .max = 100},
        {.type = NH_CFG_DURATION,
         .key = "window",
         .def = "10m",
         .offset = offsetof(struct testprobe_config, window),
         .help = "a duration",
         .min = 1,
         .max = 86400},
        {.type = NH_CFG_DOUBLE,
         .key = "share",
         .def = "0.9",
         .offset = offsetof(struct testprobe_config, share),
         .help = "a share",
         .min = 0,
         .max = 1},
        {.type = NH_CFG_STRING_LIST,
         .key = "declare",
         .def = "",
         .offset = offsetof(struct testprobe_config, declare),
         .help = "types to declare at init"},
        {.type = NH_CFG_STRING_LIST,
         .key = "names",
         .def = "a, b",
         .offset = offsetof(struct testprobe_config, names),
         .help = "a list"},
        {0},
};

static int testprobe_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        const struct testprobe_config *c = config;
        struct testprobe *t;

        if (c->init_fail)
                return -ENODEV;
        for (size_t i = 0; c->declare && c->declare[i]; i++) {
                int r = nh_declare_condition(ctx, c->declare[i], "DeclaredOK");
                if (r < 0)
                        return r;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;

        t->config = c;
        t->pipe[0] = t->pipe[1] = -1;
        *ret_state = t;
        return 0;
}

static enum nh_status parse_status(const char *s) {
        if (strcmp(s, "True") == 0)
                return NH_STATUS_TRUE;
        if (strcmp(s, "False") == 0)
                return NH_STATUS_FALSE;
        if (strcmp(s, "Unknown") == 0)
                return NH_STATUS_UNKNOWN;
        return _NH_STATUS_INVALID;
}

static int testprobe_probe(struct nh_probe_ctx *ctx, void *state) {
        struct testprobe *t = state;
        char buf[8192], *line, *save = NULL;
        int r;

        r = nh_read_file(ctx, NH_ROOT_HOST, t->config->state_file, buf, sizeof(buf), NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *w1, *w2, *rest, *slash;

                if (strcmp(line, "fail") == 0)
                        return -EIO;
                if (strcmp(line, "hang") == 0)
                        return NH_PROBE_PENDING; /* and never ends: the core's timeout must */
                if (strcmp(line, "later") == 0 || strcmp(line, "latertrigger") == 0) {
                        t->trigger_later = strcmp(line, "latertrigger") == 0;
                        /* Ends on a timer: the report and the end of the cycle come from the loop. */
                        r = nh_set_timer(ctx, 20 * 1000, later, t);
                        return r < 0 ? r : NH_PROBE_PENDING;
                }
                if (strcmp(line, "pipe") == 0) {
                        r = pipe2(t->pipe, O_CLOEXEC | O_NONBLOCK);
                        if (r < 0)
                                return -errno;
                        r = nh_watch_fd(ctx, t->pipe[0], EPOLLIN, readable, t);
                        if (r < 0)
                                return r;
                        if (write(t->pipe[1], "x", 1) != 1)
                                return -EIO;
                        return NH_PROBE_PENDING;
                }
                if (strcmp(line, "declarelate") == 0) {
                        /* After init the types are fixed: the core must refuse. */
                        r = nh_declare_condition(ctx, "LateType", "LateOK");
                        nh_event(ctx, r == -EBUSY ? "DeclareRefused" : "DeclareAccepted", "");
                        continue;
                }
                if (strcmp(line, "trigger") == 0) {

                        nh_trigger(ctx);
                        nh_trigger(ctx);
                        continue;
                }
                w1 = line;
                w2 = strchr(w1, ' ');
                if (!w2)
                        continue;
                *w2++ = '\0';
                if (strcmp(w1, "counter") == 0) {
                        rest = strchr(w2, ' ');
                        if (rest)
                                *rest++ = '\0';
                        (void) nh_counter_set(ctx, w2, rest ? strtoull(rest, NULL, 10) : 0);
                        continue;
                }
                if (strcmp(w1, "event") == 0) {
                        rest = strchr(w2, ' ');
                        if (rest)
                                *rest++ = '\0';
                        nh_event(ctx, w2, rest ? rest : "");
                        continue;
                }
                rest = strchr(w2, ' ');
                if (!rest)
                        continue;
                *rest++ = '\0';
                char *message = strchr(rest, ' ');
                if (message)
                        *message++ = '\0';
                slash = strchr(w1, '/');
                if (slash)
                        *slash++ = '\0';
                r = nh_report(ctx, &(struct nh_observation){
                                           .type = w1,
                                           .problem = slash,
                                           .status = parse_status(w2),
                                           .reason = rest,
                                           .message = message ? message : "",
                                   });
                if (r < 0)
                        nh_log(ctx, NH_LOG_WARNING, "report of %s refused: %s", w1, strerror(-r));
        }
        return 0;
}

static void testprobe_done(void *state) {
        struct testprobe *t = state;

        if (t && t->config->done_file && t->config->done_file[0] == '/') {
                int fd = open(t->config->done_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd >= 0)
                        close(fd);
        }
        if (t && t->pipe[0] >= 0) {
                close(t->pipe[0]);
                close(t->pipe[1]);
        }
        free(t);
}

NH_PLUGIN_DEFINE(.name = "testprobe", .description = "reports what a state file says (tests only)",
                 .conditions = testprobe_conditions, .config = testprobe_config_table,
                 .config_size = sizeof(struct testprobe_config), .init = testprobe_init, .probe = testprobe_probe,
                 .done = testprobe_done);
