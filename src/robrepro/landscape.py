"""Energy landscape of a small network: basin-hopping over its training loss and a database of distinct minima.

TRDNN (catalog section 3.2) relates the minima of the training loss to their sensitivity. Pieces:

* :class:`MLPEnergy` -- ``E(w) = mean CE + weight_decay * ||w||^2`` of a one-hidden-layer tanh
  network ``D-H-K`` as a function of its flat float64 parameter vector, with the analytic gradient
  (hand-written backpropagation) and a Hessian by central differences of that gradient.
* :func:`permutation_distance` -- the Euclidean distance between two parameter vectors minimised
  over the symmetries of the network: permutations of the hidden units and, tanh being odd, the
  sign flip of a unit (its incoming weights, bias and outgoing weights together). The cost splits
  per unit pair, so the optimal assignment (Hungarian algorithm) gives the exact minimum.
* :class:`MinimaDatabase` -- distinct minima: a candidate is a duplicate iff some stored minimum
  is within ``energy_tol`` in energy AND within ``dist_tol`` in that distance. Only verified minima
  enter: gradient norm <= ``gtol`` and no Hessian eigenvalue below ``-hess_tol``.
* :func:`run_search` -- ``scipy.optimize.basinhopping`` (random displacement, L-BFGS local
  minimisation on the analytic gradient, Metropolis acceptance at temperature T, adaptive step
  size) run in chunks of steps. After every chunk the whole state (database, current minimum,
  step size, counters) is written atomically; chunk ``k`` draws its random numbers from
  ``(seed, k)`` only. So a killed search restarts at the last finished chunk and ends with the
  same database as an uninterrupted one (bit for bit, on the same machine and library versions).
* :func:`rank_correlations` -- Spearman and Kendall coefficients with bootstrap intervals.

Unknowns of the paper (network size, weight decay, T, step size, number of steps, tolerances)
are arguments with defaults chosen here; the configuration marks them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import basinhopping, linear_sum_assignment, minimize

from .results import atomic_path

# ----------------------------------------------------------------------------------------------
# The energy
# ----------------------------------------------------------------------------------------------


class MLPEnergy:
    """Training loss of a ``D-H-K`` tanh network; parameters packed as ``[W1 (H,D), b1 (H), W2 (K,H), b2 (K)]``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, hidden: int, num_classes: int, weight_decay: float = 1e-3):
        self.x = np.ascontiguousarray(x, dtype=np.float64).reshape(len(x), -1)
        self.y = np.asarray(y, dtype=np.int64)
        self.D, self.H, self.K = self.x.shape[1], int(hidden), int(num_classes)
        self.weight_decay = float(weight_decay)
        self.onehot = np.eye(self.K)[self.y]
        self._target = np.arange(len(self.y)) * self.K + self.y  # flat index of each sample's true logit
        self.n_params = self.H * self.D + self.H + self.K * self.H + self.K

    def unpack(self, w: np.ndarray):
        H, D, K = self.H, self.D, self.K
        i = 0
        W1 = w[i : i + H * D].reshape(H, D)
        i += H * D
        b1 = w[i : i + H]
        i += H
        W2 = w[i : i + K * H].reshape(K, H)
        i += K * H
        return W1, b1, W2, w[i : i + K]

    def logits(self, w: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        W1, b1, W2, b2 = self.unpack(w)
        x = self.x if x is None else np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return np.tanh(x @ W1.T + b1) @ W2.T + b2

    def energy_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """``E(w)`` and its analytic gradient (backpropagation through softmax-CE, tanh and the affine maps).

        Called hundreds of times per local minimisation on arrays of a few hundred numbers, where
        each numpy call's overhead outweighs its arithmetic: so in-place operations and the gradient
        written straight into one buffer (measured 13 % faster than the plain formulas on Iris).
        """
        W1, b1, W2, b2 = self.unpack(w)
        A = self.x @ W1.T
        A += b1
        np.tanh(A, out=A)  # (N, H)
        O = A @ W2.T
        O += b2  # (N, K) logits
        O -= O.max(1, keepdims=True)
        P = np.exp(O)
        Z = P.sum(1)
        n = len(self.y)
        ce = (np.log(Z).sum() - O.ravel()[self._target].sum()) / n
        P /= Z[:, None]
        P -= self.onehot
        P *= 1.0 / n  # dE/dO
        grad = 2 * self.weight_decay * w
        gW1, gb1, gW2, gb2 = self.unpack(grad)  # views into grad
        gW2 += P.T @ A
        gb2 += P.sum(0)
        dZ = P @ W2
        dZ *= 1 - A * A
        gW1 += dZ.T @ self.x
        gb1 += dZ.sum(0)
        return float(ce) + self.weight_decay * float(w @ w), grad

    def energy(self, w: np.ndarray) -> float:
        return self.energy_and_grad(w)[0]

    def hessian(self, w: np.ndarray, h: float = 1e-5) -> np.ndarray:
        """Symmetrised central differences of the analytic gradient (error O(h^2) + O(rounding / h))."""
        d = len(w)
        Hm = np.empty((d, d))
        for i in range(d):
            e = np.zeros(d)
            e[i] = h
            Hm[i] = (self.energy_and_grad(w + e)[1] - self.energy_and_grad(w - e)[1]) / (2 * h)
        return (Hm + Hm.T) / 2

    def distance(self, w1: np.ndarray, w2: np.ndarray) -> float:
        """Distance between two minima up to the network's symmetries (:func:`permutation_distance`)."""
        return permutation_distance(self, w1, w2)

    def unit_vectors(self, w: np.ndarray) -> np.ndarray:
        """One row per hidden unit: its incoming weights, bias and outgoing weights (the unit's symmetry orbit)."""
        W1, b1, W2, _ = self.unpack(w)
        return np.concatenate([W1, b1[:, None], W2.T], 1)

    def error(self, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.logits(w, x).argmax(1) != np.asarray(y)).mean())

    def to_torch(self, w: np.ndarray, dtype=None):
        """The same network as a torch module (Flatten, Linear, Tanh, Linear; float32 by default) for attacks and bounds."""
        import torch  # only here: the search itself needs no torch (a resumed search starts faster)
        from torch import nn

        dtype = dtype or torch.float32
        W1, b1, W2, b2 = self.unpack(w)
        net = nn.Sequential(nn.Flatten(), nn.Linear(self.D, self.H), nn.Tanh(), nn.Linear(self.H, self.K)).to(dtype)
        with torch.no_grad():
            for layer, (W, b) in zip((net[1], net[3]), ((W1, b1), (W2, b2))):
                layer.weight.copy_(torch.from_numpy(W))
                layer.bias.copy_(torch.from_numpy(b))
        return net.eval()


