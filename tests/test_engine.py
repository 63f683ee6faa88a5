"""The training engine: determinism, checkpoints, and resume after a kill or a signal."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robrepro.engine import lr_at, train
from robrepro.results import load_result


def tiny_spec(objective=None, epochs=3, limit=384, every=2):
    return {
        "paper": "node",
        "experiment": "test",
        "run": "tiny",
        "tier": "smoke",
        "seed": 3,
        "data": {"name": "cifar10", "source": "synthetic", "mean": [0.5] * 3, "std": [0.25] * 3, "synthetic_seed": 0, "train_limit": limit, "test_limit": 64},
        "model": {"name": "cifar_resnet", "depth": 8, "width": 4, "h": 0.5},
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "lr_schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1},
            "augment": {"crop_pad": 2, "flip": True},
            # PGD training draws random starts from the global RNG: resume must restore it.
            "objective": objective or {"name": "pgd_at", "eps": 0.03, "steps": 2},
            "checkpoint_every_steps": every,
            "deterministic": True,
        },
    }


def _run_inprocess(tmp: Path, spec):
    return train(
        spec,
        data_root=str(tmp),
        model_out=tmp / "model.pt",
        result_out=tmp / "train.json",
        checkpoint=tmp / "ckpt.pt",
        device="cpu",
        threads=1,
        progress_bar=False,
    )


def _cmd(tmp: Path, spec):
    return [
        sys.executable,
        "-m",
        "robrepro",
        "train",
        "--spec",
        json.dumps(spec),
        "--data-root",
        str(tmp),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--checkpoint",
        str(tmp / "ckpt.pt"),
        "--model-out",
        str(tmp / "model.pt"),
        "--result-out",
        str(tmp / "train.json"),
        "--no-progress",
    ]


def _state(tmp: Path):
    return torch.load(tmp / "model.pt", weights_only=False)["state_dict"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    doc = _run_inprocess(tmp, tiny_spec())
    return doc, _state(tmp)


def test_training_is_deterministic_and_records_provenance(tmp_path, reference):
    doc, state = reference
    again = _run_inprocess(tmp_path, tiny_spec())
    assert again["history"] == doc["history"]
    assert _same_weights(_state(tmp_path), state)
    prov = doc["provenance"]
    for key in ("spec", "seed", "git", "packages", "device", "data_source", "wall_time_s"):
        assert key in prov
    assert prov["data_source"] == "synthetic" and prov["seed"] == 3
    assert prov["packages"]["torch"]
    assert not (tmp_path / "ckpt.pt").exists()  # removed once the final model is written
    assert len(doc["history"]) == 3 and doc["steps"] == 36


def test_kill_anywhere_then_resume_gives_identical_result(tmp_path, reference):
    doc, state = reference
    proc = subprocess.Popen(_cmd(tmp_path, tiny_spec()), stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "ckpt.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.kill()  # SIGKILL: no chance to clean up, as after a node failure
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "model.pt").exists(), "the run finished before it could be killed"
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < killed_at < 36
    res = subprocess.run(_cmd(tmp_path, tiny_spec()), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stderr
    resumed = load_result(tmp_path / "train.json", "train")
    assert resumed["resumed_from_step"] == killed_at
    assert resumed["history"] == doc["history"]
    assert _same_weights(_state(tmp_path), state)


def test_sigterm_checkpoints_then_resume_is_identical(tmp_path):
    # Checkpoints only at epoch ends: the signal must force one in the middle of epoch 2.
    spec = tiny_spec(every=0)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = _run_inprocess(ref_dir, spec)
    proc = subprocess.Popen(_cmd(tmp_path, spec), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends at a time limit or preemption
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in err
    step = torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"]
    assert 12 <= step < 36
    res = subprocess.run(_cmd(tmp_path, spec), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    resumed = load_result(tmp_path / "train.json", "train")
    assert resumed["resumed_from_step"] == step
    assert resumed["history"] == ref["history"]
    assert _same_weights(_state(tmp_path), _state(ref_dir))


def test_checkpoint_of_another_spec_is_ignored(tmp_path):
    spec = tiny_spec(objective={"name": "natural"}, epochs=1, limit=64)
    _run_inprocess(tmp_path, spec)
    first = _state(tmp_path)
    # A stale checkpoint written for other settings must not be resumed from.
    torch.save({"spec_hash": "0000", "step": 1}, tmp_path / "ckpt.pt")
    doc = _run_inprocess(tmp_path, spec)
    assert doc["resumed_from_step"] is None
    assert _same_weights(_state(tmp_path), first)


def test_lr_schedules():
    opt = {"lr": 0.1}
    ms = {"name": "multistep", "milestones": [2, 3], "gamma": 0.1}
    assert lr_at(opt, ms, 0, 10, 4) == pytest.approx(0.1)
    assert lr_at(opt, ms, 20, 10, 4) == pytest.approx(0.01)
    assert lr_at(opt, ms, 35, 10, 4) == pytest.approx(0.001)
    frac = {"name": "multistep", "milestones": [0.5], "gamma": 0.5}
    assert lr_at(opt, frac, 19, 10, 4) == pytest.approx(0.1) and lr_at(opt, frac, 20, 10, 4) == pytest.approx(0.05)
    cos = {"name": "cosine"}
    assert lr_at(opt, cos, 0, 10, 4) == pytest.approx(0.1) and lr_at(opt, cos, 20, 10, 4) == pytest.approx(0.05)
    warm = {"name": "constant", "warmup_epochs": 1}
    assert lr_at(opt, warm, 0, 10, 4) == pytest.approx(0.01) and lr_at(opt, warm, 10, 10, 4) == pytest.approx(0.1)


class _Payload:
    """Stands for code a tampered model file would run when unpickled."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_model_file_that_needs_pickled_code_is_refused(tmp_path):
    from robrepro.engine import load_model, safe_load

    bad = tmp_path / "model.pt"
    torch.save({"spec": {}, "state_dict": {}, "extra": _Payload()}, bad)
    with pytest.raises(ValueError, match="refused to load"):
        load_model(bad)
    with pytest.raises(ValueError, match=str(bad)):
        safe_load(bad)
    # A plain checkpoint of tensors and containers loads.
    good = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2), "meta": {"a": [1, 2.0, "x"]}}, good)
    assert safe_load(good)["meta"]["a"] == [1, 2.0, "x"]
