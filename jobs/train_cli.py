"""`fertune train`, `fertune eval` and `fertune demo`: fer_core only, no Ray."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from fer_core import config as cfg_mod
from fer_core.data import describe, load_data
from fer_core.labels import parse_class_map
from fer_core.runs import run_folder

# The demo's settings over cnn_small's preset: a few minutes on 2 CPU cores, well above chance on the
# synthetic faces. Kept here, beside the command that uses them.
DEMO_OVERRIDES = {"model": "cnn_small", "epochs": 4, "batch_size": 64, "patience": 0}


def _progress_bar():
    """A tqdm bar per epoch on an interactive terminal; nothing when output goes to a file or a test."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    state: dict = {}

    def update(epoch: int, batch: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None or state.get("epoch") != epoch:
            if bar is not None:
                bar.close()
            state["bar"] = bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, unit="batch")
            state["epoch"] = epoch
        bar.update(batch - bar.n)
        if batch == total:
            bar.close()
            state["bar"] = None

    return update


def train(overrides: dict, data_arg: str, project: str, name: str | None, resume: bool, exist_ok: bool,
          config_file: str | None = None, classes: str | None = None) -> Path:
    """Resolve settings, load data, train, evaluate; returns the run folder."""
    if resume:
        folder = run_folder(project, name, resume=True)
        saved = cfg_mod.load_yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else {}
        if not (folder / "weights" / "last.pt").is_file():
            raise FileNotFoundError(f"cannot resume {folder}: it has no weights/last.pt (no epoch finished); "
                                    f"start it again with --exist-ok")
        cfg = cfg_mod.resolve({**saved, **overrides}, config_file)
    else:
        cfg = cfg_mod.resolve(overrides, config_file)  # fails on a bad key before any data is read
        folder = None
    t0 = time.perf_counter()
    data = load_data(data_arg, classes=parse_class_map(classes), seed=cfg.seed, img_size=cfg.img_size)
    print(describe(data))
    print(f"data loaded in {time.perf_counter() - t0:.1f}s")
    if folder is None:
        folder = run_folder(project, name, exist_ok=exist_ok)
    (folder / "data.json").write_text(json.dumps({"data": str(data_arg), "classes": classes}))
    print(f"run folder: {folder}\nmodel {cfg.model}, {cfg.epochs} epochs, batch {cfg.batch_size}, device {cfg.device}")

    from fer_core.metrics import format_report
    from fer_core.train import final_evaluation, fit

    result = fit(cfg, data, run_dir=folder, resume=resume, progress=_progress_bar())
    best = folder / "weights" / "best.pt"
    report = final_evaluation(best, data, tta=cfg.tta, device=cfg.device, out=folder / "eval.json")
    print(f"best epoch {result.best_epoch} ({cfg.metric} {result.best_metric:.4f}); test evaluation of weights/best.pt:")
    print(format_report(report))
    print(f"total {time.perf_counter() - t0:.0f}s")
    return folder


def cmd_train(args) -> int:
    overrides = cfg_mod.parse_set(args.overrides)
    if args.device:
        overrides["device"] = args.device
    folder = train(overrides, args.data, args.project, args.name, args.resume, args.exist_ok, args.config, args.classes)
    print(f"\nResults: {folder}  (metrics.csv, weights/best.pt, eval.json)\n"
          f"Next: fertune eval --model {folder} --data {args.data} --tta\n"
          f"      fertune serve --model {folder}")
    return 0


def cmd_eval(args) -> int:
    from fer_core.infer import Predictor, resolve_checkpoints
    from fer_core.metrics import classification_report, format_report

    if not args.data:
        raise ValueError("fertune eval needs --data PATH (the dataset to score; with --labels, the images the FER+ "
                         "votes belong to)")
    predictor = Predictor(args.model, device=args.device, precision=args.precision)
    data = load_data(args.data, classes=parse_class_map(args.classes))
    split = {"train": data.train, "val": data.val, "test": data.test}[args.split]
    if split is None:
        raise ValueError(f"{args.data} has no {args.split} split; choose --split val")
    labels = split.labels
    if args.labels:
        from fer_core.ferplus import ferplus_labels

        labels, keep, counts = ferplus_labels(args.labels, args.data, args.split)
        if len(keep) != len(split):
            raise ValueError(f"{args.data} gave {len(split)} {args.split} images but {args.labels} has {len(keep)} "
                             f"rows for that split (rows were dropped or are corrupt); FER+ votes join by row order")
        split = type(split)(split.images[keep], labels)
        labels = split.labels
        left = ", ".join(f"{counts[k]} {k}" for k in ("tied", "contempt", "unknown", "not_a_face"))
        print(f"FER+ labels: {counts['kept']} of {counts['rows']} {args.split} rows scored; left out: {left}")
    probs = predictor.predict_crops(split.images)
    # flip-TTA is the mean of plain and mirrored probabilities (for an ensemble too: both are means), so only
    # the mirrored pass is new work
    probs_tta = ((probs + predictor.predict_crops(np.ascontiguousarray(split.images[:, :, ::-1]))) / 2
                 if args.tta else None)
    report = classification_report(probs, labels, args.split, probs_tta=probs_tta)
    report["model"] = str(args.model)
    report["data"] = str(args.data)
    report["precision"] = predictor.info()["precision"]
    if args.labels:
        report["labels"] = str(args.labels)
        report["ferplus_counts"] = counts
    print(format_report(report))
    if report.get("absent_classes"):
        print(f"note: no {args.split} images of {', '.join(report['absent_classes'])} in {args.data}; "
              f"those classes are left out of the macro averages")
    _, folder = resolve_checkpoints(args.model)
    out = Path(args.out) if args.out else (folder or Path(".")) / "eval.json"
    if not args.out and out.is_file():
        previous = json.loads(out.read_text())
        if (previous.get("data"), previous.get("split")) != (str(args.data), args.split):
            out = out.with_name(f"eval-{Path(str(args.data)).stem}-{args.split}.json")  # keep the run's own eval.json
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def cmd_demo(args) -> int:
    """The demo search: demo.yaml (4 trials x 4 epochs of cnn_small on synthetic faces) with Ray Tune."""
    import argparse

    from jobs import search

    # the demo parser's --project defaults to runs/train; a search belongs under runs/search
    project = "runs/search" if args.project == "runs/train" else args.project
    print("fertune demo: a 4-trial Ray Tune + Optuna search of cnn_small on synthetic faces "
          "(a few minutes on 2 CPU cores, Ray start-up included)")
    search_args = argparse.Namespace(
        data="demo", classes=None, name=args.name, space="demo.yaml", num_samples=4, max_concurrent=None,
        epochs=None, time_budget=None, cpus_per_trial=1.0, gpus_per_trial=None, metric=None, seed=0, top_k=3,
        grace_period=None, reduction_factor=None, address=None, storage=None, wandb=False, resume=False,
        exist_ok=False, show=False, project=project)
    folder = search.start(search_args)
    print(f"\nDemo results: {folder}  (results.parquet, best/weights/best.pt, best/eval.json, ensemble/)\n"
          f"Next: fertune eval --model {folder / 'best'} --data demo --tta\n"
          f"      fertune search --data path/to/fer2013.parquet --space cnn_small.yaml --time-budget 45\n"
          f"      fertune serve --model {folder / 'ensemble'}")
    return 0
