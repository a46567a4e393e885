"""Datasets as in-memory uint8 arrays: FER2013 Parquet/CSV, image folders, and the synthetic demo set.

The types live in `fer_core.dataset`, the format readers in `fer_core.readers`, the image rule in
`fer_core.images`; this module assembles train/val/test from what a reader returns.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from fer_core.dataset import SLOTS, DataError, FerData, MissingSplitError, Split
from fer_core.labels import CLASSES
from fer_core.images import Crop
from fer_core.readers import RawData, ReadPlan, read_source

__all__ = ["DataError", "FerData", "Split", "describe", "load_data", "load_scored", "stratified_subset"]


def load_data(
    path: str | Path,
    *,
    classes: dict[str, str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    img_size: int = 48,
    splits: tuple[str, ...] | None = None,
    crop: Crop | None = None,
) -> FerData:
    """Load a dataset as gray uint8 arrays of img_size x img_size.

    `path`: a Parquet file, a CSV (Kaggle fer2013.csv or `label,pixels[,split]`), an image folder
    ROOT/<split>/<class>/* (or ROOT/<class>/*), or "demo" (the synthetic set). `classes` maps extra label
    names (`--classes 'joyful=happy,contempt=drop'`). PublicTest/val becomes `val`, PrivateTest/test
    becomes `test`.

    For training (`splits=None`) a train split is required; a source without splits is all train, and
    without a val split a stratified `val_fraction` of train (chosen by `seed`) becomes val.
    For evaluation, `splits` names the slots to load (e.g. ("test",)): only their images are decoded, a
    source without splits is one split, `test`, and val is carved from train as in training when the
    source has train but no val. `crop` (full-size photos: `fer_core.faces.largest_face_crop`) replaces the
    resize; images it finds no face in are listed in `no_face`, not loaded. Raises DataError with the problem
    and the fix.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    bad = [s for s in splits or () if s not in SLOTS]
    if bad:
        raise DataError(f"unknown split(s) {bad}; choose from {', '.join(SLOTS)}")
    if isinstance(path, str) and path == "demo":
        from fer_core.synthetic import make_demo_data  # only "demo" needs the generator

        return _only(_resized(make_demo_data(seed=seed), img_size), splits)
    path = Path(path).expanduser()
    plan = ReadPlan(size=img_size, classes=classes, crop=crop)
    if splits is None:
        return _assemble(read_source(path, plan), str(path), seed, val_fraction, cropped=crop is not None)
    raw = read_source(path, replace(plan, slots=splits, unsplit="test"))
    parts = _parts(raw, str(path), splits)
    if "val" in splits and "val" not in raw.declared_splits and "train" in raw.declared_splits:
        train = _parts(read_source(path, replace(plan, slots=("train",))), str(path), ("train",))["train"]
        parts["val"] = _carve_val(train, val_fraction, seed, str(path))[1]
        raw.notes.append(f"no val split: val is the {val_fraction:.0%} of train (stratified, seed {seed}) that "
                         "training held out")
    missing = [s for s in splits if s not in parts]
    if missing:
        found = sorted(raw.declared_splits)
        raise MissingSplitError(f"{path}: no {' or '.join(missing)} split (found: {', '.join(found) or 'none'}"
                                f"{_lost_summary(raw)}); score one of the splits found (--split), or add the "
                                f"split to the data", found)
    return FerData(train=parts.get("train"), val=parts.get("val"), test=parts.get("test"), source=str(path),
                   dropped=dict(raw.dropped), corrupt=raw.corrupt, notes=list(raw.notes), cropped=crop is not None,
                   no_face=raw.no_face)


def load_scored(path: str | Path, split: str | None = None, **kwargs) -> FerData:
    """The one split an evaluation scores, and nothing else: `split`, or else test, or val without one."""
    if split is not None:
        return load_data(path, splits=(split,), **kwargs)
    try:
        return load_data(path, splits=("test",), **kwargs)
    except MissingSplitError:
        return load_data(path, splits=("val",), **kwargs)


def _parts(raw: RawData, source: str, slots: tuple[str, ...] = SLOTS) -> dict[str, Split]:
    """The non-empty splits of `raw` among `slots`; a declared split whose rows were all dropped is an error."""
    parts: dict[str, Split] = {}
    for slot in slots:
        mask = raw.splits == slot
        if slot in raw.declared_splits and not mask.any():
            raise DataError(f"{source}: split '{slot}' has no usable images{_lost_summary(raw)}; "
                            "add images to it, remove it, or map its classes with --classes")
        if mask.any():
            parts[slot] = Split(raw.images, raw.labels.astype(np.int64), raw.names).take(mask)
    return parts


def _only(data: FerData, splits: tuple[str, ...] | None) -> FerData:
    if splits is not None:
        for slot in SLOTS:
            if slot not in splits:
                setattr(data, slot, None)
    return data


def _assemble(raw: RawData, source: str, seed: int, val_fraction: float, cropped: bool = False) -> FerData:
    notes = list(raw.notes)
    lost = _lost_summary(raw)
    parts = _parts(raw, source)
    if "train" not in parts:
        found = ", ".join(sorted(parts)) or "none"
        raise DataError(f"{source}: no train split (found: {found}{lost}); name the training split "
                        "train/Training (a folder ROOT/train/<class>/ or a split column value). To score a "
                        "dataset without one, use `fertune eval --split test`")
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
                   corrupt=raw.corrupt, notes=notes, cropped=cropped, no_face=raw.no_face)


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
    return train.take(keep), train.take(val_idx)


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
    return split.take(idx)


def _resized(data: FerData, size: int) -> FerData:
    """`data` with every image resized to size x size by the one resize rule (for img_size != 48)."""
    from fer_core.images import resize_square

    def fix(split: Split | None) -> Split | None:
        if split is None or split.images.shape[1:] == (size, size):
            return split
        return Split(np.stack([resize_square(im, size) for im in split.images]), split.labels, split.names)

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
