"""Which trial schedule makes ASHA's early rungs predict full-length quality? (issue 14's fidelity A/B)

For K configurations of a search space (configuration 0 is the model's default, the rest drawn at random
with a seeded Optuna sampler), each is trained to full length twice: with the model's own schedule (for
cnn_small: one-cycle, a warm-up then cosine over the whole run) and with `wsd` (the same warm-up, then a
constant rate, then a cosine decay over the last `decay_fraction` of the steps). The truth is each
configuration's final validation accuracy under its own schedule, i.e. what a refit at full length gives.
The measure is Spearman's rank correlation between the truth and the validation accuracy each schedule
shows at ASHA's rung epochs: the schedule with the higher correlation ranks configurations more fairly
when ASHA cuts them short.

    python bench/fidelity_ab.py --data ../shared/data/fer2013.parquet --configs 8 --epochs 8 \
        --train-subset 4000 --out bench/results/fidelity_ab.json

Runs `--workers` trainings at once, one thread each (2 on 2 cores). Accuracy at a fixed number of epochs does
not depend on the machine's speed, so other load slows this script but does not change its figures.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def draw_configs(space_name: str, count: int, seed: int) -> list[dict]:
    import optuna

    from jobs.search_space import SuggestTrial, default_point, load_space

    space = load_space(space_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    point, _ = default_point(space)
    study.enqueue_trial(point)
    configs = []
    for _ in range(count):
        trial = study.ask()
        fixed = SuggestTrial(space)(trial)
        configs.append({**fixed, **trial.params})
        study.tell(trial, 0.0)
    return configs


def train_one(job: tuple[int, str, dict, dict]) -> dict:
    index, schedule, config, run = job
    from fer_core.config import resolve
    from fer_core.data import load_data
    from fer_core.train import fit

    cfg = resolve({**config, "epochs": run["epochs"], "train_subset": run["train_subset"], "threads": 1,
                   "patience": 0, "metric": "val_acc", "seed": run["seed"],
                   **({"scheduler": "wsd"} if schedule == "wsd" else {})})
    data = load_data(run["data"], seed=run["seed"], splits=None)
    t0 = time.perf_counter()
    result = fit(cfg, data, log=lambda s: None)
    return {"config": index, "schedule": schedule, "val_acc": [r["val_acc"] for r in result.history],
            "seconds": time.perf_counter() - t0}


def spearman(a: list[float], b: list[float]) -> float:
    import pandas as pd

    return float(pd.Series(a).corr(pd.Series(b), method="spearman"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--space", default="cnn_small.yaml")
    ap.add_argument("--configs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-subset", type=int, default=4000)
    ap.add_argument("--rungs", default="2,6", help="ASHA's rung epochs (grace period 2, reduction factor 3)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/fidelity_ab.json")
    args = ap.parse_args()

    configs = draw_configs(args.space, args.configs, args.seed)
    run = {"data": str(Path(args.data).resolve()), "epochs": args.epochs, "train_subset": args.train_subset,
           "seed": args.seed}
    jobs = [(i, s, c, run) for i, c in enumerate(configs) for s in ("own", "wsd")]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for r in pool.imap_unordered(train_one, jobs):
            results.append(r)
            print(f"config {r['config']} {r['schedule']}: val_acc by epoch "
                  f"{' '.join(f'{v:.3f}' for v in r['val_acc'])} ({r['seconds']:.0f} s)", flush=True)
    by = {(r["config"], r["schedule"]): r["val_acc"] for r in results}
    truth = [by[(i, "own")][-1] for i in range(len(configs))]
    rungs = [int(v) for v in args.rungs.split(",")]
    table = {s: {f"epoch_{e}": spearman([by[(i, s)][e - 1] for i in range(len(configs))], truth) for e in rungs}
             for s in ("own", "wsd")}
    table["wsd_final_vs_truth"] = spearman([by[(i, "wsd")][-1] for i in range(len(configs))], truth)
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "configs": configs, "results": results,
           "spearman_vs_full_length": table, "wall_s": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
