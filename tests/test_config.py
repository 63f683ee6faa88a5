"""Configuration: both tiers validate, defaults come from the schema, bad keys and values are named."""

import copy
import re
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
    # Same experiments, other scale: the smoke tier runs a subset of the paper tier's runs (e.g. 3 of
    # Fig. 1's 11 step sizes), every experiment among them.
    experiments = lambda plan: {plan.runs[("node", r)]["experiment"] for r in node(plan)}  # noqa: E731
    assert node(s) <= node(p) and experiments(s) == experiments(p)
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


# One row per bad configuration: (id, override merged into config/config.yaml, text the error must contain).
# The text names the key by its full path. A new paper adds rows for its section here.
BAD_CONFIGS = [
    # --- SSP and TRDNN sections
    ("ssp-misspelled-key", {"ssp": {"tabel_mnist": {}}}, "ssp: Additional properties are not allowed ('tabel_mnist'"),
    ("trdnn-misspelled-key", {"trdnn": {"landscap": {}}}, "trdnn: Additional properties are not allowed ('landscap'"),
    # --- top level
    ("top-misspelled-key", {"seeds": 1}, "<top level>: Additional properties are not allowed ('seeds' was unexpected)"),
    ("top-seed-type", {"seed": "one"}, "seed: 'one' is not of type 'integer'"),
    ("top-seed-range", {"seed": -1}, "seed: -1 is less than the minimum of 0"),
    ("top-device", {"device": "tpu"}, "device: 'tpu' does not match"),
    ("top-tier", {"tier": "huge"}, "tier: 'huge' is not one of"),
    ("top-unknown-paper", {"papers": ["node", "ssp2"]}, "papers.1: unknown paper 'ssp2'"),
    ("top-papers-type", {"papers": "node"}, "papers: 'node' is not of type 'array', 'null'"),
    # --- data
    ("data-misspelled-key", {"data": {"mirors": []}}, "data: Additional properties are not allowed ('mirors' was unexpected)"),
    ("data-unknown-dataset", {"data": {"svhn": {}}}, "data: Additional properties are not allowed ('svhn' was unexpected)"),
    ("data-misspelled-dataset-key", {"data": {"mnist": {"sourc": "real"}}}, "data.mnist: Additional properties are not allowed ('sourc' was unexpected)"),
    ("data-source-enum", {"data": {"cifar10": {"source": "fake"}}}, "data.cifar10.source: 'fake' is not one of"),
    ("data-std-zero", {"data": {"mnist": {"std": [0]}}}, "data.mnist.std.0: 0 is less than or equal to the minimum of 0"),
    ("data-test-limit-range", {"data": {"mnist": {"test_limit": 0}}}, "data.mnist.test_limit: 0 is less than the minimum of 1"),
    ("data-mirrors-type", {"data": {"mirrors": "x"}}, "data.mirrors: 'x' is not of type 'array'"),
    ("data-no-synthetic-iris", {"data": {"iris": {"source": "synthetic"}}}, "data.iris.source: iris has no synthetic stand-in"),
    # --- resources
    ("resources-misspelled-key", {"resources": {"train": {"gpus": 1}}}, "resources.train: Additional properties are not allowed ('gpus' was unexpected)"),
    ("resources-runtime-range", {"resources": {"train": {"runtime": 0}}}, "resources.train.runtime: 0 is less than the minimum of 1"),
    ("resources-unknown-kind", {"resources": {"atack": {"gpu": 1}}}, "resources.atack: unknown kind of job; known: attack, train"),
    ("resources-threads-type", {"resources": {"attack": {"threads": 1.5}}}, "resources.attack.threads: 1.5 is not of type 'integer'"),
    # --- node
    ("node-misspelled-key", {"node": {"eval_batch_sise": 3}}, "node: Additional properties are not allowed ('eval_batch_sise' was unexpected)"),
    ("node-batch-range", {"node": {"eval_batch_size": 0}}, "node.eval_batch_size: 0 is less than the minimum of 1"),
    ("node-train-misspelled", {"node": {"fig1": {"train": {"epocs": 3}}}}, "node.fig1.train: Additional properties are not allowed ('epocs'"),
    ("node-epochs-range", {"node": {"fig1": {"train": {"epochs": 0}}}}, "node.fig1.train.epochs: 0 is less than the minimum of 1"),
    ("node-batch-type", {"node": {"fig1": {"train": {"batch_size": "big"}}}}, "node.fig1.train.batch_size: 'big' is not of type 'integer'"),
    ("node-optimizer-enum", {"node": {"fig1": {"train": {"optimizer": {"name": "rmsprop"}}}}}, "node.fig1.train.optimizer.name: 'rmsprop' is not one of"),
    ("node-lr-range", {"node": {"fig1": {"train": {"optimizer": {"lr": 0}}}}}, "node.fig1.train.optimizer.lr: 0 is less than or equal to the minimum of 0"),
    (
        "node-augment-misspelled",
        {"node": {"fig1": {"train": {"augment": {"crop": 4}}}}},
        "node.fig1.train.augment: Additional properties are not allowed ('crop'",
    ),
    ("node-schedule-enum", {"node": {"fig1": {"train": {"lr_schedule": {"name": "step"}}}}}, "node.fig1.train.lr_schedule.name: 'step' is not one of"),
    ("node-eps-string", {"node": {"fig1": {"eps": "8/2x"}}}, "node.fig1.eps: '8/2x' is not valid under any of the given schemas"),
    ("node-eps-negative", {"node": {"fig1": {"eps": -0.1}}}, "node.fig1.eps: -0.1 is not valid under any of the given schemas"),
    ("node-step-size-range", {"node": {"fig1": {"step_sizes": [-1]}}}, "node.fig1.step_sizes.0: -1 is less than the minimum of 0"),
    ("node-model-param", {"node": {"fig1": {"model": {"name": "resnet56", "widht": 3}}}}, "node.fig1.model.widht: unknown parameter; allowed: depth, h, width"),
    ("node-model-name", {"node": {"fig1": {"model": {"name": "resnet5000"}}}}, "node.fig1.model.name: unknown model 'resnet5000'"),
    (
        "node-deep-model-param",
        {"node": {"table1": {"runs": {"mnist": {"odenet": {"model": {"name": "odenet", "chanels": 3}}}}}}},
        "node.table1.runs.mnist.odenet.model.chanels: unknown parameter",
    ),
    ("node-runs-dataset", {"node": {"table1": {"runs": {"svhn": {}}}}}, "node.table1.runs: Additional properties are not allowed ('svhn'"),
    ("node-dataset-enum", {"node": {"table1": {"datasets": ["svhn"]}}}, "node.table1.datasets.0: 'svhn' is not one of"),
    ("node-eps-list-empty", {"node": {"table1": {"eps_grid": {"mnist": []}}}}, "node.table1.eps_grid.mnist: [] should be non-empty"),
    (
        "node-objective-param",
        {"node": {"fig1": {"train": {"objective": {"name": "pgd_at", "epsilon": 0.1}}}}},
        "node.fig1.train.objective.epsilon: unknown parameter",
    ),
    ("node-objective-name", {"node": {"fig1": {"train": {"objective": {"name": "magic"}}}}}, "node.fig1.train.objective.name: unknown objective 'magic'"),
    (
        "node-param-for-parameterless-objective",
        {"node": {"fig1": {"train": {"objective": {"name": "natural", "eps": 0.1}}}}},
        "node.fig1.train.objective.eps: unknown parameter; this component takes no parameters",
    ),
    (
        "node-attack-param-fgsm",
        {"node": {"attacks": {"fgsm": {"name": "fgsm", "steps": 3}}}},
        "node.attacks.fgsm.steps: unknown parameter; this component takes no",
    ),
    ("node-attack-name", {"node": {"attacks": {"cw": {"name": "cw"}}}}, "node.attacks.cw.name: unknown attack 'cw'"),
    ("node-attack-steps-range", {"node": {"attacks": {"pgd": {"name": "pgd", "steps": 0}}}}, "node.attacks.pgd.steps: 0 is less than the minimum of 1"),
    ("node-attack-misspelled", {"node": {"attacks": {"pgd": {"name": "pgd", "setps": 5}}}}, "node.attacks.pgd.setps: unknown parameter"),
    # --- gm
    ("gm-misspelled-key", {"gm": {"table3x": {}}}, "gm: Additional properties are not allowed ('table3x' was unexpected)"),
    ("gm-recipe-misspelled", {"gm": {"recipes": {"mnist": {"trian": {}}}}}, "gm.recipes.mnist: Additional properties are not allowed ('trian'"),
    ("gm-recipe-dataset", {"gm": {"recipes": {"svhn": {}}}}, "gm.recipes: Additional properties are not allowed ('svhn'"),
    (
        "gm-method-misspelled",
        {"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "kapa_end": 0.3}}}}}},
        "gm.recipes.mnist.methods.ibp.kapa_end: unknown parameter",
    ),
    (
        "gm-method-param-of-other",
        {"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "beta_end": 0.3}}}}}},
        "gm.recipes.mnist.methods.ibp.beta_end: unknown parameter",
    ),
    (
        "gm-method-gm-param",
        {"gm": {"recipes": {"cifar10": {"methods": {"gm_crown_ibp": {"name": "gm_crown_ibp", "gm_nn": 3}}}}}},
        "gm.recipes.cifar10.methods.gm_crown_ibp.gm_nn: unknown parameter",
    ),
    (
        "gm-method-parameterless",
        {"gm": {"recipes": {"mnist": {"methods": {"plain": {"name": "natural", "start": 3}}}}}},
        "gm.recipes.mnist.methods.plain.start: unknown parameter; this component takes no parameters",
    ),
    ("gm-method-name", {"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibb"}}}}}}, "gm.recipes.mnist.methods.ibp.name: unknown objective 'ibb'"),
    (
        "gm-model-param",
        {"gm": {"recipes": {"mnist": {"model": {"name": "dm_large", "widht": 2}}}}},
        "gm.recipes.mnist.model.widht: unknown parameter; allowed: linear_size, width",
    ),
    ("gm-normalize-required", {"gm": {"recipes": {"cifar10": {"normalize": {"mean": [0.0]}}}}}, "gm.recipes.cifar10.normalize: 'std' is a required property"),
    ("gm-eval-attack-param", {"gm": {"eval": {"attack": {"name": "pgd", "stpes": 3}}}}, "gm.eval.attack.stpes: unknown parameter"),
    ("gm-eval-bounds-enum", {"gm": {"eval": {"bounds": ["lp"]}}}, "gm.eval.bounds.0: 'lp' is not one of"),
    ("gm-eval-batch-range", {"gm": {"eval": {"batch_size": 0}}}, "gm.eval.batch_size: 0 is less than the minimum of 1"),
    (
        "gm-setting-required",
        {"gm": {"table3": {"settings": [{"dataset": "mnist", "eps_train": 0.1}]}}},
        "gm.table3.settings.0: 'eps_eval' is a required property",
    ),
    (
        "gm-setting-misspelled",
        {"gm": {"table3": {"settings": [{"dataset": "mnist", "eps_train": 0.1, "eps_eval": [0.1], "eps_tran": 1}]}}},
        "gm.table3.settings.0: Additional properties are not allowed ('eps_tran'",
    ),
    ("gm-eval-step-negative", {"gm": {"fig3": {"eval_step": {"mnist": -0.1}}}}, "gm.fig3.eval_step.mnist: -0.1 is not valid under any of the given schemas"),
    ("gm-sizes-range", {"gm": {"fig4": {"sizes": [0]}}}, "gm.fig4.sizes.0: 0 is less than the minimum of 1"),
    ("gm-weight-enum", {"gm": {"fig4": {"weight_types": ["square"]}}}, "gm.fig4.weight_types.0: 'square' is not one of"),
    ("gm-enabled-type", {"gm": {"nominal": {"enabled": "yes"}}}, "gm.nominal.enabled: 'yes' is not of type 'boolean'"),
    # --- objective parameter values: ranges and enums, checked by building the objective at config time
    (
        "gm-method-kappa-range",
        {"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "kappa_start": 1.5}}}}}},
        "gm.recipes.mnist.methods.ibp.kappa_start: kappa_start must lie in [0, 1], got 1.5",
    ),
    (
        "gm-method-weight-enum",
        {"gm": {"recipes": {"mnist": {"methods": {"gm_crown_ibp": {"name": "gm_crown_ibp", "gm_weight": "cubic"}}}}}},
        "gm.recipes.mnist.methods.gm_crown_ibp.gm_weight: gm_weight: unknown GM weight 'cubic'",
    ),
    (
        "gm-method-schedule-enum",
        {"gm": {"recipes": {"cifar10": {"methods": {"ibp": {"name": "ibp", "schedule": "cosine"}}}}}},
        "gm.recipes.cifar10.methods.ibp.schedule: schedule: unknown eps schedule 'cosine'",
    ),
    (
        "ssp-ball-copies-range",
        {"ssp": {"mnist": {"recipes": {"ball": {"objective": {"name": "ball", "copies": 0}}}}}},
        "ssp.mnist.recipes.ball.objective.copies: ball: copies must be >= 1",
    ),
]


