"""The warm job server (robrepro.warm): a job delegated to it behaves as the same command run cold.

One server per module (its start imports torch once); jobs are tiny trainings on synthetic data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robrepro import warm, warm_hook
from robrepro.results import load_result

ROOT = Path(__file__).resolve().parents[1]


def _spec(epochs: int = 1) -> dict:
    return {
        "paper": "test",
        "experiment": "warm",
        "run": "tiny",
        "tier": "smoke",
        "seed": 5,
        "data": {"name": "cifar10", "source": "synthetic", "mean": [0.5] * 3, "std": [0.25] * 3, "synthetic_seed": 0, "train_limit": 64, "test_limit": 32},
        "model": {"name": "mlp", "hidden_sizes": [16]},
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "lr_schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1},
            # Random crops and flips: the global RNG, which a fork must not make differ from a cold run.
            "augment": {"crop_pad": 2, "flip": True},
            "objective": {"name": "natural"},
            "checkpoint_every_steps": 0,
            "deterministic": True,
        },
    }


def _train_argv(d: Path, spec: dict) -> list[str]:
    return ["train", "--spec", json.dumps(spec), "--data-root", str(d), "--device", "cpu", "--threads", "1"] + [
        "--checkpoint",
        str(d / "ckpt.pt"),
        "--model-out",
        str(d / "model.pt"),
        "--result-out",
        str(d / "train.json"),
        "--no-progress",
    ]


def _env(socket_path: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (warm.ENV_VAR, warm.OPT_OUT)}
    env["PYTHONPATH"] = str(ROOT / "src")
    if socket_path:
        env[warm.ENV_VAR] = socket_path
    return env


def _job(d: Path, argv: list[str], socket_path: str | None, **kw) -> subprocess.Popen:
    """``python -m robrepro <argv>`` with stdout and stderr redirected to ``d/log``, as a rule's shell does."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "log", "w") as log:
        # SIGINT as a terminal's foreground job has it, whatever this process inherited (a background
        # job of a non-interactive shell starts with it ignored, and so would the job).
        kw.setdefault("preexec_fn", lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        return subprocess.Popen([sys.executable, "-m", "robrepro", *argv], cwd=d, env=_env(socket_path), stdout=log, stderr=log, **kw)


def _wait_for(cond, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    proc, w, path = warm_hook.spawn(str(folder))
    # Ready once it answers: a request for another package gets "cold" back, after the preload.
    _wait_for(lambda: Path(path).exists(), 60, "the socket")
    yield proc, path
    os.close(w)
    proc.wait(30)


def _values(path: Path) -> dict:
    doc = load_result(path)
    doc.pop("provenance")
    doc.pop("loop_seconds", None)  # a timing
    return doc


def test_a_delegated_job_writes_the_same_result_as_a_cold_run(server, tmp_path):
    _, path = server
    for name, sock in (("cold", None), ("warm", path)):
        d = tmp_path / name
        assert _job(d, _train_argv(d, _spec(epochs=2)), sock).wait(120) == 0, (d / "log").read_text()
    cold, hot = tmp_path / "cold", tmp_path / "warm"
    assert _values(hot / "train.json") == _values(cold / "train.json")
    a, b = (torch.load(d / "model.pt", weights_only=True) for d in (cold, hot))
    assert a["spec_hash"] == b["spec_hash"] and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # The job's output reached the caller's log; the warm one says where it ran and what it cost.
    for d in (cold, hot):
        assert "[train] done" in (d / "log").read_text()
    assert "[warm] ran in a forked worker: cpu" in (hot / "log").read_text()
    assert "[warm]" not in (cold / "log").read_text()
    assert load_result(hot / "train.json")["provenance"]["process"]["warm"] is True
    assert load_result(cold / "train.json")["provenance"]["process"]["warm"] is False


def test_a_failing_job_returns_its_status_and_its_message(server, tmp_path):
    _, path = server
    # A usage error: argparse exits 2 with its message on stderr.
    proc = _job(tmp_path, ["train", "--spec", "{}"], path)
    assert proc.wait(60) == 2
    log = (tmp_path / "log").read_text()
    assert "the following arguments are required" in log and "[warm] ran in a forked worker" in log


# Training checkpoints on SIGTERM and exits 128 + 15, as in its own process (a client killed by the
# signal itself would show as -15); on SIGINT, Python's KeyboardInterrupt: the process dies of SIGINT.
@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)])
def test_a_forwarded_signal_reaches_the_job(server, tmp_path, sig, status):
    _, path = server
    proc = _job(tmp_path, _train_argv(tmp_path, _spec(epochs=100000)), path)
    _wait_for(lambda: "epoch 1/" in (tmp_path / "log").read_text(), 60, "training to start")
    proc.send_signal(sig)
    assert proc.wait(60) == status, (tmp_path / "log").read_text()
    assert not (tmp_path / "train.json").exists()
    assert (tmp_path / "ckpt.pt").exists() or sig != signal.SIGTERM
    assert ("KeyboardInterrupt" in (tmp_path / "log").read_text()) == (sig == signal.SIGINT)


