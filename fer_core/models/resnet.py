"""ResNet-18 adapted to 48x48 gray faces (the seed recipe).

conv1 becomes 3x3 stride 1 on one channel and the max-pool goes, so the 48 px input keeps enough
resolution (6x6 before pooling instead of 2x2). With `pretrained=PATH` a torchvision ImageNet file is
loaded and conv1's RGB kernels are averaged to one channel (their centre 3x3 taps, since the new conv1
is 3x3); the file never comes from the network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fer_core.models import register_model
from fer_core.models.head import classifier_head


class FerResNet(nn.Module):
    def __init__(self, num_classes: int = 7, head_width: int = 256, dropout: float = 0.5,
                 dropout2: float | None = None, pretrained: str | None = None, img_size: int = 48):
        super().__init__()  # img_size: any size works (global pooling); accepted for a uniform signature
        # imported here, not at the top: torchvision.models pulls in torch._dynamo (~1.5-2.5 s a process),
        # which every process that builds the registry would pay (video workers, Serve replicas, trials)
        from torchvision.models import resnet18 as tv_resnet18

        net = tv_resnet18(weights=None)
        if pretrained:
            load_imagenet_weights(net, pretrained)
        rgb_conv1 = net.conv1.weight.data  # (64, 3, 7, 7)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if pretrained:
            net.conv1.weight.data.copy_(rgb_conv1.mean(dim=1, keepdim=True)[:, :, 2:5, 2:5])
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.backbone = net
        self.head = classifier_head(512, num_classes, head_width, dropout, dropout2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def backbone_parameters(self):
        return self.backbone.parameters()

    def gradcam_layer(self) -> nn.Module:
        return self.backbone.layer4


def load_imagenet_weights(net: nn.Module, path: str) -> None:
    """Load a torchvision ResNet-18 ImageNet state dict; a missing or mismatched file is an error."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pretrained weights {file} do not exist; pass a torchvision resnet18 .pth "
                                f"file (e.g. resnet18-f37072fd.pth) or leave pretrained unset to train from scratch")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"pretrained weights {file} could not be read ({err}); it must be a torchvision "
                         f"resnet18 state dict (.pth). Git LFS pointers and truncated downloads fail here.") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"pretrained weights {file} do not fit torchvision resnet18: missing {list(missing)[:4]}, "
                         f"unexpected {list(unexpected)[:4]}")


@register_model
def resnet18(num_classes: int = 7, **kwargs) -> nn.Module:
    return FerResNet(num_classes=num_classes, **kwargs)
