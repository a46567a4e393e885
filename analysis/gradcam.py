"""Grad-CAM (Selvaraju et al. 2017): where in a face the network found the evidence for a class.

The heat map of class c is ReLU(sum_k a_k A_k), where A_k are the activation maps of the model's
`gradcam_layer()` and a_k the spatial mean of d(logit_c)/dA_k; it is upsampled bilinearly to the
input size. With `versus` the target is logit_c - logit_versus (a contrastive map): the evidence for
c *rather than* another class, e.g. happy rather than neutral, which differ only at the mouth.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_core.augment import to_input


def gradcam(model: nn.Module, images_u8: np.ndarray, targets: Sequence[int] | np.ndarray, mean: float, std: float,
            versus: Sequence[int] | np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
    """(N, H, W) uint8 faces and one target class each -> (N, H, W) float32 heat maps, each summing to 1.

    An all-zero map (no positive evidence anywhere) stays zero. The model must expose `gradcam_layer()`.
    """
    if not hasattr(model, "gradcam_layer"):
        raise ValueError(f"{type(model).__name__} has no gradcam_layer(); Grad-CAM needs the layer to explain")
    layer = model.gradcam_layer()
    model.eval()
    device = next(model.parameters()).device
    targets = np.asarray(targets, np.int64)
    versus = None if versus is None else np.asarray(versus, np.int64)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output = output[0] if isinstance(output, (tuple, list)) else output
        captured["act"] = output
        output.register_hook(lambda grad: captured.__setitem__("grad", grad))

    handle = layer.register_forward_hook(keep)
    maps = []
    try:
        for start in range(0, len(images_u8), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images_u8[start:start + batch_size])).to(device)
            x = to_input(chunk, mean, std)
            model.zero_grad(set_to_none=True)
            logits = model(x)
            idx = torch.arange(len(x), device=device)
            t = torch.from_numpy(targets[start:start + len(x)]).to(device)
            score = logits[idx, t]
            if versus is not None:
                score = score - logits[idx, torch.from_numpy(versus[start:start + len(x)]).to(device)]
            score.sum().backward()  # samples are independent (eval-mode BN), so one backward serves all
            act, grad = captured["act"].detach(), captured["grad"].detach()
            if act.dim() == 3:  # (B, tokens, C) from a transformer: drop a class token, fold to a square grid
                side = int(round((act.shape[1]) ** 0.5))
                if side * side != act.shape[1]:
                    act, grad = act[:, 1:], grad[:, 1:]
                    side = int(round(act.shape[1] ** 0.5))
                act = act.transpose(1, 2).reshape(len(x), -1, side, side)
                grad = grad.transpose(1, 2).reshape(len(x), -1, side, side)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            maps.append(cam.cpu().numpy())
    finally:
        handle.remove()
    heat = np.concatenate(maps) if maps else np.zeros((0,) + images_u8.shape[1:], np.float32)
    total = heat.sum(axis=(1, 2), keepdims=True)
    return np.divide(heat, total, out=np.zeros_like(heat), where=total > 0).astype(np.float32)


def mass_in_box(heat: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of a normalised heat map's mass inside box (x, y, w, h), pixel-exact at the map's resolution."""
    x, y, w, h = (int(v) for v in box)
    total = float(heat.sum())
    if total <= 0:
        return 0.0
    return float(heat[max(y, 0):y + h, max(x, 0):x + w].sum() / total)


def overlay(image_u8: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The face in gray with the heat map in matplotlib's 'jet' over it, as (H, W, 3) float 0..1."""
    from matplotlib import colormaps

    peak = heat.max()
    colour = colormaps["jet"](heat / peak if peak > 0 else heat)[..., :3]
    gray = np.repeat((image_u8.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    return (1 - alpha) * gray + alpha * colour
