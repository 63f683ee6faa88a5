"""Translate a Snakemake job's resources into submitit/sbatch parameters.

Resource names follow the official snakemake-executor-plugin-slurm where it has
one (``slurm_partition``, ``slurm_account``, ``slurm_qos``, ``constraint``,
``slurm_extra``, ``gres``, ``gpu``, ``gpu_model``, ``cpus_per_task``,
``mem_mb_per_cpu``), so a profile's ``default-resources`` / ``set-resources``
work with either plugin. Kept free of Snakemake objects so it can be unit-tested.
"""

import shlex
from collections.abc import Mapping
from typing import Any

DEFAULT_RUNTIME_MIN = 60


def _int(value: Any) -> int | None:
    """Resources arrive as int, float or str; None/''/0 mean "not set"."""
    if value is None or value == "":
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def parse_sbatch_flags(text: str | None) -> dict[str, Any]:
    """'--mail-type=FAIL --exclusive --comment "a b"' -> {'mail-type': 'FAIL', 'exclusive': True, ...}.

    Only long options are accepted: submitit writes each as '#SBATCH --key=value'.
    """
    flags: dict[str, Any] = {}
    tokens = shlex.split(text or "")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"sbatch flag {token!r}: write long options (--key=value), e.g. --gres=gpu:1")
        key, sep, value = token[2:].partition("=")
        if sep:
            flags[key] = value
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            flags[key] = tokens[i + 1]
            i += 1
        else:
            flags[key] = True
        i += 1
    return flags


def submission_parameters(
    resources: Mapping[str, Any],
    threads: int,
    settings: Any,
    cluster: str,
    name: str,
    comment: str = "",
) -> dict[str, Any]:
    """Parameters for ``submitit.AutoExecutor.update_parameters``.

    ``settings`` is the plugin's ExecutorSettings (site defaults); rule resources win.
    Cluster-specific keys carry the ``<cluster>_`` prefix AutoExecutor expects, and
    are only emitted for the cluster in use (AutoExecutor would ignore the others,
    but e.g. 'local' rejects unknown keys).
    """
    runtime = _int(resources.get("runtime")) or DEFAULT_RUNTIME_MIN
    cpus = _int(resources.get("cpus_per_task")) or _int(threads) or 1
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": runtime,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": cpus,
    }
    mem_mb = _int(resources.get("mem_mb"))
    if mem_mb:
        params["mem_gb"] = mem_mb / 1024

    gpus = _int(resources.get("gpu")) or _int(resources.get("gpus"))
    gpu_model = resources.get("gpu_model") or None
    gres = resources.get("gres") or None

    if cluster == "local":
        if gpus:
            params["gpus_per_node"] = gpus  # LocalExecutor sets CUDA_VISIBLE_DEVICES=0..n-1
        if settings.setup:
            params["local_setup"] = [settings.setup]
        return params

    slurm: dict[str, Any] = {}
    if gres:
        slurm["gres"] = str(gres)
    elif gpus:
        if settings.gpu_flag == "gres" or gpu_model:
            slurm["gres"] = f"gpu:{gpu_model}:{gpus}" if gpu_model else f"gpu:{gpus}"
        else:
            params["gpus_per_node"] = gpus

    site = {
        "partition": resources.get("slurm_partition") or settings.partition,
        "account": resources.get("slurm_account") or settings.account,
        "qos": resources.get("slurm_qos") or settings.qos,
        "constraint": resources.get("constraint") or settings.constraint,
    }
    slurm.update({k: str(v) for k, v in site.items() if v})

    mem_per_cpu = _int(resources.get("mem_mb_per_cpu"))
    if mem_per_cpu and not mem_mb:
        slurm["mem_per_cpu"] = f"{mem_per_cpu}M"
    if comment:
        slurm["comment"] = comment
    if settings.setup:
        slurm["setup"] = [settings.setup]
    # Signal early enough to checkpoint, but never before the job had half its time.
    slurm["signal_delay_s"] = max(10, min(int(settings.signal_delay_s), runtime * 60 // 2))

    extra = parse_sbatch_flags(settings.sbatch_extra)
    extra.update(parse_sbatch_flags(resources.get("slurm_extra")))
    if extra:
        slurm["additional_parameters"] = extra

    params.update({f"slurm_{k}": v for k, v in slurm.items()})
    return params
