"""One line per trial event on the console, in place of Ray's own tables and logs."""
from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback


class Progress(Callback):
    """Prints each trial's epochs, completions, errors and restarts; Tune pickles it with the experiment."""

    def __init__(self, metric: str, mode: str, num_samples: int):
        self.metric, self.mode, self.num_samples = metric, mode, num_samples
        self.t0 = time.monotonic()
        self.best: float | None = None

    def setup(self, **info: Any) -> None:
        self.t0 = time.monotonic()  # restarts on resume: the clock shows this session's time

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.0f}s] {text}", flush=True)

    @staticmethod
    def _name(trial: Any) -> str:
        from jobs.trainable import trial_index

        if "refit_of" in trial.config:
            return f"refit of trial {trial.config['refit_of']}"
        index = trial_index(trial)
        return f"trial {index}{' (default)' if index == 0 else ''}"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"{self._name(trial)} started: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items()))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if value is None:
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        extra = f"  latency {result['latency_ms']:.2f} ms" if "latency_ms" in result else ""
        if self.metric != "val_acc":  # accuracy is shown beside any other objective
            extra = f"  val_acc {result.get('val_acc', float('nan')):.4f}" + extra
        self._line(f"{self._name(trial)} epoch {result.get('epoch')}/{result.get('epochs_planned')}  "
                   f"{self.metric} {value:.4f}{extra}  "
                   f"(search best {self.best:.4f}; {done}/{self.num_samples} trials done)")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        self._line(f"{self._name(trial)} finished after {last.get('epoch', 0)} epochs")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"{self._name(trial)}: its worker failed; restarting it from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"{self._name(trial)} failed for good (error log in {trial.path})")
