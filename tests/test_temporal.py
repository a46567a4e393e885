"""fer_core.temporal and fer_core.video_frames: tracks, smoothing, segments, summaries, timestamp sampling,
and the fast face finder against full-frame Haar (no Ray, no model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer_core import temporal
from fer_core.labels import CLASSES
from fer_core.synthetic_scenes import make_scene_video
from fer_core.face_finder import FaceFinder
from fer_core.video_frames import VideoInfo, check_input, container_kind, sample_frames


def test_iou_and_tracker_keeps_ids_through_motion_and_gaps():
    assert temporal.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert temporal.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert temporal.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    tr = temporal.Tracker(max_gap_s=1.0)
    assert tr.update(0.0, [(100, 100, 50, 50), (10, 10, 40, 40)]) == [0, 1]
    assert tr.update(0.2, [(12, 11, 40, 40), (104, 102, 50, 50)]) == [1, 0]  # order of boxes does not matter
    assert tr.update(0.4, [(130, 100, 50, 50)]) == [0]                        # a fast move: near, same size
    assert tr.update(1.2, [(132, 100, 50, 50)]) == [0]                        # gap 0.8 s <= 1 s: same face
    assert tr.update(3.0, [(132, 100, 50, 50)]) == [2]                        # gap 1.8 s: a new face
    assert tr.update(3.2, [(14, 10, 40, 40)]) == [3]                          # face 1 expired long ago


def test_tracks_end_at_a_shot_cut():
    tr = temporal.Tracker()
    assert tr.update(0.0, [(100, 100, 50, 50)], shot=0) == [0]
    assert tr.update(0.2, [(102, 100, 50, 50)], shot=0) == [0]
    assert tr.update(0.4, [(102, 100, 50, 50)], shot=1) == [1]  # same place, after a cut: someone else
    assert tr.update(0.6, [(104, 100, 50, 50)], shot=1) == [1]


def test_a_missed_face_moves_with_the_camera():
    """During a zoom, a face the detector misses for a few frames is found again where the camera took it: the
    other faces' motion (scale about a point plus a shift) carries its track's box along."""
    def zoom(box, s):  # the camera zooms by s about (0, 0) between samples
        return tuple(int(round(v * s)) for v in box)

    a, b, c = (40, 40, 40, 40), (200, 50, 40, 40), (120, 100, 40, 40)
    tr = temporal.Tracker()
    assert tr.update(0.0, [a, b, c]) == [0, 1, 2]
    for step in range(1, 5):  # c is missed for 4 samples while the camera zooms in 8 % a sample
        a, b, c = zoom(a, 1.08), zoom(b, 1.08), zoom(c, 1.08)
        assert tr.update(0.2 * step, [a, b]) == [0, 1]
    assert tr.update(1.0, [a, b, c]) == [0, 1, 2]
    assert temporal.iou(tr.tracks[2].box, c) > 0.9
    without = temporal.Tracker()  # one face cannot tell a camera move from the person moving: no carrying
    without.update(0.0, [a, (400, 400, 40, 40)])
    without.update(0.2, [(a[0] + 30, a[1], 40, 40)])
    assert without.tracks[1].box == (400, 400, 40, 40)


def test_camera_motion_is_the_median_of_the_faces():
    boxes = [(0, 0, 10, 10), (100, 0, 10, 10), (0, 100, 10, 10)]
    moved = [temporal.moved(b, 1.1, 5, -3) for b in boxes]
    scale, tx, ty = temporal.camera_motion(list(zip(boxes, moved)))
    assert scale == pytest.approx(1.1, abs=0.01) and tx == pytest.approx(5, abs=1) and ty == pytest.approx(-3, abs=1)
    odd = list(zip(boxes, moved[:2] + [(60, 160, 10, 10)]))  # one face walks off on its own
    assert temporal.camera_motion(odd)[1:] == pytest.approx((5, -3), abs=1.5)
    assert temporal.camera_motion(odd[:1]) is None


def test_moving_average_is_centred_ema_follows_its_formula_and_deltas_diff():
    x = np.array([[0.0], [0.0], [3.0], [0.0], [0.0]], np.float32)
    np.testing.assert_allclose(temporal.moving_average(x, 3)[:, 0], [0, 1, 1, 1, 0])
    e = temporal.ema(x, 0.3)[:, 0]
    np.testing.assert_allclose(e, [0, 0, 0.9, 0.63, 0.441], rtol=1e-5)
    np.testing.assert_allclose(temporal.deltas(x)[:, 0], [0, 0, 3, -3, 0])
    with pytest.raises(ValueError, match="window"):
        temporal.moving_average(x, 0)


def _frames(labels_per_face: dict[int, list[int]], step: float = 0.2) -> pd.DataFrame:
    rows = []
    for face_id, labels in labels_per_face.items():
        for i, label in enumerate(labels):
            p = np.full(7, 0.05)
            p[label] = 0.7
            rows.append({"video": "v", "frame": i * 3, "t": i * step, "face_id": face_id, "x": 0, "y": 0, "w": 9,
                         "h": 9, **{f"p_{c}": v for c, v in zip(CLASSES, p)}})
    return pd.DataFrame(rows)


def test_add_temporal_segments_and_summary():
    happy, sad = CLASSES.index("happy"), CLASSES.index("sad")
    df = temporal.add_temporal(_frames({0: [happy] * 10 + [sad] * 10, 1: [sad] * 5}), window=3)
    assert list(df.columns) == temporal.FRAME_COLUMNS
    face0 = df[df.face_id == 0].sort_values("t")
    np.testing.assert_allclose(face0[temporal.S_COLS].sum(axis=1), 1.0, rtol=1e-5)
    assert face0["d_happy"].iloc[0] == 0 and face0["d_happy"].iloc[10] < 0
    segs = temporal.segments(df, 0.2)
    seg0 = segs[segs.face_id == 0]
    assert list(seg0.emotion) == ["happy", "sad"]
    # the label flips between t=1.8 and t=2.0; the centred window puts the boundary there
    assert seg0.end_t.iloc[0] == pytest.approx(1.9) and seg0.start_t.iloc[1] == pytest.approx(1.9)
    assert seg0.start_t.iloc[0] == 0.0 and seg0.end_t.iloc[1] == pytest.approx(3.9)
    summary = temporal.summarize(df, segs, duration=4.0, frames_sampled=20, video="v")
    assert summary["faces"] == 2 and summary["frames_sampled"] == 20 and summary["video"] == "v"
    assert summary["per_face"]["0"]["share"]["happy"] == pytest.approx(0.5, abs=0.03)
    assert summary["per_face"]["1"]["dominant"] == "sad"
    assert summary["transitions"] == [{"face_id": 0, "t": pytest.approx(1.9), "from": "happy", "to": "sad"}]


def test_segments_split_at_a_gap_in_the_track():
    happy = CLASSES.index("happy")
    df = temporal.add_temporal(_frames({0: [happy] * 5}), window=1)
    df.loc[df.t > 0.5, "t"] += 3.0  # the face is away for 3 s
    segs = temporal.segments(df, 0.2)
    assert len(segs) == 2 and segs.end_t.iloc[0] == pytest.approx(0.5)


def test_sampling_follows_timestamps(tmp_path):
    path = tmp_path / "ten.mp4"
    make_scene_video(path, [(3, 2.0)], fps=10)
    info = VideoInfo()
    got = [(i, round(t, 3)) for i, t, _ in sample_frames(path, 4, info)]
    # at 4 samples per second of a 10 fps file: the first frame at or after 0, 0.25, 0.5, ...
    assert got == [(0, 0.0), (3, 0.3), (5, 0.5), (8, 0.8), (10, 1.0), (13, 1.3), (15, 1.5), (18, 1.8)]
    assert info.frames_decoded == 20 and info.duration == pytest.approx(2.0) and info.timestamps_from == "container"


def test_input_checks(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello")
    assert check_input(tmp_path / "nope.mp4").startswith("missing")
    assert check_input(tmp_path / "empty.mp4").startswith("empty")
    assert check_input(tmp_path).startswith("not a file")
    assert check_input(tmp_path / "text.mp4") is None and container_kind(tmp_path / "text.mp4") is None
    make_scene_video(tmp_path / "v.mp4", [(3, 0.2)], fps=10)
    assert container_kind(tmp_path / "v.mp4") == "mp4/mov"


def _face_enters_at(frame: int, count: int) -> tuple[list[np.ndarray], tuple]:
    """`count` frames: face A on the left throughout, face B on the right from `frame` on; B's Haar box."""
    from fer_core.faces import haar_faces as detect_faces
    from fer_core.synthetic_scenes import render_scene

    rng = np.random.default_rng(3)
    left, _ = render_scene([(3, 90)], rng, 200, 240, background="plain")
    right, _ = render_scene([(4, 90)], rng, 200, 240, background="plain")
    empty = np.full_like(right, right[0, 0])
    frames = [np.clip(np.hstack([left, right if i >= frame else empty]).astype(np.int16)
                      + rng.integers(-2, 3, (240, 400, 3)), 0, 255).astype(np.uint8) for i in range(count)]
    b_box = [b for b in detect_faces(frames[-1]) if b[0] >= 200]
    assert len(b_box) == 1 and len(detect_faces(frames[0])) == 1  # the cascade sees A always, B once shown
    return frames, b_box[0]


