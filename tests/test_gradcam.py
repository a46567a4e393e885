"""Grad-CAM looks where the evidence is: synthetic happy and neutral faces differ only inside the mouth box
(fer_core.synthetic), so the map telling them apart must put most of its mass on the mouth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.gradcam import gradcam, mass_in_box, overlay
from fer_core.checkpoint import load_checkpoint, model_from_checkpoint
from fer_core.labels import CLASSES
from fer_core.synthetic import make_faces
from fer_core.infer import predict_probs

HAPPY, NEUTRAL = CLASSES.index("happy"), CLASSES.index("neutral")


@pytest.fixture
def trained(trained_run):
    ckpt = load_checkpoint(trained_run.path / "weights" / "best.pt")
    return model_from_checkpoint(ckpt), ckpt["preprocess"]


def test_heat_of_happy_versus_neutral_falls_in_the_mouth_box(trained):
    # happy is told apart from neutral only by its smile; neutral's evidence is the *absence* of one,
    # which has no place to point at, so the check is made on happy
    cls, other = HAPPY, NEUTRAL
    model, pre = trained
    images, labels, boxes = make_faces(210, seed=123)  # faces the model never saw
    probs, _ = predict_probs(model, images, pre["mean"], pre["std"])
    right = np.flatnonzero((labels == cls) & (probs.argmax(1) == cls))
    assert len(right) >= 15, f"only {len(right)} correct {CLASSES[cls]} faces: the model is undertrained"
    # evidence for cls rather than the class it differs from only at the mouth
    heat = gradcam(model, images[right], [cls] * len(right), pre["mean"], pre["std"], versus=[other] * len(right))
    shares = [mass_in_box(h, boxes[i]["mouth"]) for h, i in zip(heat, right)]
    mouth_area = np.mean([boxes[i]["mouth"][2] * boxes[i]["mouth"][3] / 48 ** 2 for i in right])
    assert np.mean(shares) >= 0.5, (np.mean(shares), mouth_area)
    assert np.mean(shares) > 3 * mouth_area  # far above what a uniform map would put there


def test_explained_layer_keeps_half_the_input_resolution(trained):
    from analysis.gradcam import explain_layer

    model, _ = trained
    layer = explain_layer(model, 48)
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 48, 48))
    handle.remove()
    assert seen["shape"][-2:] == (24, 24) and layer is not model.gradcam_layer()


def test_heat_maps_are_normalised_and_sized_like_the_input(trained):
    model, pre = trained
    images, labels, _ = make_faces(10, seed=5)
    heat = gradcam(model, images, labels, pre["mean"], pre["std"], batch_size=4)
    assert heat.shape == images.shape and heat.dtype == np.float32
    assert (heat >= 0).all()
    sums = heat.sum(axis=(1, 2))
    assert np.all((np.abs(sums - 1) < 1e-4) | (sums == 0)) and (sums > 0).sum() >= 8
    rgb = overlay(images[0], heat[0])
    assert rgb.shape == (48, 48, 3) and 0 <= rgb.min() and rgb.max() <= 1


def test_mass_in_box_counts_the_pixels_inside():
    heat = np.zeros((48, 48), np.float32)
    heat[30:34, 20:28] = 1.0     # 32 px inside the box below
    heat[0:2, 0:8] = 1.0         # 16 px outside
    assert mass_in_box(heat, (18, 28, 14, 10)) == pytest.approx(32 / 48)
    assert mass_in_box(np.zeros((48, 48)), (0, 0, 48, 48)) == 0.0


def test_model_without_a_gradcam_layer_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    with pytest.raises(ValueError, match="gradcam_layer"):
        gradcam(model, np.zeros((1, 48, 48), np.uint8), [0], 0.5, 0.25)


def test_hirescam_is_gradcam_at_a_globally_pooled_layer(trained):
    # Why the default is HiResCAM and still Grad-CAM where Grad-CAM is defined by its paper: when global
    # average pooling follows the layer (ResNet), every position of a channel gets the same gradient, so
    # keeping it per position changes nothing. cnn_small flattens instead, and there the two differ.
    from fer_core.models import create_model

    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    resnet = create_model("resnet18").eval()
    layer = resnet.gradcam_layer()
    maps = {m: gradcam(resnet, images, [0, 3, 6], 0.5, 0.25, layer=layer, method=m) for m in ("gradcam", "hirescam")}
    assert maps["hirescam"].sum() > 0
    np.testing.assert_allclose(maps["hirescam"], maps["gradcam"], atol=1e-6)
    model, pre = trained
    faces, labels, _ = make_faces(3, seed=1)
    flat = {m: gradcam(model, faces, labels, pre["mean"], pre["std"], layer=model.gradcam_layer(), method=m)
            for m in ("gradcam", "hirescam")}
    assert np.abs(flat["hirescam"] - flat["gradcam"]).max() > 1e-3
