"""Readers for the on-disk formats fertune accepts: Parquet, Kaggle-style CSV and image folders.

Each reader returns a `RawData`: every kept row as a gray uint8 image, its class index and the split it
came from. `fer_core.data.load_data` then assembles the train/val/test splits from it.

The one image rule, used for encoded bytes (Parquet `image` cells, folder files) and, from the resize
step on, for raw pixels too:
  1. `cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)`; undecodable bytes are skipped and counted as corrupt.
     (IMREAD_UNCHANGED ignores EXIF orientation: images are used as stored.)
  2. 16-bit or float images are scaled to 0..255 uint8.
  3. Colour -> gray with OpenCV's BT.601 luma, 0.299 R + 0.587 G + 0.114 B; an alpha channel is dropped.
  4. Resize to img_size x img_size (non-square images are stretched, not cropped): INTER_AREA when no
     side grows, INTER_LINEAR when a side grows.
For FER2013's lossless WebP (three equal channels) this returns the original pixels exactly, and it is as
fast as decoding with IMREAD_GRAYSCALE, so there is no separate fast path.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pyarrow as pa

from fer_core.data import DataError
from fer_core.labels import CLASSES, KAGGLE_TO_OURS, canonical_class

log = logging.getLogger(__name__)

# What cv2.imdecode reads. GIF is absent because OpenCV cannot decode it; such files are listed as ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
)

# Split names seen in the wild (lower-case) -> the FerData slot they fill. FER2013's PublicTest is the
# usual model-selection split and PrivateTest the reporting split, hence val and test.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "public_test": "val", "publictest": "val",
    "test": "test", "private_test": "test", "privatetest": "test",
}

EXPECTED_COLUMNS = (
    "an image column ('image': encoded bytes, or 'pixels': raw bytes or Kaggle's space-separated string), "
    "a label column ('label': class name or index in fertune order, or Kaggle's 'emotion' codes) "
    "and optionally 'split' (or Kaggle's 'Usage')"
)


@dataclass
class RawData:
    """Rows read from one source, before train/val/test assembly. Images are already img_size gray."""

    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) int64, index into CLASSES
    splits: np.ndarray  # (N,) str: "train" | "val" | "test"
    declared_splits: set[str]  # splits the source names, even if none of their rows survived
    dropped: Counter = field(default_factory=Counter)  # label name -> rows dropped
    corrupt: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- images


def to_gray_uint8(img: np.ndarray) -> np.ndarray:
    """Any cv2-decoded image -> 2-D uint8: BT.601 luma for colour, alpha dropped (steps 2-3 of the rule)."""
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.integer):
            img = (img.astype(np.float32) * (255.0 / np.iinfo(img.dtype).max)).round().astype(np.uint8)
        else:  # float images are taken to be in 0..1
            img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise ValueError(f"unsupported channel count {channels}")
    return np.ascontiguousarray(img)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (step 4 of the rule). INTER_AREA averages every source pixel an output pixel
    covers, so shrinking does not alias; when enlarging it degrades to blocky copies, so bilinear is used."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def decode_image(buf: bytes | np.ndarray | None, size: int) -> np.ndarray | None:
    """Encoded image bytes -> (size, size) uint8 gray by the module's one rule; None if undecodable."""
    if buf is None or len(buf) == 0:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            return None
        return resize_square(to_gray_uint8(img), size)
    except (cv2.error, ValueError):  # some codecs raise on garbage instead of returning None
        return None


