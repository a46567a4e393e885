"""fer_core: the pure-PyTorch library under fertune. Never imports ray.

The modules, by idea (each layer imports only the layers above it and its own; tests/test_imports.py checks
both that and that fer_core has no import cycle):

| layer | modules |
|---|---|
| contracts | `labels` (the 7 classes), `runs` (run folders and every run-file name), `settings` (settings dataclasses as CLI flags), `video_settings` (`fertune video`'s settings and defaults), `stop` (SIGTERM as Ctrl-C) |
| data | `dataset` (Split, FerData, split names), `images` (the one decode rule), `readers` (Parquet, CSV, folders), `data` (load_data), `synthetic`, `synthetic_scenes`, `ferplus` |
| models | `config` (TrainConfig, the one source of training defaults), `models/` (registry, presets, families) |
| compute | `augment`, `checkpoint`, `device` (where and in what precision), `metrics` |
| inference | `faces` (detection and crops), `infer` (Predictor), `evaluate` (the one evaluation path) |
| training | `losses`, `sampling`, `train` (fit) |
| video | `video_frames`, `face_finder`, `temporal` |
"""
from fer_core.labels import CLASSES

__all__ = ["CLASSES"]
__version__ = "0.1.0"
