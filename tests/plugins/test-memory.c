/* SPDX-License-Identifier: MIT */
/*
 * The memory probe, loaded through the real loader into a real condition table: exact
 * conditions for each fixture tree under tests/fixtures/memory/, hysteresis, the OOM-kill
 * window on a fake clock, and configuration errors naming file:line:column.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "util.h"

#define CONFIG_FAST "{\"probes\": {\"memory\": {\"interval\": \"10s\", \"raise_after\": 1, \"clear_after\": 1}}}"

#define PSI_HEALTHY                                               \
        "some avg10=0.12 avg60=0.08 avg300=0.02 total=48330934\n" \
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=21034512\n"
#define PSI_THRASHING                                                \
        "some avg10=40.10 avg60=31.77 avg300=10.59 total=88310934\n" \
        "full avg10=23.40 avg60=18.02 avg300=6.01 total=44434512\n"

static char *fixture_proc(const char *scenario) {
        char *rel = NULL, *path;

        assert_true(asprintf(&rel, "tests/fixtures/memory/%s/proc", scenario) >= 0);
        path = test_path(test_srcdir(), rel);
        free(rel);
        return path;
}

static char *fixture_text(const char *scenario, const char *relpath) {
        char *rel = NULL, *path, *text;

        assert_true(asprintf(&rel, "tests/fixtures/memory/%s/%s", scenario, relpath) >= 0);
        path = test_path(test_srcdir(), rel);
        text = test_read_file(path);
        free(path);
        free(rel);
        return text;
}

/* Copies the scenario's proc tree into dir, which a test then changes between cycles. */
static void copy_fixture(const char *dir, const char *scenario) {
        static const char *const files[] = {"meminfo", "vmstat", "pressure/memory"};
        bool any = false;

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char *rel = NULL, *text;

                assert_true(asprintf(&rel, "proc/%s", files[i]) >= 0);
                text = fixture_text(scenario, rel);
                if (text) {
                        test_write_file(dir, files[i], text);
                        any = true;
                }
                free(text);
                free(rel);
        }
        assert_true(any);
}

static void write_oom_kill(const char *dir, unsigned long long count) {
        char *text = NULL;

        /* Enough of a real vmstat for the probe to know it is one. */
        assert_true(asprintf(&text,
                             "nr_free_pages 1018179\nnr_zone_inactive_anon 1569\npgmajfault 1395\n"
                             "oom_kill %llu\nnuma_pte_updates 0\n",
                             count) >= 0);
        test_write_file(dir, "vmstat", text);
        free(text);
}

static struct harness *start(const char *config, const char *proc) {
        struct harness *h = NULL;
        int r = harness_new(config, proc, NULL, NULL, &h);

        if (r < 0)
                print_error("harness_new: %s\n", h->last_error ? h->last_error : strerror(-r));
        assert_int_equal(r, 0);
        assert_int_equal(h->n_probes, 1);
        return h;
}

static struct harness *start_fixture(const char *config, const char *scenario) {
        char *proc = fixture_proc(scenario);
        struct harness *h = start(config, proc);

        free(proc);
        return h;
}

/* Whatever the message is, the failure output shows it. */
#define assert_message(h, type, needle) _assert_message(h, type, needle, __FILE__, __LINE__)
static void _assert_message(struct harness *h, const char *type, const char *needle, const char *file, int line) {
        const struct nh_condition *c = harness_condition(h, type);

        if (!c) {
                print_error("%s:%d: condition %s is not in the table\n", file, line, type);
                _fail(file, line);
                return;
        }
        if (!strstr(c->message, needle)) {
                print_error("%s:%d: %s message is \"%s\", expected it to contain \"%s\"\n", file, line, type,
                            c->message, needle);
                _fail(file, line);
        }
}

/* The number an OOM message starts with ("5 OOM kills in ..."). */
static unsigned long long oom_count(struct harness *h) {
        const struct nh_condition *c = harness_condition(h, "FrequentOOMKill");
        unsigned long long n;
        char *end;

        assert_non_null(c);
        errno = 0;
        n = strtoull(c->message, &end, 10);
        if (errno != 0 || end == c->message || strncmp(end, " OOM kill", 9) != 0) {
                print_error("FrequentOOMKill message \"%s\" does not start with a count\n", c->message);
                fail();
        }
        return n;
}

