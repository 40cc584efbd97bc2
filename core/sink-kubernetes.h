/* SPDX-License-Identifier: MIT */
/*
 * The Kubernetes sink: a reconciler whose desired state is the condition table and whose
 * actual state is the Node's status on the API server.
 *
 * - At creation, after a random delay of up to a tenth of the heartbeat (at most 30 s, so
 *   that nodes starting together are spread out), one GET of the Node learns its uid, the
 *   conditions already there and the types this daemon owned before (the annotation
 *   NH_KUBE_OWNED_ANNOTATION).  A 404 is logged plainly and retried with backoff; nothing is
 *   written before the Node has been read.
 * - Once the daemon's first cycle has ended (`start`), one strategic-merge PATCH of
 *   nodes/NAME/status names every type of the table with every field, deletes the types
 *   owned before that no probe reports any more ({"type": X, "$patch": "delete"}; never a
 *   kubelet or CNI type), and records the owned types in the annotation (in the same
 *   PATCH: nodes/status is the only write permission needed).  A condition whose status is
 *   what the Node already says keeps the Node's lastTransitionTime.  A condition without a
 *   verdict yet (Unknown with NotYetObserved or AwaitingConfirmation) whose type the Node
 *   already has with True or False is left as the Node has it until its probe decides: a
 *   restart never flips a persisting problem to Unknown or to a premature False.
 * - Transitions: one PATCH of the whole current state after a 20 ms coalescing delay; beyond
 *   a burst of 10, status writes are spaced to one per 30 s (each with the latest state).
 * - Heartbeat: the same PATCH `heartbeat` (±10%) after the last successful one, refreshing
 *   lastHeartbeatTime and repairing what someone else removed.  No GET in steady state.
 * - Events: one per transition after start (Warning when a problem appears or sight is
 *   lost, Normal when it clears; a first verdict after a restart that agrees with the Node
 *   is not news) and one per probe event, on the Node, in "default", source nodehealthd.
 *   Repeats PATCH the first one's count (an Event gone from the server is posted anew);
 *   once 10 different messages of one reason have been seen (each within 10 minutes of the
 *   last), further ones fold into one "(combined from similar events)" Event; a token bucket
 *   (burst 25, one more per 5 minutes) limits them as client-go does; at most 64 are
 *   remembered, and what is dropped is counted and logged.
 * - Faults: 429 waits at least Retry-After; 5xx, network and TLS errors, 401 (after the
 *   client's re-read of the token and one retry), 403 (logged with the missing RBAC rule)
 *   and 409 back off exponentially, 1 s doubling to 5 min, each wait drawn between half and
 *   all of it.  The Node and the Events back off separately.  After an outage the latest
 *   state goes out once.  Other 4xx replies are logged as errors and not retried until the
 *   next change or heartbeat.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kubeconfig.h"
#include "sink.h"

#define NH_KUBE_OWNED_ANNOTATION "nodehealthd.io/owned-conditions"
#define NH_KUBE_EVENT_NAMESPACE "default"
#define NH_KUBE_COMPONENT "nodehealthd"

/*
 * A sink for node `node` on the server of `creds` (copied), on `event`'s loop; `heartbeat`
 * in µs; `events` false posts no Events.  0 and the sink in *ret, -ENOMEM, -EIO (libcurl).
 */
int nh_sink_kubernetes_new(sd_event *event, const struct nh_kube_credentials *creds, const char *node,
                           uint64_t heartbeat, bool events, struct nh_sink **ret);

/* The sink's API client (its request counters go to /metrics); NULL when `sink` is not one. */
struct nh_kube_client;
const struct nh_kube_client *nh_sink_kubernetes_client(const struct nh_sink *sink);
