/* SPDX-License-Identifier: MIT */
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"
#include "util.h"

extern char **environ;

const char *test_builddir(void) {
        const char *d = getenv("NH_BUILDDIR");
        return d ? d : TOP_BUILDDIR;
}

const char *test_srcdir(void) {
        const char *d = getenv("NH_SRCDIR");
        return d ? d : TOP_SRCDIR;
}

const char *test_daemon_path(void) {
        static char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/nodehealthd", test_builddir());
        return path;
}

char *test_mkdtemp(void) {
        const char *tmp = getenv("TMPDIR");
        char *path = NULL;

        assert_true(asprintf(&path, "%s/nhtest.XXXXXX", tmp && *tmp ? tmp : "/tmp") >= 0);
        assert_non_null(mkdtemp(path));
        /* The plugin loader refuses group-writable directories; so would a careful admin. */
        assert_int_equal(chmod(path, 0755), 0);
        return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

void test_rmtree(const char *path) {
        if (path)
                (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *test_path(const char *dir, const char *relpath) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, relpath) >= 0);
        return p;
}

static void mkdir_parents(char *path) {
        for (size_t i = 1; path[i]; i++) {
                if (path[i] != '/')
                        continue;
                path[i] = '\0';
                if (mkdir(path, 0755) < 0)
                        assert_int_equal(errno, EEXIST);
                path[i] = '/';
        }
}

void test_write_file(const char *dir, const char *relpath, const char *content) {
        char *path = test_path(dir, relpath);
        char *tmp = NULL;
        FILE *f;

        mkdir_parents(path);
        /* Written beside and renamed: a daemon reading concurrently sees old or new, never half. */
        assert_true(asprintf(&tmp, "%s.tmp~", path) >= 0);
        f = fopen(tmp, "we");
        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0 || !*content, 1);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, path), 0);
        free(tmp);
        free(path);
}

char *test_read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t len = 0;

        if (!f)
                return NULL;
        FILE *out = open_memstream(&text, &len);
        int c;
        while ((c = fgetc(f)) != EOF)
                fputc(c, out);
        fclose(out);
        fclose(f);
        return text;
}

void test_copy_tree(const char *from, const char *to) {
        char *argv[] = {"/bin/cp", "-a", NULL, NULL, NULL};
        char *src = NULL;
        int code;

        assert_true(asprintf(&src, "%s/.", from) >= 0);
        assert_int_equal(mkdir(to, 0755) < 0 ? errno : 0, 0);
        argv[2] = src;
        argv[3] = (char *) to;
        proc_free(proc_run(argv, 10000, &code));
        assert_int_equal(code, 0);
        free(src);
}

bool test_pstat(pid_t pid, struct test_pstat *ret) {
        char path[64], *paren;
        int ppid, pgrp;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (!fgets(ret->line, sizeof(ret->line), f))
                ret->line[0] = '\0';
        fclose(f);
        /* "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses. */
        paren = strrchr(ret->line, ')');
        if (!paren || sscanf(paren + 1, " %c %d %d", &ret->state, &ppid, &pgrp) != 3)
                return false;
        ret->pid = pid;
        ret->ppid = (pid_t) ppid;
        ret->pgrp = (pid_t) pgrp;
        return true;
}

size_t test_pstat_count(bool (*match)(const struct test_pstat *p, const void *arg), const void *arg, bool show) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                struct test_pstat p;

                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                if (!test_pstat((pid_t) atoi(de->d_name), &p) || !match(&p, arg))
                        continue; /* ended meanwhile, or not one of them */
                if (show)
                        print_error("# %s%s", p.line, strchr(p.line, '\n') ? "" : "\n");
                n++;
        }
        closedir(d);
        return n;
}

