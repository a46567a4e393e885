"""What a refit plan keeps for the closing exports, against what they take (jobs/search_refit.finish_seconds).

A time-budgeted search stops its refits `finish_s` seconds before the deadline, so that best/ and ensemble/ can
be scored on test (flip-TTA) in time; every second planned and not used is refit time lost. This times, in one
process: the plan (finish_seconds, for 1 and 3 members), the bare NCHW forward pass it was timed with before,
and the exports' own evaluations of a finished search's best/ and ensemble/.

  python bench/finish_plan.py --data ../shared/data/fer2013.parquet --search runs/split_ab/search-...-share0.1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bare_pass_ms(data, config: dict) -> float:
    """ms an image of the network's plain forward pass in NCHW, batches of 512 (how the plan was timed before)."""
    import torch

    from fer_core.config import resolve
    from fer_core.train import build_model

    model = build_model(resolve(config)).eval()
    images = torch.from_numpy(data.val.images[:2048]).float().unsqueeze(1) / 255
    with torch.inference_mode():
        model(images[:64])
        start = time.perf_counter()
        for batch in images.split(512):
            model(batch)
    return 1000 * (time.perf_counter() - start) / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--search", required=True, type=Path, help="a finished search folder with best/ and ensemble/")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from fer_core import runs
    from fer_core.data import load_data
    from fer_core.evaluate import evaluate
    from fer_core.infer import Predictor
    from jobs.search_refit import REFIT_PLAN, finish_seconds

    data = load_data(args.data)
    plan = runs.read_json(args.search / REFIT_PLAN) if (args.search / REFIT_PLAN).is_file() else {}
    config = next(iter(plan.get("configs", {}).values()), {"model": "cnn_small"})
    members = len(json.loads((args.search / runs.ENSEMBLE_DIR / runs.MEMBERS).read_text())["members"])
    result = {"config": config, "members": members, "planned_s_in_the_search": plan.get("finish_s"),
              "bare_pass_ms_per_image": round(bare_pass_ms(data, config), 2),
              "plan_s": {n: round(finish_seconds(data, config, n), 1) for n in sorted({1, 3, members})}}
    start = time.perf_counter()
    evaluate(runs.weights(args.search / runs.BEST_DIR), data, tta=True)
    evaluate(Predictor(args.search / runs.ENSEMBLE_DIR, device="cpu", batch_size=512), data, tta=True)
    result["exports_evaluations_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