@pytest.mark.parametrize("override, key", [pytest.param(o, k, id=i) for i, o, k in BAD_CONFIGS])
def test_bad_config_names_the_key(repo_root, override, key):
    with pytest.raises(ConfigError) as err:
        load(repo_root / "config/config.yaml", overrides=override)
    assert key in str(err.value)


def test_the_table_covers_every_section():
    """At least 30 cases, and every paper and shared section has a row (a new paper must add its own)."""
    from robrepro import papers

    assert len(BAD_CONFIGS) >= 30 and len({i for i, _, _ in BAD_CONFIGS}) == len(BAD_CONFIGS)
    sections = {next(iter(o)) for _, o, _ in BAD_CONFIGS}
    assert {"data", "resources", "seed", *papers.registry()} <= sections, sections


def test_no_constructor_the_config_reaches_takes_kwargs():
    """A ``**kwargs`` catch-all would let any misspelled key through the config check (it accepts
    nothing there) and fail, or be ignored, inside a job: no registered component may have one."""
    import inspect

    from robrepro import attacks, models, objectives

    fns = {f"model {n}": f for n, f in models.registry().items()}
    fns |= {f"objective {n}": c.__init__ for n, c in objectives.registry().items()}
    fns |= {f"attack {n}": a.fn for n, a in attacks.registry().items()}
    bad = [w for w, f in fns.items() if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in inspect.signature(f).parameters.values())]
    assert not bad, f"constructors with *args/**kwargs: {bad}"


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


