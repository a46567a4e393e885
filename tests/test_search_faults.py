"""The driver's count of what restarts cost (jobs.search_faults): epochs trained again, nodes lost."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")


def _trial(trial_id: str, last: dict | None = None) -> SimpleNamespace:
    """What the ledger reads of Tune's Trial: its id and last reported result."""
    return SimpleNamespace(trial_id=trial_id, last_result=last or {})


def test_a_restart_from_the_last_report_redoes_the_epoch_in_flight(tmp_path):
    from jobs.search_faults import FaultLedger, read_faults

    experiment = str(tmp_path / "ray" / "s1")
    ledger = FaultLedger(experiment)
    ledger.on_trial_result(0, [], _trial("a"), {"epoch": 1, "node_id": "n1"})  # no restart yet: nothing counted
    assert read_faults(experiment) == {}
    ledger.on_trial_recover(0, [], _trial("a", {"epoch": 3, "node_id": "n1"}))  # died during epoch 4
    ledger.on_trial_result(0, [], _trial("a"), {"epoch": 4, "node_id": "n2"})   # resumed from epoch 3
    ledger.on_trial_result(0, [], _trial("a"), {"epoch": 5, "node_id": "n2"})
    assert read_faults(experiment) == {"a": {"epochs_redone": 1, "lost_nodes": ["n1"]}}
    # a restart from an older checkpoint (epoch 5's never registered): epochs 5 and 6 trained again
    ledger.on_trial_recover(0, [], _trial("a", {"epoch": 5, "node_id": "n2"}))
    ledger.on_trial_result(0, [], _trial("a"), {"epoch": 5, "node_id": "n3"})
    assert read_faults(experiment) == {"a": {"epochs_redone": 3, "lost_nodes": ["n1", "n2"]}}
    assert (tmp_path / "ray" / "s1-faults.json").is_file()  # beside the experiment, not inside Tune's folder


def test_the_count_survives_a_driver_restart_and_joins_the_trial_history(tmp_path):
    from jobs.search_faults import FaultLedger, read_faults
    from jobs.search_results import _with_faults

    experiment = str(tmp_path / "s2")
    first = FaultLedger(experiment)
    first.on_trial_recover(0, [], _trial("b", {"epoch": 2, "node_id": "dead"}))
    again = FaultLedger(experiment)  # a resumed driver: Tune hands back the callback's state
    again.set_state(first.get_state())
    again.on_trial_result(0, [], _trial("b"), {"epoch": 3, "node_id": "alive"})
    faults = read_faults(experiment)["b"]
    # Tune's history after the restart (rows from the dead node gone) under-counts both
    row = _with_faults({"epochs_redone": 0, "nodes": "alive"}, faults)
    assert row == {"epochs_redone": 1, "nodes": "alive,dead"}
    assert _with_faults({"epochs_redone": 0, "nodes": "x"}, None) == {"epochs_redone": 0, "nodes": "x"}


def test_faults_file_sits_beside_a_bucket_experiment_keeping_its_query():
    from jobs.search_faults import faults_uri

    assert faults_uri("s3://b/searches/s1?endpoint_override=http://h:9") == \
        "s3://b/searches/s1-faults.json?endpoint_override=http://h:9"
    assert faults_uri("/tmp/ray/s1/") == "/tmp/ray/s1-faults.json"
