"""Models that ship inside the package, so every command works before anything is trained.

Each bundled model is a folder `fer_core/bundled/<name>/` laid out like a train run (weights/best.pt, a
weights-only checkpoint in SPEC.md's format; eval.json; config.yaml) plus `model.json`: its provenance (the
command that trained it, on what data and machine, its private_test accuracy) and the data's terms.
A bundled model's name is accepted wherever `--model` takes a path, and the first one is the default of
`fertune predict`, `video`, `serve` and `export`. `fertune models` lists them.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent / "bundled"
DEFAULT_MODEL = "fertune-cnn-small-fer2013"
INFO = "model.json"


@dataclass
class BundledModel:
    name: str
    path: Path
    info: dict[str, Any]  # model.json: summary, command, data, machine, accuracy, terms

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def bundled_models() -> list[BundledModel]:
    """Every bundled model, the default first."""
    found = [BundledModel(d.name, d, json.loads((d / INFO).read_text()))
             for d in sorted(ROOT.iterdir()) if (d / INFO).is_file()] if ROOT.is_dir() else []
    return sorted(found, key=lambda m: m.name != DEFAULT_MODEL)


def names() -> list[str]:
    return [m.name for m in bundled_models()]


def looks_like_a_name(model: str | Path) -> bool:
    """True for a bare word like 'fertune-cnn-small-fer2013': no folder part and no file suffix."""
    text = str(model)
    return "/" not in text and "\\" not in text and not Path(text).suffix and not Path(text).exists()


def bundled_path(model: str | Path) -> Path | None:
    """The folder of the bundled model called `model`, None when `model` is not a bare name; an unknown
    name fails, naming the known ones."""
    if not looks_like_a_name(model):
        return None
    known = {m.name: m.path for m in bundled_models()}
    if str(model) in known:
        return known[str(model)]
    close = difflib.get_close_matches(str(model), list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise FileNotFoundError(f"unknown model '{model}'{hint}; bundled models: {', '.join(known) or 'none'} "
                            f"(`fertune models` lists them), or pass a checkpoint .pt, a run folder, or a search's "
                            f"best/ or ensemble/")


def absolute_model_path(model: str | Path) -> str:
    """`model` as a path any process can open, whatever its working folder: a bundled model's folder, or the
    given path made absolute (Ray workers and Serve replicas may start elsewhere)."""
    return str(bundled_path(model) or Path(model).resolve())


def output_home(folder: Path | None) -> Path:
    """Where a command writes files that belong beside a model (eval JSONs, exports): the model's folder, or
    the working folder for a bundled model (an installed package is no place for a user's files)."""
    if folder is None or ROOT in Path(folder).resolve().parents:
        return Path(".")
    return Path(folder)
