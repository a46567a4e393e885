"""`fertune search`: Ray Tune + Optuna (seeded multivariate TPE) + ASHA over TrainConfig, resumable.

The recipe: parse and check the space (before Ray starts), load the data once in the driver (trials get
it through the object store), run `jobs.trainable.train_trial` under Tune with per-epoch checkpoints and
`FailureConfig`, then write results.parquet, the leaderboard, best/ and ensemble/ (jobs.search_results).
Ray's experiment state lives in `--storage` (default: `runs/search/NAME/ray`), so `--resume` continues a
search that was killed, with its finished trials and searcher state kept.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fer_core import runs
from fer_core.runs import run_folder
from fer_core.stop import sigterm_kept
from jobs import search_wandb, storage
from jobs.search_refit import EXPLORE_SCHEDULER, EXPLORE_SHARE, EXPLORE_SUBSET, REFIT_FROM
from jobs.search_space import SearchSpace, default_point, load_space, parse_space
from jobs.trainable import CRASH_ENV, trial_dirname, trial_name

DEFAULT_SPACE = "default.yaml"
DEFAULTS = {"num_samples": 16, "cpus_per_trial": 1.0, "max_failures": 3, "keep_checkpoints": 2,
            "reduction_factor": 3}
# Environment variables that trial workers need even on a cluster whose raylets did not start with them.
PASS_ENV = (CRASH_ENV, "WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "OMP_NUM_THREADS", *storage.ENDPOINT_ENV)


def main(args: Any) -> int:
    if args.show:
        return show(args)
    if args.resume:
        resume(args)
    else:
        start(args)
    return 0


# -------------------------------------------------------------------------------------------- settings
def _settings(args: Any, space: SearchSpace, folder: Path) -> dict[str, Any]:
    """Everything besides the space that a resumed search must repeat exactly (saved in search.yaml)."""
    data = args.data
    if data != "demo":
        data = str(Path(data).expanduser().resolve())
        if not Path(data).exists():
            raise FileNotFoundError(f"--data {args.data} does not exist; pass a FER2013 Parquet/CSV, an image "
                                    f"folder, or 'demo'")
    share, refit = getattr(args, "explore_share", None), getattr(args, "refit", None)
    if share is not None and not 0 < share < 1:
        raise ValueError(f"--explore-share must be between 0 and 1 (the budget's share that explores), got {share}")
    if refit is not None and refit < 0:
        raise ValueError(f"--refit must be >= 0 configurations (0: no refit), got {refit}")
    storage = args.storage or str((folder / runs.RAY_STORAGE).resolve())
    max_epochs = space.max_epochs()
    grace = getattr(args, "grace_period", None) or max(1, max_epochs // 4)
    return {
        "data": data, "classes": args.classes, "num_samples": args.num_samples or DEFAULTS["num_samples"],
        "max_concurrent": args.max_concurrent, "cpus_per_trial": args.cpus_per_trial or DEFAULTS["cpus_per_trial"],
        "gpus_per_trial": args.gpus_per_trial, "seed": args.seed, "top_k": args.top_k,
        "time_budget_min": args.time_budget, "address": args.address, "storage": storage,
        "experiment": folder.name, "wandb": bool(args.wandb), "max_epochs": max_epochs,
        "grace_period": min(grace, max_epochs),
        "reduction_factor": getattr(args, "reduction_factor", None) or DEFAULTS["reduction_factor"],
        "max_failures": DEFAULTS["max_failures"],
        # with a time budget: the share that explores, and the configurations refit after it (None: one per slot)
        "explore_share": share or EXPLORE_SHARE, "refit": refit,
        "refit_from": getattr(args, "refit_from", None) or REFIT_FROM,
    }


def _experiment_path(settings: dict[str, Any]) -> str:
    return storage.join(settings["storage"], settings["experiment"])


def _load_data(settings: dict[str, Any]):
    from fer_core.data import describe, load_data
    from fer_core.labels import parse_class_map

    t0 = time.perf_counter()
    data = load_data(settings["data"], classes=parse_class_map(settings["classes"]), seed=settings["seed"])
    print(describe(data))
    print(f"data loaded in {time.perf_counter() - t0:.1f}s (once, shared with every trial)")
    return data


# ------------------------------------------------------------------------------------------------- ray
def _init_ray(settings: dict[str, Any]) -> None:
    """Start or join Ray with its console noise off: trial output stays in the trials' log files."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0 the legacy reporter prints nothing
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    with sigterm_kept():  # the CLI's SIGTERM stops as Ctrl-C does: Tune saves its state first
        if settings["address"]:
            ray.init(address=settings["address"], **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    logging.getLogger("ray").setLevel(logging.ERROR)
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _gpus_per_trial(settings: dict[str, Any]) -> float:
    gpus = settings["gpus_per_trial"]
    if gpus is None:
        import ray

        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return gpus


def _refits(settings: dict[str, Any], space: SearchSpace) -> bool:
    """Whether the search ends with refits: a time budget, one objective, and --refit not 0."""
    return bool(settings["time_budget_min"]) and not space.multi_objective and settings.get("refit") != 0


def _trainable(settings: dict[str, Any], space: SearchSpace, data: Any, folder: Path,
               refit: dict[str, Any] | None = None):
    """The trial function with its resources; `refit` (jobs.search_refit) makes it train chosen configurations
    to a deadline instead of exploring."""
    from ray import tune

    from jobs.trainable import train_trial

    gpus = _gpus_per_trial(settings)
    cpus = settings["cpus_per_trial"]
    overrides: dict[str, Any] = {"threads": max(1, int(cpus)), "device": "cuda" if gpus > 0 else "cpu",
                                 "metric": space.metric}
    if "seed" not in space.params and "seed" not in space.fixed:
        overrides["seed"] = settings["seed"]
    if _refits(settings, space) and refit is None:
        # the refit makes the final models, so trials only rank configurations: with the schedule whose rungs rank
        # them best, on a subset of the images (the refit trains on all of them); a space's own value wins
        explore = {"scheduler": EXPLORE_SCHEDULER, "train_subset": EXPLORE_SUBSET}
        overrides.update({k: v for k, v in explore.items() if k not in space.params and k not in space.fixed})
    trial_settings = {"overrides": overrides, "latency": "latency_ms" in space.metrics,
                      "marker_dir": str(folder.resolve()), "refit": refit}
    fn = tune.with_parameters(train_trial, data=data, settings=trial_settings)
    return tune.with_resources(fn, {"cpu": cpus, "gpu": gpus})


def _explore_seconds(settings: dict[str, Any], space: SearchSpace, started: float) -> float | None:
    """Tune's time budget: all of --time-budget, or its exploration share when refits follow (from `started`,
    the command's start: data loading and Ray's start-up count)."""
    budget = settings["time_budget_min"]
    if not budget:
        return None
    share = settings.get("explore_share", EXPLORE_SHARE) if _refits(settings, space) else 1.0
    return max(1.0, share * budget * 60 - (time.time() - started))


def _tuner(settings: dict[str, Any], space: SearchSpace, trainable: Any, folder: Path, started: float):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from jobs.search_progress import Progress
    from jobs.search_space import SuggestTrial

    point, skipped = default_point(space)
    if skipped:
        print(f"note: the default configuration's {', '.join(skipped)} lie outside the space; trial 0 draws them")
    metric = space.metrics if space.multi_objective else space.metric
    mode = space.modes if space.multi_objective else space.mode
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings["seed"], multivariate=True)
    searcher = OptunaSearch(space=SuggestTrial(space), metric=metric, mode=mode, points_to_evaluate=[point],
                            sampler=sampler)
    if space.multi_objective:  # ASHA ranks on one number; with two objectives every trial runs to the end
        scheduler = FIFOScheduler()
    else:
        scheduler = ASHAScheduler(metric=space.metric, mode=space.mode, time_attr="training_iteration",
                                  max_t=settings["max_epochs"], grace_period=settings["grace_period"],
                                  reduction_factor=settings["reduction_factor"])
    callbacks: list[Any] = [Progress(space.metric, space.mode, settings["num_samples"])]
    if settings["wandb"]:
        callbacks.append(search_wandb.callback(settings["experiment"], folder))
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=settings["num_samples"],
                                  max_concurrent_trials=settings["max_concurrent"],
                                  time_budget_s=_explore_seconds(settings, space, started),
                                  trial_dirname_creator=trial_dirname, trial_name_creator=trial_name)
    return tune.Tuner(trainable, tune_config=tune_config,
                      run_config=run_config(settings, space, settings["experiment"], callbacks))


