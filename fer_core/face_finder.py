"""Face boxes for a stream of video frames: `finder_for(settings)` picks the finder `fertune video` runs.

YuNet (`EveryFrame`) runs on every sampled frame: at half size it costs less than the key-frame scheme
below costs Haar, and finds more (docs/video.md "Speed"), so it needs no tracking between detections.

Haar (`FaceFinder`) gets its boxes at a fraction of full-frame Haar's cost:

A full-frame Haar pass is the expensive step of video analysis (60-90 ms for a 640x360 frame on one
core; decoding is cheap). `FaceFinder` runs it only on key frames and, in between, searches a small
window around each face it tracks, restricted to nearby scales: the cascade's own scales, so the
boxes match a full-frame pass, at a few ms a face.

A face that comes into view between key frames is found by the next key frame and then followed
backwards through the frames since the last one ("backfill"), so it is found from its first frame,
not from the key frame. Results therefore lag: `push` hands frames back once the next key frame has
settled them, and `finish` settles the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from fer_core import faces
from fer_core.temporal import Box, iou
from fer_core.video_settings import KEY_FRAME_INTERVAL


@dataclass
class FinderStats:
    full: int = 0       # full-frame cascade runs
    local: int = 0      # windowed searches around tracked faces
    frames: int = 0


@dataclass
class _Seen:
    box: Box
    age: int = 0        # sampled frames since it was last found
    hits: int = 1       # frames it was found in (a face found once is mostly the cascade's noise)


@dataclass
class _Held:
    item: Any
    gray: np.ndarray
    boxes: list[Box]


@dataclass
class FaceFinder:
    """Haar boxes per sampled frame, with the full-frame cascade only on key frames.

    Key frames: the first and last frame; every `detect_every`-th sampled frame while faces are
    tracked, every `empty_every`-th while none is; and a frame where a face found in at least
    `lost_min_hits` frames, and in the previous one, is lost (a cut, a turn of the head); and before the
    frames held for backfill would exceed `max_held_bytes`.
    Between key frames each face seen in the last `memory` sampled frames is searched in a window of
    `window_scale` x its size around its last box, over scales `scale_range` of its size.
    A face the key frame finds that the frames before it lack is searched backwards through them until
    `backfill_gap` frames in a row miss it. detect_every=1 is the slow reference: full Haar everywhere.
    """
    detect_every: int = KEY_FRAME_INTERVAL
    empty_every: int = 5
    memory: int = 3
    lost_min_hits: int = 2
    backfill_gap: int = 3
    max_held_bytes: int = 64 << 20  # a key frame comes early rather than hold more (20 4K frames are 160 MB)
    scale_factor: float = faces.SCALE_FACTOR
    min_neighbors: int = faces.MIN_NEIGHBORS
    min_size: int = faces.MIN_SIZE
    window_scale: float = 2.0
    scale_range: tuple[float, float] = (0.75, 1.35)
    stats: FinderStats = field(default_factory=FinderStats)
    _seen: list[_Seen] = field(default_factory=list)
    _held: list[_Held] = field(default_factory=list)   # frames after the last key frame (not settled yet)
    _since_key: int | None = None                      # None: no key frame yet

    def __post_init__(self):
        if self.detect_every < 1 or self.empty_every < 1:
            raise ValueError(f"detect_every and empty_every must be >= 1, got {self.detect_every}, {self.empty_every}")
        self.empty_every = min(self.empty_every, self.detect_every)

    def full(self, gray: np.ndarray) -> list[Box]:
        self.stats.full += 1
        return faces.haar_faces(gray, self.scale_factor, self.min_neighbors, self.min_size)

    def near(self, gray: np.ndarray, box: Box) -> Box | None:
        """The cascade in a window around `box`, restricted to nearby scales; the best overlapping hit."""
        self.stats.local += 1
        x, y, w, h = box
        height, width = gray.shape
        side = max(w, h) * self.window_scale
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
        lo = max(self.min_size, int(min(w, h) * self.scale_range[0]))
        hi = max(lo + 1, int(max(w, h) * self.scale_range[1]))
        if x1 - x0 < lo or y1 - y0 < lo:
            return None
        found = faces._cascade().detectMultiScale(gray[y0:y1, x0:x1], scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(lo, lo),
                                                 maxSize=(hi, hi))
        hits = [(int(a) + x0, int(b) + y0, int(c), int(d)) for a, b, c, d in np.asarray(found).reshape(-1, 4)]
        if not hits:
            return None
        best = max(hits, key=lambda b: iou(b, box))
        return best if iou(best, box) > 0.2 else None

    def push(self, image: np.ndarray, item: Any = None) -> list[tuple[Any, np.ndarray, list[Box]]]:
        """Add the next sampled frame (gray or BGR). Returns the frames now settled, in order, as
        (item, gray, boxes largest first); `item` is handed back untouched (e.g. frame index and time)."""
        gray = faces.to_gray(image)
        self.stats.frames += 1
        every = self.detect_every if self._seen else self.empty_every
        held = sum(h.gray.nbytes for h in self._held) + gray.nbytes
        key = self._since_key is None or self._since_key + 1 >= every or held > self.max_held_bytes
        boxes: list[Box] = []
        found_from: list[int] = []  # index into _seen of each box, -1 for a new face
        if not key:
            for i, seen in enumerate(self._seen):
                hit = self.near(gray, seen.box)
                if hit is None and seen.age == 0 and seen.hits >= self.lost_min_hits:
                    key = True  # a steady face vanished since the last frame: look everywhere now
                    break
                if hit is not None and all(iou(hit, b) < 0.5 for b in boxes):
                    boxes.append(hit)
                    found_from.append(i)
        if key:
            boxes = self.full(gray)
            found_from = [self._match(b) for b in boxes]
            self._since_key = 0
        else:
            self._since_key += 1
        self._remember(boxes, found_from)
        self._held.append(_Held(item, gray, list(boxes)))
        if not key:
            return []
        self._backfill(boxes)
        return self._settle()

    def finish(self) -> list[tuple[Any, np.ndarray, list[Box]]]:
        """Settle the frames held since the last key frame: the last one gets a full pass (a face that
        came into view since the last key frame is then backfilled like at any key frame)."""
        if self._held:  # only frames after the last key frame are held
            last = self._held[-1]
            new = [b for b in self.full(last.gray) if all(iou(b, o) < 0.5 for o in last.boxes)]
            last.boxes.extend(new)
            self._backfill(new)
        return self._settle()

    def find_all(self, images: Iterable[np.ndarray]) -> list[list[Box]]:
        """Boxes for every frame of a finite sequence (tests, benchmarks)."""
        out = [boxes for image in images for _, _, boxes in self.push(image)]
        return out + [boxes for _, _, boxes in self.finish()]

    def _match(self, box: Box) -> int:
        best = max(range(len(self._seen)), key=lambda i: iou(self._seen[i].box, box), default=-1)
        return best if best >= 0 and iou(self._seen[best].box, box) > 0.2 else -1

    def _remember(self, boxes: list[Box], found_from: list[int]) -> None:
        """What was seen now, plus faces missed for fewer than `memory` frames."""
        matched = set(found_from)
        kept = [_Seen(s.box, s.age + 1, s.hits) for i, s in enumerate(self._seen)
                if i not in matched and s.age + 1 < self.memory and all(iou(s.box, b) < 0.3 for b in boxes)]
        self._seen = [_Seen(b, 0, self._seen[i].hits + 1 if i >= 0 else 1) for b, i in zip(boxes, found_from)] + kept

    def _backfill(self, boxes: list[Box]) -> None:
        """Follow each of `boxes` (found in the newest held frame) back through the earlier held frames."""
        for box in boxes:
            anchor, misses = box, 0
            for held in reversed(self._held[:-1]):
                if any(iou(anchor, b) > 0.3 for b in held.boxes):
                    break  # already found there: the window searches took it from here
                hit = self.near(held.gray, anchor)
                if hit is None:
                    misses += 1
                    if misses >= self.backfill_gap:
                        break
                    continue
                if any(iou(hit, b) > 0.3 for b in held.boxes):
                    break  # the face there is one already found (the anchor had drifted off it)
                held.boxes.append(hit)
                anchor, misses = hit, 0

    def _settle(self) -> list[tuple[Any, np.ndarray, list[Box]]]:
        done, self._held = self._held, []
        return [(h.item, h.gray, faces.largest_first(h.boxes)) for h in done]


@dataclass
class EveryFrame:
    """The detector's full pass on every sampled frame, settled at once: the finder for YuNet."""
    detector: faces.FaceDetector
    stats: FinderStats = field(default_factory=FinderStats)

    def push(self, image: np.ndarray, item: Any = None) -> list[tuple[Any, np.ndarray, list[Box]]]:
        """As FaceFinder.push; `image` must be the colour frame (YuNet loses faces in gray)."""
        self.stats.frames += 1
        self.stats.full += 1
        return [(item, faces.to_gray(image), self.detector.detect(image))]

    def finish(self) -> list[tuple[Any, np.ndarray, list[Box]]]:
        return []

    def find_all(self, images: Iterable[np.ndarray]) -> list[list[Box]]:
        return [boxes for image in images for _, _, boxes in self.push(image)]


def finder_for(settings: Mapping[str, Any]) -> FaceFinder | EveryFrame:
    """The finder that `fertune video`'s resolved settings (VideoSettings.resolved()) name."""
    if settings["detector"] == "yunet":
        return EveryFrame(faces.FaceDetector("yunet", min_score=settings["face_score"], scale=settings["detect_scale"],
                                             min_size=settings["min_face"]))
    return FaceFinder(detect_every=settings["detect_every"], min_size=settings["min_face"])
