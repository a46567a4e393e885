"""Folders for the report tests, built once per test process from real tiny trainings on synthetic faces.

- `trained_run()`: a real `fit` of cnn_small (3 epochs on the demo set, ~80 % test accuracy), in the
  train-run layout with data.json = demo. The Grad-CAM, report and FER+ CLI tests share it.
- `search_folder(root, ...)`: a search in SPEC.md's layout (search.yaml, results.parquet, best/,
  ensemble/, Ray Tune trial folders with result.json/params.json and checkpoint_*/ holding best.pt and
  metrics.csv) from a few real tiny `fit` runs, one of them cut short as ASHA would.
- `video_folder(root)`: a `fertune video --out` folder in SPEC.md's layout with known segments.
"""
from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fer_core.labels import CLASSES

TRIALS = [  # (trial index, lr, dropout, head_width, epochs run, planned)
    (0, 2e-3, 0.5, 256, 2, 2),
    (1, 4e-3, 0.2, 128, 2, 2),
    (2, 5e-4, 0.6, 0, 1, 2),   # stopped after 1 of 2 epochs: ASHA's STOPPED_EARLY
]


@functools.lru_cache(maxsize=None)
def demo():
    from fer_core.synthetic import make_demo_data

    return make_demo_data()


@functools.lru_cache(maxsize=None)
def trained_run() -> Path:
    from fer_core.config import resolve
    from fer_core.evaluate import evaluate
    from fer_core.train import fit

    run = Path(tempfile.mkdtemp(prefix="fertune-report-run-")) / "exp"
    fit(resolve({"model": "cnn_small", "epochs": 3}), demo(), run_dir=run, log=lambda *a, **k: None)
    (run / "data.json").write_text(json.dumps({"data": "demo", "classes": None}))
    evaluate(run, demo()).write(run / "eval.json")
    return run


@functools.lru_cache(maxsize=None)
def _trial_runs() -> tuple[Path, list[dict]]:
    """Three real tiny trainings (cnn_small, 400 training images) and their per-epoch rows."""
    from fer_core.config import resolve
    from fer_core.train import fit

    base = Path(tempfile.mkdtemp(prefix="fertune-report-trials-"))
    out = []
    for index, lr, dropout, head, epochs, planned in TRIALS:
        cfg = resolve({"model": "cnn_small", "epochs": epochs, "train_subset": 400, "batch_size": 32, "lr": lr,
                       "dropout": dropout, "head_width": head, "patience": 0})
        rows: list[dict] = []
        fit(cfg, demo(), run_dir=base / f"t{index}", report=lambda row, _p: rows.append(dict(row)),
            log=lambda *a, **k: None)
        out.append({"index": index, "lr": lr, "dropout": dropout, "head_width": head, "epochs": epochs,
                    "planned": planned, "rows": rows})
    return base, out