void test_require_journald(bool alone) {
        static int fd = -1;
        struct stat st;

        if (fd < 0)
                fd = open("/tmp/nodehealthd-tests.journald.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
                fail_msg("cannot open the journald lock file: %s", strerror(errno));
        while (flock(fd, alone ? LOCK_EX : LOCK_SH) < 0)
                if (errno != EINTR)
                        fail_msg("cannot lock the journald lock file: %s", strerror(errno));
        if (stat("/run/systemd/journal/socket", &st) < 0)
                fail_msg("no journald: /run/systemd/journal/socket is missing (./test.sh starts one)");
}

void test_use_memory_fixture(const char *proc, const char *scenario) {
        char *from = NULL;

        assert_true(asprintf(&from, "%s/tests/fixtures/memory/%s/proc", test_srcdir(), scenario) >= 0);
        test_rmtree(proc);
        test_copy_tree(from, proc);
        free(from);
}

void test_swap_memory_fixture(const char *proc, const char *scenario) {
        static const char *const files[] = {"meminfo", "vmstat", "pressure/memory"};

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char *from = NULL, *text;

                assert_true(asprintf(&from, "%s/tests/fixtures/memory/%s/proc/%s", test_srcdir(), scenario, files[i]) >=
                            0);
                text = test_read_file(from);
                if (text)
                        test_write_file(proc, files[i], text); /* written beside, then renamed */
                else {
                        char *to = test_path(proc, files[i]);
                        (void) unlink(to);
                        free(to);
                }
                free(text);
                free(from);
        }
}

/* ---- harness ---- */

static uint64_t harness_now(void *userdata, clockid_t clock) {
        struct harness *h = userdata;
        return clock == CLOCK_REALTIME ? h->real : h->mono;
}

static void harness_transition(void *userdata, const struct nh_condition *c, enum nh_status old) {
        struct harness *h = userdata;
        h->n_transitions++;
}

static void harness_trigger(void *userdata, struct nh_probe_ctx *p) {
        struct harness *h = userdata;
        h->n_triggers++;
        /* The daemon would run the cycle now, and a pending probe would refuse it. */
        if (nh_probe_pending(p))
                h->n_triggers_while_pending++;
}

static void harness_event(void *userdata, const char *probe, const char *reason, const char *message) {
        struct harness *h = userdata;

        if (h->n_events < HARNESS_MAX_EVENTS) {
                h->events[h->n_events].reason = strdup(reason);
                h->events[h->n_events].message = strdup(message);
                assert_non_null(h->events[h->n_events].reason);
                assert_non_null(h->events[h->n_events].message);
        }
        h->n_events++;
        snprintf(h->last_event_reason, sizeof(h->last_event_reason), "%s", reason);
}

