"""Search-space YAML: packaged spaces, validation that names the key, the default point (no Ray needed)."""
from __future__ import annotations

import pytest

from conftest import run_cli
from fer_core.config import ConfigError, resolve
from jobs.search_space import SuggestTrial, default_point, load_space, packaged_spaces, parse_space


def test_packaged_spaces_load_and_trial_zero_is_the_models_default():
    assert {"default.yaml", "cnn_small.yaml", "demo.yaml"} <= set(packaged_spaces())
    default = load_space("default.yaml")
    assert default.params["model"] == ("choice", ["resnet18", "cnn_small"])
    assert {"lr", "dropout", "erase_p", "head_width", "batch_size", "focus_k", "label_smoothing"} <= set(default.params)
    point, skipped = default_point(default)
    seed = resolve({"model": "resnet18"})
    assert skipped == [] and point["model"] == "resnet18" and point["lr"] == seed.lr and point["dropout"] == seed.dropout
    small = load_space("cnn_small")
    point, _ = default_point(small)
    assert point["lr"] == resolve({"model": "cnn_small"}).lr  # the model preset, not the seed default
    demo = load_space("demo.yaml")
    assert demo.fixed["epochs"] == 4 and demo.max_epochs() == 4


@pytest.mark.parametrize("space, words", [
    ({"space": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}}, ["learning_rate", "lr"]),
    ({"space": {"lr": {"logunif": [1e-4, 1e-2]}}}, ["lr", "logunif", "loguniform"]),
    ({"space": {"lr": {"loguniform": [0, 1e-2]}}}, ["lr", "> 0"]),
    ({"space": {"lr": {"uniform": [1e-2, 1e-4]}}}, ["lr", "low < high"]),
    ({"space": {"head_width": {"uniform": [0, 512]}}}, ["head_width", "int"]),
    ({"space": {"dropout": {"uniform": [0.1, 1.5]}}}, ["dropout", "1.5"]),
    ({"space": {"model": {"choice": ["cnn_small", "resnet81"]}}}, ["model", "resnet81"]),
    ({"space": {"batch_size": {"choice": [32, "big"]}}}, ["batch_size", "big"]),
    ({"metric": "accuracy", "space": {"lr": {"uniform": [1e-3, 1e-2]}}}, ["accuracy", "val_acc"]),
    ({"metric": ["latency_ms", "val_acc"], "space": {"lr": {"uniform": [1e-3, 1e-2]}}}, ["first metric"]),
    ({"space": {"epochs": 3}}, ["searches nothing"]),
])
def test_bad_spaces_fail_naming_the_key(space, words):
    with pytest.raises(ConfigError) as err:
        parse_space(space, source="t.yaml")
    for word in words:
        assert word in str(err.value)


def test_overrides_and_suggest_fixed_values():
    space = parse_space({"metric": "val_acc", "space": {"model": "cnn_small", "epochs": 5,
                                                        "lr": {"loguniform": [1e-4, 1e-2]},
                                                        "focus_k": {"int": [0, 3]}}})
    two = space.with_overrides(epochs=2, metrics=["val_acc", "latency_ms"])
    assert two.fixed["epochs"] == 2 and two.multi_objective and two.modes == ["max", "min"]
    assert space.fixed["epochs"] == 5 and not space.multi_objective  # a copy, the original stays

    class FakeTrial:  # records what Optuna would be asked
        def __init__(self):
            self.asked = {}

        def suggest_float(self, name, low, high, log=False):
            self.asked[name] = ("float", low, high, log)
            return low

        def suggest_int(self, name, low, high, log=False):
            self.asked[name] = ("int", low, high, log)
            return low

        def suggest_categorical(self, name, choices):
            self.asked[name] = ("cat", choices)
            return choices[0]

    trial = FakeTrial()
    fixed = SuggestTrial(two)(trial)
    assert fixed == {"model": "cnn_small", "epochs": 2}
    assert trial.asked == {"lr": ("float", 1e-4, 1e-2, True), "focus_k": ("int", 0, 3, False)}


def test_cli_rejects_a_bad_space_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n  dropuot: {uniform: [0.1, 0.5]}\n")
    res = run_cli("search", "--data", "demo", "--space", str(bad), "--project", str(tmp_path / "runs"),
                  cwd=tmp_path, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "dropuot" in res.stderr and "dropout" in res.stderr
    assert not (tmp_path / "runs").exists()  # nothing was created, Ray never started
