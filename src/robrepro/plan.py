"""Expand a validated configuration into the workflow's runs, evaluation jobs and targets.

The rule files stay declarative: they ask this module which runs and jobs exist (the wildcard
values), the JSON spec of each job (passed as a rule param, so a changed setting re-runs exactly the
jobs it touches), which files each table or figure reads, and the final targets. Every paper
registered in :mod:`robrepro.papers` contributes its declarations; the plan names none of them.
Paths come from :mod:`robrepro.paths`.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from . import evaluations, papers
from .paths import Paths


def data_spec(config: dict[str, Any], dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job needs to know of its dataset: name, source, normalisation, subset sizes."""
    d = config["data"][dataset]
    spec = {
        "name": dataset,
        "source": d["source"],
        "mean": d["mean"],
        "std": d["std"],
        "synthetic_seed": d["synthetic_seed"],
        "train_limit": None,
        "test_limit": d["test_limit"],
    }
    spec.update(copy.deepcopy(overrides or {}))
    return spec


def replicate_run(run: papers.Run, seeds: int, base_seed: int) -> list[tuple[papers.Run, int]]:
    """``run`` trained under ``seeds`` training seeds: (replicate, its seed) pairs.

    One seed keeps the declared run as it is (its id, paths and results do not change). Several
    give runs ``<id>-s<seed>`` of seeds ``base_seed``, ``base_seed + 1``, ..., labelled ``seed`` and
    ``declared_run``, so the tables built on them have one row per seed and the verdicts see the
    seed-to-seed spread.
    """
    if seeds < 1:
        raise ValueError(f"run {run.id!r}: seeds must be at least 1, not {seeds}")
    if seeds == 1:
        return [(run, base_seed)]
    # ``declared_run`` lets a builder that knows models by their declared id find every replicate.
    return [
        (dataclasses.replace(run, id=f"{run.id}-s{s}", labels={**run.labels, "seed": s, "declared_run": run.id}), s)
        for s in range(base_seed, base_seed + seeds)
    ]


