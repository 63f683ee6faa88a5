"""Writers and selection rules, by behaviour: every function that writes a result file is atomic (a
crash before the rename leaves the old file, and no debris); ties in epoch selection go to the later
epoch; train.grad_clip bounds each step; the ODE-Net's tolerances reach the solver; the growth ratio
is averaged over the images that moved only; the minima database's identity needs both conditions."""

from __future__ import annotations

import os

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from test_resume import OBJECTIVES, _spec, _train

from robrepro import data as D
from robrepro import engine, models
from robrepro import landscape as L
from robrepro import tables_figures as reporting
from robrepro.evaluations.growth import group_growth_ratios, growth_ratios
from robrepro.models.odenet import forward_nfe
from robrepro.results import write_result

matplotlib.use("Agg")


# --- atomic writers ----------------------------------------------------------------------------


def _figure(v):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, v])
    return fig


def _prepared_record(tmp, v):
    f = tmp / "f.bin"
    f.write_bytes(bytes([v]))
    D._record_prepared("mnist", tmp, {"f.bin": (f, str(v))})


# name -> (the files it writes, relative to a folder; a function writing version v of them there)
WRITERS = {
    "write_result": (["r.json"], lambda t, v: write_result(t / "r.json", "x", {"v": v}, {"p": v})),
    "write_table": (
        ["t.csv", "t.md", "t.tex"],
        lambda t, v: reporting.write_table(pd.DataFrame({"a": [v]}), {e: t / f"t.{e}" for e in ("csv", "md", "tex")}, "T", []),
    ),
    "save_figure": (["f.png", "f.pdf"], lambda t, v: reporting.save_figure(_figure(v), {e: t / f"f.{e}" for e in ("png", "pdf")})),
    "write_figure_data": (["d.csv"], lambda t, v: reporting.write_figure_data(pd.DataFrame({"a": [v]}), {"csv": t / "d.csv"})),
    "save_checkpoint": (["c.pt"], lambda t, v: engine.save_checkpoint(t / "c.pt", step=v)),
    "prepared record": (["mnist.prepared.json"], _prepared_record),
    "landscape state": (["s.json"], lambda t, v: L._save_atomic(t / "s.json", {"v": v})),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_result_writer_is_atomic(tmp_path, monkeypatch, name):
    files, write = WRITERS[name]
    write(tmp_path, 1)
    before = {f: (tmp_path / f).read_bytes() for f in files}
    listing = sorted(p.name for p in tmp_path.iterdir())

    def crash(*a, **k):
        raise OSError("crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="crash before the rename"):
        write(tmp_path, 2)
    monkeypatch.undo()
    # The first file the crash hit is exactly as before, and nothing half-written is left beside it.
    assert (tmp_path / files[0]).read_bytes() == before[files[0]]
    assert all((tmp_path / f).read_bytes() == before[f] for f in files if (tmp_path / f).exists())
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


# --- epoch selection and train.grad_clip --------------------------------------------------------


def test_ties_in_epoch_selection_go_to_the_later_epoch(tmp_path, monkeypatch):
    spec = _spec(OBJECTIVES["natural"])
    spec["train"].update(epochs=4, select="test")
    spec["data"]["test_limit"] = 16
    scripted = iter([0.5, 0.7, 0.7, 0.6])
    monkeypatch.setattr(engine, "clean_accuracy", lambda *a, **k: next(scripted))
    doc = _train(tmp_path, spec)
    assert doc["selection"]["epoch"] == 3 and doc["selection"]["acc"] == 0.7
    assert [h["test_acc"] for h in doc["history"]] == [0.5, 0.7, 0.7, 0.6]
    # The kept weights are epoch 3's: those of a 3-epoch run (the schedule does not depend on the length).
    short = _spec(OBJECTIVES["natural"])
    short["train"]["epochs"] = 3
    _train(tmp_path / "short", short)
    kept = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    third = torch.load(tmp_path / "short" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(kept[k], third[k]) for k in kept)


def test_grad_clip_bounds_every_step(tmp_path):
    """Plain SGD (no momentum, no weight decay) with gradients clipped to norm c moves the weights by
    at most lr * c per step; unclipped, the same run moves them much further."""
    moved = {}
    for clip in (None, 1e-3):
        spec = _spec(OBJECTIVES["natural"])
        spec["train"].update(epochs=1, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}, grad_clip=clip)
        spec["train"].pop("lr_schedule")
        engine.seed_everything(spec["seed"])
        start = engine.build_model(spec).state_dict()
        _train(tmp_path / str(clip), spec)
        end = torch.load(tmp_path / str(clip) / "model.pt", weights_only=True)["state_dict"]
        moved[clip] = torch.sqrt(sum(((end[k] - start[k]).double() ** 2).sum() for k in start)).item()
    steps = 128 // 16
    assert moved[1e-3] <= steps * 0.1 * 1e-3 * (1 + 1e-5)
    assert moved[None] > 10 * steps * 0.1 * 1e-3


# --- the ODE-Net's solver tolerances -------------------------------------------------------------


def test_odenet_tolerances_reach_the_solver(monkeypatch):
    import torchdiffeq

    seen = []
    real = torchdiffeq.odeint

    def spy(func, y0, t, **kw):
        seen.append({k: kw[k] for k in ("rtol", "atol", "method")})
        return real(func, y0, t, **kw)

    monkeypatch.setattr(torchdiffeq, "odeint", spy)
    nfe = {}
    x = torch.rand(2, 1, 28, 28)
    for tol in (1e-1, 1e-6):
        torch.manual_seed(0)
        m = models.build("odenet", in_channels=1, image_size=28, num_classes=10, mean=[0.5], std=[0.5], channels=4, rtol=tol, atol=tol / 10).eval()
        with torch.no_grad():
            m(x)
        assert seen[-1] == {"rtol": tol, "atol": tol / 10, "method": "dopri5"}
        nfe[tol] = forward_nfe(m)
    assert nfe[1e-6] > nfe[1e-1]  # the tolerance changes the work the solver does


# --- the growth ratio's average over moved images -------------------------------------------------


def _ssp():
    torch.manual_seed(0)
    return models.build(
        "ssp_cifar", in_channels=3, image_size=16, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, block="res", n=1, widths=(4, 8, 16), init="default"
    ).eval()


def test_growth_ratio_is_averaged_over_the_moved_images_only():
    """A fake attack moves only the images whose first pixel is below 0.5; the reported mean per
    group is the mean of their per-image ratios (batches of 3, so the sums cross batches), and
    n_used counts them."""
    m = _ssp()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 16, 16, generator=g)
    moves = x[:, 0, 0, 0] < 0.5
    assert 0 < moves.sum() < 7
    delta = 0.03 * torch.randn(7, 3, 16, 16, generator=g)

    def fixed(model, xb, yb, eps, gen):  # the same displacement, whatever the batch
        idx = [int((x == row).flatten(1).all(1).nonzero()) for row in xb]
        mv = moves[idx].view(-1, 1, 1, 1)
        return torch.where(mv, (xb + delta[idx]).clamp(0, 1), xb)

    y = torch.zeros(7, dtype=torch.long)
    out = growth_ratios(m, x, y, fixed, 0.03, batch_size=3, norms=(2,))
    xa = fixed(m, x, y, 0.03, None)
    per_image = group_growth_ratios(m, x, xa, norms=(2,))[2]
    for gi, row in enumerate(out["per_group"]):
        want = per_image[gi][moves]
        assert row["n_used"] == int(moves.sum())
        assert row["L2"] == pytest.approx(want.double().mean().item(), rel=1e-6)


