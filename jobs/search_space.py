"""Search-space YAML (SPEC.md grammar): parse, validate against TrainConfig, and ask Optuna for a trial.

A space file holds `metric` (one name, or a list of two for a multi-objective search), `mode` (per
metric when a list) and `space`: TrainConfig keys mapped to a plain value (fixed) or to one of
`{choice: [...]}`, `{uniform: [low, high]}`, `{loguniform: [low, high]}`, `{int: [low, high]}`,
`{intlog: [low, high]}`. Every key, kind and bound is checked here, before Ray starts, so a typo costs
a second rather than a cluster start-up.
"""
from __future__ import annotations

import copy
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fer_core import config as cfg_mod
from fer_core.config import ConfigError

KINDS = ("choice", "uniform", "loguniform", "int", "intlog")
# What a trial reports, with the direction that is better. latency_ms is the model's CPU inference time
# per image, measured once per trial; it only makes sense as the second of two objectives.
METRICS = {"val_macro_f1": "max", "val_acc": "max", "val_loss": "min", "latency_ms": "min"}
SELECTION_METRICS = ("val_macro_f1", "val_acc", "val_loss")  # what may pick weights/best.pt


@dataclass
class SearchSpace:
    """A parsed, validated space: searched params, fixed values and the objective(s)."""

    metrics: list[str]
    modes: list[str]
    params: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)  # key -> (kind, args)
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def metric(self) -> str:
        """The first metric: selects best/, ranks the leaderboard, drives ASHA."""
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    def models(self) -> list[str]:
        """The model families this space can draw, first one first (its defaults are trial 0)."""
        if "model" in self.params:
            return list(self.params["model"][1])
        return [self.fixed.get("model", cfg_mod.TrainConfig.model)]

    def max_epochs(self) -> int:
        """The longest a trial can run: ASHA's max_t."""
        if "epochs" in self.params:
            return int(self.params["epochs"][1][-1] if self.params["epochs"][0] == "choice"
                       else self.params["epochs"][1][1])
        if "epochs" in self.fixed:
            return int(self.fixed["epochs"])
        return max(cfg_mod.resolve({"model": m}).epochs for m in self.models())

    def to_dict(self) -> dict[str, Any]:
        """The YAML grammar again (what search.yaml records)."""
        space: dict[str, Any] = {k: {kind: list(args)} for k, (kind, args) in self.params.items()}
        space.update(self.fixed)
        return {"metric": self.metrics[0] if len(self.metrics) == 1 else list(self.metrics),
                "mode": self.modes[0] if len(self.modes) == 1 else list(self.modes), "space": space}

    def with_overrides(self, epochs: int | None = None, metrics: list[str] | None = None,
                       fixed: dict[str, Any] | None = None) -> "SearchSpace":
        """A copy with command-line overrides: --epochs fixes the epochs, --metric replaces the objective(s)."""
        out = copy.deepcopy(self)
        for key, value in (fixed or {}).items():
            out.params.pop(key, None)
            out.fixed[key] = cfg_mod.coerce(key, value)
        if epochs is not None:
            out.params.pop("epochs", None)
            out.fixed["epochs"] = cfg_mod.coerce("epochs", epochs)
        if metrics:
            out.metrics, out.modes = _parse_metrics(list(metrics), None, "--metric")
        _check_resolvable(out)
        return out


# ------------------------------------------------------------------------------------------- loading
def packaged_spaces() -> list[str]:
    """Names of the spaces shipped in jobs/spaces/."""
    return sorted(p.name for p in resources.files("jobs").joinpath("spaces").iterdir() if p.name.endswith(".yaml"))


def space_path(name_or_path: str | Path) -> Path:
    """A file path as given, or a packaged space by name (`cnn_small`, `cnn_small.yaml`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = path.name if path.name.endswith((".yaml", ".yml")) else f"{path.name}.yaml"
    packaged = Path(str(resources.files("jobs").joinpath("spaces", name)))
    if str(name_or_path) in (name, path.stem) and packaged.is_file():
        return packaged
    raise FileNotFoundError(f"search space {name_or_path} does not exist; pass a YAML file or one of the "
                            f"packaged spaces: {', '.join(packaged_spaces())}")


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Read and validate a space YAML file (or a packaged space name)."""
    import yaml

    path = space_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"search space {path} is not valid YAML: {err}") from None
    return parse_space(data, source=str(path))


def _parse_metrics(metric: Any, mode: Any, where: str) -> tuple[list[str], list[str]]:
    metrics = [metric] if isinstance(metric, str) else list(metric or ["val_macro_f1"])
    if not 1 <= len(metrics) <= 2:
        raise ConfigError(f"{where}: metric takes one name or a list of two, got {metrics}")
    for m in metrics:
        if m not in METRICS:
            raise ConfigError(f"{where}: unknown metric '{m}'; choose from {', '.join(METRICS)}")
    if metrics[0] not in SELECTION_METRICS:
        raise ConfigError(f"{where}: the first metric picks each trial's best epoch, so it must be one of "
                          f"{', '.join(SELECTION_METRICS)}, not '{metrics[0]}' (e.g. --metric val_acc --metric latency_ms)")
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"{where}: the two metrics must differ, got {metrics}")
    if mode is None:
        modes = [METRICS[m] for m in metrics]
    else:
        modes = [mode] * len(metrics) if isinstance(mode, str) else list(mode)
    if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
        raise ConfigError(f"{where}: mode must be min or max, one per metric, got {mode!r} for {metrics}")
    return metrics, modes


