"""Benchmark (not a test): the training engine and the epsilon-grid sweep against plain references.

Prints, from one run on this machine:
  1. engine training-step time / a bare PyTorch loop on the same model, data and batches (goal <= 1.1)
  2. time of looping torchattacks PGD over every epsilon / the suite's one-pass grid sweep at the
     same settings (goal >= 3), with both accuracies per epsilon (the sweep must not be weaker).

    python benchmarks/bench_engine.py [--repeats 3] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import robrepro  # noqa: F401
from robrepro import data as D
from robrepro.attacks import make_attack, robust_accuracy
from robrepro.engine import build_model, seed_everything, train


def spec(steps: int, bs: int) -> dict:
    return {
        "paper": "bench",
        "experiment": "bench",
        "run": "bench",
        "tier": "smoke",
        "seed": 0,
        "data": {
            "name": "cifar10",
            "source": "synthetic",
            "mean": [0.49, 0.48, 0.45],
            "std": [0.2, 0.2, 0.2],
            "synthetic_seed": 0,
            "train_limit": steps * bs,
            "test_limit": 512,
        },
        "model": {"name": "cifar_resnet", "depth": 20, "width": 16},
        "train": {
            "epochs": 1,
            "batch_size": bs,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "lr_schedule": {"name": "constant"},
            "augment": {},
            "objective": {"name": "natural"},
            "checkpoint_every_steps": 0,
            "deterministic": True,
        },
    }


def engine_seconds(s: dict, tmp: Path) -> tuple[float, torch.nn.Module]:
    doc = train(s, data_root=str(tmp), model_out=tmp / "m.pt", result_out=tmp / "r.json", checkpoint=tmp / "c.pt", device="cpu", progress_bar=False)
    return doc["loop_seconds"], doc


def bare_seconds(s: dict) -> float:
    """The same training written as the shortest plain PyTorch loop."""
    seed_everything(0)
    d = s["data"]
    x, y = D.load_split("cifar10", "train", source="synthetic", root="", limit=d["train_limit"])
    model = build_model(s)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    bs = s["train"]["batch_size"]
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], bs):
        idx = perm[i : i + bs]
        xb, yb = x[idx].float().div_(255), y[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import torchattacks

    print(f"torch {torch.__version__}, {a.threads} threads, CIFAR ResNet-20, batch {a.batch}, {a.steps} steps, synthetic CIFAR-10")
    s = spec(a.steps, a.batch)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):  # interleaved, order alternating, so that load and warm-up hit both alike
            if r % 2:
                b = bare_seconds(s)
                e, doc = engine_seconds(s, Path(tmp))
            else:
                e, doc = engine_seconds(s, Path(tmp))
                b = bare_seconds(s)
            ratios.append(e / b)
            print(f"  repeat {r}: engine {1000 * e / a.steps:.1f} ms/step, bare loop {1000 * b / a.steps:.1f} ms/step, ratio {e / b:.3f}")
        print(f"[1] engine / bare training step: median ratio {statistics.median(ratios):.3f} (goal <= 1.1)")

        # A briefly trained model, so that points break at different radii.
        ss = spec(60, 64)
        ss["train"]["epochs"] = 3
        train(ss, data_root=tmp, model_out=Path(tmp) / "m.pt", result_out=Path(tmp) / "r.json", checkpoint=Path(tmp) / "c.pt", device="cpu", progress_bar=False)
        from robrepro.engine import load_model

        model, _ = load_model(Path(tmp) / "m.pt")
    x, y = D.load_split("cifar10", "test", source="synthetic", root="", limit=a.n_eval)
    # As the workflow evaluates (schema default): points stop moving once misclassified.
    pgd = {"name": "pgd", "steps": 10, "alpha_rel": 0.25, "random_start": True, "restarts": 1, "early_stop": True}
    grids = {
        "fine grid 1..16/255": [i / 255 for i in (1, 2, 3, 4, 6, 8, 12, 16)],
        "Table 1 paper-tier CIFAR grid 2..32/255": [i / 255 for i in (2, 4, 8, 12, 16, 20, 24, 28, 32)],
    }
    for name, grid in grids.items():
        sweep_vs_torchattacks(model, x, y, grid, pgd, a.repeats, name, torchattacks)


def sweep_vs_torchattacks(model, x, y, grid, pgd, repeats, name, torchattacks) -> None:
    xf = x.float() / 255
    tr, ts = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        ref = []
        for eps in grid:
            atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10, random_start=True)
            correct = 0
            for i in range(0, len(y), 256):
                xa = atk(xf[i : i + 256], y[i : i + 256])
                with torch.no_grad():
                    correct += (model(xa).argmax(1) == y[i : i + 256]).sum().item()
            ref.append(correct / len(y))
        tr.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        # The cumulative sweep (independent=False): the worst case up to each radius, re-attacking only survivors.
        ours = robust_accuracy(model, x, y, grid, make_attack(pgd), batch_size=256, seed=r, independent=False)
        ts.append(time.perf_counter() - t0)
        print(f"  [{name}] repeat {r}: torchattacks loop {tr[-1]:.2f} s, grid sweep {ts[-1]:.2f} s, speed-up {tr[-1] / ts[-1]:.2f}x")
    print("  eps*255 | torchattacks PGD acc | sweep PGD acc (worst case up to eps)")
    for eps, a_ref, e in zip(grid, ref, ours["per_eps"]):
        print(f"  {eps * 255:7.0f} | {a_ref:20.3f} | {e['robust_acc_cumulative']:.3f}")
    print(
        f"[2] {name}: eps-grid sweep speed-up vs torchattacks per eps: median {statistics.median(tr) / statistics.median(ts):.2f}x (goal >= 3), "
        f"clean acc {ours['clean_acc']:.3f}; sweep never weaker (within 2 examples of random-start noise): "
        f"{all(e['robust_acc_cumulative'] <= a + 2 / len(y) for a, e in zip(ref, ours['per_eps']))}"
    )


if __name__ == "__main__":
    main()