def run_config(settings: dict[str, Any], space: SearchSpace, name: str, callbacks: list[Any]):
    """Tune's RunConfig for the search's experiments (exploration and refit): storage, restarts, checkpoints."""
    from ray import tune

    from jobs.search_faults import FaultLedger  # what restarts cost: Tune's history loses it

    return tune.RunConfig(
        name=name, storage_path=settings["storage"], verbose=0,
        callbacks=[*callbacks, FaultLedger(storage.join(settings["storage"], name))],
        failure_config=tune.FailureConfig(max_failures=settings["max_failures"]),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=DEFAULTS["keep_checkpoints"],
                                                checkpoint_score_attribute=space.metric,
                                                checkpoint_score_order=space.mode))


# -------------------------------------------------------------------------------------------- commands
def _resolve_space(args: Any) -> SearchSpace:
    space = load_space(args.space or DEFAULT_SPACE)
    return space.with_overrides(epochs=args.epochs, metrics=args.metric)


def start(args: Any) -> Path:
    """A new search: check everything that can be checked before Ray starts, then run it; returns its folder."""
    started = time.time()  # a time budget counts from here: loading data and starting Ray are part of it
    if not args.data:
        raise ValueError("fertune search needs --data PATH|demo (or --name NAME --resume / --show)")
    space = _resolve_space(args)  # a bad space fails here, before any folder, data or Ray
    folder = run_folder(args.project, args.name, exist_ok=args.exist_ok, command="fertune search")
    settings = _settings(args, space, folder)
    storage.refuse_existing_experiment(settings["storage"], folder.name, args.exist_ok)
    saved = yaml.safe_dump({"space": space.to_dict(), "settings": settings}, sort_keys=False)
    runs.atomic_write_text(folder / runs.SEARCH, saved)
    if storage.is_remote(settings["storage"]):  # a driver on another machine resumes from the bucket alone
        storage.write_text(storage.settings_uri(settings["storage"], settings["experiment"]), saved)
    data = _load_data(settings)
    _run(settings, space, data, folder, restore=False, started=started)
    return folder


