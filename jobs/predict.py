"""`fertune predict SOURCE...`: faces and emotions in images, image folders and videos, in the manner of
`yolo predict`. In-process and without Ray, so a first contact answers in seconds.

One line per face: the file (and, for a video, the frame and its time), the box, the emotion and its score.
`--save` writes annotated copies and `--json` the serve reply objects (one JSON line per image or sampled
frame) to runs/predict/NAME/. Broken files are reported and skipped; the others complete.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from fer_core import runs
from fer_core.images import IMAGE_SUFFIXES
from fer_core.video_frames import VIDEO_EXTENSIONS

COLORS = [(72, 29, 225), (235, 99, 37), (22, 163, 74), (217, 119, 6), (147, 51, 234)]  # BGR, one per face


def expand(sources: list[str]) -> list[Path]:
    """Image files, videos, and the images and videos in folders (sorted, recursively). A path that does not
    exist is an error: nothing else would tell the user that a typo cost them the run."""
    found: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file()
                            and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder; pass images, folders of images, or videos")
    if not found:
        raise FileNotFoundError(f"no images or videos in {', '.join(sources)} (image suffixes: "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))}; videos: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return found


def draw(image: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
    """A copy of `image` with each face's box and `emotion score` label."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for k, face in enumerate(faces):
        x, y, w, h = face["box"]
        color = COLORS[k % len(COLORS)]
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, thickness)
        label = f"{face['emotion']} {face['score']:.2f}"
        scale = 0.4 * thickness
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y - th - base - 2)
        cv2.rectangle(out, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(out, label, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return out


def face_lines(where: str, faces: list[dict[str, Any]]) -> list[str]:
    if not faces:
        return [f"{where}  no face"]
    return [f"{where}  box {','.join(map(str, f['box']))}  {f['emotion']} {f['score']:.2f}" for f in faces]


class Outputs:
    """runs/predict/NAME/ when --save or --json asks for it: annotated files and predictions.jsonl."""

    def __init__(self, args: Any, model_id: str):
        self.save, self.model_id = args.save, model_id
        self.folder = runs.run_folder(args.project, args.name, exist_ok=args.exist_ok, command="fertune predict") \
            if (args.save or args.json) else None
        self.jsonl = (self.folder / runs.PREDICTIONS).open("w") if args.json else None

    def record(self, source: Path, faces: list[dict[str, Any]], ms: float, **where: Any) -> None:
        if self.jsonl:
            reply = {"model": self.model_id, "faces": faces, "ms": round(ms, 3)}
            self.jsonl.write(json.dumps({"source": str(source), **where, **reply}) + "\n")

    def image(self, source: Path, image: np.ndarray, faces: list[dict[str, Any]]) -> None:
        if self.save:
            cv2.imwrite(str(self.folder / f"{source.stem}.jpg"), draw(image, faces))

    def close(self) -> None:
        if self.jsonl:
            self.jsonl.close()


def _batches(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start:start + size]


def predict_images(predictor: Any, paths: list[Path], faces: bool, batch_size: int, outputs: Outputs) -> int:
    """Classify images in batches (one forward pass per batch); returns how many were skipped."""
    skipped = 0
    for batch in _batches(paths, batch_size):
        images, kept = [], []
        for path in batch:
            image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                print(f"{path}: skipped: not a readable image (re-save it as JPEG or PNG)", file=sys.stderr)
                skipped += 1
                continue
            images.append(image)
            kept.append(path)
        t0 = time.perf_counter()
        results = predictor.predict_images(images, faces=faces)
        ms = (time.perf_counter() - t0) * 1000 / max(1, len(images))
        for path, image, found in zip(kept, images, results):
            replies = [f.to_dict() for f in found]
            print("\n".join(face_lines(str(path), replies)), flush=True)
            outputs.record(path, replies, ms)
            outputs.image(path, image, replies)
    return skipped


def predict_video(predictor: Any, path: Path, faces: bool, sample_fps: float, outputs: Outputs) -> None:
    from fer_core.video_frames import sample_frames

    writer = None
    try:
        for frame, t, image in sample_frames(path, sample_fps):
            t0 = time.perf_counter()
            replies = [f.to_dict() for f in predictor.predict_image(image, faces=faces)]
            print("\n".join(face_lines(f"{path} frame {frame} t={t:.2f}s", replies)), flush=True)
            outputs.record(path, replies, (time.perf_counter() - t0) * 1000, frame=frame, t=round(t, 3))
            if outputs.save:
                if writer is None:
                    h, w = image.shape[:2]
                    writer = cv2.VideoWriter(str(outputs.folder / f"{path.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                             sample_fps, (w, h))
                writer.write(draw(image, replies))
    finally:
        if writer is not None:
            writer.release()


def main(args: Any) -> int:
    from fer_core.infer import Predictor

    paths = expand(args.sources)  # a missing path fails before the model loads
    predictor = Predictor(args.model, device=args.device, detector=args.detector)
    outputs = Outputs(args, predictor.model_id)
    faces = not args.no_faces
    skipped = 0
    try:
        images = [p for p in paths if p.suffix.lower() not in VIDEO_EXTENSIONS]
        skipped += predict_images(predictor, images, faces, args.batch_size, outputs)
        for video in (p for p in paths if p.suffix.lower() in VIDEO_EXTENSIONS):
            try:
                predict_video(predictor, video, faces, args.sample_fps, outputs)
            except ValueError as err:  # cannot open, no frame decodes: say which file and why
                print(f"{video}: skipped: {err}", file=sys.stderr)
                skipped += 1
    finally:
        outputs.close()
    if outputs.folder:
        print(f"results in {outputs.folder}", file=sys.stderr)
    if skipped:
        print(f"fertune predict: {skipped} of {len(paths)} inputs skipped (see above)", file=sys.stderr)
    return 1 if skipped == len(paths) else 0


def models(args: Any) -> int:
    """`fertune models`: the bundled models, their accuracy, size and the command that trained them."""
    from fer_core.bundled import bundled_models

    for model in bundled_models():
        info = model.info
        print(f"{model.name}{'  (default)' if model is bundled_models()[0] else ''}\n"
              f"  {info.get('summary', '')}\n"
              f"  FER2013 private_test: {info['private_test']['accuracy']:.2%} plain, "
              f"{info['private_test']['accuracy_tta']:.2%} flip-TTA (n={info['private_test']['n']})\n"
              f"  size: {model.size_bytes / 1e6:.1f} MB in {model.path}\n"
              f"  trained with: {info['command']}\n"
              f"  on: {info.get('machine', '?')}\n"
              f"  data terms: {info.get('terms', '')}")
    return 0
