/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include <nodehealth/plugin.h>

static const struct nh_condition_decl network_conditions[] = {
        {.type = "Stubnetwork", .healthy_reason = "StubOK"},
        {0},
};

static int network_probe(struct nh_probe_ctx *ctx, void *state) {
        return 0;
}

NH_PLUGIN_DEFINE(.name = "network", .conditions = network_conditions, .probe = network_probe);
