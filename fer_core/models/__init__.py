"""Model registry: `@register_model` files a builder under its name; `create_model(name, **kwargs)` is the one way in.

Every builder takes `num_classes` and the head settings (`head_width`, `dropout`, `dropout2`) and returns
an nn.Module mapping (B, 1, H, W) normalised gray images to (B, num_classes) logits. A model may expose
`backbone_parameters()` (frozen during `freeze_epochs` with pretrained weights) and `gradcam_layer()`.

`@register_model(preset={...})` also files the model's training preset: the TrainConfig values that
differ from the seed recipe for this family (`fer_core.config.resolve` applies them), kept beside the
model they suit.
"""
from __future__ import annotations

import difflib
import importlib
import warnings
from typing import Any, Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PRESETS: dict[str, dict[str, Any]] = {}
# Model families, one module each; imported on first use so `import fer_core` stays light.
_FAMILIES = ("cnn_small", "resnet", "vit")
_loaded = False


def register_model(fn: Callable[..., nn.Module] | None = None, *, preset: dict[str, Any] | None = None):
    """File a builder under its function name: `@register_model` or `@register_model(preset={...})`."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            warnings.warn(f"model '{name}' registered twice; the later builder wins", stacklevel=3)
        _REGISTRY[name] = builder
        _PRESETS[name] = dict(preset or {})
        return builder

    return add(fn) if fn is not None else add


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for family in _FAMILIES:
            importlib.import_module(f"fer_core.models.{family}")
        _loaded = True


def list_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def check_model_name(name: str) -> None:
    known = list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown model '{name}'; known: {', '.join(known)}{hint}")


def model_preset(name: str) -> dict[str, Any]:
    """The TrainConfig values `name` sets over the seed recipe ({} for none)."""
    check_model_name(name)
    return dict(_PRESETS[name])


def create_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Build a registered model. kwargs left as None are dropped so the model's own defaults apply."""
    check_model_name(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _REGISTRY[name](num_classes=num_classes, **kwargs)
