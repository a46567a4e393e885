"""The real `fertune serve` command: flag errors before Ray starts, a served model with a token, Ctrl-C and
SIGTERM (a clean stop, no process of the run left), and the one source of serve defaults (ServeSettings)
behind the flags, the docs' flag table and the Serve config file that `serve run` / `serve deploy` read."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, start_cli, tagged_processes
from test_serve import free_port, http, png, scenes


@pytest.fixture
def tiny_model(tiny_run) -> Path:
    return tiny_run


@pytest.mark.parametrize("flags, message", [
    (["--model", "no/such/run"], "does not exist"),
    (["--replicas", "zero"], "--replicas"),
    (["--max-batch-size", "0"], "--max-batch-size"),
    (["--batch-wait-ms", "-1"], "--batch-wait-ms"),
    (["--api-key", " "], "API key is empty"),
])
def test_bad_flags_fail_before_ray_starts(tiny_model, flags, message):
    args = ["serve", "--model", str(tiny_model), *flags]
    done = run_cli(*args, cwd=REPO, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Ray" not in done.stderr and "ray" not in done.stdout


def test_exposure_warning_only_without_token_beyond_loopback(tiny_model):
    from serve.settings import exposure_warning, settings_from_dict

    def warn(**kw):
        return exposure_warning(settings_from_dict({"model": str(tiny_model), **kw}))

    assert warn() is None and warn(host="localhost") is None and warn(host="::1") is None
    assert "without an API key" in warn(host="0.0.0.0")
    assert warn(host="0.0.0.0", api_key="k") is None


def start_serve(model: Path | None, cwd: Path, *flags: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m jobs.cli serve` in a session of its own, once /v1/health answers (model None: the default);
    `proc.tag` finds its processes (conftest.tagged_processes)."""
    port = free_port()
    model_flag = ["--model", str(model)] if model is not None else []
    proc, tag = start_cli("serve", *model_flag, "--port", str(port), *flags, cwd=cwd, env=env)
    proc.tag = tag
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fertune serve exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            if http("GET", f"{url}/v1/health", timeout=2)[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.5)  # polling interval of the condition above, not a wait for something to happen
    stop(proc)
    pytest.fail("fertune serve did not answer /v1/health within 180 s")


