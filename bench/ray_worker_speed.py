"""Does training run slower inside a Ray worker? fertune's train step (bench/train_throughput.py's `fertune`
loop, cnn_small, batch 64, random images) timed in five places, in alternating rounds, each in a fresh process:

  plain          `python` itself, as `fertune train` runs
  plain_ray_up   the same process after ray.init (the raylet, GCS and dashboard running beside it)
  task           a Ray task holding all the CPUs, the loop in a second thread as Tune's function trainables run
  tune           a one-trial Tune experiment (a function trainable), as a refit runs
  tune_nice0     the same with RAY_worker_niceness=0 (Ray starts its workers at niceness 15 by default)

    python bench/ray_worker_speed.py --threads 2 --steps 120 --repeats 2 --out bench/results/ray_worker_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from machine import cpu_description  # bench/ is on sys.path when run as a script

PLACES = ("plain", "plain_ray_up", "task", "tune", "tune_nice0")


def measure(threads: int, steps: int) -> float:
    """img/s of fertune's train step on random 48x48 images (the speed does not depend on their content)."""
    import torch

    from fer_core.config import resolve
    from train_throughput import bench_fertune

    torch.set_num_threads(threads)
    cfg = resolve({"model": "cnn_small", "threads": threads})
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8000, cfg.img_size, cfg.img_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 7, (8000,), generator=gen)
    return bench_fertune(cfg, torch.device("cpu"), images, labels, steps, warmup=10)


def in_thread(fn, *args) -> float:
    box = {}
    worker = threading.Thread(target=lambda: box.update(value=fn(*args)))
    worker.start()
    worker.join()
    return box["value"]


def run_place(place: str, threads: int, steps: int) -> dict:
    if place == "plain":
        return {"img_s": measure(threads, steps), "nice": os.nice(0)}
    import ray

    bench = Path(__file__).resolve().parent  # the workers import train_throughput from here
    ray.init(num_cpus=threads, include_dashboard=place != "task", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(bench), os.environ.get("PYTHONPATH", "")])}})
    try:
        if place == "plain_ray_up":
            return {"img_s": measure(threads, steps), "nice": os.nice(0)}
        if place == "task":
            remote = ray.remote(num_cpus=threads)(lambda: (in_thread(measure, threads, steps), os.nice(0)))
            img_s, nice = ray.get(remote.remote())
            return {"img_s": img_s, "nice": nice}
        from ray import tune

        def trainable(config):
            tune.report({"img_s": measure(threads, steps), "nice": os.nice(0)})

        grid = tune.Tuner(tune.with_resources(trainable, {"cpu": threads}),
                          run_config=tune.RunConfig(storage_path=str(Path("/tmp/fertune-ray-worker-speed").resolve()),
                                                    verbose=0)).fit()
        result = grid[0].metrics
        return {"img_s": result["img_s"], "nice": result["nice"]}
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--place", choices=PLACES, help=argparse.SUPPRESS)  # one measurement, in a child process
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.place:
        print(json.dumps(run_place(args.place, args.threads, args.steps)))
        return
    rows = []
    for round_ in range(args.repeats):
        for place in PLACES:
            env = dict(os.environ, RAY_worker_niceness="0") if place == "tune_nice0" else os.environ
            t0 = time.time()
            out = subprocess.run([sys.executable, __file__, "--place", place, "--threads", str(args.threads),
                                  "--steps", str(args.steps)], env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{place} failed:\n{out.stderr[-3000:]}")
            row = {"round": round_, "place": place, "wall_s": time.time() - t0,
                   **json.loads(out.stdout.strip().splitlines()[-1])}
            print(row, flush=True)
            rows.append(row)
    median = {p: statistics.median(r["img_s"] for r in rows if r["place"] == p) for p in PLACES}
    summary = {p: {"img_s": round(v, 1), "vs_plain": round(v / median["plain"], 3)} for p, v in median.items()}
    report = {"machine": cpu_description(), "date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads,
              "steps": args.steps, "median": summary, "rows": rows}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
