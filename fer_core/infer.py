"""Inference: `Predictor` loads any `--model` form of SPEC.md and gives batched class probabilities.

Serving, video, `fertune predict`, evaluation and the report all use this class, so a face classified by
any of them goes through the same detection, crop, normalisation, precision and network. It never
imports the training loop: a Serve replica loads only what inference needs.
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_core import checkpoint as ckpt_io
from fer_core import runs
from fer_core.augment import to_input
from fer_core.detector_settings import DEFAULT_DETECTOR, resolve_detector
from fer_core.device import inference_mode_for, resolve_device
from fer_core.labels import CLASSES


@torch.no_grad()
def predict_probs(model: nn.Module, images_u8: torch.Tensor | np.ndarray, mean: float, std: float,
                  batch_size: int = 512, tta: bool = False, bf16: bool = False,
                  channels_last: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax probabilities for (N, H, W) uint8 images; with tta also the average with the mirror image."""
    model.eval()
    device = next(model.parameters()).device
    if isinstance(images_u8, np.ndarray):
        images_u8 = torch.from_numpy(images_u8)
    plain, flipped = [], []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for start in range(0, len(images_u8), batch_size):
        x = to_input(images_u8[start:start + batch_size].to(device), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            plain.append(F.softmax(model(x).float(), 1).cpu())
            if tta:
                flipped.append(F.softmax(model(torch.flip(x, dims=[3])).float(), 1).cpu())
    empty = torch.zeros(0, len(CLASSES))
    probs = torch.cat(plain) if plain else empty
    probs_tta = ((probs + torch.cat(flipped)) / 2 if flipped else empty) if tta else None
    return probs.numpy(), (probs_tta.numpy() if probs_tta is not None else None)


def input_size(path: str | Path) -> int:
    """The side of the crops `Predictor(path)` classifies (its first checkpoint's preprocess img_size), read
    without building a network: `fertune video` cuts its crops at this size in decoders that never load the model."""
    files, _ = runs.resolve_checkpoints(path)
    return int(ckpt_io.load_checkpoint(files[0])["preprocess"]["img_size"])


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
        """The SPEC.md reply object of one face (what `fertune serve` returns)."""
        return {"box": [int(v) for v in self.box], "probs": {c: float(p) for c, p in zip(CLASSES, self.probs)},
                "emotion": self.emotion, "score": self.score}


@dataclass
class Member:
    """One network of a model (an ensemble has several): its weights, input contract and precision."""
    network: nn.Module
    preprocess: dict[str, Any]      # img_size, mean, std, gray
    bf16: bool                      # bf16 autocast, as its training run validated
    channels_last: bool
    checkpoint: Path
    info: dict[str, Any] = field(default_factory=dict)  # model_name, config, epoch, best_epoch, best_metric

    @classmethod
    def load(cls, file: Path, device: torch.device, precision: str = "auto") -> "Member":
        ckpt = ckpt_io.load_checkpoint(file)
        if list(ckpt["classes"]) != list(CLASSES):
            raise ValueError(f"{file} predicts classes {ckpt['classes']}, not fertune's {list(CLASSES)}")
        network = ckpt_io.model_from_checkpoint(ckpt).to(device)
        bf16, channels_last = inference_mode_for(ckpt, network, device, precision)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        info = {k: ckpt.get(k) for k in ("model_name", "config", "epoch", "best_epoch", "best_metric", "metrics")}
        return cls(network, dict(ckpt["preprocess"]), bf16, channels_last, Path(file), info)

    def probs(self, crops: np.ndarray, batch_size: int, tta: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        return predict_probs(self.network, crops, self.preprocess["mean"], self.preprocess["std"], batch_size,
                             tta=tta, bf16=self.bf16, channels_last=self.channels_last)


class Predictor:
    """Batched probabilities for face crops or whole images; an ensemble averages its members' probabilities."""

    def __init__(self, path: str | Path, device: str = "auto", tta: bool = False, batch_size: int = 256,
                 precision: str = "auto", detector: str = DEFAULT_DETECTOR):
        """`detector` finds the faces in whole images: "auto" (YuNet where installed, else Haar), "yunet" or
        "haar" (fer_core.faces.FaceDetector); it is made on the first image, so a Predictor that only
        classifies crops never loads one."""
        if detector != "auto":  # a bad name, or yunet without its package, fails here; auto never fails
            resolve_detector(detector)
        self.path = Path(path)
        self.detector_name = detector
        self.device = resolve_device(device)
        self.tta = tta
        self.batch_size = batch_size
        files, self.folder = runs.resolve_checkpoints(path)
        # "auto" precision computes as each member's training run validated (fer_core.device)
        self.members = [Member.load(file, self.device, precision) for file in files]
        self.img_size = int(self.members[0].preprocess["img_size"])
        # computed once: a server reports it on every request, and it costs file-system calls
        self.model_id = self.path.resolve().name if self.path.is_dir() else self.path.stem
        self.classes = CLASSES

    @functools.cached_property
    def detector(self):
        from fer_core.faces import FaceDetector

        return FaceDetector(self.detector_name)

    @property
    def precision(self) -> str:
        return "bf16" if self.members[0].bf16 else "fp32"

    def info(self) -> dict[str, Any]:
        """What /v1/model and reports show: classes, metrics (eval.json when present), config, members."""
        trial = runs.read_json(self.folder / runs.TRIAL, {}) if self.folder else {}
        return {
            "model": self.model_id,
            "path": str(self.path),
            "classes": list(CLASSES),
            "members": len(self.members),
            "preprocess": self.members[0].preprocess,
            "config": self.members[0].info["config"],
            "metrics": runs.read_json(self.folder / runs.EVAL) if self.folder else None,
            "trial_id": trial.get("trial_id"),
            "tta": self.tta,
            "precision": self.precision,
        }

    def _sized(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W) uint8 gray crops, got {crops.shape} {crops.dtype}")
        if len(crops) and crops.shape[1:] != (self.img_size, self.img_size):
            from fer_core.images import resize_square

            crops = np.stack([resize_square(c, self.img_size) for c in crops])
        return crops

    def probs_with_tta(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain, flip-TTA) probabilities of (N, H, W) uint8 crops, one pass of each member for both."""
        crops = self._sized(crops)
        plain = np.zeros((len(crops), len(CLASSES)), dtype=np.float64)
        flipped = np.zeros_like(plain)
        for member in self.members:
            p, p_tta = member.probs(crops, self.batch_size, tta=True)
            plain += p
            flipped += p_tta
        n = len(self.members)
        return (plain / n).astype(np.float32), (flipped / n).astype(np.float32)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 gray crops (resized to the model's input size if needed) -> (N, 7) probabilities."""
        crops = self._sized(crops)
        if self.tta:
            return self.probs_with_tta(crops)[1]
        total = np.zeros((len(crops), len(CLASSES)), dtype=np.float64)
        for member in self.members:
            total += member.probs(crops, self.batch_size)[0]
        return (total / len(self.members)).astype(np.float32)

    def predict(self, source: str | Path | np.ndarray | Any, faces: bool = True) -> list[dict[str, Any]]:
        """The faces in one image and their emotions, as `fertune serve` replies with them: a list of
        {"box": [x, y, w, h], "probs": {class: p}, "emotion", "score"}, largest face first. `source` is an
        image file, a numpy BGR (or gray) uint8 array, or a PIL image; faces=False classifies the whole
        image as one face crop."""
        from fer_core.images import read_image

        return [face.to_dict() for face in self.predict_image(read_image(source), faces=faces)]

    def predict_image(self, image: np.ndarray, faces: bool = True) -> list[FacePrediction]:
        return self.predict_images([image], faces=faces)[0]

    def predict_images(self, images: list[np.ndarray], faces: bool = True) -> list[list[FacePrediction]]:
        """Detect faces in each image (or take each whole image as one face), classify all crops in one batch."""
        from fer_core.faces import image_crops

        crops, owners, boxes = [], [], []
        for i, image in enumerate(images):
            found, found_boxes = image_crops(image, faces, self.img_size, self.detector if faces else None)
            crops.extend(found)
            boxes.extend(found_boxes)
            owners.extend([i] * len(found_boxes))
        probs = self.predict_crops(np.stack(crops)) if crops else np.zeros((0, len(CLASSES)), np.float32)
        results: list[list[FacePrediction]] = [[] for _ in images]
        for owner, box, p in zip(owners, boxes, probs):
            results[owner].append(FacePrediction(tuple(int(v) for v in box), p))
        return results
