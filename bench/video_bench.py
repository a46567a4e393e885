"""The `fertune video` benchmark (issues 6 and 13): the Ray Data job beside a plain sequential loop, same model.

  loop      the seed reports' way: decode every frame (read), full-size Haar on each sampled frame,
            classify that frame's faces (Predictor.predict_image), one video after another, one process
  ray       `fertune video` itself (jobs.video.main) with its defaults (--detector auto: YuNet on every
            sampled frame at half size), Ray start-up included, all outputs written
  ray-haar  the same job with --detector haar (Haar on key frames with windowed search between), in the
            same run, so the two see the same machine
  ray-no-plots  (with --no-plots-too) the default job without timeline.png
Faces: recall and precision (IoU >= 0.4) of each job's frames.parquet on the hand-labelled face set
(tests/data/face_labels, bench/face_set_score.py) where it is present, and the share of full-size Haar
boxes it matches (IoU >= 0.5, issue 6's figure). Where the time goes: worker seconds per step (decode,
detect, classify, write), and the CPU seconds each process used during each job.

  python bench/video_bench.py --model runs/train/exp --copies 20 --out bench/results/video.json
  python bench/video_bench.py --model fertune-cnn-small-fer2013 --copies 20 --rounds 3   # medians of 3 rounds
  python bench/video_bench.py --smoke                 # tiny model, 1 copy of one clip, no timing claims
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import cv2
import pandas as pd

from machine import cpu_description  # bench/ is on sys.path when run as a script
from proc_cpu import ProcessCPU
from fer_core import runs
from fer_core.faces import haar_faces
from fer_core.temporal import iou
from fer_core.video_settings import VideoSettings

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "video"
LABELS = REPO / "tests" / "data" / "face_labels"


def plain_loop(paths: list[Path], model: str, sample_fps: float) -> dict:
    """Decode every frame, sample by frame index, full-size Haar + classify; returns seconds and frames."""
    from fer_core.infer import Predictor

    predictor = Predictor(model, device="cpu", detector="haar")
    start, frames, faces = time.perf_counter(), 0, 0
    for path in paths:
        cap = cv2.VideoCapture(str(path))
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        every = max(1, int(round(fps / sample_fps)))
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if index % every == 0:
                found = predictor.predict_image(image)
                frames += 1
                faces += len(found)
            index += 1
        cap.release()
    return {"seconds": time.perf_counter() - start, "frames": frames, "faces": faces}


def reference_boxes(clip: Path, sample_fps: float) -> dict[int, list]:
    """Full-size Haar on exactly the frames the job samples (by timestamp)."""
    from fer_core.video_frames import sample_frames

    return {index: haar_faces(image) for index, _, image in sample_frames(clip, sample_fps)}


def recall(clip: Path, frames: pd.DataFrame, sample_fps: float) -> tuple[int, int]:
    ref = reference_boxes(clip, sample_fps)
    got = {k: g[["x", "y", "w", "h"]].to_numpy().tolist() for k, g in frames.groupby("frame")}
    wanted = sum(len(b) for b in ref.values())
    hit = sum(any(iou(a, b) >= 0.5 for b in got.get(k, [])) for k, boxes in ref.items() for a in boxes)
    return hit, wanted


def video_seconds(paths: list[Path]) -> float:
    total = 0.0
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        total += cap.get(cv2.CAP_PROP_FRAME_COUNT) / (cap.get(cv2.CAP_PROP_FPS) or 30.0)
        cap.release()
    return total


def tiny_model(folder: Path) -> str:
    from fer_core.config import resolve
    from fer_core.synthetic import make_demo_data
    from fer_core.train import fit

    fit(resolve({"model": "cnn_small", "epochs": 1, "train_subset": 200, "batch_size": 32}),
        make_demo_data(n_train=200, n_val=70, n_test=0), run_dir=folder / "tiny", log=lambda *a: None)
    return str(folder / "tiny")


def run_job(folder: Path, inputs: Path, model: str, sample_fps: float, clips: list[Path], copies: int,
            seconds_of_video: float, loop_seconds: float, flags: dict) -> dict:
    """`fertune video` over `inputs` with `flags` (VideoSettings fields) over its defaults: wall time, real-time
    factor, speed-up over the loop, face recall and precision, worker seconds per step, CPU by process."""
    from jobs import video

    out = folder / "out"
    job_args = Namespace(inputs=[str(inputs)], model=model, out=str(out), sample_fps=sample_fps, address=None, **flags)
    start = time.perf_counter()
    with ProcessCPU() as cpu:
        video.main(job_args)
    seconds = time.perf_counter() - start
    manifest = pd.read_parquet(out / runs.MANIFEST)
    hit = wanted = 0
    firsts = []
    for clip in clips:  # every copy of a clip gives the same boxes; check one copy per clip
        row = manifest[manifest.path.str.contains(f"/{clip.stem}_00")].iloc[0]
        frames = pd.read_parquet(Path(row.out_dir) / runs.FRAMES)
        h, w = recall(clip, frames, sample_fps)
        hit, wanted = hit + h * copies, wanted + w * copies
        firsts.append(frames.assign(video=clip.name))
    labelled = {}
    if (LABELS / "labels.csv").is_file():
        from face_set_score import score  # bench/ is on sys.path when run as a script

        labelled = score(pd.concat(firsts), LABELS)["iou0.4"]
    steps = {}
    for row in manifest.itertuples():
        summary = json.loads((Path(row.out_dir) / runs.SUMMARY).read_text()) if row.status == "ok" else {}
        timings = summary.get("timings", {})
        for k in ("decode", "detect", "classify"):
            steps[k] = steps.get(k, 0.0) + timings.get(k, 0.0)
        if summary:  # what is left of the video's seconds after finding faces and classifying is writing
            steps["write"] = steps.get("write", 0.0) + row.seconds - timings.get("find_total", 0.0) - timings.get(
                "classify", 0.0)
    result = {
        "flags": flags, "seconds": round(seconds, 1), "x_realtime": round(seconds_of_video / seconds, 2),
        "speedup_vs_loop": round(loop_seconds / seconds, 2),
        "labelled_recall_iou40": labelled.get("recall"), "labelled_precision_iou40": labelled.get("precision"),
        "face_recall_vs_full_haar_iou50": round(hit / wanted, 4) if wanted else None, "faces_full_haar": wanted,
        "worker_seconds": {k: round(v, 1) for k, v in steps.items()},
        "statuses": manifest.status.value_counts().to_dict(),
        "cpu_seconds_by_process": cpu.by_role(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "cpu_seconds_by_process"}), flush=True)
    return result


def summarise_rounds(runs_of_job: list[dict], seconds_of_video: float, loop_seconds: float) -> dict:
    """One job's rounds as one result: the median round's figures, and every round's wall seconds."""
    seconds = [one["seconds"] for one in runs_of_job]
    median = sorted(runs_of_job, key=lambda one: one["seconds"])[(len(runs_of_job) - 1) // 2]
    return {**median, "seconds": round(statistics.median(seconds), 1),
            "x_realtime": round(seconds_of_video / statistics.median(seconds), 2),
            "speedup_vs_loop": round(loop_seconds / statistics.median(seconds), 2), "seconds_by_round": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--clips", default=str(CLIPS))
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--sample-fps", type=float, default=VideoSettings.sample_fps)
    ap.add_argument("--out", default="bench/results/video.json")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-plots-too", action="store_true", help="also run the default job with --no-plots")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the jobs this many times, alternating (the VM's speed drifts within minutes): "
                         "medians, and the Haar/default ratio of each round")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = sorted(Path(args.clips).glob("*.mp4"))
        if args.smoke:
            if not clips:
                from fer_core.synthetic_scenes import make_scene_video

                make_scene_video(tmp / "scene.mp4", [(3, 1.0), (5, 1.0)], fps=10)
                clips = [tmp / "scene.mp4"]
            clips, args.copies = clips[:1], 1
        model = args.model or tiny_model(tmp)
        inputs = tmp / "inputs"
        inputs.mkdir()
        paths = []
        for k in range(args.copies):
            for clip in clips:
                paths.append(inputs / f"{clip.stem}_{k:02d}{clip.suffix}")
                os.symlink(clip.resolve(), paths[-1])
        seconds_of_video = video_seconds(paths)

        jobs = {"ray": {}, "ray-haar": {"detector": "haar"}}  # the job's own defaults but for these
        if args.no_plots_too:
            jobs["ray-no-plots"] = {"plots": False}
        loops, rounds = [], []
        for r in range(args.rounds):  # each round: the loop, then each job, so a round sees one state of the VM
            loops.append(plain_loop(paths, model, args.sample_fps)["seconds"])
            print(f"loop: {loops[-1]:.1f} s, {seconds_of_video / loops[-1]:.1f}x real time", flush=True)
            rounds.append({name: run_job(tmp / f"{name}-{r}", inputs, model, args.sample_fps, clips, args.copies,
                                         seconds_of_video, loops[-1], flags) for name, flags in jobs.items()})
    loop_seconds = statistics.median(loops)
    results = {name: summarise_rounds([one[name] for one in rounds], seconds_of_video, loop_seconds) for name in jobs}
    haar_ratios = [one["ray-haar"]["seconds"] / one["ray"]["seconds"] for one in rounds]
    loop_ratios = [loop / one["ray"]["seconds"] for one, loop in zip(rounds, loops)]
    result = {
        "machine": cpu_description(),
        "files": len(paths), "video_seconds": round(seconds_of_video, 1), "sample_fps": args.sample_fps,
        "rounds": args.rounds, "loop_seconds": round(loop_seconds, 1), "loop_seconds_by_round": [round(v, 1) for v in loops],
        "loop_x_realtime": round(seconds_of_video / loop_seconds, 2),
        **results,
        "default_vs_haar_job": round(statistics.median(haar_ratios), 2),
        "default_vs_haar_job_by_round": [round(v, 2) for v in haar_ratios],
        "default_vs_loop_by_round": [round(v, 2) for v in loop_ratios],
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
