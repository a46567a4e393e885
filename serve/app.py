"""`fertune serve`: a fertune model behind a FastAPI ingress on Ray Serve.

Routes (replies and error codes: docs/serve.md and SPEC.md "Serve replies"):
  GET  /                  the upload / webcam page (serve/static/index.html)
  GET  /v1/health         liveness, never behind the token
  GET  /v1/model          classes, metrics (eval.json), config, trial id, batching and limits
  POST /v1/predict        one image (raw body or multipart) -> faces with boxes and 7 probabilities
  POST /v1/predict/batch  several images (multipart parts or JSON base64) -> one reply per image
  GET  /docs              OpenAPI docs

Each request is validated and decoded, and its faces detected and cropped (fer_core.faces), on its own;
the crops of concurrent requests are then classified together by one `@serve.batch` call to
`fer_core.infer.Predictor.predict_crops`, so a served face gets exactly the probabilities that
`Predictor.predict_image` gives. The batch waits up to `--batch-wait-ms` for company only while another
request is in flight: a lone request is classified at once instead of paying the wait.

`build_app(args)` is a Serve application builder, so the same app runs under Serve's own CLI:
`serve run serve.app:build_app model=runs/train/exp` or `serve deploy serve/config.yaml`.
"""
# No `from __future__ import annotations` here: Serve's class-based FastAPI view reads the route
# signatures at runtime, and string annotations make it treat `self` and `request` as query parameters.
import asyncio
import hmac
import ipaddress
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.decode import Limits, RequestError, decode_image, image_size, images_from_body, too_large

STATIC = Path(__file__).resolve().parent / "static"
API_KEY_ENV = "FERTUNE_API_KEY"
# Images up to this many pixels are decoded and cropped on the event loop (tens of microseconds);
# larger ones go to a worker thread so a 20 MP photo's Haar pass does not stall the other requests.
INLINE_PIXELS = 256 * 256
# A lone request with this few crops is classified on the event loop (a few ms), not through the batch
# queue and a worker thread: nothing else is waiting, so those hand-offs would be pure cost.
INLINE_CROPS = 4
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type", 422: "malformed_request",
               500: "internal_error", 503: "not_ready"}


# -------------------------------------------------------------------------------------------- settings
@dataclass
class ServeSettings:
    """Everything a replica needs; built from the CLI flags or from `serve run`/`serve deploy` args."""
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: str = "1"            # a count, or "auto" (Serve autoscaling between 1 and the CPU count)
    max_batch_size: int = 32       # crops of at most this many requests per forward pass
    batch_wait_ms: float = 5.0     # how long a batch waits for company while other requests are in flight
    device: str = "auto"
    api_key: str | None = None     # bearer token; None = open (loopback only, by default)
    num_cpus: float = 1.0          # Ray CPUs per replica; also its torch thread count
    max_bytes: int = Limits.max_bytes
    max_pixels: int = Limits.max_pixels
    max_images: int = Limits.max_images

    @property
    def limits(self) -> Limits:
        return Limits(self.max_bytes, self.max_pixels, self.max_images)


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(ServeSettings)}[name]
    if value is None or kind not in (int, float):
        return None if value is None else str(value)
    try:
        return int(value) if kind is int else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"serve setting {name}={value!r} is not a{'n int' if kind is int else ' number'}") from None


def settings_from_dict(args: dict[str, Any]) -> ServeSettings:
    """Validated settings; unknown keys and bad values fail before Ray starts, naming the fix."""
    known = {f.name for f in fields(ServeSettings)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"unknown serve setting(s) {unknown}; known: {sorted(known)}")
    if not args.get("model"):
        raise ValueError("no model given; pass --model PATH (a .pt, a run folder, or a search's best/ or ensemble/)")
    s = ServeSettings(**{k: _coerce(k, v) for k, v in args.items()})
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
    if s.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {s.device!r}: expected auto, cpu or cuda")
    if min(s.max_bytes, s.max_pixels, s.max_images) < 1 or s.num_cpus <= 0:
        raise ValueError("max_bytes, max_pixels, max_images and num_cpus must be positive")
    from fer_core.runs import resolve_checkpoints

    resolve_checkpoints(s.model)  # a missing or empty model fails here, not inside a replica
    s.model = str(Path(s.model).resolve())  # replicas may run with another working directory
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


# ---------------------------------------------------------------------------------------------- the app
api = FastAPI(
    title="fertune",
    description="Facial-emotion recognition. Send an image to /v1/predict; replies list the faces found with "
                "their boxes [x, y, w, h] and the probabilities of angry, disgust, fear, happy, neutral, sad "
                "and surprise. With an API key set, send `Authorization: Bearer KEY`.",
    version="1",
)


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


@api.exception_handler(RequestError)
async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    return error_response(err.status, err.code, err.detail)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    detail = err.detail if isinstance(err.detail, str) else str(err.detail)
    if err.status_code == 404:
        detail += f": {request.url.path}; the routes are /, /v1/health, /v1/model, /v1/predict, /v1/predict/batch, /docs"
    return error_response(err.status_code, ERROR_CODES.get(err.status_code, "http_error"), detail)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors())
    return error_response(422, "malformed_request", f"{problems} (e.g. ?faces=false)")


