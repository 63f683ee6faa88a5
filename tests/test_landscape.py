"""Tests of the energy landscape: analytic gradient, symmetry-invariant distance, basin-hopping on a
function with known minima, and a search killed mid-way that resumes to the same database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from robrepro import landscape as L


def _iris_like(seed=0, n=60):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    x = rng.normal(size=(n, 4)) + y[:, None] * np.array([1.0, -0.5, 0.8, 0.0])
    return x, y


def test_energy_gradient_is_the_analytic_one():
    x, y = _iris_like()
    E = L.MLPEnergy(x, y, 4, 3, weight_decay=0.01)
    w = np.random.default_rng(1).normal(size=E.n_params)
    e, g = E.energy_and_grad(w)
    h = 1e-6
    fd = np.array([(E.energy(w + h * v) - E.energy(w - h * v)) / (2 * h) for v in np.eye(E.n_params)])
    np.testing.assert_allclose(g, fd, atol=1e-7)
    # The torch copy computes the same logits, and the same loss up to the weight decay.
    net = E.to_torch(w, torch.float64)
    logits = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(logits, E.logits(w), atol=1e-12)
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert e == pytest.approx(ce + 0.01 * w @ w)


def test_distance_ignores_hidden_unit_permutations_and_sign_flips():
    x, y = _iris_like()
    E = L.MLPEnergy(x, y, 4, 3)
    w = np.random.default_rng(2).normal(size=E.n_params)
    W1, b1, W2, b2 = (a.copy() for a in E.unpack(w))
    perm, sign = np.array([2, 0, 3, 1]), np.array([1.0, -1.0, -1.0, 1.0])
    w2 = np.concatenate([(W1[perm] * sign[:, None]).ravel(), b1[perm] * sign, (W2[:, perm] * sign).ravel(), b2])
    assert E.energy(w2) == pytest.approx(E.energy(w), abs=1e-12)  # a true symmetry of the network
    assert np.linalg.norm(w - w2) > 1.0
    assert E.distance(w, w2) == pytest.approx(0.0, abs=1e-12)
    w3 = w2.copy()
    w3[-1] += 0.3  # output bias: not a symmetry
    assert E.distance(w, w3) == pytest.approx(0.3)


class TiltedWells:
    """(x^2 - 1)^2 + (y^2 - 1)^2 + 0.1 x + 0.2 y: four minima near (+-1, +-1) with four distinct energies,
    and saddles between them."""

    n_params = 2

    def energy_and_grad(self, w):
        x, y = w
        e = (x * x - 1) ** 2 + (y * y - 1) ** 2 + 0.1 * x + 0.2 * y
        return float(e), np.array([4 * x * (x * x - 1) + 0.1, 4 * y * (y * y - 1) + 0.2])

    def hessian(self, w):
        x, y = w
        return np.diag([12 * x * x - 4, 12 * y * y - 4])

    def distance(self, a, b):
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_basin_hopping_finds_the_known_minima(tmp_path):
    from scipy.optimize import brentq

    f = TiltedWells()
    # Known minima: roots of 4 t (t^2 - 1) + c near -1 and +1, per coordinate.
    roots = {c: [brentq(lambda t, c=c: 4 * t * (t * t - 1) + c, a, b) for a, b in ((-1.5, -0.6), (0.6, 1.5))] for c in (0.1, 0.2)}
    known = sorted(f.energy_and_grad(np.array([rx, ry]))[0] for rx in roots[0.1] for ry in roots[0.2])
    cfg = L.SearchConfig(n_steps=60, chunk=20, stepsize=1.0, seed=3, init_scale=0.5, dist_tol=1e-4, energy_tol=1e-9)
    state = L.run_search(f, cfg, tmp_path / "s.json")
    db = L.database_of(state)
    assert len(db.minima) == 4, state["counts"]
    np.testing.assert_allclose(sorted(db.energies()), known, atol=1e-10)
    assert all(m.min_eig > 0 and m.grad_norm < 1e-5 for m in db.minima)
    assert state["counts"]["duplicate"] > 0  # the same minima are found again and not stored twice


def test_saddle_is_rejected():
    f = TiltedWells()
    db = L.MinimaDatabase()
    counts = {"new": 0, "duplicate": 0, "not_converged": 0, "saddle": 0, "accepted": 0}
    from scipy.optimize import brentq

    sx = brentq(lambda t: 4 * t * (t * t - 1) + 0.1, -0.5, 0.5)  # the maximum of the x-well: a saddle
    sy = brentq(lambda t: 4 * t * (t * t - 1) + 0.2, 0.6, 1.5)
    L._consider(f, db, L.SearchConfig(), np.array([sx, sy]), 0.0, 0, counts)
    L._consider(f, db, L.SearchConfig(), np.array([0.3, sy]), 0.0, 0, counts)  # not stationary
    assert counts["saddle"] == 1 and counts["not_converged"] == 1 and not db.minima


SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from robrepro import landscape as L
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 4)) + y[:, None] * np.array([1.0, -0.5, 0.8, 0.0])
    E = L.MLPEnergy(x, y, 2, 3, weight_decay=1e-2)
    cfg = L.SearchConfig(n_steps=int(sys.argv[2]), chunk=2, seed=1, lbfgs_gtol=1e-8)
    L.run_search(E, cfg, sys.argv[1])
    """
)


