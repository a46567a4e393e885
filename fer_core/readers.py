"""Readers for the on-disk formats fertune accepts: Parquet, Kaggle-style CSV and image folders.

Each reader returns a `RawData`: every kept row as a gray uint8 image (decoded by `fer_core.images`'
one rule), its class index and the split slot it came from. `fer_core.data.load_data` assembles the
train/val/test splits from it. Readers check labels and splits before decoding, and decode only the
rows of the slots asked for, so scoring a test split never decodes the training images.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from fer_core.dataset import SPLIT_ALIASES, DataError, split_slot
from fer_core.images import IMAGE_SUFFIXES, Crop, decode_many, square, warn_corrupt
from fer_core.labels import CLASSES, KAGGLE_TO_OURS, canonical_class

EXPECTED_COLUMNS = (
    "an image column ('image': encoded bytes, or 'pixels': raw bytes or Kaggle's space-separated string), "
    "a label column ('label': class name or index in fertune order, or Kaggle's 'emotion' codes) "
    "and optionally 'split' (or Kaggle's 'Usage')"
)


@dataclass(frozen=True)
class ReadPlan:
    """What a reader reads and how."""

    size: int = 48                              # square side of every image
    classes: dict[str, str] | None = None       # extra label names (--classes)
    slots: tuple[str, ...] | None = None        # the split slots to read; None: all
    unsplit: str = "train"                      # the slot of a source without splits
    crop: Crop | None = None                    # full-size image -> gray face crop, in place of the resize


@dataclass
class RawData:
    """Rows read from one source, before train/val/test assembly. Images are already img_size gray."""

    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) int64, index into CLASSES
    splits: np.ndarray  # (N,) str: "train" | "val" | "test"
    names: np.ndarray   # (N,) str: where each image came from (a file's path under the root, or "row I")
    declared_splits: set[str]  # splits the source names, even if none of their rows survived
    dropped: Counter = field(default_factory=Counter)  # label name -> rows dropped
    corrupt: int = 0
    notes: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)  # names of images in which `crop` found no face


# ------------------------------------------------------------------------------------- tables (Parquet, CSV)


def _parse_pixels(cell: str | bytes | list, source: str, row: int) -> np.ndarray:
    """One `pixels` cell as a flat int16 array: raw bytes (one per pixel), a list of ints, or a Kaggle
    string of space-separated ints."""
    if isinstance(cell, (bytes, bytearray)):
        return np.frombuffer(cell, np.uint8)
    if not isinstance(cell, str):  # Arrow list<int> cells arrive as Python lists
        return np.asarray(cell, np.int16)
    try:
        # numpy's C text parser: ~50 us per 2304-value row, about 2 s for all of FER2013, faster here than
        # str.split or Arrow's split kernels. Older numpy warns on junk text, newer raises: both are errors.
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return np.fromstring(cell, dtype=np.int16, sep=" ")
    except (ValueError, DeprecationWarning):
        raise DataError(f"{source}: row {row}: pixels must be space-separated integers 0..255; "
                        f"got {cell[:40]!r}...") from None


def _images_from_pixels(cells: list, plan: ReadPlan, source: str,
                        row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode `pixels` cells to (images, ok mask, no-face mask). An empty cell is skipped like a corrupt image;
    a cell whose length is not a square (n*n gray pixels) or whose values leave 0..255 is an error."""
    size = plan.size
    out = np.zeros((len(cells), size, size), np.uint8)
    ok = np.zeros(len(cells), bool)
    no_face = np.zeros(len(cells), bool)
    for i, (cell, row) in enumerate(zip(cells, row_ids)):
        if cell is None or len(cell) == 0:
            continue
        values = _parse_pixels(cell, source, row)
        side = math.isqrt(len(values))
        if side == 0 or side * side != len(values):
            raise DataError(f"{source}: row {row}: pixels has {len(values)} values; expected {size * size} "
                            f"({size}x{size} gray) or another square count (n*n gray pixels)")
        if values.min() < 0 or values.max() > 255:
            raise DataError(f"{source}: row {row}: pixel values must be 0..255, got {values.min()}..{values.max()}")
        img = square(values.astype(np.uint8).reshape(side, side), size, plan.crop)
        if img is None:
            no_face[i] = True
        else:
            out[i], ok[i] = img, True
    return out, ok, no_face


