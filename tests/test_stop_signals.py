"""SIGTERM (docker stop, systemd, Kubernetes) stops `fertune train` and `fertune search` as Ctrl-C does: the
command ends on its own, leaves a state that `--resume` continues, and leaves no process behind.
(`fertune serve` and `fertune video` are checked in their own test files.)"""
from __future__ import annotations

import signal

import pandas as pd
import pytest

from conftest import run_cli, start_cli, tagged_processes, tiny_space, wait_until
from fer_core import runs

STOP_TIMEOUT = 180  # generous: a 3x slower machine still stops well within it


@pytest.mark.long  # ~40 s: a training stopped and resumed; CI runs it
def test_sigterm_stops_train_and_resume_continues(tmp_path):
    log = tmp_path / "train.log"
    project = tmp_path / "runs"
    run = project / "t"
    proc, tag = start_cli("train", "--data", "demo", "--set", "model=cnn_small", "--set", "epochs=30",
                          "--set", "train_subset=300", "--set", "batch_size=32", "--project", str(project),
                          "--name", "t", cwd=tmp_path, log=log)
    try:
        wait_until(lambda: len(runs.read_metrics(run)) >= 1, 300, "a first finished epoch", proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped; continue with fertune train --name NAME --resume" in log.read_text()
    wait_until(lambda: not tagged_processes(tag), 30, "every process of the run to end")
    from fer_core.checkpoint import load_checkpoint

    done = int(load_checkpoint(runs.weights(run, runs.LAST))["epoch"])
    assert 1 <= done < 30 and [r["epoch"] for r in runs.read_metrics(run)] == list(range(1, done + 1))
    res = run_cli("train", "--name", "t", "--project", str(project), "--resume", "--set", f"epochs={done + 1}",
                  cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert f"resuming at epoch {done + 1}/{done + 1}" in res.stdout
    assert len(runs.read_metrics(run)) == done + 1 and (run / runs.EVAL).is_file()


@pytest.mark.long
def test_sigterm_stops_search_and_resume_finishes(tmp_path):
    """A search stopped by SIGTERM saves Tune's state, exports nothing (a half-run search is no result),
    shuts its Ray down, and `--resume` finishes it."""
    log = tmp_path / "search.log"
    project = tmp_path / "runs"
    experiment = project / "k" / runs.RAY_STORAGE / "k"
    proc, tag = start_cli("search", "--data", "demo", "--space", str(tiny_space(tmp_path, epochs=3)),
                          "--num-samples", "3", "--max-concurrent", "2", "--grace-period", "3", "--project",
                          str(project), "--name", "k", cwd=tmp_path, log=log)
    try:
        wait_until(lambda: list(experiment.glob(f"trial_*/checkpoint_*/{runs.LAST}")), 300,
                   "a first trial checkpoint", proc, log)
        ray_names = " ".join(cmd for _, cmd in tagged_processes(tag))
        assert "raylet" in ray_names and "gcs_server" in ray_names  # the check below sees Ray's processes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "unfinished; state saved" in text and "continue with fertune search --name NAME --resume" in text
    assert not (project / "k" / runs.BEST_DIR).exists()
    wait_until(lambda: not tagged_processes(tag), 30, "every process of the run to end")
    res = run_cli("search", "--name", "k", "--project", str(project), "--resume", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    df = pd.read_parquet(project / "k" / runs.RESULTS)
    assert len(df) == 3 and set(df["status"]) <= set(runs.STATUS_DONE)
    assert (project / "k" / runs.BEST_DIR / runs.EVAL).is_file()
