"""Model selection of the training engine (``train.select``): the kept weights are the best epoch's."""

from pathlib import Path

import pytest
import torch

from robrepro import data as D
from robrepro.engine import clean_accuracy, load_model, train


def spec(select, lr=0.5, epochs=4):
    return {
        "paper": "test",
        "experiment": "test",
        "run": "select",
        "tier": "smoke",
        "seed": 1,
        "data": {"name": "cifar10", "source": "synthetic", "mean": [0.5] * 3, "std": [0.25] * 3, "synthetic_seed": 0, "train_limit": 256, "test_limit": 128},
        "model": {"name": "cifar_resnet", "depth": 8, "width": 4},
        # A large constant learning rate makes the accuracy jump between epochs, so the best epoch is rarely the last.
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
            "lr_schedule": {"name": "constant"},
            "objective": {"name": "natural"},
            "select": select,
            "val_size": 64,
        },
    }


def _train(tmp: Path, s, tag):
    return train(
        s, data_root=str(tmp), model_out=tmp / f"{tag}.pt", result_out=tmp / f"{tag}.json", checkpoint=tmp / f"{tag}.ckpt", device="cpu", progress_bar=False
    )


def test_select_test_keeps_the_best_test_epoch(tmp_path):
    doc = _train(tmp_path, spec("test"), "t")
    hist = doc["history"]
    accs = [h["test_acc"] for h in hist]
    sel = doc["selection"]
    assert sel["mode"] == "test" and sel["acc"] == max(accs)
    assert sel["epoch"] == max(i + 1 for i, a in enumerate(accs) if a == max(accs))
    model, _ = load_model(tmp_path / "t.pt")
    xt, yt = D.load_split("cifar10", "test", source="synthetic", root=str(tmp_path), limit=128)
    assert clean_accuracy(model, xt, yt, "cpu") == pytest.approx(sel["acc"])
    last = _train(tmp_path, spec("none"), "n")
    assert last["selection"] == {"mode": "none"}
    m_last, _ = load_model(tmp_path / "n.pt")
    same_weights = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m_last.state_dict().values()))
    assert same_weights == (sel["epoch"] == len(hist))  # selection does not change the trajectory, only the kept epoch


def test_select_val_holds_out_training_images(tmp_path):
    doc = _train(tmp_path, spec("val", epochs=2), "v")
    assert doc["train_size"] == 256 - 64
    assert doc["selection"]["n"] == 64 and "val_acc" in doc["history"][0]


def test_resume_keeps_the_best_epoch_so_far(tmp_path, monkeypatch):
    import robrepro.engine as E

    full = _train(tmp_path, spec("test", epochs=4), "full")
    real, calls = E.clean_accuracy, []

    def stop_at_third(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("stopped")  # after epoch 3's checkpoint (the best epoch) was written
        return real(*a, **k)

    monkeypatch.setattr(E, "clean_accuracy", stop_at_third)
    with pytest.raises(RuntimeError):
        _train(tmp_path, spec("test", epochs=4), "cut")
    monkeypatch.setattr(E, "clean_accuracy", real)
    resumed = _train(tmp_path, spec("test", epochs=4), "cut")
    assert resumed["resumed_from_step"] is not None
    assert resumed["selection"] == full["selection"]
    a, _ = load_model(tmp_path / "full.pt")
    b, _ = load_model(tmp_path / "cut.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
