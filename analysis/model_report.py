"""The report section for one model (a train run, a search's best/ or ensemble/): how it does on test.

Confusion matrix, per-class precision/recall/F1, a reliability diagram with ECE, the test images it got
most confidently wrong and, for a single network, Grad-CAM grids per class. The numbers come from
`fer_core.evaluate.evaluate` on the test split (val when the data has none) of the data the run names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis import plots
from analysis.html import Page
from fer_core import runs
from fer_core.evaluate import Evaluation, evaluate
from fer_core.labels import CLASSES

GRADCAM_PER_SIDE = 4   # right and wrong examples per class in the Grad-CAM grid
MOST_CONFUSED = 24     # misclassified test images shown, most confident first


def find_data_arg(folder: Path, override: str | None) -> str | None:
    """The data a run was trained on: --data, else data.json in the folder or a parent's search.yaml."""
    if override:
        return override
    for run in (folder, folder.parent / runs.BEST_DIR):
        saved = runs.read_data_json(run)
        if saved:
            return saved.get("data")
    search_yaml = folder.parent / runs.SEARCH
    if search_yaml.is_file():
        import yaml

        return (yaml.safe_load(search_yaml.read_text()).get("settings") or {}).get("data")
    return None


def load_eval_data(data_arg: str | None, cache: dict):
    """The split a report scores (test, else val), loaded once per data argument per report (a search
    report uses it twice); the training images are never decoded."""
    if data_arg is None:
        return None
    if data_arg not in cache:
        from fer_core.data import load_scored

        cache[data_arg] = load_scored(data_arg)
    return cache[data_arg]


def model_section(page: Page, out: Path, model_path: Path, data, anchor: str, title: str,
                  with_gradcam: bool = True) -> dict | None:
    """Add the section for the model at `model_path`; returns its evaluation dict (None without data)."""
    page.section(anchor, title)
    if data is None:
        page.note(f"No data to evaluate on: the folder has no {runs.DATA}; pass `fertune report FOLDER --data PATH`. "
                  f"Showing the saved {runs.EVAL} only.")
        report = runs.read_json(model_path / runs.EVAL)
        if report is not None:
            page.figure(plots.confusion(np.array(report["confusion"]), CLASSES, out / f"{anchor}_confusion.png",
                                        f"{title}: confusion ({report['split']})"), "confusion matrix")
            page.figure(plots.per_class_bars(report["per_class"], out / f"{anchor}_per_class.png",
                                             f"{title}: per class"), "per-class precision, recall, F1")
            return report
        return None
    ev = evaluate(model_path, data, device="cpu")
    predictor = ev.predictor
    r = ev.report
    page.kpis({f"{ev.split} accuracy": f"{r['accuracy']:.2%}", "macro-F1": f"{r['macro_f1']:.4f}",
               "ECE": f"{r['ece']:.4f}", "images": str(r["n"]),
               "members": str(len(predictor.members))})
    if r.get("absent_classes"):
        page.note(f"No {ev.split} images of {', '.join(r['absent_classes'])}: left out of the macro averages.")
    page.figure(plots.confusion(np.array(r["confusion"]), CLASSES, out / f"{anchor}_confusion.png",
                                f"{title}: confusion ({ev.split}, n={r['n']})"), "confusion matrix (rows: true class)")
    page.figure(plots.per_class_bars(r["per_class"], out / f"{anchor}_per_class.png", f"{title}: per class"),
                "per-class precision, recall and F1")
    page.figure(plots.reliability(ev.probs, ev.labels, r["ece"], out / f"{anchor}_reliability.png",
                                  f"{title}: reliability"), "reliability diagram")
    _confused(page, out, anchor, title, ev)
    if with_gradcam and len(predictor.members) == 1:
        _gradcam_grid(page, out, anchor, title, ev, predictor)
    return r


def _confused(page: Page, out: Path, anchor: str, title: str, ev: Evaluation) -> None:
    """The most confused class pairs and the misclassified images the model was surest of."""
    pred = ev.probs.argmax(1)
    conf = np.array(ev.report["confusion"])
    off = [(int(conf[i, j]), CLASSES[i], CLASSES[j]) for i in range(len(CLASSES)) for j in range(len(CLASSES))
           if i != j and conf[i, j] > 0]
    off.sort(reverse=True)
    page.heading("Most confused")
    if off:
        page.table([{"true": t, "predicted": p, "images": n, "share of true class": f"{n / conf[CLASSES.index(t)].sum():.1%}"}
                    for n, t, p in off[:8]])
    wrong = np.flatnonzero(pred != ev.labels)
    wrong = wrong[np.argsort(-ev.probs[wrong].max(1))][:MOST_CONFUSED]
    captions = [f"{CLASSES[ev.labels[i]]}->{CLASSES[pred[i]]} {ev.probs[i].max():.2f}" for i in wrong]
    page.figure(plots.image_grid([ev.images[i] for i in wrong], captions, out / f"{anchor}_confused.png",
                                 f"{title}: misclassified {ev.split} images, most confident first (true->predicted p)"),
                "most-confused test examples")


def _gradcam_grid(page: Page, out: Path, anchor: str, title: str, ev: Evaluation, predictor) -> None:
    from analysis.gradcam import gradcam, overlay

    member = predictor.members[0]
    model, pre = member.network, member.preprocess
    if not hasattr(model, "gradcam_layer"):
        page.note(f"{type(model).__name__} has no gradcam_layer(): no Grad-CAM.")
        return
    pred = ev.probs.argmax(1)
    rows, picks = [], []
    for c, name in enumerate(CLASSES):
        right = np.flatnonzero((ev.labels == c) & (pred == c))[:GRADCAM_PER_SIDE]
        wrong = np.flatnonzero((ev.labels == c) & (pred != c))[:GRADCAM_PER_SIDE]
        picks.append((name, right, wrong))
    chosen = np.concatenate([np.concatenate([r, w]) for _, r, w in picks]).astype(int)
    if len(chosen) == 0:
        return
    images = ev.images[chosen]
    if images.shape[1] != predictor.img_size:
        from fer_core.images import resize_square

        images = np.stack([resize_square(im, predictor.img_size) for im in images])
    heat = gradcam(model, images, pred[chosen], pre["mean"], pre["std"])
    lookup = {int(i): k for k, i in enumerate(chosen)}
    for name, right, wrong in picks:
        def cells(idx):
            return [(overlay(images[lookup[int(i)]], heat[lookup[int(i)]]),
                     f"{CLASSES[pred[i]]} {ev.probs[i].max():.2f}") for i in idx]
        rows.append((name, cells(right), cells(wrong)))
    page.heading("Grad-CAM")
    grid_title = f"{title}: Grad-CAM (HiResCAM) on {ev.split} images"
    page.figure(plots.gradcam_grid(rows, out / f"{anchor}_gradcam.png", grid_title, GRADCAM_PER_SIDE),
                "Grad-CAM per class (rows: true class)")