/* Expects harness_new to fail with an error containing each of the NULL-terminated needles. */
static void expect_config_error(const char *config, ...) {
        struct harness *h = NULL;
        const char *needle;
        va_list ap;
        int r;

        r = harness_new(config, "/proc", NULL, NULL, &h);
        assert_true(r < 0);
        assert_non_null(h->last_error);
        va_start(ap, config);
        while ((needle = va_arg(ap, const char *))) {
                if (!strstr(h->last_error, needle)) {
                        print_error("error \"%s\" does not contain \"%s\"\n", h->last_error, needle);
                        va_end(ap);
                        harness_free(h);
                        fail();
                }
        }
        va_end(ap);
        harness_free(h);
}

/* ---- fixtures ---- */

static void test_healthy(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "healthy");

        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "NotYetObserved");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        assert_message(h, "MemoryThrashing", "memory PSI full avg10 0.00% (limit 10%), some avg10 0.12% (limit 40%)");
        /* One observation of a counter says nothing about a rate: what --once shows. */
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "InsufficientHistory");
        assert_message(h, "FrequentOOMKill", "first reading of the oom_kill counter (2)");
        assert_message(h, "FrequentOOMKill", "a second observation is needed");
        /* The kubelet's type is not ours, not even declared. */
        assert_null(harness_condition(h, "MemoryPressure"));
        assert_int_equal(nh_table_size(h->table), 2);

        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "0 OOM kills in the last 10s (frequent: more than 3 in 10m)");
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
}

static void test_thrashing(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "thrashing");

        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");
        assert_message(h, "MemoryThrashing", "memory PSI full avg10 23.40% (limit 10%), some avg10 40.10% (limit 40%)");
        harness_free(h);
}

static void test_low_available(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "low-available");

        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "LowMemoryAvailable");
        assert_message(h, "MemoryThrashing", "MemAvailable 157 MiB of 7.7 GiB (2.0%), below 5%");
        harness_free(h);
}

static void test_no_psi(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "no-psi");

        harness_run(h);
        /* Not "PSI unavailable" as a healthy verdict: MemAvailable alone decides, and says so. */
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        assert_message(h, "MemoryThrashing", "MemAvailable 5.6 GiB of 7.7 GiB (73.5%), limit 5%");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        assert_message(h, "MemoryThrashing", "MemAvailable 5.6 GiB");
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        harness_free(h);
}

static void test_no_psi_low_available(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "no-psi-low-available");

        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "LowMemoryAvailable");
        assert_message(h, "MemoryThrashing", "MemAvailable 120 MiB of 7.8 GiB (1.5%), below 5%");
        harness_free(h);
}

static void test_old_kernel(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "old-kernel");

        harness_run(h);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "OOMCounterUnavailable");
        assert_message(h, "FrequentOOMKill", "/proc/vmstat has no oom_kill counter");
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
}

static void test_garbage(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "garbage");

        harness_run(h);
        /* Both checks are Unknown; the first reported (PSI) names its file. */
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "PSIUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/pressure/memory: \"some\" avg10 is not a percentage: \"high");
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "VmstatUnreadable");
        assert_message(h, "FrequentOOMKill", "/proc/vmstat does not look like vmstat");
        harness_free(h);
}

static void test_garbage_meminfo(void **state) {
        char *dir = test_mkdtemp(), *text = fixture_text("garbage", "proc/meminfo");
        struct harness *h;

        copy_fixture(dir, "healthy");
        test_write_file(dir, "meminfo", text);
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/meminfo: \"MemTotal: lots\" is not a number of kB");

        /* A number without its unit is not trusted either. */
        test_write_file(dir, "meminfo", "MemTotal:        8039740 kB\nMemAvailable:    -5 kB\n");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "MemAvailable:    -5 kB\" is not a number of kB");
        test_write_file(dir, "meminfo", "MemTotal:        8039740 kB\nMemAvailable:    5912344");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "\"MemAvailable:    5912344\" is not a number of kB (truncated)");
        test_write_file(dir, "meminfo", "MemTotal:        8039740 kB\nMemAvailable:    9039740 kB\n");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "MemAvailable 9039740 kB, more than MemTotal 8039740 kB");

        /* Back to a sane file: the Unknown clears at once. */
        copy_fixture(dir, "healthy");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(text);
}

