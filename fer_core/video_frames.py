"""Video input for `fertune video` and its benchmarks: input checks, timestamp sampling, fast face finding.

Pure OpenCV + numpy (no Ray), so the Ray Data job, the plain sequential baseline and the GPU script
(which has no Ray) run exactly the same per-frame code.

Speed: face detection is the cost (decoding is cheap): YuNet runs at half size on every sampled frame,
the Haar cascade only on key frames (fer_core.face_finder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import cv2
import numpy as np

from fer_core import faces
from fer_core.face_finder import FinderStats, finder_for
from fer_core.shots import ShotCuts
from fer_core.temporal import Box
from fer_core.video_settings import VideoSettings

# File suffixes taken for videos when a folder is searched for them.
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv"}

# Leading bytes of containers OpenCV's FFmpeg backend reads, to tell "truncated or unknown codec" from
# "not a video at all" when OpenCV cannot open a file.
_MAGIC = {
    "mp4/mov": lambda head: head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"),
    "matroska/webm": lambda head: head[:4] == b"\x1a\x45\xdf\xa3",
    "avi": lambda head: head[:4] == b"RIFF" and head[8:12] == b"AVI ",
    "mpeg-ts": lambda head: head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47",
    "mpeg-ps": lambda head: head[:4] == b"\x00\x00\x01\xba",
    "flv": lambda head: head[:3] == b"FLV",
    "ogg": lambda head: head[:4] == b"OggS",
    "asf/wmv": lambda head: head[:4] == b"\x30\x26\xb2\x75",
}


def container_kind(path: str | Path) -> str | None:
    """The container its first bytes announce ("mp4/mov", "avi", ...), or None when none is recognised."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    return next((name for name, test in _MAGIC.items() if test(head)), None)


def check_input(path: str | Path) -> str | None:
    """Why `path` cannot be a video (missing, not a file, unreadable, empty), or None when it may be one.

    Cheap (a stat and a read of 512 bytes), so the driver runs it on every input before any Ray work.
    """
    path = Path(path)
    if not path.exists():
        return f"missing: {path} does not exist (check the path or the glob)"
    if not path.is_file():
        return f"not a file: {path} is a {'folder' if path.is_dir() else 'special file'}"
    if not os.access(path, os.R_OK):
        return f"unreadable: permission denied for {path} (chmod a+r it or run as its owner)"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.read(16)
    except PermissionError:
        return f"unreadable: permission denied for {path} (chmod a+r it or run as its owner)"
    except OSError as err:
        return f"unreadable: {err}"
    if size == 0:
        return "empty file (0 bytes)"
    return None


def open_failure_reason(path: str | Path) -> str:
    """Why OpenCV could not open or decode `path`, phrased for the manifest."""
    kind = container_kind(path)
    if kind is None:
        return "not a video: no known container signature and OpenCV cannot open it"
    return (f"truncated or corrupt {kind} file, or a codec OpenCV's FFmpeg cannot decode: it cannot be opened "
            f"or yields no frame (re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)")


