"""Executor settings: the site-specific knobs of a profile.

Each field ``x_y`` becomes the command-line option ``--submitit-x-y`` and the
profile key ``submitit-x-y`` (see ``slurm/config.yaml``). Per-rule resources
(``slurm_partition``, ``slurm_account``, ...) override these site defaults.

No ``from __future__ import annotations`` here: Snakemake reads the field types at
run time to build its argument parser.
"""

from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    cluster: str = field(
        default="slurm",
        metadata={
            "help": "submitit backend: 'slurm' (sbatch/sacct), 'local' (subprocesses on this machine, no SLURM needed) or 'auto' (slurm when srun is on PATH).",
            "choices": ["slurm", "local", "auto"],
        },
    )
    partition: Optional[str] = field(
        default=None,
        metadata={"help": "Default SLURM partition (-p); a rule's slurm_partition resource wins."},
    )
    account: Optional[str] = field(
        default=None,
        metadata={"help": "SLURM account (-A); a rule's slurm_account resource wins."},
    )
    qos: Optional[str] = field(
        default=None,
        metadata={"help": "SLURM quality of service (--qos); a rule's slurm_qos resource wins."},
    )
    constraint: Optional[str] = field(
        default=None,
        metadata={"help": "SLURM node constraint (-C), e.g. 'a100|h100'; a rule's constraint resource wins."},
    )
    sbatch_extra: Optional[str] = field(
        default=None,
        metadata={"help": "Extra sbatch flags for every job, e.g. '--mail-type=FAIL --exclusive'. A rule's slurm_extra resource is added after these."},
    )
    setup: Optional[str] = field(
        default=None,
        metadata={
            "help": "Shell lines run in the batch script before the job (separate lines with ';'), e.g. 'module load cuda/12.4; source .venv/bin/activate'."
        },
    )
    gpu_flag: str = field(
        default="gpus-per-node",
        metadata={
            "help": "How the 'gpu' resource is requested: 'gpus-per-node' (--gpus-per-node=N) or 'gres' (--gres=gpu:N, for sites that want GRES syntax).",
            "choices": ["gpus-per-node", "gres"],
        },
    )
    signal_delay_s: int = field(
        default=120,
        metadata={"help": "Seconds before the time limit at which SLURM signals the job so it can be requeued (capped at half the job's runtime)."},
    )
    max_requeues: int = field(
        default=5,
        metadata={"help": "How many times one job may be requeued after hitting its time limit."},
    )
    folder: str = field(
        default=".snakemake/submitit",
        metadata={
            "help": "Folder (on the shared file system, relative to the working directory) for "
            "submitit logs and pickles, <folder>/<rule>/<jobid>_0_log.{out,err}, and for the "
            "registry of submitted jobs used to re-attach after a restart."
        },
    )
