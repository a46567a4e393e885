"""One video's outputs (SPEC.md "Video outputs"): frames.parquet, segments.csv, timeline.png, summary.json.

Every file is written to a temp name and renamed, and summary.json (which records the input's key)
is written last: a folder whose summary.json carries the current key is complete, so a crash at any
point leaves either a finished folder or one that the next run redoes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_core import runs, temporal
from fer_core.labels import CLASSES


def _atomic(path: Path, write) -> None:
    """Call write(tmp_path), then rename onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(out_dir: Path) -> None:
    """Delete the temporary files of a write that died with its machine (`_atomic`'s `.NAME.*` files), so
    that a retried task leaves only whole outputs."""
    for name in (*runs.VIDEO_OUTPUTS, runs.TIMELINE):
        for tmp in out_dir.glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)


def is_complete(out_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The folder's summary when it holds finished outputs for `key`, else None."""
    out_dir = Path(out_dir)
    try:
        summary = json.loads((out_dir / runs.SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("key") != key or not all((out_dir / f).is_file() for f in runs.VIDEO_OUTPUTS):
        return None
    return summary


def frames_table(video: str, frame: np.ndarray, t: np.ndarray, face_id: np.ndarray, boxes: np.ndarray,
                 probs: np.ndarray, window: int) -> pd.DataFrame:
    """SPEC's frames table from per-detection arrays (boxes (N, 4) x, y, w, h; probs (N, 7))."""
    df = pd.DataFrame({"video": video, "frame": frame.astype(np.int64), "t": t.astype(np.float64),
                       "face_id": face_id.astype(np.int64)})
    df[["x", "y", "w", "h"]] = boxes.astype(np.int64).reshape(-1, 4)
    df[temporal.P_COLS] = probs.astype(np.float32).reshape(-1, len(CLASSES))
    return temporal.add_temporal(df, window=window)


def plot_timeline(frames: pd.DataFrame, path: Path, title: str) -> None:
    """timeline.png: smoothed probabilities over time, one panel per face (jobs.timeline_png)."""
    from jobs.timeline_png import draw_timeline, encode_png

    png = encode_png(draw_timeline(frames, title))
    _atomic(path, lambda tmp: Path(tmp).write_bytes(png))


def write_video_outputs(out_dir: str | Path, frames: pd.DataFrame, summary: dict[str, Any], sample_step: float,
                        plot: bool = True) -> dict[str, Any]:
    """Write the four outputs of one video; summary.json last. Returns the summary written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_writes(out_dir)
    segs = temporal.segments(frames, sample_step)
    _atomic(out_dir / runs.FRAMES, lambda tmp: frames.to_parquet(tmp, index=False))
    _atomic(out_dir / runs.SEGMENTS, lambda tmp: segs.to_csv(tmp, index=False, float_format="%.3f"))
    summary = temporal.summarize(frames, segs, summary.pop("duration"), summary.pop("frames_sampled"), **summary)
    summary.setdefault("notes", [])
    if plot and len(frames):
        plot_timeline(frames, out_dir / runs.TIMELINE, summary.get("video", out_dir.name))
    elif not plot:  # --no-plots: a timeline left by an earlier run would show other outputs than these
        (out_dir / runs.TIMELINE).unlink(missing_ok=True)
    runs.atomic_write_text(out_dir / runs.SUMMARY, json.dumps(summary, indent=1))
    return summary