def _saved(args: Any) -> tuple[Path, SearchSpace, dict[str, Any]]:
    storage.fetch_saved_settings(Path(args.project), args.name, args.storage)
    folder = run_folder(args.project, args.name, resume=True, command="fertune search")
    saved_file = folder / runs.SEARCH
    if not saved_file.is_file():
        raise FileNotFoundError(f"{folder} has no {runs.SEARCH}, so it is not a search folder; start a new "
                                f"search with another --name")
    saved = yaml.safe_load(saved_file.read_text())
    return folder, parse_space(saved["space"], source=str(saved_file)), saved["settings"]


def resume(args: Any) -> Path:
    """Continue a killed or interrupted search: finished trials stay, unfinished ones resume from checkpoints."""
    started = time.time()
    folder, space, settings = _saved(args)
    if args.storage:
        settings["storage"] = args.storage
    if args.address:
        settings["address"] = args.address
    settings["time_budget_min"] = args.time_budget if args.time_budget is not None else settings["time_budget_min"]
    data = _load_data(settings)
    _run(settings, space, data, folder, restore=True, started=started)
    return folder


def _run(settings: dict[str, Any], space: SearchSpace, data: Any, folder: Path, restore: bool,
         started: float) -> None:
    from ray import tune

    if settings["wandb"]:
        print(f"W&B: logging every trial ({search_wandb.mode()} mode; offline runs sync later with `wandb sync {folder}/wandb`)")
    t0 = time.perf_counter()
    _init_ray(settings)
    ray_start = time.perf_counter() - t0
    print(f"Ray ready in {ray_start:.1f}s; search folder {folder}")
    print(f"if interrupted, continue with: fertune search --name {folder.name} --resume"
          + (f" --storage {settings['storage']}" if "://" in settings["storage"] else ""))
    import ray

    try:
        trainable = _trainable(settings, space, data, folder)
        path = _experiment_path(settings)
        if restore:
            if not tune.Tuner.can_restore(path):
                raise FileNotFoundError(f"no Ray experiment state at {path}; pass the --storage the search ran "
                                        f"with, or start it again with --exist-ok")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
            budget = settings["time_budget_min"]
            if budget:  # the time budget counts anew from this start (Tune restarts its timer on restore)
                print(f"time budget: {budget:g} min from now")
        else:
            tuner = _tuner(settings, space, trainable, folder, started)
            print(f"searching {len(space.params)} keys ({', '.join(space.params)}) with {settings['num_samples']} "
                  f"trials; trial 0 is the default configuration; objective {' and '.join(space.metrics)}")
        tuner.fit()
        wall = time.perf_counter() - t0
        # bench/search_overhead.py compares this wall time (Ray start-up included) with the trials' own time
        runs.write_json(folder / runs.TIMING, {"ray_start_s": ray_start, "search_wall_s": wall})
        from jobs.search_refit import merge, run_refit
        from jobs.search_results import collect_results, write_results

        df = collect_results(path, space)
        write_results(df, folder)
        _stop_if_unfinished(df, path)
        if _refits(settings, space):
            refit = run_refit(settings, space, data, folder, df, restore, started,
                              lambda plan, cpus: _trainable(dict(settings, cpus_per_trial=cpus), space, data, folder,
                                                            refit=plan),
                              gpus_per_trial=_gpus_per_trial(settings), experiment_path=path)
            df = merge(df, refit, space)
            write_results(df, folder)
            _stop_if_unfinished(df, path)
            wall = time.perf_counter() - t0
        finish(folder, space, settings, data, df)
        # the closing exports' own seconds, beside what a refit plan kept for them (refit.json finish_s)
        runs.write_json(folder / runs.TIMING, {"ray_start_s": ray_start, "search_wall_s": wall,
                                               "exports_s": time.perf_counter() - t0 - wall})
        print(f"search wall time {wall:.0f}s (Ray start-up included)")
    finally:
        ray.shutdown()


