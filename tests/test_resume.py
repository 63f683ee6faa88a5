"""Kill -9 anywhere in training, for a natural, an adversarial and a certified objective: every
resumed run ends with bit-identical weights and metrics.

Each run is killed at ten points drawn (seeded) one from each tenth of the run, so the points are
spread over it and include the middle of epochs and the last epoch, plus once while a checkpoint is
being written and once after the last step before the result is written. The kills are chained, as
a job preempted again and again: a process forked from the test process trains, kills itself with
SIGKILL at its point (no handler, no cleanup, as after a node failure), and the next one resumes
from whatever checkpoint is on disk. Forked processes keep the cost to the training itself.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from pathlib import Path

import pytest
import torch

from robrepro import engine
from robrepro.results import load_result

EPOCHS, LIMIT, BATCH = 3, 128, 16
STEPS_PER_EPOCH = LIMIT // BATCH
TOTAL = EPOCHS * STEPS_PER_EPOCH

OBJECTIVES = {
    "natural": {"name": "natural"},
    # Random starts from the global RNG: resume must restore it.
    "adversarial": {"name": "pgd_at", "eps": 0.03, "steps": 2},
    # An epsilon ramp over epoch 2 that is a function of the global step.
    "certified": {"name": "ibp", "eps_max": 0.03, "start": 1, "length": 2},
}


def _spec(objective: dict) -> dict:
    return {
        "paper": "test",
        "experiment": "resume",
        "run": "tiny",
        "tier": "smoke",
        "seed": 5,
        "data": {"name": "cifar10", "source": "synthetic", "mean": [0.5] * 3, "std": [0.25] * 3, "synthetic_seed": 0, "train_limit": LIMIT, "test_limit": 32},
        "model": {"name": "mlp", "hidden_sizes": [32]},
        "train": {
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "lr_schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1},
            "augment": {"crop_pad": 2, "flip": True},
            "objective": objective,
            # Checkpoints every 4 steps and at epoch ends: most kills lose steps that must be redone.
            "checkpoint_every_steps": 4,
            "deterministic": True,
        },
    }


def _train(tmp: Path, spec: dict) -> dict:
    return engine.train(
        spec,
        data_root=str(tmp),
        model_out=tmp / "model.pt",
        result_out=tmp / "train.json",
        checkpoint=tmp / "ckpt.pt",
        device="cpu",
        threads=1,
        progress_bar=False,
    )


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _child(tmp: Path, spec: dict, point: tuple[str, int] | None) -> None:
    """Train; die by SIGKILL at ``point``: ("step", s) as step s starts, ("save", n) while the n-th
    checkpoint of this process is half written, ("final", 0) after the last step, before any output."""
    kind, at = point or ("", -1)
    if kind == "step":
        real = engine.Progress

        def progress(epoch, step, *rest):
            if step == at:
                _die()
            return real(epoch, step, *rest)

        engine.Progress = progress
    elif kind == "save":
        real_save, saves = engine.save_checkpoint, []

        def save(path, **state):
            saves.append(1)
            if len(saves) == at:
                with engine.atomic_path(path) as tmp_file:
                    torch.save(state, tmp_file)
                    _die()  # the temporary file is written, the rename never happens
            real_save(path, **state)

        engine.save_checkpoint = save
    elif kind == "final":
        engine.write_result = lambda *a, **k: _die()
    _train(tmp, spec)


def _run_child(tmp: Path, spec: dict, point) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(tmp, spec, point))
    proc.start()
    proc.join(timeout=300)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"training process hung at {point}")
    return proc.exitcode


def kill_points(seed: int) -> list[tuple[str, int]]:
    """Ten steps, one drawn from each tenth of the run, plus a kill during a checkpoint write and
    one after the last step; in the order they happen."""
    rng = random.Random(seed)
    edges = [round(i * TOTAL / 10) for i in range(11)]
    steps = [rng.randrange(max(1, lo), hi) for lo, hi in zip(edges, edges[1:])]
    save_after = rng.randrange(len(steps) - 1)  # between two of the step kills
    points = [("step", s) for s in steps]
    points.insert(save_after + 1, ("save", 1))
    return points + [("final", 0)]


def test_kill_points_are_spread_over_the_run():
    for seed in range(len(OBJECTIVES)):
        steps = [s for kind, s in kill_points(seed) if kind == "step"]
        assert len(steps) >= 10 and steps == sorted(set(steps))
        assert any(s % STEPS_PER_EPOCH for s in steps), "no kill in the middle of an epoch"
        assert any(s >= (EPOCHS - 1) * STEPS_PER_EPOCH for s in steps), "no kill in the last epoch"
        assert steps[0] < round(0.1 * TOTAL) and steps[-1] >= round(0.9 * TOTAL)


@pytest.fixture(scope="module", autouse=True)
def _strict_determinism():
    # The engine switches on strict deterministic algorithms on CPU; restore the process-wide flag after.
    old = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(old[0], warn_only=old[1])


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_kill_minus_9_anywhere_resumes_bit_identical(tmp_path, name):
    spec = _spec(OBJECTIVES[name])
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir()
    run_dir.mkdir()
    ref = _train(ref_dir, spec)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    ckpt = run_dir / "ckpt.pt"
    resumed_from = []
    for point in kill_points(sorted(OBJECTIVES).index(name)):
        before = torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0
        code = _run_child(run_dir, spec, point)
        assert code == -signal.SIGKILL, f"{point}: exit code {code}"
        # No result before the end; the model file only once the last step is done (the result follows it).
        assert not (run_dir / "train.json").exists()
        assert (run_dir / "model.pt").exists() == (point[0] == "final")
        resumed_from.append(before)
        if point[0] == "step":
            # The latest checkpoint is never ahead of the kill, and the run moved on from where it resumed.
            after = torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0
            assert before <= after <= point[1], (point, before, after)
    assert len(set(resumed_from)) >= 5, f"kills landed on too few distinct checkpoints: {resumed_from}"
    assert _run_child(run_dir, spec, None) == 0
    doc = load_result(run_dir / "train.json", "train")
    assert doc["resumed_from_step"] == TOTAL  # the last kill came after the last step
    assert doc["history"] == ref["history"] and doc["steps"] == ref["steps"] == TOTAL
    got = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    want = torch.load(ref_dir / "model.pt", weights_only=True)["state_dict"]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert not ckpt.exists()


# ------------------------------------------------------------------ evaluation jobs killed mid-run


def _eval_spec(kind: str) -> dict:
    data = {**_spec({})["data"], "train_limit": None, "test_limit": 96}
    attack = {"name": "pgd", "steps": 5, "alpha_rel": 0.25, "random_start": True, "restarts": 1, "early_stop": True}
    params = {
        "attack": {"attack": attack, "eps": [0.01, 0.02, 0.04], "eps_labels": ["a", "b", "c"], "batch_size": 16, "independent": True, "batch_check": 0},
        "verify": {"attack": attack, "eps": [0.005, 0.01, 0.02], "eps_labels": ["a", "b", "c"], "bounds": ["ibp", "crown_ibp"], "batch_size": 16},
    }[kind]
    return {"paper": "test", "run": "tiny", "kind": kind, "name": "probe", "tier": "smoke", "seed": 7, "data": data, "params": params, "labels": {}}


def _evaluate(tmp: Path, kind: str, kill_after_batches: int | None) -> None:
    """The CLI's evaluate command; with ``kill_after_batches``, SIGKILL once that many batches of the
    attack (or of the bound computation) are done."""
    import json

    from robrepro import attacks, bounds, cli

    if kill_after_batches:
        done = []

        def counting(real):
            def wrapper(*args, **kwargs):
                done.append(1)
                if len(done) > kill_after_batches:
                    _die()
                return real(*args, **kwargs)

            return wrapper

        if kind == "attack":
            attacks.in_ball = counting(attacks.in_ball)  # called once per attacked batch
        else:
            bounds.verified_radii = counting(bounds.verified_radii)
    argv = ["evaluate", "--spec", json.dumps(_eval_spec(kind)), "--model", str(tmp / "model.pt"), "--data-root", str(tmp), "--device", "cpu"]
    argv += ["--threads", "1", "--partial", str(tmp / "partial" / f"{kind}.pt"), "--out", str(tmp / f"{kind}.json"), "--no-progress"]
    cli.main(argv)


def _payload(path: Path) -> dict:
    """A result without what may differ between two runs of the same job: timings and provenance."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("seconds", "provenance")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(load_result(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    spec = _spec({"name": "natural"})
    spec["train"]["epochs"] = 1
    _train(tmp, spec)
    return tmp


@pytest.mark.parametrize("kind", ["attack", "verify"])
def test_an_evaluation_killed_mid_run_leaves_no_result_and_reruns_to_the_same_result(trained, tmp_path, kind):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    for d in (ref_dir, run_dir):
        d.mkdir()
        (d / "model.pt").symlink_to(trained / "model.pt")

    def fork(target, *args):
        proc = multiprocessing.get_context("fork").Process(target=target, args=args)
        proc.start()
        proc.join(timeout=300)
        return proc.exitcode

    assert fork(_evaluate, ref_dir, kind, None) == 0
    assert fork(_evaluate, run_dir, kind, 4) == -signal.SIGKILL
    assert not (run_dir / f"{kind}.json").exists(), "a killed evaluation left a result"
    assert fork(_evaluate, run_dir, kind, None) == 0
    assert _payload(run_dir / f"{kind}.json") == _payload(ref_dir / f"{kind}.json")
    assert not (run_dir / "partial" / f"{kind}.pt").exists()  # resumable state, if any, is gone with the result
