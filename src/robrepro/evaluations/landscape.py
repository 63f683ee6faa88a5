"""Job kind ``landscape``: basin-hopping on a small network's training loss, then every minimum evaluated.

Trains nothing through the engine. The search (:func:`robrepro.landscape.run_search`) keeps its
state in the job's partial file, written atomically after every chunk of steps, so a killed job
resumes where it stopped and ends with the same database. Then, for every distinct minimum: train
and test error, the energy, the mean log-sensitivity of the test set (output box by IBP, logits and
probabilities) and FGSM / PGD accuracy at the configured radii.

MNIST is reduced so that the search can cover it: ``pool`` x ``pool`` average pooling of the
images (28 -> 7 with pool 4, values stay in [0, 1]) and ``train_limit`` / ``test_limit`` samples.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import landscape as L
from ..attacks import make_attack, robust_accuracy, to_input
from ..progress import Ticker, progress
from . import JobContext, register_kind
from .sensitivity import log_volume, summarize


def features(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Model inputs as flat float features: images (uint8) -> [0, 1], average-pooled by ``pool``."""
    x = to_input(x, "cpu")
    if x.dim() == 4 and pool > 1:
        x = F.avg_pool2d(x, pool)
    return x.flatten(1)


def evaluate_minimum(energy: L.MLPEnergy, w: np.ndarray, data: dict, p: dict, domain, seed: int) -> dict[str, Any]:
    """Errors, sensitivity and attack accuracies of the network at parameters ``w``."""
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    model = energy.to_torch(w)  # float32, as the attacks feed it
    row: dict[str, Any] = {"train_err": energy.error(w, xtr.numpy(), ytr.numpy()), "test_err": energy.error(w, xte.numpy(), yte.numpy())}
    # Sensitivity in float64: saturated probabilities would round a width to 0 (log-volume -inf) in float32.
    model64 = energy.to_torch(w, torch.float64)
    with torch.no_grad():
        for space in p["spaces"]:
            lv = log_volume(model64, xte.double(), p["sens_eps"], space=space, domain=domain)
            row[f"mean_log_volume_{space}"] = summarize(lv)["mean_log_volume"]
            row[f"log_mean_volume_{space}"] = summarize(lv)["log_mean_volume"]
    for name, spec in p["attacks"].items():
        res = robust_accuracy(model, xte, yte, p["attack_eps"], make_attack(spec), batch_size=len(yte), seed=seed, independent=True, domain=domain)
        for e, r in zip(p["attack_eps"], res["per_eps"]):
            row[f"{name}_acc@{e:g}"] = r["robust_acc"]
    return row


@register_kind(
    "landscape",
    needs_model=False,
    resources="train",
)
def landscape_job(ctx: JobContext) -> dict[str, Any]:
    """``params``: hidden, weight_decay, pool, search (SearchConfig fields), sens_eps, spaces, attacks, attack_eps."""
    p = ctx.params
    t0 = time.perf_counter()
    data = {s: ctx.split(s) for s in ("train", "test")}
    data = {s: (features(x, p["pool"]).double(), y) for s, (x, y) in data.items()}
    (xtr, ytr) = data["train"]
    energy = L.MLPEnergy(xtr.numpy(), ytr.numpy(), p["hidden"], ctx.dataset.num_classes, weight_decay=p["weight_decay"])
    cfg = L.SearchConfig(**p["search"])
    state_path = ctx.partial or (ctx.out + ".search.json")
    state = L.run_search(energy, cfg, state_path, log=lambda m: progress("landscape", m))
    t_search = time.perf_counter() - t0
    db = L.database_of(state)
    data32 = {s: (x.float(), y) for s, (x, y) in data.items()}
    rows = []
    ticker = Ticker("landscape", len(db.minima), "minima evaluated")
    for i, m in enumerate(db.minima):
        w = np.asarray(m.params)
        rows.append(
            {
                "index": i,
                "energy": m.energy,
                "grad_norm": m.grad_norm,
                "min_eig": m.min_eig,
                "step": m.step,
                **evaluate_minimum(energy, w, data32, p, ctx.dataset.domain, ctx.spec["seed"]),
            }
        )
        ticker.update()
    progress("landscape", f"{len(rows)} minima; search {t_search:.1f} s, evaluation {time.perf_counter() - t0 - t_search:.1f} s")
    return {
        "n_params": energy.n_params,
        "n_train": len(ytr),
        "n_test": len(data["test"][1]),
        "inputs": energy.D,
        "search": {"config": state["config"], "steps": state["step"], "counts": state["counts"], "final_stepsize": state["stepsize"]},
        "minima": rows,
        "seconds": {"search": round(t_search, 2), "evaluation": round(time.perf_counter() - t0 - t_search, 2)},
    }
