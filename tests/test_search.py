"""`fertune search` end to end on a real local Ray: results, exports, SIGKILL + resume, a crashing worker.

Tiny trials (cnn_small, 300 training images, batch 32, 2-3 epochs) on the synthetic faces; each search
is the real CLI in a subprocess with its own local Ray.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import run_cli, start_cli, tiny_space, wait_until

COLUMNS = {"trial_id", "status", "epochs", "config/lr", "config/dropout", "best_val_acc", "best_val_macro_f1",
           "last_val_acc", "last_val_macro_f1", "train_seconds", "checkpoint"}
DONE = {"TERMINATED", "STOPPED_EARLY"}


def result_rows(experiment: Path) -> dict[str, list[dict]]:
    """Every result Tune logged, per trial id (result.json lines), from the experiment folder."""
    rows = {}
    for trial_dir in sorted(experiment.glob("trial_*")):
        lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").is_file() else []
        results = [json.loads(line) for line in lines if line.strip()]
        if results:
            rows[results[0]["trial_id"]] = results
    return rows


def checkpoint_epochs(experiment: Path, trial_id: str) -> list[int]:
    """The epoch counter inside each kept checkpoint's last.pt of a trial."""
    return sorted(int(torch.load(p, weights_only=True)["epoch"])
                  for p in experiment.glob(f"trial_{trial_id}/checkpoint_*/last.pt"))


