"""Papers as plug-ins.

A paper is one module of this package that subclasses :class:`Paper` and registers it with
:func:`register_paper`, plus files named after it: its schema part (``papers/<name>.schema.yaml``),
its configuration (``config/papers/<name>[.<tier>].yaml``), its published numbers and claims
(``published/<name>.csv``) and its report captions (``workflow/report/<name>/<target>.rst``).
The module says, from its configuration section, which models to train (:class:`Run`), which
evaluation jobs to run on them (:class:`Job`, of a kind declared in :mod:`robrepro.evaluations`)
and which tables and figures to build (:class:`Target`, each with a builder function of the
module). The spine (plan, rules, CLI, reporting) reads these declarations and names no paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import yaml


@dataclass(frozen=True)
class Run:
    """A model to train. ``labels`` are the facts tables group by (dataset, architecture, method, eps...)."""

    id: str
    experiment: str
    dataset: str
    model: dict[str, Any]
    train: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)
    # Per-run overrides of the dataset's normalisation (e.g. raw pixels for certified MNIST models).
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """An evaluation job: ``kind`` (a registered job kind) applied to ``run`` (None for a kind that
    needs no trained model), distinguished by ``name``; ``params`` go to the kind's function."""

    kind: str
    name: str
    run: str | None
    dataset: str
    params: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)
    # Overrides of the dataset spec for this job (e.g. a smaller test subset: {"test_limit": 100}).
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str | None, str, str]:
        return (self.run, self.kind, self.name)


@dataclass(frozen=True)
class Target:
    """A table or figure: ``builder(input_paths, outputs, **params)`` of the paper's module builds it
    from the result files of ``jobs`` (keys of :class:`Job`) and of the training runs ``runs``."""

    name: str
    kind: str  # "table" or "figure"
    title: str
    builder: Any
    jobs: list[tuple[str | None, str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


class Paper:
    """Base class of a paper plug-in. Subclasses set ``name`` and ``title`` and implement the three
    declarations; ``self.cfg`` is the paper's validated configuration section."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.cfg = config[self.name]

    def runs(self) -> list[Run]:
        return []

    def jobs(self) -> list[Job]:
        return []

    def targets(self) -> list[Target]:
        return []

    def seeds(self, run: Run) -> int:
        """Training seeds of ``run``: the paper section's ``seeds`` entry ``<experiment>:<dataset>``,
        else ``<experiment>``, else 1 (the plan trains one replicate per seed)."""
        s = self.cfg.get("seeds") or {}
        return int(s.get(f"{run.experiment}:{run.dataset}", s.get(run.experiment, 1)))

    def seeds_note(self, runs: list[Run]) -> str:
        """The table note that discloses how many training seeds stand behind each model of ``runs``."""
        counts = sorted({self.seeds(r) for r in runs}) or [1]
        base = int(self.config["seed"])
        if counts == [1]:
            return f"training seeds: 1 per model (seed {base})."
        return (
            f"training seeds: {counts[0] if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'} per model (seeds {base}, {base + 1}, ...; "
            "one row each, column seed); the verdicts judge these models on the seed-to-seed spread."
        )

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return yaml.safe_load(resources.files(__name__).joinpath(f"{cls.name}.schema.yaml").read_text())


_PAPERS: dict[str, type[Paper]] = {}


def register_paper(cls: type[Paper]) -> type[Paper]:
    if not cls.name or cls.name in _PAPERS:
        raise ValueError(f"paper name {cls.name!r} empty or registered twice")
    _PAPERS[cls.name] = cls
    return cls


def registry() -> dict[str, type[Paper]]:
    """Name -> class of every paper module of this package."""
    from ..registry import import_submodules

    import_submodules(__name__)
    return dict(sorted(_PAPERS.items()))
