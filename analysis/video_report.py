"""The report of a `fertune video --out DIR` folder: an archive-level summary, then per video an emotion
timeline per face and a strip of its emotion segments.

Reads SPEC.md's video outputs: DIR/manifest.parquet (one row per input) and, per input, frames.parquet,
segments.csv and summary.json in its out_dir. Shares of time are computed from segments.csv, so they
agree with the strips drawn.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.html import Page
from fer_core import runs
from fer_core.labels import CLASSES

MAX_VIDEOS = 40  # per-video figures drawn; the archive summary still counts every video


def video_dir(folder: Path, out_dir: object) -> Path | None:
    """A manifest's out_dir, absolute or relative to the output folder (which may have been moved)."""
    if not isinstance(out_dir, str) or not out_dir:
        return None
    for candidate in (Path(out_dir), folder / out_dir, folder / Path(out_dir).name):
        if candidate.is_dir():
            return candidate
    return None


def time_shares(segments: pd.DataFrame) -> pd.Series:
    """Share of segment time per emotion (all faces together), in CLASSES order."""
    if segments.empty:
        return pd.Series(0.0, index=list(CLASSES))
    length = (segments["end_t"] - segments["start_t"]).clip(lower=0)
    per = length.groupby(segments["emotion"]).sum().reindex(list(CLASSES), fill_value=0.0)
    total = per.sum()
    return per / total if total > 0 else per


def build(folder: Path, out: Path, page: Page) -> None:
    manifest = pd.read_parquet(folder / runs.MANIFEST)
    page.subtitle = f"video output {folder.resolve()}"
    videos = []  # (name, dir, row)
    for _, row in manifest.iterrows():
        d = video_dir(folder, row.get("out_dir")) if row.get("status") in ("ok", "skipped") else None
        if d is not None and (d / runs.SEGMENTS).is_file():
            videos.append((Path(str(row["path"])).name, d, row))

    page.section("archive", "Archive summary")
    counts = manifest["status"].value_counts().to_dict() if "status" in manifest else {}
    total_s = float(manifest["seconds"].fillna(0).sum()) if "seconds" in manifest else float("nan")
    page.kpis({"videos": str(len(manifest)), **{str(k): str(v) for k, v in counts.items()},
               "frames sampled": str(int(manifest["frames"].fillna(0).sum())) if "frames" in manifest else "-",
               "processing s": f"{total_s:.1f}"})
    cols = [c for c in ("path", "status", "reason", "frames", "faces", "seconds") if c in manifest]
    page.table(manifest[cols].assign(path=[Path(str(p)).name for p in manifest["path"]]))
    failed = manifest[manifest["status"] == "failed"] if "status" in manifest else manifest.iloc[:0]
    if len(failed):
        page.note(f"{len(failed)} input(s) failed; their reasons are in the table above.")
    shares, all_segments = {}, []
    for name, d, _ in videos:
        seg = pd.read_csv(d / runs.SEGMENTS)
        shares[name] = time_shares(seg)
        all_segments.append(seg)
    if shares:
        table = pd.DataFrame(shares).T
        overall = time_shares(pd.concat(all_segments, ignore_index=True))
        table.loc["all videos"] = overall
        page.figure(plots.stacked_shares(table, CLASSES, out / "archive_shares.png",
                                         "share of face time per emotion"), "share of time per emotion, per video")
    else:
        page.note("No video with outputs to summarise.")

    page.section("videos", "Per video")
    for k, (name, d, row) in enumerate(videos[:MAX_VIDEOS]):
        page.heading(name)
        summary = runs.read_json(d / runs.SUMMARY, {})
        scalars = {key: v for key, v in summary.items() if isinstance(v, (int, float, str))}
        if scalars:
            page.kpis({key: (f"{v:.4g}" if isinstance(v, float) else str(v)) for key, v in scalars.items()})
        seg = pd.read_csv(d / runs.SEGMENTS)
        frames = pd.read_parquet(d / runs.FRAMES) if (d / runs.FRAMES).is_file() else pd.DataFrame()
        duration = float(summary.get("duration", frames["t"].max() if len(frames) else 0.0) or 0.0)
        if len(frames):
            page.figure(plots.emotion_timeline(frames, CLASSES, out / f"video{k}_timeline.png",
                                               f"{name}: smoothed probabilities per face"), "timeline per face")
        page.figure(plots.segment_strip(seg, CLASSES, duration, out / f"video{k}_segments.png",
                                        f"{name}: emotion segments"), "segments per face")
        if len(seg):
            top = seg.assign(length=seg["end_t"] - seg["start_t"]).sort_values("length", ascending=False).head(8)
            page.table(top[["face_id", "emotion", "start_t", "end_t", "mean_score"]].round(3))
    if len(videos) > MAX_VIDEOS:
        page.note(f"Figures for the first {MAX_VIDEOS} of {len(videos)} videos; the archive summary covers all.")
    if not videos:
        page.note(f"No video has {runs.FRAMES}/{runs.SEGMENTS} to draw.")
