"""A checkpoint damaged on disk (truncated by a full disk, overwritten, emptied) is set aside with a
warning and training resumes from the previous checkpoint, or from scratch: the run still ends
bit-identical to an uninterrupted one, and the damaged file is never read again (a retried job
cannot fail on it forever)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_resume import OBJECTIVES, _spec, _train

from robrepro import engine
from robrepro.results import load_result


class _Stop(Exception):
    pass


def _interrupted_run(tmp: Path, spec: dict, monkeypatch, after_saves: int) -> list[int]:
    """Train until the ``after_saves``-th checkpoint is written, then stop (as a killed job would);
    returns the steps of the checkpoints written."""
    real, steps = engine.save_checkpoint, []

    def save(path, **state):
        real(path, **state)
        steps.append(state["step"])
        if len(steps) == after_saves:
            raise _Stop

    monkeypatch.setattr(engine, "save_checkpoint", save)
    with pytest.raises(_Stop):
        _train(tmp, spec)
    monkeypatch.setattr(engine, "save_checkpoint", real)
    return steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    spec = _spec(OBJECTIVES["natural"])
    _train(tmp, spec)
    return spec, torch.load(tmp / "model.pt", weights_only=True)["state_dict"], load_result(tmp / "train.json", "train")["history"]


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 64, "empty": b""}[how])


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_latest_checkpoint_resumes_from_the_previous_one(tmp_path, monkeypatch, capsys, reference, how):
    spec, ref_state, ref_history = reference
    steps = _interrupted_run(tmp_path, spec, monkeypatch, after_saves=3)
    ckpt = tmp_path / "ckpt.pt"
    assert engine.previous_checkpoint(ckpt).exists()
    _damage(ckpt, how)
    capsys.readouterr()
    doc = _train(tmp_path, spec)
    err = capsys.readouterr().err
    assert "cannot be read" in err and str(ckpt) in err
    assert (tmp_path / "ckpt.pt.corrupt").exists()  # set aside, kept for inspection
    assert doc["resumed_from_step"] == steps[-2]  # the previous checkpoint
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
    assert doc["history"] == ref_history
    # A finished run leaves no checkpoint behind, neither the latest nor the previous one.
    assert not ckpt.exists() and not engine.previous_checkpoint(ckpt).exists()


def test_both_checkpoints_corrupt_restarts_from_scratch(tmp_path, monkeypatch, capsys, reference):
    spec, ref_state, _ = reference
    _interrupted_run(tmp_path, spec, monkeypatch, after_saves=3)
    ckpt = tmp_path / "ckpt.pt"
    _damage(ckpt, "truncated")
    _damage(engine.previous_checkpoint(ckpt), "garbage")
    doc = _train(tmp_path, spec)
    assert capsys.readouterr().err.count("cannot be read") == 2
    assert doc["resumed_from_step"] is None
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)


def test_a_corrupt_checkpoint_is_read_once_only(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"\x00" * 100)
    assert engine.load_checkpoint(ckpt) is None
    assert "set aside" in capsys.readouterr().err
    # A retried job finds no checkpoint (not the same damaged one again) and starts cleanly.
    assert engine.load_checkpoint(ckpt) is None
    assert capsys.readouterr().err == ""
    assert (tmp_path / "ckpt.pt.corrupt").read_bytes() == b"\x00" * 100


def test_saving_keeps_the_previous_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    for step in (1, 2, 3):
        engine.save_checkpoint(ckpt, step=step)
    assert engine.load_checkpoint(ckpt)["step"] == 3
    assert torch.load(engine.previous_checkpoint(ckpt), weights_only=True)["step"] == 2
