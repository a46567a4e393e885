"""`fertune video` settings have one home (fer_core.video_settings.VideoSettings): the CLI's flags, fer_core's
defaults, the docs table and the key all follow it. Crops are cut at the model's input size."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli
from fer_core import runs
from fer_core.settings import docs_table, flag_name, from_namespace
from fer_core.video_settings import VideoSettings

FLAG_ROW = "| `--"


def video_args(*flags: str):
    from jobs.cli import build_parser

    return build_parser().parse_args(["video", "in.mp4", "--model", "m.pt", "--out", "o", *flags])


def test_flags_are_generated_from_the_settings(capsys):
    assert from_namespace(VideoSettings, video_args()) == VideoSettings()
    given = from_namespace(VideoSettings, video_args("--sample-fps", "2.5", "--window", "4", "--detector", "haar-full",
                                                     "--detect-every", "3", "--min-face", "40", "--face-score", "0.6",
                                                     "--detect-scale", "0.75", "--no-plots", "--batch-size", "8",
                                                     "--gpus-per-worker", "0.5"))
    assert given == VideoSettings(sample_fps=2.5, window=4, detector="haar-full", detect_every=3, min_face=40,
                                  face_score=0.6, detect_scale=0.75, plots=False, batch_size=8, gpus_per_worker=0.5)
    from jobs.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "-h"])
    def squeezed(text: str) -> str:  # argparse wraps lines, also after hyphens
        return "".join(text.split())

    shown = squeezed(capsys.readouterr().out)
    for f in fields(VideoSettings):  # every setting is a flag, its help showing the one default
        metavar, default = f.metadata["metavar"] or f.name.upper(), "none" if f.default is None else f.default
        flag = (f"{flag_name(f.name)}, --no-{flag_name(f.name)[2:]}" if isinstance(f.default, bool)
                else f"{flag_name(f.name)} {metavar}")
        assert squeezed(f"{flag} {f.metadata['help']} (default {default})") in shown


def test_docs_table_is_the_settings_table():
    doc = (REPO / "docs" / "video.md").read_text()
    table = docs_table(VideoSettings)
    assert table in doc, "docs/video.md: paste the output of docs_table(VideoSettings) over its flag table"
    # no second, stale table of flags elsewhere in the page
    assert [line for line in doc.splitlines() if line.startswith(FLAG_ROW)] == \
        [line for line in table.splitlines() if line.startswith(FLAG_ROW)]


def test_fer_core_defaults_are_the_settings_defaults():
    from fer_core import detector_settings, faces, temporal
    from fer_core.face_finder import EveryFrame, FaceFinder, finder_for
    from fer_core.video_frames import find_faces_in_video

    defaults = VideoSettings()
    assert FaceFinder().detect_every == replace(defaults, detector="haar").key_frame_interval
    assert FaceFinder().min_size == faces.MIN_SIZE == faces.FaceDetector().min_size == defaults.min_face
    assert defaults.detector == detector_settings.DEFAULT_DETECTOR == "auto"
    assert (defaults.face_score, defaults.detect_scale) == (detector_settings.YUNET_MIN_SCORE,
                                                            detector_settings.VIDEO_DETECT_SCALE)
    assert inspect.signature(temporal.add_temporal).parameters["window"].default == defaults.window
    params = inspect.signature(find_faces_in_video).parameters
    assert params["settings"].default is None  # None: VideoSettings().resolved()
    assert params["crop_size"].default is inspect.Parameter.empty  # always the model's size, never a default
    assert VideoSettings(detector="haar-full").key_frame_interval == 1
    haar = finder_for(VideoSettings(detector="haar").resolved())
    assert isinstance(haar, FaceFinder) and haar.detect_every == 20
    if faces.yunet.available():
        found = finder_for(defaults.resolved())
        assert isinstance(found, EveryFrame) and defaults.key_frame_interval == 1
        assert found.detector == faces.FaceDetector("yunet", defaults.face_score, defaults.detect_scale,
                                                    defaults.min_face)


@pytest.mark.parametrize("flags, message", [
    (["--detector", "yolo"], "unknown --detector 'yolo'; available: auto, yunet, haar, haar-full"),
    (["--sample-fps", "0"], "--sample-fps must be > 0, got 0.0"),
    (["--window", "0"], "--window must be >= 1 sampled frame, got 0"),
    (["--detect-every", "0"], "--detect-every must be >= 1, got 0"),
    (["--detector", "haar", "--min-face", "12"], "--min-face must be >= 24 px (the Haar cascade's window), got 12"),
    (["--min-face", "0"], "--min-face must be >= 1 px, got 0"),
    (["--face-score", "1.5"], "--face-score must be in 0..1, got 1.5"),
    (["--detect-scale", "0"], "--detect-scale must be in (0, 1], got 0.0"),
    (["--detector", "yunet", "--detect-every", "5"], "--detect-every is haar's key-frame interval, and the detector "
                                                     "is yunet (--detector yunet), which runs on every sampled frame: "
                                                     "drop --detect-every or pick --detector haar"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_bad_settings_name_the_flag(flags, message):
    with pytest.raises(ValueError) as err:
        from_namespace(VideoSettings, video_args(*flags))
    assert str(err.value).startswith(message)


def test_key_changes_with_every_output_setting_and_only_those(tmp_path):
    from jobs.video import input_key

    names = [f.name for f in fields(VideoSettings)]
    assert sorted(names) == sorted(VideoSettings.OUTPUT_FIELDS + VideoSettings.RUN_FIELDS)  # each one decided
    # Earlier versions keyed haar runs on exactly these values: their folders stay valid (no redo on upgrade).
    assert VideoSettings(detector="haar").output_settings() == {"sample_fps": 5.0, "window": 10, "detector": "haar",
                                                                "detect_every": 20, "min_face": 30}
    assert VideoSettings(detector="haar", plots=False).output_settings()["plots"] is False
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    model_sig = [{"path": "m.pt", "size": 1, "mtime_ns": 1}]

    def key(base: VideoSettings, **changes) -> str:
        return input_key(str(video), model_sig, replace(base, **changes).output_settings())

    changed = {"sample_fps": 2.0, "window": 3, "detector": "haar-full", "detect_every": 5, "min_face": 40,
               "face_score": 0.5, "detect_scale": 1.0, "plots": False, "batch_size": 8, "gpus_per_worker": 1.0}
    assert set(changed) == set(names)
    haar = VideoSettings(detector="haar")
    for name, value in changed.items():
        if name in ("face_score", "detect_scale"):  # YuNet's settings: they change nothing with Haar
            assert key(haar, **{name: value}) == key(haar), flag_name(name)
            continue
        assert (key(haar, **{name: value}) != key(haar)) == (name in VideoSettings.OUTPUT_FIELDS), flag_name(name)
    assert key(haar, sample_fps=5) == key(haar)  # 5 and 5.0 are the same setting
    assert key(haar, detect_every=20) == key(haar)  # haar's own interval, given or not
    from fer_core import yunet

    if yunet.available():  # auto is yunet: the key names yunet and its settings, so they change it
        auto = VideoSettings()
        assert auto.output_settings()["detector"] == "yunet" and key(auto) == key(auto, detector="yunet")
        assert key(auto) != key(haar)
        for name in ("face_score", "detect_scale", "min_face", "plots"):
            assert key(auto, **{name: changed[name]}) != key(auto), flag_name(name)


@pytest.fixture(scope="module")
def model_64(tmp_path_factory) -> Path:
    """cnn_small trained 1 epoch on the demo faces at img_size 64 (its checkpoint's preprocess says 64)."""
    from fer_core.config import resolve
    from fer_core.data import load_data
    from fer_core.train import fit

    run = tmp_path_factory.mktemp("model_64") / "run"
    fit(resolve({"model": "cnn_small", "epochs": 1, "batch_size": 32, "train_subset": 300, "img_size": 64}),
        load_data("demo", img_size=64), run_dir=run, log=lambda *a: None)
    return run


@pytest.mark.long  # ~40 s: trains a 64-px model, then a video job; CI runs it
def test_video_crops_at_the_models_img_size(model_64, tmp_path):
    """The classifier gets 64 px crops cut from the frame, not 48 px crops resized to 64."""
    from fer_core.faces import crop_face, to_gray
    from fer_core.infer import Predictor
    from fer_core.labels import CLASSES
    from fer_core.synthetic_scenes import make_scene_video
    from fer_core.video_frames import sample_frames

    video = tmp_path / "scene.mp4"
    make_scene_video(video, [(CLASSES.index("happy"), 1.5), (CLASSES.index("sad"), 1.5)], fps=10, seed=3)
    out = tmp_path / "out"
    res = run_cli("video", str(video), "--model", str(model_64), "--out", str(out), cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    row = pd.read_parquet(out / runs.MANIFEST).iloc[0]
    assert row.status == "ok", row.reason
    folder = Path(row.out_dir)
    settings = json.loads((folder / runs.SUMMARY).read_text())["settings"]
    assert settings["crop_size"] == 64
    from fer_core.detector_settings import CROP_MARGIN

    margin = settings["crop_margin"]  # the detector's margin: the crops the classifier got are cut with it
    assert margin == CROP_MARGIN["yunet" if settings["detector"] == "yunet" else "haar"]
    frames = pd.read_parquet(folder / runs.FRAMES)
    assert len(frames) >= 10

    predictor = Predictor(model_64, device="cpu")
    assert predictor.img_size == 64
    grays = {index: to_gray(image) for index, _, image in sample_frames(video, VideoSettings.sample_fps)}

    def probs(size: int) -> np.ndarray:
        boxes = frames[["x", "y", "w", "h"]].to_numpy()
        return predictor.predict_crops(np.stack([crop_face(grays[f], tuple(b), size, margin)
                                                 for f, b in zip(frames["frame"], boxes)]))

    got = frames[[f"p_{c}" for c in CLASSES]].to_numpy(np.float32)
    atol = 1e-5  # fp32 on CPU; the job classifies on one thread, in other batches
    np.testing.assert_allclose(got, probs(64), atol=atol)
    # 48 px crops resized to 64 (the old fixed size) differ by ~1e-3 with this 1-epoch model: the check above
    # tells the two apart
    assert np.abs(got - probs(48)).max() > 20 * atol


def test_auto_without_yunet_keys_as_haar(tmp_path):
    """Without the YuNet wheel `--detector auto` is the haar finder, keyed exactly as a haar run (so earlier
    outputs stay valid), with one notice."""
    from test_faces import python_without_yunet

    code = ("from fer_core.video_settings import VideoSettings\n"
            "s = VideoSettings()\n"
            "print(s.output_settings(), s.key_frame_interval)\n")
    res = python_without_yunet(tmp_path, code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(VideoSettings(detector="haar").output_settings()) + " 20"
    assert res.stderr.count("YuNet face detector unavailable") == 1, res.stderr