def _find_column(table: pa.Table, *names: str) -> str | None:
    """The table's own spelling of the first of `names` present, matched case-insensitively."""
    by_lower = {c.strip().lower(): c for c in table.column_names}
    return next((by_lower[n] for n in names if n in by_lower), None)


def _labels_from_column(
    col: pa.ChunkedArray, kaggle_codes: bool, extra_map: dict[str, str] | None, source: str
) -> tuple[np.ndarray, Counter]:
    """Class indices (-1 = drop) and the dropped counts for a label column of ints or class names."""
    dropped: Counter = Counter()
    if pa.types.is_dictionary(col.type):  # pandas categoricals
        col = col.cast(col.type.value_type)
    if pa.types.is_floating(col.type):  # pandas writes int labels as float once a value is missing
        values = col.to_numpy(zero_copy_only=False)
        if not np.all(np.isnan(values) | (values == np.round(values))):
            raise DataError(f"{source}: label column holds non-integer numbers; expected class indices or names")
        col = pa.chunked_array([pa.array(values, mask=np.isnan(values)).cast(pa.int64())])
    if pa.types.is_integer(col.type):
        missing = col.is_null().to_numpy(zero_copy_only=False)
        codes = col.fill_null(0).to_numpy().astype(np.int64)
        lookup = KAGGLE_TO_OURS if kaggle_codes else {i: i for i in range(len(CLASSES))}
        bad = sorted(set(np.unique(codes[~missing]).tolist()) - set(lookup))
        if bad:
            order = ("Kaggle codes 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral"
                     if kaggle_codes else "fertune order " + ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES)))
            raise DataError(f"{source}: label values {bad[:10]} are outside 0..6 ({order}); "
                            "use class names for other label sets")
        table = np.array([lookup[i] for i in range(len(CLASSES))], np.int64)
        labels = table[np.clip(codes, 0, len(CLASSES) - 1)]
        labels[missing] = -1
        if missing.any():
            dropped["<missing label>"] = int(missing.sum())
        return labels, dropped
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        names = np.array(col.fill_null("").to_pylist(), dtype=object)
        uniq, inverse = np.unique(names, return_inverse=True)
        per_name = np.empty(len(uniq), np.int64)
        for j, name in enumerate(uniq):
            canon = _canonical_or_error(name, extra_map, source) if name.strip() else None
            per_name[j] = -1 if canon is None else CLASSES.index(canon)
            if canon is None:
                dropped[name.strip().lower() or "<missing label>"] += int((inverse == j).sum())
        return per_name[inverse], dropped
    raise DataError(f"{source}: label column has type {col.type}; expected integers or class-name strings")


def _canonical_or_error(name: str, extra_map: dict[str, str] | None, source: str) -> str | None:
    try:
        return canonical_class(name, extra_map)
    except ValueError as err:  # keep labels.py's hint (closest names, --classes fix) and add where it was
        raise DataError(f"{source}: {err}") from err


def _splits_from_column(col: pa.ChunkedArray | None, n: int, source: str, unsplit: str) -> tuple[np.ndarray, list[str]]:
    if col is None:
        return np.full(n, unsplit, dtype=object), [f"no split column: every row is {unsplit}"]
    values = np.array(col.cast(pa.string()).fill_null("").to_pylist(), dtype=object)
    uniq, inverse = np.unique(values, return_inverse=True)
    unknown = [u for u in uniq if split_slot(u) is None]
    if unknown:
        raise DataError(f"{source}: unknown split value(s) {unknown[:10]}; expected train/Training, "
                        "val/validation/public_test/PublicTest or test/private_test/PrivateTest")
    mapped = np.array([split_slot(u) for u in uniq], dtype=object)
    return mapped[inverse], []


