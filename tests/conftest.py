"""Shared fixtures: the repo root, the real data when present, a tiny demo dataset."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FER_PARQUET = SHARED_DATA / "fer2013.parquet"

# Two threads per test process: the CI and developer machines have two cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def fer_parquet() -> Path:
    if not FER_PARQUET.is_file():
        pytest.skip(f"real data absent: {FER_PARQUET} (clone with ../shared beside it to run this test)")
    return FER_PARQUET


@pytest.fixture(scope="session")
def demo_data():
    from fer_core.synthetic import make_demo_data

    return make_demo_data(n_train=2000, n_val=500, n_test=1000, seed=0)


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `fertune` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
