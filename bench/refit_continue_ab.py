"""Issue 14, part 4: should a search's refit continue its exploration trial's checkpoint, or start from scratch?

Runs, one right after the other on this machine, the refit of cnn_small's default configuration twice with
the same time budget, seed and schedule:
  scratch    fertune train --data DATA --set model=cnn_small --time-budget MIN
  continue   the same with --set init_weights=TRIAL (the trial's weights start the run)
TRIAL is an exploration trial's checkpoint (`--trial`, e.g. a search's ray/<name>/trial_*/run/weights/last.pt);
without one, the script first trains it as exploration does (wsd schedule, a stratified EXPLORE_SUBSET of the
training images, the cnn_small space's 10 epochs). Prints and writes each run's private_test accuracy (with its
standard error and flip-TTA), val accuracy and epochs.

    python bench/refit_continue_ab.py --data ../shared/data/fer2013.parquet --minutes 20 \
        --trial runs/budget_ab/search-*/ray/*/trial_*/run/weights/last.pt --out bench/results/refit_continue_ab.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from budget_ab import ROOT, scores, timed  # bench/ is on sys.path when run as a script
from machine import cpu_description

sys.path.insert(0, str(ROOT))
from jobs.search_refit import EXPLORE_SUBSET  # noqa: E402


def run_summary(run: Path, wall: float) -> dict:
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"wall_s": wall, "epochs": len(rows), "best_val_acc": max(float(r["val_acc"]) for r in rows),
            **scores(run / "eval.json")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--trial", help="an exploration trial's checkpoint; default: train one first")
    ap.add_argument("--project", default="runs/refit_continue_ab")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/refit_continue_ab.json")
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    project = Path(args.project).resolve()
    project.mkdir(parents=True, exist_ok=True)
    fertune = [sys.executable, "-m", "jobs.cli", "train", "--data", args.data, "--project", str(project)]
    out = {"minutes": args.minutes, "machine": cpu_description(), "date": time.strftime("%Y-%m-%d %H:%M")}
    trial = args.trial
    if trial is None:
        name = f"trial-{stamp}"
        sets = ["model=cnn_small", "scheduler=wsd", f"train_subset={EXPLORE_SUBSET}", "epochs=10"]
        wall = timed(fertune + [x for s in sets for x in ("--set", s)] + ["--name", name], project / f"{name}.log")
        trial = str(project / name / "weights" / "last.pt")
        out["trial_run"] = run_summary(project / name, wall)
    out["trial"] = str(Path(trial).resolve())
    for arm, extra in (("scratch", []), ("continue", [f"init_weights={Path(trial).resolve()}"])):
        name = f"{arm}-{stamp}"
        sets = ["model=cnn_small", *extra]
        wall = timed(fertune + [x for s in sets for x in ("--set", s)] + ["--time-budget", str(args.minutes),
                                                                         "--name", name], project / f"{name}.log")
        out[arm] = run_summary(project / name, wall)
        print(arm, json.dumps(out[arm]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
