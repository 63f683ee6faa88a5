"""Throughput of the bound engine: IBP, CROWN-IBP and GM(N) on DM-small and DM-large (CIFAR shapes).

Usage::

    python benchmarks/bench_bounds.py [N] [BATCH] [--repeats R] [--mode train|eval|both] [--models dm_small,dm_large]

For each model it times, on one batch of BATCH images (3x32x32, eps = 8/255, beta = 1, the costly
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
    ap.add_argument("batch", nargs="?", type=int, default=8, help="images per batch (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per mode (median is reported)")
    ap.add_argument("--mode", choices=("train", "eval", "both"), default="both")
    ap.add_argument("--models", default="dm_small,dm_large")
    ap.add_argument("--eps", type=float, default=8 / 255)
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


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
