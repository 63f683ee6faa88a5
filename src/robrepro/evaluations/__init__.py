"""Kinds of evaluation job, each declared once.

A job kind is a function of a :class:`JobContext` that returns the payload of its result file,
registered with :func:`register_kind` together with what it needs: a trained model or not, the
resources key it asks the scheduler for, and the package modules it runs (declared as rule inputs,
so that changing them re-runs its jobs). The rules, the CLI and the plan follow from that
declaration: a new kind of job is one new module in this package, no other edit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch


@dataclass(frozen=True)
class JobKind:
    name: str
    fn: Callable[[JobContext], dict[str, Any]]
    needs_model: bool
    resources: str
    modules: tuple[str, ...]


_KINDS: dict[str, JobKind] = {}


def register_kind(name: str, *, needs_model: bool = True, resources: str = "attack", modules: tuple[str, ...] = ()):
    """Declare a kind of job: ``fn(ctx) -> payload``. ``modules``: package modules (paths relative to
    the package, e.g. ``"bounds.py"`` or ``"attacks"``) it runs besides the shared ones."""

    def deco(fn):
        if name in _KINDS:
            raise ValueError(f"job kind {name!r} registered twice")
        _KINDS[name] = JobKind(name, fn, needs_model, resources, tuple(modules))
        return fn

    return deco


def registry() -> dict[str, JobKind]:
    from ..registry import import_submodules

    import_submodules(__name__)
    return dict(_KINDS)


class JobContext:
    """What a job starts with: its spec, device, the trained model (if any) and the test split.

    ``partial`` is a path where a long job may keep resumable state (undeclared, so Snakemake never
    deletes it before a restart); ``progress`` says whether to draw a progress bar.
    """

    def __init__(self, spec: dict[str, Any], *, model_path: str | None, data_root: str, device: str, out: str, partial: str | None, progress: bool = True):
        from ..engine import resolve_device

        self.started = time.time()
        self.spec, self.params = spec, spec.get("params", {})
        self.device = resolve_device(device)
        self.model_path, self.data_root, self.out, self.partial, self.progress = model_path, data_root, out, partial, progress
        torch.manual_seed(spec["seed"])

    @cached_property
    def _loaded(self):
        from ..engine import load_model

        if not self.model_path:
            raise RuntimeError(f"job kind {self.spec['kind']!r} was declared without a model")
        return load_model(self.model_path, self.device)

    @property
    def model(self) -> torch.nn.Module:
        return self._loaded[0]

    @property
    def train_spec(self) -> dict[str, Any]:
        return self._loaded[1]

    @property
    def dataset(self):
        from .. import data

        return data.info(self.spec["data"]["name"])

    def split(self, split: str = "test", limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from .. import data

        ds = self.spec["data"]
        lim = limit if limit is not None else (ds.get("test_limit") if split == "test" else ds.get("train_limit"))
        return data.load_split(ds["name"], split, source=ds["source"], root=self.data_root, limit=lim, seed=ds.get("synthetic_seed", 0))

    @cached_property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split("test")

    def write(self, payload: dict[str, Any]) -> dict[str, Any]:
        from ..results import provenance, write_result

        s = self.spec
        head = {"paper": s["paper"], "run": s.get("run"), "kind": s["kind"], "name": s["name"], "labels": s.get("labels", {})}
        if self.model_path:
            head["model"] = self.train_spec["model"]
            head["train_labels"] = self.train_spec.get("labels", {})
            head["experiment"] = self.train_spec.get("experiment")
        prov = provenance(spec=s, seed=s["seed"], device=self.device, data_source=s["data"]["source"], started=self.started)
        return write_result(self.out, s["kind"], {**head, **payload}, prov)
