"""What several test files share: the repo root, the real data when present, the demo data, models and a
search trained once per session, and helpers to run the real CLI and find the processes it left."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FER_PARQUET = SHARED_DATA / "fer2013.parquet"

# Two threads per test process: the CI and developer machines have two cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Time limits are generous enough for a machine 3x slower than a 2-core AVX2 one without native bf16; a
# slower one (emulation, a loaded CI box) scales them all with FERTUNE_TEST_TIMEOUT_SCALE=2 (or more).
TIMEOUT_SCALE = float(os.environ.get("FERTUNE_TEST_TIMEOUT_SCALE", "1"))


@pytest.fixture(scope="session")
def fer_parquet() -> Path:
    if not FER_PARQUET.is_file():
        pytest.skip(f"real data absent: {FER_PARQUET} (clone with ../shared beside it to run this test)")
    return FER_PARQUET


@pytest.fixture(scope="session")
def demo_data():
    from fer_core.synthetic import make_demo_data

    return make_demo_data(n_train=2000, n_val=500, n_test=1000, seed=0)


@dataclass
class TrainedRun:
    path: Path      # a train run folder: config.yaml, data.json, metrics.csv, weights/, eval.json
    cfg: object     # its resolved TrainConfig
    result: object  # fer_core.train.FitResult


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_data) -> TrainedRun:
    """cnn_small, 3 epochs on the 2,000 synthetic training faces, seed 0: > 80 % on the synthetic test split.
    Read-only for tests (copy it to change it)."""
    from fer_core import runs
    from fer_core.config import resolve
    from fer_core.evaluate import evaluate
    from fer_core.train import fit

    run = tmp_path_factory.mktemp("trained") / "exp"
    cfg = resolve({"model": "cnn_small", "epochs": 3, "seed": 0})
    result = fit(cfg, demo_data, run_dir=run, log=lambda *a, **k: None)
    runs.write_data_json(run, "demo")
    evaluate(run, demo_data, tta=True).write(run / runs.EVAL)
    return TrainedRun(run, cfg, result)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """cnn_small after 1 epoch on 200 faces (seconds): for tests about jobs, not about what the model reads."""
    from fer_core.config import resolve
    from fer_core.synthetic import make_demo_data
    from fer_core.train import fit

    run = tmp_path_factory.mktemp("tiny") / "run"
    fit(resolve({"model": "cnn_small", "epochs": 1, "batch_size": 32}), make_demo_data(n_train=200, n_val=70, n_test=0),
        run_dir=run, log=lambda *a, **k: None)
    return run


@pytest.fixture(scope="session")
def demo_search(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A real `fertune search` on the synthetic faces (4 tiny trials, ASHA, top-2 ensemble): its folder
    (search.yaml, results.parquet, best/, ensemble/, Ray's trial folders under ray/) and the CLI's output."""
    tmp = tmp_path_factory.mktemp("search")
    res = run_cli("search", "--data", "demo", "--space", str(tiny_space(tmp)), "--num-samples", "4",
                  "--max-concurrent", "2", "--top-k", "2", "--project", str(tmp / "runs"), "--name", "s1",
                  "--grace-period", "1", "--reduction-factor", "2", cwd=tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp / "runs" / "s1", res


@pytest.fixture(scope="session")
def two_metric_search(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A real two-objective search (val_macro_f1, latency_ms) whose trial 1 kills its own worker once after
    epoch 2 (the crash hook), logged to W&B, which must go offline by itself (no login)."""
    tmp = tmp_path_factory.mktemp("search2")
    env = {"FERTUNE_TEST_CRASH": "1:2", "WANDB_MODE": "", "WANDB_API_KEY": "", "WANDB_SILENT": "true",
           "HOME": str(tmp)}  # no ~/.netrc login
    res = run_cli("search", "--data", "demo", "--space", str(tiny_space(tmp)), "--num-samples", "3",
                  "--max-concurrent", "2", "--metric", "val_macro_f1", "--metric", "latency_ms", "--wandb",
                  "--project", str(tmp / "runs"), "--name", "c", cwd=tmp, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp / "runs" / "c", res


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `fertune` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout * TIMEOUT_SCALE, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


TAG_ENV = "FERTUNE_TEST_PROCESS_TAG"


def start_cli(*args: str, cwd: Path, log: Path | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """The real `fertune` command line started in the background, in its own process session, with a tag
    in its environment that every process it starts inherits (Ray's raylet, GCS, agents and workers):
    `tagged_processes(tag)` then finds whatever of it is left. Output goes to `log`, or to a pipe
    (`proc.stdout`, text) without one."""
    import uuid

    tag = uuid.uuid4().hex
    out = log.open("w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, stdout=out, text=True,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), TAG_ENV: tag, **(env or {})})
    return proc, tag


def tagged_processes(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live (non-zombie) process whose environment carries `tag`. An empty
    command line is a process already exiting (its memory is gone)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"{TAG_ENV}={tag}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found.append((int(proc.name), cmdline[:160]))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None,
               every: float = 0.5):
    """Poll `condition()` until it returns something truthy (returned); fail naming `what` (and the log's
    tail) on timeout, or as soon as `proc` exits."""
    import time

    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(every)
    tail = log.read_text()[-3000:] if log is not None and log.is_file() else ""
    pytest.fail(f"{what}: not within {timeout:.0f} s" + (f" (exit {proc.returncode})" if proc and proc.poll() is not None
                                                          else "") + f"\n{tail}")


# A search space small enough for tests: cnn_small on 300 synthetic faces, a few seconds an epoch.
TINY_SPACE = """\
metric: {metric}
space:
  model: cnn_small
  epochs: {epochs}
  train_subset: 300
  batch_size: 32
  eval_batch_size: 250
  patience: 0
  lr: {{loguniform: [5.0e-4, 5.0e-3]}}
  dropout: {{uniform: [0.1, 0.6]}}
"""

def tiny_space(folder: Path, epochs: int = 2, metric: str = "val_macro_f1") -> Path:
    path = folder / f"tiny{epochs}.yaml"
    path.write_text(TINY_SPACE.format(epochs=epochs, metric=metric))
    return path
