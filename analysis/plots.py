"""The report's figures, drawn with matplotlib's Agg backend (no display, no network) and saved as PNGs.

Every function takes plain arrays or DataFrames and a path, draws one figure, saves it and returns the
path. Colours come from matplotlib's default cycle and colormaps, so figures look alike across reports.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports are written on servers and in tests, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save and close (pyplot keeps every open figure alive otherwise)."""
    path = Path(path)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ classification
def confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix (recall on the diagonal), with the raw counts in each cell."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=40, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    return save(fig, path)


def per_class_bars(per_class: dict[str, dict], path: str | Path, title: str) -> Path:
    """Precision, recall and F1 per class, side by side, with each class's support under its name."""
    classes = list(per_class)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for k, metric in enumerate(("precision", "recall", "f1")):
        values = [per_class[c][metric] for c in classes]
        ax.bar(x + (k - 1) * 0.27, values, 0.27, label=metric)
    ax.set_xticks(x, [f"{c}\n(n={per_class[c]['support']})" for c in classes], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=3, fontsize=8, loc="lower right")
    ax.set_title(title)
    return save(fig, path)


def reliability(probs: np.ndarray, labels: np.ndarray, ece: float, path: str | Path, title: str,
                bins: int = 10) -> Path:
    """Accuracy against confidence in equal-width bins; gaps from the diagonal are miscalibration."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    acc = np.full(bins, np.nan)
    conf = np.full(bins, np.nan)
    count = np.zeros(bins, int)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    for b in range(bins):
        sel = which == b
        count[b] = sel.sum()
        if count[b]:
            acc[b], conf[b] = correct[sel].mean(), confidence[sel].mean()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.4), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.bar(centres, np.nan_to_num(acc), width=1 / bins, edgecolor="black", alpha=0.75, label="accuracy")
    ax.plot(conf, acc, "o-", color="C3", ms=3, label="mean confidence")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{title}\nECE {ece:.4f}")
    hist.bar(centres, count, width=1 / bins, color="C0", edgecolor="black")
    hist.set_xlabel("confidence")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)
    return save(fig, path)


def image_grid(images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, title: str,
               cols: int = 8) -> Path:
    """Small gray (or RGB) images in a grid with a caption under each."""
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, captions):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255 if img.ndim == 2 else 1)
        ax.set_title(caption, fontsize=6.5)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def gradcam_grid(rows: list[tuple[str, list, list]], path: str | Path, title: str, per_side: int) -> Path:
    """One row per class: `per_side` correct faces then `per_side` wrong ones, each an (RGB, caption) pair."""
    cols = 2 * per_side
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.25 * cols, 1.4 * len(rows) + 0.5), squeeze=False)
    for r, (name, right, wrong) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            items = right if c < per_side else wrong
            k = c if c < per_side else c - per_side
            if k < len(items):
                rgb, caption = items[k]
                ax.imshow(rgb)
                ax.set_title(caption, fontsize=6)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
        axes[r, 0].axis("on")
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
    fig.suptitle(f"{title}\nleft {per_side}: correct, right {per_side}: wrong (heat = evidence for the predicted class)",
                 fontsize=9)
    return save(fig, path)


# -------------------------------------------------------------------------------------------- training
def training_curves(history: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Loss, accuracy and macro-F1 per epoch for one run's metrics.csv."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    e = history["epoch"]
    panels = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"]),
              ("macro-F1", ["val_macro_f1"])]
    for ax, (name, cols) in zip(axes, panels):
        for col in cols:
            if col in history:
                ax.plot(e, history[col], "o-", ms=3, label=col)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def curves_by_trial(histories: dict[str, pd.DataFrame], metric: str, path: str | Path, title: str) -> Path:
    """One line per trial of `metric` against epoch (learning curves of several trials)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label, h in histories.items():
        if metric in h and len(h):
            ax.plot(h["epoch"], h[metric], "o-", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if histories:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no learning curves found", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return save(fig, path)


# ---------------------------------------------------------------------------------------------- search
def importances(values: dict[str, float], path: str | Path, title: str) -> Path:
    """Horizontal bars, most important on top."""
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    ax.barh(names, [values[n] for n in names], color="C0")
    for y, n in enumerate(names):
        ax.text(values[n], y, f" {values[n]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (sums to 1)")
    ax.set_xlim(0, max(list(values.values()) + [0.01]) * 1.2)
    ax.set_title(title)
    return save(fig, path)


def _axis_values(series: pd.Series, log: bool) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """A parameter column as 0..1 positions, and tick (position, label) pairs."""
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numeric:
        v = series.to_numpy(float)
        v = np.log10(v) if log and (v > 0).all() else v
        lo, hi = np.nanmin(v), np.nanmax(v)
        span = hi - lo if hi > lo else 1.0
        ticks = [(0.0, f"{series.min():.3g}"), (1.0, f"{series.max():.3g}")]
        return (v - lo) / span, ticks
    cats = sorted(series.astype(str).unique(), key=lambda s: (len(s), s))
    pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
    return series.astype(str).map(pos).to_numpy(float), [(pos[c], c) for c in cats]


def parallel_coordinates(df: pd.DataFrame, params: list[str], score: str, path: str | Path, title: str,
                         log_params: Sequence[str] = ()) -> Path:
    """One line per trial through every parameter axis and the score, coloured by the score."""
    axes_names = params + [score]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(axes_names)), 4.2))
    columns, ticks = [], []
    for name in axes_names:
        pos, t = _axis_values(df[name], name in log_params)
        columns.append(pos)
        ticks.append(t)
    values = np.column_stack(columns) if columns else np.zeros((len(df), 0))
    scores = df[score].to_numpy(float)
    finite = np.isfinite(scores)
    lo, hi = (np.nanmin(scores), np.nanmax(scores)) if finite.any() else (0, 1)
    cmap = plt.get_cmap("viridis")
    for i in np.argsort(np.nan_to_num(scores, nan=-np.inf)):  # best drawn last, on top
        colour = cmap((scores[i] - lo) / (hi - lo) if finite[i] and hi > lo else 0.5) if finite[i] else "lightgray"
        ax.plot(range(len(axes_names)), values[i], "-o", color=colour, ms=3, lw=1.4, alpha=0.9)
    for k, t in enumerate(ticks):
        ax.axvline(k, color="black", lw=0.8)
        for pos, label in t:
            ax.text(k + 0.03, pos, label, fontsize=7, va="center")
    ax.set_xticks(range(len(axes_names)), axes_names, rotation=20)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax, label=score, fraction=0.03)
    ax.set_title(title)
    return save(fig, path)


