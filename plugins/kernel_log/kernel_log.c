/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include <nodehealth/plugin.h>

#include "rules.h"

static const struct nh_condition_decl kernel_log_conditions[] = {
        {.type = "KernelDeadlock", .healthy_reason = "KernelHasNoDeadlock"},
        {0},
};

static int kernel_log_probe(struct nh_probe_ctx *ctx, void *state) {
        return 0;
}

NH_PLUGIN_DEFINE(.name = "kernel_log", .conditions = kernel_log_conditions, .probe = kernel_log_probe);
