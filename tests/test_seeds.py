"""Training seeds: the plan trains a replicate of a model per seed (its jobs too, read by its targets),
one seed changes nothing, and a table of several seeds lets a claim be judged on the seed-to-seed
spread. Cheap: plans of the configuration and hand-made results, no model."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from robrepro import tables_figures as R
from robrepro import verdicts as V
from robrepro.config import load
from robrepro.papers import ssp, trdnn
from robrepro.plan import Plan


def smoke_plan(repo_root, seeds=None):
    """The smoke tier's plan, with ``ssp.seeds`` set to ``seeds`` (None: the configuration's)."""
    over = {"ssp": {"seeds": seeds}} if seeds is not None else None
    return Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml", overrides=over, config_dir=repo_root / "config"))


@pytest.fixture(scope="module")
def plans(repo_root):
    return {"one": smoke_plan(repo_root), "three": smoke_plan(repo_root, {"E1": 3})}


def e1_runs(plan):
    return {rid: spec for (paper, rid), spec in plan.runs.items() if paper == "ssp" and spec["experiment"] == "E1"}


def test_several_seeds_replicate_each_run_with_its_own_training_seed(plans):
    one, three = e1_runs(plans["one"]), e1_runs(plans["three"])
    assert one and len(three) == 3 * len(one)
    for rid in one:
        reps = [three[f"{rid}-s{s}"] for s in range(3)]
        assert f"{rid}" not in three
        assert [r["seed"] for r in reps] == [0, 1, 2]  # the seed the training engine reads
        assert [r["labels"]["seed"] for r in reps] == [0, 1, 2]
        assert {r["labels"]["declared_run"] for r in reps} == {rid}  # how a builder finds a declared model's seeds
        # The replicates differ by their seed alone.
        strip = [{k: v for k, v in r.items() if k not in ("seed", "run", "labels")} for r in reps]
        assert strip[0] == strip[1] == strip[2] == {k: v for k, v in one[rid].items() if k not in ("seed", "run", "labels")}


def test_every_job_of_a_replicated_run_runs_on_each_replicate_and_its_target_reads_them_all(plans):
    one, three = plans["one"], plans["three"]
    e1 = e1_runs(one)
    base_jobs = [k for k in one.jobs if k[0] == "ssp" and k[1] in e1]
    assert base_jobs
    assert len(three.jobs) == len(one.jobs) + 2 * len(base_jobs)
    for paper, run, kind, name in base_jobs:
        for s in range(3):
            spec = three.job_spec(paper, f"{run}-s{s}", kind, name)
            assert spec["labels"]["seed"] == s and spec["seed"] == s
    inputs = set(three.targets["ssp_table_mnist"].inputs)
    for paper, run, kind, name in base_jobs:
        assert {three.job_file(paper, f"{run}-s{s}", kind, name) for s in range(3)} <= inputs
    assert {three.paths.train_result("ssp", f"{run}-s{s}") for run in e1 for s in range(3)} <= inputs
    assert "training seeds: 3 per model" in " ".join(three.targets["ssp_table_mnist"].params["notes"])


def test_one_seed_leaves_run_ids_paths_and_specs_unchanged(plans, repo_root):
    one = plans["one"]
    explicit = smoke_plan(repo_root, {"E1": 1})
    assert explicit.runs == one.runs and explicit.jobs == one.jobs
    assert not any(re.search(r"-s\d+$", rid) for _, rid in one.runs)
    assert {spec["seed"] for spec in one.runs.values()} == {one.config["seed"]}
    assert not any("seed" in spec["labels"] for spec in one.runs.values())


def test_an_unknown_experiment_in_seeds_is_an_error(repo_root):
    with pytest.raises(ValueError, match="E9"):
        smoke_plan(repo_root, {"E9": 3})


# --- tables and verdicts over seeds ---------------------------------------------------------------------

# PGD accuracy at 0.3 of three seeds per block: SSP blocks ahead of ResNet on average, but one SSP-2 seed
# is not, so the seed-to-seed spread (not each row's binomial error) decides.
PGD = {"res": [20.0, 22.0, 21.0], "ssp2": [30.0, 24.0, 36.0], "ssp3": [31.0, 30.0, 32.0]}


def _docs():
    prov = {"git": {"commit": "0" * 40}, "spec": {"tier": "paper"}, "data_source": "real"}
    docs = {}
    for block, accs in PGD.items():
        for s, acc in enumerate(accs):
            run = f"mnist-ball-{block}-s{s}"
            lab = {"dataset": "mnist", "method": "ball", "block": block, "depth": 5, "seed": s, "attack": "pgd"}
            docs[f"{run}/pgd.json"] = {
                "run": run,
                "kind": "attack",
                "name": "pgd",
                "labels": lab,
                "clean_acc": 0.99,
                "n": 10000,
                "eps_labels": ["0.3"],
                "per_eps": [{"robust_acc": acc / 100}],
                "provenance": prov,
            }
            docs[f"{run}/train.json"] = {"run": run, "selection": {"epoch": 100}, "provenance": prov}
    return docs


def test_a_table_of_several_seeds_has_a_seed_column_and_its_claim_uses_their_spread(monkeypatch, tmp_path):
    docs = _docs()
    monkeypatch.setattr(R, "load_all", lambda paths, kind=None: [docs[p] for p in paths])
    outputs = {x: str(tmp_path / f"t.{x}") for x in ("csv", "md", "tex")}
    df = ssp.accuracy_table(list(docs), outputs, "SSP-E1", [], ["method", "block"])
    assert list(df.columns[:4]) == ["method", "block", "seed", "run"]
    assert len(df) == 9 and sorted(df["seed"].unique()) == [0, 1, 2]
    claim = next(c for c in V.load_claims("ssp") if c.id == "mnist-more-robust")
    v = V.judge(claim, {claim.test["table"]: df}, "paper")
    assert "3 seeds per value, seed-to-seed variance" in v.evidence
    # SSP-2's seeds disagree by 12 points: no support on that spread, where one seed's row alone
    # (no seed column: its binomial error of about 0.4 points) would have supported the claim.
    alone = V.judge(claim, {claim.test["table"]: df[df["seed"] == 0].drop(columns="seed")}, "paper")
    assert alone.status == V.SUPPORTED and "seed" not in alone.evidence
    assert v.status != V.SUPPORTED
    # The three seeds' rows without their seed column cannot be told apart: no verdict on one of them.
    blind = V.judge(claim, {claim.test["table"]: df.drop(columns="seed")}, "paper")
    assert blind.status == V.INCONCLUSIVE and "not told apart by a seed column" in blind.evidence


def test_a_reused_model_keeps_its_role_in_every_seed_and_the_table_says_how_many_seeds(monkeypatch, tmp_path):
    # TRDNN's baselines table names two models of the lambda_s grid by their declared ids ("plain",
    # "sensitivity_loss"): each of their replicates must find its role.
    prov = {"git": {"commit": "0" * 40}, "spec": {"tier": "paper"}, "data_source": "real"}
    docs = {}
    for run, pgd in (("sl-mlp-lam0", [10.0, 12.0, 11.0]), ("sl-mlp-lam0.01", [30.0, 31.0, 29.0])):
        for s, acc in enumerate(pgd):
            lab = {"dataset": "mnist", "model": "mlp", "lambda_s": 0.0 if run.endswith("0") else 0.01, "seed": s, "declared_run": run}
            docs[f"{run}-s{s}/pgd.json"] = {
                "run": f"{run}-s{s}",
                "kind": "attack",
                "attack": "pgd",
                "train_labels": lab,
                "clean_acc": 0.97,
                "n": 10000,
                "eps_labels": ["0.1"],
                "per_eps": [{"robust_acc": acc / 100}],
                "provenance": prov,
            }
    monkeypatch.setattr(R, "load_all", lambda paths, kind=None: [docs[p] for p in paths])
    outputs = {x: str(tmp_path / f"t.{x}") for x in ("csv", "md", "tex")}
    df = trdnn.table_baselines(list(docs), outputs, {"sl-mlp-lam0": "plain", "sl-mlp-lam0.01": "sensitivity_loss"})
    assert sorted(df["method"]) == ["plain"] * 3 + ["sensitivity_loss"] * 3
    assert sorted(df["seed"]) == [0, 0, 1, 1, 2, 2]
    assert "training seeds: 3 per model" in trdnn._seeds_note(list(docs.values()))
    claim = next(c for c in V.load_claims("trdnn") if c.id == "loss-raises-robust-accuracy")
    v = V.judge(claim, {claim.test["table"]: df}, "paper")
    assert v.status == V.SUPPORTED and "3 seeds per value" in v.evidence


def test_a_published_number_matches_every_seed_of_its_cell():
    rows = [{"dataset": "mnist", "model": "resnet50", "attack": "fgsm", "column": 1, "seed": s, "reproduced": 25.0 + s, "n": 10000} for s in range(3)]
    df = R.join_published(pd.DataFrame(rows), "node", "table1", "robust_acc", "reproduced")
    assert df["published"].notna().all() and df["published"].nunique() == 1
