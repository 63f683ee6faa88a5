"""Snakemake executor plugin that submits every job through submitit.

Snakemake finds it by name (``snakemake_executor_plugin_<name>`` on sys.path, no
entry point), so ``executor: submitit`` in a profile, or ``--executor submitit``,
selects it; its settings are the ``--submitit-*`` options (see settings.py).

* one Snakemake job, or one group job, becomes one submitit job (one sbatch);
* resources map to sbatch flags (resources.py), site settings come from the profile;
* status comes from submitit's result pickles and its batched sacct watcher;
* Ctrl-C or SIGTERM cancels the jobs in flight (scancel);
* every submission is recorded in ``<folder>/registry`` so a restarted Snakemake
  re-attaches to jobs still running instead of submitting them twice;
* jobs are submitit ``Checkpointable``: on time limit or preemption they are
  requeued and re-run the same Snakemake command, and the rule's script resumes
  from its own checkpoint file.
"""

from snakemake_interface_executor_plugins.settings import CommonSettings

from .executor import Executor
from .settings import ExecutorSettings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

common_settings = CommonSettings(
    # jobs run elsewhere, on a file system they share with this process
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    # sacct lags behind submission by a few seconds anyway
    init_seconds_before_status_checks=2,
)
