/* SPDX-License-Identifier: MIT */
/*
 * Probes that misbehave, one per -D, for the isolation tests: each declares one type of its
 * own (CrashProblem, HangProblem, LeakProblem, ProtoProblem), reports it healthy in its first
 * cycle, and then, from its second cycle on:
 *
 *   CRASH  segfaults in probe();
 *   HANG   forks a child that sleeps (in its process group: the timeout must kill both), then
 *          loops forever in probe();
 *   LEAK   allocates and touches 32 MiB more in every cycle and never frees it;
 *   PROTO  writes garbage on fd 3, the probe host's socket to the daemon, as a hostile probe
 *          could;
 *   SLOW   is slow to load: its constructor sleeps 4 s, longer than the daemon waits for a
 *          probe host's check (3 s), so every check of it goes unanswered.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nodehealth/plugin.h>

struct bad {
        unsigned cycles;
        void **leaked;
        size_t n_leaked;
};

#if defined(CRASH)
#define BAD_TYPE "CrashProblem"
#elif defined(HANG)
#define BAD_TYPE "HangProblem"
#elif defined(LEAK)
#define BAD_TYPE "LeakProblem"
#elif defined(SLOW)
#define BAD_TYPE "SlowProblem"
#else
#define BAD_TYPE "ProtoProblem"
#endif

#if defined(SLOW)
__attribute__((constructor)) static void load_slowly(void) {
        sleep(4);
}
#endif

static const struct nh_condition_decl bad_conditions[] = {
        {.type = BAD_TYPE, .healthy_reason = "BadOK"},
        {0},
};

static int bad_init(struct nh_probe_ctx *ctx, const void *config, void **ret_state) {
        struct bad *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        *ret_state = b;
        return 0;
}

static void bad_done(void *state) {
        struct bad *b = state;

        if (!b)
                return;
        for (size_t i = 0; i < b->n_leaked; i++)
                free(b->leaked[i]);
        free(b->leaked);
        free(b);
}

static int report_ok(struct nh_probe_ctx *ctx, const char *message) {
        return nh_report(ctx,
                         &(struct nh_observation){.type = BAD_TYPE, .status = NH_STATUS_FALSE, .message = message});
}

static int bad_probe(struct nh_probe_ctx *ctx, void *state) {
        struct bad *b = state;

        if (b->cycles++ == 0)
                return report_ok(ctx, "first cycle");
#if defined(CRASH)
        {
                volatile int *volatile null = NULL;
                *null = 42;
        }
#elif defined(HANG)
        {
                pid_t pid = fork();
                if (pid == 0) {
                        for (;;)
                                pause();
                }
                for (volatile unsigned long i = 0;; i++)
                        ;
        }
#elif defined(LEAK)
        {
                size_t size = 32u << 20;
                void **grown = realloc(b->leaked, (b->n_leaked + 1) * sizeof(*grown));
                char *block = malloc(size);

                if (!grown || !block) {
                        free(block);
                        return -ENOMEM;
                }
                b->leaked = grown;
                memset(block, 0x5a, size); /* resident, not just reserved */
                b->leaked[b->n_leaked++] = block;
        }
#elif defined(PROTO)
        {
                static const char garbage[] = "{\"op\": \"report\", oops";
                if (write(3, garbage, sizeof(garbage) - 1) < 0)
                        return -errno;
        }
#endif
        return report_ok(ctx, "still fine");
}

NH_PLUGIN_DEFINE(.name = PLUGIN_NAME, .description = "misbehaves (tests only)", .conditions = bad_conditions,
                 .init = bad_init, .probe = bad_probe, .done = bad_done);
