"""The real `fertune` CLI at toy size: train, kill, resume, eval, and the errors users meet."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO, run_cli

TOY = ["--set", "model=cnn_small", "--set", "epochs=3", "--set", "train_subset=1200", "--set", "batch_size=32",
       "--set", "threads=2"]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.long  # ~2 min; test_stop_signals covers train resume by default
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref = run_cli("train", "--data", "demo", *TOY, "--project", str(tmp_path), "--name", "ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert "Next: fertune eval" in ref.stdout

    cmd = [sys.executable, "-m", "jobs.cli", "train", "--data", "demo", *TOY, "--project", str(tmp_path), "--name", "cut"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "weights" / "last.pt"
    deadline = time.time() + 300
    csv = tmp_path / "cut" / "metrics.csv"
    while not csv.exists() and time.time() < deadline:  # wait for epoch 1's checkpoint and row, not a fixed sleep
        time.sleep(0.02)
    assert last.exists(), "epoch 1 never finished"
    epoch_seconds = float(csv.read_text().splitlines()[1].split(",")[-1])
    time.sleep(epoch_seconds / 3)  # well inside epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] == 1, "the kill did not land mid-epoch 2"

    resumed = run_cli("train", "--data", "demo", "--project", str(tmp_path), "--name", "cut", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2/3" in resumed.stdout

    a, b = _weights(tmp_path / "ref" / "weights" / "last.pt"), _weights(last)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-5, f"weights differ by {worst}"  # stated tolerance: 1e-5 (CPU, same thread count)
    ref_rows = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in cut_rows[1:]] == ["1", "2", "3"]  # no epoch lost or repeated
    for x, y in zip(ref_rows[1:], cut_rows[1:]):  # every metric but the wall time
        assert np.allclose([float(v) for v in x.split(",")[:-1]], [float(v) for v in y.split(",")[:-1]], atol=1e-4)

    ev = run_cli("eval", "--model", str(tmp_path / "cut"), "--data", "demo", "--tta", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    written = json.loads((tmp_path / "cut" / "eval.json").read_text())
    assert written["split"] == "test" and "accuracy_tta" in written and "test: accuracy" in ev.stdout


@pytest.mark.parametrize("args, message", [
    (["--data", "nope/missing.parquet"], "does not exist"),
    (["--data", "demo", "--set", "lerning_rate=1"], "unknown setting 'lerning_rate'"),
    (["--data", "demo", "--set", "model=resnet81"], "unknown model 'resnet81'"),
    (["--data", "demo", "--set", "epochs=abc"], "'epochs' expects int"),
])
def test_bad_input_fails_before_work_with_a_clear_message(tmp_path, args, message):
    out = run_cli("train", *args, "--project", str(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_existing_name_is_refused_with_the_fix(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.csv").write_text("keep me")
    out = run_cli("train", "--data", "demo", "--project", str(tmp_path), "--name", "taken", cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "--resume" in out.stderr and "--exist-ok" in out.stderr
    assert (tmp_path / "taken" / "metrics.csv").read_text() == "keep me"


def test_wrong_columns_and_unknown_class_via_cli(tmp_path):
    import pandas as pd

    pd.DataFrame({"foo": [1], "bar": [2]}).to_parquet(tmp_path / "bad.parquet")
    out = run_cli("train", "--data", str(tmp_path / "bad.parquet"), "--project", str(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "column" in out.stderr.lower()
    folder = tmp_path / "imgs" / "train" / "joyful"
    folder.mkdir(parents=True)
    import cv2

    cv2.imwrite(str(folder / "a.png"), np.zeros((48, 48), np.uint8))
    out = run_cli("train", "--data", str(tmp_path / "imgs"), "--project", str(tmp_path), cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "joyful" in out.stderr and "--classes" in out.stderr


def test_demo_is_a_search_built_by_the_search_parser(tmp_path, monkeypatch):
    """`fertune demo` parses its flags with the real `fertune search` parser, so it gets every search default."""
    from jobs import cli, search

    seen = {}

    def start(args):
        seen["args"] = args
        return tmp_path / "runs" / "d"

    monkeypatch.setattr(search, "start", start)
    assert cli.main(["demo", "--project", str(tmp_path / "runs"), "--name", "d"]) == 0
    args = seen["args"]
    assert (args.command, args.data, args.space, args.num_samples, args.top_k) == ("search", "demo", "demo.yaml", 4, 3)
    assert (args.project, args.name, args.resume, args.show) == (str(tmp_path / "runs"), "d", False, False)
    assert args.seed == 0 and args.cpus_per_trial is None  # the search parser's defaults, not hand-written ones
