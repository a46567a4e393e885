"""The report of one evaluation JSON (`fertune eval --out X.json`, or an eval-<data>-<split>.json beside a
model): how the model carries over to that dataset, beside its own FER2013 figures.

The model's own figures are the eval.json of the model the JSON names (its `model` key), when that is
another evaluation than this one. Confusion matrices are drawn from the JSONs; nothing is recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from analysis import plots
from analysis.html import Page
from fer_core import runs
from fer_core.labels import CLASSES


def is_eval_file(path: Path) -> bool:
    if not (path.is_file() and path.suffix == ".json"):
        return False
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"confusion", "per_class", "accuracy"} <= set(report)


def own_evaluation(report: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The eval.json of the model `report` scored, if it is another file than `path`."""
    try:
        _, folder = runs.resolve_checkpoints(report.get("model", ""))
    except (FileNotFoundError, ValueError):
        return None
    own = folder / runs.EVAL if folder else None
    if own is None or not own.is_file() or own.resolve() == path.resolve():
        return None
    return json.loads(own.read_text())


def _label(report: dict[str, Any]) -> str:
    return f"{Path(str(report.get('data') or '?')).stem} ({report['split']})"


def _row(report: dict[str, Any]) -> dict[str, Any]:
    row = {"data": str(report.get("data")), "split": report["split"], "n": report["n"],
           "accuracy": f"{report['accuracy']:.2%}", "macro-F1": f"{report['macro_f1']:.4f}",
           "mean recall": f"{report['mean_recall']:.4f}" if "mean_recall" in report else "-",
           "absent classes": ", ".join(report.get("absent_classes", [])) or "-"}
    if "accuracy_tta" in report:
        row["flip-TTA accuracy"] = f"{report['accuracy_tta']:.2%}"
    if "no_face" in report:
        row["no face"] = f"{report['no_face']} of {report['images']} images"
    return row


def _recalls(report: dict[str, Any]) -> dict[str, float | None]:
    absent = set(report.get("absent_classes", []))
    return {c: (None if c in absent else report["per_class"][c]["recall"]) for c in CLASSES}


def build(path: Path, out: Path, page: Page) -> None:
    report = json.loads(path.read_text())
    own = own_evaluation(report, path)
    page.subtitle = f"evaluation {path.resolve()} of {report.get('model', 'an unnamed model')}"
    page.section("evaluation", "Cross-dataset evaluation")
    reports = [report] + ([own] if own else [])
    page.table([_row(r) for r in reports], highlight=[True] + [False] * (len(reports) - 1))
    if own is None:
        page.note(f"The model's own {runs.EVAL} was not found (the JSON names no model folder that has one); "
                  "only this evaluation is shown.")
    if report.get("absent_classes"):
        page.note(f"No {report['split']} images of {', '.join(report['absent_classes'])}: left out of macro-F1 "
                  "and mean recall; accuracy is plain accuracy over the images scored.")
    page.figure(plots.recall_comparison({_label(r): _recalls(r) for r in reports}, CLASSES, out / "recall.png",
                                        "per-class recall"), "per-class recall on each dataset")
    for k, r in enumerate(reports):
        page.figure(plots.confusion(np.array(r["confusion"]), CLASSES, out / f"confusion{k}.png",
                                    f"{_label(r)}: confusion (n={r['n']})"), "confusion matrix (rows: true class)")