def slices(df: pd.DataFrame, params: list[str], score: str, path: str | Path, title: str,
           log_params: Sequence[str] = ()) -> Path:
    """The score against each parameter on its own (optuna's slice plot), coloured by trial number."""
    n = max(len(params), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False, sharey=True)
    order = df["trial"].to_numpy(float) if "trial" in df else np.arange(len(df), dtype=float)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, params):
        x = df[name]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            ax.scatter(x.to_numpy(float), df[score], c=order, cmap="plasma", s=22, edgecolor="black", lw=0.4)
            if name in log_params:
                ax.set_xscale("log")
        else:
            cats = sorted(x.astype(str).unique())
            ax.scatter([cats.index(v) for v in x.astype(str)], df[score], c=order, cmap="plasma", s=22,
                       edgecolor="black", lw=0.4)
            ax.set_xticks(range(len(cats)), cats, fontsize=7)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    for r in range(rows):
        axes[r, 0].set_ylabel(score)
    fig.suptitle(f"{title} (colour: trial number)")
    return save(fig, path)


def pareto(df: pd.DataFrame, x: str, y: str, front: np.ndarray, path: str | Path, title: str) -> Path:
    """Both objectives of every trial; the Pareto front highlighted and joined."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ax.scatter(df[x], df[y], color="lightgray", edgecolor="black", lw=0.5, s=30, label="trial")
    f = df[front].sort_values(x)
    ax.plot(f[x], f[y], "o-", color="C3", ms=7, label="Pareto front")
    if "trial" in df:
        for _, r in f.iterrows():
            ax.annotate(str(r["trial"]), (r[x], r[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save(fig, path)


# ----------------------------------------------------------------------------------------------- video
def emotion_timeline(frames: pd.DataFrame, classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Per face: the smoothed probability of each class over time (s_<class>, or p_<class> without them)."""
    faces = sorted(frames["face_id"].unique()) if len(frames) else []
    fig, axes = plt.subplots(max(len(faces), 1), 1, figsize=(9, 2.3 * max(len(faces), 1) + 0.4), squeeze=False,
                             sharex=True)
    for ax, face in zip(axes[:, 0], faces):
        f = frames[frames["face_id"] == face].sort_values("t")
        for k, c in enumerate(classes):
            col = f"s_{c}" if f"s_{c}" in f else f"p_{c}"
            ax.plot(f["t"], f[col], color=f"C{k}", label=c, lw=1.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face}")
        ax.grid(alpha=0.3)
    if not faces:
        axes[0, 0].text(0.5, 0.5, "no faces found", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[0, 0].legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, y=1.02)
    return save(fig, path)