int harness_new(const char *config_json, const char *proc, const char *sys, const char *root, struct harness **ret) {
        struct harness *h = calloc(1, sizeof(*h));
        const char *paths[_NH_ROOT_MAX] = {proc ? proc : "/proc", sys ? sys : "/sys", root ? root : "/"};
        char *dirs[3] = {NULL, NULL, NULL};
        char *config_path;
        int r;

        assert_non_null(h);
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                h->host.root_fds[i] = -1;
        h->host.config_dir_fd = -1;
        *ret = h;

        h->mono = 1000 * USEC_PER_SEC;
        h->real = UINT64_C(1764115200) * USEC_PER_SEC; /* 2025-11-26T00:00:00Z */
        h->dir = test_mkdtemp();
        test_write_file(h->dir, "nodehealthd.json", config_json);
        config_path = test_path(h->dir, "nodehealthd.json");
        r = nh_config_load(config_path, &h->config, &h->last_error);
        free(config_path);
        if (r < 0)
                return r;

        for (int i = 0; i < _NH_ROOT_MAX; i++) {
                h->host.root_fds[i] = open(paths[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
                assert_true(h->host.root_fds[i] >= 0);
        }
        h->host.now = harness_now;
        h->host.config_dir_fd = open(h->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        h->host.event_cb = harness_event;
        h->host.trigger = harness_trigger;
        assert_int_equal(sd_event_new(&h->event), 0);
        h->host.event = h->event;
        /* As the daemon does: SIGCHLD blocked, children reaped on the loop, a subreaper. */
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        assert_int_equal(sigprocmask(SIG_BLOCK, &chld, NULL), 0);
        assert_int_equal(nh_children_new(h->event, true, &h->children), 0);
        h->host.children = h->children;

        h->host.userdata = h;
        h->table = nh_table_new(harness_transition, h);
        assert_non_null(h->table);
        h->host.table = h->table;

        dirs[0] = test_path(test_builddir(), "plugins/.libs");
        dirs[1] = test_path(test_builddir(), "tests/plugins/.libs");
        for (size_t i = 0; i < h->config->n_probes; i++) {
                struct nh_probe_config *cfg = &h->config->probes[i];
                struct nh_plugin_handle *handle = NULL;
                char *const *search = dirs; /* as --plugin-dir does: the build's plugins */

                if (!cfg->enabled)
                        continue;
                assert_true(h->n_probes < ELEMENTSOF(h->probes));
                r = nh_plugin_open(search, cfg->plugin, &handle, &h->last_error);
                if (r == -ENOENT && !h->last_error)
                        assert_true(asprintf(&h->last_error, "plugin %s.so is not in the build", cfg->plugin) >= 0);
                if (r < 0)
                        break;

                r = nh_probe_new(&h->host, cfg, handle, h->config->positions, &h->probes[h->n_probes], &h->last_error);
                if (r < 0)
                        break;
                (void) nh_probe_start(h->probes[h->n_probes++]);
        }
        free(dirs[0]);
        free(dirs[1]);
        return r < 0 ? r : 0;
}

void harness_free(struct harness *h) {
        if (!h)
                return;
        for (size_t i = 0; i < h->n_probes; i++)
                nh_probe_free(h->probes[i]);
        nh_table_free(h->table);
        nh_children_free(h->children);
        sd_event_unref(h->event);
        for (int i = 0; i < _NH_ROOT_MAX; i++)
                if (h->host.root_fds[i] >= 0)
                        close(h->host.root_fds[i]);
        if (h->host.config_dir_fd >= 0)
                close(h->host.config_dir_fd);

        for (size_t i = 0; i < h->n_events && i < HARNESS_MAX_EVENTS; i++) {
                free(h->events[i].reason);
                free(h->events[i].message);
        }
        nh_config_free(h->config);
        test_rmtree(h->dir);
        free(h->dir);
        free(h->last_error);
        free(h);
}

static bool none_pending(struct harness *h) {
        for (size_t i = 0; i < h->n_probes; i++)
                if (nh_probe_pending(h->probes[i]))
                        return false;
        return true;
}

bool harness_loop(struct harness *h, int timeout_ms, bool (*done)(struct harness *h)) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * USEC_PER_MSEC;

        /*
         * `done` is asked once per turn and its answer is the result: asking again could give
         * another answer (processes end on their own), and fail a test that saw it true.
         */
        for (;;) {
                uint64_t now;

                if (done && done(h))
                        return true;
                now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return false;
                assert_true(sd_event_run(h->event, deadline - now) >= 0);
        }
}

void harness_run_pending(struct harness *h) {
        /* Bounded by the probes' timeouts, which end a pending cycle. */
        assert_true(harness_loop(h, 60000, none_pending));
}

void harness_run(struct harness *h) {
        for (size_t i = 0; i < h->n_probes; i++)
                (void) nh_probe_run(h->probes[i]);
        harness_run_pending(h);
}

void harness_advance(struct harness *h, uint64_t usec) {
        h->mono += usec;
        h->real += usec;
}

const struct nh_condition *harness_condition(struct harness *h, const char *type) {
        return nh_table_find(h->table, type);
}

void _assert_condition(struct harness *h, const char *type, enum nh_status status, const char *reason, const char *file,
                       int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c) {
                print_error("%s:%d: condition %s is not in the table\n", file, line, type);
                _fail(file, line);
                return;
        }
        if (c->status != status || (reason && strcmp(c->reason, reason) != 0)) {
                print_error("%s:%d: %s is %s (%s: %s), expected %s (%s)\n", file, line, type,
                            nh_status_to_string(c->status), c->reason, c->message, nh_status_to_string(status),
                            reason ? reason : "any reason");
                _fail(file, line);
        }
}

/* ---- processes ---- */

static int make_pipe(int fds[2]) {
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        return 0;
}

struct proc *proc_spawn(char *const *argv) {
        struct proc *p = calloc(1, sizeof(*p));
        posix_spawn_file_actions_t fa;
        int out[2], err[2];

        assert_non_null(p);
        assert_int_equal(make_pipe(out), 0);
        assert_int_equal(make_pipe(err), 0);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        assert_int_equal(posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        close(err[1]);
        p->out_fd = out[0];
        p->err_fd = err[0];
        fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
        fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
        p->out = calloc(1, 1);
        p->err = calloc(1, 1);
        return p;
}

static bool drain(int *fd, char **buf, size_t *len) {
        char chunk[4096];
        bool got = false;

        while (*fd >= 0) {
                ssize_t n = read(*fd, chunk, sizeof(chunk));
                if (n > 0) {
                        *buf = realloc(*buf, *len + (size_t) n + 1);
                        assert_non_null(*buf);
                        memcpy(*buf + *len, chunk, (size_t) n);
                        *len += (size_t) n;
                        (*buf)[*len] = '\0';
                        got = true;
                        continue;
                }
                if (n == 0) {
                        close(*fd);
                        *fd = -1;
                }
                break;
        }
        return got;
}

static uint64_t mono_ms(void) {
        return now_usec(CLOCK_MONOTONIC) / 1000;
}

bool proc_wait_output(struct proc *p, const char *needle, bool from_stderr, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;

        for (;;) {
                drain(&p->out_fd, &p->out, &p->out_len);
                drain(&p->err_fd, &p->err, &p->err_len);
                if (strstr(from_stderr ? p->err + p->err_mark : p->out + p->out_mark, needle))

                        return true;
                uint64_t now = mono_ms();
                if (now >= deadline || (p->out_fd < 0 && p->err_fd < 0))
                        return false;
                struct pollfd fds[2] = {{p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}};
                (void) poll(fds, 2, (int) (deadline - now));
        }
}

int proc_wait(struct proc *p, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;
        int status = 0;

        for (;;) {
                drain(&p->out_fd, &p->out, &p->out_len);
                drain(&p->err_fd, &p->err, &p->err_len);
                pid_t r = waitpid(p->pid, &status, WNOHANG);
                if (r == p->pid)
                        break;
                if (mono_ms() >= deadline) {
                        kill(p->pid, SIGKILL);
                        waitpid(p->pid, &status, 0);
                        break;
                }
                struct pollfd fds[2] = {{p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}};
                (void) poll(fds, 2, 20);
        }
        p->pid = 0;
        /* Whatever is still in the pipes belongs to the output. */
        drain(&p->out_fd, &p->out, &p->out_len);
        drain(&p->err_fd, &p->err, &p->err_len);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void proc_free(struct proc *p) {
        if (!p)
                return;
        if (p->pid > 0) {
                kill(p->pid, SIGKILL);
                waitpid(p->pid, NULL, 0);
        }
        if (p->out_fd >= 0)
                close(p->out_fd);
        if (p->err_fd >= 0)
                close(p->err_fd);
        free(p->out);
        free(p->err);
        free(p);
}

struct proc *proc_run(char *const *argv, int timeout_ms, int *ret_code) {
        struct proc *p = proc_spawn(argv);
        *ret_code = proc_wait(p, timeout_ms);
        return p;
}

void _assert_contains(const char *text, const char *needle, const char *file, int line) {
        if (text && strstr(text, needle))
                return;
        print_error("%s:%d: expected to find\n  %s\nin\n%s\n", file, line, needle, text ? text : "(null)");
        _fail(file, line);
}
