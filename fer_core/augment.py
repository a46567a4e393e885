"""Batched augmentation on the training device: one affine resample per batch plus random erasing.

Per-image PIL transforms cost more than a small CNN's forward pass on a CPU; here a whole batch is
flipped, rotated, translated and scaled with a single `affine_grid` + `grid_sample` call, and erased with
a vectorised mask, so augmentation stays a few percent of the step time (see bench/train_throughput.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_input(images_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) float normalised: (x / 255 - mean) / std."""
    x = images_u8.unsqueeze(1).float().div_(255.0)
    return x.sub_(mean).div_(std)


def random_affine(x: torch.Tensor, generator: torch.Generator, flip: bool, rotate_deg: float, translate: float,
                  scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Random horizontal flip, rotation (+-rotate_deg), translation (+-translate of the size) and zoom.

    `x` is (B, 1, H, W) in [0, 1] before normalisation, so the zero fill outside the image is black, as
    torchvision's RandomAffine fills.
    """
    b, device = x.shape[0], x.device
    if not flip and rotate_deg == 0 and translate == 0 and scale[0] == scale[1] == 1.0:
        return x
    u = torch.rand(b, 5, generator=generator, device=device)
    angle = (u[:, 0] * 2 - 1) * math.radians(rotate_deg)
    zoom = scale[0] + u[:, 1] * (scale[1] - scale[0])
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of 2 * translate is translate * size.
    tx = (u[:, 2] * 2 - 1) * 2 * translate
    ty = (u[:, 3] * 2 - 1) * 2 * translate
    mirror = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(b, device=device)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1), torch.stack([sin * mirror, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erase(x: torch.Tensor, generator: torch.Generator, p: float, area: tuple[float, float],
                 ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> torch.Tensor:
    """torchvision-style RandomErasing for a batch: each image, with probability p, gets one rectangle of
    `area` fraction and aspect ratio in `ratio` (log-uniform) set to `value` (0 after normalisation = the mean).
    Rectangles that would leave the image are clipped to it, instead of torchvision's retry loop."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, device=x.device)
    target = (area[0] + u[:, 0] * (area[1] - area[0])) * h * w
    log_r = math.log(ratio[0]) + u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0]))
    aspect = torch.exp(log_r)
    eh = torch.sqrt(target * aspect).clamp(1, h)
    ew = torch.sqrt(target / aspect).clamp(1, w)
    top = u[:, 2] * (h - eh)
    left = u[:, 3] * (w - ew)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
              & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)))
    chosen = (u[:, 4] < p).view(b, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), value)


class BatchAugment:
    """The training transform: uint8 batch -> augmented, normalised float batch."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, images_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.cfg
        x = images_u8.unsqueeze(1).float().div_(255.0)
        x = random_affine(x, generator, c.flip, c.rotate_deg, c.translate, tuple(c.scale))
        x = x.sub_(c.mean).div_(c.std)
        return random_erase(x, generator, c.erase_p, tuple(c.erase_scale))