def test_a_job_started_with_sigint_ignored_ignores_it_in_the_worker_too(server, tmp_path):
    """As in its own process: a job whose shell ignored SIGINT (a background job) is not stopped by it."""
    _, path = server
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = _job(tmp_path, _train_argv(tmp_path, _spec(epochs=100000)), path, preexec_fn=ignore)
    _wait_for(lambda: "epoch 1/" in (tmp_path / "log").read_text(), 60, "training to start")
    proc.send_signal(signal.SIGINT)
    time.sleep(2)
    assert proc.poll() is None, (tmp_path / "log").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM


def test_a_client_killed_leaves_no_worker_running(server, tmp_path):
    sproc, path = server
    before = set(_children(sproc.pid))
    proc = _job(tmp_path, _train_argv(tmp_path, _spec(epochs=100000)), path)
    _wait_for(lambda: "epoch 1/" in (tmp_path / "log").read_text(), 60, "training to start")
    workers = set(_children(sproc.pid)) - before
    assert len(workers) == 1
    proc.kill()
    proc.wait()
    _wait_for(lambda: not (set(_children(sproc.pid)) & workers), 60, "the worker to end")


def test_no_server_or_a_stale_socket_runs_the_job_here(tmp_path, monkeypatch):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale"))
    stale.close()  # the file stays; nothing listens
    for target in (tmp_path / "absent", tmp_path / "stale"):
        monkeypatch.setenv(warm.ENV_VAR, str(target))
        assert warm.delegate(["evaluate", "--help"]) is None


def test_a_job_the_server_sends_back_runs_here_with_the_signal_handlers_it_had(server, monkeypatch):
    """Another checkout's package gets "cold" back: the job then runs in the client's process, whose
    handlers must be the ones it had (SIGINT still ignored, a custom SIGTERM handler kept)."""
    _, path = server
    monkeypatch.setenv(warm.ENV_VAR, path)
    monkeypatch.setattr(warm, "_package_dir", lambda: "/another/checkout/robrepro")
    mine = lambda *_: None  # noqa: E731
    old = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, mine))}
    try:
        assert warm.delegate(["evaluate", "--help"]) is None
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is mine
        assert all(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2))
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_opted_out_or_other_commands_are_not_delegated(server, monkeypatch):
    _, path = server
    monkeypatch.setenv(warm.ENV_VAR, path)
    assert warm.delegate(["validate-config", "x.yaml"]) is None
    monkeypatch.setenv(warm.OPT_OUT, "1")
    assert warm.delegate(["train", "--help"]) is None


def test_the_client_imports_no_torch(server, tmp_path):
    _, path = server
    flag = tmp_path / "modules.json"
    code = (
        "import atexit, json, sys, runpy\n"
        f"atexit.register(lambda: json.dump(sorted(sys.modules), open({str(flag)!r}, 'w')))\n"
        "sys.argv = ['robrepro', 'train', '--spec', '{}']\n"
        "runpy.run_module('robrepro', run_name='__main__', alter_sys=True)\n"
    )
    with open(tmp_path / "log", "w") as log:
        rc = subprocess.run([sys.executable, "-c", code], env=_env(path), stdout=log, stderr=log, timeout=60).returncode
    assert rc == 2
    assert "[warm] ran in a forked worker" in (tmp_path / "log").read_text()  # delegated, not run here
    mods = set(json.loads(flag.read_text()))
    assert "robrepro.warm" in mods and not {"torch", "robrepro.cli", "numpy"} & mods