def stop(proc: subprocess.Popen) -> None:
    """Last resort after a failure: kill whatever of the run is left."""
    for pid, _ in tagged_processes(proc.tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def assert_stops_cleanly(proc: subprocess.Popen, sig: int) -> None:
    """`sig` ends the server as Ctrl-C does: Serve and Ray shut down, exit 0, no process of the run left."""
    assert tagged_processes(proc.tag), "found no process of the run before stopping it; the check would be void"
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fertune serve did not exit within 120 s of {signal.Signals(sig).name}")
    # 0: the KeyboardInterrupt path ran (serve.shutdown, ray.shutdown); Ray's own SIGTERM handling in the
    # driver ends with an abort (-6) or 1 instead, leaving Ray's processes behind.
    assert proc.returncode in (0, 130), f"exit {proc.returncode} after {signal.Signals(sig).name}:\n{out[-3000:]}"
    assert "fertune serve: stopping" in out, out[-3000:]
    # At once: ray.shutdown() returns after the node's processes are gone, so none may still be running
    # (an empty command line is a process already exiting: its memory is gone). Then none may be left at
    # all a few seconds on (Ray's agents used to outlive an aborted driver by 40 s). The dashboard's forkserver
    # is the exception at once: it exits when it reads the end of its dead parent's pipe, a moment later.
    running = [(pid, cmd) for pid, cmd in tagged_processes(proc.tag) if cmd and "forkserver" not in cmd]
    assert running == [], f"processes of the run still running after it exited: {running}"
    deadline = time.time() + 10
    while (left := tagged_processes(proc.tag)) and time.time() < deadline:
        time.sleep(0.2)  # polling interval of the condition above
    assert left == [], f"processes of the run left 10 s after it exited: {left}"


def test_cli_serves_with_token_and_stops_on_ctrl_c(tiny_model, tmp_path):
    proc, url = start_serve(tiny_model, tmp_path, "--max-batch-size", "8", env={"FERTUNE_API_KEY": "from-env"})
    try:
        good = png(scenes(1, seed=2)[0])
        assert http("POST", f"{url}/v1/predict", good, {"Content-Type": "image/png"})[0] == 401
        status, reply, _ = http("POST", f"{url}/v1/predict", good,
                                {"Content-Type": "image/png", "Authorization": "Bearer from-env"})
        assert status == 200 and reply["faces"]
        status, info, _ = http("GET", f"{url}/v1/model", headers={"Authorization": "Bearer from-env"})
        assert info["batching"]["max_batch_size"] == 8
        assert_stops_cleanly(proc, signal.SIGINT)
    finally:
        stop(proc)


def test_cli_serves_the_bundled_model_and_stops_on_sigterm_like_ctrl_c(tmp_path):
    """With no --model the bundled model answers; docker stop, systemd and Kubernetes send SIGTERM: the same
    clean stop as Ctrl-C, nothing orphaned."""
    from fer_core.bundled import DEFAULT_MODEL

    proc, url = start_serve(None, tmp_path)
    try:
        status, reply, _ = http("POST", f"{url}/v1/predict", png(scenes(1, seed=4)[0]), {"Content-Type": "image/png"})
        assert status == 200 and reply["model"] == DEFAULT_MODEL and reply["faces"], reply
        assert_stops_cleanly(proc, signal.SIGTERM)
    finally:
        stop(proc)


def test_serve_config_yaml_is_a_valid_serve_deploy_config(tiny_model):
    from ray.serve.schema import ServeDeploySchema

    from serve.app import build_app

    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(config)
    app = schema.applications[0]
    assert app.import_path == "serve.app:build_app"
    args = {**app.args, "model": str(tiny_model)}
    built = build_app(args)  # what `serve run` / `serve deploy` call with the file's args
    assert type(built).__name__ == "Application"
    assert config["applications"][0]["deployments"][0]["name"] == "FerServer"


# ------------------------------------------------------------------------- one source of serve defaults
TABLE_HELP = ("paste the output of: python -c 'from fer_core.settings import docs_table; "
              "from serve.settings import ServeSettings; print(docs_table(ServeSettings))'")


def test_docs_flag_table_is_the_settings_table():
    from fer_core.settings import docs_table
    from serve.settings import ServeSettings

    docs = (REPO / "docs" / "serve.md").read_text()
    tables = [block for block in docs.split("\n\n") if block.startswith("| flag | default | meaning |")]
    assert tables == [docs_table(ServeSettings)], f"docs/serve.md's flag table is not ServeSettings'; {TABLE_HELP}"


def test_serve_config_yaml_holds_the_settings_defaults():
    from fer_core.settings import defaults
    from serve.settings import ServeSettings

    want = defaults(ServeSettings)
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    app = config["applications"][0]
    got = {**{k: v for k, v in app["args"].items() if k != "model"},
           "host": config["http_options"]["host"], "port": config["http_options"]["port"],
           "proxy_location": config["proxy_location"]}
    # every setting is in the file, but the model (the user's) and the API key (kept out of files on purpose)
    assert sorted(set(got) | {"model", "api_key"}) == sorted(want)
    assert got == {k: want[k] for k in got}, "serve/config.yaml differs from ServeSettings' defaults"
    assert app["deployments"][0]["num_replicas"] == int(want["replicas"])


def test_cli_flags_are_the_settings_fields():
    from dataclasses import fields

    from fer_core.settings import flag_name, from_namespace
    from jobs.cli import build_parser
    from serve.settings import ServeSettings

    parser = build_parser()
    assert from_namespace(ServeSettings, parser.parse_args(["serve", "--model", "m"])) == ServeSettings(model="m")
    s = from_namespace(ServeSettings, parser.parse_args(["serve", "--model", "m", "--max-batch-size", "8",
                                                         "--batch-wait-ms", "2", "--replicas", "auto",
                                                         "--api-key", "k", "--port", "9000"]))
    assert (s.max_batch_size, s.batch_wait_ms, s.replicas, s.api_key, s.port) == (8, 2.0, "auto", "k", 9000)
    on_cli = {f.name for f in fields(ServeSettings) if f.metadata["flag"]}
    assert on_cli == {"model", "host", "port", "replicas", "max_batch_size", "batch_wait_ms", "device", "detector",
                      "api_key", "proxy_location"}
    for name in ("max_bytes", "max_pixels", "max_images", "num_cpus"):  # config-file settings only
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--model", "m", flag_name(name), "1"])
    from fer_core.bundled import DEFAULT_MODEL

    assert from_namespace(ServeSettings, parser.parse_args(["serve"])).model == DEFAULT_MODEL  # the bundled model
