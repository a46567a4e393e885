"""Two or more models on the same labelled images: each one's accuracy (with its standard error and flip-TTA),
and for each pair the images only one of them gets right with the exact McNemar test on those counts.

Two accuracies 0.8 points apart on FER2013's 3,589 test images are each +-0.8 (one standard error), but the
models mostly agree, so the paired test on the images where they disagree is the fair comparison of an A/B.

    python bench/paired_test.py --data ../shared/data/fer2013.parquet runs/a/best runs/b/best [...]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from math import comb
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_core.data import load_scored  # noqa: E402
from fer_core.evaluate import evaluate  # noqa: E402


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of only_a against only_a + only_b at 1/2."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default=None, help="the scored split (default test, else val)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("models", nargs="+", help="run folders, checkpoints or bundled model names")
    args = ap.parse_args()
    data = load_scored(args.data, args.split)
    right, out = {}, {"data": args.data, "models": {}, "pairs": []}
    for model in args.models:
        ev = evaluate(model, data, args.split, tta=True)
        right[model] = ev.probs.argmax(1) == ev.labels
        r = ev.report
        out["models"][model] = {"split": r["split"], "n": r["n"], "accuracy": r["accuracy"],
                                "accuracy_se": (r["accuracy"] * (1 - r["accuracy"]) / r["n"]) ** 0.5,
                                "accuracy_tta": r.get("accuracy_tta"), "macro_f1": r.get("macro_f1")}
    for a, b in itertools.combinations(args.models, 2):
        only_a, only_b = int((right[a] & ~right[b]).sum()), int((right[b] & ~right[a]).sum())
        out["pairs"].append({"a": a, "b": b, "only_a": only_a, "only_b": only_b,
                             "mcnemar_p": mcnemar_exact(only_a, only_b)})
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
