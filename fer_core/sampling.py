"""Adaptive focus sampling (SPEC.md): the k classes with the lowest validation F1 are drawn more often.

Weights are reset every epoch, never compounded: focused classes get `focus_weight`, all others 1.0.
With all weights 1.0 the epoch is a plain shuffle (each image once); otherwise indices are drawn with
replacement in proportion to their class weight, keeping the epoch length.
"""
from __future__ import annotations

import numpy as np


def focus_weights(per_class_f1: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Per-class sampling weights: `weight` for the k lowest-F1 classes (ties broken by class index)."""
    weights = np.ones(len(per_class_f1), dtype=np.float64)
    if k > 0:
        weakest = np.argsort(np.asarray(per_class_f1), kind="stable")[:k]
        weights[weakest] = weight
    return weights


def epoch_indices(labels: np.ndarray, class_weights: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The training indices of one epoch, in order."""
    n = len(labels)
    if class_weights is None or np.allclose(class_weights, 1.0):
        return rng.permutation(n)
    p = np.asarray(class_weights, dtype=np.float64)[labels]
    return rng.choice(n, size=n, replace=True, p=p / p.sum())
