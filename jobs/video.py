"""`fertune video INPUT... --model PATH --out DIR`: emotion timelines for video files with Ray Data.

The driver expands the inputs, checks each one cheaply (missing, unreadable, empty), computes its key
(file size + mtime + model + the settings that change the outputs) and skips inputs whose folder already
holds finished outputs for that key; only the rest go through the Ray Data pipeline
(jobs/video_pipeline.py). The manifest is rewritten atomically after every finished video, so it always
describes what is on disk. The settings, their defaults and checks are fer_core.video_settings.VideoSettings.
"""
from __future__ import annotations

import glob
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fer_core import runs
from fer_core.settings import from_namespace
from fer_core.video_frames import VIDEO_EXTENSIONS, check_input
from fer_core.video_settings import VideoSettings
from jobs.video_outputs import _atomic, is_complete

LIST_EXTENSIONS = {".txt", ".lst", ".list"}
MANIFEST_COLUMNS = ["path", "status", "reason", "frames", "faces", "seconds", "out_dir", "key"]


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (their videos, recursively), globs and text files of paths -> absolute paths, in order.

    Paths are made absolute but symlinks are kept: two links to one file are two inputs with two folders.

    A name that matches nothing stays in the list, so the manifest reports it as missing.
    """
    out: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(str(path), recursive=True))
            out.extend(str(Path(m).absolute()) for m in matches if Path(m).is_file()) if matches else out.append(
                str(path.absolute()))
        elif path.is_dir():
            out.extend(str(p.absolute()) for p in sorted(path.rglob("*"))
                       if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line).expanduser()
                    out.append(str((entry if entry.is_absolute() else path.parent / entry).absolute()))
        else:
            out.append(str(path.absolute()))
    return list(dict.fromkeys(out))  # drop repeats, keep the first position


def out_folder(out: Path, path: str) -> Path:
    """DIR/<stem>-<first 8 hex of sha1 of the absolute path>/ (SPEC.md): same-named files never collide."""
    return out / f"{Path(path).stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def model_signature(model: str) -> list[dict[str, Any]]:
    """What identifies the model for the key: each checkpoint's absolute path, size and mtime."""
    files, _ = runs.resolve_checkpoints(model)
    return [{"path": str(f.resolve()), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def input_key(path: str, model_sig: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """sha1 of the file's size + mtime, the model and the settings that change the outputs
    (VideoSettings.output_settings())."""
    try:
        st = Path(path).stat()
        file_sig = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        file_sig = {"missing": path}
    blob = json.dumps({"file": file_sig, "model": model_sig, "settings": settings}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


class Manifest:
    """DIR/manifest.parquet: one row per input, rewritten atomically whenever a row changes."""

    def __init__(self, out: Path):
        self.path = out / runs.MANIFEST
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for row in pd.read_parquet(self.path).to_dict("records"):
                self.rows[row["path"]] = row
        self.previous = dict(self.rows)

    def set(self, row: dict[str, Any], save: bool = True) -> None:
        self.rows[row["path"]] = {c: row.get(c) for c in MANIFEST_COLUMNS}
        if save:
            self.save()

    def save(self) -> None:
        df = pd.DataFrame(list(self.rows.values()), columns=MANIFEST_COLUMNS)
        df = df.astype({"frames": "int64", "faces": "int64", "seconds": "float64"})
        _atomic(self.path, lambda tmp: df.to_parquet(tmp, index=False))


class Progress:
    """One line per finished video: videos done, sampled frames/s, ETA.

    The ETA weighs videos by file size: the largest go first, so a count of videos would overestimate it.
    """

    def __init__(self, sizes: dict[str, int]):
        self.sizes, self.total_bytes = sizes, sum(sizes.values()) or 1
        self.done, self.done_bytes, self.frames, self.start = 0, 0, 0, time.perf_counter()

    def update(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.done_bytes += self.sizes.get(row["path"], 0)
        self.frames += int(row.get("frames") or 0)
        elapsed = time.perf_counter() - self.start
        share = self.done_bytes / self.total_bytes if self.done_bytes else self.done / len(self.sizes)
        eta = elapsed / share * (1 - share) if share > 0 else float("nan")
        what = row["status"] + (f" ({row['reason']})" if row.get("reason") else "")
        print(f"[{self.done}/{len(self.sizes)}] {Path(row['path']).name}: {what} | {self.frames / elapsed:.1f} "
              f"frames/s, elapsed {elapsed:.0f} s, ETA {eta:.0f} s", flush=True)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:  # gone since the check: its task reports that
        return 0


def plan(paths: list[str], out: Path, manifest: Manifest, model_sig, settings) -> tuple[list[dict], list[dict]]:
    """Split inputs into rows that are settled now (failed checks, up to date) and tasks to run."""
    settled, tasks = [], []
    for path in paths:
        out_dir = out_folder(out, path)
        key = input_key(path, model_sig, settings)
        base = {"path": path, "out_dir": str(out_dir), "key": key, "frames": 0, "faces": 0, "seconds": 0.0}
        problem = check_input(path)
        if problem:
            settled.append({**base, "status": "failed", "reason": problem})
            continue
        summary = is_complete(out_dir, key)
        if summary is not None:
            settled.append({**base, "status": "skipped", "reason": "up to date: outputs for this key exist",
                            "frames": summary.get("frames_sampled", 0), "faces": summary.get("faces", 0)})
            continue
        before = manifest.previous.get(path)
        if before is not None and before.get("key") == key and before.get("status") == "failed":
            # A file that failed with the same bytes, model and settings fails again: do not redo it.
            settled.append({**base, "status": "failed", "reason": before["reason"],
                            "frames": int(before.get("frames") or 0)})
            continue
        tasks.append({"path": path, "name": Path(path).name, "out_dir": str(out_dir), "key": key})
    return settled, tasks


def main(args) -> int:
    out = Path(args.out)
    # Flags left out are None in `args`: VideoSettings' defaults apply. A bad value fails here, naming the flag.
    video_settings = from_namespace(VideoSettings, args)
    settings = video_settings.output_settings()  # the key's part; resolves --detector auto (a notice if to haar)
    model_sig = model_signature(args.model)  # FileNotFoundError names the accepted --model forms
    paths = expand_inputs(args.inputs)
    if not paths:
        raise FileNotFoundError(f"no inputs in {args.inputs}; pass video files, folders, globs or a .txt of paths")
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out)
    settled, tasks = plan(paths, out, manifest, model_sig, settings)
    for row in settled:
        manifest.set(row, save=False)
    manifest.save()
    skipped = sum(r["status"] == "skipped" for r in settled)
    print(f"fertune video: {len(paths)} inputs: {len(tasks)} to process, {skipped} up to date, "
          f"{len(settled) - skipped} failed checks -> {out}", flush=True)
    if not tasks:
        print(f"fertune video: nothing to do; manifest {manifest.path}")
        return 0

    # Largest files first, so the last minutes are not one long video decoding while the other cores idle.
    sizes = {task["path"]: _size(task["path"]) for task in tasks}
    tasks.sort(key=lambda task: sizes[task["path"]], reverse=True)
    progress = Progress(sizes)
    seconds: dict[str, float] = {}
    frames_total = 0

    def on_result(row: dict[str, Any]) -> None:
        nonlocal frames_total
        timings = json.loads(row.get("timings") or "{}")
        for k, v in timings.items():
            seconds[k] = seconds.get(k, 0.0) + float(v)
        row["seconds"] = round(sum(timings.get(k, 0.0) for k in ("find_total", "classify", "write")), 3)
        frames_total += int(row.get("frames") or 0)
        manifest.set(row)
        progress.update(row)

    from fer_core.bundled import absolute_model_path
    from jobs import video_pipeline

    # Crops are cut at the model's input size (crop_size, which video_pipeline adds); the size is the
    # model's, so the model's part of the key already covers it.
    job_settings = {**video_settings.resolved(), "model": args.model, "model_path": absolute_model_path(args.model)}
    wall = video_pipeline.run(tasks, job_settings, video_settings.batch_size, video_settings.gpus_per_worker,
                              args.address, on_result)
    statuses = pd.Series([manifest.rows[t["path"]]["status"] for t in tasks]).value_counts().to_dict()
    parts = ", ".join(f"{k} {seconds.get(k, 0.0):.1f}" for k in ("decode", "detect", "classify", "write"))
    print(f"fertune video: done in {wall['total']:.1f} s (Ray start-up {wall['startup']:.1f} s), "
          f"{frames_total} sampled frames, {statuses}; worker seconds: {parts}; manifest {manifest.path}")
    return 0