def _check_seed_keys(name: str, paper: papers.Paper) -> None:
    # A misspelt experiment would silently train once: every key must name some run's experiment.
    known = {k for r in paper.runs() for k in (r.experiment, f"{r.experiment}:{r.dataset}")}
    unknown = sorted(set(paper.cfg.get("seeds") or {}) - known)
    if unknown:
        raise ValueError(f"{name}.seeds: no experiment {', '.join(map(repr, unknown))} among the runs; known: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class PlannedTarget:
    paper: str
    name: str
    kind: str
    title: str
    builder: str  # "module:function"
    inputs: list[str]
    outputs: dict[str, str]
    params: dict[str, Any]


class Plan:
    """Everything the rule files need, computed once from the validated config."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.paths = Paths(config["tier"])
        self.kinds = evaluations.registry()
        self.papers = {name: cls(config) for name, cls in papers.registry().items()}
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str | None, str, str], dict[str, Any]] = {}
        self.targets: dict[str, PlannedTarget] = {}
        # Declared run id -> the ids of its training-seed replicates (itself alone when seeds = 1).
        self.replicas: dict[tuple[str, str], list[str]] = {}
        for name, paper in self.papers.items():
            for run in paper.runs():
                for rep, seed in replicate_run(run, paper.seeds(run), self.config["seed"]):
                    self._add_run(name, rep, seed)
                    self.replicas.setdefault((name, run.id), []).append(rep.id)
            _check_seed_keys(name, paper)
            for job in paper.jobs():
                for rep in self._replicate_job(name, job):
                    self._add_job(name, rep)
            for target in paper.targets():
                self._add_target(name, target)

    # --- building -------------------------------------------------------------------------------

    def _replicate_job(self, paper: str, job: papers.Job) -> list[papers.Job]:
        """A job declared on a replicated run, once on each replicate, labelled with its seed."""
        ids = self.replicas.get((paper, job.run)) if job.run is not None else None
        if not ids or ids == [job.run]:
            return [job]
        return [dataclasses.replace(job, run=rid, labels={**job.labels, "seed": self.runs[(paper, rid)]["labels"]["seed"]}) for rid in ids]

    def _replicas_of(self, paper: str, run: str | None) -> list[str | None]:
        return self.replicas.get((paper, run), [run]) if run is not None else [None]

    def _add_run(self, paper: str, run: papers.Run, seed: int) -> None:
        if (paper, run.id) in self.runs:
            raise ValueError(f"{paper}: run {run.id!r} declared twice")
        train = copy.deepcopy(run.train)
        limit = train.pop("train_limit", None)
        data = data_spec(self.config, run.dataset, {**run.data, "train_limit": limit})
        self.runs[(paper, run.id)] = {
            "paper": paper,
            "experiment": run.experiment,
            "run": run.id,
            "tier": self.config["tier"],
            "seed": seed,
            "data": data,
            "model": copy.deepcopy(run.model),
            "train": train,
            "labels": copy.deepcopy(run.labels),
        }

    def _add_job(self, paper: str, job: papers.Job) -> None:
        kind = self.kinds.get(job.kind)
        if kind is None:
            raise ValueError(f"{paper}: job {job.name!r} of unknown kind {job.kind!r}; known: {', '.join(sorted(self.kinds))}")
        if kind.needs_model and (paper, job.run) not in self.runs:
            raise ValueError(f"{paper}: job {job.kind}/{job.name} evaluates unknown run {job.run!r}")
        key = (paper, job.run, job.kind, job.name)
        if key in self.jobs:
            raise ValueError(f"{paper}: job {key} declared twice")
        base = self.runs[(paper, job.run)]["data"] if kind.needs_model else data_spec(self.config, job.dataset)
        # A trained model's job evaluates on its test split: its training subset does not matter.
        data = {**base, "train_limit": base["train_limit"] if not kind.needs_model else None, **copy.deepcopy(job.data)}
        self.jobs[key] = {
            "paper": paper,
            "run": job.run,
            "kind": job.kind,
            "name": job.name,
            "tier": self.config["tier"],
            # A replicate's evaluation draws its random starts from the replicate's own seed.
            "seed": self.runs[(paper, job.run)]["seed"] if kind.needs_model else self.config["seed"],
            "data": data,
            "params": copy.deepcopy(job.params),
            "labels": copy.deepcopy(job.labels),
        }

    def _add_target(self, paper: str, t: papers.Target) -> None:
        if t.name in self.targets:
            raise ValueError(f"target {t.name!r} declared twice")
        # A target reads every seed replicate of the runs and jobs it declares.
        jobs = [(rid, kind, name) for run, kind, name in t.jobs for rid in self._replicas_of(paper, run)]
        runs = [rid for run in t.runs for rid in self._replicas_of(paper, run)]
        inputs = [self.job_file(paper, *key) for key in jobs] + [self.paths.train_result(paper, r) for r in runs]
        builder = f"{t.builder.__module__}:{t.builder.__qualname__}"
        self.targets[t.name] = PlannedTarget(paper, t.name, t.kind, t.title, builder, inputs, self.paths.target(paper, t.name, t.kind), copy.deepcopy(t.params))

    # --- queries of the rules ---------------------------------------------------------------------

    def job_file(self, paper: str, run: str | None, kind: str, name: str) -> str:
        if (paper, run, kind, name) not in self.jobs:
            raise KeyError(f"no job {kind}/{name} of run {run!r} ({paper}) in the configuration")
        if self.kinds[kind].needs_model:
            return self.paths.evaluation(paper, run, kind, name)
        return self.paths.standalone(paper, kind, name)

    def producer(self, path: str) -> tuple[str, tuple]:
        """Who writes a result file: ``("job", (paper, run, kind, name))``, ``("train", (paper, run))``, or ``("", ())``."""
        if not hasattr(self, "_producers"):
            index: dict[str, tuple[str, tuple]] = {self.job_file(*k): ("job", k) for k in self.jobs}
            index.update({self.paths.train_result(*k): ("train", k) for k in self.runs})
            self._producers = index
        return self._producers.get(path, ("", ()))

    def benchmarks(self, path: str) -> dict[str, str]:
        """Benchmark files of the jobs behind a result file (its job, and the training of the model it
        evaluates), each with the result file its job writes."""
        what, key = self.producer(path)
        if what == "train":
            return {self.paths.train_benchmark(*key): path}
        if what != "job":
            return {}
        paper, run, kind, name = key
        if self.kinds[kind].needs_model:
            return {self.paths.evaluation_benchmark(paper, run, kind, name): path, self.paths.train_benchmark(paper, run): self.paths.train_result(paper, run)}
        return {self.paths.standalone_benchmark(paper, kind, name): path}

    def train_spec(self, paper: str, run: str) -> dict[str, Any]:
        try:
            return self.runs[(paper, run)]
        except KeyError:
            raise KeyError(f"no run {run!r} of paper {paper!r} in the configuration") from None

    def job_spec(self, paper: str, run: str | None, kind: str, name: str) -> dict[str, Any]:
        try:
            return self.jobs[(paper, run, kind, name)]
        except KeyError:
            raise KeyError(f"no job {kind}/{name} of run {run!r} ({paper}) in the configuration") from None

    def active_papers(self) -> list[str]:
        return list(self.config.get("papers") or self.papers)

    def paper_targets(self, paper: str) -> list[PlannedTarget]:
        return [t for t in self.targets.values() if t.paper == paper]

    def all_targets(self) -> list[str]:
        return [f for p in self.active_papers() for t in self.paper_targets(p) for f in t.outputs.values()]

    def wildcard_values(self) -> dict[str, str]:
        """Regexes of the wildcard values the plan can produce (Snakemake wildcard_constraints)."""

        def alt(values):
            return "|".join(sorted({v for v in values if v})) or "NONE"

        return {"paper": alt(self.papers), "kind": alt(self.kinds), "dataset": alt(self.config["data"].keys() - {"root", "mirrors", "download"})}


def builder(qualified: str):
    """The builder function ``module:function`` of a target."""
    module, _, fn = qualified.partition(":")
    return getattr(importlib.import_module(module), fn)
