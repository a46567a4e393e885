"""TrainConfig: the one source of training defaults (the seed ResNet-18 recipe), and how overrides apply.

Order of precedence, lowest first: these defaults, the chosen model's preset (registered with the model,
`fer_core.models.model_preset`), `--config FILE.yaml`, then each `--set key=value`. Every run writes the
resolved result to its `config.yaml`.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any



@dataclass
class TrainConfig:
    # model
    model: str = "resnet18"            # (str) registry name: resnet18 | cnn_small | vit
    pretrained: str | None = None      # (path) torchvision ImageNet weights file; None = from scratch
    init_weights: str | None = None    # (path) start from this fertune model's weights (a .pt, run folder or bundled name: fine-tuning); None = fresh
    head_width: int = 256              # (int) hidden width of the classifier head; 0 = linear head
    dropout: float = 0.5               # (float) dropout before the head's first layer
    dropout2: float | None = None      # (float) dropout before the last layer; None = dropout / 2
    # optimisation
    epochs: int = 50                   # (int) planned epochs (with time_budget: planned from measured speed)
    time_budget: float = 0.0           # (float) minutes for the whole train command, data load to final evaluation; 0 = off
    measured_img_s: float = 0.0        # (float) written by the time-budget plan: training img/s it measured
    planned_steps: int = 0             # (int) written by the time-budget plan: optimizer steps in all (the last epoch may be partial); 0 = epochs x steps per epoch
    batch_size: int = 64               # (int) training batch size
    lr: float = 2e-4                   # (float) peak learning rate
    lr_min: float = 1e-6               # (float) final learning rate of the schedule
    weight_decay: float = 1e-4         # (float) L2 for adam/sgd, decoupled for adamw
    optimizer: str = "adam"            # (str) adam | adamw | sgd (nesterov, momentum 0.9)
    scheduler: str = "cosine"          # (str) cosine | onecycle (warm-up then cosine) | wsd (warm-up, stable, decay) | step | none
    warmup_epochs: float = 0.0         # (float) linear warm-up length for cosine/onecycle/wsd
    decay_fraction: float = 0.2        # (float) wsd: the last fraction of the steps, cosine-annealed to lr_min
    patience: int = 10                 # (int) early stop after this many epochs without a better metric; 0 = off
    grad_clip: float = 1.0             # (float) max gradient norm; 0 = off
    # loss and sampling
    label_smoothing: float = 0.1       # (float) cross-entropy label smoothing epsilon
    class_weighting: str = "inverse"   # (str) inverse (w_c = N / (C * N_c)) | none
    focus_k: int = 0                   # (int) adaptive focus: the k classes with lowest val F1 get focus_weight
    focus_weight: float = 3.0          # (float) sampling weight of the focused classes (others 1.0)
    focus_start: int = 1               # (int) first epoch (1-based) after which focus weights apply
    # augmentation (batched, on the training device)
    flip: bool = True                  # (bool) random horizontal flip
    rotate_deg: float = 10.0           # (float) random rotation range, +- degrees
    translate: float = 0.1             # (float) random translation, fraction of the image size
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # ([float, float]) random zoom range
    erase_p: float = 0.3               # (float) random-erasing probability per image
    erase_scale: list[float] = field(default_factory=lambda: [0.02, 0.15])  # ([float, float]) erased area range
    # preprocessing (stored in every checkpoint: the inference contract)
    mean: float = 0.507                # (float) normalisation mean of the [0, 1] gray image
    std: float = 0.255                 # (float) normalisation std
    img_size: int = 48                 # (int) square input size
    # schedule of layers
    freeze_epochs: int = 5             # (int) epochs with a frozen backbone; applies only with pretrained weights
    # selection and evaluation
    metric: str = "val_macro_f1"       # (str) what picks weights/best.pt: val_macro_f1 | val_acc | val_loss
    tta: bool = True                   # (bool) also report flip-TTA accuracy in the final evaluation
    # runtime
    seed: int = 0                      # (int) seeds torch, numpy and python
    device: str = "auto"               # (str) auto | cpu | cuda | cuda:N
    amp: str = "auto"                  # (str) auto (bf16 on CUDA and on CPUs with native bf16) | bf16 | off
    channels_last: str = "auto"        # (str) auto (on CUDA and for conv nets on CPU) | on | off
    compile: bool = False              # (bool) torch.compile the training forward/backward (GPU speed-up)
    threads: int = 0                   # (int) torch CPU threads; 0 = torch's default
    train_subset: int = 0              # (int) use only this many training images (stratified); 0 = all
    eval_batch_size: int = 512         # (int) batch size for validation and test passes


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))
_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("cosine", "onecycle", "wsd", "step", "none"),
    "class_weighting": ("inverse", "none"),
    "metric": ("val_macro_f1", "val_acc", "val_loss"),
    "amp": ("auto", "bf16", "off"),
    "channels_last": ("auto", "on", "off"),
}


class ConfigError(ValueError):
    """A setting that does not exist or has a value of the wrong type or range."""


def _scalar(text: str) -> Any:
    """A YAML-style scalar from the command line: null, true/false, int, float, else the string."""
    low = text.strip().lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


# Names other tools use for our settings, so a habit from elsewhere gets a direct hint.
_ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "epoch": "epochs", "arch": "model",
            "smoothing": "label_smoothing", "random_erasing": "erase_p", "num_epochs": "epochs"}


def check_key(key: str) -> None:
    if key not in FIELD_NAMES:
        close = difflib.get_close_matches(key, FIELD_NAMES, n=3, cutoff=0.5)
        alias = next((v for k, v in _ALIASES.items() if difflib.SequenceMatcher(None, k, key).ratio() > 0.8), None)
        if alias and alias not in close:
            close.insert(0, alias)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise ConfigError(f"unknown setting '{key}'{hint} Known settings: {', '.join(FIELD_NAMES)}.")


def coerce(key: str, value: Any) -> Any:
    """`value` converted to the declared type of `key`, or a ConfigError naming key, type and an example."""
    check_key(key)
    tp = _type_hints()[key]
    default = getattr(TrainConfig(), key)
    example = f"--set {key}={default if not isinstance(default, list) else ','.join(map(str, default))}"
    bad = ConfigError(f"setting '{key}' expects {_type_name(tp)}, got {value!r}; example: {example}")
    args = typing.get_args(tp)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none") and optional):
        if optional:
            return None
        raise bad
    base = next((a for a in args if a is not type(None)), tp) if args and optional else tp
    origin = typing.get_origin(base)
    try:
        if origin is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            (item_tp,) = typing.get_args(base)
            out = [item_tp(_scalar(i) if isinstance(i, str) else i) for i in items]
            if len(out) != len(default or [0, 0]):
                raise bad
            return out
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            raise bad
        if base is int:
            if isinstance(value, bool):
                raise bad
            v = _scalar(value) if isinstance(value, str) else value
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int):
                raise bad
            return v
        if base is float:
            v = _scalar(value) if isinstance(value, str) else value
            if isinstance(v, str):
                v = float(v)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad
            return float(v)
        if base is str:
            v = str(value)
            if key in _CHOICES and v not in _CHOICES[key]:
                raise ConfigError(f"setting '{key}' must be one of {', '.join(_CHOICES[key])}, got {v!r}")
            return v
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise bad from None
    return value


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """['lr=3e-4', 'model=cnn_small'] -> {'lr': 3e-4, 'model': 'cnn_small'}, typed and checked."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}; example: --set lr=3e-4")
        key, value = pair.split("=", 1)
        out[key.strip()] = coerce(key.strip(), value.strip())
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file of TrainConfig keys")
    try:
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
    except ModuleNotFoundError:  # written by save_yaml's JSON fallback on a box without PyYAML
        import json

        data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of TrainConfig keys, not {type(data).__name__}")
    return {k: coerce(k, v) for k, v in data.items()}


