"""The training loop on synthetic faces: it learns, it checkpoints as SPEC.md says, focus sampling works."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_core import config
from fer_core.checkpoint import load_checkpoint, model_from_checkpoint
from fer_core.device import use_bf16, use_channels_last
from fer_core.evaluate import evaluate
from fer_core.sampling import epoch_indices, focus_weights
from fer_core.train import fit, lr_factor, validate


def test_cnn_small_learns_synthetic_faces(demo_data, trained_run):
    """Acceptance: cnn_small, 2,000 synthetic train images, 3 epochs, seed 0 -> > 80 % on 1,000 test images
    (the session's trained_run fixture is exactly that training)."""
    cfg, result, tmp_path = trained_run.cfg, trained_run.result, trained_run.path
    report = evaluate(tmp_path, demo_data, tta=True).report
    assert report["split"] == "test" and report["n"] == 1000
    assert report["accuracy"] > 0.80, report["accuracy"]
    assert result.epochs_done == 3
    # the SPEC.md checkpoint: plain types, loadable with weights_only, the model rebuilt from the file alone
    ckpt = load_checkpoint(tmp_path / "weights" / "last.pt")
    for key in ("format", "model_name", "model_kwargs", "classes", "preprocess", "config", "state_dict", "optimizer",
                "scheduler", "scaler", "sampler_weights", "epoch", "best_metric", "best_epoch", "rng", "metrics"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 3 and ckpt["preprocess"] == {"img_size": 48, "mean": cfg.mean, "std": cfg.std, "gray": True}
    model = model_from_checkpoint(load_checkpoint(tmp_path / "weights" / "best.pt"))
    # the final evaluation computes as training validated (bf16 autocast where the CPU has native bf16)
    bf16, channels_last = use_bf16(cfg, torch.device("cpu")), use_channels_last(cfg, model)
    model = model.to(memory_format=torch.channels_last) if channels_last else model
    again = validate(model, demo_data.test, cfg, bf16=bf16, channels_last=channels_last)
    assert again.accuracy(demo_data.test.labels) == pytest.approx(report["accuracy"])
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,lr,train_loss,train_acc,val_loss,val_acc,val_macro_f1,seconds" and len(rows) == 4


def test_focus_weights_pick_the_weakest_classes_and_reset():
    f1 = np.array([0.9, 0.1, 0.5, 0.95, 0.2, 0.7, 0.8])
    assert focus_weights(f1, 2, 4.0).tolist() == [1, 4, 1, 1, 4, 1, 1]
    assert focus_weights(f1, 0, 4.0).tolist() == [1.0] * 7
    labels = np.repeat(np.arange(7), 100)
    order = epoch_indices(labels, focus_weights(f1, 2, 4.0), np.random.default_rng(0))
    drawn = np.bincount(labels[order], minlength=7)
    assert len(order) == 700 and drawn[1] > 2.5 * drawn[0] and drawn[4] > 2.5 * drawn[6]
    plain = epoch_indices(labels, np.ones(7), np.random.default_rng(0))
    assert sorted(plain.tolist()) == list(range(700))  # a plain shuffle: every image once


def test_focus_training_records_sampler_weights(demo_data, tmp_path):
    cfg = config.resolve({"model": "cnn_small", "epochs": 2, "focus_k": 2, "focus_weight": 4.0, "train_subset": 400,
                          "batch_size": 32})
    fit(cfg, demo_data, run_dir=tmp_path, log=lambda s: None)
    weights = load_checkpoint(tmp_path / "weights" / "last.pt")["sampler_weights"]
    assert sorted(weights) == [1.0] * 5 + [4.0] * 2


def test_report_is_called_every_epoch_with_the_checkpoint(demo_data, tmp_path):
    seen = []
    cfg = config.resolve({"model": "cnn_small", "epochs": 2, "train_subset": 300, "batch_size": 32})
    fit(cfg, demo_data, run_dir=tmp_path, report=lambda row, path: seen.append((row["epoch"], path)), log=lambda s: None)
    assert [e for e, _ in seen] == [1, 2]
    assert all(p.endswith("last.pt") for _, p in seen)


def test_schedules():
    cfg = config.resolve({"epochs": 10, "lr": 1.0, "lr_min": 0.0})
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.0)
    warm = config.resolve({"epochs": 10, "lr": 1.0, "lr_min": 0.0, "scheduler": "onecycle", "warmup_epochs": 1})
    assert lr_factor(warm, 4, 100, 10) == pytest.approx(0.5) and lr_factor(warm, 9, 100, 10) == pytest.approx(1.0)
    wsd = config.resolve({"epochs": 10, "lr": 1.0, "lr_min": 0.0, "scheduler": "wsd", "decay_fraction": 0.2})
    assert [lr_factor(wsd, s, 100, 10) for s in (0, 50, 80)] == pytest.approx([1.0, 1.0, 1.0])
    assert lr_factor(wsd, 90, 100, 10) == pytest.approx(0.5) and lr_factor(wsd, 100, 100, 10) == pytest.approx(0.0)


def test_bf16_autocast_and_eval_agree_on_cpu(demo_data, tmp_path):
    """A run trained with amp=bf16 is scored in bf16 by every scorer ("auto" precision), exactly as its
    epochs were validated; "fp32" scores it in fp32, which gives other (close) probabilities."""
    from fer_core.data import FerData, Split

    # small splits: bf16 is emulated (slow) on CPUs without native bf16
    data = FerData(Split(demo_data.train.images[:64], demo_data.train.labels[:64]),
                   Split(demo_data.val.images[:100], demo_data.val.labels[:100]), None, "demo")
    cfg = config.resolve({"model": "cnn_small", "epochs": 1, "batch_size": 32, "amp": "bf16"})
    result = fit(cfg, data, run_dir=tmp_path, log=lambda s: None)
    assert result.epochs_done == 1 and np.isfinite(result.best_metric)
    auto = evaluate(tmp_path, data, "val", device="cpu")
    assert auto.report["precision"] == "bf16"
    model = model_from_checkpoint(load_checkpoint(tmp_path / "weights" / "best.pt"))
    channels_last = use_channels_last(cfg, model)
    model = model.to(memory_format=torch.channels_last) if channels_last else model
    validated = validate(model, data.val, cfg, bf16=True, channels_last=channels_last)
    assert np.allclose(auto.probs, validated.probs, atol=1e-6)
    assert auto.report["accuracy"] == pytest.approx(result.history[-1]["val_acc"])
    fp32 = evaluate(tmp_path, data, "val", device="cpu", precision="fp32")
    assert fp32.report["precision"] == "fp32"
    gap = np.abs(fp32.probs - auto.probs).max()
    assert 0 < gap < 0.05, gap


def test_real_data_smoke(fer_parquet, tmp_path):
    """A few hundred real FER2013 images through the whole loop (skips without ../shared)."""
    from fer_core.data import load_data

    data = load_data(fer_parquet)
    cfg = config.resolve({"model": "cnn_small", "epochs": 1, "train_subset": 400, "batch_size": 32})
    result = fit(cfg, data, run_dir=tmp_path, log=lambda s: None)
    report = evaluate(tmp_path, data, tta=True).report
    assert result.epochs_done == 1 and report["n"] == 3589 and report["split"] == "test"
    assert sum(row["support"] for row in report["per_class"].values()) == 3589


def test_pretrained_backbone_is_frozen_for_freeze_epochs_then_trained(demo_data, tmp_path):
    """Staged freeze/unfreeze: with pretrained weights the backbone stays fixed for freeze_epochs."""
    from torchvision.models import resnet18

    from fer_core.data import FerData, Split

    weights = tmp_path / "imagenet.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    small = FerData(Split(demo_data.train.images[:64], demo_data.train.labels[:64]),
                    Split(demo_data.val.images[:32], demo_data.val.labels[:32]), None, "demo")
    start = torch.load(weights, weights_only=True)["layer4.1.conv2.weight"]
    cfg = config.resolve({"model": "resnet18", "pretrained": str(weights), "freeze_epochs": 1, "epochs": 2,
                          "batch_size": 16, "eval_batch_size": 32, "patience": 0})
    backbone = []
    fit(cfg, small, run_dir=tmp_path / "run",
        report=lambda row, path: backbone.append(torch.load(path, weights_only=True)["state_dict"]), log=lambda s: None)
    key = "backbone.layer4.1.conv2.weight"
    assert torch.equal(backbone[0][key], start)          # epoch 1: frozen
    assert not torch.equal(backbone[1][key], start)      # epoch 2: trained
    assert not torch.equal(backbone[0]["head.5.weight"], backbone[1]["head.5.weight"])


def test_init_weights_starts_from_a_trained_model_and_refuses_another_architecture(demo_data, trained_run, tmp_path):
    """init_weights (fine-tuning, a refit continuing its trial): a near-zero learning rate keeps the trained
    run's accuracy, where the same run from fresh weights is near chance; a different head is refused."""
    common = {"model": "cnn_small", "epochs": 1, "lr": 1e-9, "lr_min": 1e-10, "train_subset": 140, "seed": 1}
    tuned = fit(config.resolve({**common, "init_weights": str(trained_run.path)}), demo_data, log=lambda *a: None)
    fresh = fit(config.resolve(common), demo_data, log=lambda *a: None)
    assert tuned.history[-1]["val_acc"] > 0.75 > 0.35 > fresh.history[-1]["val_acc"]
    with pytest.raises(ValueError, match="head_width"):
        fit(config.resolve({**common, "head_width": 64, "init_weights": str(trained_run.path)}), demo_data,
            log=lambda *a: None)
    with pytest.raises(ValueError, match="model=cnn_small"):
        fit(config.resolve({"model": "resnet18", "init_weights": str(trained_run.path)}), demo_data,
            log=lambda *a: None)