@pytest.mark.parametrize("count", [11, 8])  # B found by the key frame at 10; by the closing pass on frame 7
def test_face_finder_backfills_a_face_that_appears_between_key_frames(count):
    frames, b_box = _face_enters_at(4, count)
    finder = FaceFinder(detect_every=10)
    found = finder.find_all(frames)
    with_b = [any(temporal.iou(b, b_box) >= 0.5 for b in boxes) for boxes in found]
    assert with_b == [False] * 4 + [True] * (count - 4)
    assert all(len(boxes) == 1 + has_b for boxes, has_b in zip(found, with_b))  # A in every frame
    assert finder.stats.full == 2  # frame 0, and frame 10 or the closing pass: the rest were window searches


def test_face_finder_holds_at_most_max_held_bytes_of_frames():
    frames, _ = _face_enters_at(4, 11)
    finder = FaceFinder(detect_every=10, max_held_bytes=3 * frames[0][..., 0].nbytes)
    settled = [len(finder.push(frame)) for frame in frames]
    assert settled == [1, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0]  # 3 frames held at most: the 4th is a key frame
    assert len(finder.finish()) == 2 and finder.stats.full == 4


def test_face_finder_finds_what_full_frame_haar_finds(tmp_path):
    from fer_core.faces import haar_faces as detect_faces

    path = tmp_path / "scene.mp4"
    make_scene_video(path, [(3, 3.0), (6, 3.0)], fps=10, size=(320, 240), face_px=90)
    frames = [image for _, _, image in sample_frames(path, 5)]
    finder = FaceFinder(detect_every=5)
    found = finder.find_all(frames)
    reference = [detect_faces(image) for image in frames]
    wanted = sum(len(r) for r in reference)
    hits = sum(any(temporal.iou(a, b) >= 0.5 for b in got) for ref, got in zip(reference, found) for a in ref)
    assert wanted >= 0.9 * len(frames) and hits >= 0.95 * wanted
    assert finder.stats.full < len(frames) / 2  # most frames used the cheap window search
