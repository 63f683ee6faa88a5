# Helpers for the workflow: configuration (composed and validated before any job starts), the plan
# of runs, jobs and targets, and the input/param functions the rules call. No rules here.

import copy
import functools
import json
import os
import shlex
import sys
from pathlib import Path

from robrepro.composed import compose_cached
from robrepro.failures import RERUN_VAR, on_failure, rerun_args
from robrepro.codestamp import code_stamp
from robrepro.plan import Plan
from robrepro.runtimes import Runtimes, outputs as runtimes_outputs

# Kept between parses: the composed configuration (robrepro.composed), each module's imports and
# the stamps of each job's code (robrepro.importgraph, robrepro.codestamp).
CACHE = Path(".snakemake") / "robrepro"
os.makedirs(CACHE, exist_ok=True)

# The user's configuration before composing: asked again at other tiers for a target absent at this one.
USER_CONFIG = copy.deepcopy(config)
try:
    # Each paper's own configuration files (config/papers/) under the user's configuration.
    _composed = compose_cached(config, Path(workflow.basedir) / "config", CACHE / "config")
except ValueError as err:
    from robrepro.config import ConfigError  # imported by composing: no cost here

    if not isinstance(err, ConfigError):
        raise
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
IMPORTS_CACHE = str(CACHE / "imports.json")
CODE_STAMPS = CACHE / "code"


@functools.cache
def code_files(*entries, extra=(), cli=True):
    """The code input of a job whose command enters through ``entries`` (modules): one stamp file
    standing for the package files it runs, from the package's import graph, and the ``extra`` files
    it reads (robrepro.codestamp). Declared as an input so that a code change re-runs exactly the
    jobs that import it (Snakemake's code trigger sees only rule bodies, not imported modules); one
    stamp instead of the files themselves, as declaring each file for each job costs most of a dry
    run. Written once per parse and set of files (cached here)."""
    return code_stamp(CODE_STAMPS, entries, str(SRC), IMPORTS_CACHE, extra=extra, cli=cli)


def job_code(wildcards):
    return code_files(PLAN.kinds[wildcards.kind].module)


TRAIN_CODE = code_files("robrepro.engine")


def report_code(paper, builder):
    published = SRC / "published" / f"{paper}.csv"
    return code_files(builder.partition(":")[0], extra=(str(published),) if published.exists() else ())


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


# Execution settings: where and how the jobs run, not what they compute. They reach the commands
# through the environment (each job's shell inherits it; on a cluster each job parses this file
# again), never as params or in a command's text: Snakemake's rerun triggers compare both, so
# switching device or moving the data folder would re-run everything. A command unpacks them with
# `eval "set -- $ROBREPRO_..."` (shell-quoted here) and passes them on; each result records them
# in its provenance.
_run_args = ["--data-root", config["data"]["root"], "--device", config["device"]]
_data_args = (
    ["--root", config["data"]["root"]]
    + [a for m in config["data"]["mirrors"] for a in ("--mirror", m)]
    + ([] if config["data"]["download"] else ["--no-download"])
)
os.environ["ROBREPRO_RUN_ARGS"] = shlex.join(_run_args)
os.environ["ROBREPRO_DATA_ARGS"] = shlex.join(_data_args)


# Passed on to jobs that run elsewhere (a cluster's nodes), as PATH is (Snakefile).
envvars:
    "ROBREPRO_RUN_ARGS",
    "ROBREPRO_DATA_ARGS",


def json_param(obj):
    return json.dumps(obj, sort_keys=True)


# A failed job prints its log's tail and a `snakemake <output>` line that reruns it, with the run's
# --configfile files (robrepro.failures; every rule's command is wrapped with on_failure).
os.environ[RERUN_VAR] = rerun_args(workflow.overwrite_configfiles)


def target_of_other_tiers(wildcards):
    """Input of the catch-all target of targets.smk, asked for a bare name nothing else produces.
    Fails at once, when the DAG is built, naming the tiers that build it (robrepro.tier_targets)."""
    from robrepro.tier_targets import absent_message

    raise WorkflowError(absent_message(wildcards.target, USER_CONFIG, Path(workflow.basedir) / "config", CACHE / "config"))
