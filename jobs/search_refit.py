"""Refit: a time-budgeted search turns the configurations it found into full-length models.

Exploration compares configurations on short trials (ASHA stops most at the first rung), and a short trial's
checkpoint is not a finished model: without refit, a 45-minute CPU search handed back a model 2.4 points
below the default trained alone for less time. With `--time-budget`, the search explores for
`explore_share` of the budget (on a stratified `EXPLORE_SUBSET` of the training images unless the space sets
`train_subset`), then trains the top configurations again on the whole split (each continuing its trial's last
checkpoint, or from scratch with `--refit-from scratch`), all to one
deadline (fer_core.budget plans each refit's epochs from the speed it measures) that leaves time for the
closing exports; best/ and ensemble/ are made from the refits.

A refit is its own Tune experiment (`NAME-refit` beside the search's), so a crashed refit worker resumes
from its last epoch and `--resume` continues an interrupted refit like any trial.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fer_core import runs
from fer_core.runs import PHASE_EXPLORE, PHASE_REFIT
from jobs import storage

if TYPE_CHECKING:  # the CLI reads this module's defaults before any heavy import
    import pandas as pd

    from jobs.search_space import SearchSpace

# of the budget: exploration; the rest refits. On 2 fp32 cores at 30 minutes 0.1 scored 61.88 % against 61.08 % (0.25)
# and 60.99 % (0.5): a longer refit beats more configurations compared (bench/budget_ab.py --explore-share, BENCHMARKS.md)
EXPLORE_SHARE = 0.1
# training images an exploration trial sees when a refit follows: rungs only rank configurations, so on a CPU a
# subset compares ~3.5x as many of them on FER2013 (28,709 images); data this small or smaller is used whole
EXPLORE_SUBSET = 8000
EXPLORE_SCHEDULER = "wsd"  # the trials' schedule when a refit follows (bench/fidelity_ab.py; docs/search.md)
# where a refit starts: "trial" continues its exploration trial's last checkpoint (a 20-minute refit on FER2013 scored
# +0.9 points test, +1.3 val against "scratch": bench/refit_continue_ab.py, BENCHMARKS.md), "scratch" from fresh weights
REFIT_FROM = "trial"
REFIT_FROM_CHOICES = ("trial", "scratch")
FINISH_FIXED_S = 15.0   # the closing exports' model loads, file writes and Ray's shutdown (demo: under 10 s)
REFIT_SUFFIX = "-refit"
REFIT_PLAN = "refit.json"  # in the search folder: the chosen trials, their configs, the closing exports' seconds


def refit_experiment(settings: dict[str, Any]) -> str:
    return storage.join(settings["storage"], settings["experiment"] + REFIT_SUFFIX)


def slots(settings: dict[str, Any], gpus_per_trial: float) -> int:
    """Trials the cluster runs at once: its CPUs (or GPUs) over a trial's share, capped by --max-concurrent."""
    import ray

    total = ray.cluster_resources()
    fit = int(total.get("CPU", 1) // max(settings["cpus_per_trial"], 1e-9))
    if gpus_per_trial > 0:
        fit = min(fit, int(total.get("GPU", 0) // gpus_per_trial))
    if settings.get("max_concurrent"):
        fit = min(fit, settings["max_concurrent"])
    return max(1, fit)


def refit_count(settings: dict[str, Any], free_slots: int, gpus_per_trial: float) -> int:
    """--refit, or else: one per slot on GPUs (a small network leaves a GPU share idle, so parallel refits are
    nearly free), one on CPUs (threads share the cores: two refits at once would each get half the epochs)."""
    if settings.get("refit"):
        return settings["refit"]
    return free_slots if gpus_per_trial > 0 else 1


def refit_cpus(settings: dict[str, Any], free_slots: int, gpus_per_trial: float, refits: int,
               largest_node_cpus: float) -> float:
    """CPUs (and torch threads) per refit: on CPUs the refits share all the slots' cores, whole cores each, and
    no more than one node has (a trial runs on one node: asking for more would never be scheduled)."""
    per_trial = settings["cpus_per_trial"]
    if gpus_per_trial > 0:
        return per_trial
    return max(per_trial, min(free_slots * per_trial // max(refits, 1), largest_node_cpus))


def largest_node_cpus() -> float:
    import ray

    return max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1.0)


def candidates(df: pd.DataFrame, count: int) -> pd.DataFrame:
    """The top `count` exploration trials that finished an epoch (df is ranked, best first); with none, the
    default configuration (trial 0): a budget too short to compare anything still ends with a refit model."""
    pool = df[df["checkpoint"].notna() & df["score"].notna() & df["status"].isin(runs.STATUS_DONE)]
    return pool.head(count) if len(pool) else df[df["trial"] == 0]


def start_checkpoints(chosen: pd.DataFrame, settings: dict[str, Any]) -> dict[str, str]:
    """{trial number: its latest checkpoint's last.pt (a path or storage URI)} for the refits to continue; empty
    with --refit-from scratch. A trial without a checkpoint (the no-epoch fallback) starts from scratch."""
    if settings.get("refit_from", REFIT_FROM) != "trial":
        return {}
    from jobs.search_results import sibling

    return {str(int(row["trial"])): sibling(row["checkpoint"], runs.LAST)
            for _, row in chosen.iterrows() if isinstance(row["checkpoint"], str)}


# what only exploration uses: a refit trains on the whole training split, for as long as its budget plans
EXPLORE_ONLY = ("train_subset", "epochs")


def trial_configs(experiment_path: str, trials: list[int]) -> dict[str, dict[str, Any]]:
    """{trial number: the config Tune gave it, less EXPLORE_ONLY} for the chosen exploration trials."""
    from ray.tune import ExperimentAnalysis

    from jobs.trainable import trial_index

    analysis = ExperimentAnalysis(experiment_path)
    return {str(trial_index(t)): {k: v for k, v in t.config.items() if k not in EXPLORE_ONLY}
            for t in analysis.trials if trial_index(t) in trials}


def finish_seconds(data: Any, config: dict[str, Any], members: int) -> float:
    """Seconds the closing exports take, from one timed pass of `config`'s network over validation images, run
    as the exports run it (fer_core.infer.predict_probs at the precision and memory layout its checkpoints will
    load with): best/ scores test with flip-TTA; the ensemble scores val per candidate when there is more than
    one, and test with flip-TTA per member.

    Timed before as a bare NCHW forward pass (4.75 ms a cnn_small image on 2 fp32 cores), with val counted for a
    lone member, a 30-minute search planned 101 s for exports whose evaluations took 48 s; timed this way the
    plan is 61 s (`python bench/finish_plan.py`, BENCHMARKS.md).
    """
    import numpy as np
    import torch

    from fer_core.config import resolve
    from fer_core.device import use_bf16, use_channels_last
    from fer_core.infer import predict_probs
    from fer_core.train import build_model

    cfg = resolve(config)
    model = build_model(cfg).eval()
    bf16, channels_last = use_bf16(cfg, torch.device("cpu")), use_channels_last(cfg, model)  # as its checkpoints load
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    split = data.val if data.val is not None else data.train
    images = np.asarray(split.images[:2048])

    def timed_pass(batch: np.ndarray) -> None:
        predict_probs(model, batch, cfg.mean, cfg.std, 512, bf16=bf16, channels_last=channels_last)

    timed_pass(images[:64])  # the first call allocates and picks kernels
    t0 = time.perf_counter()
    timed_pass(images)
    per_image = (time.perf_counter() - t0) / len(images)
    test = len(data.test.labels) if data.test is not None else len(split.labels)
    val = len(data.val.labels) if data.val is not None and members > 1 else 0
    return FINISH_FIXED_S + (2 * test + members * (val + 2 * test)) * per_image


def merge(explore: pd.DataFrame, refit: pd.DataFrame | None, space: SearchSpace) -> pd.DataFrame:
    """One results table: refit rows first (each ranked within its phase), `phase` and `refit_of` columns;
    a refit row carries the searched values of the trial it refits."""
    import pandas as pd

    explore = explore.assign(phase=PHASE_EXPLORE, refit_of=float("nan"))
    if refit is None or refit.empty:
        return explore
    refit = refit.copy()
    refit["phase"] = PHASE_REFIT
    by_trial = explore.set_index("trial")
    for key in space.params:
        refit[f"config/{key}"] = [by_trial.at[int(t), f"config/{key}"] for t in refit["refit_of"]]
    refit["trial"] = refit["refit_of"].astype(int)  # trial 0's refit is still the default configuration
    return pd.concat([refit, explore], ignore_index=True)


def refit_pool(df: pd.DataFrame) -> pd.DataFrame:
    """Where best/ and ensemble/ come from: the refits when there are any."""
    if "phase" in df and (df["phase"] == PHASE_REFIT).any():
        return df[df["phase"] == PHASE_REFIT]
    return df


def format_refits(df: pd.DataFrame, space: SearchSpace) -> str:
    """Each refit beside the exploration trial it refits: epochs and the metric at both lengths."""
    table = runs.refits_beside_explored(df, runs.objective_column(space.metric))
    if table.empty:
        return ""
    return "refits (full length, all training images):\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4g}",
                                                                     na_rep="-")


def run_refit(settings: dict[str, Any], space: SearchSpace, data: Any, folder: Path, explore: pd.DataFrame,
              restore: bool, started: float, make_trainable: Callable[[dict[str, Any], float], Any],
              gpus_per_trial: float, experiment_path: str) -> pd.DataFrame | None:
    """Train the top exploration configurations again on the whole split to one deadline (continuing each trial's
    last checkpoint unless --refit-from scratch); their result rows.

    `make_trainable(plan, cpus)` gives the Tune trainable for a plan with `cpus` per refit (jobs.search); a
    resumed search restores the refit experiment and its plan (the deadline counts anew from `started`, as the
    exploration's budget does).
    """
    from ray import tune

    from jobs.search import run_config
    from jobs.search_progress import Progress
    from jobs.search_results import collect_results
    from jobs.trainable import trial_dirname, trial_name

    path = refit_experiment(settings)
    saved = folder / REFIT_PLAN
    budget_s = 60 * settings["time_budget_min"]
    if restore and saved.is_file() and tune.Tuner.can_restore(path):
        plan = runs.read_json(saved)
        plan["deadline"] = started + budget_s - plan["finish_s"]
        cpus = plan.get("cpus", settings["cpus_per_trial"])  # a plan saved before refits shared the cores has none
        tuner = tune.Tuner.restore(path, trainable=make_trainable(plan, cpus), resume_unfinished=True,
                                   resume_errored=True)
    else:
        free_slots = slots(settings, gpus_per_trial)
        chosen = candidates(explore, refit_count(settings, free_slots, gpus_per_trial))
        if chosen.empty:
            print("refit: no exploration trial started; nothing to refit")
            return None
        trials = [int(t) for t in chosen["trial"]]
        configs = trial_configs(experiment_path, trials)
        finish_s = finish_seconds(data, configs[str(trials[0])], len(trials))
        cpus = refit_cpus(settings, free_slots, gpus_per_trial, len(trials), largest_node_cpus())
        plan = {"trials": trials, "configs": configs, "finish_s": finish_s, "cpus": cpus,
                "deadline": started + budget_s - finish_s, "starts": start_checkpoints(chosen, settings)}
        if plan["deadline"] <= time.time():
            print(f"refit: no time left (the closing exports need {finish_s:.0f} s); best/ is the best exploration "
                  f"trial. Give more --time-budget or a smaller --explore-share")
            return None
        runs.write_json(saved, plan)
        start = "continuing their last checkpoints" if plan["starts"] else "from scratch"
        print(f"\nrefit: trials {', '.join(map(str, trials))} {start}, at once, {plan['cpus']:g} CPUs each, "
              f"{(plan['deadline'] - time.time()) / 60:.1f} min each (the closing exports keep {finish_s:.0f} s)")
        tuner = tune.Tuner(
            make_trainable(plan, plan["cpus"]), param_space={"refit_of": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=settings["max_concurrent"],
                                        trial_dirname_creator=trial_dirname, trial_name_creator=trial_name),
            run_config=run_config(settings, space, Path(path).name, [Progress(space.metric, space.mode, len(trials))]))
    tuner.fit()
    return collect_results(path, space)
