"""Helpers for tests that need a real SLURM cluster: start/stop one, query it.

The cluster itself is tests/slurm/slurm-local.sh (one node on 127.0.0.1, two fake
GPUs through GRES, accounting through slurmdbd + MariaDB, preemption from the
'urgent' partition). This module drives it from pytest: state lives in a temporary
folder, ports are picked free, and every daemon is stopped by its pid file.
"""

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "slurm-local.sh"
INSTALL = HERE / "install.sh"
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch", "sacct")
SOCKET_PATH_MAX = 100  # unix sockets: 108 bytes, with margin


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None if it can be tried."""
    if os.name != "posix" or not Path("/proc").is_dir():
        return "needs Linux"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"Slurm packages missing ({', '.join(missing)}): run tests/slurm/install.sh as root"
    return None


def install() -> None:
    """apt-get install the packages (idempotent); used when the cluster is required."""
    subprocess.run([str(INSTALL)], check=True, timeout=900)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # the Slurm daemons listen on all addresses
        except OSError:
            return False
    return True


def free_port_base(start: int = 16817, tries: int = 200) -> int:
    """First base with base..base+3 free (slurmctld, slurmd, slurmdbd, mariadb)."""
    for base in range(start, start + 10 * tries, 10):
        if all(_port_free(base + i) for i in range(4)):
            return base
    raise RuntimeError("no free ports for the test cluster")


@dataclass
class SlurmCluster:
    root: Path
    cpus: int = 4
    gpus: int = 2
    partition: str = "debug"  # preemptable; 'urgent' preempts it
    urgent_partition: str = "urgent"
    port_base: int = field(default_factory=free_port_base)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, sacct, submitit, Snakemake) of this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def _script_env(self) -> dict[str, str]:
        env = self.env
        env.update(
            SLURM_LOCAL_ROOT=str(self.root),
            SLURM_LOCAL_PORT_BASE=str(self.port_base),
            SLURM_LOCAL_CPUS=str(self.cpus),
            SLURM_LOCAL_GPUS=str(self.gpus),
            SLURM_LOCAL_GRACE_S="20",
            SLURM_LOCAL_LINK_ETC="0",
        )
        return env

    def _script(self, action: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), action], env=self._script_env(), capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        sock = self.root / "munge" / "munge.socket.2"
        if len(str(sock)) > SOCKET_PATH_MAX:
            raise RuntimeError(f"state folder path too long for unix sockets: {self.root}")
        out = self._script("start", timeout=180)
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"slurm-local.sh start failed:\n{out.stderr[-3000:]}\n{self.log_tail()}")

    def stop(self) -> None:
        self._script("stop", timeout=180)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmdbd.log"):
            path = self.root / "log" / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- clients ------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        out = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def sacct(self, fields: str = "JobID,JobName%60,State,AllocTRES%80,WorkDir%300", all_records: bool = False) -> list[dict[str, str]]:
        """One dict per job (allocation lines only, -X); with all_records, every requeue too (-D)."""
        cmd = ["sacct", "-X", "-P", "-S", "now-1days", "-o", fields]
        if all_records:
            cmd.append("-D")
        lines = self.run(*cmd).splitlines()  # first line: the header
        names = [f.split("%")[0] for f in fields.split(",")]
        return [dict(zip(names, line.split("|"))) for line in lines[1:] if line.strip()]

    def squeue(self) -> list[dict[str, str]]:
        out = self.run("squeue", "-h", "-o", "%i|%j|%T|%r|%Z|%k")
        rows = []
        for line in out.splitlines():
            job_id, name, state, reason, workdir, comment = (line.split("|", 5) + [""] * 6)[:6]
            rows.append(dict(id=job_id, name=name, state=state, reason=reason, workdir=workdir, comment=comment))
        return rows

    def cancel_jobs_in(self, workdir: Path) -> list[str]:
        """scancel what a test left running (e.g. after killing its Snakemake)."""
        wd = str(Path(workdir).resolve())
        ids = [job["id"] for job in self.squeue() if job["workdir"] == wd]
        if ids:
            self.run("scancel", *ids, check=False)
        return ids

    def jobs_in(self, workdir: Path) -> list[dict[str, str]]:
        """sacct records of jobs submitted from workdir (each test has its own)."""
        wd = str(Path(workdir).resolve())
        return [j for j in self.sacct() if j.get("WorkDir") == wd]

    def release_requeued(self) -> "BeginTimeReleaser":
        return BeginTimeReleaser(self)


class BeginTimeReleaser:
    """Context manager: start requeued jobs at once instead of after Slurm's fixed 121 s hold."""

    def __init__(self, cluster: SlurmCluster, period_s: float = 1.0) -> None:
        self.cluster = cluster
        self.period_s = period_s
        self.released: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                for job in self.cluster.squeue():
                    if job["state"] == "PENDING" and job["reason"] == "BeginTime":
                        self.cluster.run("scontrol", "update", f"jobid={job['id']}", "StartTime=now", check=False)
                        self.released.append(job["id"])
            except Exception:  # the test decides what a failure means; keep polling
                pass

    def __enter__(self) -> "BeginTimeReleaser":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, period: float = 0.5):
    """Poll predicate until it returns something truthy; return that, or raise TimeoutError."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(period)
