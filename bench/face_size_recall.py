"""YuNet's recall by the height of a face at the detector's input: what a smaller --detect-scale costs.

The labelled set (tests/data/face_labels) has few small faces (4 of its 322 are under 40 px tall), so its
recall alone cannot show what shrinking frames before detection loses. Detecting the same labelled frames at
several scales turns each face into faces of several input heights (h x scale): recall per input height,
pooled over the scales, says which faces a scale keeps (a face of H px in the frame is H x scale px at the
input). Matching is the set's own (bench/face_set_score.py: greedy IoU >= 0.4, ignore regions count neither way).

  python bench/face_size_recall.py [--scales 0.25,0.3,0.35,0.4,0.5,0.6] [--thresholds 65,70] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from face_set_score import LABELS_DIR, match_all, detect_set  # bench/ is on sys.path when run as a script

BUCKETS = [0, 12, 14, 16, 18, 20, 24, 28, 32, 40, 60, 400]  # face height at the detector's input, px


def recall_by_input_height(scales: list[float], thresholds: list[float], labels_dir: Path = LABELS_DIR) -> pd.DataFrame:
    """One row per (scale, threshold, labelled face): its height at the input and whether it was found."""
    rows = []
    for scale in scales:
        pred, _ = detect_set("yunet", scale, labels_dir)
        for threshold in thresholds:
            for _, _, faces, _, match in match_all(pred, labels_dir, 0.4, threshold):
                found = {face for _, face in match.pairs}
                rows += [{"scale": scale, "threshold": threshold, "input_h": h * scale, "found": i in found}
                         for i, h in enumerate(faces["h"].to_numpy())]
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="0.25,0.3,0.35,0.4,0.5,0.6")
    ap.add_argument("--thresholds", default="65,70", help="YuNet scores kept, 0-100")
    ap.add_argument("--labels", type=Path, default=LABELS_DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    faces = recall_by_input_height([float(s) for s in args.scales.split(",")],
                                   [float(t) for t in args.thresholds.split(",")], args.labels)
    faces["input_px"] = pd.cut(faces["input_h"], BUCKETS)  # ordered intervals: the table reads small to large
    table = faces.groupby(["input_px", "threshold"], observed=True)["found"].agg(["mean", "size"]).reset_index()
    table["input_px"] = table["input_px"].astype(str)
    print(table.pivot(index="input_px", columns="threshold", values=["mean", "size"])
          .reindex(table["input_px"].unique()).round(3).to_string())
    if args.out:
        args.out.write_text(json.dumps({"scales": args.scales, "buckets_px": BUCKETS,
                                        "recall": table.round(4).to_dict("records")}, indent=1))


if __name__ == "__main__":
    main()
