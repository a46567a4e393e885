"""Face detection and crops: gray conversion, squaring and padding, the cascade cache and its error."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from fer_core import faces
from fer_core.faces import crop_face, crops_for_image, detect_faces, to_gray
from fer_core.synthetic_scenes import render_scene


def test_to_gray_uses_bt601_on_bgr_and_bgra():
    bgr = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)  # blue, green, red
    expected = [29, 150, 76, round(0.114 * 10 + 0.587 * 20 + 0.299 * 30)]
    assert to_gray(bgr).tolist() == [expected]
    bgra = np.concatenate([bgr, np.array([[[0], [7], [128], [255]]], np.uint8)], axis=2)
    assert to_gray(bgra).tolist() == [expected]  # alpha is ignored


def test_to_gray_passes_gray_and_rejects_bad_input():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_gray(gray) is gray
    assert np.array_equal(to_gray(gray[..., None]), gray)
    with pytest.raises(ValueError, match="uint8"):
        to_gray(gray.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((3, 4, 2), np.uint8))


def test_crop_face_squares_around_the_centre():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    # A 4 x 2 box centred at (4, 4) becomes the 4 x 4 square img[2:6, 2:6]; no resize at size 4.
    assert np.array_equal(crop_face(img, (2, 3, 4, 2), size=4), img[2:6, 2:6])


def test_crop_face_replicates_the_border():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    # Box (0, 0, 4, 4) with margin 0.5: an 8 px square centred on (2, 2), sticking out 2 px up and left.
    expected = np.pad(img, 2, mode="edge")[0:8, 0:8]
    assert np.array_equal(crop_face(img, (0, 0, 4, 4), size=8, margin=0.5), expected)
    # Wholly outside on the right and bottom works too.
    assert crop_face(img, (8, 8, 6, 6), size=6).shape == (6, 6)


def test_crop_face_interpolation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    shrink = crop_face(img, (10, 20, 96, 96), size=48)
    assert np.array_equal(shrink, cv2.resize(img[20:116, 10:106], (48, 48), interpolation=cv2.INTER_AREA))
    grow = crop_face(img, (10, 20, 24, 24), size=48)
    assert np.array_equal(grow, cv2.resize(img[20:44, 10:34], (48, 48), interpolation=cv2.INTER_LINEAR))
    with pytest.raises(ValueError, match="no area"):
        crop_face(img, (0, 0, 0, 5), size=48)


def test_crops_for_image_given_and_detected_boxes():
    image, truth = render_scene([(3, 110), (0, 70)], np.random.default_rng(1))
    crops, boxes = crops_for_image(image, boxes=[t["box"] for t in truth], size=48)
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8
    assert boxes == [t["box"] for t in truth]
    crops, boxes = crops_for_image(image, size=64)  # the size of the model's input, whatever it is
    assert crops.shape == (len(boxes), 64, 64) and len(boxes) >= 1
    empty, none = crops_for_image(np.full((120, 160), 128, np.uint8), size=64)
    assert empty.shape == (0, 64, 64) and none == []


def test_detect_faces_sorted_largest_first_gray_or_bgr():
    image, truth = render_scene([(4, 70), (4, 115)], np.random.default_rng(2), background="plain")
    boxes = detect_faces(image)
    assert len(boxes) == 2
    assert [w * h for _, _, w, h in boxes] == sorted((w * h for _, _, w, h in boxes), reverse=True)
    assert detect_faces(to_gray(image)) == boxes
    assert all(isinstance(v, int) for box in boxes for v in box)


def test_cascade_is_cached_per_thread():
    mine = faces._cascade()
    assert faces._cascade() is mine
    other = []
    thread = threading.Thread(target=lambda: other.append(faces._cascade()))
    thread.start()
    thread.join()
    assert other and other[0] is not mine


def test_missing_cascade_names_the_fix(monkeypatch):
    monkeypatch.setattr(faces, "CASCADE_FILE", "no_such_cascade.xml")
    with pytest.raises(FileNotFoundError, match=r"opencv-python-headless<5"):
        detect_faces(np.zeros((64, 64), np.uint8))
