"""The Snakemake executor: one Snakemake job (or group job) -> one submitit job."""

import os
import signal
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import submitit
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface

from .command import SnakemakeJobCommand
from .registry import Record, Registry, job_key
from .resources import submission_parameters
from .status import LocalStatus, SlurmStatus, Status, job_paths


def _members(job: JobExecutorInterface) -> list:
    return list(job.jobs) if job.is_group() else [job]


def _outputs(job: JobExecutorInterface) -> list[str]:
    return sorted(str(f) for j in _members(job) for f in j.output)


def _identity(job: JobExecutorInterface) -> list[str]:
    """What makes a job the same job in the next Snakemake run: outputs, rules, wildcards."""
    names = [f"{j.rule.name}:{sorted(j.wildcards_dict.items())}" for j in _members(job)]
    return _outputs(job) + sorted(names)


def _label(job: JobExecutorInterface) -> str:
    """Short folder/job-name part: the rule, or group_<groupid> for group jobs."""
    if job.is_group():
        return f"group_{job.groupid}"
    return job.name


def _describe(job: JobExecutorInterface) -> str:
    if job.is_group():
        return f"group {job.groupid} ({len(list(job.jobs))} jobs: {', '.join(sorted(job.rules))})"
    wildcards = ", ".join(f"{k}={v}" for k, v in job.wildcards_dict.items())
    return f"rule {job.name}" + (f" ({wildcards})" if wildcards else "")


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        self.settings = self.workflow.executor_settings
        self.cluster = self.settings.cluster
        if self.cluster == "auto":
            self.cluster = submitit.AutoExecutor.which()
            if self.cluster not in ("slurm", "local"):
                raise WorkflowError(f"submitit picked cluster {self.cluster!r}; use slurm or local")
        self.workdir = os.path.abspath(str(self.workflow.workdir_init))
        self.registry = Registry(self._folder_root() / "registry")
        self.slurm = SlurmStatus()
        self.local = LocalStatus()
        self._sigterm_installed = False
        self.logger.info(f"submitit executor: cluster={self.cluster}, logs in {self.settings.folder}/<rule>/<jobid>_0_log.*")
        self._prune_registry(report=True)

    def _folder_root(self) -> Path:
        return Path(self.settings.folder)

    # -- submission --------------------------------------------------------------
    def run_job(self, job: JobExecutorInterface) -> None:
        self._install_sigterm_handler()
        key = job_key(_identity(job))
        if self._reattach(job, key):
            return

        label = _label(job)
        folder = self._folder_root() / label
        name = f"smk-{label}-{key[:6]}"
        description = _describe(job)
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=self.cluster,
            slurm_max_num_timeout=self.settings.max_requeues,
            local_max_num_timeout=self.settings.max_requeues,
        )
        try:
            executor.update_parameters(**submission_parameters(job.resources, job.threads, self.settings, self.cluster, name, comment=description))
        except (ValueError, NameError, AssertionError) as e:
            raise WorkflowError(f"submitit rejected the resources of {description}: {e}") from e

        command = SnakemakeJobCommand(self.format_job_exec(job), self.workdir, description)
        started = time.time()
        try:
            sjob = self._submit(executor, command)
        except Exception as e:  # sbatch kept failing: report it as this job's error, keep going
            self.report_job_error(SubmittedJobInfo(job), msg=f"submission of {description} failed: {e}")
            return
        job_id = str(sjob.job_id)
        if self.cluster == "local":
            self.local.processes[job_id] = sjob._process
        self._drop_stale_result(str(folder), job_id, started)
        self.registry.put(
            Record(
                key=key,
                external_jobid=job_id,
                cluster=self.cluster,
                folder=str(folder),
                name=name,
                rule=label,
                outputs=_outputs(job),
                submitted=started,
            )
        )
        log = job_paths(str(folder), job_id).stdout
        self.logger.info(f"Submitted {description} as {self.cluster} job {job_id}; log: {log}")
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=job_id, aux={"key": key, "folder": str(folder)}))

    def shutdown(self) -> None:
        super().shutdown()
        # Jobs of an earlier run that finished just before this run built its DAG were
        # never asked for (their outputs were complete): drop their records too.
        self._prune_registry()

    def _prune_registry(self, report: bool = False) -> None:
        """Forget records of jobs that ended while no Snakemake was watching.

        Such a job either succeeded (then Snakemake sees complete outputs and never
        asks for it again) or failed (then it must be submitted anew). Keeping the
        record would let a later forced rerun "re-attach" to the old result.
        Called at start-up and at shutdown.
        """
        records = self.registry.all()
        if not records:
            return
        mine = [r for r in records if r.cluster == self.cluster]
        states = self.slurm.states(r.external_jobid for r in mine) if self.cluster == "slurm" else {}
        kept = 0
        for record in records:
            if record.cluster != self.cluster:
                active = False
            elif self.cluster == "slurm":
                active = self.slurm.status(record.folder, record.external_jobid, states[record.external_jobid]).active
            else:
                active = self.local.status(record.folder, record.external_jobid).active
            if active:
                kept += 1
            else:
                self.registry.forget(record.key)
        if kept and report:
            self.logger.info(f"{kept} job(s) submitted by an earlier Snakemake run are still in flight")

    @staticmethod
    def _submit(executor: submitit.AutoExecutor, command: SnakemakeJobCommand, attempts: int = 3):
        # sbatch fails now and then on a busy controller ("Socket timed out"); try again.
        for attempt in range(1, attempts + 1):
            try:
                return executor.submit(command)
            except Exception:
                if attempt == attempts:
                    raise
                time.sleep(2 * attempt)

    def _reattach(self, job: JobExecutorInterface, key: str) -> bool:
        """Adopt a job submitted by an earlier Snakemake instead of submitting again."""
        record = self.registry.get(key)
        if record is None:
            return False
        if record.cluster != self.cluster:
            self.registry.forget(key)
            return False
        job_id = record.external_jobid
        if self.cluster == "slurm":
            identity = self.slurm.identity(job_id)
            if identity is None or identity[0] != record.name:
                # unknown to SLURM, or the id now belongs to another job (fresh cluster)
                self.registry.forget(key)
                return False
            status = self.slurm.status(record.folder, job_id, identity[1])
        else:
            status = self.local.status(record.folder, job_id)

        adopt = status.active or (status.ok and self._outputs_from(job, record.submitted))
        if not adopt:
            self.logger.info(f"Earlier {self.cluster} job {job_id} for {_describe(job)} ended ({status.state or 'finished'}); submitting it again.")
            self.registry.forget(key)
            return False
        self.logger.info(
            f"Re-attached {_describe(job)} to {self.cluster} job {job_id} "
            f"({status.state or 'done'}) submitted by an earlier Snakemake run; not submitting again. "
            f"log: {job_paths(record.folder, job_id).stdout}"
        )
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=job_id, aux={"key": key, "folder": record.folder}))
        return True

    @staticmethod
    def _outputs_from(job: JobExecutorInterface, since: float) -> bool:
        """All outputs exist and were written after the job was submitted."""
        try:
            return all(os.path.getmtime(f) >= since - 1 for f in _outputs(job))
        except OSError:
            return False

    @staticmethod
    def _drop_stale_result(folder: str, job_id: str, started: float) -> None:
        # A fresh cluster restarts job ids at 1: a result pickle older than this
        # submission belongs to another job with the same id.
        path = job_paths(folder, job_id).result_pickle
        try:
            if path.stat().st_mtime < started - 1:
                path.unlink()
        except FileNotFoundError:
            pass

    # -- status ---------------------------------------------------------------------
    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        async with self.status_rate_limiter:
            if self.cluster == "slurm":
                states = self.slurm.states(ji.external_jobid for ji in active_jobs)
        for ji in active_jobs:
            folder = ji.aux["folder"]
            if self.cluster == "slurm":
                status = self.slurm.status(folder, ji.external_jobid, states[ji.external_jobid])
            else:
                status = self.local.status(folder, ji.external_jobid)
            if status.active:
                yield ji
                continue
            self.registry.forget(ji.aux["key"])
            if status.ok:
                self.report_job_success(ji)
            else:
                self._report_failure(ji, status)

    def _report_failure(self, ji: SubmittedJobInfo, status: Status) -> None:
        paths = job_paths(ji.aux["folder"], ji.external_jobid)
        if status.detail:  # the job wrote an error result: the command itself failed
            why = status.detail
        else:
            why = f"state {status.state or '?'}, ended without a result (stopped from outside: scancel, time limit, memory limit or node failure)"
        msg = f"{self.cluster} job {ji.external_jobid} for {_describe(ji.job)} failed: {why}.\nsubmitit logs: {paths.stdout} and {paths.stderr}\n"
        self.report_job_error(ji, msg=msg, aux_logs=[str(paths.stdout), str(paths.stderr)])

    # -- cancellation -------------------------------------------------------------------
    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        ids = [ji.external_jobid for ji in active_jobs if ji.external_jobid]
        if not ids:
            return
        self.logger.info(f"Cancelling {len(ids)} {self.cluster} job(s): {' '.join(ids)}")
        if self.cluster == "slurm":
            self.slurm.cancel(ids)
        else:
            self.local.cancel(ids)
        for ji in active_jobs:
            if ji.aux:
                self.registry.forget(ji.aux["key"])

    def _install_sigterm_handler(self) -> None:
        """Make SIGTERM behave like Ctrl-C: cancel the jobs in flight, then exit.

        Snakemake's own SIGTERM handler waits for running jobs to finish, which
        for cluster jobs can take days. It is installed after the executor is
        created, so we replace it at the first submission (run_job runs in the
        main thread, where signal handlers must be set).
        """
        if self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        self._sigterm_installed = True

        def on_sigterm(signum, frame):
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, on_sigterm)