def test_an_out_of_range_objective_parameter_is_a_config_error(repo_root):
    with pytest.raises(ConfigError, match=r"gm\.recipes\.mnist\.methods\.ibp\.kappa_start"):
        load(repo_root / "config/config.yaml", overrides={"gm": {"recipes": {"mnist": {"methods": {"ibp": {"name": "ibp", "kappa_start": 1.5}}}}}})


# A sample of the table, one row per section, checked through Snakemake itself: all in one file
# (every error is listed at once), so one subprocess covers them.
SNAKEMAKE_SAMPLE = ["node-train-misspelled", "gm-method-misspelled", "gm-method-parameterless", "data-misspelled-dataset-key", "resources-misspelled-key"]


def test_snakemake_stops_before_any_job_on_a_bad_config(repo_root, tmp_path):
    from robrepro.config import merge

    rows = {i: (o, k) for i, o, k in BAD_CONFIGS}
    bad = {}
    for i in SNAKEMAKE_SAMPLE:
        merge(bad, rows[i][0])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml", str(tmp_path / "bad.yaml")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    for i in SNAKEMAKE_SAMPLE:
        assert rows[i][1] in out, (i, out[-3000:])
    assert "Job stats" not in out and "rule train" not in out


def test_validation_does_not_mutate_a_valid_config_beyond_defaults(repo_root):
    cfg = load(repo_root / "config/config.yaml")
    again = validate(copy.deepcopy(cfg))
    assert again == cfg