# --- the minima database ------------------------------------------------------------------------


def test_minima_database_identity_needs_both_energy_and_distance():
    rng = np.random.default_rng(0)
    energy = L.MLPEnergy(rng.normal(size=(6, 2)), np.array([0, 1] * 3), hidden=2, num_classes=2)
    w0 = rng.normal(size=energy.n_params)
    db = L.MinimaDatabase(energy_tol=1e-6, dist_tol=0.1)
    db.minima.append(L.Minimum(energy=1.0, params=w0.tolist(), grad_norm=0.0, min_eig=1.0, step=0))
    near = w0 + 0.01 / np.sqrt(energy.n_params)  # distance 0.01
    far = w0 + 1.0
    assert energy.distance(w0, near) < 0.1 < energy.distance(w0, far)
    assert db.find(energy, 1.0 + 1e-7, near) == 0  # both conditions: the same minimum
    assert db.find(energy, 1.0 + 1e-7, far) is None  # same energy, elsewhere: distinct
    assert db.find(energy, 1.0 + 1e-3, near) is None  # nearby, another energy: distinct
    # A unit permutation of the stored minimum is the same minimum (the distance is symmetry-aware).
    H, D, K = energy.H, energy.D, energy.K
    W1, b1, W2, b2 = (np.array(a) for a in energy.unpack(w0))
    perm = np.concatenate([W1[::-1].ravel(), b1[::-1], W2[:, ::-1].ravel(), b2])
    assert perm.shape == (H * D + H + K * H + K,)
    assert db.find(energy, 1.0, perm) == 0
