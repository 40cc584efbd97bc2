/* SPDX-License-Identifier: MIT */
/* nodehealthd(8): parses the command line, loads the configuration, runs the daemon. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "probe-host.h"

static int run(int argc, char **argv) {
        _cleanup_(nh_daemon_freep) struct nh_daemon *d = NULL;
        _cleanup_free_ char *error = NULL;
        struct nh_options opts;
        struct nh_config *config = NULL;
        int r, code;

        r = nh_options_parse(argc, argv, &opts, &error);
        if (r < 0) {
                fprintf(stderr, "nodehealthd: %s\n", error ? error : strerror(-r));
                nh_options_done(&opts);
                return NH_EXIT_USAGE;
        }
        switch (opts.action) {
        case NH_ACTION_HELP:
                nh_options_help(program_invocation_short_name);
                nh_options_done(&opts);
                return NH_EXIT_OK;
        case NH_ACTION_VERSION:
                printf("nodehealthd %s (plugin ABI %d.%d)\n", PACKAGE_VERSION, NH_PLUGIN_ABI_MAJOR,
                       NH_PLUGIN_ABI_MINOR);
                nh_options_done(&opts);
                return NH_EXIT_OK;
        default:
                break;
        }

        r = nh_config_load(opts.config_path, &config, &error);
        if (r < 0) {
                log_error("%s", error ? error : strerror(-r));
                nh_options_done(&opts);
                return r == -ENOMEM ? NH_EXIT_FAILURE : NH_EXIT_CONFIG;
        }

        r = nh_daemon_new(&opts, config, &d, &error, &code);
        if (r < 0) {
                if (error)
                        log_error("%s", error);
                else
                        log_error_errno(r, "Cannot start: %m");

                nh_options_done(&opts);
                return code;
        }

        switch (opts.action) {
        case NH_ACTION_CHECK_CONFIG:
                printf("%s: configuration is valid\n", opts.config_path);
                r = 0;
                break;
        case NH_ACTION_ONCE:
                r = nh_daemon_run_once(d);
                break;
        default:
                r = nh_daemon_run(d);
                break;
        }
        d = nh_daemon_free(d);
        nh_options_done(&opts);
        return r < 0 ? NH_EXIT_FAILURE : NH_EXIT_OK;
}

int main(int argc, char **argv) {
        sigset_t chld;

        /* Before any thread exists: children are reaped on the loop (core/children.h). */
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        log_setup();
        /* The daemon's own child that runs an isolated probe (probe-host.h). */
        if (argc > 1 && strcmp(argv[1], NH_PROBE_HOST_ARG) == 0)
                return nh_probe_host_main(argc, argv);
        return run(argc, argv);
}
