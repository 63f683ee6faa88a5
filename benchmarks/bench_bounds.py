"""Throughput of the bound engine: GM(N) on CIFAR shapes, and a side-by-side comparison with auto_LiRPA on MNIST.

Usage::

    python benchmarks/bench_bounds.py [N] [BATCH] [--repeats R] [--mode train|eval|both] [--models dm_small,dm_large]
    python benchmarks/bench_bounds.py --compare [--batch 256] [--repeats R] [--models dm_small,dm_medium,dm_large]

``--compare`` (MNIST 1x28x28, eps = 0.1, batch 256, no autograd) times, per model, the plain forward
pass, this engine's IBP and CROWN-IBP margin bounds and, when auto_LiRPA 0.3 can be imported,
``compute_bounds(method="IBP" / "CROWN-IBP", C=margins, bound_upper=False)`` on the same model and
batch, interleaved, and prints the ratios (ours / auto_LiRPA; goal IBP <= 1.0 and CROWN-IBP <= 0.7)
and IBP / forward (goal <= 2.5; the floor is two forward passes, centre and radius), plus the
largest bound difference relative to the bound scale (float rounding, about 1e-6 in float32).
auto_LiRPA is a benchmark-only reference, never a dependency of the package: install it
separately (``pip install --no-deps --target DIR auto_LiRPA==0.3 appdirs==1.4.4`` and put DIR on
PYTHONPATH); 0.3 imports on numpy 2 / torch 2.13 only with the five patches applied by
:func:`import_auto_lirpa`. Without it, ``--compare`` still times this engine and says so.

Without ``--compare``, for each model it times, on one batch of BATCH images (3x32x32, eps = 8/255, beta = 1, the costly
start of the CROWN-IBP ramp):

* ``ibp``        IBP margin bounds,
* ``crown_ibp``  CROWN-IBP margin bounds,
* ``gmN``        GM with N radii, exact definition (every radius its own IBP + CROWN pass; the N
                 boxes are stacked along the batch and bounded in one call),
* ``gmN-shared`` GM with one CROWN relaxation (largest radius) reused for all N radii,

in ``train`` mode (bounds + robust cross-entropy + backward, i.e. the training cost) and/or
``eval`` mode (bounds only, no autograd). Modes are interleaved within each repeat and the median
is reported. The summary gives cost(GM(N)) / cost(CROWN-IBP) per image and that ratio divided by
N (the goal is <= 0.6: batching N radii should cost less than N separate CROWN-IBP calls).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from robrepro import bounds
from robrepro.models import build

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=5, help="GM robustness size N (default 5)")
    ap.add_argument("batch", nargs="?", type=int, default=None, help="images per batch (default 8; 256 with --compare)")
    ap.add_argument("--compare", action="store_true", help="MNIST side-by-side with auto_LiRPA (when importable)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per mode (median is reported; default 3, 9 with --compare)")
    ap.add_argument("--mode", choices=("train", "eval", "both"), default="both")
    ap.add_argument("--models", default=None, help="default dm_small,dm_large; dm_small,dm_medium,dm_large with --compare")
    ap.add_argument("--eps", type=float, default=None, help="default 8/255; 0.1 with --compare")
    ap.add_argument("--crown-models", default="dm_small,dm_medium", help="--compare: models that also get CROWN-IBP timed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap.parse_args(argv)


def robust_loss(lb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean robust CE over radii and batch; lb has shape (N, B, K-1)."""
    N, B, M = lb.shape
    yy = y.repeat(N)
    logits = lb.new_zeros(N * B, M + 1).scatter(1, bounds.other_classes(yy, M + 1), -lb.reshape(N * B, M))
    return F.cross_entropy(logits, yy)


def make_step(model, x, y, radii, method, relaxation, train: bool):
    """A closure running one bound computation (and, in train mode, the backward pass)."""

    def step():
        if train:
            model.zero_grad(set_to_none=True)
            lb = bounds.margin_bounds_radii(model, x, y, radii, method=method, relaxation=relaxation)
            robust_loss(lb, y).backward()
        else:
            with torch.no_grad():
                bounds.margin_bounds_radii(model, x, y, radii, method=method, relaxation=relaxation)

    return step


