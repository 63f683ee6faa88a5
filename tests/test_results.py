"""Result files: atomic writes, and half-written files are never taken for results."""

import json
import os
import stat
from pathlib import Path

import pytest

from robrepro.results import atomic_path, load_result, provenance, write_json_atomic, write_result


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_result_refuses_partial_and_foreign_files(tmp_path):
    (tmp_path / "half.json").write_text('{"kind": "attack", "per_eps": [')
    with pytest.raises(ValueError, match="half.json"):
        load_result(tmp_path / "half.json")
    (tmp_path / "nomark.json").write_text('{"kind": "attack"}')
    with pytest.raises(ValueError, match="completion marker"):
        load_result(tmp_path / "nomark.json")
    import time

    prov = provenance(spec={"x": 1}, seed=0, device="cpu", data_source="real", started=time.time())
    write_result(tmp_path / "ok.json", "train", {"v": 1}, prov)
    assert load_result(tmp_path / "ok.json", "train")["v"] == 1
    with pytest.raises(ValueError, match="expected a 'attack'"):
        load_result(tmp_path / "ok.json", "attack")
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_result_files_follow_the_umask(tmp_path, umask):
    """Results, tables and models are read by collaborators and web servers: the mode is the one
    any new file gets under the umask (0644 / 0664), never owner-only."""
    import time

    old = os.umask(umask)
    try:
        prov = provenance(spec={}, seed=0, device="cpu", data_source="real", started=time.time())
        write_result(tmp_path / "eval" / "r.json", "attack", {}, prov)
        with atomic_path(tmp_path / "model.pt") as tmp:  # the way models, CSVs and figures are written
            tmp.write_bytes(b"weights")
    finally:
        os.umask(old)
    for f in (tmp_path / "eval" / "r.json", tmp_path / "model.pt"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def _tiny_train_spec():
    return {
        "paper": "node",
        "experiment": "test",
        "run": "tiny",
        "tier": "smoke",
        "seed": 0,
        "data": {"name": "cifar10", "source": "synthetic", "mean": [0.5] * 3, "std": [0.25] * 3, "synthetic_seed": 0, "train_limit": 32, "test_limit": 32},
        "model": {"name": "cifar_resnet", "depth": 8, "width": 2, "h": 0.5},
        "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.05}, "objective": {"name": "natural"}},
    }


def test_a_swapped_model_stops_aggregation_naming_both_files(tmp_path, monkeypatch):
    """The training job (through the CLI, as the rules run it) records the sha256 of the model it
    wrote and of the data manifest; once model.pt is replaced, every reader of the result refuses it."""
    from robrepro import tables_figures as reporting
    from robrepro.cli import main
    from robrepro.report import _Docs

    monkeypatch.chdir(tmp_path)  # the workflow's paths are relative to its working directory
    run = Path("results/smoke/node/models/tiny")
    (tmp_path / "results/smoke/data").mkdir(parents=True)
    Path("results/smoke/data/cifar10.json").write_text('{"kind": "data"}\n')  # found where the path grammar puts it
    main(
        ["train", "--spec", json.dumps(_tiny_train_spec()), "--data-root", "resources", "--device", "cpu", "--no-progress"]
        + ["--model-out", str(run / "model.pt"), "--result-out", str(run / "train.json"), "--checkpoint", "ckpt.pt"]
    )
    inputs = load_result(run / "train.json", "train")["provenance"]["inputs"]
    assert inputs["model"]["path"] == "model.pt" and inputs["data"]["path"] == "../../../data/cifar10.json"
    assert reporting.load_all([str(run / "train.json")], "train")

    (run / "model.pt").write_bytes((run / "model.pt").read_bytes() + b"\0")  # another model in its place
    for read in (lambda: reporting.load_all([str(run / "train.json")], "train"), lambda: _Docs(tmp_path).get(str(run / "train.json"))):
        with pytest.raises(ValueError) as err:
            read()
        assert str(run / "train.json") in str(err.value) and str(run / "model.pt") in str(err.value), str(err.value)
    # A removed model contradicts nothing (models may be deleted to free disk); a rewritten manifest does.
    (run / "model.pt").unlink()
    assert load_result(run / "train.json")
    Path("results/smoke/data/cifar10.json").write_text('{"kind": "data", "md5": {}}\n')
    with pytest.raises(ValueError, match=r"results/smoke/node/models/tiny/train.json: made from the data manifest results/smoke/data/cifar10.json with sha256"):
        load_result(run / "train.json")


@pytest.mark.parametrize(
    "payload, where",
    [
        ({"clean_acc": 1.7, "per_eps": []}, "clean_acc = 1.7"),  # an accuracy of 170 %
        ({"clean_acc": 0.9, "per_eps": [{"eps": 0.1, "robust_acc": -0.01}]}, "per_eps.0.robust_acc = -0.01"),
        ({"per_eps": [{"eps": 0.1, "verified_err": {"ibp": float("nan")}}]}, "per_eps.0.verified_err.ibp = nan"),
        ({"minima": [{"fgsm_acc@0.1": 2.0}]}, "minima.0.fgsm_acc@0.1 = 2.0"),
    ],
)
def test_an_out_of_range_value_stops_aggregation_naming_the_file(tmp_path, monkeypatch, capsys, payload, where):
    from robrepro import tables_figures as reporting
    from robrepro.cli import main

    prov = provenance(spec={}, seed=0, device="cpu", data_source="real", started=0.0)
    ok = write_result(tmp_path / "ok.json", "attack", {"clean_acc": 1.0, "per_eps": [{"eps": 8.0, "robust_acc": 0.0, "n": 500}], "loss": 3.2}, prov)
    bad = tmp_path / "bad.json"
    write_result(bad, "attack", payload, prov)
    assert reporting.load_all([str(tmp_path / "ok.json")]) == [ok]
    with pytest.raises(ValueError) as err:
        reporting.load_all([str(tmp_path / "ok.json"), str(bad)])
    assert f"{bad}: {where} lies outside [0, 1]" in str(err.value)
    # A table job (python -m robrepro report) stops with that message, not a traceback.
    monkeypatch.setattr(reporting, "count_rows", lambda paths, outputs: len(reporting.load_all(paths)), raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["report", "robrepro.tables_figures:count_rows", "--inputs", str(bad), "--out", str(tmp_path / "t.csv")])
    assert stop.value.code == 2 and f"[report] refused: {bad}: {where}" in capsys.readouterr().err


def _git_repo(path: Path) -> str:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True, text=True).stdout.strip()  # noqa: E731
    run("init", "-q")
    (path / "f.txt").write_text("x")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return run("rev-parse", "HEAD")


def test_git_state_names_the_checkout_the_package_runs_from_and_no_other(tmp_path, monkeypatch):
    """A source checkout (<repo>/src/robrepro) records its commit; an installed copy inside some other
    repository (a virtual environment kept in a clone) records none, not the enclosing clone's commit."""
    import robrepro.results as R

    head = _git_repo(tmp_path / "clone")
    monkeypatch.setattr(R, "__file__", str(tmp_path / "clone" / "src" / "robrepro" / "results.py"))
    assert R.git_state() == {"commit": head, "dirty": False}
    (tmp_path / "clone" / "f.txt").write_text("changed")
    assert R.git_state()["dirty"] is True
    site = tmp_path / "clone" / ".venv" / "lib" / "python3.11" / "site-packages" / "robrepro" / "results.py"
    monkeypatch.setattr(R, "__file__", str(site))
    assert R.git_state() == {"commit": None, "dirty": None}
    # A folder named src inside a repository, not at its top: not this package's checkout either.
    vendored = tmp_path / "clone" / "vendor" / "src" / "robrepro"
    vendored.mkdir(parents=True)
    monkeypatch.setattr(R, "__file__", str(vendored / "results.py"))
    assert R.git_state() == {"commit": None, "dirty": None}
