"""Job status for the two submitit backends, SLURM and local.

The outcome of a finished job comes from submitit's result pickle
(``<jobid>_0_result.pkl``: ``("success", value)`` or ``("error", traceback)``).
A job that ends *without* a result pickle was killed from outside (scancel, time
limit without requeue, out of memory, node failure); its SLURM state, read
with submitit's shared sacct watcher (one batched ``sacct`` call per poll),
says why.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from submitit.core.utils import JobPaths, pickle_load
from submitit.slurm.slurm import SlurmJob

# SLURM states in which a job may still produce a result. PREEMPTED and
# REQUEUED* are here because a preempted/requeued job comes back (requeue mode).
ACTIVE_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "STOPPED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "PREEMPTED",
    "RESV_DEL_HOLD",
    "READY",
    "UNKNOWN",
}


@dataclass
class Status:
    active: bool
    ok: bool = False
    state: str = ""  # SLURM state (or RUNNING/FINISHED for local jobs)
    detail: str = ""  # last line of the job's error result, if it wrote one


def job_paths(folder: str, job_id: str) -> JobPaths:
    return JobPaths(folder, job_id=job_id, task_id=0)


def read_result(folder: str, job_id: str) -> tuple[bool, str] | None:
    """(ok, detail) from the job's result pickle, or None if there is none yet."""
    path = job_paths(folder, job_id).result_pickle
    if not path.exists():
        return None
    try:
        outcome, payload = pickle_load(path)
    except EOFError:  # being written right now
        return None
    if outcome == "success":
        return True, ""
    lines = [line for line in str(payload).strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else "error"


class SlurmStatus:
    """Batched state queries through submitit's SlurmInfoWatcher (sacct)."""

    # A job sacct does not list yet is UNKNOWN (accounting lags, P24 of the recipe).
    # After this long we also ask squeue, so a cluster without accounting, or a job
    # that vanished, does not keep Snakemake waiting forever.
    unknown_grace_s = 60.0
    # COMPLETED in sacct but no result pickle yet: on a network file system the
    # pickle written on the compute node can take a while to show up here.
    result_grace_s = 60.0

    def __init__(self) -> None:
        self.watcher = SlurmJob.watcher
        self._first_unknown: dict[str, float] = {}
        self._completed_since: dict[str, float] = {}

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        job_ids = list(job_ids)
        if not job_ids:
            return {}
        for job_id in job_ids:
            self.watcher.register_job(job_id)
        self.watcher.update()  # one sacct call for every registered job
        states = {j: (self.watcher.get_state(j, mode="cache") or "UNKNOWN").split()[0] for j in job_ids}
        now = time.time()
        stale = []
        for job_id, state in states.items():
            if state == "UNKNOWN":
                first = self._first_unknown.setdefault(job_id, now)
                if now - first > self.unknown_grace_s:
                    stale.append(job_id)
            else:
                self._first_unknown.pop(job_id, None)
        if stale:
            queued = squeue_states(stale)
            if queued is not None:
                for job_id in stale:
                    states[job_id] = queued.get(job_id, "GONE")
        return states

    def status(self, folder: str, job_id: str, state: str) -> Status:
        result = read_result(folder, job_id)
        if result is not None:
            ok, detail = result
            return Status(active=False, ok=ok, state=state, detail=detail)
        if state in ACTIVE_STATES:
            return Status(active=True, state=state)
        if state == "COMPLETED":
            since = self._completed_since.setdefault(job_id, time.time())
            if time.time() - since < self.result_grace_s:
                return Status(active=True, state=state)
        return Status(active=False, ok=False, state=state)

    def identity(self, job_id: str) -> tuple[str, str] | None:
        """(job name, state) straight from SLURM, to check a registry record still fits."""
        for cmd in (
            ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobName%200,State"],
            ["squeue", "-h", "-j", job_id, "-o", "%j|%T"],
        ):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip():
                name, _, state = out.stdout.strip().splitlines()[-1].partition("|")
                return name.strip(), state.split()[0] if state.strip() else "UNKNOWN"
        return None

    @staticmethod
    def cancel(job_ids: list[str]) -> None:
        if job_ids:
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=120)


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """{jobid: state} for the ids squeue still knows; None if squeue failed."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.partition("|")
        states[job_id.strip()] = state.strip()
    return states


class LocalStatus:
    """Jobs of submitit's local cluster: the job id is the PID of its controller."""

    def __init__(self) -> None:
        self.processes: dict[str, object] = {}  # job id -> Popen, for jobs this Snakemake started

    def state(self, job_id: str) -> str:
        proc = self.processes.get(job_id)
        if proc is not None:
            return "RUNNING" if proc.poll() is None else "FINISHED"
        return "RUNNING" if _controller_alive(job_id) else "FINISHED"

    def status(self, folder: str, job_id: str) -> Status:
        state = self.state(job_id)
        result = read_result(folder, job_id)
        if result is not None:
            ok, detail = result
            return Status(active=False, ok=ok, state=state, detail=detail)
        if state == "RUNNING":
            return Status(active=True, state=state)
        return Status(active=False, ok=False, state=state)

    def cancel(self, job_ids: list[str]) -> None:
        # SIGINT: the local controller then stops its task (and our command stops its child)
        for job_id in job_ids:
            proc = self.processes.get(job_id)
            try:
                if proc is not None:
                    proc.send_signal(signal.SIGINT)
                elif _controller_alive(job_id):
                    os.kill(int(job_id), signal.SIGINT)
            except (ProcessLookupError, ValueError):
                pass


def _controller_alive(job_id: str) -> bool:
    """Whether PID job_id is still a submitit local controller (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in cmdline
