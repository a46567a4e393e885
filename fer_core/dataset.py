"""The data types every other data module builds on: `Split`, `FerData`, `DataError` and the split names.

This is the ground floor of the data layer: it imports nothing of fer_core but the class names, so the
readers, the synthetic generator, FER+ and the loader can all use it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_core.labels import CLASSES

# FerData's three slots. FER2013's PublicTest is the usual model-selection split and PrivateTest the
# reporting split, hence val and test.
SLOTS = ("train", "val", "test")

# Split names seen in the wild (lower-case) -> the slot they fill.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "public_test": "val", "publictest": "val",
    "test": "test", "private_test": "test", "privatetest": "test",
}


class DataError(ValueError):
    """The data cannot be read as asked; the message names what was found and how to fix it."""


class MissingSplitError(DataError):
    """The split asked for is not in the data; `found` lists the splits that are."""

    def __init__(self, message: str, found: list[str]):
        super().__init__(message)
        self.found = found


def split_slot(name: str) -> str | None:
    """The slot ("train", "val", "test") a split name fills, or None for a name nobody uses."""
    return SPLIT_ALIASES.get(str(name).strip().lower())


@dataclass
class Split:
    images: np.ndarray  # (N, S, S) uint8 gray
    labels: np.ndarray  # (N,) int64, index into CLASSES
    names: np.ndarray | None = None  # (N,) where each image came from ("row I", a file under the root)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(CLASSES))

    def take(self, index: np.ndarray) -> "Split":
        """The images at `index` (a mask or indices), with their labels and names."""
        return Split(self.images[index], self.labels[index], None if self.names is None else self.names[index])


@dataclass
class FerData:
    train: Split | None                           # None when only other splits were loaded (evaluation)
    val: Split | None
    test: Split | None
    source: str                                   # what was loaded (path or "demo")
    classes: tuple[str, ...] = CLASSES
    dropped: dict[str, int] = field(default_factory=dict)  # label name -> rows dropped (e.g. contempt)
    corrupt: int = 0                              # undecodable images skipped
    notes: list[str] = field(default_factory=list)  # human-readable notes on how the data was read
    cropped: bool = False                         # images cut around detected faces (full-size photos)
    no_face: list[str] = field(default_factory=list)  # images the face crop found no face in (not scored)

    def split(self, name: str) -> Split | None:
        return getattr(self, name)

    def scored_split(self) -> str:
        """The split an evaluation scores when none is named: test, else val (else train)."""
        return next((name for name in ("test", "val", "train") if self.split(name) is not None), "test")
