"""A Python client for `fertune serve`, with no dependency beyond the standard library.

It imports neither fer_core nor torch: copy this one file next to your code, or use it from the package.

    from serve.client import predict
    reply = predict("face.jpg", url="http://127.0.0.1:8000")
    for face in reply["faces"]:
        print(face["box"], face["emotion"], face["score"])

Command line: `python -m serve.client face.jpg [more.jpg ...] [--url URL] [--no-faces] [--api-key KEY]`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

DEFAULT_URL = os.environ.get("FERTUNE_URL", "http://127.0.0.1:8000")
API_KEY_ENV = "FERTUNE_API_KEY"
RETRIES = 2          # predictions are tried again on a lost connection or a 5xx reply (tests/test_cluster_faults.py)
RETRY_WAIT_S = 0.5
_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"RIFF": "image/webp", b"BM": "image/bmp"}


class ServeError(Exception):
    """An error reply: `status` (HTTP), `code` (SPEC.md error code) and `detail` (what to fix)."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def _read(image: str | os.PathLike | bytes) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    return Path(image).read_bytes()


def _content_type(data: bytes) -> str:
    return next((t for magic, t in _TYPES.items() if data.startswith(magic)), "application/octet-stream")


def _request(url: str, data: bytes | None, headers: dict[str, str], api_key: str | None,
             timeout: float, retries: int = 0) -> dict[str, Any]:
    """One request; a prediction is idempotent, so a lost connection or a 5xx reply (a replica that died with
    its machine) is tried again, `retries` times, after RETRY_WAIT_S, 2x that, ..."""
    for attempt in range(retries + 1):
        try:
            return _request_once(url, data, headers, api_key, timeout)
        except (ServeError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as err:
            server_side = not isinstance(err, ServeError) or err.status >= 500
            if attempt == retries or not server_side:
                raise
            time.sleep(RETRY_WAIT_S * 2 ** attempt)
    raise AssertionError("unreachable")


def _request_once(url: str, data: bytes | None, headers: dict[str, str], api_key: str | None,
                  timeout: float) -> dict[str, Any]:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key:
        headers = {**headers, "Authorization": f"Bearer {key}"}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return json.loads(res.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            reply = json.loads(body)
            raise ServeError(err.code, reply.get("error", "http_error"), reply.get("detail", "")) from None
        except (ValueError, AttributeError):
            raise ServeError(err.code, "http_error", body[:200].decode("utf-8", "replace")) from None


def predict(image: str | os.PathLike | bytes, url: str = DEFAULT_URL, faces: bool = True,
            api_key: str | None = None, timeout: float = 60.0, retries: int = RETRIES) -> dict[str, Any]:
    """POST one image (a path or the file's bytes) to /v1/predict.

    Returns the reply: {"model", "faces": [{"box": [x, y, w, h], "probs": {class: p}, "emotion", "score"}], "ms"}.
    `faces=False` classifies the whole image as one face. `api_key` defaults to $FERTUNE_API_KEY.
    A lost connection or a 5xx reply is tried again `retries` times. Raises ServeError on an error reply.
    """
    data = _read(image)
    query = "" if faces else "?faces=false"
    return _request(f"{url.rstrip('/')}/v1/predict{query}", data, {"Content-Type": _content_type(data)},
                    api_key, timeout, retries)


def predict_batch(images: list[str | os.PathLike | bytes], url: str = DEFAULT_URL, faces: bool = True,
                  api_key: str | None = None, timeout: float = 120.0, retries: int = RETRIES) -> dict[str, Any]:
    """POST several images as multipart/form-data to /v1/predict/batch; reply["results"] is in their order."""
    boundary = uuid.uuid4().hex
    chunks = []
    for i, image in enumerate(images):
        data = _read(image)
        name = Path(image).name if not isinstance(image, (bytes, bytearray, memoryview)) else f"image{i}"
        name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        chunks += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                   f"Content-Type: {_content_type(data)}\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    query = "" if faces else "?faces=false"
    return _request(f"{url.rstrip('/')}/v1/predict/batch{query}", b"".join(chunks),
                    {"Content-Type": f"multipart/form-data; boundary={boundary}"}, api_key, timeout, retries)


def model_info(url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """GET /v1/model: classes, metrics, config and serving settings."""
    return _request(f"{url.rstrip('/')}/v1/model", None, {}, api_key, timeout)


def health(url: str = DEFAULT_URL, timeout: float = 10.0) -> dict[str, Any]:
    """GET /v1/health."""
    return _request(f"{url.rstrip('/')}/v1/health", None, {}, None, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.client", description="Query a fertune server.")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server address (default {DEFAULT_URL}, or $FERTUNE_URL)")
    parser.add_argument("--no-faces", action="store_true", help="classify each whole image as one face")
    parser.add_argument("--api-key", help=f"bearer token (default ${API_KEY_ENV})")
    args = parser.parse_args(argv)
    try:
        for image in args.images:
            reply = predict(image, url=args.url, faces=not args.no_faces, api_key=args.api_key)
            found = ", ".join(f"{f['emotion']} {f['score']:.2f} at {f['box']}" for f in reply["faces"]) or "no face"
            print(f"{image}: {found}")
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, urllib.error.URLError) as err:
        print(f"error: {err}; is `fertune serve` running at {args.url}?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