static void test_truncated(void **state) {
        struct harness *h = start_fixture(CONFIG_FAST, "truncated");

        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/meminfo has no MemAvailable line and ends mid-line (truncated)");
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "VmstatUnreadable");
        assert_message(h, "FrequentOOMKill", "/proc/vmstat has no oom_kill line and ends mid-line (truncated)");
        harness_free(h);
}

static void test_truncated_psi(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "healthy");
        test_write_file(dir, "pressure/memory", "some avg10=0.12 avg60=0.08 avg300=0.02 total=48330934\nfull avg1");
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "PSIUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/pressure/memory has no \"full avg10=\" line");
        test_write_file(dir, "pressure/memory",
                        "some avg10=0.12 avg60=0.08 avg300=0.02 total=48330934\nfull avg10=0.0");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "PSIUnreadable");
        assert_message(h, "MemoryThrashing", "ends in the middle of its \"full\" line (truncated)");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_missing(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h = start(CONFIG_FAST, dir);

        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "cannot read /proc/meminfo: No such file or directory");
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "VmstatUnreadable");
        assert_message(h, "FrequentOOMKill", "cannot read /proc/vmstat: No such file or directory");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_too_large(void **state) {
        char *dir = test_mkdtemp(), *meminfo = fixture_text("healthy", "proc/meminfo"), *big = NULL;
        struct harness *h;
        size_t len = 0;
        FILE *f;

        /* A well-formed file that does not fit is refused, not read in part. */
        assert_non_null(meminfo);
        f = open_memstream(&big, &len);
        assert_non_null(f);
        fputs(meminfo, f);
        for (unsigned i = 0; ftell(f) < 20000; i++)
                fprintf(f, "Filler%u:        0 kB\n", i);
        assert_int_equal(fclose(f), 0);
        copy_fixture(dir, "healthy");
        test_write_file(dir, "meminfo", big);
        test_write_file(dir, "vmstat", big);
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "MeminfoUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/meminfo is larger than 16 KiB");
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "VmstatUnreadable");
        assert_message(h, "FrequentOOMKill", "/proc/vmstat is larger than 16 KiB");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(big);
        free(meminfo);
}

/* ---- the two checks of MemoryThrashing ---- */

