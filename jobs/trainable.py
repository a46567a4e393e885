"""The Tune trainable: one trial is one `fer_core.train.fit`, reporting every epoch with a checkpoint.

Tune appears only here and in search.py; the training itself is the engine's `fit`, the same function
`fertune train` runs. A restarted trial (its worker died, or the search was resumed) copies its last
checkpoint back into a run folder and calls `fit(resume=True)`, which continues at the next epoch.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from fer_core import runs

# Test-only fault injection: "INDEX:EPOCH" makes trial number INDEX (0 = the default configuration)
# kill its own worker process once, just before it reports epoch EPOCH (so it resumes from EPOCH - 1).
CRASH_ENV = "FERTUNE_TEST_CRASH"
# a trial's run folder files that each Tune checkpoint carries (flat inside the checkpoint)
CHECKPOINT_FILES = (f"{runs.WEIGHTS}/{runs.LAST}", f"{runs.WEIGHTS}/{runs.BEST}", runs.METRICS, runs.CONFIG)


def trial_index(trial: Any) -> int:
    """The trial's number in creation order, 0 = the default configuration.

    From a Tune Trial: its experiment tag starts with Tune's 1-based counter ('3_lr=...' -> 2); from a
    trial name made by `trial_name` ('trial_2') inside the trainable.
    """
    tag = getattr(trial, "experiment_tag", None)
    try:
        if tag is not None:
            return int(str(tag).split("_", 1)[0]) - 1
        return int(str(trial).rsplit("_", 1)[-1])
    except ValueError:
        return -1


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default embeds every config value)."""
    return f"trial_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    """Tune trial_name_creator: 'trial_N', so the trainable knows its own number; a refit of trial N
    (jobs.search_refit) is 'refit_N'."""
    if "refit_of" in trial.config:
        return f"refit_{trial.config['refit_of']}"
    return f"trial_{trial_index(trial)}"


def measure_latency_ms(cfg: Any, threads: int, batch: int = 32, repeats: int = 5) -> float:
    """CPU inference milliseconds per image of cfg's network (median of `repeats` batches)."""
    import torch

    from fer_core.train import build_model

    torch.set_num_threads(max(1, threads))
    model = build_model(cfg).eval()
    x = torch.zeros(batch, 1, cfg.img_size, cfg.img_size)
    times = []
    with torch.no_grad():
        model(x)  # warm-up: first call allocates and picks kernels
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000 / batch)
    return float(sorted(times)[len(times) // 2])


def _maybe_crash(index: int, epoch: int, marker_dir: str) -> None:
    spec = os.environ.get(CRASH_ENV, "")
    if not spec or ":" not in spec:
        return
    want_index, want_epoch = (int(v) for v in spec.split(":", 1))
    marker = Path(marker_dir) / f".test-crash-{want_index}-{want_epoch}"
    if (index, epoch) == (want_index, want_epoch) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("crashed once\n")
        os._exit(3)  # the whole worker process dies, as on an OOM kill or a lost node


def _restore(checkpoint: Any, run_dir: Path) -> tuple[int, float]:
    """Copy a Tune checkpoint's files into run_dir; returns (its epoch, training seconds up to it)."""
    with checkpoint.as_directory() as src:
        for name in CHECKPOINT_FILES:
            if (Path(src) / Path(name).name).is_file():
                (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(src) / Path(name).name, run_dir / name)
    from fer_core.checkpoint import load_checkpoint

    epoch = int(load_checkpoint(runs.weights(run_dir, runs.LAST))["epoch"])
    rows = [r for r in runs.read_metrics(run_dir) if r["epoch"] <= epoch]
    return epoch, float(sum(r["seconds"] for r in rows))


def train_trial(config: dict[str, Any], data: Any = None, settings: dict[str, Any] | None = None) -> None:
    """Tune function trainable: resolve the TrainConfig, (re)start fit, report each epoch to Tune.

    `data` is the FerData the driver loaded (passed through the object store by tune.with_parameters);
    `settings` holds what is not searched: `overrides` (threads, device, metric), `latency` (bool: also
    report latency_ms), `marker_dir` (for the test crash hook), and for a refit (jobs.search_refit)
    `refit`: {"configs": {trial number: its config}, "deadline": time.time() by which training must end};
    a refit trial's own config is {"refit_of": trial number}.
    """
    import ray
    from ray import tune

    from fer_core.config import resolve
    from fer_core.train import fit

    settings = settings or {}
    t_start = time.perf_counter()
    ctx = tune.get_context()
    index = trial_index(ctx.get_trial_name())
    refit = settings.get("refit")
    refit_of = config.get("refit_of")
    if refit:
        config = refit["configs"][str(refit_of)]
    cfg = resolve({**config, **settings.get("overrides", {})})
    run_dir = Path(ctx.get_trial_dir()) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    start_epoch, seconds_before = 0, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        start_epoch, seconds_before = _restore(checkpoint, run_dir)
        if refit and start_epoch > 0:  # the refit's time-budget plan (epochs, steps) is in its config.yaml
            cfg = resolve(settings.get("overrides", {}), config_file=run_dir / runs.CONFIG)
    latency = measure_latency_ms(cfg, cfg.threads or 1) if settings.get("latency") else None
    node_id = ray.get_runtime_context().get_node_id()
    train_seconds = seconds_before

    def report(row: dict[str, Any], last_path: str) -> None:
        nonlocal train_seconds
        _maybe_crash(index, int(row["epoch"]), settings.get("marker_dir", str(run_dir)))
        train_seconds += float(row["seconds"])
        metrics = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and v is not None}
        metrics.update(epoch=int(row["epoch"]), best_epoch=int(row["best_epoch"]), start_epoch=start_epoch,
                       train_seconds=train_seconds, trial_seconds=time.perf_counter() - t_start,
                       trial_index=index, node_id=node_id, epochs_planned=int(row.get("epochs_planned", cfg.epochs)))
        if latency is not None:
            metrics["latency_ms"] = latency
        with tempfile.TemporaryDirectory(prefix="fertune-ckpt-") as tmp:
            for name in CHECKPOINT_FILES:
                src = run_dir / name
                if src.is_file():
                    # fit replaces its files by rename, so a hard link is a stable snapshot (copy if not allowed)
                    try:
                        os.link(src, Path(tmp) / src.name)
                    except OSError:
                        shutil.copyfile(src, Path(tmp) / src.name)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    # fit's per-epoch lines go to the trial's worker log (Ray keeps them off the user's console)
    budget = None
    if refit and start_epoch == 0:  # a resumed refit keeps the plan (and the weights) its run folder records
        from fer_core.budget import TimeBudget

        start = refit.get("starts", {}).get(str(refit_of))
        if start:  # continue the exploration trial: its last.pt, copied here from wherever storage keeps it
            from jobs.search_results import fetch_file

            cfg = dataclasses.replace(cfg, init_weights=str(fetch_file(start, run_dir / "init_weights.pt")))

        budget = TimeBudget(deadline=refit["deadline"], final_images=0,
                            minutes=max(refit["deadline"] - time.time(), 1.0) / 60)
    fit(cfg, data, run_dir=run_dir, report=report, resume=start_epoch > 0, log=print, budget=budget)
