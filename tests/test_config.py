"""Configuration: both tiers validate, defaults come from the schema, bad keys and values are named."""

import copy
import subprocess
import sys

import pytest
import yaml

from robrepro.config import ConfigError, load, schema, validate
from robrepro.plan import Plan


def test_every_tier_validates_and_plans(repo_root):
    paper = load(repo_root / "config/config.yaml")
    smoke = load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml")
    lite = load(repo_root / "config/config.yaml", repo_root / "config/lite.yaml")
    assert (paper["tier"], smoke["tier"], lite["tier"]) == ("paper", "smoke", "lite")
    p, s, li = Plan(paper), Plan(smoke), Plan(lite)
    node = lambda plan: {r for (paper_, r) in plan.runs if paper_ == "node"}  # noqa: E731
    assert node(p) == node(s)  # same experiments, other scale
    assert len([r for r in node(p) if p.runs[("node", r)]["experiment"] == "fig1"]) == 11
    assert p.train_spec("node", "fig1-h1")["model"]["name"] == "resnet56"
    assert s.train_spec("node", "fig1-h1")["data"]["source"] == "synthetic"
    # Tiers never share an output path.
    assert p.paths.root != s.paths.root != li.paths.root
    assert all(f.startswith("results/lite/") for f in li.all_targets())
    # Lite uses real data only.
    assert {spec["data"]["source"] for spec in li.runs.values()} == {"real"}


def test_empty_config_gets_every_default():
    cfg = validate({})
    assert cfg["node"]["fig1"]["step_sizes"][0] == 1.0
    assert cfg["node"]["attacks"]["pgd"]["steps"] == 20
    assert cfg["node"]["table1"]["runs"]["mnist"]["odenet"]["train"]["optimizer"]["name"] == "sgd"
    assert cfg["data"]["root"] == "resources/data"
    assert cfg["gm"]["recipes"]["cifar10"]["model"]["name"] == "dm_large"


@pytest.mark.parametrize(
    "override, key",
    [
        ({"node": {"fig1": {"train": {"epocs": 3}}}}, "node.fig1.train: Additional properties are not allowed ('epocs'"),
        ({"node": {"fig1": {"train": {"epochs": 0}}}}, "node.fig1.train.epochs: 0 is less than the minimum of 1"),
        ({"device": "tpu"}, "device: 'tpu' does not match"),
        ({"node": {"fig1": {"eps": "8/2x"}}}, "node.fig1.eps:"),
        ({"data": {"cifar10": {"source": "fake"}}}, "data.cifar10.source: 'fake' is not one of"),
        ({"node": {"fig1": {"model": {"name": "resnet56", "widht": 3}}}}, "node.fig1.model.widht: unknown parameter"),
        ({"node": {"fig1": {"model": {"name": "resnet5000"}}}}, "node.fig1.model.name: unknown model 'resnet5000'"),
        ({"node": {"fig1": {"train": {"objective": {"name": "pgd_at", "epsilon": 0.1}}}}}, "node.fig1.train.objective.epsilon: unknown parameter"),
        ({"node": {"fig1": {"train": {"objective": {"name": "magic"}}}}}, "node.fig1.train.objective.name: unknown objective 'magic'"),
        ({"node": {"attacks": {"fgsm": {"name": "fgsm", "steps": 3}}}}, "node.attacks.fgsm.steps: unknown parameter"),
        ({"papers": ["node", "ssp2"]}, "papers.1: unknown paper 'ssp2'"),
        ({"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "kapa_end": 0.3}}}}}}, "gm.recipes.mnist.methods.ibp.kapa_end: unknown parameter"),
        ({"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "beta_end": 0.3}}}}}}, "gm.recipes.mnist.methods.ibp.beta_end: unknown parameter"),
        ({"gm": {"recipes": {"mnist": {"trian": {}}}}}, "gm.recipes.mnist: Additional properties are not allowed ('trian'"),
        (
            {"node": {"fig1": {"train": {"objective": {"name": "natural", "eps": 0.1}}}}},
            "node.fig1.train.objective.eps: unknown parameter; this component takes no parameters",
        ),
        ({"gm": {"eval": {"attack": {"name": "pgd", "stpes": 3}}}}, "gm.eval.attack.stpes: unknown parameter"),
        ({"tier": "huge"}, "tier: 'huge' is not one of"),
    ],
)
def test_bad_config_names_the_key(repo_root, override, key):
    with pytest.raises(ConfigError) as err:
        load(repo_root / "config/config.yaml", overrides=override)
    assert key in str(err.value)


def test_all_errors_reported_at_once(repo_root):
    with pytest.raises(ConfigError) as err:
        load(repo_root / "config/config.yaml", overrides={"seed": -1, "node": {"eval_batch_size": 0, "fig1": {"model": {"name": "resnet56", "widht": 3}}}})
    msg = str(err.value)
    assert "seed" in msg and "node.eval_batch_size" in msg and "node.fig1.model.widht" in msg


def _props(node, path=""):
    """Every (path, property schema, required) below ``node``, following $refs."""
    sch = schema()

    def deref(s):
        while "$ref" in s:
            s = {**sch["$defs"][s["$ref"].split("/")[-1]], **{k: v for k, v in s.items() if k != "$ref"}}
        return s

    def walk(s, p):
        s = deref(s)
        req = set(s.get("required", []))
        for k, sub in s.get("properties", {}).items():
            yield f"{p}.{k}".strip("."), sub, deref(sub), k in req
            yield from walk(sub, f"{p}.{k}")
        if isinstance(s.get("additionalProperties"), dict):
            yield from walk(s["additionalProperties"], f"{p}.*")

    return list(walk(node, path))


def test_every_schema_key_has_description_and_default():
    sch = schema()
    assert sch["$schema"].endswith("2020-12/schema")
    missing = []
    cond = set(sch["$defs"]["attack"]["then"]["properties"])  # PGD defaults apply to PGD only
    for path, raw, resolved, required in _props(sch):
        if not ("description" in raw or "description" in resolved):
            missing.append(f"{path}: description")
        if not required and "default" not in raw and "default" not in resolved and path.split(".")[-1] not in cond:
            missing.append(f"{path}: default")
    assert not missing, missing
    # additionalProperties: false on every object with fixed keys
    for path, _raw, resolved, _ in _props(sch):
        if resolved.get("type") == "object" and "properties" in resolved and path.split(".")[-1] not in ("model", "objective", "attack"):
            assert resolved.get("additionalProperties") is False or isinstance(resolved.get("additionalProperties"), dict), path


def test_snakemake_stops_before_any_job_on_a_bad_config(repo_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"node": {"fig1": {"train": {"epocs": 3}}}}))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml", str(bad)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "node.fig1.train" in out and "epocs" in out
    assert "Job stats" not in out


def test_validation_does_not_mutate_a_valid_config_beyond_defaults(repo_root):
    cfg = load(repo_root / "config/config.yaml")
    again = validate(copy.deepcopy(cfg))
    assert again == cfg
