"""The NODE plug-in declares Fig. 2, Fig. 3, Table 2 and the audit from its configuration."""

from __future__ import annotations

import pytest

from robrepro.attacks import parse_eps
from robrepro.config import load
from robrepro.plan import Plan


@pytest.fixture(scope="module")
def paper_plan(repo_root):
    return Plan(load(repo_root / "config/config.yaml"))


@pytest.fixture(scope="module")
def smoke_plan(repo_root):
    return Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml"))


def _jobs(plan, kind):
    return {k: v for k, v in plan.jobs.items() if k[0] == "node" and k[2] == kind}


def test_table2_trains_the_three_baselines_with_their_objectives(paper_plan):
    runs = {r: s for (p, r), s in paper_plan.runs.items() if p == "node" and s["experiment"] == "table2"}
    assert {s["labels"]["training"]: s["train"]["objective"]["name"] for s in runs.values()} == {"pgd10": "pgd_at", "trades10": "trades", "yopo53": "yopo"}
    assert all(s["model"]["name"] == "preact_resnet18" and s["data"]["name"] == "cifar10" for s in runs.values())
    # The ODE row is Table 1's CIFAR-10 ODE-Net, evaluated by the same PGD-20 at 8/255.
    t2 = paper_plan.targets["node_table2"]
    assert len(t2.inputs) == 4 and any("t1-cifar10-odenet" in p for p in t2.inputs)
    assert {tuple(s["params"]["eps"]) for (_, r, _, n), s in paper_plan.jobs.items() if n == "table2"} == {(parse_eps("8/255"),)}


def test_every_model_of_table1_and_table2_is_audited_at_its_radii(paper_plan):
    audits = {k[1]: v["params"] for k, v in _jobs(paper_plan, "audit").items()}
    t1 = {r for (p, r), s in paper_plan.runs.items() if p == "node" and s["experiment"] == "table1"}
    t2 = {r for (p, r), s in paper_plan.runs.items() if p == "node" and s["experiment"] == "table2"}
    assert set(audits) == t1 | t2
    ode = audits["t1-cifar10-odenet"]
    # Table 1's four radii and Table 2's 8/255 (already one of them): each radius once.
    assert sorted(ode["radii"]) == sorted({parse_eps(e) for e in ["8/255", "16/255", "24/255", "32/255"]})
    assert ode["paper_attacks"] == ["fgsm", "pgd"] and audits["t2-yopo53"]["paper_attacks"] == ["pgd"]
    suite = ode["suite"]
    assert {"pgd_strong", "square", "spsa", "autoattack", "transfer_rk4", "transfer_loose"} <= set(suite)
    # Paper-tier budgets.
    assert suite["pgd_strong"]["steps"] >= 1000 and suite["square"]["n_queries"] >= 5000
    assert ode["large_eps_attacks"] == ["pgd", "pgd_strong"] and ode["large_eps"] == 1.0


def test_smoke_budgets_are_small_and_the_subsets_fixed(smoke_plan, paper_plan):
    smoke = next(iter(_jobs(smoke_plan, "audit").values()))
    paper = next(iter(_jobs(paper_plan, "audit").values()))
    assert smoke["params"]["suite"]["pgd_strong"]["steps"] < paper["params"]["suite"]["pgd_strong"]["steps"]
    assert smoke["data"]["test_limit"] < paper["data"]["test_limit"]
    fig3 = _jobs(paper_plan, "min_norm")
    assert fig3 and all(v["data"]["test_limit"] == 100 and v["params"]["attack"]["name"] == "boundary" for v in fig3.values())


def test_published_table2_joins_by_training(repo_root):
    import pandas as pd

    from robrepro import tables_figures as R

    df = pd.DataFrame([{"model": "preact_resnet18", "training": "yopo53", "reproduced": 40.0}, {"model": "odenet", "training": "none", "reproduced": 50.0}])
    out = R.join_published(df, "node", "table2", "robust_acc", "reproduced")
    assert out["published"].tolist() == [44.72, 59.06]
