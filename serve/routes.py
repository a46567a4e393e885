"""The HTTP face of `fertune serve`: the FastAPI `api` object, its error replies and the request helpers.

The routes themselves are `FerServer`'s methods (serve/app.py), registered on this `api` object; this
module holds what does not need a replica: every error reply in SPEC.md's shape `{"error", "detail"}`
(also for FastAPI's own 404, 405 and 422), the OpenAPI descriptions of the request bodies, reading a
body under its size limit, and decoding one image into its face crops.
"""
# No `from __future__ import annotations`, as in serve/app.py: FastAPI reads the signatures of what is
# registered on `api` at runtime, and string annotations would be resolved in the wrong namespace.
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.decode import Limits, RequestError, decode_image, too_large

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type", 422: "malformed_request",
               500: "internal_error", 503: "not_ready"}

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


# The routes read their bodies themselves (size limit first, then strict parsing), so FastAPI cannot
# infer these; without them /docs would offer no way to send an image.
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


def prepare(data: bytes, faces: bool, limits: Limits, img_size: int, detector: Any = None) -> tuple[np.ndarray, list[tuple]]:
    """Decode one image and cut its face crops exactly as Predictor.predict_images does, with `detector`
    (a fer_core.faces.FaceDetector; None: the default)."""
    from fer_core.faces import image_crops

    return image_crops(decode_image(data, limits), faces, img_size, detector)