def test_the_server_exits_when_its_parent_pipe_closes(tmp_path):
    proc, w, path = warm_hook.spawn(str(tmp_path))
    _wait_for(lambda: Path(path).exists(), 60, "the socket")
    os.close(w)
    assert proc.wait(60) == 0
    assert not Path(path).exists()


def test_the_workflow_starts_a_server_for_a_local_run_only(tmp_path):
    (tmp_path / "Snakefile").write_text(
        f'include: "{ROOT}/workflow/rules/warm.smk"\n\n'
        "rule all:\n"
        '    output: "seen.txt"\n'
        # Waits for the socket: the first job may start before the server binds (it then runs cold).
        '    shell: \'for i in $(seq 100); do test -S "$ROBREPRO_WARM" && break; sleep 0.1; done;'
        ' test -S "$ROBREPRO_WARM" && echo "$ROBREPRO_WARM" > {output}\'\n'
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**_env(None), "TMPDIR": str(tmp)}
    smk = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"]
    dry = subprocess.run([*smk, "-n"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert not list(tmp.iterdir()), "a dry run started a server"
    run = subprocess.run(smk, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "seen.txt").read_text().startswith(str(tmp / "robrepro-warm-"))
    assert not list(tmp.glob("robrepro-warm-*")), "the server's folder outlived the run"


def test_the_report_takes_a_warm_jobs_cpu_and_memory_from_its_result(tmp_path):
    from robrepro.report.collect import _Docs, compute
    from robrepro.results import provenance, write_result

    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, is_warm in (("cold", False), ("warm", True)):
        # The client's benchmark: 3 s wall, 0.05 s CPU, 20 MB (a warm job's own figures are in its result).
        (tmp_path / f"{name}.tsv").write_text(head + "3.0\t0:00:03\t20\t0\t0\t0\t0\t0\t0\t0.05\n")
        prov = provenance(spec={}, seed=0, device="cpu", data_source="synthetic", started=0.0)
        prov["process"] = {"cpu_s": 2.5, "max_rss_mb": 300.0, "warm": is_warm}
        write_result(tmp_path / f"{name}.json", "train", {}, prov)
    docs = _Docs(tmp_path)
    assert compute(tmp_path, {"cold.tsv": "cold.json"}, docs) == {"jobs": 1, "measured": 1, "wall_s": 3.0, "cpu_s": 0.05, "max_rss_mb": 20.0}
    assert compute(tmp_path, {"warm.tsv": "warm.json"}, docs) == {"jobs": 1, "measured": 1, "wall_s": 3.0, "cpu_s": 2.5, "max_rss_mb": 300.0}


def test_the_cost_check_leaves_out_jobs_that_ran_warm(tmp_path):
    from robrepro import cost
    from robrepro.config import load
    from robrepro.plan import Plan
    from robrepro.results import provenance, write_result

    plan = Plan(load(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml"))
    keys = [f"train/{paper}/{run}" for paper, run in sorted(plan.runs)[:2]]
    for key, is_warm in zip(keys, (False, True)):
        bench = tmp_path / cost.benchmark_file(plan, key)
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text("s\th:m:s\tcpu_time\n4.0\t0:00:04\t0.05\n")
        prov = provenance(spec={}, seed=0, device="cpu", data_source="synthetic", started=0.0)
        prov["process"]["warm"] = is_warm
        write_result(tmp_path / cost.result_file(plan, key), "train", {}, prov)
    cmp = cost.compare(plan, [{"key": k, "seconds": 4.0} for k in keys], tmp_path, column="cpu_time")
    assert [p["key"] for p in cmp["pairs"]] == keys[:1] and cmp["warm"] == keys[1:]
