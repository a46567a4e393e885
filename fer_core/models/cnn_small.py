"""cnn_small: the seed reports' three-stage CNN, widened and batch-normalised for 2 CPU cores.

Each stage is two 3x3 conv-BN-ReLU layers and a 2x2 max-pool (48 -> 24 -> 12 -> 6), then the seed
head on the flattened 6x6 map. Widths are the knob that trades accuracy for CPU time; see
BENCHMARKS.md for the throughput behind the defaults.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_core.models import register_model
from fer_core.models.head import classifier_head


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 7, widths: tuple[int, ...] = (32, 64, 128), head_width: int = 256,
                 dropout: float = 0.5, dropout2: float | None = None, img_size: int = 48,
                 pool: str = "flatten", pretrained: str | None = None):
        super().__init__()
        if pretrained:
            raise ValueError("cnn_small has no pretrained weights; leave pretrained unset")
        layers: list[nn.Module] = []
        cin = 1
        for width in widths:
            layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width) + [nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        side = img_size // 2 ** len(widths)
        # Flattening keeps where on the face a feature fired (mouth vs brow), which global pooling loses.
        self.pool = nn.Flatten() if pool == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        features = cin * side * side if pool == "flatten" else cin
        self.head = classifier_head(features, num_classes, head_width, dropout, dropout2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    def backbone_parameters(self):
        return self.features.parameters()

    def gradcam_layer(self) -> nn.Module:
        return self.features[-2]  # the last ReLU, before the final pool


# Sized for 2 CPU cores: FER2013 in about 30 minutes with native bf16, including evaluation (BENCHMARKS.md).
# Plain accuracy is its target, hence no class weighting.
@register_model(preset={"epochs": 28, "batch_size": 64, "lr": 2e-3, "lr_min": 1e-5, "optimizer": "adamw",
                        "weight_decay": 0.05, "scheduler": "onecycle", "warmup_epochs": 0.5,
                        "class_weighting": "none"})
def cnn_small(num_classes: int = 7, **kwargs) -> nn.Module:
    return SmallCNN(num_classes=num_classes, **kwargs)