static void test_psi_thresholds(void **state) {
        static const struct {
                const char *psi;
                enum nh_status status;
        } cases[] = {
                {"some avg10=45.00 avg60=30.00 avg300=9.00 total=1\nfull avg10=2.00 avg60=1.00 avg300=0.50 total=1\n",
                 NH_STATUS_TRUE},
                {"some avg10=39.99 avg60=30.00 avg300=9.00 total=1\nfull avg10=9.99 avg60=1.00 avg300=0.50 total=1\n",
                 NH_STATUS_FALSE},
                {"some avg10=10.00 avg60=30.00 avg300=9.00 total=1\nfull avg10=10.00 avg60=1.00 avg300=0.50 "
                 "total=1\n",
                 NH_STATUS_TRUE},
                {"some avg10=40.00 avg60=30.00 avg300=9.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
                 NH_STATUS_TRUE},
                {"full avg10=0.00 avg60=0.00 avg300=0.00 total=1\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
                 NH_STATUS_FALSE},
                {"some avg10=100.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=100.01 avg60=0.00 avg300=0.00 "
                 "total=1\n",
                 NH_STATUS_UNKNOWN},
                {"some avg10=1e2 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
                 NH_STATUS_UNKNOWN},
                {"some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
                 NH_STATUS_UNKNOWN},
                {"some avg60=0.00 avg10=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
                 NH_STATUS_UNKNOWN},
                {"", NH_STATUS_UNKNOWN},
        };
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "healthy");
        h = start(CONFIG_FAST, dir);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                test_write_file(dir, "pressure/memory", cases[i].psi);
                harness_run(h);
                if (harness_condition(h, "MemoryThrashing")->status != cases[i].status) {
                        print_error("case %zu: MemoryThrashing is %s (%s), expected %s\n", i,
                                    nh_status_to_string(harness_condition(h, "MemoryThrashing")->status),
                                    harness_condition(h, "MemoryThrashing")->message,
                                    nh_status_to_string(cases[i].status));
                        fail();
                }
                assert_string_equal(harness_condition(h, "MemoryThrashing")->reason,
                                    cases[i].status == NH_STATUS_TRUE    ? "MemoryStall"
                                    : cases[i].status == NH_STATUS_FALSE ? "MemoryNotThrashing"
                                                                         : "PSIUnreadable");
        }
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_thresholds_from_config(void **state) {
        struct harness *h;

        h = start_fixture("{\"probes\": {\"memory\": {\"raise_after\": 1, \"clear_after\": 1, "
                          "\"psi_full_threshold\": 30, \"psi_some_threshold\": 50.5}}}",
                          "thrashing");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        assert_message(h, "MemoryThrashing", "full avg10 23.40% (limit 30%), some avg10 40.10% (limit 50.5%)");
        harness_free(h);

        h = start_fixture("{\"probes\": {\"memory\": {\"raise_after\": 1, \"min_available_percent\": 1.5}}}",
                          "low-available");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);

        h = start_fixture("{\"probes\": {\"memory\": {\"raise_after\": 1, \"min_available_percent\": 1.5}}}",
                          "no-psi-low-available");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        assert_message(h, "MemoryThrashing", "MemAvailable 120 MiB of 7.8 GiB (1.5%), limit 1.5%");
        harness_free(h);

        /* 4.96% must not read "5.0%, below 5%". */
        char *dir = test_mkdtemp();
        copy_fixture(dir, "healthy");
        test_write_file(dir, "meminfo", "MemTotal:        1000000 kB\nMemAvailable:      49600 kB\n");
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "LowMemoryAvailable");
        assert_message(h, "MemoryThrashing", "MemAvailable 48.4 MiB of 977 MiB (4.96%), below 5%");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* A True check wins over an Unknown one: the two are separate problems of one condition. */
static void test_checks_are_separate(void **state) {
        char *dir = test_mkdtemp(), *garbage_meminfo = fixture_text("garbage", "proc/meminfo");
        char *low_meminfo = fixture_text("low-available", "proc/meminfo");
        struct harness *h;

        copy_fixture(dir, "thrashing");
        test_write_file(dir, "meminfo", garbage_meminfo);
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");

        test_write_file(dir, "meminfo", low_meminfo);
        test_write_file(dir, "pressure/memory", "some avg10=soon\n");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "LowMemoryAvailable");
        assert_message(h, "MemoryThrashing", "MemAvailable 157 MiB");

        test_write_file(dir, "pressure/memory", PSI_HEALTHY);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "LowMemoryAvailable");

        copy_fixture(dir, "healthy");
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(garbage_meminfo);
        free(low_meminfo);
}

static void test_psi_vanishes(void **state) {
        char *dir = test_mkdtemp(), *psi;
        struct harness *h;

        copy_fixture(dir, "thrashing");
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");
        /* Its last verdict must not linger as if it were still being observed. */
        psi = test_path(dir, "pressure/memory");
        assert_int_equal(unlink(psi), 0);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_UNKNOWN, "PSIUnreadable");
        assert_message(h, "MemoryThrashing", "/proc/pressure/memory vanished");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(psi);
}

static void test_hysteresis(void **state) {
        const char *config = "{\"probes\": {\"memory\": {\"interval\": \"10s\", \"raise_after\": 2, "
                             "\"clear_after\": 2}}}";
        char *dir = test_mkdtemp();
        struct harness *h;

        /* Thrashing from the very first observation: one is not enough to say True. */
        h = start_fixture(config, "thrashing");
        harness_run(h);
        assert_true(harness_condition(h, "MemoryThrashing")->status != NH_STATUS_TRUE);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");
        harness_free(h);

        copy_fixture(dir, "healthy");
        h = start(config, dir);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        test_write_file(dir, "pressure/memory", PSI_THRASHING);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");

        test_write_file(dir, "pressure/memory", PSI_HEALTHY);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_TRUE, "MemoryStall");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* ---- FrequentOOMKill ---- */

