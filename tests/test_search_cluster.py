"""Cluster: cluster.yaml against the installed Ray's schema; a search on a two-node local Ray cluster."""
from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, run_cli, tiny_space


def _cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _cluster_config()
    validate_config(prepare_config(copy.deepcopy(config)))  # raises on any schema violation
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    head = config["available_node_types"][config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith("m5.")
    worker = config["available_node_types"]["gpu_worker"]
    assert worker["node_config"]["InstanceType"].startswith("g5.") and worker["max_workers"] > worker["min_workers"]
    assert "." in config["file_mounts"].values()
    assert any("pip install -e" in c for c in config["setup_commands"])
    broken = copy.deepcopy(config)
    broken["max_wrokers"] = 2  # a typo the schema must catch
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(prepare_config(broken))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str) -> subprocess.Popen:
    """`ray start --block`: the command stays up and stops the node's processes when it is terminated."""
    return subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
                             "--num-gpus", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # only the process group we started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_nodes(address: str, n: int, timeout: float = 90) -> None:
    code = (f"import ray, time\nray.init(address='{address}', logging_level='ERROR', log_to_driver=False)\n"
            f"t = time.time()\nwhile len([x for x in ray.nodes() if x['Alive']]) < {n} and time.time() - t < {timeout}:\n"
            f"    time.sleep(0.5)\nprint(len([x for x in ray.nodes() if x['Alive']]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout + 60)
    if "Failed to connect to Ray cluster" in out.stderr:
        # Seen in this sandbox with Ray 2.60: `ray start` advertises the VM's address and a driver on the same
        # machine is refused (InvalidAuthToken). A machine where drivers can join a `ray start` cluster runs it.
        pytest.skip("a driver cannot join a `ray start` cluster on this machine: " + out.stderr.strip().splitlines()[-1])
    assert out.stdout.strip().endswith(str(n)), out.stdout + out.stderr


@pytest.mark.long
def test_search_on_a_two_node_local_cluster(tmp_path, monkeypatch):
    # Ray 2.60 turns token auth on for a plain ray.init() but not for `ray start` unless told: say it once
    # for every process of this test (the head, the worker, the probe and the search driver).
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    head = _ray_start("--head", "--port", str(port), "--temp-dir", temp_dir, "--include-dashboard", "false",
                      "--node-ip-address", "127.0.0.1")
    worker = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the head's GCS port opens when it is ready
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, head.stdout.read()
                time.sleep(0.5)
        worker = _ray_start("--address", address, "--node-ip-address", "127.0.0.1")
        _wait_for_nodes(address, 2)
        res = run_cli("search", "--data", "demo", "--space", str(tiny_space(tmp_path)), "--num-samples", "2",
                      "--max-concurrent", "2", "--address", address, "--project", str(tmp_path / "runs"),
                      "--name", "two", cwd=tmp_path, timeout=300)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        df = pd.read_parquet(tmp_path / "runs" / "two" / "results.parquet")
        assert len(df) == 2 and set(df["status"]) <= {"TERMINATED", "STOPPED_EARLY"}, res.stdout[-4000:]
        nodes = set(",".join(df["nodes"]).split(","))
        assert len(nodes) == 2, df[["trial_id", "nodes"]]  # one CPU per node: the two trials ran on both
    finally:
        for proc in (worker, head):
            if proc is not None:
                _stop(proc)
