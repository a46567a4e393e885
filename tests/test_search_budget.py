"""`fertune search --time-budget MIN`: exploration, then the best configurations refit (continuing their trials'
checkpoints) to the budget's end, then best/ and ensemble/ from the refits; results.parquet marks the refit rows."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from conftest import run_cli
from fer_core import runs
from fer_core.config import load_yaml
from jobs.search_refit import candidates, merge, refit_count, refit_cpus, start_checkpoints
from jobs.search_space import parse_space, space_path

SPACE = parse_space({"metric": "val_acc", "space": {"model": "cnn_small", "lr": {"loguniform": [1e-4, 1e-2]}}})


def _explored() -> pd.DataFrame:
    # ranked best first, as collect_results returns them
    return pd.DataFrame({"trial_id": ["c", "a", "b", "d"], "trial": [2, 0, 1, 3], "config/lr": [3e-3, 2e-3, 1e-3, 5e-3],
                         "status": [runs.STOPPED_EARLY, runs.TERMINATED, runs.STOPPED_EARLY, runs.ERROR],
                         "epochs": [2, 4, 2, 0], "score": [0.5, 0.4, 0.3, None], "best_val_acc": [0.5, 0.4, 0.3, None],
                         "checkpoint": ["c.pt", "a.pt", "b.pt", None], "train_seconds": [10.0, 20.0, 10.0, None]})


def test_refit_candidates_are_the_best_finished_trials_or_else_the_default():
    assert list(candidates(_explored(), 2)["trial"]) == [2, 0]
    nothing = _explored().assign(score=None, checkpoint=None)
    assert list(candidates(nothing, 2)["trial"]) == [0]  # no comparison made: the default configuration


def test_refits_continue_their_trials_last_checkpoints_unless_told_scratch():
    chosen = candidates(_explored().assign(checkpoint=["s3://b/x/trial_c/checkpoint_000001/best.pt", "/l/a/best.pt",
                                                       "b.pt", None]), 2)
    assert start_checkpoints(chosen, {}) == {"2": "s3://b/x/trial_c/checkpoint_000001/last.pt", "0": "/l/a/last.pt"}
    assert start_checkpoints(chosen, {"refit_from": "scratch"}) == {}
    fallback = candidates(_explored().assign(score=None, checkpoint=None), 2)  # nothing to continue
    assert start_checkpoints(fallback, {}) == {}


def test_on_cpus_one_refit_takes_every_core_and_on_gpus_each_slot_refits():
    settings = {"cpus_per_trial": 1.0, "refit": None}
    assert refit_count(settings, free_slots=2, gpus_per_trial=0) == 1
    assert refit_cpus(settings, free_slots=2, gpus_per_trial=0, refits=1, largest_node_cpus=2) == 2  # 2 threads
    assert refit_cpus(settings, free_slots=4, gpus_per_trial=0, refits=3, largest_node_cpus=4) == 1  # whole cores
    assert refit_cpus(settings, free_slots=3, gpus_per_trial=0, refits=1, largest_node_cpus=1) == 1  # 3 1-CPU nodes
    assert refit_count(settings, free_slots=4, gpus_per_trial=0.25) == 4
    assert refit_cpus(settings, free_slots=4, gpus_per_trial=0.25, refits=4, largest_node_cpus=16) == 1
    assert refit_count({**settings, "refit": 3}, free_slots=2, gpus_per_trial=0) == 3  # --refit wins


def test_merge_marks_refits_and_gives_them_their_trials_values():
    refit = pd.DataFrame({"trial_id": ["r1", "r2"], "trial": [1, 0], "refit_of": [0, 2], "config/lr": [None, None],
                          "status": [runs.TERMINATED] * 2, "epochs": [9, 8], "score": [0.62, 0.6],
                          "best_val_acc": [0.62, 0.6], "checkpoint": ["r1.pt", "r2.pt"], "train_seconds": [60.0, 60.0]})
    df = merge(_explored(), refit, SPACE)
    refits = df[df["phase"] == runs.PHASE_REFIT]
    assert list(refits["trial"]) == [0, 2] and list(refits["config/lr"]) == [2e-3, 3e-3]
    assert (df[df["phase"] == runs.PHASE_EXPLORE]["refit_of"].isna()).all()
    table = runs.refits_beside_explored(df, "best_val_acc")
    assert list(table["explore best_val_acc"]) == [0.4, 0.5] and list(table["refit epochs"]) == [9, 8]


def test_the_exports_plan_times_their_own_inference_and_scores_val_only_to_choose_members(monkeypatch):
    """finish_seconds times fer_core.infer.predict_probs at the precision and layout the checkpoints load with
    (a bare NCHW pass planned twice the exports' time), and counts val only when members are chosen on it."""
    import itertools

    import fer_core.infer
    import jobs.search_refit as search_refit
    from fer_core.synthetic import make_demo_data

    data = make_demo_data(n_train=64, n_val=50, n_test=30)
    calls = []
    monkeypatch.setattr(fer_core.infer, "predict_probs", lambda model, images, *a, **kw: calls.append((len(images), kw)))
    clock = itertools.count()  # every perf_counter() call advances one second: one timed pass takes 1 s
    monkeypatch.setattr(search_refit.time, "perf_counter", lambda: float(next(clock)))
    per_image = 1 / 50  # the timed pass is over the 50 val images
    fixed = search_refit.FINISH_FIXED_S
    one = search_refit.finish_seconds(data, {"model": "cnn_small"}, 1)
    three = search_refit.finish_seconds(data, {"model": "cnn_small"}, 3)
    assert one == pytest.approx(fixed + (2 * 30 + 2 * 30) * per_image)  # best/ and the lone member, test with TTA
    assert three == pytest.approx(fixed + (2 * 30 + 3 * (50 + 2 * 30)) * per_image)
    assert [n for n, _ in calls] == [50, 50] * 2  # a warm-up (up to 64 images), then the timed pass
    assert all("channels_last" in kw and "bf16" in kw for _, kw in calls)


def test_bad_split_is_refused(tmp_path):
    res = run_cli("search", "--data", "demo", "--space", "demo.yaml", "--time-budget", "2", "--explore-share", "1.5",
                  "--project", str(tmp_path), cwd=tmp_path)
    assert res.returncode != 0 and "--explore-share must be between 0 and 1" in res.stderr


@pytest.mark.long
def test_a_two_minute_demo_search_ends_in_time_and_best_is_a_full_length_refit(tmp_path):
    project = tmp_path / "runs"
    # half the budget explores, on 600 of the 2,000 images: what is left of the first minute after loading the
    # data and starting Ray (~45 s) must hold a trial's start and an epoch even on a slow 2-core machine, or the
    # refit has no checkpoint to continue (all 2,000 images took ~40 s an epoch there: CI lost that race)
    space = tmp_path / "demo_subset.yaml"
    space.write_text(space_path("demo.yaml").read_text() + "  train_subset: 600\n")
    t0 = time.monotonic()
    res = run_cli("search", "--data", "demo", "--space", str(space), "--num-samples", "4", "--time-budget", "2",
                  "--explore-share", "0.5", "--project", str(project), "--name", "b", cwd=tmp_path)
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert wall <= 2 * 60 + 20, f"took {wall:.0f} s for a 2-minute budget"
    df = pd.read_parquet(project / "b" / runs.RESULTS)
    refits = df[df["phase"] == runs.PHASE_REFIT]
    assert len(refits) >= 1 and (refits["status"] == runs.TERMINATED).all()  # each ran its planned epochs
    best = runs.read_json(project / "b" / runs.BEST_DIR / runs.TRIAL)
    assert best["phase"] == runs.PHASE_REFIT and best["trial_id"] in set(refits["trial_id"])
    members = runs.read_json(project / "b" / runs.ENSEMBLE_DIR / runs.MEMBERS)["members"]
    assert {m["trial_id"] for m in members} <= set(refits["trial_id"])
    # the refit's plan came from the budget: its config records the measured speed and the planned steps
    config = load_yaml(project / "b" / runs.BEST_DIR / runs.CONFIG)
    assert config["measured_img_s"] > 0 and config["planned_steps"] > 0
    assert config["train_subset"] == 0  # exploration's subset is not the refit's: it trains on every image
    # ... and it continued its exploration trial's last checkpoint (copied into the refit's folder)
    starts = runs.read_json(project / "b" / "refit.json")["starts"]
    assert str(best["trial"]) in starts and starts[str(best["trial"])].endswith("/last.pt")
    assert config["init_weights"].endswith("init_weights.pt")
    assert "refits (full length, all training images)" in res.stdout
    show = run_cli("search", "--name", "b", "--project", str(project), "--show", cwd=tmp_path)
    assert show.returncode == 0 and "refits (full length, all training images)" in show.stdout
