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
                                                     "--detect-every", "3", "--min-face", "40", "--batch-size", "8",
                                                     "--gpus-per-worker", "0.5"))
    assert given == VideoSettings(sample_fps=2.5, window=4, detector="haar-full", detect_every=3, min_face=40,
                                  batch_size=8, gpus_per_worker=0.5)
    from jobs.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "-h"])
    def squeezed(text: str) -> str:  # argparse wraps lines, also after hyphens
        return "".join(text.split())

    shown = squeezed(capsys.readouterr().out)
    for f in fields(VideoSettings):  # every setting is a flag, its help showing the one default
        metavar, default = f.metadata["metavar"] or f.name.upper(), "none" if f.default is None else f.default
        assert squeezed(f"{flag_name(f.name)} {metavar} {f.metadata['help']} (default {default})") in shown


def test_docs_table_is_the_settings_table():
    doc = (REPO / "docs" / "video.md").read_text()
    table = docs_table(VideoSettings)
    assert table in doc, "docs/video.md: paste the output of docs_table(VideoSettings) over its flag table"
    # no second, stale table of flags elsewhere in the page
    assert [line for line in doc.splitlines() if line.startswith(FLAG_ROW)] == \
        [line for line in table.splitlines() if line.startswith(FLAG_ROW)]


def test_fer_core_defaults_are_the_settings_defaults():
    from fer_core import faces, temporal
    from fer_core.face_finder import FaceFinder
    from fer_core.video_frames import find_faces_in_video

    defaults = VideoSettings()
    assert FaceFinder().detect_every == defaults.key_frame_interval == replace(defaults, detector="haar").key_frame_interval
    assert FaceFinder().min_size == faces.MIN_SIZE == defaults.min_face
    assert inspect.signature(temporal.add_temporal).parameters["window"].default == defaults.window
    params = inspect.signature(find_faces_in_video).parameters
    assert (params["sample_fps"].default, params["detect_every"].default, params["min_size"].default) == \
        (defaults.sample_fps, defaults.key_frame_interval, defaults.min_face)
    assert params["crop_size"].default is inspect.Parameter.empty  # always the model's size, never a default
    assert VideoSettings(detector="haar-full").key_frame_interval == 1


@pytest.mark.parametrize("flags, message", [
    (["--detector", "yolo"], "unknown --detector 'yolo'; available: haar, haar-full"),
    (["--sample-fps", "0"], "--sample-fps must be > 0, got 0.0"),
    (["--window", "0"], "--window must be >= 1 sampled frame, got 0"),
    (["--detect-every", "0"], "--detect-every must be >= 1, got 0"),
    (["--min-face", "12"], "--min-face must be >= 24 px (the Haar cascade's window), got 12"),
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
    # Earlier versions keyed on exactly these values: their finished folders stay valid (no redo on upgrade).
    assert VideoSettings().output_settings() == {"sample_fps": 5.0, "window": 10, "detector": "haar",
                                                 "detect_every": 20, "min_face": 30}
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    model_sig = [{"path": "m.pt", "size": 1, "mtime_ns": 1}]

    def key(**changes) -> str:
        return input_key(str(video), model_sig, replace(VideoSettings(), **changes).output_settings())

    base = key()
    changed = {"sample_fps": 2.0, "window": 3, "detector": "haar-full", "detect_every": 5, "min_face": 40,
               "batch_size": 8, "gpus_per_worker": 1.0}
    assert set(changed) == set(names)
    for name, value in changed.items():
        assert (key(**{name: value}) != base) == (name in VideoSettings.OUTPUT_FIELDS), flag_name(name)
    assert key(sample_fps=5) == base  # 5 and 5.0 are the same setting
    assert key(detect_every=20) == base  # haar's own interval, given or not


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
    assert json.loads((folder / runs.SUMMARY).read_text())["settings"]["crop_size"] == 64
    frames = pd.read_parquet(folder / runs.FRAMES)
    assert len(frames) >= 10

    predictor = Predictor(model_64, device="cpu")
    assert predictor.img_size == 64
    grays = {index: to_gray(image) for index, _, image in sample_frames(video, VideoSettings.sample_fps)}

    def probs(size: int) -> np.ndarray:
        boxes = frames[["x", "y", "w", "h"]].to_numpy()
        return predictor.predict_crops(np.stack([crop_face(grays[f], tuple(b), size)
                                                 for f, b in zip(frames["frame"], boxes)]))

    got = frames[[f"p_{c}" for c in CLASSES]].to_numpy(np.float32)
    atol = 1e-5  # fp32 on CPU; the job classifies on one thread, in other batches
    np.testing.assert_allclose(got, probs(64), atol=atol)
    # 48 px crops resized to 64 (the old fixed size) differ by ~1e-3 with this 1-epoch model: the check above
    # tells the two apart
    assert np.abs(got - probs(48)).max() > 20 * atol
