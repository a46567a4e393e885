"""The seed loss: class-weighted cross-entropy with label smoothing."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """w_c = N / (C * N_c); a class absent from training gets weight 0 instead of infinity."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_loss(cfg, train_labels: np.ndarray, num_classes: int, device: torch.device) -> nn.Module:
    weight = inverse_frequency_weights(train_labels, num_classes).to(device) if cfg.class_weighting == "inverse" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