def permutation_distance(energy: MLPEnergy, w1: np.ndarray, w2: np.ndarray) -> float:
    """``min over hidden-unit permutations and sign flips of ||w1 - g(w2)||`` (exact, by optimal assignment)."""
    U, V = energy.unit_vectors(w1), energy.unit_vectors(w2)
    same = ((U[:, None, :] - V[None, :, :]) ** 2).sum(2)
    flipped = ((U[:, None, :] + V[None, :, :]) ** 2).sum(2)
    cost = np.minimum(same, flipped)
    rows, cols = linear_sum_assignment(cost)
    b2 = energy.unpack(w1)[3] - energy.unpack(w2)[3]
    return float(np.sqrt(cost[rows, cols].sum() + b2 @ b2))


# ----------------------------------------------------------------------------------------------
# The database of minima
# ----------------------------------------------------------------------------------------------


@dataclass
class Minimum:
    energy: float
    params: list[float]
    grad_norm: float
    min_eig: float
    step: int  # basin-hopping step at which it was first found (-1: the initial minimisation)


@dataclass
class MinimaDatabase:
    energy_tol: float = 1e-6
    dist_tol: float = 0.1  # see SearchConfig.dist_tol
    minima: list[Minimum] = field(default_factory=list)

    def find(self, energy: MLPEnergy, e: float, w: np.ndarray) -> int | None:
        """Index of a stored minimum that ``(e, w)`` duplicates, or None."""
        for i, m in enumerate(self.minima):
            if abs(m.energy - e) <= self.energy_tol and energy.distance(np.asarray(m.params), w) <= self.dist_tol:
                return i
        return None

    def energies(self) -> np.ndarray:
        return np.array([m.energy for m in self.minima])

    def params(self) -> np.ndarray:
        return np.array([m.params for m in self.minima])


def check_minimum(energy: MLPEnergy, w: np.ndarray, gtol: float, hess_tol: float) -> tuple[bool, float, float]:
    """(is a minimum, gradient norm, smallest Hessian eigenvalue)."""
    g = np.linalg.norm(energy.energy_and_grad(w)[1])
    if g > gtol:
        return False, float(g), float("nan")
    lam = float(np.linalg.eigvalsh(energy.hessian(w))[0])
    return lam >= -hess_tol, float(g), lam


