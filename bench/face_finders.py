"""Face finders for `fertune video` on the shared clips: CPU per sampled frame, and recall and precision on
the hand-labelled face set (tests/data/face_labels) where it is present (issue 13, part 3).

  haar            FaceFinder: full-frame Haar on key frames (every 20th), windowed Haar around tracked faces
  haar-full       full-frame Haar on every sampled frame
  yunet@S         EveryFrame: YuNet on every sampled frame, the frame shrunk by S first (S = 1, 0.5, ...)
  yunet-keys@S    a YuNet key-frame scheme, measured and not shipped: YuNet at S on every 10th frame, and in
                  between YuNet at full size on a window of twice the face around each face seen in the
                  last 3 frames (`YunetKeyFrames` below)

CPU is the process's user + system time of the finder alone (frames decoded beforehand), per sampled frame,
one thread (cv2.setNumThreads(1), fer_core.yunet's one OpenMP thread).

  python bench/face_finders.py [--repeat 3] [--labels tests/data/face_labels] [--out bench/results/face_finders.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CLIPS = REPO.parent / "shared" / "data" / "video"
LABELS = REPO / "tests" / "data" / "face_labels"

from fer_core import faces, yunet  # noqa: E402
from fer_core.face_finder import EveryFrame, FaceFinder  # noqa: E402
from fer_core.temporal import Box, iou  # noqa: E402
from fer_core.video_settings import VideoSettings  # noqa: E402


@dataclass
class YunetKeyFrames:
    """YuNet at `scale` on key frames, windowed full-size YuNet around recent faces between them (no backfill:
    a face that appears between key frames is found at the next one or by a window)."""
    scale: float = 0.5
    every: int = 10
    memory: int = 3
    window: float = 2.0
    min_score: float = VideoSettings.face_score
    _seen: list[tuple[Box, int]] = field(default_factory=list)  # (box, frames since it was seen)
    _count: int = 0

    def push(self, image: np.ndarray, item=None) -> list:
        key = self._count % self.every == 0 or not self._seen
        self._count += 1
        if key:
            boxes = [b for b, _ in yunet.detect(image, self.min_score, self.scale)]
        else:
            boxes = []
            for box, _ in self._seen:
                hit = self._near(image, box)
                if hit is not None and all(iou(hit, b) < 0.5 for b in boxes):
                    boxes.append(hit)
        kept = [(b, age + 1) for b, age in self._seen if age + 1 < self.memory and all(iou(b, n) < 0.3 for n in boxes)]
        self._seen = [(b, 0) for b in boxes] + kept
        return [(item, None, faces.largest_first(boxes))]

    def finish(self) -> list:
        return []

    def _near(self, image: np.ndarray, box: Box) -> Box | None:
        x, y, w, h = box
        side = max(w, h) * self.window
        height, width = image.shape[:2]
        x0, y0 = max(0, int(x + w / 2 - side / 2)), max(0, int(y + h / 2 - side / 2))
        x1, y1 = min(width, int(x + w / 2 + side / 2)), min(height, int(y + h / 2 + side / 2))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        hits = [(a + x0, b + y0, c, d) for (a, b, c, d), _ in yunet.detect(image[y0:y1, x0:x1], self.min_score, 1.0)]
        best = max(hits, key=lambda b: iou(b, box), default=None)
        return best if best is not None and iou(best, box) > 0.2 else None


def finders() -> dict[str, Callable[[], Any]]:
    """name -> a maker of a fresh finder (push(image, item) / finish(), as fer_core.face_finder's)."""
    out: dict[str, Callable[[], Any]] = {"haar": FaceFinder, "haar-full": lambda: FaceFinder(detect_every=1)}
    if yunet.available():
        for scale in (1.0, 0.75, 0.5, 0.45, 0.4):
            out[f"yunet@{scale:g}"] = lambda s=scale: EveryFrame(faces.FaceDetector("yunet", scale=s))
        out["yunet-keys@0.5"] = YunetKeyFrames
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(make: Callable[[], Any], clips: dict[str, list[tuple[int, np.ndarray]]], repeat: int) -> tuple[float, pd.DataFrame]:
    """(CPU ms per frame, the boxes found as video, frame_index, x, y, w, h)."""
    rows, spent, frames = [], 0.0, 0
    for _ in range(repeat):
        rows = []
        for video, sampled in clips.items():
            finder = make()
            start = cpu_seconds()
            settled = [s for index, image in sampled for s in finder.push(image, index)] + finder.finish()
            spent += cpu_seconds() - start
            frames += len(sampled)
            rows += [{"video": video, "frame_index": index, "x": b[0], "y": b[1], "w": b[2], "h": b[3]}
                     for index, _, boxes in settled for b in boxes]
    return 1000 * spent / frames, pd.DataFrame(rows, columns=["video", "frame_index", "x", "y", "w", "h"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--out", default="bench/results/face_finders.json")
    args = ap.parse_args()
    import cv2

    from fer_core.video_frames import sample_frames

    cv2.setNumThreads(1)
    clips = {p.name: [(i, image) for i, _, image in sample_frames(p, VideoSettings.sample_fps)]
             for p in sorted(CLIPS.glob("*.mp4"))}
    score = None
    if (Path(args.labels) / "labels.csv").is_file():
        from face_set_score import score  # bench/ is on sys.path when run as a script
    results = []
    for name, make in finders().items():
        ms, boxes = run(make, clips, args.repeat)
        row = {"finder": name, "cpu_ms_per_frame": round(ms, 2)}
        if score is not None:
            s = score(boxes, Path(args.labels))["iou0.4"]
            row.update(recall=s["recall"], precision=s["precision"])
        results.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"frames": sum(len(v) for v in clips.values()), "results": results}, indent=1))


if __name__ == "__main__":
    main()
