"""Grad-CAM (Selvaraju et al. 2017): where in a face the network found the evidence for a class.

method="gradcam": the heat map of class c is ReLU(sum_k a_k A_k), where A_k are the activation maps of a
layer and a_k the spatial mean of d(logit_c)/dA_k. method="hirescam" (Draelos & Carin 2020, the default)
keeps the gradient per position, ReLU(sum_k dlogit_c/dA_k * A_k): cnn_small's head flattens its feature
map (it keeps *where* a feature fired), and there Grad-CAM's spatial average blurs evidence across the
face while HiResCAM shows exactly the positions that raised the logit. Maps are upsampled bilinearly to
the input size.

The layer: `explain_layer` takes the deepest activation that still has at least half the input's
resolution (24x24 for 48 px faces in cnn_small), falling back to the model's `gradcam_layer()`. On the
synthetic faces, happy-versus-neutral maps put ~65 % of their mass in the mouth box at 24x24 but only
~45 % at the 12x12 `gradcam_layer()`, whose 4 px cells and wide receptive fields spill past a box that
covers 5 % of the face.

With `versus` the target is logit_c - logit_versus (a contrastive map): the evidence for c *rather
than* another class, e.g. happy rather than neutral, which differ only at the mouth.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_core.augment import to_input


def explain_layer(model: nn.Module, size: int = 48) -> nn.Module:
    """The deepest activation (ReLU/GELU) with a spatial side >= size // 2; else `model.gradcam_layer()`."""
    if not hasattr(model, "gradcam_layer"):
        raise ValueError(f"{type(model).__name__} has no gradcam_layer(); Grad-CAM needs the layer to explain")
    sides: dict[nn.Module, int] = {}
    order: list[nn.Module] = []

    def seen(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            sides[module] = int(min(output.shape[-2:]))
            order.append(module)

    handles = [m.register_forward_hook(seen) for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    fine = [m for m in order if sides[m] >= size // 2]
    # a module reused in several places (ResNet blocks reuse their ReLU) has no single map: skip it
    fine = [m for m in fine if order.count(m) == 1]
    return fine[-1] if fine else model.gradcam_layer()


def gradcam(model: nn.Module, images_u8: np.ndarray, targets: Sequence[int] | np.ndarray, mean: float, std: float,
            versus: Sequence[int] | np.ndarray | None = None, batch_size: int = 64, layer: nn.Module | None = None,
            method: str = "hirescam") -> np.ndarray:
    """(N, H, W) uint8 faces and one target class each -> (N, H, W) float32 heat maps, each summing to 1.

    `layer` defaults to `explain_layer(model, H)`; `method` is "hirescam" or "gradcam" (module docstring).
    An all-zero map (no positive evidence anywhere) stays zero. The model must expose `gradcam_layer()`.
    """
    if method not in ("hirescam", "gradcam"):
        raise ValueError(f"method must be 'hirescam' or 'gradcam', got {method!r}")
    if layer is None:
        layer = explain_layer(model, int(images_u8.shape[-1]))
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
            weights = grad if method == "hirescam" else grad.mean(dim=(2, 3), keepdim=True)
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
    return np.clip((1 - alpha) * gray + alpha * colour, 0.0, 1.0)
