"""The real `fertune serve` command: flag errors before Ray starts, a served model with a token, Ctrl-C, and
the one source of serve defaults (ServeSettings) behind the flags, the docs' flag table and the Serve
config file that `serve run` / `serve deploy` read."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli
from test_serve import free_port, http, png, scenes, tiny_model_dir


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.getbasetemp())


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


def test_cli_serves_with_token_and_stops_on_ctrl_c(tiny_model, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FERTUNE_API_KEY": "from-env"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", "--model", str(tiny_model),
                             "--port", str(port), "--max-batch-size", "8"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if http("GET", f"{url}/v1/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("fertune serve did not answer /v1/health within 120 s")
        good = png(scenes(1, seed=2)[0])
        assert http("POST", f"{url}/v1/predict", good, {"Content-Type": "image/png"})[0] == 401
        status, reply, _ = http("POST", f"{url}/v1/predict", good,
                                {"Content-Type": "image/png", "Authorization": "Bearer from-env"})
        assert status == 200 and reply["faces"]
        status, info, _ = http("GET", f"{url}/v1/model", headers={"Authorization": "Bearer from-env"})
        assert info["batching"]["max_batch_size"] == 8
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out[-3000:]  # Ctrl-C is a clean stop, Serve and Ray shut down
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
           "host": config["http_options"]["host"], "port": config["http_options"]["port"]}
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
    assert on_cli == {"model", "host", "port", "replicas", "max_batch_size", "batch_wait_ms", "device", "api_key"}
    for name in ("max_bytes", "max_pixels", "max_images", "num_cpus"):  # config-file settings only
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--model", "m", flag_name(name), "1"])
    with pytest.raises(SystemExit):  # --model stays required
        parser.parse_args(["serve"])