def search_folder(root: Path, name: str = "s1", two_metrics: bool = False, finished: bool = True) -> Path:
    """A search folder in SPEC.md's layout (see the module docstring)."""
    from fer_core.evaluate import evaluate

    base, trials = _trial_runs()
    folder = root / name
    storage = folder / "ray"
    metric = ["val_acc", "latency_ms"] if two_metrics else "val_macro_f1"
    space = {"metric": metric, "mode": ["max", "min"] if two_metrics else "max",
             "space": {"lr": {"loguniform": [5e-4, 5e-3]}, "dropout": {"uniform": [0.1, 0.7]},
                       "head_width": {"choice": [0, 128, 256]}, "model": "cnn_small", "epochs": 2}}
    folder.mkdir(parents=True)
    (folder / "search.yaml").write_text(yaml.safe_dump(
        {"space": space, "settings": {"data": "demo", "storage": str(storage), "experiment": name, "top_k": 2}}))
    rows = []
    for t in trials:
        trial_id = f"ab12c_{t['index']:05d}"
        tdir = storage / name / f"trial_{trial_id}"
        ckpt = tdir / f"checkpoint_{t['epochs'] - 1:06d}"
        ckpt.mkdir(parents=True)
        src = base / f"t{t['index']}"
        for f in ("weights/best.pt", "weights/last.pt", "metrics.csv", "config.yaml"):
            shutil.copyfile(src / f, ckpt / Path(f).name)
        params = {"lr": t["lr"], "dropout": t["dropout"], "head_width": t["head_width"]}
        (tdir / "params.json").write_text(json.dumps(params))
        latency = 0.2 + t["head_width"] / 1000
        with open(tdir / "result.json", "w") as fh:
            for r in t["rows"]:
                fh.write(json.dumps({**r, "trial_id": trial_id, "trial_index": t["index"], "latency_ms": latency,
                                     "epochs_planned": t["planned"], "train_seconds": r["seconds"]}) + "\n")
        h = pd.DataFrame(t["rows"])
        rows.append({"trial_id": trial_id, "trial": t["index"],
                     "status": "TERMINATED" if t["epochs"] == t["planned"] else "STOPPED_EARLY",
                     "epochs": t["epochs"], **{f"config/{k}": v for k, v in params.items()},
                     "best_val_acc": h["val_acc"].max(), "best_val_macro_f1": h["val_macro_f1"].max(),
                     "best_val_loss": h["val_loss"].min(),
                     "last_val_acc": h["val_acc"].iloc[-1], "last_val_macro_f1": h["val_macro_f1"].iloc[-1],
                     "train_seconds": h["seconds"].sum(), "latency_ms": latency,
                     "checkpoint": str(ckpt / "best.pt")})
    df = pd.DataFrame(rows)
    key = "best_val_acc" if two_metrics else "best_val_macro_f1"
    df = df.sort_values(key, ascending=False).reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df["score"] = df[key]
    if two_metrics:
        v = np.column_stack([df["best_val_acc"], -df["latency_ms"]])
        df["pareto"] = [not ((v >= v[i]).all(1) & (v > v[i]).any(1)).any() for i in range(len(v))]
    if not finished:
        return folder  # a running search: no results.parquet, best/ or ensemble/ yet
    df.to_parquet(folder / "results.parquet", index=False)
    best_src = Path(df["checkpoint"].iloc[0]).parent
    best = folder / "best"
    (best / "weights").mkdir(parents=True)
    shutil.copyfile(best_src / "best.pt", best / "weights" / "best.pt")
    for f in ("metrics.csv", "config.yaml"):
        shutil.copyfile(best_src / f, best / f)
    (best / "data.json").write_text(json.dumps({"data": "demo", "classes": None}))
    evaluate(best, demo()).write(best / "eval.json")
    ens = folder / "ensemble"
    (ens / "members").mkdir(parents=True)
    members = []
    for _, r in df.head(2).iterrows():
        shutil.copyfile(r["checkpoint"], ens / "members" / f"{r['trial_id']}.pt")
        members.append({"checkpoint": f"members/{r['trial_id']}.pt", "trial_id": r["trial_id"]})
    (ens / "members.json").write_text(json.dumps({"members": members}))
    return folder


# Known timeline of the video fixture: (face_id, emotion, start_t, end_t)
VIDEO_SEGMENTS = {
    "clip_a": [(0, "happy", 0.0, 4.0), (0, "sad", 4.0, 6.0), (1, "neutral", 1.0, 6.0)],
    "clip_b": [(0, "angry", 0.0, 3.0)],
}


def video_folder(root: Path) -> Path:
    """A `fertune video --out` folder: two videos with outputs, one failed input."""
    out = root / "video_out"
    out.mkdir(parents=True)
    manifest = []
    for stem, segments in VIDEO_SEGMENTS.items():
        vdir = out / f"{stem}-0123abcd"
        vdir.mkdir()
        frames = []
        duration = max(e for *_, e in segments)
        for face, emotion, start, end in segments:
            for t in np.arange(start, end, 0.2):
                p = np.full(len(CLASSES), 0.05)
                p[CLASSES.index(emotion)] = 0.7
                row = {"video": stem, "frame": int(round(t * 25)), "t": float(t), "face_id": face,
                       "x": 10, "y": 10, "w": 60, "h": 60}
                row.update({f"p_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"s_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"e_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"d_{c}": 0.0 for c in CLASSES})
                row.update(emotion=emotion, score=0.7)
                frames.append(row)
        pd.DataFrame(frames).to_parquet(vdir / "frames.parquet", index=False)
        pd.DataFrame([{"face_id": f, "emotion": e, "start_t": s, "end_t": t_, "mean_score": 0.7}
                      for f, e, s, t_ in segments]).to_csv(vdir / "segments.csv", index=False)
        (vdir / "summary.json").write_text(json.dumps({"duration": duration, "frames_sampled": len(frames),
                                                       "faces": len({s[0] for s in segments}), "transitions": 1}))
        manifest.append({"path": f"/videos/{stem}.mp4", "status": "ok", "reason": "", "frames": len(frames),
                         "faces": len({s[0] for s in segments}), "seconds": 1.5, "out_dir": str(vdir), "key": "k"})
    manifest.append({"path": "/videos/broken.mp4", "status": "failed", "reason": "cannot decode", "frames": 0,
                     "faces": 0, "seconds": 0.1, "out_dir": "", "key": "k"})
    pd.DataFrame(manifest).to_parquet(out / "manifest.parquet", index=False)
    return out
