"""Issue 14's acceptance: the default trained for MIN minutes against a search given the same MIN minutes.

Runs, one right after the other on this machine:
  (a) fertune train  --data DATA --set model=cnn_small --time-budget MIN
  (b) fertune search --data DATA --space cnn_small.yaml --time-budget MIN
then prints and writes each one's wall time against the budget, and the private_test accuracy (with its
standard error and flip-TTA) of (a), (b)'s best/ and (b)'s ensemble/, read from their eval.json files.

    python bench/budget_ab.py --data ../shared/data/fer2013.parquet --minutes 60 --out bench/results/budget_ab.json

`--only train` or `--only search` runs one side (e.g. `--only train --set amp=off` for the time-budget check).
`--explore-share S`, repeated, runs one search per share, one after the other (the exploration/refit split's
A/B: `--only search --minutes 30 --explore-share 0.25 --explore-share 0.1`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_description  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], log: Path) -> float:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    with open(log, "w") as out:
        code = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if code:
        raise SystemExit(f"{cmd[3]} failed (exit {code}); see {log}")
    return wall


def scores(eval_json: Path) -> dict:
    e = json.loads(eval_json.read_text())
    se = (e["accuracy"] * (1 - e["accuracy"]) / e["n"]) ** 0.5  # binomial standard error of the accuracy
    return {"accuracy_se": se, **{k: e.get(k) for k in ("split", "n", "accuracy", "accuracy_tta", "macro_f1")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--only", choices=["train", "search"])
    ap.add_argument("--set", action="append", default=[], help="extra --set for (a), e.g. amp=off")
    ap.add_argument("--explore-share", type=float, action="append", default=[],
                    help="one search per value, in order (default: one search with the search's default)")
    ap.add_argument("--project", default="runs/budget_ab")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/budget_ab.json")
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    project = Path(args.project).resolve()
    project.mkdir(parents=True, exist_ok=True)
    fertune = [sys.executable, "-m", "jobs.cli"]
    out = {"minutes": args.minutes, "machine": cpu_description(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.only in (None, "train"):
        name = f"train-{stamp}"
        sets = [x for s in ["model=cnn_small", *args.set] for x in ("--set", s)]
        wall = timed(fertune + ["train", "--data", args.data, *sets, "--time-budget", str(args.minutes),
                                "--project", str(project), "--name", name], project / f"{name}.log")
        out["train"] = {"wall_s": wall, "over_budget": wall / (60 * args.minutes) - 1, "sets": args.set,
                        **scores(project / name / "eval.json")}
    if args.only in (None, "search"):
        for share in args.explore_share or [None]:
            name = f"search-{stamp}" + (f"-share{share:g}" if share is not None else "")
            split = ["--explore-share", str(share)] if share is not None else []
            wall = timed(fertune + ["search", "--data", args.data, "--space", "cnn_small.yaml", "--time-budget",
                                    str(args.minutes), *split, "--project", str(project), "--name", name],
                         project / f"{name}.log")
            out["search" if share is None else f"search_share{share:g}"] = {
                "wall_s": wall, "over_budget": wall / (60 * args.minutes) - 1, "explore_share": share,
                "best": scores(project / name / "best" / "eval.json"),
                "ensemble": scores(project / name / "ensemble" / "eval.json")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
