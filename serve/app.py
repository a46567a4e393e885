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

This module holds the replica (`FerServer`) and its deployment; serve/settings.py the settings and their
defaults (the one source for the CLI flags, serve/config.yaml and the docs), serve/routes.py the FastAPI
object, the error replies and the request helpers, serve/decode.py the request bodies and images.
"""
# No `from __future__ import annotations` here: Serve's class-based FastAPI view reads the route
# signatures at runtime, and string annotations make it treat `self` and `request` as query parameters.
import asyncio
import hmac
import os
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve

from fer_core.infer import FacePrediction, Predictor
from fer_core.settings import defaults
from fer_core.stop import sigterm_kept
from serve.decode import RequestError, image_size, images_from_body
from serve.routes import BATCH_BODY, IMAGE_BODY, api, error_response, prepare, read_body
from serve.settings import ServeSettings, exposure_warning, settings_from_dict

STATIC = Path(__file__).resolve().parent / "static"
DEFAULTS = defaults(ServeSettings)
# Images up to this many pixels are decoded and cropped on the event loop (tens of microseconds);
# larger ones go to a worker thread so a 20 MP photo's face detection does not stall the other requests.
INLINE_PIXELS = 256 * 256
# A lone request with this few crops is classified on the event loop (a few ms), not through the batch
# queue and a worker thread: nothing else is waiting, so those hand-offs would be pure cost.
INLINE_CROPS = 4


@serve.deployment(name="FerServer")
@serve.ingress(api)
class FerServer:
    """One replica: a Predictor, the limits, the token, and the batch queue."""

    def __init__(self, settings: dict[str, Any]):
        import torch

        self.s = ServeSettings(**settings)
        torch.set_num_threads(max(1, int(self.s.num_cpus)))
        self.predictor = Predictor(self.s.model, device=self.s.device, detector=self.s.detector)
        self.limits = self.s.limits
        self.wait_s = self.s.batch_wait_ms / 1000
        self._classify.set_max_batch_size(self.s.max_batch_size)
        self._inflight = 0
        # forward passes, requests and crops classified, and the most requests one forward pass held
        self.stats = {"batches": 0, "items": 0, "crops": 0, "max_batch": 0}
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
        self.stats["max_batch"] = max(self.stats["max_batch"], requests)

    # The decorator's values are only the start: __init__ and each request set this replica's own.
    @serve.batch(max_batch_size=DEFAULTS["max_batch_size"], batch_wait_timeout_s=DEFAULTS["batch_wait_ms"] / 1000)
    async def _classify(self, crop_sets: list[np.ndarray]) -> list[np.ndarray]:
        """Crops of several requests -> their probabilities, in one forward pass."""
        sizes = [len(c) for c in crop_sets]
        crops = np.concatenate(crop_sets)
        # keep the event loop free to read and decode the next requests while the network runs
        probs = await asyncio.to_thread(self.predictor.predict_crops, crops)
        self._count_batch(len(crop_sets), len(probs))
        bounds = np.cumsum([0, *sizes])
        return [probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    async def _faces(self, images: list[bytes], faces: bool) -> list[list[FacePrediction]]:
        prepared = []
        for i, data in enumerate(images):
            try:
                _, w, h = image_size(data) if data else ("", 0, 0)
                args = (data, faces, self.limits, self.predictor.img_size, self.predictor.detector)
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
            out.append([FacePrediction(tuple(int(v) for v in box), row) for box, row in zip(boxes, p)])
        return out

    async def _predict(self, request: Request, faces: bool, batch: bool) -> JSONResponse:
        start = time.perf_counter()
        self._authorize(request)
        self._inflight += 1
        try:
            body = await read_body(request, self.limits.max_bytes)
            images = images_from_body(body, request.headers.get("content-type"), batch, self.limits)
            results = [[face.to_dict() for face in image] for image in await self._faces(images, faces)]
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
        info["detector"] = self.predictor.detector.name
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


def main(settings: ServeSettings) -> int:
    """`fertune serve`: start Ray (or join RAY_ADDRESS), deploy the app, serve until Ctrl-C or SIGTERM."""
    s = settings_from_dict(asdict(settings))
    if s.device == "cuda":
        from fer_core.device import resolve_device

        resolve_device("cuda")  # no GPU: a clear error now, not an unschedulable replica later
    warning = exposure_warning(s)
    if warning:
        print(warning, file=sys.stderr)
    check_port_free(s.host, s.port)
    import ray

    with sigterm_kept():  # the CLI's SIGTERM stops as Ctrl-C does: Serve and Ray shut down in the `finally`
        ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level="WARNING")
    try:
        serve.start(http_options={"host": s.host, "port": s.port}, proxy_location=s.proxy_location)
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
