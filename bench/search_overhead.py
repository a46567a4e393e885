"""Orchestration overhead of `fertune search`: Ray start-up + Tune + actors, against the trials' own work.

Runs the real CLI: N trials (default 8) of cnn_small, 1 CPU each, concurrency C (default 2), with ASHA's
grace period at the full length so every trial trains all its epochs. Then compares the search's wall
time (from before `ray.init` to the end of `Tuner.fit`, so Ray start-up counts) with the ideal
(sum of the trials' training seconds, measured inside each trial) / C. The target is a ratio <= 1.15.

    python bench/search_overhead.py                         # ~10 minutes on 2 cores (real data if present)
    python bench/search_overhead.py --smoke                 # 2 tiny trials: checks the script runs
Hold the CPU lock while it runs (see the project's CPU etiquette): other load inflates the ratio.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "fer2013.parquet"
TARGET = 1.15


def space_yaml(epochs: int, train_subset: int) -> str:
    return (f"metric: val_acc\nspace:\n  model: cnn_small\n  epochs: {epochs}\n  train_subset: {train_subset}\n"
            f"  patience: 0\n  batch_size: 64\n  lr: {{loguniform: [5.0e-4, 5.0e-3]}}\n"
            f"  dropout: {{uniform: [0.1, 0.6]}}\n  head_width: {{choice: [128, 256]}}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REAL) if REAL.is_file() else "demo")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="per trial (default: about 2 minutes per trial on one core)")
    ap.add_argument("--train-subset", type=int, help="training images per trial (0 = all)")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "search_overhead.json"))
    ap.add_argument("--smoke", action="store_true", help="2 trials x 1 epoch on 300 images: a quick check")
    args = ap.parse_args(argv)
    if args.smoke:
        args.trials, args.epochs, args.train_subset = 2, 1, 300
    real = args.data != "demo"
    epochs = args.epochs or (3 if real else 30)
    subset = args.train_subset if args.train_subset is not None else (8000 if real else 0)

    with tempfile.TemporaryDirectory(prefix="fertune-overhead-") as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(space_yaml(epochs, subset))
        cmd = [sys.executable, "-m", "jobs.cli", "search", "--data", args.data, "--space", str(space),
               "--num-samples", str(args.trials), "--max-concurrent", str(args.concurrency),
               "--cpus-per-trial", "1", "--grace-period", str(epochs), "--top-k", "1",
               "--project", tmp, "--name", "overhead"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        process_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return proc.returncode
        import pandas as pd

        folder = Path(tmp) / "overhead"
        timing = json.loads((folder / "timing.json").read_text())
        df = pd.read_parquet(folder / "results.parquet")
    train_sum = float(df["train_seconds"].sum())
    ideal = train_sum / args.concurrency
    ratio = timing["search_wall_s"] / ideal
    result = {"data": args.data, "trials": args.trials, "concurrency": args.concurrency, "epochs": epochs,
              "train_subset": subset, "statuses": df["status"].value_counts().to_dict(),
              "trial_train_seconds": [round(float(s), 1) for s in df["train_seconds"]],
              "sum_train_s": round(train_sum, 1), "ideal_wall_s": round(ideal, 1),
              "ray_start_s": round(timing["ray_start_s"], 1), "search_wall_s": round(timing["search_wall_s"], 1),
              "process_wall_s": round(process_wall, 1), "ratio": round(ratio, 3), "target": TARGET,
              "pass": ratio <= TARGET}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"search wall {timing['search_wall_s']:.0f}s vs ideal {ideal:.0f}s (sum of trial training "
          f"{train_sum:.0f}s / {args.concurrency}): ratio {ratio:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