def _base_type(key: str) -> Any:
    tp = typing.get_type_hints(cfg_mod.TrainConfig)[key]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args and type(None) in typing.get_args(tp) else tp


def _parse_param(key: str, spec: dict, where: str) -> tuple[str, list[Any]]:
    if len(spec) != 1:
        raise ConfigError(f"{where}: '{key}' must have exactly one kind ({', '.join(KINDS)}), got {list(spec)}")
    (kind, args), = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: '{key}' has unknown kind '{kind}'; use one of {', '.join(KINDS)}")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: '{key}: {{{kind}: ...}}' needs a list, e.g. {{{kind}: [1, 2]}}")
    base = _base_type(key)
    if kind == "choice":
        if typing.get_origin(base) is list:
            raise ConfigError(f"{where}: '{key}' holds a list; searching over lists is not supported, fix it instead")
        values = [cfg_mod.coerce(key, v) for v in args]
        return kind, values
    if len(args) != 2:
        raise ConfigError(f"{where}: '{key}: {{{kind}: ...}}' needs [low, high], got {args}")
    if kind in ("int", "intlog"):
        if base is not int:
            raise ConfigError(f"{where}: '{key}' is a {getattr(base, '__name__', base)} setting; "
                              f"use uniform/loguniform/choice, not {kind}")
        low, high = (cfg_mod.coerce(key, a) for a in args)
    else:
        if base is not float:
            raise ConfigError(f"{where}: '{key}' is a {getattr(base, '__name__', base)} setting; "
                              f"{kind} draws floats, use {'int' if base is int else 'choice'} instead")
        low, high = (cfg_mod.coerce(key, a) for a in args)
    if not low < high:
        raise ConfigError(f"{where}: '{key}' needs low < high, got [{low}, {high}]")
    if kind in ("loguniform", "intlog") and low <= 0:
        raise ConfigError(f"{where}: '{key}' is log-scaled, so low must be > 0, got {low}")
    return kind, [low, high]


def parse_space(data: Any, source: str = "<dict>") -> SearchSpace:
    """Validate a space mapping; every problem is a ConfigError naming the file and the key."""
    where = f"search space {source}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping with 'space:' (and optionally 'metric:', 'mode:')")
    unknown = set(data) - {"metric", "mode", "space"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}; expected metric, mode, space")
    metrics, modes = _parse_metrics(data.get("metric"), data.get("mode"), where)
    raw = data.get("space") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'space' must map TrainConfig keys to values or {{kind: [...]}}")
    space = SearchSpace(metrics, modes, source=source)
    for key, spec in raw.items():
        try:
            cfg_mod.check_key(key)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        if isinstance(spec, dict):
            space.params[key] = _parse_param(key, spec, where)
        else:
            try:
                space.fixed[key] = cfg_mod.coerce(key, spec)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
    _check_resolvable(space)
    return space


def _check_resolvable(space: SearchSpace) -> None:
    """Each bound and choice must give a valid TrainConfig (e.g. dropout < 1), so no trial fails on it."""
    models = space.models()
    if "model" in space.fixed:
        try:
            cfg_mod.resolve(space.fixed)
        except ValueError as err:
            raise ConfigError(f"search space {space.source}: {err}") from None
    for key, (kind, args) in space.params.items():
        for value in args:
            for model in (models if key != "model" else [value]):
                try:
                    cfg_mod.resolve({**space.fixed, "model": model, key: value})
                except ValueError as err:  # ConfigError, or an unknown model name
                    raise ConfigError(f"search space {space.source}: '{key}' value {value!r} is invalid: {err}") from None
    if not space.params:
        raise ConfigError(f"search space {space.source} searches nothing; give at least one key a "
                          f"{{choice|uniform|loguniform|int|intlog: [...]}}")


# -------------------------------------------------------------------------------------------- Optuna
class SuggestTrial:
    """Optuna define-by-run function: suggests every searched key and returns the fixed values.

    A class rather than a closure so that Tune can pickle it with the searcher state for resume.
    """

    def __init__(self, space: SearchSpace):
        self.params = dict(space.params)
        self.fixed = dict(space.fixed)

    def __call__(self, trial: Any) -> dict[str, Any]:
        for key, (kind, args) in self.params.items():
            if kind == "choice":
                trial.suggest_categorical(key, args)
            elif kind in ("uniform", "loguniform"):
                trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")
            else:
                trial.suggest_int(key, args[0], args[1], log=kind == "intlog")
        return dict(self.fixed)


def default_point(space: SearchSpace) -> tuple[dict[str, Any], list[str]]:
    """The first model's resolved defaults for every searched key (trial 0), and the keys left out.

    A default that is not among a key's choices cannot be enqueued in Optuna, so that key is drawn
    instead and named in the second value (the caller warns).
    """
    cfg = cfg_mod.resolve({**space.fixed, "model": space.models()[0]})
    point, skipped = {}, []
    for key, (kind, args) in space.params.items():
        value = getattr(cfg, key)
        if kind == "choice" and value not in args:
            skipped.append(key)
            continue
        if kind != "choice" and not args[0] <= value <= args[1]:
            skipped.append(key)
            continue
        point[key] = value
    return point, skipped