def resolve(overrides: dict[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Defaults, then the chosen model's preset, then the file, then `overrides` (already parsed or raw)."""
    layers: list[dict[str, Any]] = []
    if config_file:
        layers.append(load_yaml(config_file))
    layers.append({k: coerce(k, v) for k, v in (overrides or {}).items()})
    model = TrainConfig.model
    for layer in layers:
        model = layer.get("model", model)
    from fer_core.models import model_preset

    values: dict[str, Any] = model_preset(model)  # an unknown model fails here, naming the known ones
    for layer in layers:
        values.update(layer)
    values["model"] = model
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}")
    need(cfg.time_budget >= 0, f"time_budget must be >= 0 minutes (0 = off), got {cfg.time_budget}")
    need(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}")
    need(cfg.lr > 0, f"lr must be > 0, got {cfg.lr}")
    need(0 < cfg.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {cfg.decay_fraction}")
    need(0 <= cfg.dropout < 1, f"dropout must be in [0, 1), got {cfg.dropout}")
    need(cfg.dropout2 is None or 0 <= cfg.dropout2 < 1, f"dropout2 must be in [0, 1), got {cfg.dropout2}")
    need(0 <= cfg.erase_p <= 1, f"erase_p must be in [0, 1], got {cfg.erase_p}")
    need(0 < cfg.erase_scale[0] <= cfg.erase_scale[1] < 1, f"erase_scale must be 0 < low <= high < 1, got {cfg.erase_scale}")
    need(0 < cfg.scale[0] <= cfg.scale[1], f"scale must be 0 < low <= high, got {cfg.scale}")
    need(0 <= cfg.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    need(0 <= cfg.focus_k < 7, f"focus_k must be in 0..6, got {cfg.focus_k}")
    need(cfg.focus_weight > 0, f"focus_weight must be > 0, got {cfg.focus_weight}")
    need(cfg.head_width >= 0, f"head_width must be >= 0, got {cfg.head_width}")
    need(cfg.std > 0, f"std must be > 0, got {cfg.std}")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config saved by an older or newer fertune: unknown keys are ignored, missing ones take defaults."""
    return TrainConfig(**{k: v for k, v in values.items() if k in FIELD_NAMES})


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    from fer_core.runs import atomic_write_text

    try:
        import yaml
    except ModuleNotFoundError:  # a bare GPU box: JSON is valid YAML, so config.yaml stays readable
        import json

        atomic_write_text(path, json.dumps(to_dict(cfg), indent=1) + "\n")
        return
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
