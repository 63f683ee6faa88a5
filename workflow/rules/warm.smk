# A warm job server for local runs (robrepro.warm): train and evaluate jobs fork from a process that
# has torch and the package imported, instead of importing them anew (1.5-2 s of a median smoke job).
# Only where jobs run on this machine under this Snakemake process: not on a cluster executor, not in
# a remote job, not in a dry run (onstart does not run then). Results are the same either way.
# Opt out with ROBREPRO_NO_WARM=1. Like ROBREPRO_RUN_ARGS (common.smk) it reaches the jobs through
# the environment, never their params or command text: warm or cold re-runs nothing.

from robrepro import warm_hook


onstart:
    if workflow.local_exec and not (workflow.remote_exec or workflow.subprocess_exec):
        warm_hook.start()


onsuccess:
    warm_hook.stop()


onerror:
    warm_hook.stop()