# ----------------------------------------------------------------------------------------------
# Basin-hopping, resumable
# ----------------------------------------------------------------------------------------------


@dataclass
class SearchConfig:
    n_steps: int = 200  # basin-hopping steps in all
    chunk: int = 25  # steps between two saved states
    temperature: float = 0.05  # in units of the loss (distinct minima differ by ~0.01 on Iris)
    stepsize: float = 3.0  # initial displacement half-width (adapted towards 50% acceptance)
    # Cap of the adapted step: falling back into the same minimum counts as accepted (zero energy
    # change), so in a funnel the acceptance stays near 1 and scipy's adaptation grows the step
    # without bound (measured on Iris: 1669 after 300 steps, saturated tanh units, no new minima).
    max_stepsize: float = 6.0
    interval: int = 5  # steps between step-size updates
    seed: int = 0
    init_scale: float = 1.0  # std of the random start
    energy_tol: float = 1e-6
    # L-BFGS stops at a gradient norm ~1e-7; along a soft direction (Hessian eigenvalue ~1e-6) that
    # leaves the same minimum found twice up to ~0.1 apart. Measured on Iris (4-5-3): pairs at
    # distance 0.010-0.014 with energies equal to 1e-10 and the same predictions to 1e-5 counted as
    # distinct under 1e-2; the count is flat from 0.05 to 0.3 (106 of 116 minima at weight decay
    # 1e-5, 41 of 42 at 1e-4), so 0.1 sits in that plateau.
    dist_tol: float = 0.1
    gtol: float = 1e-5  # a minimum's gradient norm at most this
    hess_tol: float = 1e-6  # and no Hessian eigenvalue below -hess_tol
    lbfgs_gtol: float = 1e-7
    lbfgs_maxiter: int = 20000
    # L-BFGS memory. 30 instead of scipy's 10: measured on Iris (4-5-3, weight decay 1e-5), 270
    # instead of 445 gradient evaluations per quench, 1 000 steps in 69 s instead of 90 s, and as
    # many minima found.
    lbfgs_maxcor: int = 30

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


class _Displacement:
    """Uniform random displacement in ``[-s, s]^d`` with ``s = min(stepsize, cap)``; scipy adapts ``stepsize``."""

    def __init__(self, stepsize: float, rng: np.random.Generator, cap: float = float("inf")):
        self.stepsize, self.rng, self.cap = stepsize, rng, cap

    def __call__(self, x):
        s = min(self.stepsize, self.cap)
        return x + self.rng.uniform(-s, s, size=x.shape)


def _local_min(energy: MLPEnergy, cfg: SearchConfig) -> dict:
    return {"method": "L-BFGS-B", "jac": True, "options": {"gtol": cfg.lbfgs_gtol, "ftol": 1e-15, "maxiter": cfg.lbfgs_maxiter, "maxcor": cfg.lbfgs_maxcor}}


def _save_atomic(path: Path, state: dict) -> None:
    # The shared helper: a write that fails before the rename leaves the old state and no debris.
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(state))


