"""fer_core: the pure-PyTorch library under fertune. Never imports ray.

The modules, by idea (each layer imports only the layers above it and its own; tests/test_imports.py checks
both that and that fer_core has no import cycle):

| layer | modules |
|---|---|
| contracts | `labels` (the 7 classes), `bundled` (models shipped in the package), `runs` (run folders and every run-file name), `settings` (settings dataclasses as CLI flags), `video_settings` (`fertune video`'s settings and defaults), `detector_settings` (face detectors: choices, constants, loading YuNet, what `auto` is), `stop` (SIGTERM as Ctrl-C) |
| data | `dataset` (Split, FerData, split names), `images` (the one decode rule), `readers` (Parquet, CSV, folders), `data` (load_data), `synthetic`, `synthetic_scenes`, `ferplus` |
| models | `config` (TrainConfig, the one source of training defaults), `models/` (registry, presets, families) |
| compute | `augment`, `checkpoint`, `device` (where and in what precision), `metrics` |
| inference | `yunet` (YuNet boxes), `faces` (detection and crops), `infer` (Predictor), `evaluate` (the one evaluation path) |
| training | `losses`, `sampling`, `budget` (epochs that fit a time budget), `train` (fit) |
| video | `video_frames`, `face_finder`, `shots` (shot cuts), `temporal` |
"""
from pathlib import Path

from fer_core.bundled import DEFAULT_MODEL
from fer_core.labels import CLASSES

__all__ = ["CLASSES", "load_model"]
__version__ = "0.1.0"


def load_model(model: str | Path = DEFAULT_MODEL, device: str = "auto", **kwargs):
    """A ready `fer_core.infer.Predictor`: the bundled model by default, or any `--model` form (a checkpoint
    .pt, a run folder, a search's best/ or ensemble/, a bundled model's name).

        from fer_core import load_model
        model = load_model()
        model.predict("face.jpg")   # [{"box": [x, y, w, h], "probs": {...}, "emotion": "happy", "score": 0.93}]
    """
    from fer_core.infer import Predictor  # torch loads here, not on `import fer_core`

    return Predictor(model, device=device, **kwargs)
