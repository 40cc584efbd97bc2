/* SPDX-License-Identifier: MIT */
/*
 * Child processes of the daemon, reaped on the event loop and never with a blocking wait.
 * Whoever starts a process (a script probe, the probe host of an isolated probe) watches its
 * pid here and hears once how it ended.  Processes nobody watches — grandchildren that
 * outlived their parent and were re-parented to the daemon, which is a child subreaper, or
 * children whose watcher gave up on them — are reaped by the orphan reaper on SIGCHLD.
 *
 * SIGCHLD must be blocked in every thread before nh_children_new() (nh_block_signals()).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct nh_children;
struct nh_child;

/* `code` is CLD_EXITED (then `status` is the exit status), CLD_KILLED or CLD_DUMPED (the signal). */
typedef void (*nh_child_exit_fn)(void *userdata, pid_t pid, int code, int status);

/* A registry on `event`; also makes this process a child subreaper when `subreaper` is set. */
int nh_children_new(sd_event *event, bool subreaper, struct nh_children **ret);
/* Forgets every watch (the processes keep running; nobody reaps them after this). */
struct nh_children *nh_children_free(struct nh_children *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nh_children *, nh_children_free)

/*
 * Watches `pid`, a child of this process: `fn` runs once after it ended, and then it is
 * reaped.  Returns 0 and a handle (owned by the registry until the process ends or
 * nh_child_forget()), -EINVAL when pid is not our child, -EEXIST, -ENOMEM.
 */
int nh_children_watch(struct nh_children *c, pid_t pid, nh_child_exit_fn fn, void *userdata, struct nh_child **ret);

/* Stops watching: `fn` is not called; the orphan reaper reaps the process when it ends. */
void nh_child_forget(struct nh_child *child);

/* How many children are watched now. */
size_t nh_children_watched(const struct nh_children *c);
