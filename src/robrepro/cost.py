"""Cost model: time a few steps of every distinct job of a tier on this device, extrapolate each job.

How a job is timed, generically (no kind needs code here beyond how it is *shrunk*):

* A training runs through the real engine (:func:`robrepro.engine.train`) on a growing number of
  training images ``n`` (one epoch, batch ``min(n, batch_size)``), doubling ``n`` until one run
  takes ``budget`` seconds. The line through the last two points (fixed cost + seconds per image)
  gives the full run: ``epochs x training images``. Model selection (``train.select``) adds one
  clean pass over the selection images per epoch, timed on its own.
* An evaluation job runs its kind's real function on the first ``n`` test images, doubled the same
  way, and is extrapolated to its test set. The model is the run's architecture, untrained, and the
  labels are its own predictions: every image counts as clean-correct, so every image is attacked,
  as for a trained model (attacks only start from correctly classified points).
* A job without a model is shrunk along what drives its cost (``SHRINK``: the landscape search's
  number of basin-hopping steps).
* Every job also pays one process start (imports), measured once in a subprocess.

Jobs whose specs agree on everything that sets their cost (model, data, training or job settings;
not names, labels, seeds) are timed once. Data come from the synthetic stand-ins wherever a dataset
has one: timing does not depend on pixel values, and the paper tier's datasets need not be present.
Memory is the peak of the device's allocator on CUDA and of the process's resident set on CPU,
extrapolated to the job's batch size, plus the dataset where training keeps it on the device.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import runtimes as R
from .evaluations import JobContext
from .results import warm_usage

DEFAULT_BUDGET_S = 2.0


@dataclass
class Point:
    """One timed run of a shrunk job: its size (images or steps), seconds and peak memory (MiB)."""

    n: int
    seconds: float
    mem_mb: float | None = None


@dataclass
class Estimate:
    seconds: float
    mem_mb: float | None
    points: list[Point] = field(default_factory=list)
    error: str | None = None


def fit(points: list[Point], full: int) -> float:
    """Seconds at size ``full``: the line through the last two points (a fixed cost plus a cost per
    unit); the larger of them when the line falls (all fixed cost); through the origin when one point
    is all there is or the line would start below zero."""
    last = points[-1]
    if last.n >= full:
        return last.seconds
    if len(points) >= 2 and points[-1].n > points[-2].n:
        a = points[-2]
        slope = (last.seconds - a.seconds) / (last.n - a.n)
        fixed = last.seconds - slope * last.n
        if slope <= 0:
            # Not growing with the size: a fixed cost (setup) that timing noise hides the rest of.
            return max(a.seconds, last.seconds)
        if fixed >= 0:
            return fixed + slope * full
    return last.seconds * full / last.n


def ramp(measure: Callable[[int], Point], start: int, full: int, budget: float, cap: int | None = None) -> list[Point]:
    """Time ``measure(n)`` for n = start, 2 start, ... until a run takes ``budget`` seconds or n
    reaches ``full`` (or ``cap``). Two points at least (the fit separates fixed from per-unit cost);
    when the first alone takes five budgets, the second is half as many units, not twice as many."""
    top = min(full, cap or full)
    n, points = max(1, min(start, top)), []
    while True:
        points.append(measure(n))
        t = points[-1].seconds
        if len(points) == 1 and t >= 5 * budget and n > 1:
            # Slow from the start: half as many units tell a fixed cost (setup) from a cost per unit.
            return [measure(max(1, n // 2)), *points]
        if n >= top or (t >= budget and len(points) >= 2) or t >= 5 * budget:
            return points
        n = min(2 * n, top)


# --- measuring ------------------------------------------------------------------------------------


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class Meter:
    """Time of a block and the peak memory it added.

    On CUDA: wall time, the device synchronised at both ends (queued kernels are counted), and the
    allocator's peak. On CPU: the process's CPU time divided by torch's threads, which is the wall
    time of an idle machine for a job that keeps its threads busy, and which a machine shared with
    other work does not inflate as it inflates wall time; and the resident set, sampled.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.seconds, self.mem_mb = 0.0, None

    def _sample(self):
        while not self._stop.wait(0.05):
            r = _rss_mb()
            if r is not None:
                self._peak = max(self._peak, r)

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._base = _rss_mb()
            self._peak, self._stop = self._base or 0.0, threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter() if self.cuda else time.process_time()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0 if self.cuda else (time.process_time() - self._t0) / torch.get_num_threads()
        if self.cuda:
            self.mem_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.mem_mb = (self._peak - self._base) if self._base is not None else None