def decode_many(
    items: Sequence, size: int, read: Callable[[object], bytes | None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every item (bytes, or whatever `read` turns into bytes) in a thread pool.

    Returns (images (N, size, size) uint8, ok mask). cv2.imdecode and file reads release the GIL, so
    threads scale with cores without the pickling cost of processes. Work goes in chunks so a 36k-image
    set is a few dozen tasks, not 36k futures.
    """
    n = len(items)
    out = np.zeros((n, size, size), np.uint8)
    ok = np.zeros(n, bool)

    def work(lo: int) -> None:
        for i in range(lo, min(lo + 1024, n)):
            img = decode_image(read(items[i]) if read else items[i], size)
            if img is not None:
                out[i] = img
                ok[i] = True

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(0, n, 1024)))
    return out, ok


def _warn_corrupt(source: str, names: list[str]) -> None:
    if names:
        examples = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        log.warning("%s: skipped %d undecodable image(s): %s", source, len(names), examples)


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


def _images_from_pixels(cells: list, size: int, source: str, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode `pixels` cells to (images, ok mask). An empty cell is skipped like a corrupt image; a cell
    whose length is not a square (n*n gray pixels) or whose values leave 0..255 is an error."""
    out = np.zeros((len(cells), size, size), np.uint8)
    ok = np.zeros(len(cells), bool)
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
        out[i] = resize_square(values.astype(np.uint8).reshape(side, side), size)
        ok[i] = True
    return out, ok


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


def _splits_from_column(col: pa.ChunkedArray | None, n: int, source: str) -> tuple[np.ndarray, list[str]]:
    if col is None:
        return np.full(n, "train", dtype=object), ["no split column: every row is train"]
    values = np.array(col.cast(pa.string()).fill_null("").to_pylist(), dtype=object)
    uniq, inverse = np.unique(values, return_inverse=True)
    unknown = [u for u in uniq if u.strip().lower() not in SPLIT_ALIASES]
    if unknown:
        raise DataError(f"{source}: unknown split value(s) {unknown[:10]}; expected train/Training, "
                        "val/validation/public_test/PublicTest or test/private_test/PrivateTest")
    mapped = np.array([SPLIT_ALIASES[u.strip().lower()] for u in uniq], dtype=object)
    return mapped[inverse], []


def read_table(table: pa.Table, source: str, size: int, extra_map: dict[str, str] | None) -> RawData:
    """Rows of a Parquet or CSV table -> RawData. Labels and splits are checked before any image is decoded."""
    image_col = _find_column(table, "image")
    pixels_col = None if image_col else _find_column(table, "pixels")
    label_col = _find_column(table, "label")
    emotion_col = None if label_col else _find_column(table, "emotion")
    if not (image_col or pixels_col) or not (label_col or emotion_col):
        raise DataError(f"{source}: columns found: {', '.join(table.column_names) or '(none)'}; "
                        f"expected {EXPECTED_COLUMNS}")
    split_name = _find_column(table, "split", "usage")
    # `emotion` is Kaggle's column, so integer values there are Kaggle codes, not fertune indices.
    labels, dropped = _labels_from_column(table[label_col or emotion_col], emotion_col is not None, extra_map, source)
    splits, notes = _splits_from_column(table[split_name] if split_name else None, table.num_rows, source)
    declared = set(splits.tolist())

    keep = np.flatnonzero(labels >= 0)  # dropped rows are never decoded
    # take() copies the column; skip it in the usual case where nothing is dropped.
    kept = (lambda c: c) if len(keep) == table.num_rows else (lambda c: c.take(pa.array(keep)))
    if image_col:
        col = table[image_col]
        if pa.types.is_struct(col.type):  # Hugging Face datasets store images as {bytes, path}
            col = pa.chunked_array([chunk.field("bytes") for chunk in col.chunks], type=col.type.field("bytes").type)
        if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            raise DataError(f"{source}: column '{image_col}' has type {col.type}; expected encoded image bytes")
        cells = kept(col).to_pylist()
        images, ok = decode_many(cells, size)
        _warn_corrupt(source, [f"row {keep[i]}" for i in np.flatnonzero(~ok)])
    else:
        cells = kept(table[pixels_col]).to_pylist()
        images, ok = _images_from_pixels(cells, size, source, keep)
        _warn_corrupt(source, [f"row {keep[i]} (empty pixels)" for i in np.flatnonzero(~ok)])
    rows = keep[ok]
    return RawData(images[ok], labels[rows], splits[rows], declared, dropped, int((~ok).sum()), notes)


def read_parquet(path: Path, size: int, extra_map: dict[str, str] | None) -> RawData:
    import pyarrow.parquet as pq  # a heavy import; only Parquet users pay it

    wanted = {"image", "pixels", "label", "emotion", "split", "usage"}
    try:
        names = pq.read_schema(path).names
        # Read only the columns used: extra ones (embeddings, FER+ votes) can be most of the file.
        columns = [n for n in names if n.strip().lower() in wanted]
        table = pq.read_table(path, columns=columns) if columns else pa.table({n: [] for n in names})
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot read as Parquet: {err}") from err
    return read_table(table, str(path), size, extra_map)


def read_csv(path: Path, size: int, extra_map: dict[str, str] | None) -> RawData:
    import pyarrow.csv as pcsv

    # Arrow's multi-threaded CSV reader takes about 1 s for the 300 MB fer2013.csv (pandas' C engine ~4 s).
    try:
        table = pcsv.read_csv(path)
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: cannot parse as CSV: {err}") from err
    return read_table(table, str(path), size, extra_map)


# ---------------------------------------------------------------------------------------------- folders


def _subdirs(folder: Path) -> list[Path]:
    # Hidden and tool folders (.ipynb_checkpoints, __MACOSX) are never data.
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "__")))


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def read_folder(root: Path, size: int, extra_map: dict[str, str] | None) -> RawData:
    """ROOT/<split>/<class>/* (or ROOT/<class>/*, read as train only). Files sort by name within a class."""
    subdirs = _subdirs(root)
    notes: list[str] = []
    split_names = sorted(set(SPLIT_ALIASES))
    if not subdirs:
        raise DataError(f"{root} has no subfolders; expected ROOT/<split>/<class>/<images> "
                        f"(split names: {', '.join(split_names)}) or a Parquet/CSV file")
    if all(d.name.lower() not in SPLIT_ALIASES for d in subdirs):
        # No split level: accept ROOT/<class>/ if every folder is a class name, as a train-only set.
        for d in subdirs:
            try:
                canonical_class(d.name, extra_map)
            except ValueError:
                raise DataError(f"{root}: subfolders {[s.name for s in subdirs][:10]} are neither split names "
                                f"({', '.join(split_names)}) nor class names; expected ROOT/<split>/<class>/<images>") from None
        layout = [("train", root)]
        notes.append("no split folders (ROOT/<class>/): every image is train")
    else:
        unknown = [d.name for d in subdirs if d.name.lower() not in SPLIT_ALIASES]
        if unknown:
            raise DataError(f"{root}: unknown split folder(s) {unknown}; expected {', '.join(split_names)} "
                            "(case-insensitive)")
        layout = [(SPLIT_ALIASES[d.name.lower()], d) for d in subdirs]

    files: list[Path] = []
    labels: list[int] = []
    splits: list[str] = []
    dropped: Counter = Counter()
    ignored: Counter = Counter()
    for split, split_dir in layout:
        for class_dir in _subdirs(split_dir):
            canon = _canonical_or_error(class_dir.name, extra_map, str(class_dir))
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

    images, ok = decode_many(files, size, read=_read_file)
    _warn_corrupt(str(root), [str(files[i].relative_to(root)) for i in np.flatnonzero(~ok)])
    return RawData(images[ok], np.asarray(labels, np.int64)[ok], np.asarray(splits, dtype=object)[ok],
                   {s for s, _ in layout}, dropped, int((~ok).sum()), notes)


# ---------------------------------------------------------------------------------------------- dispatch


def read_source(path: Path, size: int, extra_map: dict[str, str] | None) -> RawData:
    """Pick the reader for `path` by what it is: a folder, a Parquet file or a CSV."""
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a Parquet/CSV file, an image folder "
                        "ROOT/<split>/<class>/, or 'demo'")
    if path.is_dir():
        return read_folder(path, size, extra_map)
    suffixes = "".join(path.suffixes[-2:]).lower()
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        return read_parquet(path, size, extra_map)
    if path.suffix.lower() == ".csv" or suffixes in (".csv.gz", ".csv.bz2"):
        return read_csv(path, size, extra_map)
    raise DataError(f"{path}: unrecognised data format (suffix '{path.suffix}'); pass a Parquet file (.parquet), "
                    "a CSV (.csv, Kaggle fer2013.csv style), an image folder ROOT/<split>/<class>/, or 'demo'")
