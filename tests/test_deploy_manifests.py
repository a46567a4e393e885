"""deploy/: the KubeRay RayJob (a search) and RayService (serving), checked offline against fertune itself.

What is checked: apiVersion and kind; every spec field name against a list of fields known from KubeRay
v1's Go types (RayJobSpec, RayServiceSpec, RayClusterSpec, HeadGroupSpec, WorkerGroupSpec); rayStartParams
are strings (the CRD's map[string]string) and the head takes no work (num-cpus "0"); one image in every
container; rayVersion is the installed Ray's; the RayJob's entrypoint parses with fertune's own parser, joins
the cluster, stores to s3:// and keeps its data and search folder on a volume mounted on the head (where the
driver runs); the RayService's serveConfigV2 is a valid Serve config for the installed Ray, imports
serve.app:build_app, and its args are settings build_app accepts, with at least two replicas; no credential
value is written inline (secret references only).

What is not checked: there is no offline KubeRay CRD schema here, so field names are compared with a list,
not validated with types, and a field KubeRay adds later would be reported as unknown; nothing is applied to
a Kubernetes cluster, and the image is neither built nor pulled.
"""
from __future__ import annotations

import argparse
import inspect
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
import ray
import yaml

from conftest import REPO

DEPLOY = REPO / "deploy"
SEARCH, SERVE = DEPLOY / "rayjob-search.yaml", DEPLOY / "rayservice-serve.yaml"

# Field names of KubeRay's ray.io/v1 Go types (ray-operator/apis/ray/v1/*_types.go), the ones a manifest sets.
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
               "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
               "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}
RAYSERVICE_SPEC = {"serveConfigV2", "rayClusterConfig", "serveService", "upgradeStrategy",
                   "excludeHeadPodFromServeSvc", "serviceUnhealthySecondThreshold",
                   "deploymentUnhealthySecondThreshold"}
CLUSTER_SPEC = {"suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
                "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs"}
HEAD_GROUP = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP = {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                "rayStartParams", "template", "scaleStrategy", "numOfHosts"}

SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)", re.IGNORECASE)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _cluster(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec" if doc["kind"] == "RayJob" else "rayClusterConfig"]


def _containers(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.fixture(scope="module", params=[SEARCH, SERVE], ids=["rayjob", "rayservice"])
def manifest(request) -> dict:
    return _load(request.param)


def test_kind_and_known_fields(manifest):
    assert manifest["apiVersion"] == "ray.io/v1"
    spec_fields = {"RayJob": RAYJOB_SPEC, "RayService": RAYSERVICE_SPEC}[manifest["kind"]]
    assert set(manifest["spec"]) <= spec_fields, f"unknown spec fields: {set(manifest['spec']) - spec_fields}"
    cluster = _cluster(manifest)
    assert set(cluster) <= CLUSTER_SPEC, f"unknown cluster fields: {set(cluster) - CLUSTER_SPEC}"
    assert set(cluster["headGroupSpec"]) <= HEAD_GROUP
    assert cluster["workerGroupSpecs"], "no worker group: nothing would run the trials or the replicas"
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, f"unknown worker group fields: {set(group) - WORKER_GROUP}"
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_cluster_matches_the_installed_ray_and_one_image(manifest):
    cluster = _cluster(manifest)
    assert cluster["rayVersion"] == ray.__version__  # the image must carry the Ray fertune was tested with
    images = {c["image"] for c in _containers(cluster)}
    assert len(images) == 1, f"containers use different images: {images}"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        # the CRD's rayStartParams is map[string]string: an unquoted 0 is rejected by the API server
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    assert cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"  # trials and replicas on workers
    for c in _containers(cluster):
        assert c["resources"]["requests"] and c["resources"]["limits"]


def test_no_inline_credentials(manifest):
    for c in _containers(_cluster(manifest)):
        for env in c.get("env", []):
            if SECRET_NAME.search(env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], f"{env['name']} is inline"
        for source in c.get("envFrom", []):
            assert set(source) <= {"secretRef", "configMapRef", "prefix"}
    text = SEARCH.read_text() + SERVE.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", text), "an AWS access key id is written in deploy/"


def test_rayjob_entrypoint_is_a_valid_fertune_search():
    from jobs.cli import build_parser
    from jobs.search_space import packaged_spaces

    doc = _load(SEARCH)
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "fertune"
    parser = build_parser()
    args = parser.parse_args(argv[1:])  # exits (fails the test) on any flag fertune does not have
    assert args.command == "search"
    # argparse also takes abbreviations (--time-budg): each flag must be spelled as the parser names it
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {o for a in subparsers.choices["search"]._actions for o in a.option_strings}
    used = {t.split("=")[0] for t in argv if t.startswith("--")}
    assert used <= flags, f"not fertune search's spelling: {used - flags}"
    assert args.storage.startswith("s3://"), "trials on several pods need storage they all reach"
    assert args.address == "auto", "join the RayJob's cluster, as docs/search.md's `ray job submit` does"
    assert args.space in packaged_spaces()

    # The driver runs on the head: the data and the search folder (best/, ensemble/) must be on a volume
    # there, or the data is missing and the results go with the pod.
    head = _cluster(doc)["headGroupSpec"]["template"]["spec"]
    mounts = [m["mountPath"] for c in head["containers"] for m in c.get("volumeMounts", [])]
    for path in (args.data, args.project):
        assert any(Path(path).is_relative_to(m) for m in mounts), f"{path} is on no volume of the head"
    # workers write checkpoints to S3 and the driver reads them: both get the credentials
    for c in _containers(_cluster(doc)):
        refs = [s for s in c.get("envFrom", []) if "secretRef" in s] + \
               [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        assert refs, f"{c['name']} has no credentials for --storage"


def test_rayservice_serve_config_builds_fertunes_app():
    from ray.serve.schema import ServeDeploySchema

    from serve.settings import ServeSettings, settings_from_dict

    doc = _load(SERVE)
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])  # a string inside the manifest
    ServeDeploySchema.model_validate(config)  # the installed Ray's own Serve config schema
    [app] = config["applications"]
    assert app["import_path"] == "serve.app:build_app"
    assert app["route_prefix"] == "/"

    module, _, name = app["import_path"].partition(":")
    build_app = getattr(__import__(module, fromlist=[name]), name)
    # build_app is a Serve application builder: one `args` dict, whose keys are ServeSettings' fields
    assert list(inspect.signature(build_app).parameters) == ["args"]
    known = {f.name for f in fields(ServeSettings)}
    assert set(app["args"]) <= known, f"build_app does not accept {set(app['args']) - known}"
    assert "api_key" not in app["args"], "the token belongs in a Secret, not in the manifest"
    settings = settings_from_dict(app["args"])  # the validation build_app runs first

    [deployment] = app["deployments"]
    assert deployment["name"] == "FerServer"
    assert deployment["num_replicas"] >= 2 and int(settings.replicas) == deployment["num_replicas"]
    # one replica per node, so the workers must be at least as many as the replicas
    workers = sum(g["replicas"] for g in _cluster(doc)["workerGroupSpecs"])
    assert deployment.get("max_replicas_per_node", 1) * workers >= deployment["num_replicas"]
    assert config["http_options"]["host"] == "0.0.0.0"  # the Kubernetes Service reaches the pods' IPs
