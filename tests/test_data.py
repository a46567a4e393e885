"""fer_core.data: every format loads to the same arrays, class names and splits resolve, errors explain themselves."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fer_core.data import DataError, FerData, Split, describe, load_data, stratified_subset
from fer_core.labels import CLASSES, KAGGLE_TO_OURS

REAL_PARQUET = Path(__file__).resolve().parents[2] / "shared/data/fer2013.parquet"
OURS_TO_KAGGLE = {ours: kaggle for kaggle, ours in KAGGLE_TO_OURS.items()}
KAGGLE_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
SLOTS = ("train", "val", "test")


# ------------------------------------------------------------------------------------- a small reference set


def make_reference(seed: int = 0) -> dict[str, Split]:
    """70 random 48x48 images, 10 per class: 6 train, 2 val, 2 test each, ordered by split, class, index.

    That order is what every loader must give back: folders list classes alphabetically (= CLASSES order)
    and files by name, tables keep row order.
    """
    rng = np.random.default_rng(seed)
    ref = {}
    for slot, per_class in zip(SLOTS, (6, 2, 2)):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        ref[slot] = Split(rng.integers(0, 256, (len(labels), 48, 48), dtype=np.uint8), labels.astype(np.int64))
    return ref


def png(img: np.ndarray, ext: str = ".png", params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def rows(ref: dict[str, Split]):
    for slot in SLOTS:
        for img, label in zip(ref[slot].images, ref[slot].labels):
            yield slot, img, int(label)


def write_folder(root: Path, ref: dict[str, Split], split_dirs=("train", "PublicTest", "PrivateTest")) -> Path:
    for (slot, img, label), i in zip(rows(ref), range(10**6)):
        folder = root / split_dirs[SLOTS.index(slot)] / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), img)
    return root


def write_kaggle_csv(path: Path, ref: dict[str, Split]) -> Path:
    lines = ["emotion,pixels,Usage"]
    lines += [f"{OURS_TO_KAGGLE[label]},{' '.join(map(str, img.ravel()))},{KAGGLE_USAGE[slot]}"
              for slot, img, label in rows(ref)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def parquet_images(path: Path, ref: dict[str, Split]) -> Path:
    data = list(rows(ref))
    return write_parquet(path, {"image": [png(img) for _, img, _ in data],
                                "label": pa.array([lab for *_, lab in data], pa.int8()),
                                "split": [{"val": "public_test", "test": "private_test"}.get(s, s) for s, *_ in data]})


def parquet_pixels(path: Path, ref: dict[str, Split]) -> Path:
    data = list(rows(ref))
    return write_parquet(path, {"pixels": [img.tobytes() for _, img, _ in data],
                                "label": [CLASSES[lab].upper() for *_, lab in data],  # names, any case
                                "Usage": [KAGGLE_USAGE[s] for s, *_ in data]})


def assert_same(data: FerData, ref: dict[str, Split]) -> None:
    for slot in SLOTS:
        got = getattr(data, slot)
        assert got.images.dtype == np.uint8 and got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.labels, ref[slot].labels, err_msg=slot)
        np.testing.assert_array_equal(got.images, ref[slot].images, err_msg=slot)


def image_hashes(split: Split) -> set[bytes]:
    return {hashlib.sha1(img.tobytes()).digest() for img in split.images}


# ------------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["folder", "kaggle_csv", "label_csv", "parquet_image", "parquet_pixels"])
def test_every_format_loads_the_same_arrays(tmp_path: Path, fmt: str) -> None:
    ref = make_reference()
    if fmt == "folder":
        path = write_folder(tmp_path / "ds", ref)
    elif fmt == "kaggle_csv":
        path = write_kaggle_csv(tmp_path / "fer2013.csv", ref)
    elif fmt == "label_csv":  # `label` (our index) instead of Kaggle's `emotion`, our split names
        path = tmp_path / "mine.csv"
        path.write_text("label,pixels,split\n" + "".join(
            f"{lab},{' '.join(map(str, img.ravel()))},{s}\n" for s, img, lab in rows(ref)))
    elif fmt == "parquet_image":
        path = parquet_images(tmp_path / "img.parquet", ref)
    else:
        path = parquet_pixels(tmp_path / "pix.parquet", ref)
    data = load_data(path)
    assert_same(data, ref)
    assert data.dropped == {} and data.corrupt == 0 and data.source == str(path)


def test_encodings_decode_alike(tmp_path: Path) -> None:
    """Lossless PNG, BMP, WebP and TIFF give the exact pixels; JPEG comes back close."""
    img = make_reference().get("train").images[0]
    folder = tmp_path / "ds" / "train" / "happy"
    folder.mkdir(parents=True)
    (tmp_path / "ds" / "train" / "sad").mkdir()
    cv2.imwrite(str(tmp_path / "ds" / "train" / "sad" / "x.png"), img)  # a second class, so train is valid
    for ext, params in [(".png", []), (".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".tif", []),
                        (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100])]:
        (folder / f"a{ext}").write_bytes(png(img, ext, params))
    (folder / "notes.txt").write_text("not an image")
    data = load_data(tmp_path / "ds", val_fraction=0.5)
    every = np.concatenate([data.train.images, data.val.images])
    exact = sum(bool((im == img).all()) for im in every)
    assert exact == 5  # 4 lossless happy images + the sad one
    assert max(np.abs(im.astype(int) - img).mean() for im in every) < 3  # the JPEG
    assert any("ignored non-image files: .txt x1" in n for n in data.notes)


def test_colour_alpha_and_size_are_normalised(tmp_path: Path) -> None:
    """Colour -> BT.601 gray, alpha dropped, shrink with INTER_AREA, enlarge with INTER_LINEAR."""
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    big = np.kron(small, np.ones((2, 2), np.uint8))  # 96x96 of 2x2 blocks: an area shrink gives `small` back
    solid = np.zeros((60, 60, 4), np.uint8)
    solid[...] = (50, 100, 200, 0)  # BGRA, fully transparent: alpha must not matter
    tiny = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    bgr = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    root = tmp_path / "ds" / "train"
    for name, img in [("happy/big.png", cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)), ("happy/solid.png", solid),
                      ("sad/tiny.png", tiny), ("sad/bgr.png", bgr)]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), img)
    (root.parent / "test" / "sad").mkdir(parents=True)
    cv2.imwrite(str(root.parent / "test" / "sad" / "t.png"), bgr)
    data = load_data(tmp_path / "ds", val_fraction=0.01)
    got = {hashlib.sha1(im.tobytes()).hexdigest(): im for s in (data.train, data.val) for im in s.images}
    expected_solid = np.full((48, 48), round(0.299 * 200 + 0.587 * 100 + 0.114 * 50), np.uint8)  # 124
    luma = (bgr[..., 2] * 0.299 + bgr[..., 1] * 0.587 + bgr[..., 0] * 0.114)
    for want in (small, expected_solid, cv2.resize(tiny, (48, 48), interpolation=cv2.INTER_LINEAR)):
        assert hashlib.sha1(want.tobytes()).hexdigest() in got
    bgr_gray = data.test.images[0]
    assert bgr_gray.shape == (48, 48) and np.abs(bgr_gray - luma).max() <= 1.0


def test_img_size_resizes_every_format(tmp_path: Path) -> None:
    ref = make_reference()
    for path in (write_folder(tmp_path / "ds", ref), parquet_pixels(tmp_path / "p.parquet", ref)):
        data = load_data(path, img_size=32)
        assert data.train.images.shape == (42, 32, 32) and data.test.images.shape == (14, 32, 32)
        want = cv2.resize(ref["train"].images[0], (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(data.train.images[0], want)


def test_larger_pixels_in_a_table_are_resized(tmp_path: Path) -> None:
    img = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    path = write_parquet(tmp_path / "p.parquet", {"pixels": [" ".join(map(str, img.ravel()))] * 4,
                                                  "label": ["happy", "sad"] * 2})
    data = load_data(path, val_fraction=0.5)
    np.testing.assert_array_equal(data.train.images[0], cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA))


# --------------------------------------------------------------------------------------------- class names


def write_named_folder(root: Path, names: dict[str, int], split: str = "train") -> Path:
    rng = np.random.default_rng(3)
    for name, n in names.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / split / name / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return root


def test_class_synonyms_and_drop(tmp_path: Path) -> None:
    root = write_named_folder(tmp_path / "ds", {"ANGER": 3, "Happiness": 4, "happy": 1, "Sad": 2, "contempt": 3})
    write_named_folder(root, {"angry": 1, "Contempt": 2}, split="test")
    data = load_data(root, val_fraction=0.3)
    counts = data.train.counts() + data.val.counts()
    assert counts[CLASSES.index("angry")] == 3 and counts[CLASSES.index("happy")] == 5
    assert counts[CLASSES.index("sad")] == 2 and counts.sum() == 10
    assert data.dropped == {"contempt": 5}
    assert "contempt 5" in describe(data)


def test_classes_mapping_and_unknown_name(tmp_path: Path) -> None:
    root = write_named_folder(tmp_path / "ds", {"joyful": 3, "gloomy": 2, "neutral": 2})
    with pytest.raises(DataError) as err:
        load_data(root)
    message = str(err.value)
    assert "gloomy" in message and str(root) in message and "--classes" in message
    data = load_data(root, classes={"joyful": "happy", "Gloomy": "drop"})
    assert (data.train.counts() + data.val.counts())[CLASSES.index("happy")] == 3
    assert data.dropped == {"gloomy": 2}


def test_label_names_in_a_table_with_drop_and_mapping(tmp_path: Path) -> None:
    img = np.zeros((48, 48), np.uint8).tobytes()
    path = write_parquet(tmp_path / "p.parquet", {
        "pixels": [img] * 8, "label": ["Happiness", "joyful", "contempt", "contempt", "sad", "SAD", "anger", None]})
    data = load_data(path, classes={"joyful": "happy"}, val_fraction=0.2)
    assert data.dropped == {"contempt": 2, "<missing label>": 1}
    assert len(data.train) + len(data.val) == 5 and data.test is None


# ------------------------------------------------------------------------------------------------ splits


def test_train_and_test_only_gets_a_stratified_seeded_val(tmp_path: Path) -> None:
    per_class = [50, 20, 40, 80, 60, 30, 10]  # 290 train images
    rng = np.random.default_rng(4)
    data_rows = []
    for slot, scale in (("train", 1), ("test", 0.2)):
        for c, n in enumerate(per_class):
            data_rows += [(slot, rng.integers(0, 256, 2304, dtype=np.uint8).tobytes(), c)
                          for _ in range(int(n * scale))]
    path = write_parquet(tmp_path / "p.parquet", {"pixels": [r[1] for r in data_rows],
                                                  "label": [r[2] for r in data_rows],
                                                  "split": [r[0] for r in data_rows]})
    data = load_data(path, seed=0)
    assert len(data.val) == 29 and len(data.train) == 261 and len(data.test) == 58
    np.testing.assert_array_equal(data.val.counts(), [5, 2, 4, 8, 6, 3, 1])  # 10% of each class
    assert not image_hashes(data.val) & image_hashes(data.train)
    assert any("no val split" in n for n in data.notes)
    again, other = load_data(path, seed=0), load_data(path, seed=1)
    np.testing.assert_array_equal(again.val.images, data.val.images)
    assert image_hashes(other.val) != image_hashes(data.val)
    np.testing.assert_array_equal(other.val.counts(), data.val.counts())


def test_train_only_has_no_test(tmp_path: Path) -> None:
    data = load_data(write_named_folder(tmp_path / "ds", {"happy": 10, "sad": 10}))
    assert data.test is None and len(data.val) == 2 and list(data.val.counts()[[3, 5]]) == [1, 1]
    assert any("no test split" in n for n in data.notes)
    assert "test         (none)" in describe(data)


def test_flat_class_folders_are_train(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_named_folder(root, {"happy": 5, "sad": 5})
    data = load_data(root / "train")  # ROOT/<class>/ with no split level
    assert len(data.train) + len(data.val) == 10 and data.test is None


def test_stratified_subset() -> None:
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 500, 480, 300])
    split = Split(np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(2, 1), labels)
    sub = stratified_subset(split, 100, seed=0)
    assert len(sub) == 100 and (sub.counts() >= 1).all()
    assert np.abs(sub.counts() - split.counts() * 100 / len(split)).max() < 1
    np.testing.assert_array_equal(stratified_subset(split, 100, seed=0).images, sub.images)
    assert not np.array_equal(stratified_subset(split, 100, seed=1).images, sub.images)
    assert stratified_subset(split, 10_000, seed=0) is split


# ------------------------------------------------------------------------------------------------ errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; pass a Parquet/CSV file, an image folder"):
        load_data(tmp_path / "nope.parquet")


def test_unrecognised_format(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DataError, match="unrecognised data format"):
        load_data(tmp_path / "data.txt")


def test_wrong_columns_name_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("Usage,Image name,neutral\nTraining,fer0000000.png,4\n")
    with pytest.raises(DataError) as err:
        load_data(path)
    assert "Usage, Image name, neutral" in str(err.value) and "'pixels'" in str(err.value)


def test_pixels_of_wrong_length(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n0," + " ".join(["7"] * 2304) + ",Training\n3,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"row 1: pixels has 3 values; expected 2304"):
        load_data(path)


def test_bad_label_and_split_values(tmp_path: Path) -> None:
    img = bytes(2304)
    with pytest.raises(DataError, match=r"label values \[9\] are outside 0..6"):
        load_data(write_parquet(tmp_path / "a.parquet", {"pixels": [img] * 2, "label": [0, 9]}))
    with pytest.raises(DataError, match=r"unknown split value\(s\) \['holdout'\]"):
        load_data(write_parquet(tmp_path / "b.parquet",
                                {"pixels": [img] * 2, "label": [0, 1], "split": ["train", "holdout"]}))


def test_split_emptied_by_dropping_is_an_error(tmp_path: Path) -> None:
    root = write_named_folder(tmp_path / "ds", {"happy": 3, "sad": 3})
    write_named_folder(root, {"contempt": 2}, split="test")
    with pytest.raises(DataError, match=r"split 'test' has no usable images \(dropped \{'contempt': 2\}\)"):
        load_data(root)


def test_one_class_in_train_is_an_error(tmp_path: Path) -> None:
    root = write_named_folder(tmp_path / "ds", {"happy": 3, "contempt": 3})
    with pytest.raises(DataError, match=r"train has 1 class\(es\) \(happy\)"):
        load_data(root)


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    root = write_named_folder(tmp_path / "ds", {"happy": 4, "sad": 4})
    (root / "train" / "happy" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    data = load_data(root)
    assert data.corrupt == 1 and len(data.train) + len(data.val) == 8
    assert "broken.jpg" in caplog.text and "corrupt: 1" in describe(data)

    ref = make_reference()
    path = parquet_images(tmp_path / "p.parquet", ref)
    table = pq.read_table(path)
    cells = table.column("image").to_pylist()
    cells[0] = b"garbage"
    table = table.set_column(0, "image", pa.array(cells, pa.binary()))
    pq.write_table(table, path)
    data = load_data(path)
    assert data.corrupt == 1 and len(data.train) == 41
    np.testing.assert_array_equal(data.train.images, ref["train"].images[1:])


def test_nothing_decodable_is_an_error(tmp_path: Path) -> None:
    for name in ("happy", "sad"):
        (tmp_path / "ds" / "train" / name).mkdir(parents=True)
        (tmp_path / "ds" / "train" / name / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="2 corrupt images skipped"):
        load_data(tmp_path / "ds")


def test_demo() -> None:
    pytest.importorskip("fer_core.synthetic", reason="fer_core/synthetic.py not written yet")
    data = load_data("demo", seed=0)
    assert len(data.train) and len(data.val) and data.train.images.dtype == np.uint8


# ------------------------------------------------------------------------------------------------- real data


def test_real_fer2013_parquet() -> None:
    if not REAL_PARQUET.exists():
        pytest.skip(f"real data not present at {REAL_PARQUET}")
    start = time.perf_counter()
    data = load_data(REAL_PARQUET)
    seconds = time.perf_counter() - start
    print(f"\nloaded {REAL_PARQUET.name} in {seconds:.2f} s\n{describe(data)}")
    # Per-class counts from shared/data/README.md (the published FER2013 counts).
    np.testing.assert_array_equal(data.train.counts(), [3995, 436, 4097, 7215, 4965, 4830, 3171])
    np.testing.assert_array_equal(data.val.counts(), [467, 56, 496, 895, 607, 653, 415])
    np.testing.assert_array_equal(data.test.counts(), [491, 55, 528, 879, 626, 594, 416])
    assert (len(data.train), len(data.val), len(data.test)) == (28709, 3589, 3589)
    assert data.train.images.shape == (28709, 48, 48) and data.corrupt == 0 and data.dropped == {}
    assert seconds < 60, f"loading took {seconds:.1f} s"  # a few seconds on 2 cores; 60 allows a busy machine
