/* SPDX-License-Identifier: MIT */
/*
 * The condition table: what every probe observed, turned into Node Conditions.
 *
 * A *feed* is one probe instance's view of one condition type; a feed may carry several
 * *problems* (checks) when a probe reports a type with `problem` keys.  Each problem has
 * its own hysteresis: its stable status changes to True after `raise_after` consecutive
 * problem observations and back to False after `clear_after` healthy ones; Unknown (the
 * probe could not tell) takes effect at once, and the first definite observation after
 * Unknown is taken as it comes when it is healthy.  A condition aggregates every problem
 * of every feed of its type: True if any is True (reason and message from the first such),
 * else Unknown if any is Unknown, else False.  lastTransitionTime changes only when the
 * aggregated status changes; the listener hears of exactly those changes.
 */
#pragma once

#include <nodehealth/plugin.h>
#include <stdint.h>

#include "macro.h"

/* A condition exactly as Kubernetes' NodeCondition has it; times are realtime µs. */
struct nh_condition {
        char *type;
        enum nh_status status;
        char *reason;
        char *message;
        uint64_t last_heartbeat;
        uint64_t last_transition;
};

/* Reasons the core itself gives. */
#define NH_REASON_NOT_YET_OBSERVED "NotYetObserved"
#define NH_REASON_AWAITING_CONFIRMATION "AwaitingConfirmation"
#define NH_REASON_PROBE_STALE "ProbeStale"
#define NH_REASON_PROBE_FAILED "ProbeFailed"
#define NH_REASON_PROBE_INIT_FAILED "ProbeInitFailed"
#define NH_REASON_PROBE_TIMEOUT "ProbeTimeout"
#define NH_REASON_PROBE_REMOVED "ProbeRemoved" /* a reload stopped the probe */
#define NH_REASON_PROBE_CRASHED "ProbeCrashed" /* an isolated probe's host died or broke the protocol */
#define NH_REASON_PROBE_MEMORY_LIMIT "ProbeMemoryLimit" /* an isolated probe's host outgrew memory_limit */

struct nh_table;

typedef void (*nh_transition_fn)(void *userdata, const struct nh_condition *c, enum nh_status old_status);

/* The clock is passed in so tests drive time; realtime stamps the NodeCondition fields. */
struct nh_table *nh_table_new(nh_transition_fn on_transition, void *userdata);
struct nh_table *nh_table_free(struct nh_table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_table *, nh_table_free)

struct nh_feed_params {
        unsigned raise_after, clear_after;
        uint64_t stale_after; /* µs without a report before the feed goes Unknown; 0 never */
};

/*
 * Declares that `owner` (a probe instance) reports `type`: the condition exists from now
 * on, Unknown/NotYetObserved until the first report.  0, -EEXIST (the feed exists; its
 * params are updated), -EINVAL, -ENOMEM.
 */
int nh_table_add_feed(struct nh_table *t, const char *owner, const char *type, const struct nh_feed_params *params,
                      uint64_t mono_now, uint64_t real_now);

/* One observation from `owner`; -ENOENT when it did not declare obs->type. */
int nh_table_observe(struct nh_table *t, const char *owner, const struct nh_observation *obs, uint64_t mono_now,
                     uint64_t real_now);

/* Every problem of every feed of `owner` becomes Unknown with this reason, at once. */
int nh_table_mark_unknown(struct nh_table *t, const char *owner, const char *reason, const char *message,
                          uint64_t real_now);

/* Feeds not heard from (since added, or since the last report) for stale_after go Unknown/ProbeStale. */
void nh_table_check_stale(struct nh_table *t, uint64_t mono_now, uint64_t real_now);

/* The earliest monotonic time a feed can go stale, or UINT64_MAX. */
uint64_t nh_table_next_stale(const struct nh_table *t);

/* A condition left without any feed was dropped from the table. */
typedef void (*nh_removal_fn)(void *userdata, const char *type);
void nh_table_set_removal_listener(struct nh_table *t, nh_removal_fn on_removal);

/*
 * Removes the owner's feed of `type`, or all its feeds when `type` is NULL (a probe that
 * stopped).  Conditions other feeds still feed are aggregated again (a transition when the
 * removed feed decided them).  A condition left without feeds is dropped and the removal
 * listener hears of it — unless keep_orphans: then it stays, as it was, until a feed of its
 * type is added again (standalone mode keeps a removed probe's last word).
 */
void nh_table_remove_feeds(struct nh_table *t, const char *owner, const char *type, bool keep_orphans,
                           uint64_t real_now);
/* nh_table_remove_feeds(t, owner, NULL, false, now). */
void nh_table_remove_owner(struct nh_table *t, const char *owner);
bool nh_table_has_feed(const struct nh_table *t, const char *owner, const char *type);

size_t nh_table_size(const struct nh_table *t);
const struct nh_condition *nh_table_get(const struct nh_table *t, size_t i);
const struct nh_condition *nh_table_find(const struct nh_table *t, const char *type);

const char *nh_status_to_string(enum nh_status s);
enum nh_status nh_status_from_string(const char *s);
