"""Datasets as in-memory uint8 arrays: FER2013 Parquet/CSV, image folders, and the synthetic demo set."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer_core.labels import CLASSES

if TYPE_CHECKING:
    from fer_core.data_formats import RawData

__all__ = ["DataError", "FerData", "Split", "describe", "load_data", "stratified_subset"]


@dataclass
class Split:
    images: np.ndarray  # (N, 48, 48) uint8 gray
    labels: np.ndarray  # (N,) int64, index into CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(CLASSES))


@dataclass
class FerData:
    train: Split
    val: Split
    test: Split | None
    source: str                                   # what was loaded (path or "demo")
    classes: tuple[str, ...] = CLASSES
    dropped: dict[str, int] = field(default_factory=dict)  # label name -> rows dropped (e.g. contempt)
    corrupt: int = 0                              # undecodable images skipped
    notes: list[str] = field(default_factory=list)  # human-readable notes on how the data was read


class DataError(ValueError):
    """The data cannot be read as asked; the message names what was found and how to fix it."""


# --------------------------------------------------------------------------------------------- loading
# The format readers live in data_formats.py, imported inside the functions that need them so that
# `import fer_core.data` (for Split/FerData) stays light: no cv2 or pyarrow until data is loaded.

SLOTS = ("train", "val", "test")


def load_data(
    path: str | Path,
    *,
    classes: dict[str, str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    img_size: int = 48,
) -> FerData:
    """Load a dataset as gray uint8 arrays of img_size x img_size.

    `path`: a Parquet file, a CSV (Kaggle fer2013.csv or `label,pixels[,split]`), an image folder
    ROOT/<split>/<class>/*, or "demo" (the synthetic set). `classes` maps extra label names
    (`--classes 'joyful=happy,contempt=drop'`). PublicTest/val becomes `val`, PrivateTest/test becomes
    `test`. Without a val split, a stratified `val_fraction` of train (chosen by `seed`) becomes val;
    without a test split, `test` is None. Raises DataError with the problem and the fix.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if isinstance(path, str) and path == "demo":
        from fer_core.synthetic import make_demo_data  # lazy: the demo generator is only needed for "demo"

        return _resized(make_demo_data(seed=seed), img_size)
    from fer_core.data_formats import read_source

    path = Path(path).expanduser()
    raw = read_source(path, img_size, classes)
    return _assemble(raw, str(path), seed, val_fraction)


def _assemble(raw: RawData, source: str, seed: int, val_fraction: float) -> FerData:
    notes = list(raw.notes)
    lost = _lost_summary(raw)
    parts: dict[str, Split] = {}
    for slot in SLOTS:
        mask = raw.splits == slot
        if slot in raw.declared_splits and not mask.any():
            raise DataError(f"{source}: split '{slot}' has no usable images{lost}; "
                            "add images to it, remove it, or map its classes with --classes")
        if mask.any():
            parts[slot] = Split(raw.images[mask], raw.labels[mask].astype(np.int64))
    if "train" not in parts:
        found = ", ".join(sorted(parts)) or "none"
        raise DataError(f"{source}: no train split (found: {found}{lost}); name the training split "
                        "train/Training (a folder ROOT/train/<class>/ or a split column value)")
    train = parts["train"]
    present = [CLASSES[c] for c in np.flatnonzero(train.counts())]
    if len(present) < 2:
        raise DataError(f"{source}: train has {len(present)} class(es) ({', '.join(present) or 'none'}){lost}; "
                        "at least 2 are needed to train a classifier")
    if "val" in parts:
        val = parts["val"]
    else:
        train, val = _carve_val(train, val_fraction, seed, source)
        notes.append(f"no val split: {len(val)} images ({val_fraction:.0%}, stratified by class, seed {seed}) "
                     "taken from train")
    test = parts.get("test")
    if test is None:
        notes.append("no test split: test is None")
    return FerData(train=train, val=val, test=test, source=source, dropped=dict(raw.dropped),
                   corrupt=raw.corrupt, notes=notes)


def _lost_summary(raw: RawData) -> str:
    bits = [f"dropped {dict(raw.dropped)}"] if raw.dropped else []
    bits += [f"{raw.corrupt} corrupt images skipped"] if raw.corrupt else []
    return f" ({'; '.join(bits)})" if bits else ""


def _allocate(counts: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
    """How many of each class to take: `total` in all, shares following `counts`, at most `caps` each.

    Largest-remainder rounding keeps each class within one image of its exact share. Every class with
    room gets at least one when the total allows, so a rare class (disgust is 1.5% of FER2013) is never
    missing from a val split or a subset.
    """
    counts = counts.astype(np.int64)
    caps = np.minimum(caps, counts)
    total = int(min(total, caps.sum()))
    quota = counts * (total / max(counts.sum(), 1))
    take = np.minimum(np.floor(quota).astype(np.int64), caps)
    floor_ = np.zeros_like(take)
    if total >= (caps > 0).sum():
        floor_ = (caps > 0).astype(np.int64)
        take = np.maximum(take, floor_)
    while take.sum() > total:  # only after the at-least-one bump: give back where most over quota
        take[np.argmax(np.where(take > floor_, take - quota, -np.inf))] -= 1
    while take.sum() < total:  # hand out the remainders, largest fractional part first
        take[np.argmax(np.where(take < caps, quota - take, -np.inf))] += 1
    return take


def _pick(split: Split, take: np.ndarray, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random `take[c]` images of each class c."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(split.labels == c))[:k] for c, k in enumerate(take) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _carve_val(train: Split, fraction: float, seed: int, source: str) -> tuple[Split, Split]:
    counts = train.counts()
    # Each class keeps at least one training image; the val size rounds to the nearest image.
    take = _allocate(counts, max(1, round(len(train) * fraction)), np.maximum(counts - 1, 0))
    if take.sum() == 0:
        raise DataError(f"{source}: train has only {len(train)} images, too few to split off a val set; "
                        "add a val split (ROOT/val/<class>/ or split=val rows)")
    val_idx = _pick(train, take, seed)
    keep = np.ones(len(train), bool)
    keep[val_idx] = False
    return Split(train.images[keep], train.labels[keep]), Split(train.images[val_idx], train.labels[val_idx])


def stratified_subset(split: Split, n: int, seed: int) -> Split:
    """`n` images of `split` in its class proportions (each present class at least once when n allows).

    Seeded and in the split's original order; the whole split when n >= len(split).
    """
    if n < 1:
        raise ValueError(f"subset size must be at least 1, got {n}")
    if n >= len(split):
        return split
    counts = split.counts()
    idx = _pick(split, _allocate(counts, n, counts), seed)
    return Split(split.images[idx], split.labels[idx])


def _resized(data: FerData, size: int) -> FerData:
    """`data` with every image resized to size x size by the one resize rule (for img_size != 48)."""
    from fer_core.data_formats import resize_square

    def fix(split: Split | None) -> Split | None:
        if split is None or split.images.shape[1:] == (size, size):
            return split
        return Split(np.stack([resize_square(im, size) for im in split.images]), split.labels)

    data.train, data.val, data.test = fix(data.train), fix(data.val), fix(data.test)
    return data


def describe(data: FerData) -> str:
    """A short summary: source, images per split and class, what was dropped or skipped, notes."""
    width = max(len(c) for c in data.classes)
    header = "split        " + " ".join(f"{c:>{width}}" for c in data.classes) + f" {'total':>7}"
    lines = [f"source: {data.source}", header]
    for name in SLOTS:
        split = getattr(data, name)
        if split is None:
            lines.append(f"{name:<12} (none)")
            continue
        counts = np.bincount(split.labels, minlength=len(data.classes))
        size = "x".join(map(str, split.images.shape[1:]))
        lines.append(f"{name:<12} " + " ".join(f"{n:>{width}}" for n in counts) + f" {len(split):>7}  ({size})")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(data.dropped.items())) or "none"
    lines += [f"dropped: {dropped}", f"corrupt: {data.corrupt}"]
    lines += [f"note: {note}" for note in data.notes]
    return "\n".join(lines)