def fourcc_name(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or "?"


@dataclass
class VideoInfo:
    """What the container says and what decoding found (filled in while sampling)."""
    fps: float = 0.0
    frame_count: int = 0          # from the container header (may be wrong or 0)
    width: int = 0
    height: int = 0
    codec: str = "?"
    frames_decoded: int = 0
    duration: float = 0.0         # timestamp of the last decoded frame plus one frame
    timestamps_from: str = "container"  # or "frame index / fps" when the container gives none


def open_capture(path: str | Path) -> cv2.VideoCapture:
    """A capture that decodes on one thread: parallelism comes from decoding several videos at once, and
    FFmpeg's own threads cost 20-25 % more CPU per frame (measured on the shared clips). Falls back to
    OpenCV's choice of backend when FFmpeg cannot open the file."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap.release()
        cap = cv2.VideoCapture(str(path))
    return cap


def sample_frames(path: str | Path, sample_fps: float,
                  info: VideoInfo | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, t seconds, BGR image) about `sample_fps` times per second of video.

    The clock is the container's presentation timestamp (CAP_PROP_POS_MSEC), not frame index / fps, so
    variable-frame-rate files are sampled evenly in time: a frame is taken when its timestamp reaches
    the next sampling instant (0, 1/F, 2/F, ...). Every frame is grabbed (decoded) because H.264 and
    friends cannot skip; only the sampled ones are converted to BGR (retrieve), which is the part that
    can be skipped. `info` (optional) is filled with the header values and decode counts.
    Raises ValueError when the file cannot be opened or no frame decodes, with the reason.
    """
    if sample_fps <= 0:
        raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
    info = info if info is not None else VideoInfo()
    cap = open_capture(path)
    try:
        if not cap.isOpened():
            raise ValueError(open_failure_reason(path))
        info.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        info.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        info.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        info.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        info.codec = fourcc_name(cap)
        step = 1.0 / sample_fps
        next_t, index, last_t, t0 = 0.0, -1, 0.0, None
        while True:
            if not cap.grab():
                break
            index += 1
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            if msec is None or msec < 0 or (index > 0 and msec == 0.0):
                # No usable timestamps: fall back to the nominal rate.
                info.timestamps_from = "frame index / fps"
                t = index / (info.fps or 25.0)
            else:
                t = msec / 1000.0
            if t0 is None:
                t0 = t  # some containers start at a non-zero pts; times are relative to the first frame
            t -= t0
            last_t = t
            info.frames_decoded = index + 1
            if t + 1e-6 >= next_t:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    continue
                yield index, t, image
                # Skip sampling instants the stream jumped over (a gap or a slow variable-rate part).
                next_t += step * max(1, int((t + 1e-6 - next_t) // step) + 1)
        if info.frames_decoded == 0:
            raise ValueError(f"no frame could be decoded (codec '{info.codec}'): " + open_failure_reason(path))
        frame_time = 1.0 / info.fps if info.fps > 0 else 0.0
        info.duration = last_t + frame_time
    finally:
        cap.release()


def truncation_note(info: VideoInfo) -> str:
    """A manifest note when far fewer frames decoded than the header promised ('' otherwise)."""
    if info.frame_count > 0 and info.frames_decoded < 0.9 * info.frame_count - 1:
        return (f"truncated: decoded {info.frames_decoded} of the {info.frame_count} frames the header lists; "
                f"the decodable part was analysed")
    return ""


@dataclass
class VideoFaces:
    """Every face found in one video's sampled frames, ready to classify (one row per detection)."""
    frame: np.ndarray            # (N,) source frame index
    t: np.ndarray                # (N,) seconds
    face_id: np.ndarray          # (N,) track id
    boxes: np.ndarray            # (N, 4) x, y, w, h
    crops: np.ndarray            # (N, S, S) uint8 gray
    frames_sampled: int
    info: VideoInfo
    seconds: dict[str, float]    # decode, detect (wall seconds of each step)
    finder: FinderStats


class Cancelled(Exception):
    """Raised by `find_faces_in_video` when its `cancelled` callable says to stop."""


def find_faces_in_video(path: str | Path, settings: Mapping[str, Any] | None = None, *, crop_size: int,
                        cancelled: Callable[[], bool] | None = None) -> VideoFaces:
    """Sample `path` by timestamp, find and track faces, cut `crop_size` px crops (the model's img_size: the
    crops are cut from the full frame, not resized from smaller ones). ValueError when undecodable.

    `settings` are VideoSettings.resolved() (default: VideoSettings()'s): sampling, detector, crop margin.
    Tracks end at shot cuts (fer_core.shots). `cancelled` (optional) is asked before each sampled frame;
    when it returns True the work stops with `Cancelled` (the caller is gone, so finishing the video would
    only waste the cores).
    """
    import time

    from fer_core.temporal import Tracker

    settings = VideoSettings().resolved() if settings is None else settings
    info = VideoInfo()
    finder = finder_for(settings)
    cuts = ShotCuts()
    tracker = Tracker()
    rows: list[tuple[int, float, int, Box]] = []
    crops: list[np.ndarray] = []
    decode = detect = 0.0
    sampled = 0

    def keep(settled) -> None:
        for (index, t, shot), gray, boxes in settled:
            for face_id, box in zip(tracker.update(t, boxes, shot), boxes):
                rows.append((index, t, face_id, box))
                crops.append(faces.crop_face(gray, box, crop_size, settings["crop_margin"]))

    clock = time.perf_counter()
    for index, t, image in sample_frames(path, settings["sample_fps"], info):
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled while decoding {path}")
        decode += time.perf_counter() - clock
        now = time.perf_counter()
        sampled += 1
        keep(finder.push(image, (index, t, cuts.shot(image))))
        clock = time.perf_counter()
        detect += clock - now
    decode += time.perf_counter() - clock  # the grabs after the last sampled frame
    now = time.perf_counter()
    keep(finder.finish())
    detect += time.perf_counter() - now
    n = len(rows)
    return VideoFaces(
        frame=np.array([r[0] for r in rows], np.int64), t=np.array([r[1] for r in rows], np.float64),
        face_id=np.array([r[2] for r in rows], np.int64), boxes=np.array([r[3] for r in rows], np.int64).reshape(n, 4),
        crops=np.stack(crops) if crops else np.zeros((0, crop_size, crop_size), np.uint8),
        frames_sampled=sampled, info=info, seconds={"decode": decode, "detect": detect}, finder=finder.stats)
