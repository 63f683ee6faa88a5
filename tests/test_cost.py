"""The cost model: its extrapolation, its job identity, one job timed end to end, the runtimes file
and the per-job time limits the workflow reads from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import copy_workflow

from robrepro import cost
from robrepro import runtimes as R
from robrepro.config import load
from robrepro.plan import Plan


@pytest.fixture(scope="module")
def smoke_plan(repo_root):
    return Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml"))


def test_fit_separates_a_fixed_cost_from_the_cost_per_unit():
    pts = [cost.Point(10, 3.0), cost.Point(20, 5.0)]  # 1 s fixed + 0.2 s per unit
    assert cost.fit(pts, 100) == pytest.approx(21.0)
    assert cost.fit(pts, 20) == 5.0  # measured at full size: the measurement itself
    assert cost.fit([cost.Point(10, 3.0)], 100) == pytest.approx(30.0)  # one point: through the origin
    # A line that falls: all fixed cost, the larger time.
    assert cost.fit([cost.Point(10, 3.0), cost.Point(20, 2.0)], 100) == pytest.approx(3.0)
    # A line that would start below zero: through the origin.
    assert cost.fit([cost.Point(10, 1.0), cost.Point(20, 4.0)], 100) == pytest.approx(20.0)


def test_ramp_doubles_until_the_budget_or_the_full_size():
    seen = []

    def measure(n):
        seen.append(n)
        return cost.Point(n, 0.1 * n)

    pts = cost.ramp(measure, 1, 1000, budget=1.0)
    assert seen == [1, 2, 4, 8, 16] and pts[-1].seconds >= 1.0
    seen.clear()
    cost.ramp(measure, 4, 12, budget=100.0)
    assert seen == [4, 8, 12]  # capped at the job's size
    seen.clear()
    pts = cost.ramp(measure, 64, 1000, budget=1.0)  # 6.4 s at once: the second point is half of it
    assert seen == [64, 32] and [p.n for p in pts] == [32, 64]


def test_runtimes_file_sets_limits_with_safety_and_floor(tmp_path):
    path = tmp_path / "runtimes.json"
    doc = R.write(path, {R.job_key("gm", "r1"): 3600.0, R.job_key("gm", "r1", "verify", "v"): 1.0}, device="CPU: test")
    assert doc["minutes"]["train/gm/r1"] == 180  # 60 min x 3
    assert doc["minutes"]["eval/gm/r1/verify/v"] == R.FLOOR_MINUTES
    rt = R.Runtimes(path)
    assert rt.runtime(999, "gm", "r1") == 180
    assert rt.runtime(999, "gm", "r1", "verify", "v") == R.FLOOR_MINUTES
    assert rt.runtime(999, "gm", None, "landscape", "x") == 999  # not in the file: the configured limit
    assert not R.Runtimes(tmp_path / "absent.json")


def test_identical_jobs_are_timed_once(smoke_plan):
    jobs = cost.jobs_of(smoke_plan)
    job = next(j for j in jobs if j.kind == "attack")
    renamed = cost.Job("other", job.paper, job.kind, "other-run", "other", {**job.spec, "name": "x", "labels": {"a": 1}}, job.run_spec)
    assert renamed.identity == job.identity
    changed = cost.Job("other", job.paper, job.kind, job.run, job.name, {**job.spec, "params": {**job.spec["params"], "batch_size": 7}}, job.run_spec)
    assert changed.identity != job.identity
    # Only what the enabled targets read: every costed job feeds some target.
    needed = set().union(*(cost.target_jobs(smoke_plan, t) for t in smoke_plan.targets.values()))
    assert {j.key for j in jobs} == needed


def test_one_job_timed_end_to_end_and_checked_against_its_benchmark(smoke_plan, tmp_path):
    key = "train/trdnn/bl-mlp-jacobian"
    result = cost.estimate(smoke_plan, device="cpu", budget=0.05, match=f"^{key}$", log=lambda m: None)
    (row,) = result["rows"]
    assert row["key"] == key and row["error"] is None
    assert row["seconds"] >= result["startup_s"] > 0 and row["mem_mb"] is not None
    outputs = R.outputs(str(tmp_path / "out"))
    text = cost.write_outputs(smoke_plan, result, outputs)
    assert "| trdnn | 1 | 1 |" in text and "CPU-hours" in text
    assert cost.read_rows(outputs["csv"])[0]["seconds"] == row["seconds"]
    assert json.loads(open(outputs["runtimes"]).read())["minutes"][key] >= R.FLOOR_MINUTES
    bench = tmp_path / cost.benchmark_file(smoke_plan, key)
    bench.parent.mkdir(parents=True)
    bench.write_text(f"s\th:m:s\n{row['seconds'] * 1.5}\t0:00:01\n")
    assert cost.compare(smoke_plan, result["rows"], tmp_path)["fraction"] == 1.0
    bench.write_text(f"s\th:m:s\n{row['seconds'] * 3}\t0:00:01\n")
    assert cost.compare(smoke_plan, result["rows"], tmp_path)["fraction"] == 0.0


def test_the_workflow_asks_for_the_runtimes_of_the_cost_model(repo_root, tmp_path):
    wd = tmp_path / "wf"
    wd.mkdir()
    copy_workflow(repo_root, wd)
    root = R.outputs("results/smoke")["runtimes"]
    R.write(wd / root, {"train/trdnn/bl-mlp-jacobian": 77 * 60 / R.SAFETY, "eval/trdnn/bl-mlp-jacobian/attack/pgd": 55 * 60 / R.SAFETY}, device="CPU: test")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "trdnn_table_baselines", "--cores", "1", "--configfile", "config/smoke.yaml"],
        cwd=wd,
        env={**os.environ, "PYTHONPATH": str(wd / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    blocks, out = {}, None
    for line in (res.stdout + res.stderr).splitlines():
        line = line.strip()
        if line.startswith("output:"):
            out = line.split(":", 1)[1].split(",")[0].strip()
        elif line.startswith("resources:") and out:
            blocks[out] = line.split("runtime=")[1].split(",")[0] if "runtime=" in line else None
    train = next(v for k, v in blocks.items() if "bl-mlp-jacobian/model.pt" in k)
    attack = next(v for k, v in blocks.items() if k.endswith("bl-mlp-jacobian/attack/pgd.json"))
    other = next(v for k, v in blocks.items() if k.endswith("model.pt") and "bl-mlp-jacobian" not in k)
    assert (train, attack) == ("77", "55")
    assert other == str(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml")["resources"]["train"]["runtime"])