# --------------------------------------------------------------------------------- end-to-end search
def test_search_results_leaderboard_and_exports(demo_search, tmp_path):
    folder, res = demo_search
    df = pd.read_parquet(folder / "results.parquet")
    assert COLUMNS <= set(df.columns)
    assert len(df) == 4 and set(df["status"]) <= DONE
    assert (df["status"] == "TERMINATED").any() and df.loc[df["status"] == "TERMINATED", "epochs"].eq(2).all()
    default = df[df["trial"] == 0].iloc[0]  # trial 0 is cnn_small's default configuration
    assert default["config/lr"] == pytest.approx(2e-3) and default["config/dropout"] == pytest.approx(0.5)
    assert df["config/lr"].nunique() == 4  # the others were drawn by Optuna
    assert (df["train_seconds"] > 0).all() and df["checkpoint"].map(lambda p: Path(p).is_file()).all()
    assert "(default)" in res.stdout and "best: trial" in res.stdout and "over the default configuration" in res.stdout
    assert "epoch 2/2" in res.stdout  # per-trial progress lines

    best = df.iloc[0]  # ranked on the first metric
    assert best["best_val_macro_f1"] == df["best_val_macro_f1"].max()
    trial = json.loads((folder / "best" / "trial.json").read_text())
    assert trial["trial_id"] == best["trial_id"]
    assert json.loads((folder / "best" / "eval.json").read_text())["split"] == "test"
    ev = run_cli("eval", "--model", str(folder / "best"), "--data", "demo", "--out", str(tmp_path / "ev.json"),
                 cwd=tmp_path, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert json.loads((tmp_path / "ev.json").read_text())["n"] == 1000

    chosen = json.loads((folder / "ensemble" / "members.json").read_text())
    members = [m["trial_id"] for m in chosen["members"]]
    # greedy selection on val among the top 2: the best trial always, the second only if it helped
    assert members[0] == df["trial_id"][0] and set(members) <= set(df["trial_id"][:2])
    assert chosen["candidates"] == list(df["trial"][:2]) and chosen["selection"].startswith("greedy")
    assert sorted(p.name for p in (folder / "ensemble" / "members").iterdir()) == sorted(f"{m}.pt" for m in members)
    from fer_core.infer import Predictor

    assert len(Predictor(folder / "ensemble", device="cpu").members) == len(members)
    ens = json.loads((folder / "ensemble" / "eval.json").read_text())
    assert ens["split"] == "test" and ens["n"] == 1000 and "accuracy_tta" in ens


def test_show_and_name_reuse(demo_search, tmp_path):
    folder, _ = demo_search
    shown = run_cli("search", "--name", "s1", "--project", str(folder.parent), "--show", cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "(default)" in shown.stdout and "TERMINATED" in shown.stdout
    again = run_cli("search", "--data", "demo", "--space", str(tiny_space(tmp_path)), "--project", str(folder.parent),
                    "--name", "s1", cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr and "--name" in again.stderr


# ---------------------------------------------------------------------------------- SIGKILL + resume
def _state(experiment: Path):
    """Tune's saved experiment state (None until a complete state file exists)."""
    if not list(experiment.glob("experiment_state-*.json")):
        return None
    from ray.tune import ExperimentAnalysis

    try:
        return ExperimentAnalysis(str(experiment)).trials
    except Exception:  # noqa: BLE001  (written while we read it)
        return None


@pytest.mark.long
def test_sigkill_driver_then_resume(tmp_path):
    project = tmp_path / "runs"
    log = tmp_path / "first.log"
    proc, _ = start_cli("search", "--data", "demo", "--space", str(tiny_space(tmp_path, epochs=3)), "--num-samples",
                        "4", "--max-concurrent", "2", "--grace-period", "3", "--project", str(project), "--name", "k",
                        cwd=tmp_path, log=log)
    experiment = project / "k" / "ray" / "k"

    def finished_and_resumable():
        """Tune's saved state with one trial finished and another checkpointed but unfinished."""
        trials = _state(experiment) or []
        done = {t.trial_id for t in trials if t.status == "TERMINATED"}
        resumable = [t for t in trials if t.status != "TERMINATED" and t.checkpoint is not None]
        return done if done and resumable else None

    try:
        finished_before = wait_until(finished_and_resumable, 240, "a finished and a checkpointed trial", proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, at once
        proc.wait()
    saved = {t.trial_id: t for t in _state(experiment)}
    saved_epoch = {tid: checkpoint_epochs(experiment, tid) for tid in saved}
    before = {tid: len(rows) for tid, rows in result_rows(experiment).items()}

    res = run_cli("search", "--name", "k", "--project", str(project), "--resume", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    df = pd.read_parquet(project / "k" / "results.parquet")
    assert len(df) == 4 and set(df["status"]) <= DONE, df[["trial_id", "status", "epochs"]]
    rows = result_rows(experiment)
    for tid in finished_before:  # finished trials did not run again
        assert len(rows[tid]) == before[tid] == 3
    resumed = 0
    for tid, trial_rows in rows.items():
        new = trial_rows[before.get(tid, 0):]
        if tid in finished_before or not new:
            continue
        start = new[0]["start_epoch"]
        assert new[0]["epoch"] == start + 1  # continued right after the checkpoint it restored
        if tid in saved and saved[tid].checkpoint is not None:
            assert start > 0 and start in saved_epoch[tid]  # the epoch counter of a checkpoint saved before the kill
            resumed += 1
        assert max(checkpoint_epochs(experiment, tid)) == trial_rows[-1]["epoch"]
    assert resumed >= 1


# --------------------------------------------------------------- crashing worker, two objectives, W&B
@pytest.mark.long  # its search fixture takes ~1.5 min
def test_worker_crash_resumes_two_objectives_wandb_offline(two_metric_search):
    folder, res = two_metric_search
    assert (folder / ".test-crash-1-2").is_file()  # the hook fired
    assert "restarting it from its last checkpoint" in res.stdout
    df = pd.read_parquet(folder / "results.parquet")
    assert set(df["status"]) == {"TERMINATED"} and df["epochs"].eq(2).all()  # no ASHA with two objectives
    crashed = df[df["trial"] == 1].iloc[0]["trial_id"]
    rows = result_rows(folder / "ray" / "c")[crashed]
    assert [(r["epoch"], r["start_epoch"]) for r in rows] == [(1, 0), (2, 1)]  # resumed from epoch 1's checkpoint
    crashed_row = df[df["trial"] == 1].iloc[0]
    assert (crashed_row["restarts"], crashed_row["epochs_redone"]) == (1, 1)  # epoch 2, trained then lost, again
    assert (df["latency_ms"] > 0).all() and df["pareto"].any()
    best = json.loads((folder / "best" / "trial.json").read_text())
    assert best["pareto"] and best["trial_id"] == df[df["pareto"]].iloc[0]["trial_id"]
    assert "Pareto front" in res.stdout and "offline" in res.stdout
    assert list((folder / "wandb").glob("offline-run-*")), "no offline W&B runs written"
