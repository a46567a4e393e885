"""Synthetic scenes and videos: several drawn faces on a background at known boxes, and mp4 files made
of them with known emotion segments. Tests of the Haar detector, serving and `fertune video` use them;
the faces themselves come from `fer_core.synthetic`.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from fer_core.synthetic import (_FACE_H, _check_emotion, _lighting, _render_head, expression_for,
                                 random_identity)

BACKGROUNDS = ("noise", "gradient", "plain", "stripes")


def _background(h: int, w: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A BGR float32 background: textured noise, a gradient, a plain tone or stripes."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background '{kind}'; choose one of {', '.join(BACKGROUNDS)}")
    tint = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    if kind == "noise":  # blotches at a few scales, like a cluttered room out of focus
        base = np.zeros((h, w), np.float32)
        for cells, amp in ((4, 45), (16, 25), (64, 12)):
            small = rng.normal(0, 1, (max(2, h * cells // w), cells)).astype(np.float32)
            base += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        gray = rng.uniform(80, 170) + base
    elif kind == "gradient":
        gray = rng.uniform(70, 180) * _lighting(h, w, rng, 0.8)
    elif kind == "stripes":
        xx = np.arange(w, dtype=np.float32)[None, :] + 0.5 * np.arange(h, dtype=np.float32)[:, None]
        gray = rng.uniform(90, 160) + 35 * np.sin(xx * 2 * math.pi / rng.uniform(12, 40))
    else:
        gray = np.full((h, w), rng.uniform(40, 220), np.float32)
    return np.asarray(gray, np.float32)[..., None] * tint


def _skin_tint(rng: np.random.Generator) -> np.ndarray:
    """BGR multipliers that turn face luminance into a skin colour with the same gray value (BT.601)."""
    tint = np.array([rng.uniform(0.6, 0.85), rng.uniform(0.9, 1.0), rng.uniform(1.1, 1.3)], np.float32)
    return tint / float(tint @ np.array([0.114, 0.587, 0.299], np.float32))


def _paste(canvas: np.ndarray, lum: np.ndarray, cover: np.ndarray, x: int, y: int, tint: np.ndarray) -> None:
    side = lum.shape[0]
    region = canvas[y:y + side, x:x + side]
    region *= 1 - cover[..., None]
    region += lum[..., None] * tint


def _head_side(face_px: int) -> int:
    """Canvas side whose drawn face oval is about face_px tall."""
    return int(round(face_px / (2 * _FACE_H)))


def _place(sides: list[int], rng: np.random.Generator, width: int, height: int) -> list[tuple[int, int]]:
    """Top-left corners for squares of `sides` that do not overlap; ValueError when none found.

    Whole layouts are retried, largest square first: once a big square sits in the middle there
    may be no room left for a second one, and moving only the second cannot fix that.
    """
    order = sorted(range(len(sides)), key=lambda i: -sides[i])
    for _ in range(100):
        spots: dict[int, tuple[int, int]] = {}
        for i in order:
            side = sides[i]
            for _ in range(30):
                x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
                if all(x + side <= px or px + sides[j] <= x or y + side <= py or py + sides[j] <= y
                       for j, (px, py) in spots.items()):
                    spots[i] = (x, y)
                    break
            else:
                break
        if len(spots) == len(sides):
            return [spots[i] for i in range(len(sides))]
    raise ValueError(f"cannot place heads of {sides} px without overlap in {width}x{height}; "
                     f"use fewer or smaller faces or a larger scene")


def render_scene(faces: list[tuple[int, int]], rng: np.random.Generator, width: int = 320, height: int = 240,
                 background: str = "noise") -> tuple[np.ndarray, list[dict]]:
    """A BGR uint8 scene with one head per (emotion, size_px), placed without overlap.

    size_px is roughly the face box's height (the oval, forehead to chin); the head drawn around it
    (hair, neck) is a square of about 1.2 x size_px. 60-120 px suits a 320 x 240 scene and the Haar
    cascade. Returns the image and, per face in the order given, {"box": (x, y, w, h), "emotion": int}.
    Raises ValueError for a bad emotion or background, or when the heads cannot be placed.
    """
    for emotion, _ in faces:
        _check_emotion(emotion)
    sides = [_head_side(size_px) for _, size_px in faces]
    if any(side > min(width, height) for side in sides):
        raise ValueError(f"faces of {[s for _, s in faces]} px need heads of {sides} px; the scene is "
                         f"{width}x{height}")
    canvas = _background(height, width, rng, background)
    out = []
    for (emotion, _), side, (x, y) in zip(faces, sides, _place(sides, rng, width, height)):
        ident = random_identity(rng)
        expr = expression_for(int(emotion), rng.uniform(0.7, 1.0))
        lum, cover, boxes = _render_head(side, expr, ident, angle=rng.uniform(-5, 5))
        _paste(canvas, lum, cover, x, y, _skin_tint(rng))
        fx, fy, fw, fh = boxes["face"]
        out.append({"box": (x + fx, y + fy, fw, fh), "emotion": int(emotion)})
    canvas += rng.normal(0, 3, canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8), out


def make_scene_video(path: str | Path, segments: list[tuple[int, float]], fps: float = 10,
                     size: tuple[int, int] = (320, 240), face_px: int = 100, seed: int = 0) -> list[dict]:
    """Write an mp4 (mp4v) of one person whose expression follows `segments` [(emotion, seconds), ...].

    The head drifts a pixel or two between frames and the sensor noise is fresh each frame, so frames
    are not copies. Returns the ground truth: [{"emotion", "start_t", "end_t"}] in seconds, where frame
    i is shown at i / fps.
    """
    for emotion, _ in segments:
        _check_emotion(emotion)
    rng = np.random.default_rng(seed)
    width, height = size
    side = _head_side(face_px)
    if side > min(width, height):
        raise ValueError(f"a {face_px} px face needs a {side} px head; the video is {width}x{height}")
    ident, tint = random_identity(rng), _skin_tint(rng)
    background = _background(height, width, rng, "gradient")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {path} with the mp4v codec")
    truth, frame = [], 0
    x0, y0 = (width - side) / 2, (height - side) / 2
    offset = np.zeros(2)
    try:
        for emotion, seconds in segments:
            n_frames = max(1, int(round(seconds * fps)))
            lum, cover, _ = _render_head(side, expression_for(int(emotion), 1.0), ident)
            truth.append({"emotion": int(emotion), "start_t": frame / fps, "end_t": (frame + n_frames) / fps})
            for _ in range(n_frames):
                offset = np.clip(offset + rng.normal(0, 1.0, 2), -6, 6)  # a small random walk
                img = background.copy()
                x = min(max(int(round(x0 + offset[0])), 0), width - side)
                y = min(max(int(round(y0 + offset[1])), 0), height - side)
                _paste(img, lum, cover, x, y, tint)
                img += rng.normal(0, 3, img.shape).astype(np.float32)
                writer.write(np.clip(img, 0, 255).astype(np.uint8))
                frame += 1
    finally:
        writer.release()
    return truth