def segment_strip(segments: pd.DataFrame, classes: Sequence[str], duration: float, path: str | Path,
                  title: str) -> Path:
    """Per face, one horizontal strip of coloured emotion segments over the video's duration."""
    faces = sorted(segments["face_id"].unique()) if len(segments) else []
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(faces), 1) + 1.3))
    colour = {c: f"C{k}" for k, c in enumerate(classes)}
    for row, face in enumerate(faces):
        s = segments[segments["face_id"] == face]
        ax.broken_barh([(a, max(b - a, 1e-3)) for a, b in zip(s["start_t"], s["end_t"])], (row - 0.4, 0.8),
                       facecolors=[colour.get(e, "gray") for e in s["emotion"]], edgecolor="white")
    ax.set_yticks(range(len(faces)), [f"face {f}" for f in faces])
    ax.set_xlim(0, max(duration, float(segments["end_t"].max()) if len(segments) else 0, 1e-3))
    ax.set_ylim(-0.7, max(len(faces), 1) - 0.3)
    ax.set_xlabel("time (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[c]) for c in classes]
    ax.legend(handles, classes, ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    if not faces:
        ax.text(0.5, 0.5, "no segments", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return save(fig, path)


def stacked_shares(shares: pd.DataFrame, classes: Sequence[str], path: str | Path, title: str) -> Path:
    """One horizontal bar per row of `shares` (index = label, columns = classes), split by share of time."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(shares), 1) + 1.4))
    left = np.zeros(len(shares))
    for k, c in enumerate(classes):
        v = shares[c].to_numpy(float) if c in shares else np.zeros(len(shares))
        ax.barh(range(len(shares)), v, left=left, color=f"C{k}", label=c)
        left += v
    ax.set_yticks(range(len(shares)), list(shares.index), fontsize=8)
    ax.set_xlim(0, max(1.0, left.max() if len(left) else 1.0))
    ax.set_xlabel("share of time")
    ax.legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_title(title)
    return save(fig, path)


def recall_comparison(recalls: dict[str, dict[str, float | None]], classes: Sequence[str], path: str | Path,
                      title: str) -> Path:
    """Per-class recall of one model on several datasets, side by side; a class a dataset lacks is left
    empty and marked "absent"."""
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(recalls))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for k, (label, per_class) in enumerate(recalls.items()):
        offset = (k - (len(recalls) - 1) / 2) * width
        values = [per_class.get(c) for c in classes]
        ax.bar(x[[v is not None for v in values]] + offset, [v for v in values if v is not None], width, label=label)
        for i, v in enumerate(values):
            if v is None:
                ax.text(x[i] + offset, 0.02, "absent", rotation=90, ha="center", va="bottom", fontsize=7, color="#888")
    ax.set_xticks(x, list(classes), fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title)
    return save(fig, path)
