"""The one evaluation path: `evaluate(model, data, split)` scores a model on a labelled split and returns
the eval.json object (SPEC.md), with the probabilities behind it.

`fertune train`'s final evaluation, `fertune eval`, the report's model sections, a search's best/ and
ensemble/ exports and the benchmarks all call it, so they all compute the same numbers the same way:
through `fer_core.infer.Predictor` (an ensemble averages its members' probabilities), in the precision
the training run validated in (`fer_core.device`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_core import runs
from fer_core.dataset import FerData, Split
from fer_core.infer import Predictor
from fer_core.metrics import classification_report


@dataclass
class Evaluation:
    report: dict[str, Any]          # the eval.json object
    probs: np.ndarray               # (N, 7) probabilities on the split
    probs_tta: np.ndarray | None    # (N, 7) flip-TTA probabilities, when asked for
    labels: np.ndarray              # (N,) true classes
    images: np.ndarray              # (N, S, S) uint8 faces
    predictor: Predictor

    @property
    def split(self) -> str:
        return self.report["split"]

    def write(self, path: str | Path) -> Path:
        runs.write_json(path, self.report)
        return Path(path)


def evaluate(model: str | Path | Predictor, data: FerData | Split, split: str | None = None, tta: bool = False, *,
             device: str = "auto", precision: str = "auto", batch_size: int = 512) -> Evaluation:
    """Score `model` (a `--model` path or a loaded Predictor) on one labelled split.

    `data` is a FerData (then `split` names the slot, default test, else val), a dataset path (only the
    scored split is loaded) or a bare Split (then `split` is only its name in the report, default "test").
    With `tta` the report also carries the flip-TTA accuracy and macro-F1 (each member's plain and mirrored
    pass, averaged).
    """
    if isinstance(data, (str, Path)):
        from fer_core.data import load_scored

        data = load_scored(data, split)
    if isinstance(data, FerData):
        name = split or data.scored_split()
        scored = data.split(name)
        if scored is None:
            found = ", ".join(s for s in ("train", "val", "test") if data.split(s) is not None) or "none"
            raise ValueError(f"{data.source} has no {name} split (found: {found}); choose --split from those")
        source = data.source
    else:
        name, scored, source = split or "test", data, None
    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device, batch_size=batch_size,
                                                                      precision=precision)
    labels = np.asarray(scored.labels)
    if tta:
        probs, probs_tta = predictor.probs_with_tta(scored.images)
    else:
        probs, probs_tta = predictor.predict_crops(scored.images), None
    report = classification_report(probs, labels, name, probs_tta=probs_tta)
    report["data"] = source  # lets `fertune eval` tell this run's evaluation from one on other data
    if isinstance(data, FerData) and data.cropped:  # full-size photos: faces found, and images without one
        report["no_face"] = len(data.no_face)
        report["images"] = report["n"] + len(data.no_face)
    report["model"] = str(predictor.path)
    report["precision"] = predictor.precision
    if len(predictor.members) == 1:
        report["checkpoint"] = str(predictor.members[0].checkpoint)
        report["best_epoch"] = predictor.members[0].info.get("best_epoch")
    else:
        report["members"] = len(predictor.members)
    return Evaluation(report, probs, probs_tta, labels, scored.images, predictor)
