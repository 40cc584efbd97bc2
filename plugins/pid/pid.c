/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include <nodehealth/plugin.h>

static const struct nh_condition_decl pid_conditions[] = {
        {.type = "Stubpid", .healthy_reason = "StubOK"},
        {0},
};

static int pid_probe(struct nh_probe_ctx *ctx, void *state) {
        return 0;
}

NH_PLUGIN_DEFINE(.name = "pid", .conditions = pid_conditions, .probe = pid_probe);
