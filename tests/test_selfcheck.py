"""The GPU self-check, run CPU against CPU: its steps pass, a device that computes differently fails
them, each step keeps to its time limit, and it runs where only PyTorch's stack is installed. Also the
offline wheelhouse's arguments and the project's own wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from robrepro import selfcheck as S
from robrepro.config import load
from robrepro.plan import Plan

# Cheap steps of the smoke tier: one of each sort (model, bounds, training, evaluation kinds).
CHEAP = r"model act_mlp|bounds act_mlp|train jacobian_reg|job (ball|sensitivity)"


@pytest.fixture(scope="module")
def smoke_plan(repo_root):
    return Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml"))


def test_cpu_against_cpu_passes_every_sort_of_step(smoke_plan):
    steps = S.selfcheck(smoke_plan, device="cpu", reference="cpu", only=CHEAP, log=lambda m: None)
    assert [s.name.split()[0] for s in steps] == ["model", "bounds", "train", "job", "job"]
    assert all(s.status == "ok" for s in steps), [(s.name, s.detail) for s in steps]


def test_a_device_that_computes_differently_fails(smoke_plan, monkeypatch):
    real = S.SelfCheck.model

    def drifting(self, spec, device):
        m = real(self, spec, device)
        if device is self.device:  # the device under test: its weights off by 10 %
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(1.1)
        return m

    monkeypatch.setattr(S.SelfCheck, "model", drifting)
    steps = S.selfcheck(smoke_plan, device="cpu", reference="cpu", only=r"model act_mlp|bounds act_mlp", log=lambda m: None)
    assert [s.status for s in steps] == ["FAIL", "FAIL"], [(s.name, s.detail) for s in steps]


def test_result_comparison_skips_cost_counters_and_names_what_differs():
    ref = {"clean_acc": 0.5, "per_eps": [{"robust_acc": 0.25, "seconds": 3.0}], "cost": {"attack_gradient_passes": 10}}
    assert S.differences(ref, {"clean_acc": 0.5, "per_eps": [{"robust_acc": 0.25, "seconds": 99.0}], "cost": {"attack_gradient_passes": 99}}, 0.0, 0.0) == []
    bad = S.differences(ref, {"clean_acc": 0.5, "per_eps": [{"robust_acc": 0.75, "seconds": 3.0}]}, 0.25, 0.1)
    assert bad == ["per_eps[0].robust_acc: 0.25 vs 0.75"]
    assert S.differences({"a": 1.0}, {"b": 1.0}, 1.0, 1.0) == ["a: only on one device", "b: only on one device"]


def test_each_step_keeps_to_its_time_limit_and_a_missing_package_skips_it():
    t0 = time.perf_counter()
    step = S.run_step("slow", lambda: time.sleep(5) or "done", 0.5, log=lambda m: None)
    assert step.status == "FAIL" and "time limit" in step.detail and time.perf_counter() - t0 < 3

    def needs_foolbox():
        raise ModuleNotFoundError("No module named 'foolbox'", name="foolbox")

    assert S.run_step("boundary", needs_foolbox, 5, log=lambda m: None).status == "skipped"


def test_runs_with_pytorch_alone(repo_root, tmp_path):
    """No snakemake, jsonschema, foolbox, submitit or tqdm: the self-check and its cost table still run."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "BLOCKED = {'snakemake', 'jsonschema', 'foolbox', 'submitit', 'tqdm'}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "robrepro", "selfcheck", "config/config.yaml", "config/smoke.yaml", "--tier", "smoke", "--device", "cpu"]
        + ["--only", r"model act_mlp|train jacobian_reg", "--cost-limit", "60", "--cost-budget", "0.05", "--cost-match", "^train/trdnn/bl-mlp-jacobian(-s0)?$"],
        cwd=repo_root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo_root / "src")])},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 passed, 0 failed, 0 skipped of 2 steps" in res.stdout
    assert "Cost of the paper tier" in res.stdout and "| trdnn | 1 | 1 |" in res.stdout
    assert "could not be timed" not in res.stdout


def test_config_without_jsonschema_fills_the_same_defaults(repo_root, monkeypatch):
    from robrepro import config as C

    for tier in ("smoke", "paper"):
        validated = C.load(repo_root / "config/config.yaml", overrides={"tier": tier})
        monkeypatch.setattr(C, "_Validator", None)
        assert C.load(repo_root / "config/config.yaml", overrides={"tier": tier}) == validated
        monkeypatch.undo()


def _wheelhouse(repo_root, *args):
    return subprocess.run(
        ["bash", str(repo_root / "envs/wheelhouse.sh"), *args], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable}
    )


def test_wheelhouse_arguments(repo_root, tmp_path):
    res = _wheelhouse(repo_root, "--dry-run", "--minimal", "--python-version", "3.12", "--platform", "manylinux_2_28_aarch64", "--dest", str(tmp_path / "wh"))
    assert res.returncode == 0, res.stderr
    download = next(line for line in res.stderr.splitlines() if " download " in line)
    for flag in ("--only-binary=:all:", "--python-version 3.12", "--platform manylinux_2_28_aarch64", "-c envs/constraints.txt"):
        assert flag in download
    assert "(torch|torchvision|torchdiffeq|numpy|scipy|pandas|pyyaml)" in res.stderr
    assert not (tmp_path / "wh").exists()  # a dry run writes nothing
    assert _wheelhouse(repo_root, "--python-version", "12").returncode == 2
    assert _wheelhouse(repo_root, "--no-such-flag").returncode == 2


def test_wheelhouse_builds_the_project_wheel(repo_root, tmp_path):
    res = _wheelhouse(repo_root, "--project-only", "--dest", str(tmp_path / "wh"))
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "wh").glob("robrepro-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "robrepro/selfcheck.py" in names and "robrepro/cost.py" in names
