"""The seed recipe's classifier head, shared by every model family."""
from __future__ import annotations

from torch import nn


def classifier_head(in_features: int, num_classes: int, head_width: int = 256, dropout: float = 0.5,
                    dropout2: float | None = None) -> nn.Sequential:
    """Dropout -> Linear(in, head_width) -> BN -> ReLU -> Dropout(dropout2) -> Linear(head_width, classes).

    head_width 0 gives Dropout -> Linear(in, classes). dropout2 None means dropout / 2 (0.5 -> 0.25, as
    in the seed recipe).
    """
    if head_width == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if dropout2 is None:
        dropout2 = dropout / 2
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_features, head_width, bias=False),
        nn.BatchNorm1d(head_width),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout2),
        nn.Linear(head_width, num_classes),
    )
