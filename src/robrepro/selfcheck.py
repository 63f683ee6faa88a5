"""GPU self-check: every kind of job for a few steps on a device and on a reference device, compared.

``python -m robrepro selfcheck`` on a CUDA machine compares the GPU (``--device``, default ``cuda``
when present) with the CPU (``--reference``) on the same inputs and the same weights, then prints the
cost table of the paper tier measured on the device. On a machine without a GPU it compares the CPU
with itself (what CI runs, so the command keeps working).

Steps, one per distinct thing of the tier's plan, each under its own time limit:

* ``model``: every architecture, untrained and seeded, on the same images: logits within
  ``LOGIT_TOL`` x (1 + largest |logit|) (float32, TF32 convolutions and other kernel orders on GPU),
  and equal predictions wherever the top two logits differ by more than that.
* ``bounds``: the output box (IBP and CROWN-IBP) of every architecture a bound-based kind evaluates:
  both ends within ``LOGIT_TOL`` x (1 + largest |bound|).
* ``train``: two steps of every distinct training objective through the engine: every weight
  tensor within ``TRAIN_TOL`` relative L2 distance (random starts of attacks draw from the device's
  own generator, so adversarial objectives do not see the same starts), the loss within ``TRAIN_TOL``.
* every evaluation kind: its real job function on a few test images, every number of its result
  within ``EVAL_ATOL`` absolute or ``EVAL_RTOL`` relative (an attack's accuracy on 8 images moves in
  steps of 0.125; near-ties of an untrained model may flip a decision), counters of time and calls excepted.

It needs only PyTorch (with torchvision, torchdiffeq, numpy, scipy, pandas, pyyaml): a step whose code
needs a package that is missing (foolbox's boundary attack, say) is reported as skipped, naming it.
"""

from __future__ import annotations

import copy
import importlib.machinery
import json
import math
import signal
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

LOGIT_TOL = 1e-2
TRAIN_TOL = 0.05
EVAL_ATOL = 0.25
EVAL_RTOL = 0.1
N_IMAGES = 8
# Kinds that bound a model's outputs, and the radius their bounds are compared at.
BOUND_KINDS = ("verify", "sensitivity")
BOUND_EPS = 2 / 255
# Result keys that measure cost, not the result: never compared.
COST_KEYS = ("seconds", "time", "nfe", "calls", "passes", "queries", "cost", "started", "wall", "provenance", "batches_resumed")


class StepTimeout(Exception):
    """A step ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the main thread after ``seconds`` (no limit where SIGALRM is missing)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum, frame):
        raise StepTimeout(f"over its time limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Step:
    name: str
    status: str  # ok, FAIL, skipped
    detail: str
    seconds: float


def _missing_optional_packages() -> None:
    """tqdm only draws the training's progress bar: stand in a silent one where it is not installed."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:

        class Silent:
            def __init__(self, *a, **k):
                pass

            def update(self, *a):
                pass

            def close(self):
                pass

            @staticmethod
            def write(line, file=None):
                # Progress lines (robrepro.progress) still reach the log without tqdm.
                print(line, file=file or sys.stderr)

        auto = types.ModuleType("tqdm.auto")
        auto.tqdm = Silent
        root = types.ModuleType("tqdm")
        root.auto, root.tqdm = auto, Silent
        # Real specs: code that asks importlib about installed modules must not trip over the stand-in.
        root.__spec__ = importlib.machinery.ModuleSpec("tqdm", None, is_package=True)
        auto.__spec__ = importlib.machinery.ModuleSpec("tqdm.auto", None)
        sys.modules.setdefault("tqdm", root)
        sys.modules.setdefault("tqdm.auto", auto)


def numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a result document by its path, without the cost counters (``COST_KEYS``)."""
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not any(c in str(k).lower() for c in COST_KEYS):
                out |= numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out |= numbers(v, f"{prefix}[{i}]")
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool) and doc is not None and math.isfinite(doc):
        out[prefix] = float(doc)
    return out


def differences(ref: dict[str, Any], got: dict[str, Any], atol: float, rtol: float) -> list[str]:
    """Paths where two result documents disagree beyond the tolerance (or where one lacks a number)."""
    a, b = numbers(ref), numbers(got)
    bad = [f"{k}: only on one device" for k in sorted(a.keys() ^ b.keys())]
    for k in sorted(a.keys() & b.keys()):
        if abs(a[k] - b[k]) > max(atol, rtol * abs(a[k])):
            bad.append(f"{k}: {a[k]:.6g} vs {b[k]:.6g}")
    return bad


def close(ref: torch.Tensor, got: torch.Tensor, tol: float = LOGIT_TOL) -> tuple[bool, float]:
    """Whether two float tensors agree within ``tol`` x (1 + their scale); the largest difference."""
    diff = (ref.double() - got.double().cpu()).abs().max().item() if ref.numel() else 0.0
    return diff <= tol * (1 + ref.abs().max().item() if ref.numel() else 1.0), diff


def same_predictions(ref: torch.Tensor, got: torch.Tensor, tol: float = LOGIT_TOL) -> bool:
    """Equal argmax wherever the reference's top two logits are further apart than the tolerance."""
    top = ref.topk(min(2, ref.shape[1]), dim=1).values
    clear = (top[:, 0] - top[:, -1]) > tol * (1 + ref.abs().max())
    return bool((ref.argmax(1) == got.cpu().argmax(1))[clear].all())