def startup(cpu: bool = False) -> tuple[float, float | None]:
    """Seconds and resident MiB of starting a job's process (imports), measured in a subprocess:
    its wall time, or with ``cpu`` its CPU time (see :class:`Meter`)."""
    import robrepro

    code = (
        "import resource, robrepro.cli, robrepro.engine\n"
        "from robrepro.evaluations import registry\n"
        "registry()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(robrepro.__file__).parents[1]), env.get("PYTHONPATH", "")])
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) if cpu else time.perf_counter() - t0
    try:
        rss = int(out.stdout.split()[-1]) / 1024  # KiB on Linux
    except (ValueError, IndexError):
        rss = None
    return seconds, rss


def device_name(device) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {torch.get_num_threads()} threads"


# --- jobs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    key: str  # its name in the runtimes file
    paper: str
    kind: str  # "train" or an evaluation kind
    run: str | None
    name: str | None
    spec: dict[str, Any]
    run_spec: dict[str, Any] | None  # the trained run an evaluation reads

    @property
    def identity(self) -> str:
        """What sets the job's cost: equal identities are timed once."""
        if self.kind == "train":
            what = {k: self.spec[k] for k in ("data", "model", "train")}
        else:
            what = {"kind": self.kind, "data": self.spec["data"], "params": self.spec["params"], "model": (self.run_spec or {}).get("model")}
        return json.dumps(what, sort_keys=True)


def jobs_of(plan) -> list[Job]:
    """Every training and evaluation job that the active papers' tables and figures need (a paper's
    configuration may declare runs that no enabled target reads: they never run)."""
    needed: set[str] = set()
    for t in plan.targets.values():
        if t.paper in plan.active_papers():
            needed |= target_jobs(plan, t)
    out = [Job(R.job_key(p, r), p, "train", r, None, s, None) for (p, r), s in plan.runs.items()]
    out += [Job(R.job_key(p, r, k, n), p, k, r, n, s, plan.runs.get((p, r))) for (p, r, k, n), s in plan.jobs.items()]
    return [j for j in out if j.key in needed]


def timing_data(d: dict[str, Any]) -> dict[str, Any]:
    from . import data

    return {**d, "source": "synthetic"} if data.info(d["name"]).synthetic else dict(d)