static void test_oom_burst(void **state) {
        char *dir = test_mkdtemp(), *after = fixture_text("oom-burst", "vmstat.after");
        struct harness *h;

        assert_non_null(after);
        copy_fixture(dir, "oom-burst");
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "InsufficientHistory");
        assert_message(h, "FrequentOOMKill", "(10)");
        harness_advance(h, 150 * USEC_PER_SEC);
        test_write_file(dir, "vmstat", after);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "5 OOM kills in the last 2m30s (more than 3 in 10m)");
        /* OOM kills are not thrashing by themselves. */
        assert_condition(h, "MemoryThrashing", NH_STATUS_FALSE, "MemoryNotThrashing");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
        free(after);
}

static void test_oom_window(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "healthy");
        write_oom_kill(dir, 0);
        h = start("{\"probes\": {\"memory\": {\"interval\": \"1m\", \"raise_after\": 1, \"clear_after\": 1}}}", dir);
        harness_run(h); /* t = 0 */
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "InsufficientHistory");

        /* Exactly the threshold is not "more than". */
        write_oom_kill(dir, 3);
        harness_advance(h, 60 * USEC_PER_SEC);
        harness_run(h); /* t = 1m */
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "3 OOM kills in the last 1m (frequent: more than 3 in 10m)");

        write_oom_kill(dir, 4);
        harness_advance(h, 60 * USEC_PER_SEC);
        harness_run(h); /* t = 2m */
        assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "4 OOM kills in the last 2m (more than 3 in 10m)");

        /* No more kills: the sample at t = 0 stays the base while it is inside the window. */
        for (int minute = 3; minute <= 10; minute++) {
                harness_advance(h, 60 * USEC_PER_SEC);
                harness_run(h);
                assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        }
        assert_message(h, "FrequentOOMKill", "4 OOM kills in the last 10m (more than 3 in 10m)");

        /* t = 11m: the base is t = 1m (counter 3), one kill in the window. */
        harness_advance(h, 60 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "1 OOM kill in the last 10m (frequent: more than 3 in 10m)");
        harness_advance(h, 60 * USEC_PER_SEC);
        harness_run(h);
        assert_message(h, "FrequentOOMKill", "0 OOM kills in the last 10m");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

static void test_oom_counter_reset(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "healthy");
        write_oom_kill(dir, 100);
        h = start(CONFIG_FAST, dir);
        harness_run(h);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");

        write_oom_kill(dir, 7);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "InsufficientHistory");
        assert_message(h, "FrequentOOMKill", "went back from 100 to 7");

        /* Counted from the new base only: 5 kills, not 12 - 100. */
        write_oom_kill(dir, 12);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "5 OOM kills in the last 10s (more than 3 in 10m)");

        /* Garbage in between changes nothing in the history. */
        test_write_file(dir, "vmstat", "nr_free_pages 1\noom_kill many\n");
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_UNKNOWN, "VmstatUnreadable");
        assert_message(h, "FrequentOOMKill", "/proc/vmstat: \"oom_kill many\" is not a counter");
        write_oom_kill(dir, 13);
        harness_advance(h, 10 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "6 OOM kills in the last 30s");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* Hours of 10 s cycles, a kill each: the count stays right while the history stays bounded. */
