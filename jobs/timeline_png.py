"""timeline.png drawn with OpenCV: one panel per face, smoothed probabilities over time.

matplotlib took 0.3-0.5 s of a core per video, the largest cost of `fertune video`'s writer (BENCHMARKS.md
"fertune video"); drawing the same lines into a numpy canvas takes milliseconds. `fertune report` keeps
matplotlib for its own, finer plots.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd

from fer_core import temporal
from fer_core.labels import CLASSES

WIDTH = 720
PANEL_HEIGHT = 150
MAX_PANELS = 6
LEFT, RIGHT, TOP, BOTTOM, GAP = 58, 16, 26, 62, 10  # margins in pixels
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID, WHITE = (40, 40, 40), (225, 225, 225), (255, 255, 255)
# matplotlib's tab10, as BGR: the colours the timelines have always had
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227)]


def tick_step(span: float, most: int = 8) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that puts at most `most` ticks across `span`."""
    if span <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(span / most))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if span / (m * power) <= most)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, anchor: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    x = {"left": x, "center": x - w // 2, "right": x - w}[anchor]
    cv2.putText(canvas, text, (x, y + h // 2), FONT, scale, INK, 1, cv2.LINE_AA)


def faces_to_plot(frames: pd.DataFrame) -> list[int]:
    """The faces seen most often (one-sample tracks are mostly detector noise), at most MAX_PANELS, in id order."""
    return sorted(frames["face_id"].value_counts().index[:MAX_PANELS])


def draw_timeline(frames: pd.DataFrame, title: str) -> np.ndarray:
    """A BGR image of the frames table's smoothed probabilities (s_<class>) over t, one panel per face."""
    face_ids = faces_to_plot(frames)
    height = TOP + len(face_ids) * PANEL_HEIGHT + (len(face_ids) - 1) * GAP + BOTTOM
    canvas = np.full((height, WIDTH, 3), 255, np.uint8)
    t_max = float(frames["t"].max()) if len(frames) else 1.0
    t_max = t_max if t_max > 0 else 1.0
    plot_w = WIDTH - LEFT - RIGHT
    step = tick_step(t_max)
    x_ticks = np.arange(0.0, t_max + 1e-9, step)

    def x_of(t: np.ndarray) -> np.ndarray:
        return LEFT + t / t_max * plot_w

    _text(canvas, title, WIDTH // 2, 12, 0.42, "center")
    for panel, face_id in enumerate(face_ids):
        top = TOP + panel * (PANEL_HEIGHT + GAP)
        bottom = top + PANEL_HEIGHT
        for p in (0.0, 0.5, 1.0):
            y = int(round(bottom - p * PANEL_HEIGHT))
            cv2.line(canvas, (LEFT, y), (WIDTH - RIGHT, y), GRID, 1)
            _text(canvas, f"{p:.1f}", LEFT - 6, y, 0.35, "right")
        for t in x_ticks:
            x = int(round(x_of(t)))
            cv2.line(canvas, (x, top), (x, bottom), GRID, 1)
        cv2.rectangle(canvas, (LEFT, top), (WIDTH - RIGHT, bottom), INK, 1)
        label = f"face {face_id}"
        (w, h), _ = cv2.getTextSize(label, FONT, 0.4, 1)
        cv2.rectangle(canvas, (LEFT + 1, top + 1), (LEFT + w + 10, top + h + 9), WHITE, -1)
        _text(canvas, label, LEFT + 5, top + 5 + h // 2, 0.4)
        g = frames[frames["face_id"] == face_id].sort_values("t")
        xs = x_of(g["t"].to_numpy(np.float64))
        for colour, column in zip(COLOURS, temporal.S_COLS):
            ys = bottom - np.clip(g[column].to_numpy(np.float64), 0, 1) * PANEL_HEIGHT
            points = np.round(np.stack([xs, ys], axis=1) * 4).astype(np.int32)  # 2 fractional bits: smooth lines
            cv2.polylines(canvas, [points], False, colour, 1, cv2.LINE_AA, shift=2)
            if len(points) == 1:  # a one-sample track has no line to draw: a dot shows it
                cv2.circle(canvas, tuple(int(v) for v in points[0]), 8, colour, -1, cv2.LINE_AA, shift=2)
    axis_y = TOP + len(face_ids) * (PANEL_HEIGHT + GAP) - GAP
    for t in x_ticks:
        _text(canvas, f"{t:g}", int(round(x_of(t))), axis_y + 10, 0.35, "center")
    _text(canvas, "seconds (moving average over the window)", LEFT + plot_w // 2, axis_y + 28, 0.4, "center")
    _legend(canvas, height - 14)
    return canvas


def _legend(canvas: np.ndarray, y: int) -> None:
    widths = [22 + cv2.getTextSize(c, FONT, 0.38, 1)[0][0] + 14 for c in CLASSES]
    x = (WIDTH - sum(widths)) // 2
    for colour, c, w in zip(COLOURS, CLASSES, widths):
        cv2.line(canvas, (x, y), (x + 16, y), colour, 2, cv2.LINE_AA)
        _text(canvas, c, x + 21, y, 0.38)
        x += w


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])  # 9 costs more than the drawing
    if not ok:
        raise RuntimeError("OpenCV could not encode the timeline as PNG")
    return data.tobytes()