def read_table(table: pa.Table, source: str, plan: ReadPlan) -> RawData:
    """Rows of a Parquet or CSV table -> RawData. Splits and labels are checked before any image is decoded,
    and only rows of the plan's slots are read; rows of a table with no split column are `plan.unsplit`."""
    image_col = _find_column(table, "image")
    pixels_col = None if image_col else _find_column(table, "pixels")
    label_col = _find_column(table, "label")
    emotion_col = None if label_col else _find_column(table, "emotion")
    if not (image_col or pixels_col) or not (label_col or emotion_col):
        raise DataError(f"{source}: columns found: {', '.join(table.column_names) or '(none)'}; "
                        f"expected {EXPECTED_COLUMNS}")
    split_name = _find_column(table, "split", "usage")
    splits, notes = _splits_from_column(table[split_name] if split_name else None, table.num_rows, source,
                                        plan.unsplit)
    declared = set(splits.tolist())
    rows = np.arange(table.num_rows)
    if plan.slots is not None and not np.isin(splits, list(plan.slots)).all():  # other splits are never read
        rows = np.flatnonzero(np.isin(splits, list(plan.slots)))
        table, splits = table.take(pa.array(rows)), splits[rows]
    # `emotion` is Kaggle's column, so integer values there are Kaggle codes, not fertune indices.
    labels, dropped = _labels_from_column(table[label_col or emotion_col], emotion_col is not None, plan.classes,
                                          source)

    keep = np.flatnonzero(labels >= 0)  # dropped rows are never decoded
    # take() copies the column; skip it in the usual case where nothing is dropped.
    kept = (lambda c: c) if len(keep) == table.num_rows else (lambda c: c.take(pa.array(keep)))
    if image_col:
        col = table[image_col]
        if pa.types.is_struct(col.type):  # Hugging Face datasets store images as {bytes, path}
            col = pa.chunked_array([chunk.field("bytes") for chunk in col.chunks], type=col.type.field("bytes").type)
        if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            raise DataError(f"{source}: column '{image_col}' has type {col.type}; expected encoded image bytes")
        images, ok, no_face = decode_many(kept(col).to_pylist(), plan.size, crop=plan.crop)
        corrupt = ~ok & ~no_face
        warn_corrupt(source, [f"row {rows[keep[i]]}" for i in np.flatnonzero(corrupt)])
    else:
        images, ok, no_face = _images_from_pixels(kept(table[pixels_col]).to_pylist(), plan, source, rows[keep])
        corrupt = ~ok & ~no_face
        warn_corrupt(source, [f"row {rows[keep[i]]} (empty pixels)" for i in np.flatnonzero(corrupt)])
    names = np.array([f"row {r}" for r in rows[keep]], dtype=object)
    good = keep[ok]
    return RawData(images[ok], labels[good], splits[good], names[ok], declared, dropped, int(corrupt.sum()), notes,
                   list(names[no_face]))


def read_parquet(path: Path, plan: ReadPlan) -> RawData:
    import pyarrow.parquet as pq  # a heavy import; only Parquet users pay it

    wanted = {"image", "pixels", "label", "emotion", "split", "usage"}
    try:
        names = pq.read_schema(path).names
        # Read only the columns used: extra ones (embeddings, FER+ votes) can be most of the file.
        columns = [n for n in names if n.strip().lower() in wanted]
        table = pq.read_table(path, columns=columns) if columns else pa.table({n: [] for n in names})
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot read as Parquet: {err}") from err
    return read_table(table, str(path), plan)


def read_csv(path: Path, plan: ReadPlan) -> RawData:
    import pyarrow.csv as pcsv

    # Arrow's multi-threaded CSV reader takes about 1 s for the 300 MB fer2013.csv (pandas' C engine ~4 s).
    try:
        table = pcsv.read_csv(path)
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: cannot parse as CSV: {err}") from err
    return read_table(table, str(path), plan)


