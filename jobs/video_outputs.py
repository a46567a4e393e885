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


def plot_timeline(frames: pd.DataFrame, path: Path, title: str) -> str:
    """timeline.png: smoothed probabilities over time, one panel per face. Returns '' or why it was skipped."""
    try:
        from matplotlib.figure import Figure  # no pyplot: nothing global to close in a long-lived writer
    except ImportError:
        return f"{runs.TIMELINE} not drawn: matplotlib is missing (pip install 'fertune[report]')"
    # The six faces seen most often (one-sample tracks are mostly detector noise), in id order.
    face_ids = sorted(frames["face_id"].value_counts().index[:6])
    height = 0.6 + 1.9 * len(face_ids)  # inches
    fig = Figure(figsize=(9, height))
    axes = fig.subplots(len(face_ids), 1, squeeze=False, sharex=True)
    for ax, face_id in zip(axes[:, 0], face_ids):
        g = frames[frames["face_id"] == face_id]
        for c in CLASSES:
            ax.plot(g["t"], g[f"s_{c}"], label=c, lw=1.2, marker=".", ms=3)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face_id}")
    axes[0, 0].set_title(title, fontsize=9)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), ncol=7, fontsize=7, loc="lower center")
    axes[-1, 0].set_xlabel("seconds (moving average over the window)")
    # fixed margins in inches (tight_layout measures every text and costs more than the drawing)
    fig.subplots_adjust(left=0.8 / 9, right=1 - 0.2 / 9, top=1 - 0.35 / height, bottom=0.95 / height, hspace=0.12)
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    return ""


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
    notes = list(summary.get("notes", []))
    if plot and len(frames):
        note = plot_timeline(frames, out_dir / runs.TIMELINE, summary.get("video", out_dir.name))
        if note:
            notes.append(note)
    elif not plot:  # --no-plots: a timeline left by an earlier run would show other outputs than these
        (out_dir / runs.TIMELINE).unlink(missing_ok=True)
    summary["notes"] = notes
    runs.atomic_write_text(out_dir / runs.SUMMARY, json.dumps(summary, indent=1))
    return summary
