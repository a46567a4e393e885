"""The labelled face set (tests/data/face_labels) is well-formed, and bench/face_set_score.py matches boxes
as its docstring says: greedy by IoU, ignore regions count neither way, frames outside the set are dropped."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA

LABELS = REPO / "tests" / "data" / "face_labels"
VIDEOS = SHARED_DATA / "video"
FRAME_SIZE = (640, 360)  # both clips (checked against the files when they are present)


def _scorer():
    spec = importlib.util.spec_from_file_location("face_set_score", REPO / "bench" / "face_set_score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fss = _scorer()


def _write_set(folder, frames, labels):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(frames, columns=["video", "frame_index", "time_s"]).to_csv(folder / "frames.csv", index=False)
    pd.DataFrame(labels, columns=["video", "frame_index", "time_s", "shot", "person", "x", "y", "w", "h", "kind"]
                 ).to_csv(folder / "labels.csv", index=False)
    return folder


def test_match_frame_greedy_ignore_and_duplicates():
    faces = np.array([[0, 0, 100, 100], [200, 0, 100, 100]])
    ignore = np.array([[400, 0, 100, 100]])
    pred = np.array([
        [0, 0, 100, 100],      # 0: face 0, IoU 1
        [10, 0, 100, 100],     # 1: also face 0 (IoU 0.82) but 0 took it: a duplicate, false positive
        [230, 0, 100, 100],    # 2: face 1, IoU 0.54
        [400, 0, 100, 100],    # 3: on the ignore region: neither way
        [420, 20, 40, 40],     # 4: small, wholly inside the ignore region (IoU 0.16): neither way
        [470, 0, 100, 100],    # 5: 30 % inside the ignore region, IoU 0.18: a false positive
    ])
    m = fss.match_frame(pred, faces, ignore, 0.5)
    assert sorted(m.pairs) == [(0, 0), (2, 1)]
    assert sorted(m.false_pos) == [1, 5] and sorted(m.ignored) == [3, 4] and m.missed == []
    assert m.counts == (2, 2, 0)
    # at IoU 0.6 face 1 is missed and its prediction becomes a false positive
    assert fss.match_frame(pred, faces, ignore, 0.6).counts == (1, 3, 1)


def test_match_frame_takes_the_best_pairs_first():
    # prediction 0 fits face 0 best (IoU 0.67) but prediction 1 fits it exactly: matching in prediction order
    # would leave prediction 1 only face 1 (IoU 0.25, no match); by IoU, 0 gets face 1 (IoU 0.43)
    faces = np.array([[0, 0, 100, 100], [60, 0, 100, 100]])
    pred = np.array([[20, 0, 100, 100], [0, 0, 100, 100]])
    m = fss.match_frame(pred, faces, np.zeros((0, 4)), 0.4)
    assert sorted(m.pairs) == [(0, 1), (1, 0)] and m.counts == (2, 0, 0)


def test_score_counts_frames_without_faces_and_drops_frames_outside_the_set(tmp_path):
    labels = _write_set(tmp_path / "set", [("clip.mp4", 0, 0.0), ("clip.mp4", 6, 0.2), ("other.mp4", 0, 0.0)], [
        ("clip.mp4", 0, 0.0, 1, 0, 10, 10, 40, 50, "face"),
        ("clip.mp4", 0, 0.0, 1, 1, 100, 10, 40, 50, "face"),
        ("clip.mp4", 0, 0.0, 1, -1, 300, 10, 60, 60, "ignore"),
    ])
    pred = pd.DataFrame({  # frames.parquet's column names: video as a file name, `frame`
        "video": ["clip.mp4", "clip.mp4", "clip.mp4", "clip.mp4", "clip.mp4", "other.mp4"],
        "frame": [0, 0, 0, 6, 12, 0],
        "x": [10, 108, 305, 50, 50, 5], "y": [10, 10, 15, 50, 50, 5], "w": [40, 40, 50, 30, 30, 30],
        "h": [50, 50, 50, 30, 30, 30], "score": [90, 60, 80, 40, 90, 95]})
    # row 1: IoU 0.67 with face 1; row 2 on the ignore region; row 3 on frame 6, which has no face: a false
    # positive; row 4 on frame 12, not in the set: dropped; row 5 on a frame of another video with no face
    out = fss.score(pred, labels)
    assert out["frames"] == 3 and out["faces"] == 2 and out["predictions_off_set"] == 1
    assert out["iou0.5"] == {"recall": 1.0, "precision": 0.5, "f1": 0.6667, "tp": 2, "fp": 2, "fn": 0, "on_ignore": 1}
    high = fss.score(pred, labels, min_score=85)  # the 90 on frame 0 and the 95 on other.mp4
    assert (high["iou0.4"]["tp"], high["iou0.4"]["fp"], high["iou0.4"]["fn"]) == (1, 1, 1)
    # stems match too, and the `frame_index` spelling
    by_stem = pred.rename(columns={"frame": "frame_index"}).assign(video=pred["video"].str.replace(".mp4", ""))
    assert fss.score(by_stem, labels)["iou0.5"] == out["iou0.5"]
    err = fss.errors(pred, labels, 0.5)
    assert sorted(err["what"]) == ["fp", "fp"]
    with pytest.raises(ValueError, match="frame_index"):
        fss.score(pred.drop(columns=["frame"]), labels)


def test_labels_are_well_formed():
    frames = pd.read_csv(LABELS / "frames.csv")
    labels = pd.read_csv(LABELS / "labels.csv")
    assert list(frames.columns) == ["video", "frame_index", "time_s"]
    assert list(labels.columns) == ["video", "frame_index", "time_s", "shot", "person", "x", "y", "w", "h", "kind"]
    assert not frames.duplicated(["video", "frame_index"]).any()
    assert len(frames) == 131 and set(frames["video"]) == {"short_hamilton_clip.mp4", "pbs_oval_office_clip.mp4"}
    # every label's frame is listed, with the same time
    merged = labels.merge(frames, on=["video", "frame_index"], how="left", suffixes=("", "_frame"))
    assert merged["time_s_frame"].notna().all(), "a label's frame is missing from frames.csv"
    assert np.allclose(merged["time_s"], merged["time_s_frame"])
    assert set(labels["kind"]) == {"face", "ignore"}
    for video in set(labels["video"]):
        width, height = FRAME_SIZE
        if (VIDEOS / video).is_file():
            import cv2

            cap = cv2.VideoCapture(str(VIDEOS / video))
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            cap.release()
        boxes = labels[labels["video"] == video]
        assert (boxes["x"] >= 0).all() and (boxes["y"] >= 0).all() and (boxes["w"] > 0).all() and (boxes["h"] > 0).all()
        assert (boxes["x"] + boxes["w"] <= width).all() and (boxes["y"] + boxes["h"] <= height).all()
    faces = labels[labels["kind"] == "face"]
    assert (faces["h"] >= 20).all() and (faces["person"] >= 0).all() and (labels["shot"] >= 1).all()
    assert not faces.duplicated(["video", "frame_index", "shot", "person"]).any(), "a person twice in one frame"
    # every label lies in its shot's frame span (shots.csv), and the spans tile each video without gaps
    shots = pd.read_csv(LABELS / "shots.csv")
    spans = labels.merge(shots, on=["video", "shot"], how="left")
    assert spans["first_frame"].notna().all(), "a label's shot is missing from shots.csv"
    assert ((spans["frame_index"] >= spans["first_frame"]) & (spans["frame_index"] <= spans["last_frame"])).all()
    for video, g in shots.sort_values("shot").groupby("video"):
        first, last = g["first_frame"].to_numpy(), g["last_frame"].to_numpy()
        assert first[0] == 0 and (first[1:] == last[:-1] + 1).all(), video
        assert frames.loc[frames["video"] == video, "frame_index"].max() <= g["last_frame"].iloc[-1]


@pytest.mark.slow
def test_labelled_frames_are_the_frames_fertune_video_samples():
    if not all((VIDEOS / v).is_file() for v in ("short_hamilton_clip.mp4", "pbs_oval_office_clip.mp4")):
        pytest.skip(f"clips absent: {VIDEOS}")
    from fer_core.video_frames import sample_frames

    frames = pd.read_csv(LABELS / "frames.csv")
    for video, want in frames.groupby("video"):
        got = [(index, round(t, 4)) for index, t, _ in sample_frames(VIDEOS / video, fss.SAMPLE_FPS)]
        assert got == list(zip(want["frame_index"], want["time_s"])), video
