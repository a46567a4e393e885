"""FER+ scoring: a hand-made votes file with a known answer, ties and non-emotion rows included."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import FER_PARQUET, run_cli
from fer_core.ferplus import ferplus_labels, majority_labels
from fer_core.labels import CLASSES

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# Usage, votes (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF), expected
ROWS = [
    ("Training", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], "happy"),
    ("Training", [6, 0, 1, 1, 0, 0, 0, 0, 2, 0], "neutral"),
    ("PublicTest", [0, 0, 0, 7, 3, 0, 0, 0, 0, 0], "sad"),
    ("PrivateTest", [0, 0, 0, 0, 4, 2, 0, 3, 1, 0], "angry"),       # anger beats contempt 4-3
    ("PrivateTest", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0], "tied"),        # neutral = happiness
    ("PrivateTest", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "not_a_face"),
    ("PrivateTest", [0, 0, 2, 0, 0, 0, 3, 0, 0, 0], "fear"),
    ("PrivateTest", [1, 0, 0, 0, 0, 0, 0, 6, 3, 0], "contempt"),
    ("PrivateTest", [2, 0, 0, 0, 0, 0, 0, 0, 8, 0], "unknown"),
    ("PrivateTest", [0, 0, 6, 0, 0, 0, 0, 0, 0, 4], "surprise"),
    ("PrivateTest", [3, 0, 0, 0, 0, 0, 0, 3, 0, 0], "tied"),        # neutral = contempt: a tie, not an emotion
    ("PrivateTest", [0, 0, 0, 0, 0, 4, 0, 0, 0, 2], "disgust"),
    ("PrivateTest", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "tied"),        # no votes at all
]
LEFT_OUT = ("tied", "contempt", "unknown", "not_a_face")


def write_votes(path, rows=ROWS):
    lines = [HEADER] + [f"{u},fer{i:07d}.png," + ",".join(map(str, v)) for i, (u, v, _) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_data(path, rows=ROWS, seed=0):
    """A FER2013-layout Parquet (encoded image, label, split) in the votes file's row order."""
    from fer_core.synthetic import make_faces

    images, _, _ = make_faces(len(rows), seed=seed)
    labels = np.arange(len(rows)) % len(CLASSES)  # the FER2013 labels (unused by FER+ scoring); train gets 2 classes
    split = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}
    pd.DataFrame({"image": [cv2.imencode(".png", im)[1].tobytes() for im in images], "label": labels.astype(np.int8),
                  "split": [split[u] for u, _, _ in rows]}).to_parquet(path, index=False)
    return path


def test_majority_rule_on_hand_made_votes():
    labels, reasons = majority_labels(np.array([v for _, v, _ in ROWS]))
    for (_, _, want), label, reason in zip(ROWS, labels, reasons):
        if want in LEFT_OUT:
            assert label == -1 and reason == want
        else:
            assert CLASSES[label] == want and reason == ""


def test_ferplus_labels_for_each_split(tmp_path):
    votes, data = write_votes(tmp_path / "votes.csv"), write_data(tmp_path / "data.parquet")
    labels, keep, counts = ferplus_labels(votes, data, "test")
    test_rows = [r for r in ROWS if r[0] == "PrivateTest"]
    assert keep.tolist() == [want not in LEFT_OUT for _, _, want in test_rows]
    assert [CLASSES[i] for i in labels] == ["angry", "fear", "surprise", "disgust"]
    assert counts == {"rows": 10, "kept": 4, "tied": 3, "contempt": 1, "unknown": 1, "not_a_face": 1}
    labels, keep, counts = ferplus_labels(votes, data, "train")
    assert [CLASSES[i] for i in labels] == ["happy", "neutral"] and keep.all() and counts["kept"] == 2
    labels, _, _ = ferplus_labels(votes, data, "val")
    assert [CLASSES[i] for i in labels] == ["sad"]


def test_misaligned_files_are_refused(tmp_path):
    votes = write_votes(tmp_path / "votes.csv")
    short = write_data(tmp_path / "short.parquet", ROWS[:-1])
    with pytest.raises(ValueError, match="row order"):
        ferplus_labels(votes, short, "test")
    swapped = [ROWS[2], ROWS[0], ROWS[1]] + ROWS[3:]
    with pytest.raises(ValueError, match="row 0: .* says train but .* says val"):
        ferplus_labels(votes, write_data(tmp_path / "swapped.parquet", swapped), "test")
    with pytest.raises(ValueError, match="--data demo"):
        ferplus_labels(votes, "demo", "test")
    with pytest.raises(FileNotFoundError, match="ferplus_votes.csv"):
        ferplus_labels(tmp_path / "missing.csv", short, "test")


def test_real_ferplus_votes_align_with_fer2013(fer_parquet):
    votes = FER_PARQUET.parent / "ferplus_votes.csv"
    labels, keep, counts = ferplus_labels(votes, fer_parquet, "test")
    assert counts["rows"] == 3589 and len(keep) == 3589 and counts["kept"] == len(labels)
    assert counts["kept"] + sum(counts[k] for k in LEFT_OUT) == counts["rows"]
    assert counts["not_a_face"] >= 16  # FER+'s unnamed private_test rows all carry NF=10


def test_eval_cli_scores_ferplus_labels_and_names_absent_classes(trained_run, tmp_path):
    votes, data = write_votes(tmp_path / "votes.csv"), write_data(tmp_path / "data.parquet")
    out_json = tmp_path / "ferplus_eval.json"
    out = run_cli("eval", "--model", str(trained_run.path), "--data", str(data), "--labels", str(votes),
                  "--split", "test", "--out", str(out_json), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "FER+ labels: 4 of 10 test rows scored; left out: 3 tied, 1 contempt, 1 unknown, 1 not_a_face" in out.stdout
    report = json.loads(out_json.read_text())
    assert report["n"] == 4 and report["ferplus_counts"]["kept"] == 4
    assert sorted(report["absent_classes"]) == ["happy", "neutral", "sad"]
    assert "happy, neutral, sad" in out.stdout and "left out of the macro averages" in out.stdout
