"""Shared fixtures: where the real datasets are, and the repository root.

Tests that need real MNIST look for it under ``ROBREPRO_TEST_DATA`` (CI points it at the shared
data folder beside the clone), else ``../shared/data`` beside the repository. They skip when it is
absent, unless ``ROBREPRO_REQUIRE_DATA=1``, where a missing dataset is a failure.

In CI (``CI=true``, as CI services set it) no test may skip: a skip there is reported as a failure,
so a missing dependency, dataset or cluster can never turn a green run into a vacuous one.
Expected failures (``xfail``) stay what they are.

Parallel runs (pytest-xdist, ``-n 2 --dist loadgroup`` as CI runs them): every test keeps to one
thread, so two workers use the two cores that a serial run leaves half idle. Tests that share
session state which cannot be copied per worker stay together on one worker, in file order
(:data:`XDIST_GROUPS`, by file): those of the smoke workflow (one run per session in one copy, which they
change in turn: a figure deleted and rebuilt, a module touched and restored) and those of the SLURM
cluster (one cluster per session, started by a session fixture). Without xdist they mean nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import robrepro  # noqa: F401  (torchvision shim before anything imports torchvision)

ROOT = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


# Test files whose tests run on one xdist worker, in file order (see the module docstring), and the
# session fixtures that make them a group: a test using one of these fixtures elsewhere is an error.
XDIST_GROUPS = {"test_workflow.py": "smoke-workflow", "test_report.py": "smoke-workflow", "test_browser.py": "smoke-workflow", "test_slurm.py": "slurm-cluster"}
GROUP_FIXTURES = {"workdir": "smoke-workflow", "smoke_run": "smoke-workflow", "slurm_cluster": "slurm-cluster"}


def xdist_scope(nodeid: str) -> str:
    """The unit of work an xdist worker takes: a group's files, or one test file. Whole files, so a
    module's fixtures (a model trained for its tests, a reference run) are built once, not per worker."""
    path = nodeid.split("::", 1)[0]
    return XDIST_GROUPS.get(Path(path).name, path)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own loadgroup reads xdist_group markers through Node._nodeid, which pytest 9 no longer
    # reports as the node id: its groups are silently ignored. This scheduler groups by file instead.
    # Largest units go first (xdist's default reordering), so the two groups start on different workers.
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return FileGroups(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(GROUP_FIXTURES) & set(getattr(item, "fixturenames", ())):
            if XDIST_GROUPS.get(item.path.name) != GROUP_FIXTURES[fixture]:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {fixture}: put it in a file of group {GROUP_FIXTURES[fixture]!r} (tests/conftest.py, XDIST_GROUPS)"
                )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module skipped as a whole (e.g. pytest.importorskip at import) is a collection-time skip.
    outcome = yield
    rep = outcome.get_result()
    if in_ci() and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"module skipped in CI (CI={os.environ.get('CI')}), which counts as a failure: {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if in_ci() and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI (CI={os.environ.get('CI')}), which counts as a failure: {rep.longrepr}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    cand = os.environ.get("ROBREPRO_TEST_DATA") or str(ROOT.parent / "shared" / "data")
    p = Path(cand)
    if not (p / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
        if os.environ.get("ROBREPRO_REQUIRE_DATA") == "1":
            pytest.fail(f"real MNIST not found under {p} (ROBREPRO_REQUIRE_DATA=1)")
        pytest.skip(f"real MNIST not found under {p}; set ROBREPRO_TEST_DATA")
    return p.resolve()


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores on CI: keep each test to one intra-op thread, deterministic and not oversubscribed.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_certifiable_net(n: int = 64):
    """A 16-24-3 ReLU net on 4x4 inputs, with ``n`` uint8 inputs and the labels it predicts on them:
    every point is clean-correct, so a bound has something to certify and an attack something to break."""
    from torch import nn

    from robrepro.models import Normalize

    torch.manual_seed(0)
    m = nn.Sequential(Normalize([0.5], [0.5]), nn.Flatten(), nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    x = torch.rand(n, 1, 4, 4)
    y = m(x).argmax(1)
    return m.eval(), (x * 255).round().to(torch.uint8), y


@pytest.fixture(scope="session")
def mnist_model(data_root):
    """A small MLP trained once per session on real MNIST (400 Adam steps, about 95 % test accuracy),
    with 500 test images (uint8) and labels: a model on which attacks have real work to do."""
    from torch import nn

    from robrepro import data as D
    from robrepro import models

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = D.load_split("mnist", "train", source="real", root=data_root, limit=20000)
    xt, yt = D.load_split("mnist", "test", source="real", root=data_root, limit=500)
    torch.manual_seed(0)
    m = nn.Sequential(models.Normalize([0.1307], [0.3081]), nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(m(x[idx].float() / 255), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(old)
    return m.eval(), xt, yt


# --- the smoke workflow, run once per session in a temporary copy (tests/test_workflow.py, tests/test_report.py)


def snakemake(cwd, *args, configs=(), timeout=2400):
    # Targets and flags first: --configfile takes every following word as a file.
    env = {**os.environ, "PYTHONPATH": str(cwd / "src")}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config/smoke.yaml", "local.yaml", *configs],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_workflow(repo_root: Path, wd: Path) -> Path:
    """The Snakefile, rules, configuration, environments and package copied into ``wd`` (a folder
    that exists). copytree keeps modification times: the copy is exactly as old as the repository's files."""
    shutil.copy(repo_root / "Snakefile", wd)
    for d in ("workflow", "config", "envs", "src"):
        shutil.copytree(repo_root / d, wd / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return wd


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, repo_root, data_root):
    """A copy of the workflow and of the package, with data from the mirror."""
    wd = copy_workflow(repo_root, tmp_path_factory.mktemp("wf"))
    (wd / "local.yaml").write_text(yaml.safe_dump({"data": {"mirrors": [str(data_root)], "download": False}}))
    return wd


@pytest.fixture(scope="session")
def smoke_run(workdir):
    t0 = time.time()
    res = snakemake(workdir)
    assert res.returncode == 0, res.stderr[-5000:]
    return res, time.time() - t0
