"""A Vision Transformer through Hugging Face transformers, sized for 48x48 gray faces.

From scratch it uses a small config (6 px patches -> 64 tokens, 6 layers, width 192). With
`pretrained=FOLDER` it loads a local `ViTModel` folder (config.json + weights, no hub access); gray input
is repeated to the folder's channel count and resized to its image size.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_core.models import register_model
from fer_core.models.head import classifier_head


class FerViT(nn.Module):
    channels_last_ok = False  # no convolutions after the patch embedding: NHWC buys nothing

    def __init__(self, num_classes: int = 7, head_width: int = 0, dropout: float = 0.1,
                 dropout2: float | None = None, img_size: int = 48, patch_size: int = 6, hidden_size: int = 192,
                 layers: int = 6, heads: int = 3, pretrained: str | None = None):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        if pretrained:
            folder = Path(pretrained)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"pretrained ViT folder {folder} has no config.json; pass a local folder "
                                        f"saved with ViTModel.save_pretrained (no hub downloads at run time)")
            self.vit = ViTModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
        else:
            config = ViTConfig(image_size=img_size, patch_size=patch_size, num_channels=1, hidden_size=hidden_size,
                               num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden_size,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
            self.vit = ViTModel(config, add_pooling_layer=False)
        self.in_channels = self.vit.config.num_channels
        self.in_size = self.vit.config.image_size
        self.head = classifier_head(self.vit.config.hidden_size, num_classes, head_width, dropout, dropout2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_size:
            x = F.interpolate(x, size=(self.in_size, self.in_size), mode="bilinear", align_corners=False)
        if self.in_channels != x.shape[1]:
            x = x.expand(-1, self.in_channels, -1, -1)
        tokens = self.vit(pixel_values=x).last_hidden_state
        return self.head(tokens[:, 0])

    def backbone_parameters(self):
        return self.vit.parameters()


@register_model(preset={"lr": 3e-4, "optimizer": "adamw", "weight_decay": 0.05, "warmup_epochs": 2.0,
                        "head_width": 0})
def vit(num_classes: int = 7, **kwargs) -> nn.Module:
    return FerViT(num_classes=num_classes, **kwargs)