static void test_oom_long_window(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;
        unsigned long long n;

        copy_fixture(dir, "healthy");
        h = start("{\"probes\": {\"memory\": {\"interval\": \"10s\", \"raise_after\": 1, \"clear_after\": 1, "
                  "\"oom_window\": \"1h\", \"oom_kill_threshold\": 1000}}}",
                  dir);
        for (unsigned k = 0; k <= 1000; k++) {
                write_oom_kill(dir, k);
                harness_run(h);
                if (k >= 1) {
                        n = oom_count(h);
                        /* The base is the oldest kept sample in the window: at most window/60 late. */
                        if (k * 10 <= 3600)
                                assert_int_equal(n, k);
                        else if (n > 360 || n < 354) {
                                print_error("cycle %u: %s\n", k, harness_condition(h, "FrequentOOMKill")->message);
                                fail();
                        }
                }
                harness_advance(h, 10 * USEC_PER_SEC);
        }
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "(frequent: more than 1000 in 1h)");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* An interval longer than the window still counts, over the span it observed. */
static void test_oom_interval_exceeds_window(void **state) {
        char *dir = test_mkdtemp();
        struct harness *h;

        copy_fixture(dir, "healthy");
        write_oom_kill(dir, 0);
        h = start("{\"probes\": {\"memory\": {\"interval\": \"5m\", \"raise_after\": 1, \"clear_after\": 1, "
                  "\"oom_window\": 60}}}",
                  dir);
        harness_run(h);
        write_oom_kill(dir, 2);
        harness_advance(h, 300 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_FALSE, "NoFrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "2 OOM kills in the last 5m (frequent: more than 3 in 1m)");
        write_oom_kill(dir, 6);
        harness_advance(h, 300 * USEC_PER_SEC);
        harness_run(h);
        assert_condition(h, "FrequentOOMKill", NH_STATUS_TRUE, "FrequentOOMKill");
        assert_message(h, "FrequentOOMKill", "4 OOM kills in the last 5m (more than 3 in 1m)");
        harness_free(h);
        test_rmtree(dir);
        free(dir);
}

/* ---- configuration ---- */

static void test_config_unknown_key(void **state) {
        expect_config_error("{\n"
                            "  \"probes\": {\n"
                            "    \"memory\": {\"interval\": \"10s\", \"psi_full_treshold\": 5}\n"
                            "  }\n"
                            "}\n",
                            "nodehealthd.json:3:35: unknown key \"psi_full_treshold\" in probe \"memory\"",
                            "did you mean \"psi_full_threshold\"?", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"oom_kills\": 5}}}", "nodehealthd.json:1:24: unknown key",
                            NULL);
}

static void test_config_out_of_range(void **state) {
        expect_config_error("{\"probes\": {\"memory\": {\"psi_full_threshold\": 150}}}",
                            "nodehealthd.json:1:46: \"psi_full_threshold\" in probe \"memory\" must be between 0 and "
                            "100",
                            NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"psi_some_threshold\": -1}}}",
                            "nodehealthd.json:1:", "between 0 and 100", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"min_available_percent\": 100.5}}}",
                            "nodehealthd.json:1:", "\"min_available_percent\"", "between 0 and 100", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"oom_kill_threshold\": -1}}}",
                            "nodehealthd.json:1:", "between 0 and 100000", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"oom_kill_threshold\": 2.5}}}",
                            "nodehealthd.json:1:", "must be an integer", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"oom_window\": \"48h\"}}}",
                            "nodehealthd.json:1:38: \"oom_window\" in probe \"memory\" must be between 1s and 86400s",
                            NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"oom_window\": \"500ms\"}}}", "between 1s and 86400s", NULL);
        expect_config_error("{\"probes\": {\"memory\": {\"min_available_percent\": \"5\"}}}",
                            "must be a number, not a string", NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_healthy),
                cmocka_unit_test(test_thrashing),
                cmocka_unit_test(test_low_available),
                cmocka_unit_test(test_no_psi),
                cmocka_unit_test(test_no_psi_low_available),
                cmocka_unit_test(test_old_kernel),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_garbage_meminfo),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_truncated_psi),
                cmocka_unit_test(test_missing),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_psi_thresholds),
                cmocka_unit_test(test_thresholds_from_config),
                cmocka_unit_test(test_checks_are_separate),
                cmocka_unit_test(test_psi_vanishes),
                cmocka_unit_test(test_hysteresis),
                cmocka_unit_test(test_oom_burst),
                cmocka_unit_test(test_oom_window),
                cmocka_unit_test(test_oom_counter_reset),
                cmocka_unit_test(test_oom_long_window),
                cmocka_unit_test(test_oom_interval_exceeds_window),
                cmocka_unit_test(test_config_unknown_key),
                cmocka_unit_test(test_config_out_of_range),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
