/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include <nodehealth/plugin.h>

static const struct nh_condition_decl disk_conditions[] = {
        {.type = "Stubdisk", .healthy_reason = "StubOK"},
        {0},
};

static int disk_probe(struct nh_probe_ctx *ctx, void *state) {
        return 0;
}

NH_PLUGIN_DEFINE(.name = "disk", .conditions = disk_conditions, .probe = disk_probe);