def _stop_if_unfinished(df: Any, path: str) -> None:
    stopped = df["status"].isin(runs.UNFINISHED)
    if stopped.any():
        # Ctrl-C or SIGTERM: Tune saved its state and left these trials to resume; exporting a best/ of
        # a half-run search would pass for a result
        print(f"\nsearch stopped with {int(stopped.sum())} trial(s) unfinished; state saved in {path}")
        raise KeyboardInterrupt


def finish(folder: Path, space: SearchSpace, settings: dict[str, Any], data: Any, df: Any) -> None:
    """The leaderboard, best/ and ensemble/ of a finished search's results, and what to run next."""
    from fer_core.metrics import format_report
    from jobs.search_results import choose_best, export_best, export_ensemble, format_leaderboard

    print("\n" + format_leaderboard(df, space))
    best = choose_best(df, space)
    if best is None:
        print(f"\nno trial finished an epoch; results in {folder / runs.RESULTS}")
        return
    report = export_best(best, folder, data, settings["data"])
    print(f"\nbest/ (trial {best['trial']}) on {report['split']}:\n{format_report(report)}")
    ens = export_ensemble(df, folder, data, settings["top_k"], space)
    if ens:
        print(f"\nensemble/ ({ens['members']} members, {ens['selection']}) on {ens['split']}:\n{format_report(ens)}")
    data_arg = settings["data"]
    best_dir, ensemble_dir = folder / runs.BEST_DIR, folder / runs.ENSEMBLE_DIR
    print(f"\nResults: {folder}  ({runs.RESULTS}, {best_dir.name}/, {ensemble_dir.name}/, {runs.SEARCH})\n"
          f"Next: fertune eval --model {best_dir} --data {data_arg} --tta\n"
          f"      fertune serve --model {ensemble_dir}\n"
          f"      fertune report {folder}\n"
          f"      fertune search --name {folder.name} --show")


def _refit_results(settings: dict[str, Any], space: SearchSpace) -> Any:
    """The refits' rows so far, or None when the search has not started any."""
    from ray import tune

    from jobs.search_refit import refit_experiment
    from jobs.search_results import collect_results

    path = refit_experiment(settings)
    return collect_results(path, space) if tune.Tuner.can_restore(path) else None


def show(args: Any) -> int:
    """Print the leaderboard of a search, finished or still running."""
    import pandas as pd

    from jobs.search_refit import merge
    from jobs.search_results import collect_results, format_leaderboard

    if not args.name:
        raise ValueError("--show needs --name NAME: the search under runs/search to show")
    folder, space, settings = _saved(args)
    if args.storage:
        settings["storage"] = args.storage
    try:
        df = collect_results(_experiment_path(settings), space)
        df = merge(df, _refit_results(settings, space), space)
    except Exception as err:  # noqa: BLE001  (no state saved yet, or remote storage unreachable)
        parquet = folder / runs.RESULTS
        if not parquet.is_file():
            raise FileNotFoundError(f"{folder} has no results yet ({type(err).__name__}: {err}); "
                                    f"wait for the first trial to report") from None
        df = pd.read_parquet(parquet)
    print(format_leaderboard(df, space, limit=None))
    sys.stdout.flush()
    return 0
