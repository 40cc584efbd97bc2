/* SPDX-License-Identifier: MIT */
/* Plugins the loader must refuse, one per -D: wrong ABI, wrong size, no descriptor, wrong name. */
#include <nodehealth/plugin.h>

static const struct nh_condition_decl bad_conditions[] = {
        {.type = "BadProblem", .healthy_reason = "BadOK"},
        {0},
};

static int bad_probe(struct nh_probe_ctx *ctx, void *state) {
        return 0;
}

#if defined(BAD_ABI)
__attribute__((visibility("default"))) const struct nh_plugin nodehealth_plugin = {
        .abi_version = (NH_PLUGIN_ABI_MAJOR + 1) << 16,
        .struct_size = sizeof(struct nh_plugin),
        .name = "badabi",
        .conditions = bad_conditions,
        .probe = bad_probe,
};
#elif defined(BAD_SIZE)
__attribute__((visibility("default"))) const struct nh_plugin nodehealth_plugin = {
        .abi_version = NH_PLUGIN_ABI_VERSION,
        .struct_size = 12,
        .name = "badsize",
        .conditions = bad_conditions,
        .probe = bad_probe,
};
#elif defined(NO_DESCRIPTOR)
__attribute__((visibility("default"))) const struct nh_plugin not_the_descriptor = {
        .abi_version = NH_PLUGIN_ABI_VERSION,
        .struct_size = sizeof(struct nh_plugin),
        .name = "nodesc",
        .conditions = bad_conditions,
        .probe = bad_probe,
};
#elif defined(BAD_NAME)
NH_PLUGIN_DEFINE(.name = "somebodyelse", .conditions = bad_conditions, .probe = bad_probe);
#endif
