"""The cost model's files, and the per-job time limits the workflow reads from them.

Torch-free on purpose: the workflow reads the runtimes file while parsing the DAG. The cost model
(:mod:`robrepro.cost`) writes ``runtimes.json``: for every job, its predicted minutes on the device
that measured them, times a safety factor, never under a floor. A cluster profile then asks the
scheduler for that time instead of one limit for every job of a kind. Jobs the file does not name
(a new run, another tier) keep the configured ``resources.<kind>.runtime``.

Why a factor of 3 by default: the model is checked to be within 2x of measured job times for most
jobs; a node slower than the one that measured, or a busy file system, takes the rest. A job that
still runs out of time is requeued and resumes from its checkpoint, so an estimate too short costs
a requeue, not the work done.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SAFETY = 3.0
FLOOR_MINUTES = 10


def outputs(root: str) -> dict[str, str]:
    """Files of the ``cost`` target under a tier's results root."""
    return {
        "csv": f"{root}/cost/jobs.csv",
        "md": f"{root}/cost/cost.md",
        "runtimes": f"{root}/cost/runtimes.json",
    }


def job_key(paper: str, run: str | None, kind: str | None = None, name: str | None = None) -> str:
    """One job's name in the runtimes file: ``train/<paper>/<run>``, ``eval/<paper>/<run>/<kind>/<name>``
    (a trained model's job) or ``jobs/<paper>/<kind>/<name>`` (a job without a model)."""
    if kind is None:
        return f"train/{paper}/{run}"
    if run is None:
        return f"jobs/{paper}/{kind}/{name}"
    return f"eval/{paper}/{run}/{kind}/{name}"


def limit_minutes(seconds: float, safety: float = SAFETY, floor: int = FLOOR_MINUTES) -> int:
    """A scheduler time limit for a job predicted to take ``seconds``."""
    return max(int(floor), math.ceil(seconds * safety / 60))


def write(path: str | os.PathLike, predicted: dict[str, float], *, device: str, safety: float = SAFETY, floor: int = FLOOR_MINUTES) -> dict[str, Any]:
    """Write ``job key -> limit in minutes`` (with the predictions it came from) to ``path``."""
    doc = {
        "device": device,
        "safety": safety,
        "floor_minutes": floor,
        "minutes": {k: limit_minutes(s, safety, floor) for k, s in sorted(predicted.items())},
        "predicted_seconds": {k: round(s, 2) for k, s in sorted(predicted.items())},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


class Runtimes:
    """Time limits read from a runtimes file; an absent file knows no job."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.minutes: dict[str, int] = {}
        if self.path is not None and self.path.exists():
            doc = json.loads(self.path.read_text())
            self.minutes = {str(k): int(v) for k, v in doc.get("minutes", {}).items()}

    def __bool__(self) -> bool:
        return bool(self.minutes)

    def runtime(self, default: int, paper: str, run: str | None, kind: str | None = None, name: str | None = None) -> int:
        """The job's limit from the file, else ``default``."""
        return self.minutes.get(job_key(paper, run, kind, name), default)
