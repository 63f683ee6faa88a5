"""The one training engine shared by the four papers.

What it guarantees:
* Determinism: the data order of an epoch, the augmentation of a batch and the learning rate of a
  step are pure functions of (seed, epoch, step). Everything else random (attack starts, dropout)
  draws from the global RNGs, whose states are checkpointed.
* Checkpoints at an undeclared path (Snakemake deletes declared outputs before a job starts): every
  epoch, optionally every N steps, and when SIGTERM/SIGUSR1 arrives (preemption, a time limit, Ctrl-C
  of the workflow). Each holds model, optimiser, step, epoch and RNG states, written atomically.
  A run killed anywhere and started again resumes from the latest one and ends bit-identical to an
  uninterrupted run on the same device. A checkpoint whose spec differs from the run's is ignored.
  The previous checkpoint is kept beside the latest (``<name>.prev``); one that cannot be read
  (truncated or damaged on disk) is set aside as ``<name>.corrupt`` with a warning and the run
  resumes from the previous one, or from scratch: a damaged file is never read twice, so a retried
  job cannot fail on it again and again.
* The loop knows nothing of the method: the objective (natural, adversarial, certified, ...) turns a
  batch into a loss.
* Model selection (``train.select``): ``none`` keeps the last epoch's weights; ``test`` keeps the
  epoch with the best clean accuracy on the test split (what some papers did: a choice made on test
  data, which their tables must disclose); ``val`` does the same on ``val_size`` training images held
  out from training (a seeded split). The best weights so far are part of every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from . import models
from .objectives import Progress, build_objective
from .progress import epoch_summary
from .progress import progress as log_progress
from .results import atomic_path, provenance, write_result


class Interrupted(SystemExit):
    """Raised after a checkpoint was saved on a termination signal; exit code 128 + signal."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True, strict: bool = False) -> None:
    """Seed every RNG; ``deterministic`` switches on torch's deterministic algorithms. ``strict``: an
    operation without a deterministic implementation raises instead of warning (the engine asks for
    it on CPU, where bit-identical resume is tested; CUDA lacks deterministic kernels for some ops)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=not strict)
        torch.backends.cudnn.benchmark = False


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """The model of a run spec, for the dataset of the spec (normalisation inside)."""
    kw = dict(spec["model"])
    name = kw.pop("name")
    return models.build(name, **D.info(spec["data"]["name"]).geometry, mean=spec["data"]["mean"], std=spec["data"]["std"], **kw)


def make_optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    name = cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.0), weight_decay=cfg.get("weight_decay", 0.0), nesterov=cfg.get("nesterov", False)
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(cfg_opt: dict[str, Any], cfg_sched: dict[str, Any], step: int, steps_per_epoch: int, epochs: int) -> float:
    """Learning rate of global step ``step``; a pure function so that nothing needs restoring on resume.

    ``multistep``: x gamma at each milestone (epochs, or fractions of training when < 1);
    ``cosine``: cosine decay to 0 over training; ``constant``. ``warmup_epochs`` ramps linearly first.
    """
    base, name = cfg_opt["lr"], cfg_sched.get("name", "constant")
    epoch_f = step / steps_per_epoch
    warm = cfg_sched.get("warmup_epochs", 0)
    if warm and epoch_f < warm:
        return base * (epoch_f + 1 / steps_per_epoch) / warm
    if name == "constant":
        return base
    if name == "multistep":
        ms = [m * epochs if m < 1 else m for m in cfg_sched.get("milestones", [])]
        return base * cfg_sched.get("gamma", 0.1) ** sum(epoch_f >= m for m in ms)
    if name == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * min(1.0, epoch_f / epochs)))
    raise ValueError(f"unknown lr schedule {name!r}")


class _SignalFlag:
    """Turns SIGTERM/SIGUSR1 into a flag checked between steps, so a checkpoint can be written first."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in self.SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _rng_state() -> dict[str, Any]:
    # Plain tensors, numbers and strings only: checkpoints load with weights_only=True (no pickled code).
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached], "python": list(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = st["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where the checkpoint before the latest is kept: the fallback if the latest cannot be read."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        # The latest becomes the previous only once its successor is fully written; between the two
        # renames only the previous one exists, which load_checkpoint falls back to.
        if Path(path).exists():
            os.replace(path, previous_checkpoint(path))


def load_checkpoint(path: str | os.PathLike, device="cpu") -> dict[str, Any] | None:
    """The latest readable checkpoint at ``path`` (else its previous one), or None if there is none.

    A file that cannot be read is renamed to ``<name>.corrupt`` (kept for inspection, never read
    again) with a warning on stderr, and the next older one is tried.
    """
    for cand in (Path(path), previous_checkpoint(path)):
        if not cand.exists():
            continue
        try:
            return safe_load(cand, device)
        except ValueError as err:
            aside = cand.with_name(cand.name + ".corrupt")
            os.replace(cand, aside)
            print(f"[train] WARNING: checkpoint {cand} cannot be read ({err}); set aside as {aside}", file=sys.stderr)
    return None


def safe_load(path: str | os.PathLike, device="cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never pickled code.

    A file that needs more (tampered, or from another program) stops with an error naming it.
    """
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        # An empty file raises EOFError with no message: name the error itself then.
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: not a model or checkpoint this workflow wrote (refused to load: {reason})") from err


def _selection_split(select: str, x, y, dspec: dict[str, Any], data_root: str, seed: int, val_size: int):
    """Training samples and the samples that select the kept epoch (None for ``select: none``)."""
    if select == "none":
        return x, y, None, None
    if select == "test":
        xs, ys = D.load_split(dspec["name"], "test", source=dspec["source"], root=data_root, limit=dspec.get("test_limit"), seed=dspec.get("synthetic_seed", 0))
        return x, y, xs, ys
    if select == "val":
        if not 0 < val_size < x.shape[0]:
            raise ValueError(f"train.val_size={val_size} must be between 1 and the training set size - 1 ({x.shape[0] - 1})")
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed * 7 + 1)).to(x.device)
        keep, held = perm[val_size:].sort().values, perm[:val_size].sort().values
        return x[keep], y[keep], x[held], y[held]
    raise ValueError(f"unknown train.select {select!r}; use none, test or val")


@torch.no_grad()
def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch_size: int = 500) -> float:
    """Clean accuracy in eval mode; the model's train/eval mode is restored."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
        correct += (model(xb).argmax(1) == y[i : i + batch_size].to(device)).sum().item()
    model.train(was)
    return correct / max(1, x.shape[0])


def train(
    spec: dict[str, Any],
    *,
    data_root: str,
    model_out: str | os.PathLike,
    result_out: str | os.PathLike,
    checkpoint: str | os.PathLike,
    device: str = "auto",
    threads: int | None = None,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train the run described by ``spec``; write the model and a result JSON; return the result."""
    started = time.time()
    tcfg = spec["train"]
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    seed = int(spec["seed"])
    seed_everything(seed, tcfg.get("deterministic", True), strict=dev.type == "cpu")

    dspec = spec["data"]
    x, y = D.load_split(dspec["name"], "train", source=dspec["source"], root=data_root, limit=dspec.get("train_limit"), seed=dspec.get("synthetic_seed", 0))
    if dev.type == "cuda":
        x, y = x.to(dev), y.to(dev)
    select = tcfg.get("select", "none")
    x, y, x_sel, y_sel = _selection_split(select, x, y, dspec, data_root, seed, int(tcfg.get("val_size", 5000)))
    n, bs, epochs = x.shape[0], int(tcfg["batch_size"]), int(tcfg["epochs"])
    steps_per_epoch = (n + bs - 1) // bs

    model = build_model(spec).to(dev)
    opt = make_optimizer(model.parameters(), tcfg["optimizer"])
    objective = build_objective(tcfg["objective"])
    aug = tcfg.get("augment", {})
    every = int(tcfg.get("checkpoint_every_steps", 0))
    grad_clip = tcfg.get("grad_clip")

    ckpt_path, h = Path(checkpoint), spec_hash(spec)
    step, history, resumed_from, sums = 0, [], None, {}
    best = {"acc": -1.0, "epoch": None, "state": None}  # the selected weights so far (train.select)
    ck = load_checkpoint(ckpt_path, dev)
    if ck is not None:
        if ck.get("spec_hash") == h:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            step, history, resumed_from, sums = ck["step"], ck["history"], ck["step"], ck["epoch_sums"]
            best = ck.get("best", best)
            _set_rng_state(ck["rng"])
            print(f"[train] resumed from {ckpt_path} at step {step}", file=sys.stderr)
        else:
            print(f"[train] ignoring checkpoint {ckpt_path}: written for another spec", file=sys.stderr)

    def checkpoint_now():
        save_checkpoint(
            ckpt_path,
            spec_hash=h,
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            step=step,
            epoch=step // steps_per_epoch,
            history=history,
            epoch_sums=sums,
            rng=_rng_state(),
            best=best,
            lr=lr_at(tcfg["optimizer"], tcfg.get("lr_schedule", {}), step, steps_per_epoch, epochs),
        )

    from tqdm.auto import tqdm

    bar = tqdm(
        total=steps_per_epoch * epochs,
        initial=step,
        disable=not progress_bar,
        desc=f"train {spec.get('run', '')}",
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )
    model.train()
    loop_start = time.perf_counter()
    with _SignalFlag() as sig:
        while step < steps_per_epoch * epochs:
            epoch, start_b = divmod(step, steps_per_epoch)
            if start_b == 0:
                sums = {}  # running sums of the batch metrics of this epoch (kept when resuming mid-epoch)
            order = D.epoch_order(n, seed, epoch)
            for xb, yb in D.batches(x, y, bs, order=order, start=start_b, device=dev):
                if aug:
                    g = torch.Generator().manual_seed(seed * 7919 + step)
                    xb = D.augment(xb.cpu(), g, aug.get("crop_pad", 0), aug.get("flip", False)).to(dev)
                for group in opt.param_groups:
                    group["lr"] = lr_at(tcfg["optimizer"], tcfg.get("lr_schedule", {}), step, steps_per_epoch, epochs)
                progress = Progress(epoch, step, steps_per_epoch, epochs)
                if objective.owns_step:
                    # The objective runs its own forward/backward/update (YOPO's inner updates).
                    metrics = objective.train_step(model, opt, xb, yb, progress)
                else:
                    loss, metrics = objective.loss(model, xb, yb, progress)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss at step {step}: {metrics}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    opt.step()
                step += 1
                w = yb.shape[0]
                sums["n"] = sums.get("n", 0) + w
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v * w
                bar.update(1)
                if step % steps_per_epoch and (sig.signum or (every and step % every == 0)):
                    checkpoint_now()
                    if sig.signum:
                        bar.close()
                        print(f"[train] signal {sig.signum}: checkpoint saved at step {step}", file=sys.stderr)
                        raise Interrupted(128 + sig.signum)
            history.append({"epoch": epoch + 1, **{k: v / sums["n"] for k, v in sums.items() if k != "n"}})
            sums = {}
            if x_sel is not None:
                acc = clean_accuracy(model, x_sel, y_sel, dev)
                history[-1][f"{select}_acc"] = acc
                if acc >= best["acc"]:  # ties go to the later epoch
                    best = {"acc": acc, "epoch": epoch + 1, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            log_progress("train", f"{spec.get('run', '')} epoch {epoch + 1}/{epochs}: " + epoch_summary(history[-1]))
            checkpoint_now()
            if sig.signum:
                bar.close()
                raise Interrupted(128 + sig.signum)
    bar.close()
    loop_seconds = time.perf_counter() - loop_start

    selection = {"mode": select}
    if x_sel is not None:
        model.load_state_dict(best["state"])
        selection.update(epoch=best["epoch"], acc=best["acc"], n=int(x_sel.shape[0]))
    with atomic_path(model_out) as tmp:
        torch.save({"spec": spec, "spec_hash": h, "state_dict": model.state_dict()}, tmp)
    payload = {
        "paper": spec.get("paper"),
        "experiment": spec.get("experiment"),
        "run": spec.get("run"),
        "steps": step,
        "epochs": epochs,
        "train_size": n,
        "history": history,
        "final": history[-1] if history else {},
        "resumed_from_step": resumed_from,
        "loop_seconds": round(loop_seconds, 4),
        "selection": selection,
    }
    prov = provenance(spec=spec, seed=seed, device=dev, data_source=dspec["source"], started=started)
    doc = write_result(result_out, "train", payload, prov)
    # The final model is written: a stale checkpoint could only resume a finished run, or, after a
    # code change, resume with old weights; remove it.
    ckpt_path.unlink(missing_ok=True)
    previous_checkpoint(ckpt_path).unlink(missing_ok=True)
    return doc


def load_model(path: str | os.PathLike, device="cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trained model and its run spec from a ``model.pt`` written by :func:`train`."""
    ck = safe_load(path, device)
    model = build_model(ck["spec"]).to(device)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, ck["spec"]
