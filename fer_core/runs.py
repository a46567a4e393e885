"""The run-folder contract (SPEC.md "Run folders"): every file name, where each file lives, and the
readers and writers of the small files that several packages share.

    runs/train/NAME/                 a train run (also a search's best/)
        config.yaml  data.json  metrics.csv  eval.json  trial.json (search best/ only)
        weights/last.pt  weights/best.pt
    runs/search/NAME/                a search
        search.yaml  results.parquet  timing.json  best/  ensemble/members.json  ensemble/eval.json
    runs/predict/NAME/               predictions.jsonl, annotated images and videos (--save)
    DIR/ (fertune video --out)       manifest.parquet, and per input frames.parquet, segments.csv,
                                     summary.json, timeline.png

Only this module spells those names; everything else asks it. It imports nothing heavy (no torch), so
the CLI, Serve replicas and video workers can all use it.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

# ------------------------------------------------------------------------------------------ file names
CONFIG = "config.yaml"
DATA = "data.json"
METRICS = "metrics.csv"
EVAL = "eval.json"
TRIAL = "trial.json"
WEIGHTS = "weights"
BEST = "best.pt"
LAST = "last.pt"
MEMBERS = "members.json"
SEARCH = "search.yaml"
RESULTS = "results.parquet"
TIMING = "timing.json"
BEST_DIR = "best"
ENSEMBLE_DIR = "ensemble"
MEMBERS_DIR = "members"
REPORT_DIR = "report"
RAY_STORAGE = "ray"   # a search's Ray experiment state, unless --storage puts it elsewhere
# a Ray Tune trial folder's own files (read by the report of a search still running)
TUNE_RESULT = "result.json"
TUNE_PARAMS = "params.json"
# fertune predict outputs (runs/predict/NAME/): annotated images beside them
PREDICTIONS = "predictions.jsonl"
# fertune video outputs
MANIFEST = "manifest.parquet"
FRAMES = "frames.parquet"
SEGMENTS = "segments.csv"
SUMMARY = "summary.json"
TIMELINE = "timeline.png"
VIDEO_OUTPUTS = (FRAMES, SEGMENTS, SUMMARY)  # a finished video folder holds these; timeline.png is optional

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "seconds"]
EPOCH_METRICS = ("val_acc", "val_macro_f1", "val_loss")

# results.parquet `status` values: Tune's, plus STOPPED_EARLY for a trial that ended before its planned epochs
TERMINATED, STOPPED_EARLY, RUNNING, ERROR, PENDING = "TERMINATED", "STOPPED_EARLY", "RUNNING", "ERROR", "PENDING"
PAUSED = "PAUSED"
STATUS_DONE = (TERMINATED, STOPPED_EARLY)
UNFINISHED = (PENDING, RUNNING, PAUSED)  # what Tune leaves a stopped search's trials in, to resume them
# results.parquet `phase` values: a time-budgeted search's exploration trials, and its full-length refits
PHASE_EXPLORE, PHASE_REFIT = "explore", "refit"


class RunExistsError(FileExistsError):
    """A named run folder exists and neither resume nor exist-ok was asked for."""


# ------------------------------------------------------------------------------------------ run folders
def next_free_name(parent: Path, stem: str = "exp") -> str:
    """exp, then exp2, exp3, ... (one past the highest taken, as ultralytics numbers them)."""
    taken = {p.name for p in parent.iterdir()} if parent.is_dir() else set()
    if stem not in taken:
        return stem
    numbers = [int(m.group(1)) for n in taken if (m := re.fullmatch(re.escape(stem) + r"(\d+)", n))]
    return f"{stem}{max(numbers + [1]) + 1}"


def run_folder(project: str | Path, name: str | None, resume: bool = False, exist_ok: bool = False,
               command: str = "fertune train") -> Path:
    """The folder a run writes to; refuses to reuse an existing named folder unless told how."""
    project = Path(project)
    if name is None:
        if resume:
            raise ValueError(f"--resume needs --name NAME: the run under {project} to continue")
        name = next_free_name(project)
    folder = project / name
    if resume:
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot resume: {folder} does not exist; runs there: "
                                    f"{', '.join(sorted(p.name for p in project.iterdir())) if project.is_dir() else 'none'}")
        return folder
    if folder.exists() and any(folder.iterdir()) and not exist_ok:
        raise RunExistsError(
            f"{folder} already exists. Use `{command} ... --name {name} --resume` to continue it, "
            f"`--exist-ok` to write into it, or another --name (or none, for a fresh one)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def weights(run: Path, which: str = BEST) -> Path:
    """run/weights/best.pt (or last.pt)."""
    return Path(run) / WEIGHTS / which


def is_train_run(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / METRICS).is_file() and (folder / WEIGHTS).is_dir()


def is_search_folder(folder: Path) -> bool:
    return (folder / RESULTS).is_file() or (folder / SEARCH).is_file()


def is_video_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


# -------------------------------------------------------------------------------------- atomic writes
def new_file_mode() -> int:
    """The permissions open() would give a new file (mkstemp's are 0600, unreadable to other users)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


# ----------------------------------------------------------------------------------------- metrics.csv
def read_metrics(run: Path) -> list[dict[str, Any]]:
    """run/metrics.csv as rows of numbers ([] before the first epoch)."""
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    with path.open() as fh:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_metrics(run: Path, rows: list[dict[str, Any]]) -> None:
    lines = [",".join(METRIC_COLUMNS)]
    lines += [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in METRIC_COLUMNS)
              for row in rows]
    atomic_write_text(Path(run) / METRICS, "\n".join(lines) + "\n")