# ---------------------------------------------------------------------------------------------- folders


def _subdirs(folder: Path) -> list[Path]:
    # Hidden and tool folders (.ipynb_checkpoints, __MACOSX) are never data.
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "__")))


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def read_folder(root: Path, plan: ReadPlan) -> RawData:
    """ROOT/<split>/<class>/* (or ROOT/<class>/*, one split: `plan.unsplit`). Files sort by name within a
    class; only the split folders of the plan's slots are read."""
    subdirs = _subdirs(root)
    notes: list[str] = []
    split_names = sorted(set(SPLIT_ALIASES))
    if not subdirs:
        raise DataError(f"{root} has no subfolders; expected ROOT/<split>/<class>/<images> "
                        f"(split names: {', '.join(split_names)}) or a Parquet/CSV file")
    if all(split_slot(d.name) is None for d in subdirs):
        # No split level: accept ROOT/<class>/ if every folder is a class name, as a one-split set.
        for d in subdirs:
            try:
                canonical_class(d.name, plan.classes)
            except ValueError:
                raise DataError(f"{root}: subfolders {[s.name for s in subdirs][:10]} are neither split names "
                                f"({', '.join(split_names)}) nor class names; expected ROOT/<split>/<class>/<images>") from None
        layout = [(plan.unsplit, root)]
        notes.append(f"no split folders (ROOT/<class>/): every image is {plan.unsplit}")
    else:
        unknown = [d.name for d in subdirs if split_slot(d.name) is None]
        if unknown:
            raise DataError(f"{root}: unknown split folder(s) {unknown}; expected {', '.join(split_names)} "
                            "(case-insensitive)")
        layout = [(split_slot(d.name), d) for d in subdirs]
    declared = {s for s, _ in layout}
    if plan.slots is not None:
        layout = [(s, d) for s, d in layout if s in plan.slots]

    files: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    dropped: Counter = Counter()
    ignored: Counter = Counter()
    for split, split_dir in layout:
        for class_dir in _subdirs(split_dir):
            canon = _canonical_or_error(class_dir.name, plan.classes, str(class_dir))
            images = []
            for f in sorted(class_dir.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(f)
                elif f.is_file() and not f.name.startswith("."):
                    ignored[f.suffix.lower() or f.name] += 1
            if canon is None:
                dropped[class_dir.name.strip().lower()] += len(images)
                continue
            files += images
            labels += [CLASSES.index(canon)] * len(images)
            splits += [split] * len(images)
    if ignored:
        notes.append("ignored non-image files: " + ", ".join(f"{k} x{v}" for k, v in sorted(ignored.items())))

    images, ok, no_face = decode_many(files, plan.size, read=_read_file, crop=plan.crop)
    names = np.array([f.relative_to(root).as_posix() for f in files], dtype=object)
    corrupt = ~ok & ~no_face
    warn_corrupt(str(root), list(names[corrupt]))
    return RawData(images[ok], np.asarray(labels, np.int64)[ok], np.asarray(splits, dtype=object)[ok], names[ok],
                   declared, dropped, int(corrupt.sum()), notes, list(names[no_face]))


# ---------------------------------------------------------------------------------------------- dispatch


def read_source(path: Path, plan: ReadPlan) -> RawData:
    """Pick the reader for `path` by what it is: a folder, a Parquet file or a CSV, and read it as planned."""
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a Parquet/CSV file, an image folder "
                        "ROOT/<split>/<class>/, or 'demo'")
    if path.is_dir():
        return read_folder(path, plan)
    suffixes = "".join(path.suffixes[-2:]).lower()
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        return read_parquet(path, plan)
    if path.suffix.lower() == ".csv" or suffixes in (".csv.gz", ".csv.bz2"):
        return read_csv(path, plan)
    raise DataError(f"{path}: unrecognised data format (suffix '{path.suffix}'); pass a Parquet file (.parquet), "
                    "a CSV (.csv, Kaggle fer2013.csv style), an image folder ROOT/<split>/<class>/, or 'demo'")