def bench_model(name: str, args) -> dict[tuple[str, str], float]:
    """Median seconds per batch for every (mode, method) on model ``name``."""
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build(name, in_channels=3, image_size=32, num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD).to(dev)
    x = torch.rand(args.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    n, eps = args.n, args.eps
    gm_radii = [i * eps / n for i in range(1, n + 1)]
    methods = {
        "ibp": ([eps], "ibp", "per_radius"),
        "crown_ibp": ([eps], "crown_ibp", "per_radius"),
        f"gm{n}": (gm_radii, "crown_ibp", "per_radius"),
        f"gm{n}-shared": (gm_radii, "crown_ibp", "shared"),
    }
    modes = ["train", "eval"] if args.mode == "both" else [args.mode]
    steps = {(mode, m): make_step(model, x, y, *spec, train=(mode == "train")) for mode in modes for m, spec in methods.items()}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for fn in steps.values():  # warm-up: allocator, oneDNN kernels
        fn()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every method alike
        for key, fn in steps.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------
# Side by side with auto_LiRPA (MNIST)
# ----------------------------------------------------------------------------------------------


def import_auto_lirpa():
    """auto_LiRPA 0.3 with the five import-time patches it needs on numpy 2 / torch 2.13, or None.

    The patches only touch names that auto_LiRPA 0.3 imports from numpy/torch and that moved or
    disappeared; they are applied in this process only, when the comparison runs.
    """
    import importlib.util
    import sys

    if importlib.util.find_spec("auto_LiRPA") is None:
        return None
    import numpy

    sys.modules.setdefault("numpy.lib.arraysetops", numpy)  # 1: removed in numpy 2
    import torch.onnx.symbolic_helper as sym_helper
    import torch.onnx.utils as onnx_utils
    from torch.onnx._internal.torchscript_exporter import _globals
    from torch.onnx._internal.torchscript_exporter import utils as ts_utils

    # 2 (appdirs) is a plain install; 3: private ONNX helpers moved in torch 2.13.
    sym_helper._set_opset_version = lambda v: setattr(_globals.GLOBALS, "export_onnx_opset_version", v)
    onnx_utils._optimize_graph = ts_utils._optimize_graph
    torch._C.Node.__getitem__ = lambda self, k: getattr(self, self.kindOf(k))(k)  # 4: old ONNX monkeypatch
    import auto_LiRPA
    from auto_LiRPA import bound_general

    named = bound_general.BoundedModule._named_members  # 5: newer nn.Module passes remove_duplicate
    bound_general.BoundedModule._named_members = lambda self, fn, prefix="", recurse=True, remove_duplicate=True: named(
        self, fn, prefix=prefix, recurse=recurse
    )
    return auto_LiRPA


def compare_model(name: str, args, lirpa) -> dict:
    """One model of :func:`compare`: prints its timings and returns its ratios."""
    import warnings

    B, eps = args.batch, args.eps
    torch.manual_seed(0)
    model = build(name, in_channels=1, image_size=28, num_classes=10, mean=(0.1307,), std=(0.3081,)).eval()
    x, y = torch.rand(B, 1, 28, 28), torch.randint(0, 10, (B,))
    lo, hi = bounds.input_box(x, eps)
    C = bounds.margin_spec(y, 10)
    crown = name in args.crown_models.split(",")
    fns = {"forward": lambda: model(x), "ibp": lambda: bounds.ibp(model, lo, hi, C)[0]}
    if crown:
        fns["crown_ibp"] = lambda: bounds.crown_ibp(model, lo, hi, C)
    if lirpa is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bm = lirpa.BoundedModule(model, torch.zeros(1, 1, 28, 28))
        bx = lirpa.BoundedTensor(x, lirpa.PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=lo, x_U=hi))
        fns["lirpa_ibp"] = lambda: bm.compute_bounds(x=(bx,), C=C, method="IBP", bound_upper=False)[0]
        if crown:
            fns["lirpa_crown_ibp"] = lambda: bm.compute_bounds(x=(bx,), C=C, method="CROWN-IBP", bound_upper=False)[0]
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        out = {k: fn() for k, fn in fns.items()}  # warm-up, and the bounds to compare
        for _ in range(args.repeats):
            for key, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name}  ({sum(p.numel() for p in model.parameters())} parameters)")
    for key, sec in med.items():
        print(f"  {key:16s} {sec * 1e3:9.1f} ms")
    row = {"model": name, "ibp/forward": med["ibp"] / med["forward"]}
    for m in (("ibp", "crown_ibp") if crown else ("ibp",)) if lirpa is not None else ():
        row[f"{m} ratio"] = med[m] / med[f"lirpa_{m}"]
        scale = out[f"lirpa_{m}"].abs().max().item()
        row[f"{m} rel diff"] = (out[m] - out[f"lirpa_{m}"]).abs().max().item() / max(scale, 1e-30)
    return row


