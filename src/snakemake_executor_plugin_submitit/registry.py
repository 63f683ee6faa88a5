"""A small on-disk registry of submitted jobs, so a restarted Snakemake re-attaches.

Snakemake 9 no longer resumes remote jobs by itself: after Snakemake is killed,
the jobs it submitted keep running on the cluster, and a restart would submit
them a second time. Every submission is therefore recorded in
``<folder>/registry/<key>.json``, where the key is a hash of the job's output
files, rule names and wildcards (the identity of a job across Snakemake runs).
The record is removed as soon as Snakemake has seen the job end (success,
failure or cancellation), so a record that is still there at start-up was left
by a Snakemake that died while the job was in flight. Records of jobs that ended
unobserved are dropped at start-up and at shutdown.

One file per job: writes are atomic (write + rename) and need no lock.
"""

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path


def job_key(identity: Iterable[str]) -> str:
    """Stable identity of a job: a hash of its output paths (plus rule and wildcards)."""
    text = "\n".join(sorted(str(f) for f in identity))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Record:
    key: str
    external_jobid: str
    cluster: str  # "slurm" | "local"
    folder: str  # submitit folder of the job (logs, pickles)
    name: str  # job name given to the cluster, checked on re-attach
    rule: str
    outputs: list[str] = field(default_factory=list)
    submitted: float = field(default_factory=time.time)


class Registry:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Record | None:
        try:
            data = json.loads(self._path(key).read_text())
            return Record(**data)
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def put(self, record: Record) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(record.key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        os.replace(tmp, path)

    def forget(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def all(self) -> list[Record]:
        records = []
        for path in sorted(self.folder.glob("*.json")):
            record = self.get(path.stem)
            if record is not None:
                records.append(record)
        return records