def load_state(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def database_of(state: dict) -> MinimaDatabase:
    db = state["database"]
    return MinimaDatabase(db["energy_tol"], db["dist_tol"], [Minimum(**m) for m in db["minima"]])


def run_search(energy, cfg: SearchConfig, state_path, log: Callable[[str], None] | None = None) -> dict:
    """Basin-hopping on ``energy`` until ``cfg.n_steps`` steps are done; resumes from ``state_path`` if present.

    ``energy`` is any object with ``n_params``, ``energy_and_grad(w)``, ``hessian(w)`` and
    ``distance(w1, w2)`` (:class:`MLPEnergy`, or a test function).

    Returns the final state: ``{"config", "digest", "step", "chunk", "x", "stepsize", "database",
    "counts"}``. ``counts`` tallies candidate minima: ``new``, ``duplicate``, ``not_converged``
    (gradient too large), ``saddle`` (negative Hessian eigenvalue), ``accepted`` (Metropolis).
    """
    with _one_blas_thread():
        return _run_search(energy, cfg, Path(state_path), log)


def _one_blas_thread():
    """Tiny matrix products: a multi-threaded BLAS only spins (100x slower on a loaded machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _run_search(energy: MLPEnergy, cfg: SearchConfig, state_path: Path, log) -> dict:
    db = MinimaDatabase(cfg.energy_tol, cfg.dist_tol)
    if state_path.exists():
        state = load_state(state_path)
        if state["digest"] != cfg.digest():
            raise ValueError(f"{state_path} was written by another search configuration; remove it to start over")
        db = database_of(state)
    else:
        rng = np.random.default_rng([cfg.seed, 0])
        x0 = rng.normal(0.0, cfg.init_scale, energy.n_params)
        res = minimize(energy.energy_and_grad, x0, **_local_min(energy, cfg))
        counts = {"new": 0, "duplicate": 0, "not_converged": 0, "saddle": 0, "accepted": 0}
        _consider(energy, db, cfg, res.x, float(res.fun), -1, counts)
        state = {"config": asdict(cfg), "digest": cfg.digest(), "step": 0, "chunk": 0, "x": res.x.tolist(), "stepsize": cfg.stepsize, "counts": counts}
        state["database"] = _db_dict(db)
        _save_atomic(state_path, state)
    while state["step"] < cfg.n_steps:
        k, counts = state["chunk"], state["counts"]
        niter = min(cfg.chunk, cfg.n_steps - state["step"])
        take = _Displacement(state["stepsize"], np.random.default_rng([cfg.seed, k + 1, 1]), cfg.max_stepsize)
        current = {"x": np.asarray(state["x"]), "step": state["step"]}

        def callback(x, f, accept, current=current, counts=counts):
            current["step"] += 1
            _consider(energy, db, cfg, np.asarray(x), float(f), current["step"], counts)
            if accept:
                counts["accepted"] += 1
                current["x"] = np.array(x)

        basinhopping(
            energy.energy_and_grad,
            np.asarray(state["x"]),
            niter=niter,
            T=cfg.temperature,
            take_step=take,
            interval=cfg.interval,
            minimizer_kwargs=_local_min(energy, cfg),
            callback=callback,
            rng=np.random.default_rng([cfg.seed, k + 1, 2]),
        )
        state.update(
            step=state["step"] + niter, chunk=k + 1, x=current["x"].tolist(), stepsize=min(float(take.stepsize), cfg.max_stepsize), database=_db_dict(db)
        )
        _save_atomic(state_path, state)
        if log:
            log(f"step {state['step']}/{cfg.n_steps}: {len(db.minima)} minima, lowest {min(db.energies()):.6f}, step size {take.stepsize:.3f}, counts {counts}")
    return state


def _db_dict(db: MinimaDatabase) -> dict:
    return {"energy_tol": db.energy_tol, "dist_tol": db.dist_tol, "minima": [asdict(m) for m in db.minima]}


def _consider(energy: MLPEnergy, db: MinimaDatabase, cfg: SearchConfig, w: np.ndarray, e: float, step: int, counts: dict) -> None:
    """Add the candidate minimum ``w`` to ``db`` if it is new and passes the minimum checks."""
    if db.find(energy, e, w) is not None:
        counts["duplicate"] += 1
        return
    ok, g, lam = check_minimum(energy, w, cfg.gtol, cfg.hess_tol)
    if not ok:
        counts["not_converged" if np.isnan(lam) else "saddle"] += 1
        return
    db.minima.append(Minimum(energy=e, params=w.tolist(), grad_norm=g, min_eig=lam, step=step))
    counts["new"] += 1


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def rank_correlations(a, b, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau of ``a`` against ``b`` with percentile bootstrap intervals (resampling pairs)."""
    from scipy.stats import kendalltau, spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    out: dict[str, Any] = {"n": int(n)}
    if n < 3:
        return {**out, **{f"{k}{s}": float("nan") for k in ("spearman", "kendall") for s in ("", "_lo", "_hi", "_p")}}
    rng = np.random.default_rng(seed)
    for name, fn in (("spearman", spearmanr), ("kendall", kendalltau)):
        r = fn(a, b)
        boots = []
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            if np.ptp(a[idx]) == 0 or np.ptp(b[idx]) == 0:
                continue  # a constant resample has no rank correlation
            boots.append(fn(a[idx], b[idx])[0])
        q = (1 - level) / 2
        lo, hi = np.quantile(boots, [q, 1 - q]) if boots else (float("nan"), float("nan"))
        out.update({name: float(r[0]), f"{name}_p": float(r[1]), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    return out
