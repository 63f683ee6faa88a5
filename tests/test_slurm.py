"""The SLURM profile and the submitit executor plugin against a real one-node cluster.

A session fixture starts tests/slurm/slurm-local.sh in a temporary folder (two
fake GPUs, sacct through slurmdbd + MariaDB, preemption) and stops every daemon
at the end. The toy workflow in tests/slurm/toy runs through a copy of the
repository's slurm/config.yaml, pointed at the test partition.

Tests marked ``slurm`` need that cluster. Without root or the Slurm packages they
skip; with ROBREPRO_REQUIRE_SLURM=1 (CI) the packages are installed if missing
and a cluster that cannot start fails them. The few unmarked tests (resource
mapping, the submitit-local profile) need no cluster.
"""

import filecmp
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

slurm = pytest.mark.slurm

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY = TESTS / "slurm" / "toy"
PROFILE = REPO / "slurm" / "config.yaml"
LOCAL_PROFILE = REPO / "profiles" / "submitit-local"


def _load_cluster_module():
    spec = importlib.util.spec_from_file_location("robrepro_tests_slurm_cluster", TESTS / "slurm" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cluster_mod = _load_cluster_module()
wait_for = cluster_mod.wait_for

# Each Snakemake run in these tests is short; a hung one must not eat CI's budget.
RUN_TIMEOUT_S = 300


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def slurm_cluster(request):
    required = os.environ.get("ROBREPRO_REQUIRE_SLURM") == "1"
    reason = cluster_mod.unavailable_reason()
    if reason and required and os.geteuid() == 0:
        cluster_mod.install()
        reason = cluster_mod.unavailable_reason()
    if reason:
        if required:
            pytest.fail(f"ROBREPRO_REQUIRE_SLURM=1 but no SLURM test cluster: {reason}")
        pytest.skip(f"no SLURM test cluster: {reason}")

    # Not pytest's tmp_path: munged wants every folder above its socket to be a+x,
    # and pytest's are 0700. A short path also keeps unix socket paths legal.
    root = Path(tempfile.mkdtemp(prefix="robrepro-slurm-"))
    root.chmod(0o755)
    cluster = cluster_mod.SlurmCluster(root=root)
    t0 = time.monotonic()
    try:
        cluster.start()
    except Exception as e:  # noqa: BLE001 - turned into a skip or a failure
        shutil.rmtree(root, ignore_errors=True)
        if required:
            pytest.fail(f"SLURM test cluster did not start: {e}")
        pytest.skip(f"SLURM test cluster did not start: {e}")
    print(f"\nTIMING cluster start: {time.monotonic() - t0:.1f} s ({cluster.root})")
    yield cluster
    t0 = time.monotonic()
    cluster.stop()
    print(f"\nTIMING cluster stop: {time.monotonic() - t0:.1f} s")
    if request.session.testsfailed:
        print(f"cluster state and logs kept for debugging: {root}/log")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def profile_dir(tmp_path_factory, slurm_cluster):
    """A copy of the real slurm/config.yaml, pointed at the test cluster's partition."""
    config = yaml.safe_load(PROFILE.read_text())
    assert config["executor"] == "submitit"
    config["submitit-partition"] = slurm_cluster.partition
    config["seconds-between-status-checks"] = 2  # a toy DAG; the real profile polls every 15 s
    path = tmp_path_factory.mktemp("profile")
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def _env(cluster=None):
    env = dict(cluster.env if cluster else os.environ)
    # the plugin (src/snakemake_executor_plugin_submitit) must be importable by
    # Snakemake here and inside the jobs (sbatch exports the environment)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def snakemake_cmd(*args):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(TOY / "Snakefile"), *args]


def run_snakemake(workdir, *args, cluster=None, timeout=RUN_TIMEOUT_S):
    """Run Snakemake to the end; returns (CompletedProcess, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run(snakemake_cmd(*args), cwd=workdir, env=_env(cluster), capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def start_snakemake(workdir, *args, cluster=None):
    """Start Snakemake in the background (output to workdir/snakemake.out)."""
    out = open(Path(workdir) / "snakemake.out", "w")
    proc = subprocess.Popen(snakemake_cmd(*args), cwd=workdir, env=_env(cluster), stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.out_path = Path(workdir) / "snakemake.out"
    return proc


def output_of(proc):
    return proc.out_path.read_text(errors="replace")


def explain(text, cluster=None):
    """Tail of a Snakemake output (plus the cluster's logs) for assertion messages."""
    tail = "\n".join(text.splitlines()[-60:])
    return tail + ("\n" + cluster.log_tail(15) if cluster else "")


def results(workdir):
    root = Path(workdir) / "results"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def reference_metrics(tmp_path, seed, steps):
    """Metrics of an uninterrupted training run (no Snakemake, no SLURM, no sleep)."""
    out = tmp_path / f"reference_seed{seed}.json"
    subprocess.run(
        [
            sys.executable,
            str(TOY / "scripts" / "train.py"),
            "--seed",
            str(seed),
            "--steps",
            str(steps),
            "--ckpt",
            str(tmp_path / f"reference_ckpt{seed}.json"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_text()


def starts(workdir, seed):
    """The (step, restart) of every (re)start of seed's training script."""
    path = Path(workdir) / "checkpoints" / f"train_seed{seed}.json.starts"
    rows = []
    for line in path.read_text().splitlines():
        fields = dict(item.split("=", 1) for item in line.split()[1:])
        rows.append((int(fields["step"]), int(fields["restart"])))
    return rows


def train_job(cluster, workdir, seed, states=("RUNNING",)):
    """squeue row of the train job of a seed submitted from workdir (found through its --comment)."""
    wd = str(Path(workdir).resolve())
    for job in cluster.squeue():
        if job["workdir"] == wd and f"rule train (seed={seed})" in job["comment"] and job["state"] in states:
            return job
    return None


def checkpoint_step(workdir, seed):
    path = Path(workdir) / "checkpoints" / f"train_seed{seed}.json"
    try:
        return json.loads(path.read_text())["step"]
    except (OSError, ValueError):
        return -1


def submitit_log(workdir, label, job_id):
    return (Path(workdir) / ".snakemake" / "submitit" / label / f"{job_id}_0_log.out").read_text()


def stop(proc, cluster=None, workdir=None):
    """Cleanup after a background Snakemake: kill it if still running, cancel its jobs."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if cluster is not None:
        cluster.cancel_jobs_in(workdir)


# ------------------------------------------------------------- the toy DAG, whole
@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """The toy workflow run locally (--cores 2): the reference outputs."""
    workdir = tmp_path_factory.mktemp("toy-local")
    proc, seconds = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, explain(proc.stdout + proc.stderr)
    print(f"\nTIMING toy DAG locally (--cores 2): {seconds:.1f} s")
    return workdir, seconds


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory, slurm_cluster, profile_dir):
    """The same toy workflow through the slurm profile."""
    workdir = tmp_path_factory.mktemp("toy-slurm")
    proc, seconds = run_snakemake(workdir, "--profile", str(profile_dir), cluster=slurm_cluster)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, explain(text, slurm_cluster)
    print(f"\nTIMING toy DAG through SLURM (--profile slurm copy): {seconds:.1f} s")
    return workdir, text, seconds


@slurm
def test_toy_workflow_through_slurm_profile_matches_local_run(local_run, slurm_run, slurm_cluster):
    local_dir, _ = local_run
    slurm_dir, text, _ = slurm_run
    files = results(local_dir)
    assert results(slurm_dir) == files
    compared = [f for f in files if f != "gpu.txt"]  # the GPU probe records where it ran
    _, mismatch, errors = filecmp.cmpfiles(local_dir / "results", slurm_dir / "results", compared, shallow=False)
    assert not mismatch and not errors, f"outputs differ: {mismatch} {errors}"

    jobs = slurm_cluster.jobs_in(slurm_dir)
    names = sorted(j["JobName"].rsplit("-", 1)[0] for j in jobs)
    # one SLURM job per train job and for the GPU probe; eval x2 + table grouped into one
    assert names == ["smk-gpu", "smk-group_report", "smk-train", "smk-train"], jobs
    assert all(j["State"] == "COMPLETED" for j in jobs), jobs
    assert "Submitted group report (3 jobs: eval, table)" in text
    # every job's log is named in Snakemake's output and exists
    for job in jobs:
        label = job["JobName"][len("smk-") :].rsplit("-", 1)[0]
        log = slurm_dir / ".snakemake" / "submitit" / label / f"{job['JobID']}_0_log.out"
        assert log.exists() and f"log: {log}" in text
    assert not list((slurm_dir / ".snakemake" / "submitit" / "registry").glob("*.json"))


@slurm
def test_gpu_rule_gets_a_gpu(slurm_run, slurm_cluster):
    slurm_dir, _, _ = slurm_run
    probe = dict(item.split("=", 1) for item in (slurm_dir / "results" / "gpu.txt").read_text().split())
    assert probe["CUDA_VISIBLE_DEVICES"] in {str(i) for i in range(slurm_cluster.gpus)}
    (gpu_job,) = [j for j in slurm_cluster.jobs_in(slurm_dir) if j["JobName"].startswith("smk-gpu-")]
    assert gpu_job["JobID"] == probe["SLURM_JOB_ID"]
    assert "gres/gpu=1" in gpu_job["AllocTRES"]
    others = [j for j in slurm_cluster.jobs_in(slurm_dir) if j is not gpu_job and j["JobID"] != gpu_job["JobID"]]
    assert all("gres/gpu" not in j["AllocTRES"] for j in others)


# ------------------------------------------------------ interruptions and resume
@slurm
def test_time_limit_and_scontrol_requeue_resume_to_identical_metrics(slurm_cluster, profile_dir, tmp_path):
    """Seed 1 gets runtime=1 min and is signalled before its limit; seed 2 is requeued by hand.

    Both are requeued through submitit (same SLURM job id), rerun the same Snakemake
    job, resume from the checkpoint and end with the metrics of an uninterrupted run.
    """
    steps = 40  # 1 s per step: longer than the 1-minute limit's signal point
    proc = start_snakemake(
        tmp_path,
        "--profile",
        str(profile_dir),
        "--config",
        "seeds=1,2",
        f"steps={steps}",
        "sleep=1",
        "short_runtime_seed=1",
        "--",
        "results/train/seed1.json",
        "results/train/seed2.json",
        cluster=slurm_cluster,
    )
    try:
        with slurm_cluster.release_requeued() as releaser:
            job2 = wait_for(
                lambda: train_job(slurm_cluster, tmp_path, 2) if checkpoint_step(tmp_path, 2) >= 3 else None,
                120,
                "seed 2 training to checkpoint step 3",
            )
            slurm_cluster.run("scontrol", "requeue", job2["id"])
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop(proc, slurm_cluster, tmp_path)
    text = output_of(proc)
    assert rc == 0, explain(text, slurm_cluster)

    for seed in (1, 2):
        produced = (tmp_path / "results" / "train" / f"seed{seed}.json").read_text()
        assert produced == reference_metrics(tmp_path, seed, steps), f"seed {seed} metrics differ"
        runs = starts(tmp_path, seed)
        assert len(runs) >= 2 and max(step for step, _ in runs) > 0, f"seed {seed} never resumed: {runs}"

    jobs = slurm_cluster.jobs_in(tmp_path)
    assert len(jobs) == 2, f"requeue must keep the job id, not resubmit: {jobs}"
    history = slurm_cluster.sacct(fields="JobID,State", all_records=True)
    for job in jobs:
        states = [r["State"] for r in history if r["JobID"] == job["JobID"]]
        assert "REQUEUED" in states and states[-1] == "COMPLETED", (job, states)
        assert job["JobID"] in releaser.released
    job1 = next(j for j in jobs if j["JobID"] != job2["id"])
    log1 = submitit_log(tmp_path, "train", job1["JobID"])
    assert "this job is timed-out" in log1 and "Requeued job" in log1, log1


@slurm
def test_preemption_checkpoints_and_resumes(slurm_cluster, profile_dir, tmp_path):
    """A job in the 'urgent' partition preempts the training; submitit requeues it (USR2)."""
    steps = 15
    proc = start_snakemake(
        tmp_path,
        "--profile",
        str(profile_dir),
        "--config",
        "seeds=3",
        f"steps={steps}",
        "sleep=1",
        "--",
        "results/train/seed3.json",
        cluster=slurm_cluster,
    )
    try:
        with slurm_cluster.release_requeued():
            job = wait_for(
                lambda: train_job(slurm_cluster, tmp_path, 3) if checkpoint_step(tmp_path, 3) >= 2 else None,
                120,
                "seed 3 training to checkpoint step 2",
            )
            urgent = slurm_cluster.run(
                "sbatch",
                "--parsable",
                "-p",
                slurm_cluster.urgent_partition,
                "-c",
                str(slurm_cluster.cpus),
                "-o",
                os.devnull,
                "--wrap",
                "sleep 2",
            ).strip()
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop(proc, slurm_cluster, tmp_path)
    text = output_of(proc)
    assert rc == 0, explain(text, slurm_cluster)
    produced = (tmp_path / "results" / "train" / "seed3.json").read_text()
    assert produced == reference_metrics(tmp_path, 3, steps)
    runs = starts(tmp_path, 3)
    assert len(runs) >= 2 and runs[1][0] > 0, runs
    log = submitit_log(tmp_path, "train", job["id"])
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log, log
    history = slurm_cluster.sacct(fields="JobID,State", all_records=True)
    assert "REQUEUED" in [r["State"] for r in history if r["JobID"] == job["id"]]
    assert [r["State"] for r in history if r["JobID"] == urgent] == ["COMPLETED"]


# ----------------------------------------------------------- failures and restarts
@slurm
def test_scancel_makes_snakemake_fail_clearly(slurm_cluster, profile_dir, tmp_path):
    """scancel of the running job: Snakemake reports the job id, rule and state, and fails.

    The profile has retries: 1, so the job is resubmitted once; both are cancelled.
    """
    proc = start_snakemake(
        tmp_path,
        "--profile",
        str(profile_dir),
        "--config",
        "seeds=1",
        "steps=200",
        "sleep=1",
        "--",
        "results/train/seed1.json",
        cluster=slurm_cluster,
    )
    cancelled = []
    try:

        def cancel_running():
            job = train_job(slurm_cluster, tmp_path, 1)
            if job and job["id"] not in cancelled:
                slurm_cluster.run("scancel", job["id"])
                cancelled.append(job["id"])
            return proc.poll() is not None

        wait_for(cancel_running, 180, "Snakemake to give up", period=1)
    finally:
        stop(proc, slurm_cluster, tmp_path)
    text = output_of(proc)
    assert proc.returncode != 0, explain(text, slurm_cluster)
    assert len(cancelled) == 2, cancelled
    for job_id in cancelled:
        assert f"slurm job {job_id} for rule train (seed=1) failed: state CANCELLED" in text, explain(text)
    assert "Trying to restart job" in text  # retries: 1 from the profile
    assert not (tmp_path / "results" / "train" / "seed1.json").exists()


@slurm
def test_sigterm_cancels_jobs_in_flight(slurm_cluster, profile_dir, tmp_path):
    proc = start_snakemake(
        tmp_path,
        "--profile",
        str(profile_dir),
        "--config",
        "seeds=1",
        "steps=200",
        "sleep=1",
        "--",
        "results/train/seed1.json",
        cluster=slurm_cluster,
    )
    try:
        job = wait_for(lambda: train_job(slurm_cluster, tmp_path, 1), 120, "the train job to run")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        stop(proc, slurm_cluster, tmp_path)
    text = output_of(proc)
    assert rc != 0 and seconds < 30, explain(text, slurm_cluster)
    assert f"Cancelling 1 slurm job(s): {job['id']}" in text
    state = wait_for(
        lambda: next((j["State"] for j in slurm_cluster.jobs_in(tmp_path) if j["JobID"] == job["id"] and j["State"].startswith("CANCELLED")), None),
        30,
        "the job to be CANCELLED in sacct",
    )
    assert state.startswith("CANCELLED")
    assert not list((tmp_path / ".snakemake" / "submitit" / "registry").glob("*.json"))


@slurm
def test_sigkill_and_restart_reattaches_without_duplicates(slurm_cluster, profile_dir, tmp_path):
    """SIGKILL Snakemake while both train jobs run; a restart re-attaches instead of resubmitting."""
    try:
        _kill_and_restart(slurm_cluster, profile_dir, tmp_path)
    finally:
        slurm_cluster.cancel_jobs_in(tmp_path)


def _kill_and_restart(slurm_cluster, profile_dir, tmp_path):
    steps = 15
    config = ["--config", "seeds=1,2", f"steps={steps}", "sleep=1"]
    first = start_snakemake(tmp_path, "--profile", str(profile_dir), *config, cluster=slurm_cluster)
    try:
        wait_for(lambda: train_job(slurm_cluster, tmp_path, 1) and train_job(slurm_cluster, tmp_path, 2), 120, "both train jobs to run")
        first.send_signal(signal.SIGKILL)  # no chance to cancel anything
        first.wait(timeout=30)
    finally:
        stop(first)  # the jobs must keep running
    registry = tmp_path / ".snakemake" / "submitit" / "registry"
    assert len(list(registry.glob("*.json"))) >= 2  # left behind by the killed Snakemake
    assert train_job(slurm_cluster, tmp_path, 1) and train_job(slurm_cluster, tmp_path, 2)

    # as a user would: unlock (the killed run left its lock), then the same command again
    unlock, _ = run_snakemake(tmp_path, "--profile", str(profile_dir), *config, "--unlock", cluster=slurm_cluster)
    assert unlock.returncode == 0, unlock.stderr
    second, _ = run_snakemake(tmp_path, "--profile", str(profile_dir), *config, cluster=slurm_cluster)
    text = second.stdout + second.stderr
    assert second.returncode == 0, explain(text, slurm_cluster)
    assert text.count("Re-attached rule train") == 2, explain(text)

    names = [j["JobName"].rsplit("-", 1)[0] for j in slurm_cluster.jobs_in(tmp_path)]
    assert sorted(names) == ["smk-gpu", "smk-group_report", "smk-train", "smk-train"], names
    for seed in (1, 2):
        produced = (tmp_path / "results" / "train" / f"seed{seed}.json").read_text()
        assert produced == reference_metrics(tmp_path, seed, steps)
        assert len(starts(tmp_path, seed)) == 1  # never started twice
    assert (tmp_path / "results" / "table.csv").exists()
    assert not list(registry.glob("*.json"))


# ----------------------------------------------------------- no cluster needed
def test_resources_become_sbatch_flags(tmp_path):
    import submitit

    from snakemake_executor_plugin_submitit.resources import submission_parameters
    from snakemake_executor_plugin_submitit.settings import ExecutorSettings

    settings = ExecutorSettings(partition="cpu", account="proj", sbatch_extra="--mail-type=FAIL --exclusive")
    resources = {
        "runtime": 30,
        "mem_mb": 2048,
        "gpu": 2,
        "slurm_partition": "gpu",
        "slurm_extra": "--hint=nomultithread",
    }
    params = submission_parameters(resources, 4, settings, "slurm", "smk-train-abc", comment="rule train")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("true", "uid")
    for flag in (
        "--partition=gpu",
        "--account=proj",
        "--time=30",
        "--cpus-per-task=4",
        "--mem=2GB",
        "--gpus-per-node=2",
        "--exclusive",
        "--mail-type=FAIL",
        "--hint=nomultithread",
        "--job-name=smk-train-abc",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {flag}\n" in script, (flag, script)

    gres = submission_parameters({"gpu": 1, "runtime": 1}, 1, ExecutorSettings(gpu_flag="gres"), "slurm", "x")
    assert gres["slurm_gres"] == "gpu:1" and "gpus_per_node" not in gres
    assert gres["slurm_signal_delay_s"] == 30  # never more than half the runtime
    local = submission_parameters(resources, 4, settings, "local", "x")
    assert local["gpus_per_node"] == 2 and not any(k.startswith("slurm_") for k in local)


def test_submitit_local_profile_matches_local_run(local_run, tmp_path):
    """profiles/submitit-local: the same plugin without SLURM gives the same outputs."""
    proc, seconds = run_snakemake(tmp_path, "--profile", str(LOCAL_PROFILE))
    assert proc.returncode == 0, explain(proc.stdout + proc.stderr)
    print(f"\nTIMING toy DAG through profiles/submitit-local: {seconds:.1f} s")
    local_dir, _ = local_run
    files = [f for f in results(local_dir) if f != "gpu.txt"]
    _, mismatch, errors = filecmp.cmpfiles(local_dir / "results", tmp_path / "results", files, shallow=False)
    assert not mismatch and not errors
    assert "CUDA_VISIBLE_DEVICES=0" in (tmp_path / "results" / "gpu.txt").read_text()


# --------------------------------------------------------------------------- the real workflow
def _workflow_copy(dest: Path, data_root: Path) -> Path:
    """The project's workflow (Snakefile, rules, config) in ``dest``, sliced to NODE Table 1 on MNIST."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest)
    for d in ("workflow", "config", "envs"):
        shutil.copytree(REPO / d, dest / d)
    (dest / "src").symlink_to(REPO / "src")
    (dest / "local.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"mirrors": [str(data_root)], "download": False},
                "papers": ["node"],
                "node": {"fig1": {"enabled": False}, "table1": {"datasets": ["mnist"], "attacks": ["pgd"]}},
            }
        )
    )
    return dest


def _workflow_results(workdir: Path) -> dict:
    """What must not depend on where the jobs ran: metrics of every train and eval result, and the tables."""
    out = {}
    for p in sorted((workdir / "results/smoke/node").rglob("*.json")):
        doc = json.loads(p.read_text())
        out[str(p.relative_to(workdir))] = {k: doc[k] for k in ("history", "clean_acc", "per_eps", "cost") if k in doc}
        for e in out[str(p.relative_to(workdir))].get("per_eps", []):
            e.pop("seconds", None)
    for p in sorted((workdir / "results/smoke/node/tables").glob("*.csv")):
        out[str(p.relative_to(workdir))] = p.read_text()
    return out


@slurm
def test_project_workflow_through_slurm_matches_local_run(slurm_cluster, profile_dir, tmp_path, data_root):
    """train -> attack -> tables of the real workflow, once locally and once through `--profile` (SLURM)."""
    targets = ["node_table1", "node_clean"]
    smk = [sys.executable, "-m", "snakemake", *targets, "--configfile", "config/smoke.yaml", "local.yaml"]
    local = _workflow_copy(tmp_path / "local", data_root)
    t0 = time.monotonic()
    proc = subprocess.run([*smk, "--cores", "2"], cwd=local, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    t_local = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    remote = _workflow_copy(tmp_path / "slurm", data_root)
    t0 = time.monotonic()
    proc = subprocess.run([*smk, "--profile", str(profile_dir)], cwd=remote, env=_env(slurm_cluster), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    t_slurm = time.monotonic() - t0
    assert proc.returncode == 0, explain(proc.stdout + proc.stderr, slurm_cluster)
    print(f"\nTIMING project workflow slice: local {t_local:.1f} s, through SLURM {t_slurm:.1f} s")
    # Really ran on the cluster: trainings by rule name, evaluations as jobs of the "eval" group.
    names = {j["JobName"].split("-")[1] for j in slurm_cluster.jobs_in(remote)}
    assert "train" in names and names & {"evaluate", "group_eval"}, names
    assert _workflow_results(remote) == _workflow_results(local)


@slurm
def test_project_training_through_a_time_limit_and_a_preemption_ends_identical(slurm_cluster, profile_dir, tmp_path, data_root):
    """The project's own train job, through `--profile`: its time limit signals it (submitit
    requeues it), then a job of the 'urgent' partition preempts it. Each time the training must write
    a checkpoint after the signal, within the grace time (checkpoints are otherwise written only at
    epoch ends here, so a mid-epoch one can only come from a signal), and the final weights and
    metrics equal those of an uninterrupted run of the same spec."""
    wd = _workflow_copy(tmp_path / "wf", data_root)
    # Epochs of 256 steps: long enough that the time limit's signal, which slurmctld sends on its
    # own timer (up to a minute late), still comes with most of the training left. With 128-step
    # epochs a fast machine was at step 674 of 768 when the signal came, and finished before the
    # test could preempt the requeued job.
    # 8 epochs: after the time limit's checkpoint and the next epoch end, an epoch and more is left
    # for the preemption to land in (below).
    run, epochs = "t1-mnist-resnet50", 8
    (wd / "interrupt.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": {"train": {"runtime": 1}},
                "node": {"table1": {"runs": {"mnist": {"resnet50": {"train": {"epochs": epochs, "train_limit": 16384, "checkpoint_every_steps": 0}}}}}},
            }
        )
    )
    model = f"results/smoke/node/models/{run}/model.pt"
    ckpt = wd / f"results/smoke/node/checkpoints/{run}.pt"
    smk = [sys.executable, "-m", "snakemake", model, "--configfile", "config/smoke.yaml", "local.yaml", "interrupt.yaml"]
    # The dataset first (a local rule), so that the reference can start beside the cluster job.
    prep = subprocess.run([*smk[:3], "results/smoke/data/mnist.json", *smk[4:], "--cores", "1"], cwd=wd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert prep.returncode == 0, prep.stderr[-3000:]
    from robrepro.config import load
    from robrepro.plan import Plan

    spec = Plan(load(wd / "config/config.yaml", wd / "config/smoke.yaml", wd / "local.yaml", wd / "interrupt.yaml")).train_spec("node", run)
    spe = -(-spec["data"]["train_limit"] // spec["train"]["batch_size"])  # steps per epoch
    # The reference: the same spec, uninterrupted, beside the cluster job (one thread each).
    ref = tmp_path / "ref"
    reference = subprocess.Popen(
        [sys.executable, "-m", "robrepro", "train", "--spec", json.dumps(spec, sort_keys=True), "--data-root", str(wd / "resources/data"), "--device", "cpu"]
        + [
            "--threads",
            "1",
            "--checkpoint",
            str(ref / "ckpt.pt"),
            "--model-out",
            str(ref / "model.pt"),
            "--result-out",
            str(ref / "train.json"),
            "--no-progress",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = open(wd / "snakemake.out", "w")
    proc = subprocess.Popen([*smk, "--profile", str(profile_dir)], cwd=wd, env=_env(slurm_cluster), stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.out_path = wd / "snakemake.out"
    steps_seen: list[int] = []
    seen_at: dict[int, float] = {}  # step -> when this test first saw its checkpoint

    def ckpt_step():
        try:
            step = torch.load(ckpt, weights_only=True)["step"]
        except Exception:  # absent, or being replaced
            return None
        if not steps_seen or steps_seen[-1] != step:
            steps_seen.append(step)
            seen_at.setdefault(step, time.monotonic())
        return step

    try:
        with slurm_cluster.release_requeued():

            def requeued(job_id):
                history = slurm_cluster.sacct(fields="JobID,State", all_records=True)
                return any(r["JobID"] == job_id and r["State"] == "REQUEUED" for r in history)

            def signalled_once():
                step = ckpt_step()
                mid_epoch = next((s for s in steps_seen if s % spe), None)
                if mid_epoch:
                    return mid_epoch
                # A signal that comes during an epoch end checkpoints that epoch end's step: the
                # requeue that follows the checkpoint then tells that it was the signal's.
                return step if step and requeued(job["id"]) else None

            def train_running():
                ckpt_step()
                rows = [j for j in slurm_cluster.squeue() if j["workdir"] == str(wd.resolve()) and "rule train" in j["comment"] and j["state"] == "RUNNING"]
                return rows[0] if rows else None

            # Whatever the machine's speed, the limit comes once training runs: after the first epoch
            # the limit is set 40 s ahead, so SLURM sends its signal (30 s before the limit) at once.
            job = wait_for(train_running, 240, "the train job to run")
            slurm_cluster.run("scontrol", "update", f"jobid={job['id']}", "TimeLimit=20")
            wait_for(lambda: (ckpt_step() or 0) >= spe, 300, "the first epoch")
            used = [int(v) for v in slurm_cluster.run("squeue", "-h", "-j", job["id"], "-o", "%M").strip().replace("-", ":").split(":")]
            seconds = sum(v * 60**i for i, v in enumerate(reversed(used))) + 40
            slurm_cluster.run("scontrol", "update", f"jobid={job['id']}", f"TimeLimit={seconds // 60}:{seconds % 60:02d}")
            first = wait_for(signalled_once, 240, "a checkpoint written after the time-limit signal (is the training shorter than 30 s here?)")

            job = wait_for(train_running, 240, "the requeued training to run again")
            slurm_cluster.run("scontrol", "update", f"jobid={job['id']}", "TimeLimit=20")  # no second time limit
            before_preemption = wait_for(lambda: (ckpt_step() or 0) > first and ckpt_step(), 300, "the requeued training to resume and reach an epoch end")
            # Preempt a third of an epoch later: a signal that comes during the epoch end (evaluation,
            # checkpoint) checkpoints that same step, which could not tell a checkpoint made on the
            # preemption's signal from a resume from the epoch end seen here.
            ends = sorted(t for step, t in seen_at.items() if step % spe == 0)
            epoch_s = min(b - a for a, b in zip(ends, ends[1:])) if len(ends) > 1 else 3.0
            time.sleep(min(epoch_s / 3, 30.0))
            slurm_cluster.run(
                "sbatch", "--parsable", "-p", slurm_cluster.urgent_partition, "-c", str(slurm_cluster.cpus), "-o", os.devnull, "--wrap", "sleep 2"
            )

            def done():
                ckpt_step()
                return proc.poll() is not None

            wait_for(done, 600, "the workflow to finish", period=0.3)
    finally:
        stop(proc, slurm_cluster, wd)
    text = output_of(proc)
    assert proc.returncode == 0, explain(text, slurm_cluster)
    doc = json.loads((wd / f"results/smoke/node/models/{run}/train.json").read_text())
    # The last run resumed from the checkpoint the preemption's signal made (mid-epoch, unless the
    # signal happened to come at an epoch end), after the one the time limit's signal made.
    # Without a checkpoint on the preemption's signal, the resume would start from the epoch end
    # seen before the urgent job was submitted (or, rarely, the next one).
    resumed = doc["resumed_from_step"]
    assert resumed in steps_seen and resumed > before_preemption > first, (resumed, before_preemption, first, steps_seen)
    log = submitit_log(wd, "train", job["id"])
    assert "this job is timed-out" in log and "Caught signal SIGUSR2" in log, log
    history = slurm_cluster.sacct(fields="JobID,State", all_records=True)
    assert [r["State"] for r in history if r["JobID"] == job["id"]].count("REQUEUED") >= 2, history

    assert doc["provenance"]["spec"] == spec
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    want = json.loads((ref / "train.json").read_text())
    assert doc["history"] == want["history"] and doc["steps"] == want["steps"] == epochs * spe
    got_w = torch.load(wd / model, weights_only=True)["state_dict"]
    want_w = torch.load(ref / "model.pt", weights_only=True)["state_dict"]
    assert got_w.keys() == want_w.keys() and all(torch.equal(got_w[k], want_w[k]) for k in want_w)