def _run(path, steps):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(path), str(steps)], env=env)


def test_killed_search_resumes_to_the_same_database(tmp_path):
    # Enough chunks that the kill lands mid-search even when this process polls late (a busy CI
    # worker once saw all 4 chunks of an 8-step search written between two polls).
    steps = 40
    full = tmp_path / "full.json"
    assert _run(full, steps).wait(timeout=300) == 0
    killed = tmp_path / "killed.json"
    proc = _run(killed, steps)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once the first chunk is saved (mid-search)
        if killed.exists() and json.loads(killed.read_text())["chunk"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mid = json.loads(killed.read_text())
    assert mid["step"] < steps, "the search finished before it could be killed"
    assert _run(killed, steps).wait(timeout=300) == 0
    a, b = json.loads(full.read_text()), json.loads(killed.read_text())
    assert a["step"] == b["step"] == steps
    assert a["database"] == b["database"]
    assert a["x"] == b["x"] and a["counts"] == b["counts"]
    assert len(a["database"]["minima"]) >= 1


def test_rank_correlations():
    a = np.arange(20.0)
    r = L.rank_correlations(a, a**3, n_boot=50)
    assert r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0)
    r = L.rank_correlations(a, -a, n_boot=50)
    assert r["spearman"] == pytest.approx(-1.0) and r["spearman_hi"] == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    r = L.rank_correlations(rng.normal(size=60), rng.normal(size=60), n_boot=100)
    assert r["spearman_lo"] < 0 < r["spearman_hi"]


# A minimum of the Iris 4-5-3 landscape at weight decay 1e-5 (stratified split, seed 0), found by the
# basin-hopping search; energy 0.004181052139.
IRIS_SOFT_MINIMUM = [
    3.415629877014387, 3.5296133014369415, 0.27106018191693965, 0.490995745454523, -3.4479727256888117,
    -3.462882970884168, -0.4851048152207101, -0.7667249185007122, 1.3819970786761446, 1.6657101835173893,
    4.401378554033333, -3.3358754884072805, -0.27700923223805723, 0.7737712260454472, -1.1917122206164497,
    -1.3291707560437194, -1.0222856748882823, -1.5943380794200694, 6.0657491532861725, 1.379521158429361,
    0.8093345610887721, -0.456569821829994, 0.2781040619450567, -1.115087460462246, -4.527526432274522,
    -0.0896181841774546, 0.32436489089474413, -0.2792173392806846, 4.790272630006875, -1.8493006319106982,
    -2.5873440117249107, 2.4428826542071285, 4.856439218462708, -4.4361446552760375, -5.093709076737609,
    2.6780375405158816, -2.766625608659259, -4.579327158604141, -0.3551608586897311, 6.942831586759121,
    1.08517788294422, -1.2358563503672682, 0.1507116044762549,
]  # fmt: skip


def test_one_minimum_reached_twice_along_a_soft_direction_is_one_entry():
    """The local minimiser stops at a small but non-zero gradient, so along a soft direction of the
    Hessian two quenches into the same basin end a little apart. Measured on Iris: such pairs, equal in
    energy to 1e-10 and in predictions to 1e-5, lay 0.010-0.014 apart and were counted twice under a
    distance tolerance of 1e-2."""
    from scipy.optimize import minimize

    from robrepro.data import _load_iris

    x, y = _load_iris("train", 0)
    E = L.MLPEnergy(x.double().numpy(), y.numpy(), 5, 3, weight_decay=1e-5)
    cfg = L.SearchConfig()
    w0 = np.array(IRIS_SOFT_MINIMUM)
    e0 = E.energy(w0)
    db = L.MinimaDatabase(cfg.energy_tol, cfg.dist_tol)
    counts = {"new": 0, "duplicate": 0, "not_converged": 0, "saddle": 0, "accepted": 0}
    L._consider(E, db, cfg, w0, e0, 0, counts)
    assert counts["new"] == 1, counts
    # Quenches from random displacements around it; keep those that fall back into its basin.
    rng = np.random.default_rng(1)
    starts = [w0 + rng.uniform(-0.5, 0.5, E.n_params) for _ in range(20)]
    again = [r for r in (minimize(E.energy_and_grad, w, **L._local_min(E, cfg)) for w in starts) if abs(r.fun - e0) < 1e-8]
    apart = [E.distance(w0, r.x) for r in again]
    assert len(again) >= 10 and max(apart) > 0.01, apart  # the tolerance that split such pairs would split these
    for r in again:
        L._consider(E, db, cfg, r.x, float(r.fun), 1, counts)
    assert counts["new"] == 1 and counts["duplicate"] == len(again), (counts, apart)
