"""Inference: `Predictor` loads any `--model` form of SPEC.md and gives batched class probabilities.

Serving and video both use exactly this class, so a face classified by `fertune serve` and by
`fertune video` goes through the same detection, crop, normalisation and network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_core import checkpoint as ckpt_io
from fer_core.labels import CLASSES
from fer_core.train import inference_mode_for, predict_probs, resolve_device


@dataclass
class FacePrediction:
    box: tuple[int, int, int, int]  # x, y, w, h in the input image
    probs: np.ndarray               # (7,) in CLASSES order

    @property
    def emotion(self) -> str:
        return CLASSES[int(self.probs.argmax())]

    @property
    def score(self) -> float:
        return float(self.probs.max())

    def to_dict(self) -> dict[str, Any]:
        return {"box": [int(v) for v in self.box], "probs": {c: float(p) for c, p in zip(CLASSES, self.probs)},
                "emotion": self.emotion, "score": self.score}


def resolve_checkpoints(path: str | Path) -> tuple[list[Path], Path | None]:
    """The checkpoint files behind a `--model` PATH, and the folder holding eval.json/members.json (if any).

    PATH may be a `.pt` file, a train run folder (its weights/best.pt), a search's `best/` (a run folder)
    or a search's `ensemble/` (members.json listing member checkpoints).
    """
    path = Path(path)
    if path.is_file():
        return [path], path.parent.parent if path.parent.name == "weights" else path.parent
    if (path / "members.json").is_file():
        members = json.loads((path / "members.json").read_text())["members"]
        files = [Path(m["checkpoint"]) if Path(m["checkpoint"]).is_absolute() else path / m["checkpoint"]
                 for m in members]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"ensemble {path} lists checkpoints that do not exist: {missing[:3]}")
        return files, path
    if (path / "weights" / "best.pt").is_file():
        return [path / "weights" / "best.pt"], path
    if (path / "weights" / "last.pt").is_file():
        raise FileNotFoundError(f"{path} has weights/last.pt but no weights/best.pt yet; pass "
                                f"{path / 'weights' / 'last.pt'} explicitly to use the last epoch")
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist; pass a checkpoint .pt, a run folder "
                                f"(runs/train/NAME), or a search's best/ or ensemble/ folder")
    raise FileNotFoundError(f"{path} holds no model: expected weights/best.pt (a run folder), members.json "
                            f"(an ensemble) or a .pt file")


class Predictor:
    """Batched probabilities for 48x48 crops or whole images; an ensemble averages its members' probabilities."""

    def __init__(self, path: str | Path, device: str = "auto", tta: bool = False, batch_size: int = 256,
                 precision: str = "auto"):
        self.path = Path(path)
        self.device = resolve_device(device)
        self.tta = tta
        self.batch_size = batch_size
        files, self.folder = resolve_checkpoints(path)
        # (network, preprocess, (bf16, channels_last)) per member; "auto" precision computes as the
        # member's training run validated: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere
        self.members: list[tuple[torch.nn.Module, dict[str, Any], tuple[bool, bool]]] = []
        self.checkpoints: list[dict[str, Any]] = []
        for file in files:
            ckpt = ckpt_io.load_checkpoint(file)
            if list(ckpt["classes"]) != list(CLASSES):
                raise ValueError(f"{file} predicts classes {ckpt['classes']}, not fertune's {list(CLASSES)}")
            model = ckpt_io.model_from_checkpoint(ckpt).to(self.device)
            mode = inference_mode_for(ckpt, model, self.device, precision)
            if mode[1]:
                model = model.to(memory_format=torch.channels_last)
            self.members.append((model, ckpt["preprocess"], mode))
            self.checkpoints.append({k: ckpt.get(k) for k in ("model_name", "config", "epoch", "best_epoch",
                                                              "best_metric", "metrics", "preprocess")})
        self.img_size = int(self.members[0][1]["img_size"])
        # computed once: a server reports it on every request, and it costs file-system calls
        self.model_id = self.path.resolve().name if self.path.is_dir() else self.path.stem
        self.classes = CLASSES


    def info(self) -> dict[str, Any]:
        """What /v1/model and reports show: classes, metrics (eval.json when present), config, members."""
        eval_file = self.folder / "eval.json" if self.folder else None
        trial = None
        if self.folder and (self.folder / "trial.json").is_file():
            trial = json.loads((self.folder / "trial.json").read_text()).get("trial_id")
        return {
            "model": self.model_id,
            "path": str(self.path),
            "classes": list(CLASSES),
            "members": len(self.members),
            "preprocess": self.members[0][1],
            "config": self.checkpoints[0]["config"],
            "metrics": json.loads(eval_file.read_text()) if eval_file and eval_file.is_file() else None,
            "trial_id": trial,
            "tta": self.tta,
            "precision": "bf16" if self.members[0][2][0] else "fp32",
        }

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 gray crops (S = the model's input size) -> (N, 7) probabilities."""
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.dtype != np.uint8:
            raise ValueError(f"predict_crops expects (N, H, W) uint8 gray crops, got {crops.shape} {crops.dtype}")
        if len(crops) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        if crops.shape[1:] != (self.img_size, self.img_size):
            from fer_core.data_formats import resize_square

            crops = np.stack([resize_square(c, self.img_size) for c in crops])
        total = np.zeros((len(crops), len(CLASSES)), dtype=np.float64)
        for model, pre, (bf16, channels_last) in self.members:
            probs, probs_tta = predict_probs(model, crops, pre["mean"], pre["std"], self.batch_size, tta=self.tta,
                                             bf16=bf16, channels_last=channels_last)
            total += probs_tta if self.tta else probs
        return (total / len(self.members)).astype(np.float32)

    def predict_image(self, image: np.ndarray, faces: bool = True) -> list[FacePrediction]:
        return self.predict_images([image], faces=faces)[0]

    def predict_images(self, images: list[np.ndarray], faces: bool = True) -> list[list[FacePrediction]]:
        """Detect faces in each image (or take each whole image as one face), classify all crops in one batch."""
        from fer_core.faces import image_crops

        crops, owners, boxes = [], [], []
        for i, image in enumerate(images):
            found, found_boxes = image_crops(image, faces, self.img_size)
            crops.extend(found)
            boxes.extend(found_boxes)
            owners.extend([i] * len(found_boxes))
        probs = self.predict_crops(np.stack(crops)) if crops else np.zeros((0, len(CLASSES)), np.float32)
        results: list[list[FacePrediction]] = [[] for _ in images]
        for owner, box, p in zip(owners, boxes, probs):
            results[owner].append(FacePrediction(tuple(int(v) for v in box), p))
        return results
