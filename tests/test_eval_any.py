"""`fertune eval` on any labelled set: test-only files, absent classes, folders without splits, full-size
photos with --faces, and the cross-dataset report. All data is made here from the synthetic faces."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from fer_core.labels import CLASSES

# other datasets' names for our classes; `joy` needs --classes, the rest are known synonyms
NAMES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
         "surprise": "surprise", "neutral": "neutral"}


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def faces(demo_data):
    """300 synthetic test faces, none of them neutral."""
    keep = np.flatnonzero(demo_data.test.labels != CLASSES.index("neutral"))[:300]
    return demo_data.test.images[keep], demo_data.test.labels[keep]


def test_only_parquet_missing_a_class(trained_run, faces, tmp_path):
    images, labels = faces
    names = [NAMES[CLASSES[i]] for i in labels] + ["contempt"] * 20
    data = tmp_path / "other.parquet"
    pq.write_table(pa.table({"image": [png(im) for im in images] + [png(images[0])] * 20, "label": names,
                             "split": ["test"] * len(names)}), data)
    out = tmp_path / "eval.json"
    res = run_cli("eval", "--model", str(trained_run.path), "--data", str(data), "--classes", "joy=happy",
                  "--out", str(out), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 300 and report["absent_classes"] == ["neutral"]
    assert report["accuracy"] == pytest.approx(sum(r["recall"] * r["support"] for r in report["per_class"].values())
                                               / 300)  # plain accuracy, every image counts once
    present = [c for c in CLASSES if c != "neutral"]
    assert report["mean_recall"] == pytest.approx(np.mean([report["per_class"][c]["recall"] for c in present]))
    assert report["macro_f1"] == pytest.approx(np.mean([report["per_class"][c]["f1"] for c in present]))
    assert "neutral" in res.stdout and "absent from this split" in res.stdout and "mean recall" in res.stdout

    # a split that is not there names the splits found; val is carved only from a train split
    wrong = run_cli("eval", "--model", str(trained_run.path), "--data", str(data), "--classes", "joy=happy",
                    "--split", "val", cwd=tmp_path, timeout=300)
    assert wrong.returncode == 2 and "no val split (found: test)" in wrong.stderr
    train = run_cli("train", "--data", str(data), "--classes", "joy=happy", "--project", str(tmp_path / "runs"),
                    cwd=tmp_path, timeout=300)
    assert train.returncode == 2 and "no train split (found: test" in train.stderr and "--split test" in train.stderr


def test_evaluate_a_path_from_python(trained_run, faces, tmp_path):
    from fer_core.evaluate import evaluate

    images, labels = faces
    data = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"image": [png(im) for im in images], "label": labels.astype(np.int64)}), data)
    result = evaluate(trained_run.path, data)
    assert result.split == "test" and result.report["n"] == 300 and result.report["data"] == str(data)
    assert result.report["absent_classes"] == ["neutral"]


def test_image_folder_without_split_level(trained_run, faces, tmp_path):
    images, labels = faces
    root = tmp_path / "folder"
    for i, (im, label) in enumerate(zip(images[:140], labels[:140])):
        path = root / NAMES[CLASSES[label]] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(im))
    res = run_cli("eval", "--model", str(trained_run.path), "--data", str(root), "--classes", "joy=happy",
                  "--out", str(tmp_path / "e.json"), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["split"] == "test" and report["n"] == 140 and "neutral" in report["absent_classes"]


def test_full_size_photos_with_faces(trained_run, tmp_path):
    """Scenes of 320x240 with one face each, in class folders, and blank photos: --faces scores the faces
    and counts the blanks as their own line; --save-crops writes what was scored."""
    from fer_core.synthetic_scenes import render_scene

    rng = np.random.default_rng(11)
    root = tmp_path / "photos"
    for k in range(28):
        emotion = k % len(CLASSES)
        image, _ = render_scene([(emotion, int(rng.integers(80, 110)))], rng)
        path = root / CLASSES[emotion] / f"scene{k:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    for k in range(3):  # photos without a face
        cv2.imwrite(str(root / "happy" / f"wall{k}.jpg"), np.full((240, 320, 3), 90 + 40 * k, np.uint8))
    crops = tmp_path / "crops"
    res = run_cli("eval", "--model", str(trained_run.path), "--data", str(root), "--faces", "--save-crops", str(crops),
                  "--out", str(tmp_path / "faces.json"), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "faces.json").read_text())
    assert report["images"] == 31 and report["no_face"] == 3 and report["n"] == 28
    assert "no face found: 3 of 31 images" in res.stdout
    assert report["accuracy"] > 0.5  # the crops are faces the model can read, not whole scenes
    saved = sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*.png"))
    assert len(saved) == 28 and "happy/happy__scene03.png" in saved
    assert sorted((crops / "no_face.txt").read_text().split()) == [f"happy/wall{k}.jpg" for k in range(3)]
    assert all(cv2.imread(str(crops / s), cv2.IMREAD_GRAYSCALE).shape == (48, 48) for s in saved)


def test_cross_dataset_report(trained_run, faces, tmp_path):
    images, labels = faces
    data = tmp_path / "other.parquet"
    pq.write_table(pa.table({"image": [png(im) for im in images], "label": labels.astype(np.int64),
                             "split": ["test"] * len(labels)}), data)
    ev = tmp_path / "eval-other-test.json"
    assert run_cli("eval", "--model", str(trained_run.path), "--data", str(data), "--out", str(ev), cwd=tmp_path,
                   timeout=300).returncode == 0
    res = run_cli("report", str(ev), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    index = tmp_path / "report-eval-other-test" / "index.html"
    html = index.read_text()
    assert "recall.png" in html and "confusion0.png" in html and "confusion1.png" in html  # this set and FER2013's
    assert str(data) in html and "demo" in html and "absent" in html.lower()
    for name in ("recall.png", "confusion0.png", "confusion1.png"):
        assert (index.parent / name).stat().st_size > 5000
