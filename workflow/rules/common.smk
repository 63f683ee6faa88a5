# Helpers for the workflow: configuration (composed and validated before any job starts), the plan
# of runs, jobs and targets, and the input/param functions the rules call. No rules here.

import json
import os
import shlex
import sys
from pathlib import Path

from robrepro.config import ConfigError, compose
from robrepro.plan import Plan
from robrepro.runtimes import Runtimes, outputs as runtimes_outputs

try:
    # Each paper's own configuration files (config/papers/) under the user's configuration.
    _composed = compose(config, Path(workflow.basedir) / "config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_composed)

PLAN = Plan(config)
P = PLAN.paths


wildcard_constraints:
    **PLAN.wildcard_values(),
    run="[A-Za-z0-9_.+-]+",
    name="[A-Za-z0-9_.+-]+",


# Jobs run `python -m robrepro`: the interpreter running Snakemake (the project's environment) comes
# first on PATH, unless a conda environment is activated on top of it (--sdm conda).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

SRC = Path(workflow.basedir) / "src" / "robrepro"


def code_files(*modules):
    """Package files a job runs: declared as inputs so that a code change re-runs what it affects
    (Snakemake's code trigger sees only rule bodies, not imported modules)."""
    out = []
    for m in ("__init__.py", "results.py", "registry.py", "data.py", "engine.py", "models", *modules):
        p = SRC / m
        out += sorted(str(f) for f in p.glob("*.py")) if p.is_dir() else [str(p)]
    return sorted(set(out))


TRAIN_CODE = code_files("attacks", "objectives", "bounds.py", "schedules.py")


def job_code(wildcards):
    kind = PLAN.kinds[wildcards.kind]
    return code_files("evaluations/__init__.py", *kind.modules)


def report_code(paper):
    published = SRC / "published" / f"{paper}.csv"
    return code_files("reporting.py", f"papers/{paper}.py") + ([str(published)] if published.exists() else [])


# Per-job time limits measured by the cost model (`snakemake cost`), when its file exists: each job
# then asks the scheduler for its predicted time x a safety factor (robrepro.runtimes) instead of its
# kind's resources.<kind>.runtime, which stays the limit of any job the file does not name.
RUNTIMES = Runtimes(runtimes_outputs(P.root)["runtimes"])


def res(kind, key):
    r = config["resources"]
    value = r.get(kind, r["attack"])[key]
    if key != "runtime" or not RUNTIMES:
        return value
    # Training has no `kind` wildcard; evaluation and standalone jobs do (`run` only the former).
    return lambda wildcards: RUNTIMES.runtime(value, wildcards.paper, wildcards.get("run"), wildcards.get("kind"), wildcards.get("name"))


def kind_res(key):
    def get(wildcards):
        value = res(PLAN.kinds[wildcards.kind].resources, key)
        return value(wildcards) if callable(value) else value

    return get


def dataset_manifest(wildcards):
    return P.data(PLAN.train_spec(wildcards.paper, wildcards.run)["data"]["name"])


def job_manifest(wildcards):
    return P.data(PLAN.job_spec(wildcards.paper, None, wildcards.kind, wildcards.name)["data"]["name"])


def train_spec_json(wildcards):
    return json.dumps(PLAN.train_spec(wildcards.paper, wildcards.run), sort_keys=True)


def eval_spec_json(wildcards):
    return json.dumps(PLAN.job_spec(wildcards.paper, wildcards.run, wildcards.kind, wildcards.name), sort_keys=True)


def standalone_spec_json(wildcards):
    return json.dumps(PLAN.job_spec(wildcards.paper, None, wildcards.kind, wildcards.name), sort_keys=True)


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