class SelfCheck:
    """The steps of a self-check of ``plan`` on ``device`` against ``reference``."""

    def __init__(self, plan, device: str, reference: str, scratch: Path, n_images: int = N_IMAGES):
        from .engine import resolve_device

        self.plan, self.scratch, self.n = plan, scratch, n_images
        self.device, self.reference = resolve_device(device), resolve_device(reference)

    # --- what to check: one of each distinct thing -------------------------------------------------

    def _runs(self) -> list[tuple[str, str]]:
        from .cost import jobs_of

        return [(j.paper, j.run) for j in jobs_of(self.plan) if j.kind == "train"]

    def architectures(self) -> dict[str, dict[str, Any]]:
        """One run spec per distinct (model, dataset)."""
        out: dict[str, dict[str, Any]] = {}
        for key in self._runs():
            s = self.plan.runs[key]
            out.setdefault(json.dumps([s["model"], s["data"]["name"]], sort_keys=True), s)
        return out

    def objectives(self) -> dict[str, dict[str, Any]]:
        """One run spec per distinct training objective (with its model)."""
        out: dict[str, dict[str, Any]] = {}
        for key in self._runs():
            s = self.plan.runs[key]
            out.setdefault(json.dumps(s["train"]["objective"], sort_keys=True), s)
        return out

    def kinds(self) -> dict[str, Any]:
        """One job per evaluation kind (the first the plan declares)."""
        from .cost import jobs_of

        out: dict[str, Any] = {}
        for j in jobs_of(self.plan):
            if j.kind != "train":
                out.setdefault(j.kind, j)
        return out

    # --- inputs ------------------------------------------------------------------------------------

    def images(self, spec: dict[str, Any]) -> torch.Tensor:
        from .attacks import to_input
        from .cost import timing_data
        from .data import load_split

        d = timing_data(spec["data"])
        x, _ = load_split(d["name"], "test", source=d["source"], root=str(self.scratch), limit=self.n, seed=d.get("synthetic_seed", 0))
        return to_input(x, "cpu")

    def model(self, spec: dict[str, Any], device) -> torch.nn.Module:
        """The run's architecture with seeded weights: the same on every device."""
        from .engine import build_model

        torch.manual_seed(0)
        return build_model(spec).to(device).eval()

    # --- the steps ---------------------------------------------------------------------------------

    def check_model(self, spec: dict[str, Any]) -> str:
        x = self.images(spec)
        with torch.no_grad():
            ref = self.model(spec, self.reference)(x.to(self.reference)).cpu()
            got = self.model(spec, self.device)(x.to(self.device)).cpu()
        ok, diff = close(ref, got)
        if not ok or not same_predictions(ref, got):
            raise AssertionError(f"logits differ by {diff:.3g} (tolerance {LOGIT_TOL} x scale) or predictions differ")
        return f"logits within {diff:.2g}"

    def check_bounds(self, spec: dict[str, Any], eps: float) -> str:
        from . import bounds

        x = self.images(spec)
        worst = 0.0
        for method in ("ibp", "crown_ibp"):
            ref = bounds.output_box(self.model(spec, self.reference), x.to(self.reference), eps, method=method)
            got = bounds.output_box(self.model(spec, self.device), x.to(self.device), eps, method=method)
            for r, g in zip(ref, got):
                ok, diff = close(r.detach().cpu(), g.detach())
                worst = max(worst, diff)
                if not ok:
                    raise AssertionError(f"{method} bounds differ by {diff:.3g} at eps={eps}")
        return f"IBP and CROWN-IBP boxes within {worst:.2g} (eps={eps:g})"

    def check_training(self, spec: dict[str, Any]) -> str:
        from .cost import timing_data
        from .engine import safe_load, train

        bs = min(int(spec["train"]["batch_size"]), self.n)
        s = copy.deepcopy(spec)
        s["data"] = {**timing_data(s["data"]), "train_limit": 2 * bs}
        s["train"].update(epochs=1, batch_size=bs, select="none", checkpoint_every_steps=0)
        out = {}
        for dev in (self.reference, self.device):
            tag = f"{dev.type}-{len(out)}"
            doc = train(
                s,
                data_root=str(self.scratch),
                model_out=self.scratch / f"{tag}.pt",
                result_out=self.scratch / f"{tag}.json",
                checkpoint=self.scratch / f"{tag}.ckpt",
                device=str(dev),
                progress_bar=False,
            )
            # Jobs after training run as evaluation jobs do: without the engine's deterministic mode.
            torch.use_deterministic_algorithms(False)
            out[tag] = (safe_load(self.scratch / f"{tag}.pt")["state_dict"], doc["final"])
        (w_ref, m_ref), (w_got, m_got) = out.values()
        worst = 0.0
        for k, v in w_ref.items():
            if v.is_floating_point():
                rel = (v - w_got[k]).norm().item() / max(v.norm().item(), 1e-12)
                worst = max(worst, rel)
        bad = differences(m_ref, m_got, TRAIN_TOL, TRAIN_TOL)
        if worst > TRAIN_TOL or bad:
            raise AssertionError(f"after 2 steps: weights {worst:.3g} apart (relative L2, tolerance {TRAIN_TOL}); " + "; ".join(bad[:5]))
        return f"2 steps: weights within {worst:.2g} (relative L2), metrics within tolerance"

    def check_kind(self, job) -> str:
        from .cost import DEFAULT_SHRINK, SHRINK, Timing, TimingContext
        from .evaluations import JobContext, registry

        kind = registry()[job.kind]
        spec = SHRINK.get(job.kind, DEFAULT_SHRINK)[1](job.spec, self.n)
        model = Timing(str(self.reference), 0.0, self.scratch).model_file(job.run_spec) if kind.needs_model else None
        docs, test = [], None
        for dev in (self.reference, self.device):
            tag = f"{job.kind}-{dev.type}-{len(docs)}"
            ctx = (TimingContext if kind.needs_model else JobContext)(
                spec,
                model_path=model,
                data_root=str(self.scratch),
                device=str(dev),
                out=str(self.scratch / f"{tag}.json"),
                partial=str(self.scratch / f"{tag}.partial"),
                progress=False,
            )
            if kind.needs_model:
                # The same images and labels on both devices: the reference model's predictions.
                test = test or ctx.split("test")
                ctx.__dict__["test"] = test
            docs.append(kind.fn(ctx))
        bad = differences(docs[0], docs[1], EVAL_ATOL, EVAL_RTOL)
        if bad:
            raise AssertionError(f"{len(bad)} number(s) beyond tolerance: " + "; ".join(bad[:5]))
        return f"{len(numbers(docs[0]))} numbers within tolerance"