def metric_summary(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """best_<m> and last_<m> for each epoch metric of a history (rows in epoch order; val_loss: lower is better).

    A trial restarted from an older checkpoint reports some epochs twice; the newest row of an epoch wins.
    """
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        epoch = row.get("epoch")
        if epoch is not None and not (isinstance(epoch, float) and math.isnan(epoch)):
            by_epoch[int(epoch)] = row
    history = [by_epoch[e] for e in sorted(by_epoch)]
    out: dict[str, float] = {}
    for m in EPOCH_METRICS:
        values = [float(r[m]) for r in history if r.get(m) is not None]
        if values:
            out[f"best_{m}"] = min(values) if m == "val_loss" else max(values)
            out[f"last_{m}"] = float(history[-1][m]) if history[-1].get(m) is not None else float("nan")
    return out


def objective_column(metric: str) -> str:
    """The results.parquet column a search ranks on for `metric`."""
    return "latency_ms" if metric == "latency_ms" else f"best_{metric}"


# ------------------------------------------------------------------------------------------- data.json
def write_data_json(run: Path, data: str, classes: str | None = None) -> None:
    """What a run was trained on, so `fertune report` can evaluate on the same data."""
    write_json(Path(run) / DATA, {"data": str(data), "classes": classes})


def read_data_json(run: Path) -> dict[str, Any] | None:
    return read_json(Path(run) / DATA)


# ---------------------------------------------------------------------------------------- checkpoints
def resolve_checkpoints(path: str | Path) -> tuple[list[Path], Path | None]:
    """The checkpoint files behind a `--model` PATH, and the folder holding eval.json/members.json (if any).

    PATH may be a `.pt` file, a train run folder (its weights/best.pt), a search's `best/` (a run folder),
    a search's `ensemble/` (members.json listing member checkpoints), or a bundled model's name.
    """
    from fer_core.bundled import bundled_path

    path = bundled_path(path) or Path(path)
    if path.is_file():
        return [path], path.parent.parent if path.parent.name == WEIGHTS else path.parent
    if (path / MEMBERS).is_file():
        members = json.loads((path / MEMBERS).read_text())["members"]
        files = [Path(m["checkpoint"]) if Path(m["checkpoint"]).is_absolute() else path / m["checkpoint"]
                 for m in members]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"ensemble {path} lists checkpoints that do not exist: {missing[:3]}")
        return files, path
    if weights(path).is_file():
        return [weights(path)], path
    if weights(path, LAST).is_file():
        raise FileNotFoundError(f"{path} has {WEIGHTS}/{LAST} but no {WEIGHTS}/{BEST} yet; pass "
                                f"{weights(path, LAST)} explicitly to use the last epoch")
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist; pass a checkpoint .pt, a run folder "
                                f"(runs/train/NAME), or a search's {BEST_DIR}/ or {ENSEMBLE_DIR}/ folder")
    raise FileNotFoundError(f"{path} holds no model: expected {WEIGHTS}/{BEST} (a run folder), {MEMBERS} "
                            f"(an ensemble) or a .pt file")


def eval_path(folder: Path, data: str, split: str) -> Path:
    """Where `fertune eval` writes: folder/eval.json, unless that file scores other data or another split
    (the run's own evaluation is kept; this one goes to eval-<data stem>-<split>.json)."""
    out = Path(folder) / EVAL
    previous = read_json(out)
    if previous is not None and (previous.get("data"), previous.get("split")) != (str(data), split):
        out = out.with_name(f"eval-{Path(str(data)).stem}-{split}.json")
    return out


def refits_beside_explored(results: Any, metric_column: str) -> Any:
    """A results.parquet table's refits, each beside the exploration trial it trains again (a DataFrame with
    one row per refit; empty when the search made none). `metric_column` is e.g. best_val_acc."""
    import pandas as pd

    if "phase" not in results or not (results["phase"] == PHASE_REFIT).any():
        return pd.DataFrame()
    explored = results[results["phase"] == PHASE_EXPLORE].set_index("trial")
    rows = []
    for _, r in results[results["phase"] == PHASE_REFIT].iterrows():
        t = int(r["refit_of"])
        rows.append({"refit of trial": f"{t}{' (default)' if t == 0 else ''}",
                     "explore epochs": explored.at[t, "epochs"], f"explore {metric_column}": explored.at[t, metric_column],
                     "refit epochs": r["epochs"], f"refit {metric_column}": r[metric_column], "status": r["status"],
                     "train_s": r["train_seconds"]})
    return pd.DataFrame(rows)
