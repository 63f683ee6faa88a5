"""Shared fixtures: where the real datasets are, and the repository root.

Tests that need real MNIST look for it under ``ROBREPRO_TEST_DATA`` (CI points it at the shared
data folder beside the clone), else ``../shared/data`` beside the repository. They skip when it is
absent, unless ``ROBREPRO_REQUIRE_DATA=1``, where a missing dataset is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import robrepro  # noqa: F401  (torchvision shim before anything imports torchvision)

ROOT = Path(__file__).resolve().parents[1]


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
