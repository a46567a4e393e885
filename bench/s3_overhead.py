"""What S3 storage costs a search: the same small demo search with `--storage` a local folder and an S3 bucket.

The bucket is moto's S3 server on 127.0.0.1 (no network latency: this measures the extra work of uploading
every checkpoint and the experiment state through the S3 API, and reading them back for best/ and ensemble/,
not a real region's round trips). The two searches alternate, `--repeats` times each, in one run:

    python bench/s3_overhead.py --repeats 2 --out bench/results/s3_overhead.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
from local_cluster import BUCKET, LocalCluster  # noqa: E402
from machine import cpu_description  # noqa: E402  (bench/ is on sys.path when run as a script)

SPACE = """\
metric: val_macro_f1
space:
  model: cnn_small
  epochs: 4
  train_subset: 600
  batch_size: 32
  lr: {loguniform: [5.0e-4, 5.0e-3]}
  dropout: {uniform: [0.1, 0.6]}
"""


def search(storage: str, work: Path, name: str, env: dict[str, str], samples: int) -> dict[str, float]:
    """The search's wall, and the part of it from Tune's start to the last trial event (its `[ Ns]` stamps):
    the trials with their per-epoch checkpoint uploads; the rest is start-up and the closing exports."""
    cmd = [sys.executable, "-m", "jobs.cli", "search", "--data", "demo", "--space", str(work / "space.yaml"),
           "--num-samples", str(samples), "--max-concurrent", "2", "--grace-period", "4", "--storage", storage,
           "--project", str(work / "runs"), "--name", name]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"search {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    stamps = [float(x) for x in re.findall(r"^\[\s*(\d+)s\]", res.stdout, flags=re.M)]
    return {"wall_s": wall, "trials_s": max(stamps, default=float("nan"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/s3_overhead.json")
    args = ap.parse_args()
    cluster = LocalCluster().start_s3()  # the S3 server alone: both searches run on this process's local Ray
    env = {**os.environ, **cluster.s3_env, "PYTHONPATH": str(ROOT)}
    try:
        runs: dict[str, list[dict[str, float]]] = {"local": [], "s3": []}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "space.yaml").write_text(SPACE)
            for i in range(args.repeats):
                for kind in ("local", "s3"):
                    storage = str(work / "ray") if kind == "local" else f"s3://{BUCKET}/bench"
                    runs[kind].append(search(storage, work, f"{kind}{i}", env, args.samples))
                    print(f"{kind} #{i}: {runs[kind][-1]}", flush=True)
    finally:
        cluster.stop()
    median = {kind: {part: statistics.median(r[part] for r in rs) for part in ("wall_s", "trials_s")}
              for kind, rs in runs.items()}
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": cpu_description(), "samples": args.samples,
           "epochs": 4, "runs": runs, "median": median,
           "s3_over_local": median["s3"]["wall_s"] / median["local"]["wall_s"],
           "s3_over_local_trials": median["s3"]["trials_s"] / median["local"]["trials_s"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
