"""Classification metrics from predicted probabilities: accuracy, macro-F1, per-class P/R/F1, confusion, ECE."""
from __future__ import annotations

import numpy as np

from fer_core.labels import CLASSES


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = len(CLASSES)) -> np.ndarray:
    """rows = true class, columns = predicted class."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """precision, recall, f1, support per class; 0 where undefined (no predictions or no examples)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(0)
    support = confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def macro_f1(confusion: np.ndarray, present_only: bool = True) -> float:
    """Mean F1 over classes; by default over classes present in the labels (absent ones have no F1)."""
    _, _, f1, support = per_class(confusion)
    mask = support > 0 if present_only else np.ones_like(support, dtype=bool)
    return float(f1[mask].mean()) if mask.any() else 0.0


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins (Guo et al. 2017)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(probs: np.ndarray, labels: np.ndarray, split: str, classes=CLASSES,
                          probs_tta: np.ndarray | None = None) -> dict:
    """The eval.json dict of SPEC.md."""
    preds = probs.argmax(1)
    confusion = confusion_matrix(labels, preds, len(classes))
    precision, recall, f1, support = per_class(confusion)
    present = support > 0
    report = {
        "split": split,
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "macro_f1": macro_f1(confusion),
        # balanced accuracy: the mean recall of the classes the split has
        "mean_recall": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
        "ece": expected_calibration_error(probs, labels),
        "tta": probs_tta is not None,
    }
    if probs_tta is not None:
        report["accuracy_tta"] = float((probs_tta.argmax(1) == labels).mean())
        report["macro_f1_tta"] = macro_f1(confusion_matrix(labels, probs_tta.argmax(1), len(classes)))
    absent = [c for c, s in zip(classes, support) if s == 0]
    if absent:
        report["absent_classes"] = absent  # left out of the macro averages
    return report


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return float(np.sqrt(accuracy * (1 - accuracy) / max(n, 1)))


def format_report(report: dict) -> str:
    """A per-class table and the accuracy line, for the terminal."""
    lines = [f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    absent = set(report.get("absent_classes", []))
    for name, row in report["per_class"].items():
        if name in absent:  # no examples: no recall or F1 to speak of
            lines.append(f"{name:<10}{'absent from this split':>40}")
            continue
        lines.append(f"{name:<10}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>10d}")
    se = standard_error(report["accuracy"], report["n"])
    line = (f"{report['split']}: accuracy {report['accuracy'] * 100:.2f}% (+-{se * 100:.2f} s.e.), "
            f"macro-F1 {report['macro_f1']:.4f}")
    if "mean_recall" in report:
        line += f", mean recall {report['mean_recall']:.4f}"
    line += f", ECE {report['ece']:.4f}, n={report['n']}"
    if "accuracy_tta" in report:
        line += f"; flip-TTA accuracy {report['accuracy_tta'] * 100:.2f}%"
    lines.append(line)
    if absent:
        lines.append(f"absent classes: {', '.join(sorted(absent))} (left out of macro-F1 and mean recall)")
    if "no_face" in report:
        lines.append(f"no face found: {report['no_face']} of {report['images']} images (not scored)")
    return "\n".join(lines)
