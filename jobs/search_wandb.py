"""Weights & Biases for `fertune search --wandb`: online with a login, offline (sync later) without."""
from __future__ import annotations

import os
from pathlib import Path


def callback(experiment: str, folder: Path):
    """Ray's W&B logger: one W&B group per search, every trial a run in it."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT", "fertune"), group=experiment,
                               dir=str(folder.resolve()), log_config=True)


def mode() -> str:
    """W&B runs offline when no API key is configured (sync later with `wandb sync`)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import wandb

        if wandb.api.api_key:
            return "online"
    except Exception:  # noqa: BLE001  (no wandb login of any kind)
        pass
    os.environ["WANDB_MODE"] = "offline"
    return "offline"
