from __future__ import annotations

import pytest

from fer_core import config
from fer_core.models import model_preset


def test_defaults_are_the_seed_recipe():
    cfg = config.resolve({})
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_min, cfg.weight_decay) == ("resnet18", 50, 64, 2e-4, 1e-6, 1e-4)
    assert (cfg.dropout, cfg.head_width, cfg.label_smoothing, cfg.erase_p, cfg.erase_scale) == (0.5, 256, 0.1, 0.3, [0.02, 0.15])
    assert (cfg.mean, cfg.std, cfg.patience, cfg.grad_clip, cfg.freeze_epochs) == (0.507, 0.255, 10, 1.0, 5)


def test_set_parses_types_and_model_preset_applies_under_user_values():
    over = config.parse_set(["model=cnn_small", "lr=3e-4", "flip=false", "erase_scale=0.05,0.2", "dropout2=null"])
    cfg = config.resolve(over)
    assert cfg.lr == 3e-4 and cfg.flip is False and cfg.erase_scale == [0.05, 0.2] and cfg.dropout2 is None
    preset = model_preset("cnn_small")
    assert all(getattr(cfg, k) == v for k, v in preset.items() if k != "lr")


def test_unknown_key_names_the_closest():
    with pytest.raises(config.ConfigError, match=r"unknown setting 'learning_rat'.*did you mean"):
        config.parse_set(["learning_rat=0.1"])
    with pytest.raises(config.ConfigError, match="unknown setting 'epoch'.*epochs"):
        config.parse_set(["epoch=3"])


def test_bad_values_name_the_type_and_an_example():
    with pytest.raises(config.ConfigError, match=r"'epochs' expects int, got 'ten'; example: --set epochs=50"):
        config.parse_set(["epochs=ten"])
    with pytest.raises(config.ConfigError, match="optimizer' must be one of adam, adamw, sgd"):
        config.parse_set(["optimizer=rmsprop"])
    with pytest.raises(config.ConfigError, match="dropout must be in"):
        config.resolve({"dropout": 1.5})
    with pytest.raises(ValueError, match="unknown model 'resnet81'.*did you mean resnet18"):
        config.resolve({"model": "resnet81"})


def test_yaml_file_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: cnn_small\nlr: 1.0e-3\nepochs: 7\n")
    cfg = config.resolve({"epochs": 9}, config_file=f)
    assert (cfg.model, cfg.lr, cfg.epochs) == ("cnn_small", 1e-3, 9)
    f.write_text("nonsense_key: 1\n")
    with pytest.raises(config.ConfigError, match="nonsense_key"):
        config.resolve({}, config_file=f)
