"""Where a network computes and in what precision: one policy for training and every scorer.

Training validates in bf16 autocast on CUDA and on CPUs with native bf16 (weights stay fp32), and in
channels_last for conv nets. `inference_mode_for` makes eval, serve, video and the report compute a
checkpoint the same way its training run validated it, so they agree with the epoch that was selected;
"fp32" is the exact reference (what ONNX and TorchScript exports compute).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fer_core.config import TrainConfig

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run about twice as fast as fp32 (emulated ones run slower)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: on CUDA, and on CPUs with native bf16 (weights and optimizer state stay fp32)."""
    if cfg.amp != "auto":
        return cfg.amp == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def use_channels_last(cfg: TrainConfig, model: nn.Module) -> bool:
    if cfg.channels_last == "auto":
        return getattr(model, "channels_last_ok", True)
    return cfg.channels_last == "on"


def inference_mode_for(ckpt: dict[str, Any], model: nn.Module, device: torch.device,
                       precision: str = "auto") -> tuple[bool, bool]:
    """(bf16, channels_last) for scoring a checkpoint: "auto" computes as its training run validated (its
    amp and channels_last settings on this device); "bf16" forces bf16; "fp32" is fp32 in NCHW."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return False, False
    known = {k: v for k, v in (ckpt.get("config") or {}).items() if k in ("amp", "channels_last")}
    cfg = TrainConfig(**known)
    bf16 = use_bf16(cfg, device) if precision == "auto" else True
    return bf16, use_channels_last(cfg, model)
