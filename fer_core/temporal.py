"""Emotions over time: face tracks across frames, smoothing, deltas, segments and per-video summaries.

Pure numpy/pandas, no Ray: `fertune video` builds its outputs with these functions and reports read
`frames.parquet` back with them. Column names follow SPEC.md "Video outputs":
p_<class> raw probabilities, s_<class> centred moving average over `window` samples of the same face,
e_<class> exponential moving average (alpha 0.3), d_<class> change of s_<class> since that face's
previous sample, `emotion`/`score` the top class of s_ and its value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fer_core.labels import CLASSES
from fer_core.video_settings import VideoSettings

Box = tuple[int, int, int, int]  # x, y, w, h

EMA_ALPHA = 0.3
P_COLS = [f"p_{c}" for c in CLASSES]
S_COLS = [f"s_{c}" for c in CLASSES]
E_COLS = [f"e_{c}" for c in CLASSES]
D_COLS = [f"d_{c}" for c in CLASSES]
FRAME_COLUMNS = ["video", "frame", "t", "face_id", "x", "y", "w", "h", *P_COLS, *S_COLS, *E_COLS, *D_COLS,
                 "emotion", "score"]
SEGMENT_COLUMNS = ["face_id", "emotion", "start_t", "end_t", "mean_score"]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    face_id: int
    box: Box
    last_t: float


@dataclass
class Tracker:
    """Gives each box a face id that persists across frames (greedy matching on overlap).

    A box continues the track whose last box overlaps it most (IoU >= iou_min) or, for a fast move,
    whose centre lies within `near` x the face size with a similar size; a track unseen for more than
    `max_gap_s` seconds is closed, so a face that leaves and comes back later gets a new id. While a
    track is unseen, its box moves with the camera: as the faces seen in both frames moved together
    (`camera_motion`: a pan or a zoom), so a face missed for a few frames during a zoom is still where
    its track expects it when it is found again. A shot cut
    (a new `shot` number, fer_core.shots) closes every track: the face at the same place after a cut is
    most often someone else, and ids are not meant to survive cuts (there is no re-identification).
    """
    iou_min: float = 0.3
    near: float = 0.6
    max_gap_s: float = 2.0
    tracks: list[_Track] = field(default_factory=list)
    next_id: int = 0
    shot: int | None = None

    def _score(self, track: _Track, box: Box) -> float:
        overlap = iou(track.box, box)
        if overlap >= self.iou_min:
            return overlap
        tx, ty, tw, th = track.box
        x, y, w, h = box
        ratio = (w * h) / max(tw * th, 1)
        dist = np.hypot(x + w / 2 - tx - tw / 2, y + h / 2 - ty - th / 2)
        if 0.6 <= ratio <= 1.7 and dist <= self.near * max(tw, th):
            return 0.01 + 0.1 * (1 - dist / (self.near * max(tw, th)))  # below any real overlap
        return 0.0

    def update(self, t: float, boxes: Sequence[Box], shot: int | None = None) -> list[int]:
        """Face ids for `boxes` seen at time `t` (seconds), in the order given, in shot number `shot`."""
        if shot is not None and shot != self.shot:
            self.tracks, self.shot = [], shot
        live = [tr for tr in self.tracks if t - tr.last_t <= self.max_gap_s]
        self.tracks = live
        pairs = sorted(((self._score(tr, b), ti, bi) for ti, tr in enumerate(live) for bi, b in enumerate(boxes)),
                       reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        moves: list[tuple[Box, Box]] = []
        for score, ti, bi in pairs:
            if score <= 0 or ti in used or ids[bi] is not None:
                continue
            used.add(ti)
            ids[bi] = live[ti].face_id
            moves.append((live[ti].box, tuple(boxes[bi])))
            live[ti].box, live[ti].last_t = tuple(boxes[bi]), t
        motion = camera_motion(moves)
        if motion is not None:
            for ti, track in enumerate(live):
                if ti not in used:
                    track.box = moved(track.box, *motion)
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                ids[bi] = self.next_id
                self.tracks.append(_Track(self.next_id, tuple(box), t))
                self.next_id += 1
        return [int(i) for i in ids]


def camera_motion(moves: Sequence[tuple[Box, Box]], min_faces: int = 2) -> tuple[float, float, float] | None:
    """(s, tx, ty) such that a face centre c moved to s * c + (tx, ty) between two frames, as the faces in
    `moves` (pairs of boxes) moved together: a pan or a zoom. Medians, so one face moving on its own does
    not count; None with fewer than `min_faces` faces (one face cannot tell the camera from the person)."""
    if len(moves) < min_faces:
        return None
    old = np.array([a for a, _ in moves], np.float64)
    new = np.array([b for _, b in moves], np.float64)
    scale = float(np.clip(np.median(new[:, 2:].max(1) / np.maximum(old[:, 2:].max(1), 1)), 0.8, 1.25))
    shift = np.median(new[:, :2] + new[:, 2:] / 2 - scale * (old[:, :2] + old[:, 2:] / 2), axis=0)
    return scale, float(shift[0]), float(shift[1])


def moved(box: Box, scale: float, tx: float, ty: float) -> Box:
    """`box` carried along by camera_motion's (s, tx, ty)."""
    x, y, w, h = box
    cx, cy, w2, h2 = scale * (x + w / 2) + tx, scale * (y + h / 2) + ty, scale * w, scale * h
    return int(round(cx - w2 / 2)), int(round(cy - h2 / 2)), max(1, int(round(w2))), max(1, int(round(h2)))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` rows (shorter at the ends); (N, K) -> (N, K).

    Centred, not trailing: the job is offline, and a trailing window would shift every segment
    boundary late by about window / 2 samples.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    return pd.DataFrame(values).rolling(window, center=True, min_periods=1).mean().to_numpy(np.float32)


def ema(values: np.ndarray, alpha: float = EMA_ALPHA) -> np.ndarray:
    """Exponential moving average down the rows: e_0 = x_0, e_i = alpha x_i + (1 - alpha) e_{i-1}."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return pd.DataFrame(values).ewm(alpha=alpha, adjust=False).mean().to_numpy(np.float32)


def deltas(values: np.ndarray) -> np.ndarray:
    """Row-to-row change, 0 for the first row."""
    out = np.zeros_like(values, dtype=np.float32)
    if len(values) > 1:
        out[1:] = np.diff(values, axis=0)
    return out


def add_temporal(frames: pd.DataFrame, window: int = VideoSettings.window,
                 alpha: float = EMA_ALPHA) -> pd.DataFrame:
    """frames (video, frame, t, face_id, x, y, w, h, p_*) -> SPEC's frames table, sorted by face then t."""
    frames = frames.sort_values(["face_id", "t"], kind="stable").reset_index(drop=True)
    s = np.zeros((len(frames), len(CLASSES)), np.float32)
    e, d = np.zeros_like(s), np.zeros_like(s)
    probs = frames[P_COLS].to_numpy(np.float32)
    for _, idx in frames.groupby("face_id", sort=False).indices.items():
        p = probs[idx]
        s[idx] = moving_average(p, window)
        e[idx] = ema(p, alpha)
        d[idx] = deltas(s[idx])
    out = frames.copy()
    out[S_COLS], out[E_COLS], out[D_COLS] = s, e, d
    top = s.argmax(1) if len(s) else np.zeros(0, int)
    out["emotion"] = [CLASSES[i] for i in top]
    out["score"] = s[np.arange(len(s)), top] if len(s) else np.zeros(0, np.float32)
    return out[FRAME_COLUMNS].sort_values(["frame", "face_id"], kind="stable").reset_index(drop=True)


def segments(frames: pd.DataFrame, sample_step: float, max_gap_s: float | None = None) -> pd.DataFrame:
    """Runs of the same smoothed top emotion per face: face_id, emotion, start_t, end_t, mean_score.

    Boundaries sit halfway between the last sample of one run and the first of the next; a run
    ends half a sampling step after its last sample when the face is not seen again within
    `max_gap_s` (default the larger of 1 s and 3 sampling steps), and a gap that long also splits a run.
    """
    max_gap_s = max(1.0, 3 * sample_step) if max_gap_s is None else max_gap_s
    rows = []
    for face_id, g in frames.sort_values(["face_id", "t"]).groupby("face_id", sort=True):
        t, emo, score = g["t"].to_numpy(float), g["emotion"].to_numpy(), g["score"].to_numpy(float)
        start = 0
        for i in range(1, len(g) + 1):
            gap = i < len(g) and t[i] - t[i - 1] > max_gap_s
            if i < len(g) and not gap and emo[i] == emo[start]:
                continue
            prev_gap = start == 0 or t[start] - t[start - 1] > max_gap_s
            start_t = t[start] - sample_step / 2 if prev_gap else (t[start - 1] + t[start]) / 2
            end_t = t[i - 1] + sample_step / 2 if (i == len(g) or gap) else (t[i - 1] + t[i]) / 2
            rows.append({"face_id": int(face_id), "emotion": str(emo[start]), "start_t": max(0.0, float(start_t)),
                         "end_t": float(end_t), "mean_score": float(score[start:i].mean())})
            start = i
    return pd.DataFrame(rows, columns=SEGMENT_COLUMNS)


def summarize(frames: pd.DataFrame, segs: pd.DataFrame, duration: float, frames_sampled: int,
              **extra: Any) -> dict[str, Any]:
    """summary.json: duration, frames sampled, faces, share of time per emotion per face, transitions."""
    # seconds per face and emotion, and each face's samples, by one groupby each (not a filter per face)
    length = (segs["end_t"] - segs["start_t"]).clip(lower=0)
    by_emotion = length.groupby([segs["face_id"], segs["emotion"]]).sum().unstack(fill_value=0.0)
    by_emotion = by_emotion.reindex(columns=CLASSES, fill_value=0.0).sort_index()
    samples = frames.groupby("face_id")["t"].agg(["size", "min", "max"])
    per_face, total = {}, dict.fromkeys(CLASSES, 0.0)
    for face_id, row in by_emotion.iterrows():
        seconds = {c: float(row[c]) for c in CLASSES}
        covered = sum(seconds.values())
        for c in CLASSES:
            total[c] += seconds[c]
        seen = samples.loc[face_id]
        per_face[str(int(face_id))] = {
            "samples": int(seen["size"]), "first_t": float(seen["min"]), "last_t": float(seen["max"]),
            "seconds": round(covered, 3),
            "share": {c: (seconds[c] / covered if covered else 0.0) for c in CLASSES},
            "dominant": max(seconds, key=seconds.get) if covered else None,
        }
    transitions = []
    ordered = segs.sort_values(["face_id", "start_t"])
    face, emotion, start, end = (ordered[c].to_numpy() for c in ("face_id", "emotion", "start_t", "end_t"))
    for i in range(1, len(ordered)):
        if face[i] == face[i - 1] and abs(end[i - 1] - start[i]) < 1e-9:  # adjacent runs, not a gap in the track
            transitions.append({"face_id": int(face[i]), "t": round(float(start[i]), 3), "from": emotion[i - 1],
                                "to": emotion[i]})
    covered = sum(total.values())
    return {
        **extra,
        "duration": round(float(duration), 3),
        "frames_sampled": int(frames_sampled),
        "frames_with_faces": int(frames["frame"].nunique()) if len(frames) else 0,
        "faces": len(per_face),
        "detections": int(len(frames)),
        "share": {c: (total[c] / covered if covered else 0.0) for c in CLASSES},
        "per_face": per_face,
        "transitions": transitions,
    }
