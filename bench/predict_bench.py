"""`fertune predict` speed: a folder of N FER2013 crops in one call (batched) against one call per image,
and the start-up time to the first printed line.

    python bench/predict_bench.py --data ../shared/data/fer2013.parquet [--n 500] [--single 25]

The one-call-per-image figure runs `--single` of the N images as separate commands and scales their mean
to N (each call pays the same start-up: Python, torch, the model), which keeps the benchmark short.
Writes bench/results/predict.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fertune(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def first_line_seconds(cmd: list[str]) -> tuple[float, float]:
    """(seconds until the first stdout line, seconds until exit) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.readline()
    first = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--single", type=int, default=25, help="separate calls timed (scaled to --n)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "predict.json"))
    args = parser.parse_args()

    import cv2

    from fer_core.data import load_scored

    split = load_scored(args.data, "test").test
    with tempfile.TemporaryDirectory(prefix="fertune-predict-bench-") as tmp:
        folder = Path(tmp)
        for i in range(args.n):
            cv2.imwrite(str(folder / f"{i:04d}.png"), split.images[i])
        first, batched = first_line_seconds(fertune("predict", str(folder), "--no-faces"))
        singles = [first_line_seconds(fertune("predict", str(folder / f"{i:04d}.png"), "--no-faces"))[1]
                   for i in range(args.single)]
    per_call = sum(singles) / len(singles)
    result = {"images": args.n, "batched_s": round(batched, 2), "first_line_s": round(first, 2),
              "single_call_mean_s": round(per_call, 3), "single_calls_timed": args.single,
              "one_call_per_image_s": round(per_call * args.n, 1), "speedup": round(per_call * args.n / batched, 1),
              "date": time.strftime("%Y-%m-%d"), "cpu": os.popen("lscpu | grep 'Model name'").read().strip()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