IMAGE_BODY = {"requestBody": {"required": True, "content": {
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png", "image/webp", "image/bmp")},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "description": "base64 of an image file"}}}}},
}}}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing (413) as soon as it is known to exceed max_bytes instead of buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(422, "malformed_request", f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > max_bytes:
            raise too_large(f"the body is {int(declared):,} bytes, over the limit of {max_bytes:,}; send a smaller image")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise too_large(f"the body exceeds the limit of {max_bytes:,} bytes; send a smaller image")
        chunks.append(chunk)
    return b"".join(chunks)


def prepare(data: bytes, faces: bool, limits: Limits, img_size: int) -> tuple[np.ndarray, list[tuple]]:
    """Decode one image and cut its face crops exactly as Predictor.predict_images does."""
    from fer_core.faces import image_crops

    return image_crops(decode_image(data, limits), faces, img_size)


@serve.deployment(name="FerServer")
@serve.ingress(api)
class FerServer:
    """One replica: a Predictor, the limits, the token, and the batch queue."""

    def __init__(self, settings: dict[str, Any]):
        import torch

        from fer_core.infer import Predictor
        from fer_core.labels import CLASSES

        self.s = ServeSettings(**settings)
        torch.set_num_threads(max(1, int(self.s.num_cpus)))
        self.predictor = Predictor(self.s.model, device=self.s.device)
        self.classes = CLASSES
        self.limits = self.s.limits
        self.wait_s = self.s.batch_wait_ms / 1000
        self._classify.set_max_batch_size(self.s.max_batch_size)
        self._inflight = 0
        self.stats = {"batches": 0, "items": 0, "crops": 0}
        self.page = (STATIC / "index.html").read_text()
        # The first forward pass allocates and picks kernels; pay it here, not in the first request.
        self.predictor.predict_crops(np.zeros((2, self.predictor.img_size, self.predictor.img_size), np.uint8))

    # ------------------------------------------------------------------------------------------ helpers
    def _authorize(self, request: Request) -> None:
        if not self.s.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes the same time wherever the strings differ, so timing leaks nothing
        if not (scheme.lower() == "bearer"
                and hmac.compare_digest(token.strip().encode("utf-8", "replace"), self.s.api_key.encode("utf-8"))):
            raise RequestError(401, "unauthorized", "missing or wrong API key; send the header "
                                                    "'Authorization: Bearer <key>' with the key the server was started with")

    def _count_batch(self, requests: int, crops: int) -> None:
        self.stats["batches"] += 1
        self.stats["items"] += requests
        self.stats["crops"] += crops

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _classify(self, crop_sets: list[np.ndarray]) -> list[np.ndarray]:
        """Crops of several requests -> their probabilities, in one forward pass."""
        sizes = [len(c) for c in crop_sets]
        crops = np.concatenate(crop_sets)
        # keep the event loop free to read and decode the next requests while the network runs
        probs = await asyncio.to_thread(self.predictor.predict_crops, crops)
        self._count_batch(len(crop_sets), len(probs))
        bounds = np.cumsum([0, *sizes])
        return [probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    async def _faces(self, images: list[bytes], faces: bool) -> list[list[dict[str, Any]]]:
        prepared = []
        for i, data in enumerate(images):
            try:
                _, w, h = image_size(data) if data else ("", 0, 0)
                args = (data, faces, self.limits, self.predictor.img_size)
                prepared.append(prepare(*args) if w * h <= INLINE_PIXELS else await asyncio.to_thread(prepare, *args))
            except RequestError as err:
                if len(images) > 1:
                    err.detail = f"image {i}: {err.detail}"
                raise
        crops = [c for c, _ in prepared if len(c)]
        if not crops:
            return [[] for _ in images]
        crops_in = np.concatenate(crops)
        if self._inflight <= 1 and len(crops_in) <= INLINE_CROPS:
            # A lone small request: nothing to batch with (INLINE_CROPS).
            all_probs = self.predictor.predict_crops(crops_in)
            self._count_batch(1, len(all_probs))
        else:
            # Wait for other requests' crops only when there are other requests to wait for.
            self._classify.set_batch_wait_timeout_s(self.wait_s if self._inflight > 1 else 0.0)
            all_probs = await self._classify(crops_in)
        probs = iter(np.split(all_probs, np.cumsum([len(c) for c in crops])[:-1]))
        out = []
        for crop_set, boxes in prepared:
            p = next(probs) if len(crop_set) else []
            out.append([{"box": [int(v) for v in box], "probs": {c: float(x) for c, x in zip(self.classes, row)},
                         "emotion": self.classes[int(np.argmax(row))], "score": float(np.max(row))}
                        for box, row in zip(boxes, p)])
        return out

    async def _predict(self, request: Request, faces: bool, batch: bool) -> JSONResponse:
        start = time.perf_counter()
        self._authorize(request)
        self._inflight += 1
        try:
            body = await read_body(request, self.limits.max_bytes)
            images = images_from_body(body, request.headers.get("content-type"), batch, self.limits)
            results = await self._faces(images, faces)
        except RequestError:
            raise
        except Exception as err:  # noqa: BLE001 - any surprise is this request's 500, never the replica's end
            print(f"fertune serve: internal error: {type(err).__name__}: {err}", file=sys.stderr)
            return error_response(500, "internal_error", f"{type(err).__name__} while predicting; the server log "
                                                         f"has the details")
        finally:
            self._inflight -= 1
        ms = round((time.perf_counter() - start) * 1000, 3)
        model = self.predictor.model_id
        if batch:
            return JSONResponse({"model": model, "results": [{"model": model, "faces": f, "ms": ms} for f in results],
                                 "ms": ms})
        return JSONResponse({"model": model, "faces": results[0], "ms": ms})

    # ------------------------------------------------------------------------------------------- routes
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page_route(self) -> HTMLResponse:
        return HTMLResponse(self.page)

    @api.get("/v1/health", summary="Liveness (no token needed)")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.predictor.model_id}

    @api.get("/v1/model", summary="The served model: classes, metrics, config, trial id, batching, limits")
    async def model_info(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        import torch

        info = self.predictor.info()
        info["batching"] = {"max_batch_size": self.s.max_batch_size, "batch_wait_ms": self.s.batch_wait_ms,
                            **self.stats}
        info["limits"] = asdict(self.limits)
        info["replica"] = {"pid": os.getpid(), "torch_threads": torch.get_num_threads(),
                           "device": str(self.predictor.device)}
        return info

    @api.post("/v1/predict", summary="Faces and emotion probabilities in one image", openapi_extra=IMAGE_BODY)
    async def predict(self, request: Request, faces: bool = True) -> JSONResponse:
        """The image as the raw body (Content-Type image/jpeg, image/png, image/webp, image/bmp or
        application/octet-stream) or as a multipart/form-data file part. `faces=false` classifies the
        whole image as one face crop (box = the whole image)."""
        return await self._predict(request, faces, batch=False)

    @api.post("/v1/predict/batch", summary="Several images in one request", openapi_extra=BATCH_BODY)
    async def predict_batch(self, request: Request, faces: bool = True) -> JSONResponse:
        """Several multipart/form-data file parts, or JSON {"images": ["<base64>", ...]}; the reply's
        `results` holds one /v1/predict reply per image, in order."""
        return await self._predict(request, faces, batch=True)


# ------------------------------------------------------------------------------------------ deployment
def deployment_options(s: ServeSettings) -> dict[str, Any]:
    """Replica count, resources and queue depth for the FerServer deployment."""
    import torch

    gpu = s.device == "cuda" or (s.device == "auto" and torch.cuda.is_available())
    # Serve's default max_ongoing_requests (5) would cap every batch at 5 requests.
    opts: dict[str, Any] = {"max_ongoing_requests": max(64, 4 * s.max_batch_size),
                            "ray_actor_options": {"num_cpus": s.num_cpus, "num_gpus": 1 if gpu else 0}}
    if s.replicas == "auto":
        opts["num_replicas"] = "auto"
        opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": max(1, os.cpu_count() or 1),
                                      "target_ongoing_requests": max(2, s.max_batch_size // 2)}
    else:
        opts["num_replicas"] = int(s.replicas)
    return opts


def build(s: ServeSettings) -> serve.Application:
    return FerServer.options(**deployment_options(s)).bind(asdict(s))


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: `serve run serve.app:build_app model=PATH [max_batch_size=32 ...]`."""
    return build(settings_from_dict(dict(args)))


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ValueError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port or stop the "
                             f"server using it") from None


def main(args: Any) -> int:
    """`fertune serve`: start Ray (or join RAY_ADDRESS), deploy the app, serve until Ctrl-C."""
    s = settings_from_dict({"model": args.model, "host": args.host, "port": args.port, "replicas": args.replicas,
                            "max_batch_size": args.max_batch_size, "batch_wait_ms": args.batch_wait_ms,
                            "device": args.device, "api_key": args.api_key})
    if s.device == "cuda":
        from fer_core.device import resolve_device

        resolve_device("cuda")  # no GPU: a clear error now, not an unschedulable replica later
    warning = exposure_warning(s)
    if warning:
        print(warning, file=sys.stderr)
    check_port_free(s.host, s.port)
    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level="WARNING")
    try:
        serve.start(http_options={"host": s.host, "port": s.port})
        serve.run(build(s), name="fertune", route_prefix="/")
        url = f"http://{'[' + s.host + ']' if ':' in s.host else s.host}:{s.port}"
        print(f"fertune serve: {Path(s.model).name} ready at {url}/ (API {url}/v1/predict, docs {url}/docs); "
              f"Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("fertune serve: stopping", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
