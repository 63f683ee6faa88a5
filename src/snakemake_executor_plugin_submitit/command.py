"""The callable that submitit runs inside the cluster job.

One Snakemake job becomes one submitit job whose function is a
:class:`SnakemakeJobCommand`: it runs the ``python -m snakemake ... --mode remote``
command line that Snakemake built for that job, streaming its output into the
submitit log files.

It is a :class:`submitit.helpers.Checkpointable`, so when the job is about to hit
its time limit, or is preempted (SLURM sends the ``--signal`` given at submission,
USR2 by default), submitit calls :meth:`checkpoint`, saves the returned
submission and requeues the *same* job id. The requeued job runs the same
Snakemake command again. Nothing is carried over in memory: the training script
resumes from its own checkpoint file, at a path that is not a declared output
(Snakemake deletes declared outputs before it runs a job).

submitit unpickles this class inside the job (``python -m submitit.core._submit``),
so the package must be importable there: it is, from the same (shared) environment
that runs Snakemake in the job.
"""

import os
import signal
import subprocess
import time
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

# How long the child gets between SIGTERM and SIGKILL when we stop it ourselves.
STOP_GRACE_S = 20
# After SLURM sent us SIGTERM (scancel, requeue, preemption without signal, time
# limit), SIGKILL follows after the site's KillWait (30 s by default). We wait for
# it instead of writing a result, so the job ends without one and its SLURM state
# (CANCELLED, REQUEUED, ...) is what the Snakemake side reports.
WAIT_FOR_KILL_S = 300


def _preempt_signal() -> signal.Signals:
    """The signal submitit listens to for timeout/preemption (USR2 unless overridden)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, "SIG" + name, signal.SIGUSR2)


def _say(message: str) -> None:
    """Log line to the job's stdout; os.write, because print() is not safe in signal handlers."""
    os.write(1, f"[submitit-plugin] {message}\n".encode())


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    # SLURM sends --signal to every process of the step. The child (Snakemake and
    # the rule's script) must not die of it: the submitit wrapper in this process
    # decides what to do (checkpoint + requeue) and then stops the child itself.
    signal.signal(_preempt_signal(), signal.SIG_IGN)


class SnakemakeJobCommand(Checkpointable):
    """Run one Snakemake job command (a bash command line) in ``workdir``.

    Returns a small dict on success; raises ``RuntimeError`` (so submitit stores an
    error result) when the command fails on its own.
    """

    def __init__(self, command: str, workdir: str, description: str = "") -> None:
        self.command = command
        self.workdir = workdir
        self.description = description
        self._proc: subprocess.Popen | None = None
        self._terminated = False

    # -- pickling: the running child is not part of the state -----------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None
        state["_terminated"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- running ----------------------------------------------------------------
    def __call__(self) -> dict[str, Any]:
        self._terminated = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        _say(f"{self.description} | job {job_id} | restarts {restarts} | host {os.uname().nodename}")
        start = time.time()
        # A new session: the whole Snakemake + script tree is one process group that
        # checkpoint() and the signal handlers can stop without stopping us.
        self._proc = subprocess.Popen(
            ["/bin/bash", "-c", self.command],
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        try:
            returncode = self._proc.wait()
        except BaseException:
            # SystemExit from submitit's requeue (after checkpoint()) or KeyboardInterrupt
            # (local cluster cancel): give the child its grace time, never leave it running.
            self._stop_child(grace_s=STOP_GRACE_S)
            raise
        if self._terminated:
            _say("terminated by the cluster; waiting for the kill, no result written")
            time.sleep(WAIT_FOR_KILL_S)
            raise RuntimeError("terminated by SIGTERM, and no SIGKILL followed")
        if returncode != 0:
            raise RuntimeError(f"the job's command exited with code {returncode}; see the rule's log")
        return {"returncode": 0, "seconds": round(time.time() - start, 1)}

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit on timeout/preemption: ask the child to stop, requeue the same command.

        This runs inside a signal handler that interrupted ``Popen.wait()`` in
        ``__call__``, which holds the Popen's internal lock: waiting for the child
        here would deadlock. So only signal it; ``__call__`` waits for it (up to
        STOP_GRACE_S) when submitit's requeue exits through it, and SLURM kills
        what is left after its KillWait.
        """
        _say("checkpoint: stopping the job command, then requeue")
        self._signal_child(signal.SIGTERM)
        return DelayedSubmission(self, *args, **kwargs)

    # -- helpers ------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._terminated = True
        _say("got SIGTERM; forwarding it to the job command")
        self._signal_child(signal.SIGTERM)

    def _signal_child(self, sig: int) -> None:
        # No Popen.poll() here: this also runs in signal handlers (see checkpoint()).
        if self._proc is not None and self._proc.returncode is None:
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                pass

    def _stop_child(self, grace_s: float) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_child(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_child(signal.SIGKILL)
                self._proc.wait()
        # Whatever is left of the group (a script whose parent already exited).
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
