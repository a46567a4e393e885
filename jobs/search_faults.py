"""What each trial lost to dead workers and machines, counted on the driver as it happens.

Tune's per-trial history cannot tell: when a trial restarts from a checkpoint, Tune copies the trial's
result.json and progress.csv back from storage over the driver's copy, and on S3 that copy is only as new as
the last sync. Rows reported before the failure (and the node they came from) can vanish, so a history read
after the search undercounts both the epochs trained twice and the nodes a trial ran on. This callback keeps
the count itself: at a restart it notes the last epoch the trial reported and the node it ran on; the first
epoch the restarted trial reports says where it resumed. Epochs redone = from there to the epoch that was in
flight when the worker died, that one counted whole: 1 when the trial resumed from its last report. It writes
`NAME-faults.json` beside the experiment (in the bucket too) whenever that changes, and its state travels with
Tune's experiment checkpoints.
"""
from __future__ import annotations

import json
from typing import Any

from ray.tune import Callback

from jobs import storage

FAULTS_SUFFIX = "-faults.json"


def faults_uri(experiment_path: str) -> str:
    """`{storage}/{NAME}-faults.json`, beside the experiment folder (Tune owns what is inside it)."""
    return storage.with_suffix(experiment_path, FAULTS_SUFFIX)


def read_faults(experiment_path: str) -> dict[str, dict[str, Any]]:
    """trial_id -> {"epochs_redone": int, "lost_nodes": [node ids]}; empty where no trial ever restarted."""
    try:
        text = storage.read_text(faults_uri(experiment_path))
    except OSError:
        return {}
    return json.loads(text) if text else {}


class FaultLedger(Callback):
    def __init__(self, experiment_path: str):
        self.path = experiment_path
        self.trials: dict[str, dict[str, Any]] = {}   # what read_faults returns
        self.pending: dict[str, int] = {}             # trial_id -> last epoch reported before its restart

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        entry = self.trials.setdefault(trial.trial_id, {"epochs_redone": 0, "lost_nodes": []})
        if last.get("node_id") and last["node_id"] not in entry["lost_nodes"]:
            entry["lost_nodes"].append(last["node_id"])
        self.pending[trial.trial_id] = int(last.get("epoch") or 0)
        self._write()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        before = self.pending.pop(trial.trial_id, None)
        if before is None or result.get("epoch") is None:
            return
        # it resumed from epoch e - 1 (e: its first report) and had reached `before`, with epoch before + 1 in
        # flight when it died: that epoch, partial or whole, counts as one trained again
        self.trials[trial.trial_id]["epochs_redone"] += max(0, before + 1 - (int(result["epoch"]) - 1))
        self._write()

    def _write(self) -> None:
        try:
            storage.write_text(faults_uri(self.path), json.dumps(self.trials, indent=1))
        except OSError as err:  # a bookkeeping file must not stop a search
            print(f"note: could not write {faults_uri(self.path)}: {err}", flush=True)

    def get_state(self) -> dict[str, Any]:
        return {"trials": self.trials, "pending": self.pending}

    def set_state(self, state: dict[str, Any]) -> None:
        self.trials, self.pending = state.get("trials", {}), state.get("pending", {})
