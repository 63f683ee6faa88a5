# Helpers for the workflow: configuration validation (before any job starts), the plan of runs,
# and the input/param functions the rules call. No rules here.

import json
import os
import shlex
import sys
from pathlib import Path

from robrepro.config import ConfigError, validate as _validate_config
from robrepro.plan import Plan

try:
    _validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

PLAN = Plan(config)

# Jobs run `python -m robrepro`: the interpreter running Snakemake (the project's environment) comes
# first on PATH, unless a conda environment is activated on top of it (--sdm conda).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

SRC = Path(workflow.basedir) / "src" / "robrepro"


def code_files(*modules):
    """Package files a job runs: declared as inputs so that a code change re-runs what it affects
    (Snakemake's code trigger sees only rule bodies, not imported modules)."""
    out = []
    for m in ("__init__.py", "results.py", *modules):
        p = SRC / m
        out += sorted(str(f) for f in p.glob("*.py")) if p.is_dir() else [str(p)]
    return out


TRAIN_CODE = code_files("engine.py", "data.py", "attacks.py", "models", "objectives")
ATTACK_CODE = code_files("engine.py", "data.py", "attacks.py", "models")
VERIFY_CODE = ATTACK_CODE + code_files("bounds.py", "evaluate.py")
REPORT_CODE = code_files("reporting.py") + sorted(str(f) for f in (SRC / "published").glob("*.csv"))


def res(kind, key):
    return config["resources"][kind][key]


def dataset_manifest(wildcards):
    return f"results/data/{PLAN.train_spec(wildcards.paper, wildcards.run)['data']['name']}.json"


def train_spec_json(wildcards):
    return json.dumps(PLAN.train_spec(wildcards.paper, wildcards.run), sort_keys=True)


def eval_spec_json(wildcards):
    return json.dumps(PLAN.eval_spec(wildcards.paper, wildcards.run, wildcards.attack), sort_keys=True)


def verify_spec_json(wildcards):
    return json.dumps(PLAN.verify_spec(wildcards.paper, wildcards.run), sort_keys=True)


def data_args(wildcards):
    d = config["data"]
    args = ["--source", d[wildcards.dataset]["source"], "--root", d["root"]]
    for m in d["mirrors"]:
        args += ["--mirror", m]
    if not d["download"]:
        args.append("--no-download")
    return shlex.join(args)


def json_param(obj):
    return json.dumps(obj, sort_keys=True)