# Profile settings whose keys are rule names, and the one whose keys (``name=N``) are group names.
RULE_KEYED = ("set-resources", "set-threads")
PROFILES = ("profiles/*/config.yaml", "slurm/config.yaml")


def _profile_settings(text: str) -> list[dict]:
    """A profile's settings, and each commented-out example block among them (``# set-resources:`` and
    the deeper-indented comment lines below it): a user uncomments those as they stand."""
    docs = [yaml.safe_load(text) or {}]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"#\s?({'|'.join(RULE_KEYED)}|group-components):", line):
            block = [line.split("#", 1)[1].strip()]
            for nxt in lines[i + 1 :]:
                if not re.match(r"#\s{2,}\S", nxt):
                    break
                block.append(nxt[2:])
            docs.append(yaml.safe_load("\n".join(block)))
    return docs


def _workflow_rules_and_groups(repo_root) -> tuple[set[str], set[str]]:
    """Rule names: the named ``rule x:`` of the rule files, and the generated ones (every target and
    every paper, from the plan, as workflow/rules/targets.smk makes them); groups from ``group:``."""
    text = "\n".join(f.read_text() for f in [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))])
    rules = set(re.findall(r"^rule (\w+):", text, flags=re.M))
    plan = Plan(load(repo_root / "config/config.yaml"))
    rules |= set(plan.targets) | set(plan.papers)
    groups = set(re.findall(r"^\s+group:\s*\n\s+\"(\w+)\"", text, flags=re.M))
    return rules, groups


def test_every_rule_and_group_a_profile_names_exists(repo_root):
    rules, groups = _workflow_rules_and_groups(repo_root)
    assert {"train", "evaluate", "standalone", "prepare_data", "report"} <= rules and groups == {"eval"}
    bad, seen = [], 0
    for f in sorted(p for pattern in PROFILES for p in repo_root.glob(pattern)):
        for doc in _profile_settings(f.read_text()):
            for key in RULE_KEYED:
                entries = doc.get(key) or {}
                # Either {rule: {...}} or ["rule:resource=value", ...] (as on the command line).
                names = list(entries) if isinstance(entries, dict) else [str(e).split(":", 1)[0] for e in entries]
                seen += len(names)
                bad += [f"{f.relative_to(repo_root)}: {key} names rule {n!r}" for n in names if n not in rules]
            comps = doc.get("group-components") or []
            for c in [comps] if isinstance(comps, str) else comps:
                seen += 1
                bad += [f"{f.relative_to(repo_root)}: group-components names group {c.split('=')[0]!r}"] if c.split("=")[0] not in groups else []
    assert seen >= 2, "no rule or group named in any profile: the check checked nothing"
    assert not bad, bad
