"""The prepared GPU scripts' --smoke modes run their steps on CPU and write their results (no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import REPO


@pytest.mark.long  # ResNet-18 steps on CPU; CI runs it
def test_gpu_check_smoke(tmp_path):
    out = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke"], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OUT": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    table = json.loads((tmp_path / "gpu_check" / "throughput.json").read_text())
    assert {r["model"] for r in table["rows"]} == {"cnn_small", "resnet18"}
    assert all(r["fertune"] > 0 and r["ceiling"] > 0 and r["baseline"] > 0 for r in table["rows"])
    ev = json.loads((tmp_path / "gpu_check" / "eval.json").read_text())
    assert ev["split"] == "test" and 0 <= ev["accuracy"] <= 1 and "accuracy_tta" in ev
    assert "training throughput" in out.stdout and "wall seconds" in out.stdout


@pytest.mark.long  # a 1-minute time-budgeted search; CI runs it
def test_gpu_search_smoke(tmp_path):
    out = subprocess.run(["bash", "bench/gpu_search.sh", "--smoke"], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OUT": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_search" / "summary.json").read_text())
    assert summary["smoke"] and summary["trials"] >= 2 and summary["aggregate_train_img_s"] > 0
    # exploration, then a refit per process; best is the refit chosen on validation, with its test score
    best, refits = summary["best"], [r for r in summary["results"] if r["phase"] == "refit"]
    assert len(refits) == 2 and best["phase"] == "refit" and best["epochs_done"] == best["epochs_planned"] >= 1
    assert {r["start"] for r in refits} == {"trial"}  # each continued its exploration trial, as the search does
    assert best["val_macro_f1"] == max(r["val_macro_f1"] for r in refits)
    assert best["split"] == "test" and 0 <= best["test_accuracy"] <= 1
    assert 0 <= summary["ensemble"]["test_accuracy"] <= 1 and best["trial"] in summary["ensemble"]["members"]