def compare(args) -> None:
    """MNIST side by side: forward, ours and auto_LiRPA (IBP, CROWN-IBP), interleaved medians."""

    lirpa = import_auto_lirpa()
    B, eps = args.batch, args.eps
    print(
        f"bound engine vs auto_LiRPA, MNIST 1x28x28, batch {B}, eps = {eps}, no autograd, {args.repeats} interleaved repeats (median), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if lirpa is None:
        print("auto_LiRPA is not installed: timing this engine only (install it separately, see the module docstring)")
    rows = [compare_model(name, args, lirpa) for name in args.models.split(",")]
    print("\nsummary (goals: IBP/forward <= 2.5, IBP ours/auto_LiRPA <= 1.0, CROWN-IBP ours/auto_LiRPA <= 0.7)")
    for row in rows:
        parts = [f"IBP/forward {row['ibp/forward']:.2f}"]
        for m, goal in (("ibp", 1.0), ("crown_ibp", 0.7)):
            if f"{m} ratio" in row:
                r = row[f"{m} ratio"]
                parts.append(f"{m} ours/auto_LiRPA {r:.2f} ({'met' if r <= goal else 'NOT met'}; max rel bound diff {row[f'{m} rel diff']:.1e})")
        print(f"  {row['model']:10s} " + "; ".join(parts))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        args.batch = args.batch or 256
        args.repeats = args.repeats or 9
        args.models = args.models or "dm_small,dm_medium,dm_large"
        args.eps = 0.1 if args.eps is None else args.eps
        compare(args)
        return
    args.batch = args.batch or 8
    args.repeats = args.repeats or 3
    args.models = args.models or "dm_small,dm_large"
    args.eps = 8 / 255 if args.eps is None else args.eps
    n, B = args.n, args.batch
    print(
        f"bound throughput, CIFAR 3x32x32, batch {B}, N = {n}, eps = {args.eps:.5f}, beta = 1, "
        f"{args.repeats} interleaved repeats (median), torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads"
    )
    summary = []
    for name in args.models.split(","):
        t_start = time.perf_counter()
        med = bench_model(name, args)
        print(f"\n{name}  (bench took {time.perf_counter() - t_start:.1f} s)")
        print(f"  {'mode':6s} {'method':14s} {'s/batch':>9s} {'images/s':>10s} {'x CROWN-IBP':>12s}")
        for (mode, method), sec in med.items():
            rel = sec / med[(mode, "crown_ibp")]
            print(f"  {mode:6s} {method:14s} {sec:9.4f} {B / sec:10.1f} {rel:12.2f}")
        for mode in sorted({m for m, _ in med}):
            for variant in (f"gm{n}", f"gm{n}-shared"):
                ratio = med[(mode, variant)] / med[(mode, "crown_ibp")]
                summary.append((name, mode, variant, ratio, ratio / n))
    print("\nsummary: cost(GM(N)) / cost(CROWN-IBP) per image, goal ratio/N <= 0.6")
    print(f"  {'model':9s} {'mode':6s} {'variant':12s} {'ratio':>7s} {'ratio/N':>8s}  goal")
    for name, mode, variant, ratio, per_n in summary:
        print(f"  {name:9s} {mode:6s} {variant:12s} {ratio:7.2f} {per_n:8.2f}  {'met' if per_n <= 0.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
