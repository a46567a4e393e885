"""Image decoding: the one rule that turns any image fertune reads into a gray uint8 square.

Used for encoded bytes (Parquet `image` cells, folder files) and, from the resize step on, for raw
pixels too:
  1. `cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)`; undecodable bytes are skipped and counted as corrupt.
     (IMREAD_UNCHANGED ignores EXIF orientation: images are used as stored.)
  2. 16-bit or float images are scaled to 0..255 uint8.
  3. Colour -> gray with OpenCV's BT.601 luma, 0.299 R + 0.587 G + 0.114 B; an alpha channel is dropped.
  4. Resize to img_size x img_size (non-square images are stretched, not cropped): INTER_AREA when no
     side grows, INTER_LINEAR when a side grows.
For FER2013's lossless WebP (three equal channels) this returns the original pixels exactly, and it is as
fast as decoding with IMREAD_GRAYSCALE, so there is no separate fast path.

Full-size photos (`fertune eval --faces`) take a `crop` in place of steps 3-4: a function from the full-size
image (gray, BGR or BGRA uint8: YuNet finds faces in colour) to the square gray crop to score, or None when
it finds no face (the image is then counted, not scored). The caller passes it (fer_core.faces), so
decoding needs no detector.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

Crop = Callable[[np.ndarray], Optional[np.ndarray]]  # full-size image -> (size, size) gray crop, or None

log = logging.getLogger(__name__)


# What cv2.imdecode reads. GIF is absent because OpenCV cannot decode it; such files are listed as ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Step 2 of the rule: 16-bit or float pixels scaled to 0..255 uint8 (channels kept)."""
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.integer):
            img = (img.astype(np.float32) * (255.0 / np.iinfo(img.dtype).max)).round().astype(np.uint8)
        else:  # float images are taken to be in 0..1
            img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return img


def to_gray_uint8(img: np.ndarray) -> np.ndarray:
    """Any cv2-decoded image -> 2-D uint8: BT.601 luma for colour, alpha dropped (steps 2-3 of the rule)."""
    img = to_uint8(img)
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise ValueError(f"unsupported channel count {channels}")
    return np.ascontiguousarray(img)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (step 4 of the rule). INTER_AREA averages every source pixel an output pixel
    covers, so shrinking does not alias; when enlarging it degrades to blocky copies, so bilinear is used."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def read_image(source: "str | Path | np.ndarray | object") -> np.ndarray:
    """An image to run faces on, as a uint8 BGR (or gray) array: a file path, a numpy array (BGR, or gray),
    or a PIL image. Errors name the file and the fix."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 image array (H, W) or (H, W, 3), got {source.dtype} {source.shape}")
        return source
    if hasattr(source, "convert") and hasattr(source, "size"):  # a PIL image: PIL is RGB, fertune works in BGR
        return np.ascontiguousarray(np.asarray(source.convert("RGB"))[:, :, ::-1])
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass an image file, a numpy BGR array or a PIL image")
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image (suffixes OpenCV decodes: "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return image


def decode_gray(buf: bytes | np.ndarray | None, colour: bool = False) -> np.ndarray | None:
    """Encoded image bytes -> full-size uint8 gray (steps 1-3 of the rule); None if undecodable. With
    colour=True step 3 is left to the caller: uint8 as stored (gray, BGR or BGRA), for a face detector
    that needs colour (YuNet) before the crop turns it gray."""
    if buf is None or len(buf) == 0:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            return None
        if colour and (img.ndim == 2 or img.shape[2] in (1, 3, 4)):
            return np.ascontiguousarray(to_uint8(img))
        return to_gray_uint8(img)
    except (cv2.error, ValueError):  # some codecs raise on garbage instead of returning None
        return None


def decode_image(buf: bytes | np.ndarray | None, size: int) -> np.ndarray | None:
    """Encoded image bytes -> (size, size) uint8 gray by the module's one rule; None if undecodable."""
    gray = decode_gray(buf)
    return None if gray is None else resize_square(gray, size)


def square(gray: np.ndarray, size: int, crop: Crop | None) -> np.ndarray | None:
    """Step 4: the resize, or the caller's crop (None: no face in this image). With a crop, `gray` may
    still be colour (decode_gray(..., colour=True))."""
    return resize_square(gray, size) if crop is None else crop(gray)


def decode_many(
    items: Sequence, size: int, read: Callable[[object], bytes | None] | None = None, crop: Crop | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every item (bytes, or whatever `read` turns into bytes) in a thread pool.

    Returns (images (N, size, size) uint8, ok mask, no-face mask: decoded, but `crop` found nothing).
    cv2.imdecode, file reads and OpenCV's detectors release the GIL, so threads scale with cores without
    the pickling cost of processes. Work goes in chunks so a 36k-image set is a few dozen tasks, not 36k
    futures.
    """
    n = len(items)
    out = np.zeros((n, size, size), np.uint8)
    ok = np.zeros(n, bool)
    no_face = np.zeros(n, bool)

    def work(lo: int) -> None:
        for i in range(lo, min(lo + 1024, n)):
            # a crop detects faces: it gets the colour image and turns the face gray itself
            gray = decode_gray(read(items[i]) if read else items[i], colour=crop is not None)
            if gray is None:
                continue
            img = square(gray, size, crop)
            if img is None:
                no_face[i] = True
            else:
                out[i] = img
                ok[i] = True

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(0, n, 1024)))
    return out, ok, no_face


def warn_corrupt(source: str, names: list[str]) -> None:
    if names:
        examples = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        log.warning("%s: skipped %d undecodable image(s): %s", source, len(names), examples)

