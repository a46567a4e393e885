"""FER+ relabels (Barsoum et al. 2016) as labels for one split of FER2013: `fertune eval --labels FERPLUS_CSV`.

`ferplus_votes.csv` (microsoft/FERPlus `fer2013new.csv`) holds ten crowd votes per FER2013 image over ten
columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF (not a face).
Its data row i belongs to row i of `fer2013.csv` / `fer2013.parquet`; it carries no image, so the row
order is the only join, and this module checks it (same row count, same split per row) before using it.

The rule ("majority" labels, as in the FER+ paper, without its 50 %-agreement threshold):
  * the top vote is the argmax over all ten columns;
  * a row whose top vote is tied between two or more columns is left out (counted as `tied`);
  * a row whose plurality is contempt, unknown or NF is left out (counted under that name);
  * otherwise the label is that emotion, mapped to fertune's class order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_core.dataset import split_slot
from fer_core.labels import CLASSES

# FER+ vote columns in file order, and the fertune class each emotion column maps to (None: no class).
VOTE_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                 "contempt", "unknown", "NF")
TO_CLASS: dict[str, str | None] = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
                                   "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear",
                                   "contempt": None, "unknown": None, "NF": None}
# What the left-out counts are called in the returned dict.
LEFT_OUT_NAMES = {"contempt": "contempt", "unknown": "unknown", "NF": "not_a_face"}


def majority_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 10) votes in VOTE_COLUMNS order -> (class index per row or -1, reason per row).

    reason: "" for kept rows, else "tied", "contempt", "unknown" or "not_a_face".
    """
    votes = np.asarray(votes, dtype=np.float64)
    top = votes.max(1, keepdims=True)
    tied = (votes == top).sum(1) > 1  # also every all-zero row: ten columns tie at 0
    winner = votes.argmax(1)
    column_class = np.array([CLASSES.index(TO_CLASS[c]) if TO_CLASS[c] else -1 for c in VOTE_COLUMNS])
    labels = np.where(tied, -1, column_class[winner]).astype(np.int64)
    reasons = np.array([LEFT_OUT_NAMES.get(VOTE_COLUMNS[w], "") for w in winner], dtype=object)
    reasons[tied] = "tied"
    return labels, reasons


def _read_votes(votes_csv: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(usage slot per row, (N, 10) votes) from a file in ferplus_votes.csv's layout."""
    import pandas as pd

    path = Path(votes_csv).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"FER+ votes file {path} does not exist; pass ferplus_votes.csv "
                                "(microsoft/FERPlus fer2013new.csv)")
    table = pd.read_csv(path)
    by_lower = {c.strip().lower(): c for c in table.columns}
    missing = [c for c in ("usage", *[v.lower() for v in VOTE_COLUMNS]) if c not in by_lower]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected FER+ layout "
                         f"Usage,Image name,{','.join(VOTE_COLUMNS)}")
    votes = table[[by_lower[v.lower()] for v in VOTE_COLUMNS]].fillna(0).to_numpy(np.float64)
    usage = _slots(table[by_lower["usage"]].fillna("").astype(str).to_numpy(), str(path))
    return usage, votes


def _slots(values: np.ndarray, source: str) -> np.ndarray:
    uniq, inverse = np.unique(values, return_inverse=True)
    bad = [u for u in uniq if split_slot(u) is None]
    if bad:
        raise ValueError(f"{source}: unknown split value(s) {bad[:5]}; expected Training/PublicTest/PrivateTest "
                         "or train/val/test")
    return np.array([split_slot(u) for u in uniq], dtype=object)[inverse]


def _data_splits(data_path: str | Path) -> np.ndarray:
    """The split slot of every row of a FER2013-ordered Parquet or CSV, in file order."""
    if str(data_path) == "demo":
        raise ValueError("FER+ votes align by row with FER2013; --data demo has no FER+ votes. "
                         "Pass --data fer2013.parquet (or Kaggle's fer2013.csv)")
    path = Path(data_path).expanduser()
    if not path.is_file():
        raise ValueError(f"--data {path} is not a file; FER+ votes align by row with fer2013.parquet or "
                         "fer2013.csv, so pass one of those (image folders have no row order)")
    with open(path, "rb") as f:
        is_parquet = f.read(4) == b"PAR1"
    if is_parquet:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        col = next((n for n in names if n.strip().lower() in ("split", "usage")), None)
        n_rows = pq.read_metadata(path).num_rows
        values = pq.read_table(path, columns=[col]).column(col).to_pylist() if col else None
    else:
        import pandas as pd

        head = pd.read_csv(path, nrows=0).columns
        col = next((n for n in head if n.strip().lower() in ("split", "usage")), None)
        values = pd.read_csv(path, usecols=[col])[col].tolist() if col else None
        n_rows = len(values) if values is not None else sum(1 for _ in open(path)) - 1
    if values is None:  # no split column: load_data reads every row as train
        return np.full(n_rows, "train", dtype=object)
    return _slots(np.array(["" if v is None else str(v) for v in values], dtype=object), str(path))


def ferplus_labels(votes_csv: str | Path, data_path: str | Path,
                   split: str) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """FER+ labels for the rows of `split` ("train", "val" or "test") of the FER2013-ordered `data_path`.

    Returns (labels int64 for the kept rows, keep bool mask over that split's rows in file order,
    counts {"rows", "kept", "tied", "contempt", "unknown", "not_a_face"}). `fer_core.data.load_data` keeps
    a Parquet/CSV split's rows in file order, so `split.images[keep]` lines up with `labels` when it
    dropped no row of that split (the caller checks the lengths).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    usage, votes = _read_votes(votes_csv)
    data_splits = _data_splits(data_path)
    if len(data_splits) != len(usage):
        raise ValueError(f"{votes_csv} has {len(usage)} rows but {data_path} has {len(data_splits)}; FER+ votes "
                         "join FER2013 by row order, so both must hold every row of fer2013.csv in its order")
    differ = np.flatnonzero(data_splits != usage)
    if len(differ):
        i = int(differ[0])
        raise ValueError(f"row {i}: {votes_csv} says {usage[i]} but {data_path} says {data_splits[i]} "
                         f"({len(differ)} rows differ); the files are not in the same row order")
    rows = data_splits == split
    labels, reasons = majority_labels(votes[rows])
    keep = labels >= 0
    counts = {"rows": int(rows.sum()), "kept": int(keep.sum())}
    for reason in ("tied", "contempt", "unknown", "not_a_face"):
        counts[reason] = int((reasons == reason).sum())
    return labels[keep], keep, counts
