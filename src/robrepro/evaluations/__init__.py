"""Kinds of evaluation job, each declared once.

A job kind is a function of a :class:`JobContext` that returns the payload of its result file,
registered with :func:`register_kind` together with what it needs: a trained model or not and the
resources key it asks the scheduler for. The rules, the CLI and the plan follow from that
declaration: a new kind of job is one new module in this package, no other edit.

The declarations are read from the source (:func:`registry`), not by importing the kinds' modules:
the plan needs them when Snakemake parses the workflow, which must not pay for importing torch. The
code a kind's jobs run follows from its module's imports (:mod:`robrepro.importgraph`).
"""

from __future__ import annotations

import ast
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the jobs import torch; reading the declarations must not
    import torch

_FUNCTIONS: dict[str, Callable[[JobContext], dict[str, Any]]] = {}


@dataclass(frozen=True)
class JobKind:
    name: str
    module: str  # the module that registers it: its jobs' entry point
    needs_model: bool
    resources: str

    @property
    def fn(self) -> Callable[[JobContext], dict[str, Any]]:
        """The kind's function; imports its module (and only it)."""
        importlib.import_module(self.module)
        try:
            return _FUNCTIONS[self.name]
        except KeyError:
            raise RuntimeError(f"{self.module} does not register job kind {self.name!r}") from None


def register_kind(name: str, *, needs_model: bool = True, resources: str = "attack"):
    """Declare a kind of job: ``fn(ctx) -> payload``. The arguments must be literals: they are
    read from the source without running it (:func:`registry`)."""

    def deco(fn):
        if name in _FUNCTIONS and _FUNCTIONS[name] is not fn:
            raise ValueError(f"job kind {name!r} registered twice")
        _FUNCTIONS[name] = fn
        return fn

    return deco


def _declarations(path: Path, module: str) -> list[JobKind]:
    """The ``@register_kind(...)`` decorators of one module, evaluated as literals."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        for d in getattr(node, "decorator_list", []):
            if isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", None)) == "register_kind":
                try:
                    name = ast.literal_eval(d.args[0])
                    kw = {k.arg: ast.literal_eval(k.value) for k in d.keywords}
                except (ValueError, IndexError):
                    raise ValueError(f"{path}:{d.lineno}: register_kind takes literal arguments") from None
                out.append(JobKind(name, module, kw.get("needs_model", True), kw.get("resources", "attack")))
    return out


@cache
def registry() -> dict[str, JobKind]:
    """Name -> declaration of every job kind of this package's modules (read, not imported)."""
    kinds: dict[str, JobKind] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for k in _declarations(path, f"{__name__}.{path.stem}"):
            if k.name in kinds:
                raise ValueError(f"job kind {k.name!r} registered twice ({kinds[k.name].module}, {k.module})")
            kinds[k.name] = k
    return kinds


class JobContext:
    """What a job starts with: its spec, device, the trained model (if any) and the test split.

    ``partial`` is a path where a long job may keep resumable state (undeclared, so Snakemake never
    deletes it before a restart); ``progress`` says whether to draw a progress bar.
    """

    def __init__(self, spec: dict[str, Any], *, model_path: str | None, data_root: str, device: str, out: str, partial: str | None, progress: bool = True):
        import torch

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