def run_step(name: str, fn: Callable[[], str], limit: float, log: Callable[[str], None]) -> Step:
    """One step under its time limit; a missing optional package skips it, any other error fails it."""
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            status, detail = "ok", fn()
    except ModuleNotFoundError as err:
        status, detail = "skipped", f"needs {err.name}, not installed"
    except Exception as err:  # noqa: BLE001  (every failure is reported, then the next step runs)
        status, detail = "FAIL", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    step = Step(name, status, detail, time.perf_counter() - t0)
    log(f"[selfcheck] {step.status:7s} {step.name} ({step.seconds:.1f} s): {step.detail}")
    return step


def selfcheck(
    plan,
    *,
    device: str = "auto",
    reference: str = "cpu",
    step_limit: float = 60.0,
    only: str | None = None,
    log: Callable[[str], None] = print,
) -> list[Step]:
    """Run every step; return them (a step's ``status`` is ok, FAIL or skipped).

    ``only``: a regular expression; only steps whose name it finds run (CI runs a cheap selection).
    """
    import re

    _missing_optional_packages()
    steps = []
    with tempfile.TemporaryDirectory(prefix="robrepro-selfcheck-") as tmp:
        sc = SelfCheck(plan, device, reference, Path(tmp))
        log(f"[selfcheck] {sc.device} against {sc.reference}; torch {torch.__version__}")
        todo: list[tuple[str, Callable[[], str]]] = []
        for spec in sc.architectures().values():
            todo.append((f"model {spec['model']['name']} on {spec['data']['name']} ({spec['paper']}/{spec['run']})", lambda s=spec: sc.check_model(s)))
        seen = set()
        for (p, r, k, _), _job in plan.jobs.items():
            if k in BOUND_KINDS and (p, r) in plan.runs:
                spec = plan.runs[(p, r)]
                ident = json.dumps([spec["model"], spec["data"]["name"]], sort_keys=True)
                if ident not in seen:
                    seen.add(ident)
                    todo.append((f"bounds {spec['model']['name']} ({p}/{r})", lambda s=spec: sc.check_bounds(s, BOUND_EPS)))
        for spec in sc.objectives().values():
            todo.append((f"train {spec['train']['objective']['name']} ({spec['paper']}/{spec['run']})", lambda s=spec: sc.check_training(s)))
        for kind, job in sc.kinds().items():
            todo.append((f"job {kind} ({job.key})", lambda j=job: sc.check_kind(j)))
        for name, fn in todo:
            if only is None or re.search(only, name):
                steps.append(run_step(name, fn, step_limit, log))
    return steps
