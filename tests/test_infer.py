"""Predictor: every --model form, batched crops equal the training loop's evaluation, whole images, TTA."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_core.device import use_bf16, use_channels_last
from fer_core.infer import Predictor
from fer_core.runs import resolve_checkpoints
from fer_core.train import validate


@pytest.fixture
def trained(trained_run):
    return trained_run.path, trained_run.cfg


def test_every_model_form_resolves(trained, tmp_path):
    run, _ = trained
    assert resolve_checkpoints(run)[0] == [run / "weights" / "best.pt"]
    assert resolve_checkpoints(run / "weights" / "last.pt")[0] == [run / "weights" / "last.pt"]
    ens = tmp_path / "ensemble"
    ens.mkdir()
    (ens / "members.json").write_text(json.dumps({"members": [{"checkpoint": str(run / "weights" / "best.pt")},
                                                              {"checkpoint": str(run / "weights" / "last.pt")}]}))
    assert len(Predictor(ens).members) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no model"):
        Predictor(tmp_path)


def test_crops_match_the_training_evaluation(trained, demo_data):
    run, cfg = trained
    predictor = Predictor(run, device="cpu")
    probs = predictor.predict_crops(demo_data.test.images[:300])
    assert probs.shape == (300, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    from fer_core.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(run / "weights" / "best.pt"))
    split = type(demo_data.test)(demo_data.test.images[:300], demo_data.test.labels[:300])
    # "auto" computes as training validated (bf16 autocast where the CPU has native bf16)...
    bf16, channels_last = use_bf16(cfg, torch.device("cpu")), use_channels_last(cfg, model)
    ref = validate(model.to(memory_format=torch.channels_last) if channels_last else model, split, cfg,
                   bf16=bf16, channels_last=channels_last)
    assert predictor.info()["precision"] == ("bf16" if bf16 else "fp32")
    assert np.allclose(probs, ref.probs, atol=1e-5)
    # ...and "fp32" is the exact reference computation
    exact = Predictor(run, device="cpu", precision="fp32")
    assert np.allclose(exact.predict_crops(split.images), validate(model.to(memory_format=torch.contiguous_format),
                                                                    split, cfg).probs, atol=1e-5)
    assert (probs.argmax(1) == demo_data.test.labels[:300]).mean() > 0.8
    tta = Predictor(run, device="cpu", tta=True).predict_crops(demo_data.test.images[:300])
    flipped = predictor.predict_crops(np.ascontiguousarray(demo_data.test.images[:300, :, ::-1]))
    assert np.allclose(tta, (probs + flipped) / 2, atol=1e-5)


def test_whole_images_detect_then_classify(trained):
    from fer_core.synthetic_scenes import render_scene

    run, _ = trained
    predictor = Predictor(run, device="cpu")
    rng = np.random.default_rng(3)
    scenes = [render_scene([(3, 110)], rng)[0], render_scene([(6, 100), (0, 90)], rng)[0]]
    results = predictor.predict_images(scenes)
    assert [len(r) for r in results] == [1, 2]
    face = results[0][0].to_dict()
    assert set(face) == {"box", "probs", "emotion", "score"} and len(face["probs"]) == 7
    whole = predictor.predict_image(scenes[0], faces=False)
    assert len(whole) == 1 and whole[0].box == (0, 0, 320, 240)
    assert predictor.predict_images([np.zeros((120, 160, 3), np.uint8)]) == [[]]  # no face: an empty list


def test_info_names_classes_and_metrics(trained):
    run, _ = trained  # its eval.json was written by fer_core.evaluate
    info = Predictor(run).info()
    assert info["classes"][0] == "angry" and info["metrics"]["split"] == "test" and info["config"]["model"] == "cnn_small"
