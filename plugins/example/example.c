/* SPDX-License-Identifier: MIT */
/*
 * example — a complete probe to copy when you start your own.
 *
 * It reports one condition, HighLoad, True when the 1-minute load average per CPU stays
 * above a threshold.  Everything a probe needs is here: the descriptor, a config table,
 * per-instance state, reading through the core's roots (so --proc-path and a DaemonSet's
 * /host mounts work), and reports that always carry a reason and a message with figures.
 *
 * Build out of tree with one line:
 *     cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags nodehealth-plugin) \
 *        -o example.so example.c
 * then drop example.so into a plugin directory (owned by root, mode 0644) and add
 *     "probes": {"load": {"plugin": "example", "max_load_per_cpu": 4}}
 */
#include <errno.h>
#include <nodehealth/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1. The configuration struct the core fills from the probe's JSON object. */
struct example_config {
        double max_load_per_cpu;
};

/* 2. The table: key, type, default, where it goes, what it means, allowed range. */
static const struct nh_cfg_entry example_config_table[] = {
        {.type = NH_CFG_DOUBLE,
         .key = "max_load_per_cpu",
         .def = "4",
         .offset = offsetof(struct example_config, max_load_per_cpu),
         .help = "1-minute load average per CPU above which HighLoad is True",
         .min = 0.01,
         .max = 10000},
        {0},
};

/* 3. The condition types this probe may report, and what "healthy" is called. */
static const struct nh_condition_decl example_conditions[] = {
        {.type = "HighLoad", .healthy_reason = "LoadNormal", .help = "load average per CPU above max_load_per_cpu"},
        {0},
};

/* 4. Per-instance state: no file-scope mutable variables, ever. */
struct example {
        const struct example_config *config;
};

/*
 * Counts the CPUs in a list such as "0-3,6,8-9" (sysfs's cpu/online).  Reading it through the
 * core's sys root, not with sysconf(), is what lets a DaemonSet count the host's CPUs and a
 * test give a fixture.  Returns the count, or 0 when the text is not such a list.
 */
static long count_cpus(const char *list) {
        long n = 0;
        const char *p = list;

        while (*p && *p != '\n') {
                char *end;
                unsigned long first, last;

                errno = 0;
                first = strtoul(p, &end, 10);
                if (errno || end == p)
                        return 0;
                last = first;
                if (*end == '-') {
                        p = end + 1;
                        last = strtoul(p, &end, 10);
                        if (errno || end == p || last < first)
                                return 0;
                }
                n += (long) (last - first + 1);
                p = end;
                if (*p == ',')
                        p++;
                else if (*p && *p != '\n')
                        return 0;
        }
        return n;
}

static int example_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        struct example *e = calloc(1, sizeof(*e));

        if (!e)
                return -ENOMEM;
        e->config = config;
        *ret_state = e;
        return 0;
}

/* 5. One cycle: read, decide, report every declared type.  Never sleep, never block. */
static int example_probe(struct nh_probe_ctx *ctx, void *state) {
        struct example *e = state;
        char buf[256], message[256];
        double load1;
        long cpus;
        int r;

        /* CPUs can come and go (hotplug): count them every cycle, it is one small read. */
        r = nh_read_file(ctx, NH_ROOT_SYS, "devices/system/cpu/online", buf, sizeof(buf), NULL);
        cpus = r < 0 ? 0 : count_cpus(buf);
        if (cpus < 1)
                return nh_report(ctx, &(struct nh_observation){
                                              .type = "HighLoad",
                                              .status = NH_STATUS_UNKNOWN,
                                              .reason = "CPUCountUnreadable",
                                              .message = "cannot count CPUs from devices/system/cpu/online",
                                      });

        r = nh_read_file(ctx, NH_ROOT_PROC, "loadavg", buf, sizeof(buf), NULL);

        if (r < 0 || sscanf(buf, "%lf", &load1) != 1)
                /* Say we cannot tell, and why: Unknown is the truth, False would be a lie. */
                return nh_report(ctx, &(struct nh_observation){
                                              .type = "HighLoad",
                                              .status = NH_STATUS_UNKNOWN,
                                              .reason = "LoadUnreadable",
                                              .message = r < 0 ? "cannot read loadavg" : "loadavg has no number",
                                      });

        snprintf(message, sizeof(message), "load average %.2f on %ld CPUs (%.2f per CPU, limit %.2f)", load1, cpus,
                 load1 / (double) cpus, e->config->max_load_per_cpu);
        return nh_report(
                ctx, &(struct nh_observation){
                             .type = "HighLoad",
                             .status = load1 / (double) cpus > e->config->max_load_per_cpu ? NH_STATUS_TRUE
                                                                                           : NH_STATUS_FALSE,
                             .reason = load1 / (double) cpus > e->config->max_load_per_cpu ? "LoadHigh" : "LoadNormal",
                             .message = message,
                     });
}

static void example_done(void *state) {
        free(state);
}

/* 6. The one exported symbol.  The macro fills in the ABI version and the struct size. */
NH_PLUGIN_DEFINE(.name = "example", .description = "load average per CPU (a probe to copy)",
                 .conditions = example_conditions, .config = example_config_table,
                 .config_size = sizeof(struct example_config), .init = example_init, .probe = example_probe,
                 .done = example_done);
