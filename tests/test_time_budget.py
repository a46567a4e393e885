"""`fertune train --time-budget MIN`: epochs planned from measured speed, the schedule laid over the plan,
the plan recorded in config.yaml and kept by --resume."""
from __future__ import annotations

import time

import pytest

from conftest import run_cli
from fer_core import runs
from fer_core.budget import FIXED_SECONDS, MARGIN, TimeBudget
from fer_core.config import load_yaml


def test_plan_counts_steps_that_fit_after_the_final_evaluation():
    budget = TimeBudget(deadline=time.time() + 600, final_images=1000, minutes=10)
    # an epoch: 20 steps of 100 images at 100 img/s (20 s) + 500 validation images at 500 img/s (1 s)
    # left: 600 s - final evaluation (1,000 / 500 + FIXED_SECONDS) - margin (MARGIN x 600 s)
    steps = budget.plan(train_img_s=100, eval_img_s=500, steps_per_epoch=20, batch_size=100, val_images=500)
    left = 600 - (2 + FIXED_SECONDS) - MARGIN * 600
    whole = int(left // 21)
    part = int((left - 21 * whole - 1) // 1)  # the rest, after the partial epoch's validation, at 1 s a step
    assert budget.epoch_seconds == pytest.approx(21) and steps == pytest.approx(whole * 20 + part, abs=1)
    assert 0 < steps % 20  # the last epoch is partial: the budget is not rounded down to whole epochs
    # an epoch 10 % slow re-sizes the tail without a re-plan; 30 % slow is a re-plan, and fewer steps fit
    near, replanned = budget.resize(step_seconds=1.1, val_seconds=1.0, steps_per_epoch=20)
    assert not replanned and near < steps
    slow, replanned = budget.resize(step_seconds=1.1 * 1.3, val_seconds=1.0 * 1.3, steps_per_epoch=20)
    assert replanned and slow < near


def test_one_slow_epoch_among_steady_ones_does_not_cut_the_plan():
    def steady_then(slow: float | None) -> int:
        budget = TimeBudget(deadline=time.time() + 3600, final_images=1000, minutes=60)
        budget.plan(train_img_s=100, eval_img_s=500, steps_per_epoch=20, batch_size=100, val_images=500)
        for _ in range(2):
            steps, _ = budget.resize(step_seconds=1.0, val_seconds=1.0, steps_per_epoch=20)
        if slow:
            steps, replanned = budget.resize(step_seconds=slow, val_seconds=1.0, steps_per_epoch=20)
            assert replanned  # reported, but sized at the median of the last three epochs' pace
        return steps

    assert abs(steady_then(1.4) - steady_then(None)) <= 1  # (microseconds pass between the two)
    # the same slowdown for three epochs in a row is the machine's pace now: the tail shrinks
    budget = TimeBudget(deadline=time.time() + 3600, final_images=1000, minutes=60)
    budget.plan(train_img_s=100, eval_img_s=500, steps_per_epoch=20, batch_size=100, val_images=500)
    paced = [budget.resize(step_seconds=1.4, val_seconds=1.0, steps_per_epoch=20)[0] for _ in range(3)]
    assert paced[-1] < steady_then(None) * 0.8


def test_with_no_time_left_a_closing_epoch_still_ends_the_schedule():
    budget = TimeBudget(deadline=time.time() + 600, final_images=1000, minutes=10)
    budget.plan(train_img_s=100, eval_img_s=500, steps_per_epoch=20, batch_size=100, val_images=500)
    budget.deadline = time.time()  # the budget is spent
    assert budget.resize(step_seconds=1.0, val_seconds=1.0, steps_per_epoch=20) == (1, False)
    assert budget.resize(step_seconds=1.0, val_seconds=1.0, steps_per_epoch=200)[0] == 10  # CLOSING_FRACTION


def test_a_budget_that_cannot_hold_one_epoch_still_trains_one():
    budget = TimeBudget(deadline=time.time() + 5, final_images=100, minutes=5 / 60)
    assert budget.plan(train_img_s=10, eval_img_s=10, steps_per_epoch=30, batch_size=32, val_images=100) == 30


def test_bad_budget_is_refused(tmp_path):
    res = run_cli("train", "--data", "demo", "--time-budget", "-3", "--project", str(tmp_path), cwd=tmp_path)
    assert res.returncode != 0 and "time_budget must be >= 0" in res.stderr


def test_train_plans_epochs_lays_the_schedule_over_them_and_resume_keeps_the_plan(tmp_path):
    project = tmp_path / "runs"
    # batch 32 on 2,000 faces: 62 steps an epoch, enough to plan from the first 33 steps
    res = run_cli("train", "--data", "demo", "--set", "model=cnn_small", "--set", "batch_size=32", "--set",
                  "patience=0", "--time-budget", "0.5", "--project", str(project), "--name", "b", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    run = project / "b"
    saved = load_yaml(run / runs.CONFIG)
    assert saved["time_budget"] == 0.5 and saved["measured_img_s"] > 0
    planned = saved["epochs"]  # the plan as it ended: each epoch re-sizes the tail at the measured pace
    assert " epochs planned (" in res.stdout and (planned - 1) * 62 < saved["planned_steps"] <= planned * 62
    rows = runs.read_metrics(run)
    assert len(rows) == planned >= 1 and (run / runs.EVAL).is_file()
    # the cosine ran its course over the planned epochs: the last epoch ends near lr_min
    assert rows[-1]["lr"] < 0.05 * saved["lr"]
    assert f"{planned} of {planned} planned epochs" in res.stdout

    # --resume keeps the recorded plan: no new probe, the same number of epochs
    res = run_cli("train", "--name", "b", "--project", str(project), "--resume", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "planned at" not in res.stdout and load_yaml(run / runs.CONFIG)["epochs"] == planned
    assert len(runs.read_metrics(run)) == planned