def _with(spec: dict[str, Any], **changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with sections updated (``data={...}``, ``params={...}``), timing data."""
    s = copy.deepcopy(spec)
    for section, values in changes.items():
        s[section] = {**s.get(section, {}), **values}
    s["data"] = timing_data(s["data"])
    return s


def _landscape_steps(spec: dict[str, Any]) -> int:
    from .landscape import SearchConfig

    return int(spec["params"].get("search", {}).get("n_steps", SearchConfig.n_steps))


def _shrink_search(spec: dict[str, Any], n: int) -> dict[str, Any]:
    return _with(spec, params={"search": {**spec["params"].get("search", {}), "n_steps": n, "chunk": n}})


def _test_size(spec: dict[str, Any]) -> int:
    from . import data

    return int(spec["data"].get("test_limit") or data.info(spec["data"]["name"]).n_test)


def _shrink_test(spec: dict[str, Any], n: int) -> dict[str, Any]:
    return _with(spec, data={"test_limit": n})


def _after_containment(spec: dict[str, Any]) -> int:
    # The sensitivity job samples outputs around its first `containment.points` images only: timed
    # from twice that many, both points carry that cost whole and their slope is the per-image cost.
    return max(4, 2 * int((spec["params"].get("containment") or {}).get("points", 0)))


# kind -> (full size of a job, the job shrunk to size n, first size tried, from its spec). Kinds not
# named here evaluate a model on its test images.
SHRINK: dict[str, tuple[Callable, Callable, Callable]] = {
    "landscape": (_landscape_steps, _shrink_search, lambda spec: 2),
    "sensitivity": (_test_size, _shrink_test, _after_containment),
}
DEFAULT_SHRINK = (_test_size, _shrink_test, lambda spec: 4)


class Timing:
    """Times jobs on one device; owns a scratch folder for the files jobs write."""

    def __init__(self, device: str, budget: float, scratch: Path):
        from .engine import resolve_device

        self.device = resolve_device(device)
        self.budget, self.scratch = budget, scratch
        self._models: dict[str, str] = {}

    def _fresh(self, name: str) -> str:
        p = self.scratch / name
        p.unlink(missing_ok=True)
        return str(p)

    def model_file(self, run_spec: dict[str, Any]) -> str:
        """An untrained model of the run's architecture, saved as training would save it."""
        from .engine import build_model, spec_hash

        key = json.dumps({"model": run_spec["model"], "data": run_spec["data"]}, sort_keys=True)
        if key not in self._models:
            torch.manual_seed(0)
            path = self.scratch / f"model-{len(self._models)}.pt"
            torch.save({"spec": run_spec, "spec_hash": spec_hash(run_spec), "state_dict": build_model(run_spec).state_dict()}, path)
            self._models[key] = str(path)
        return self._models[key]

    def train(self, spec: dict[str, Any]) -> Estimate:
        from . import data
        from .engine import train

        t = spec["train"]
        info = data.info(spec["data"]["name"])
        select = t.get("select", "none")
        n_train = int(spec["data"].get("train_limit") or info.n_train) - (int(t.get("val_size", 5000)) if select == "val" else 0)
        bs, epochs = int(t["batch_size"]), int(t["epochs"])

        def measure(n: int) -> Point:
            s = _with(spec, data={"train_limit": n}, train={"epochs": 1, "batch_size": min(bs, n), "select": "none", "checkpoint_every_steps": 0})
            out = {k: self._fresh(f"train.{k}") for k in ("pt", "json", "ckpt")}
            with Meter(self.device) as m:
                train(
                    s,
                    data_root=str(self.scratch),
                    model_out=out["pt"],
                    result_out=out["json"],
                    checkpoint=out["ckpt"],
                    device=str(self.device),
                    progress_bar=False,
                )
            # The engine's deterministic mode stays on after it: evaluation jobs run without it.
            torch.use_deterministic_algorithms(False)
            return Point(n, m.seconds, m.mem_mb)

        points = ramp(measure, min(bs, 8), epochs * n_train, self.budget)
        seconds = fit(points, epochs * n_train)
        if select in ("test", "val"):
            n_sel = _test_size(spec) if select == "test" else int(t.get("val_size", 5000))
            seconds += epochs * self._forward_seconds(spec, n_sel)
        # Training keeps its images on the GPU (uint8 images, float tabular data).
        data_mb = n_train * math.prod(info.shape) * (1 if info.kind == "image" else 4) / 2**20
        return Estimate(seconds, _memory(points, bs, data_mb), points)

    def _forward_seconds(self, spec: dict[str, Any], n: int) -> float:
        """Seconds of one clean pass over ``n`` images (the per-epoch model selection)."""
        from . import data
        from .engine import build_model, clean_accuracy

        m = min(n, 256)
        d = timing_data(spec["data"])
        x, y = data.load_split(d["name"], "test", source=d["source"], root=str(self.scratch), limit=m, seed=d.get("synthetic_seed", 0))
        model = build_model(spec).to(self.device)
        with Meter(self.device) as t:
            clean_accuracy(model, x, y, self.device)
        return t.seconds * n / max(1, m)

    def evaluation(self, job: Job) -> Estimate:
        from .evaluations import registry

        kind = registry()[job.kind]
        size, shrink, start = SHRINK.get(job.kind, DEFAULT_SHRINK)
        full = size(job.spec)
        model = self.model_file(job.run_spec) if kind.needs_model else None

        def measure(n: int) -> Point:
            s = shrink(job.spec, n)
            ctx = TimingContext(
                s,
                model_path=model,
                data_root=str(self.scratch),
                device=str(self.device),
                out=self._fresh("eval.json"),
                partial=self._fresh("eval.partial"),
                progress=False,
            )
            with Meter(self.device) as m:
                ctx.write(kind.fn(ctx))
            return Point(n, m.seconds, m.mem_mb)

        points = ramp(measure, start(job.spec), full, self.budget)
        batch = int(job.spec["params"].get("batch_size") or full)
        return Estimate(fit(points, full), _memory(points, batch, 0.0), points)


def _memory(points: list[Point], batch: int, data_mb: float) -> float | None:
    """Peak MiB at batch size ``batch``: the memory points as a line in the batch (weights and
    workspace fixed, activations per image), plus ``data_mb`` that the timing runs did not hold."""
    mem = [Point(min(p.n, batch), p.mem_mb) for p in points if p.mem_mb is not None]
    if not mem:
        return None
    return max(max(p.seconds for p in mem), fit(mem, batch)) + data_mb


class TimingContext(JobContext):
    """A job's context whose test labels are the model's own predictions (all clean-correct)."""

    def split(self, split: str = "test", limit: int | None = None):
        x, y = super().split(split, limit)
        if not self.model_path:
            return x, y
        from .attacks import predict

        return x, predict(self.model, x, 256, self.device)


def load_config(files: list[str], *, tier: str | None = None, papers: list[str] | None = None, config_dir: str | None = None) -> dict[str, Any]:
    """The composed configuration of ``files``, with the tier and the papers to cost overridden."""
    from .config import load

    overrides = {k: v for k, v in (("tier", tier), ("papers", papers)) if v}
    return load(*files, overrides=overrides, config_dir=config_dir)


# --- the model ------------------------------------------------------------------------------------


def estimate(
    plan,
    *,
    device: str = "auto",
    budget: float = DEFAULT_BUDGET_S,
    threads: int | None = None,
    match: str | None = None,
    deadline: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Predicted seconds and memory of every job of ``plan``; each distinct job timed once.

    Returns ``{"device", "startup_s", "rows": [...]}``; a row per job: key, paper, kind, run, name,
    seconds (process start included), mem_mb, timed_as (the job whose timing it shares), error.
    ``match``: a regular expression; only jobs whose key it finds are costed. ``deadline``: seconds
    after which no further job is timed (those left are reported as not timed).
    A job that fails to time is reported with its error and no seconds, and does not stop the rest.
    """
    resources = plan.config["resources"]
    started = time.perf_counter()
    from .engine import resolve_device

    start_s, start_mb = startup(cpu=resolve_device(device).type == "cpu")
    jobs = [j for j in jobs_of(plan) if not match or re.search(match, j.key)]
    done: dict[str, tuple[Job, Estimate]] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="robrepro-cost-") as tmp:
        timing = Timing(device, budget, Path(tmp))
        for i, job in enumerate(jobs):
            if job.identity not in done:
                # The threads a job gets from the workflow (its kind's resources), unless overridden.
                kind_res = "train" if job.kind == "train" else plan.kinds[job.kind].resources
                torch.set_num_threads(threads or resources.get(kind_res, resources["attack"])["threads"])
                t0 = time.perf_counter()
                try:
                    if deadline is not None and t0 - started > deadline:
                        raise TimeoutError(f"not timed: the cost model's time limit of {deadline:.0f} s ran out")
                    est = timing.train(job.spec) if job.kind == "train" else timing.evaluation(job)
                except Exception as err:  # noqa: BLE001  (one job's failure must not hide the others' costs)
                    est = Estimate(math.nan, None, error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                done[job.identity] = (job, est)
                log(
                    f"[cost] {i + 1}/{len(jobs)} {job.key}: {_hms(est.seconds + start_s)} predicted ({time.perf_counter() - t0:.1f} s to time: "
                    + ", ".join(f"{p.n}:{p.seconds:.2f}s" for p in est.points)
                    + ")"
                )
            rep, est = done[job.identity]
            mem = None if est.mem_mb is None else est.mem_mb + (start_mb if timing.device.type == "cpu" and start_mb else 0.0)
            rows.append(
                {
                    "key": job.key,
                    "paper": job.paper,
                    "kind": job.kind,
                    "run": job.run,
                    "name": job.name,
                    "seconds": None if math.isnan(est.seconds) else round(est.seconds + start_s, 2),
                    "mem_mb": None if mem is None else round(mem, 1),
                    "timed_as": rep.key,
                    "error": est.error,
                }
            )
        name = device_name(timing.device)
    return {"device": name, "startup_s": round(start_s, 2), "budget_s": budget, "rows": rows}


def _hms(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def _hours(rows: list[dict[str, Any]]) -> float:
    return sum(r["seconds"] or 0.0 for r in rows) / 3600


def summary(plan, result: dict[str, Any]) -> str:
    """The cost table in Markdown: per paper, per target, in total; the longest job; failures."""
    rows = result["rows"]
    by_key = {r["key"]: r for r in rows}
    unit = "GPU-hours" if result["device"].startswith("GPU") else "CPU-hours"
    lines = [
        f"Cost of the {plan.config['tier']} tier, measured on {result['device']} (timing budget {result['budget_s']} s per job).",
        "",
        f"| paper | jobs | trainings | {unit} | of which training | peak memory (MiB) | longest job |",
        "|---|---|---|---|---|---|---|",
    ]
    for paper in plan.active_papers():
        pr = [r for r in rows if r["paper"] == paper]
        if not pr:
            continue
        longest = max(pr, key=lambda r: r["seconds"] or 0.0)
        mem = max((r["mem_mb"] or 0.0) for r in pr)
        lines.append(
            f"| {paper} | {len(pr)} | {sum(r['kind'] == 'train' for r in pr)} | {_hours(pr):.2f} | "
            f"{_hours([r for r in pr if r['kind'] == 'train']):.2f} | {mem:.0f} | {longest['key']} ({_hms(longest['seconds'] or 0.0)}) |"
        )
    longest = max(rows, key=lambda r: r["seconds"] or 0.0) if rows else None
    lines.append(
        f"| **total** | {len(rows)} | {sum(r['kind'] == 'train' for r in rows)} | {_hours(rows):.2f} | "
        f"{_hours([r for r in rows if r['kind'] == 'train']):.2f} | {max((r['mem_mb'] or 0.0) for r in rows) if rows else 0:.0f} | "
        + (f"{longest['key']} ({_hms(longest['seconds'] or 0.0)}) |" if longest else "|")
    )
    lines += ["", f"Per target ({unit} of every job it needs, trainings included; a job shared by targets counts in each):", ""]
    lines += [f"| target | jobs | {unit} |", "|---|---|---|"]
    for t in plan.targets.values():
        if t.paper in plan.active_papers():
            needed = target_jobs(plan, t)
            lines.append(f"| {t.name} | {len(needed)} | {_hours([by_key[k] for k in needed if k in by_key]):.2f} |")
    failed: dict[str, list[str]] = {}
    for r in rows:
        if r["error"]:
            failed.setdefault(r["error"], []).append(r["key"])
    if failed:
        lines += ["", "Jobs that could not be timed (not in the sums):", ""]
        lines += [f"- {err}: {', '.join(keys[:5])}" + (f" and {len(keys) - 5} more" if len(keys) > 5 else "") for err, keys in failed.items()]
    return "\n".join(lines) + "\n"


def target_jobs(plan, target) -> set[str]:
    """Runtimes keys of every job a target needs: the jobs whose files it reads and their trainings."""
    files = {}
    for p, r, k, n in plan.jobs:
        files[plan.job_file(p, r, k, n)] = (R.job_key(p, r, k, n), r and R.job_key(p, r))
    for p, r in plan.runs:
        files[plan.paths.train_result(p, r)] = (R.job_key(p, r), None)
    out: set[str] = set()
    for f in target.inputs:
        key, training = files.get(f, (None, None))
        out |= {k for k in (key, training) if k}
    return out


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``jobs.csv`` written by :func:`write_outputs`."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("seconds", "mem_mb"):
            r[k] = float(r[k]) if r[k] not in ("", None) else None
        for k in ("run", "name", "error"):
            r[k] = r[k] or None
    return rows


def write_outputs(plan, result: dict[str, Any], outputs: dict[str, str], *, safety: float = R.SAFETY, floor: int = R.FLOOR_MINUTES) -> str:
    """Write the per-job CSV, the Markdown summary and the runtimes file; return the summary."""
    for p in outputs.values():
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    cols = ["key", "paper", "kind", "run", "name", "seconds", "mem_mb", "timed_as", "error"]
    with open(outputs["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(result["rows"])
    text = summary(plan, result)
    Path(outputs["md"]).write_text(text)
    predicted = {r["key"]: r["seconds"] for r in result["rows"] if r["seconds"] is not None}
    R.write(outputs["runtimes"], predicted, device=result["device"], safety=safety, floor=floor)
    return text


# --- checking against measured job times ------------------------------------------------------------


def benchmark_file(plan, job_key: str) -> str:
    """The Snakemake benchmark file of a job, from its runtimes key."""
    part, paper, *rest = job_key.split("/")
    return plan.paths.benchmark(paper, part, *rest)


def result_file(plan, job_key: str) -> str:
    """The result file a job writes, from its runtimes key."""
    part, paper, *rest = job_key.split("/")
    return {"train": plan.paths.train_result, "eval": plan.paths.evaluation, "jobs": plan.paths.standalone}[part](paper, *rest)


def _ran_warm(path: Path) -> bool:
    try:
        return warm_usage(json.loads(path.read_text())) is not None
    except (OSError, ValueError, AttributeError):
        return False


def compare(plan, rows: list[dict[str, Any]], base: str | os.PathLike = ".", column: str = "s") -> dict[str, Any]:
    """Predicted against measured seconds (``column`` of each job's benchmark file under ``base``:
    ``s``, wall time, or ``cpu_time``, which a busy machine does not inflate), for the jobs that
    have one. Returns the pairs and the fraction within 2x. Jobs that ran in a warm worker
    (robrepro.warm, local runs) are left out, listed under ``warm``: their benchmark measured a client
    (``cpu_time``) and their wall time lacks the process start every prediction includes."""
    pairs, warm = [], []
    for r in rows:
        f = Path(base) / benchmark_file(plan, r["key"])
        if r["seconds"] is None or not f.exists():
            continue
        if _ran_warm(Path(base) / result_file(plan, r["key"])):
            warm.append(r["key"])
            continue
        with open(f) as fh:
            measured = [float(b[column]) for b in csv.DictReader(fh, delimiter="\t")]
        if measured:
            m = sum(measured) / len(measured)
            pairs.append({"key": r["key"], "predicted": r["seconds"], "measured": round(m, 2), "ratio": round(r["seconds"] / m, 3) if m > 0 else math.inf})
    within = sum(1 / 2 <= p["ratio"] <= 2 for p in pairs)
    return {"pairs": pairs, "n": len(pairs), "within_2x": within, "fraction": within / len(pairs) if pairs else math.nan, "warm": warm}
