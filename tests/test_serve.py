"""`fertune serve` end to end: a real Ray Serve app on 127.0.0.1, queried over HTTP.

One Ray instance per module hosts two apps: the open one at / and one with an API key at /secure.
Served predictions must equal `Predictor`'s on the same inputs; bad requests must get SPEC.md's error
replies without taking the replica down; the page must render boxes and bars in headless Chromium.
"""
from __future__ import annotations

import base64
import http.client as http_client
import json
import os
import shutil
import socket
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FER_PARQUET, REPO, SHARED_DATA

API_KEY = "s3cret-token"


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="session")
def tiny_model(tiny_run) -> Path:
    return tiny_run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict, dict]:
    """(status, JSON reply, headers) without raising on error statuses."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            raw, status, hdrs = res.read(), res.status, {k.lower(): v for k, v in res.headers.items()}
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, {k.lower(): v for k, v in err.headers.items()}
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, {"raw": raw[:200]}, hdrs


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_size(width: int, height: int, extra: bytes = b"") -> bytes:
    """A structurally valid PNG header declaring width x height (a decompression bomb when large)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def multipart(files: list[tuple[str, str | None, str, bytes]], boundary: str = "fertuneboundary") -> tuple[bytes, str]:
    """[(field name, filename or None, content type, data)] -> (body, Content-Type header)."""
    out = b""
    for name, filename, ctype, data in files:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def scenes(n: int, seed: int = 0, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    from fer_core.synthetic_scenes import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene([(i % 7, 100), ((i + 3) % 7, 80)], rng, width=size[0], height=size[1])[0] for i in range(n)]


def real_inputs() -> list[tuple[str, np.ndarray, bool]]:
    """(name, BGR or gray image, faces flag): FER2013 test faces and frames of the shared clips when
    ../shared exists, synthetic scenes otherwise."""
    items: list[tuple[str, np.ndarray, bool]] = []
    if FER_PARQUET.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(FER_PARQUET, columns=["image", "split"]).slice(28709, 12).to_pylist()
        for i, row in enumerate(table):
            gray = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_GRAYSCALE)
            items.append((f"fer{i}", gray, False))
            if i < 3:  # enlarged, so the Haar detector has a chance at it
                items.append((f"fer{i}x4", cv2.resize(gray, (192, 192), interpolation=cv2.INTER_LINEAR), True))
    clips = sorted((SHARED_DATA / "video").glob("*.mp4")) + sorted(SHARED_DATA.glob("*.mp4"))
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in (count // 5, count // 2, 4 * count // 5):
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok:
                items.append((f"{clip.stem}@{index}", frame, True))
        cap.release()
    if not items:
        items = [(f"scene{i}", img, True) for i, img in enumerate(scenes(4))]
        items += [(f"crop{i}", img[60:160, 60:160], False) for i, img in enumerate(scenes(2, seed=1))]
    return items


def assert_same(reply_faces: list[dict], expected) -> None:
    from fer_core.labels import CLASSES

    assert [f["box"] for f in reply_faces] == [list(p.box) for p in expected]
    for got, want in zip(reply_faces, expected):
        assert got["emotion"] == want.emotion
        probs = np.array([got["probs"][c] for c in CLASSES])
        np.testing.assert_allclose(probs, want.probs, atol=1e-4, rtol=0)
        assert abs(got["score"] - want.score) < 1e-4


# ------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def server(tiny_model):
    """Ray + Serve on 127.0.0.1: the open app at /, the same model with an API key at /secure."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from serve.app import build_app

    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR",
             configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"model": str(tiny_model), "num_cpus": 0.5}), name="open", route_prefix="/")
        serve.run(build_app({"model": str(tiny_model), "num_cpus": 0.5, "api_key": API_KEY}), name="secure",
                  route_prefix="/secure")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def predictor(tiny_model):
    from fer_core.infer import Predictor

    return Predictor(tiny_model, device="cpu")


def replica_pid(url: str, headers: dict | None = None) -> int:
    status, reply, _ = http("GET", f"{url}/v1/model", headers=headers)
    assert status == 200, reply
    return reply["replica"]["pid"]


# ---------------------------------------------------------------------------------------------- tests
def test_health_model_and_docs(server, tiny_model):
    status, reply, _ = http("GET", f"{server}/v1/health")
    assert (status, reply["status"]) == (200, "ok")
    status, info, _ = http("GET", f"{server}/v1/model")
    assert status == 200
    assert info["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert info["config"]["model"] == "cnn_small"
    assert info["model"] == tiny_model.name and info["batching"]["max_batch_size"] == 32
    from fer_core.detector_settings import yunet_available

    assert info["detector"] == ("yunet" if yunet_available() else "haar")  # auto, resolved when the app was built
    status, spec, _ = http("GET", f"{server}/openapi.json")
    assert status == 200 and {"/v1/predict", "/v1/predict/batch", "/v1/model", "/v1/health"} <= set(spec["paths"])
    with urllib.request.urlopen(f"{server}/docs", timeout=30) as res:
        assert res.status == 200 and b"swagger" in res.read().lower()


def test_served_predictions_equal_predictor(server, predictor):
    """Same top class, probabilities within 1e-4 and equal boxes, on real faces when ../shared exists."""
    items = real_inputs()
    found = 0
    for name, image, faces in items:
        query = "" if faces else "?faces=false"
        status, reply, _ = http("POST", f"{server}/v1/predict{query}", png(image), {"Content-Type": "image/png"})
        assert status == 200, (name, reply)
        assert reply["model"] == predictor.model_id and reply["ms"] >= 0
        assert_same(reply["faces"], predictor.predict_image(image, faces=faces))
        found += len(reply["faces"]) if faces else 0
    assert found >= 2, "no face was detected in any input; the detection path went untested"
    # a JPEG: the server's decoder and cv2.imdecode must agree, so the reply equals Predictor on the decoded image
    jpeg = cv2.imencode(".jpg", items[-1][1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    status, reply, _ = http("POST", f"{server}/v1/predict", jpeg, {"Content-Type": "image/jpeg"})
    assert status == 200
    assert_same(reply["faces"], predictor.predict_image(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)))


def batching(url: str) -> dict:
    status, info, _ = http("GET", f"{url}/v1/model")
    assert status == 200, info
    return info["batching"]


def test_concurrent_requests_are_batched_and_exact(server, predictor):
    """32 requests sent at once are classified in fewer forward passes than requests, and every reply
    equals Predictor's whatever batch it landed in."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    clients = 32
    images = scenes(clients, seed=3)
    bodies, expected = [png(im) for im in images], [predictor.predict_image(im) for im in images]
    with_faces = sum(1 for e in expected if e)
    assert with_faces >= clients // 2, "too few synthetic scenes with a detected face to test batching"
    before = batching(server)
    # The replica batches only requests in flight together, so the clients start at one barrier. On two
    # loaded cores one round can still reach the replica one request at a time; up to three rounds.
    for rounds in range(1, 4):
        barrier = threading.Barrier(clients)

        def send(i: int) -> tuple[int, dict, dict]:
            barrier.wait(timeout=60)
            return http("POST", f"{server}/v1/predict", bodies[i], {"Content-Type": "image/png"})

        with ThreadPoolExecutor(clients) as pool:
            replies = list(pool.map(send, range(clients)))
        for want, (status, reply, _) in zip(expected, replies):
            assert status == 200, reply
            assert_same(reply["faces"], want)
        after = batching(server)
        if after["batches"] - before["batches"] < after["items"] - before["items"]:
            break
    items, batches = after["items"] - before["items"], after["batches"] - before["batches"]
    assert items == rounds * with_faces  # requests without a face never reach the model
    assert batches < items, f"{rounds} round(s) of {clients} concurrent requests: {items} requests in {batches} " \
                            f"forward passes, none batched"
    assert after["max_batch"] >= 2


def test_deeply_nested_json_is_malformed_and_the_replica_survives(server):
    """JSON nested 10,000 deep exceeds the parser's recursion limit: the client's 422, not a 500."""
    pid = replica_pid(server)
    deep = b'{"images": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    status, reply, _ = http("POST", f"{server}/v1/predict/batch", deep, {"Content-Type": "application/json"})
    assert (status, reply.get("error")) == (422, "malformed_request"), reply
    assert "nested too deeply" in reply["detail"] and '{"images"' in reply["detail"], reply["detail"]
    good = png(scenes(1, seed=4)[0])
    payload = json.dumps({"images": [base64.b64encode(good).decode()]}).encode()
    status, reply, _ = http("POST", f"{server}/v1/predict/batch", payload, {"Content-Type": "application/json"})
    assert status == 200 and len(reply["results"][0]["faces"]) >= 1, reply
    assert replica_pid(server) == pid  # the same replica answered: no crash and restart


def test_batch_route_multipart_and_json(server, predictor):
    images = scenes(3, seed=5)
    body, ctype = multipart([("files", f"s{i}.png", "image/png", png(im)) for i, im in enumerate(images)])
    status, reply, _ = http("POST", f"{server}/v1/predict/batch", body, {"Content-Type": ctype})
    assert status == 200, reply
    assert len(reply["results"]) == 3
    for image, result in zip(images, reply["results"]):
        assert_same(result["faces"], predictor.predict_image(image))
    payload = json.dumps({"images": [base64.b64encode(png(im)).decode() for im in images[:2]]}).encode()
    status, reply, _ = http("POST", f"{server}/v1/predict/batch?faces=false", payload,
                            {"Content-Type": "application/json"})
    assert status == 200 and len(reply["results"]) == 2
    assert_same(reply["results"][1]["faces"], predictor.predict_image(images[1], faces=False))
    # multipart on the single route, with a form text field beside the file
    body, ctype = multipart([("note", None, "text/plain", b"hello"), ("file", "a.png", "image/png", png(images[0]))])
    status, reply, _ = http("POST", f"{server}/v1/predict", body, {"Content-Type": ctype})
    assert status == 200
    assert_same(reply["faces"], predictor.predict_image(images[0]))


def test_no_face_is_an_empty_list(server):
    blank = np.full((120, 160, 3), 127, np.uint8)
    status, reply, _ = http("POST", f"{server}/v1/predict", png(blank), {"Content-Type": "image/png"})
    assert status == 200 and reply["faces"] == []


def bad_requests(good: bytes) -> list[tuple[str, str, str, bytes, dict, int, str]]:
    """(name, method, path, body, headers, status, error code): SPEC.md's replies for bad input."""
    jpeg = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    gif = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
           b"!\xf9\x04\x00\x0a\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    sof = jpeg.index(b"\xff\xc0")  # baseline frame header: FF C0, length, precision, height, width
    jpeg_bomb = jpeg[:sof + 5] + b"\xff\xff\xff\xff" + jpeg[sof + 9:]
    webp_bomb = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00" * 4 \
        + (20000 - 1).to_bytes(3, "little") + (20000 - 1).to_bytes(3, "little")
    webp_anim = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x02\x00\x00\x00" \
        + (99).to_bytes(3, "little") + (99).to_bytes(3, "little")
    bmp_bomb = b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 100000, 100000, 1, 24,
                                                                        0, 0, 0, 0, 0, 0) + b"\x00" * 16
    broken_png = good[:len(good) // 2]
    bad_idat = png_with_size(8, 8)[:33] + png_chunk(b"IDAT", b"\x00" * 12) + png_chunk(b"IEND", b"")
    apng = png_with_size(8, 8, extra=png_chunk(b"acTL", struct.pack(">II", 2, 0)))
    two, two_type = multipart([("a", "a.png", "image/png", good), ("b", "b.png", "image/png", good)])
    text_only, text_type = multipart([("note", None, "text/plain", b"hello")])
    text_file, text_file_type = multipart([("file", "notes.txt", "text/plain", b"hello")])
    unclosed, unclosed_type = multipart([("file", "a.png", "image/png", good)])
    many, many_type = multipart([(f"f{i}", f"{i}.png", "image/png", good) for i in range(17)])
    one_bad, one_bad_type = multipart([("a", "a.png", "image/png", good), ("b", "b.png", "image/png", b"nope")])
    png_h = {"Content-Type": "image/png"}
    return [
        ("empty body", "POST", "/v1/predict", b"", png_h, 422, "malformed_request"),
        ("truncated JPEG", "POST", "/v1/predict", jpeg[:len(jpeg) // 2], {"Content-Type": "image/jpeg"}, 400, "undecodable"),
        ("truncated PNG", "POST", "/v1/predict", broken_png, png_h, 400, "undecodable"),
        ("corrupt PNG data", "POST", "/v1/predict", bad_idat, png_h, 400, "undecodable"),
        ("text as an image", "POST", "/v1/predict", b"hello, I am not a picture", png_h, 400, "undecodable"),
        ("random bytes", "POST", "/v1/predict", os.urandom(2000).replace(b"\xff", b"\x00"),
         {"Content-Type": "application/octet-stream"}, 400, "undecodable"),
        ("0x0 PNG", "POST", "/v1/predict", png_with_size(0, 0), png_h, 400, "undecodable"),
        ("huge PNG header", "POST", "/v1/predict", png_with_size(100000, 100000), png_h, 413, "too_many_pixels"),
        ("huge JPEG header", "POST", "/v1/predict", jpeg_bomb, {"Content-Type": "image/jpeg"}, 413, "too_many_pixels"),
        ("huge WebP header", "POST", "/v1/predict", webp_bomb, {"Content-Type": "image/webp"}, 413, "too_many_pixels"),
        ("huge BMP header", "POST", "/v1/predict", bmp_bomb, {"Content-Type": "image/bmp"}, 413, "too_many_pixels"),
        ("animated GIF", "POST", "/v1/predict", gif, {"Content-Type": "image/gif"}, 415, "unsupported_media_type"),
        ("GIF bytes declared PNG", "POST", "/v1/predict", gif, png_h, 415, "unsupported_media_type"),
        ("animated PNG", "POST", "/v1/predict", apng, png_h, 415, "unsupported_media_type"),
        ("animated WebP", "POST", "/v1/predict", webp_anim, {"Content-Type": "image/webp"}, 415, "unsupported_media_type"),
        ("TIFF", "POST", "/v1/predict", b"II*\x00" + b"\x00" * 100, {"Content-Type": "image/tiff"}, 415,
         "unsupported_media_type"),
        ("wrong content type", "POST", "/v1/predict", good, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("JSON on the single route", "POST", "/v1/predict", b"{}", {"Content-Type": "application/json"}, 415,
         "unsupported_media_type"),
        ("text file part", "POST", "/v1/predict", text_file, {"Content-Type": text_file_type}, 415,
         "unsupported_media_type"),
        ("multipart without boundary", "POST", "/v1/predict", two, {"Content-Type": "multipart/form-data"}, 422,
         "malformed_request"),
        ("multipart with another boundary", "POST", "/v1/predict", two,
         {"Content-Type": "multipart/form-data; boundary=other"}, 422, "malformed_request"),
        ("multipart not closed", "POST", "/v1/predict", unclosed[:-len(b"--fertuneboundary--\r\n")],
         {"Content-Type": unclosed_type}, 422, "malformed_request"),
        ("multipart without a file", "POST", "/v1/predict", text_only, {"Content-Type": text_type}, 422,
         "malformed_request"),
        ("two images on the single route", "POST", "/v1/predict", two, {"Content-Type": two_type}, 422,
         "malformed_request"),
        ("too many batch items", "POST", "/v1/predict/batch", many, {"Content-Type": many_type}, 413, "too_many_images"),
        ("one bad batch item", "POST", "/v1/predict/batch", one_bad, {"Content-Type": one_bad_type}, 400, "undecodable"),
        ("batch JSON that does not parse", "POST", "/v1/predict/batch", b"{images:", {"Content-Type": "application/json"},
         422, "malformed_request"),
        ("batch JSON with bad base64", "POST", "/v1/predict/batch", b'{"images": ["@@@"]}',
         {"Content-Type": "application/json"}, 422, "malformed_request"),
        ("batch JSON of the wrong shape", "POST", "/v1/predict/batch", b'[1, 2]', {"Content-Type": "application/json"},
         422, "malformed_request"),
        ("bad faces flag", "POST", "/v1/predict?faces=maybe", good, png_h, 422, "malformed_request"),
        ("GET on predict", "GET", "/v1/predict", None, {}, 405, "method_not_allowed"),
        ("unknown route", "GET", "/v2/predict", None, {}, 404, "not_found"),
    ]


def test_bad_inputs_get_spec_errors_and_the_replica_survives(server):
    good = png(scenes(1, seed=7)[0])
    pid = replica_pid(server)
    cases = bad_requests(good)
    assert len(cases) >= 20
    for name, method, path, body, headers, status, code in cases:
        got, reply, _ = http(method, f"{server}{path}", body, headers)
        assert (got, reply.get("error")) == (status, code), (name, reply)
        assert reply.get("detail"), name
        assert "faces" not in reply and "results" not in reply, name
    # A body declared over 10 MB is refused from its Content-Length, before the server reads it.
    host, port = server.removeprefix("http://").split(":")
    conn = http_client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
    conn.endheaders(good)
    res = conn.getresponse()
    assert (res.status, json.loads(res.read())["error"]) == (413, "body_too_large")
    conn.close()
    got, reply, _ = http("POST", f"{server}/v1/predict", good, {"Content-Type": "image/png"})
    assert got == 200 and len(reply["faces"]) >= 1
    assert replica_pid(server) == pid  # no crash and restart


def test_api_key_guards_every_route_but_health(server):
    url, good = f"{server}/secure", png(scenes(1, seed=8)[0])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
                    {"Authorization": f"Basic {API_KEY}"}, {"Authorization": f"Bearer {API_KEY}x"}):
        status, reply, hdrs = http("POST", f"{url}/v1/predict", good, {"Content-Type": "image/png", **headers})
        assert (status, reply.get("error")) == (401, "unauthorized"), headers
        assert "faces" not in reply and hdrs.get("www-authenticate") == "Bearer"
        assert http("GET", f"{url}/v1/model", headers=headers)[0] == 401
        assert http("POST", f"{url}/v1/predict/batch", good, {"Content-Type": "image/png", **headers})[0] == 401
    assert http("GET", f"{url}/v1/health")[0] == 200
    auth = {"Authorization": f"Bearer {API_KEY}"}
    status, reply, _ = http("POST", f"{url}/v1/predict", good, {"Content-Type": "image/png", **auth})
    assert status == 200 and len(reply["faces"]) >= 1
    assert replica_pid(url, auth) != replica_pid(server)  # two apps, two replicas
    with urllib.request.urlopen(f"{url}/", timeout=30) as res:  # the page works under a route prefix too
        assert b"v1/predict" in res.read()


def test_python_client(server, predictor, tmp_path):
    from serve import client

    image = scenes(1, seed=9)[0]
    path = tmp_path / "scene.png"
    path.write_bytes(png(image))
    reply = client.predict(path, url=server)
    assert_same(reply["faces"], predictor.predict_image(image))
    reply = client.predict(path.read_bytes(), url=server, faces=False)
    assert reply["faces"][0]["box"] == [0, 0, image.shape[1], image.shape[0]]
    batch = client.predict_batch([path, path.read_bytes()], url=server)
    assert [r["faces"] for r in batch["results"]] == [batch["results"][0]["faces"]] * 2
    with pytest.raises(client.ServeError) as err:
        client.predict(b"not an image", url=server)
    assert (err.value.status, err.value.code) == (400, "undecodable")
    with pytest.raises(client.ServeError) as err:
        client.predict(path, url=f"{server}/secure")
    assert err.value.status == 401
    secure = client.predict(path, url=f"{server}/secure", api_key=API_KEY)
    assert_same(secure["faces"], predictor.predict_image(image))


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium chromium-driver)")
def test_page_in_headless_chromium_shows_boxes_and_bars(server, predictor, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install 'fertune[browser]'")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fer_core.synthetic_scenes import render_scene

    image = render_scene([(3, 120), (6, 110)], np.random.default_rng(11), width=560, height=360)[0]
    path = tmp_path / "two_faces.png"
    path.write_bytes(png(image))
    expected = predictor.predict_image(image)
    assert expected, "the synthetic scene should hold detectable faces"

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,820", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(f"{server}/")
        driver.find_element(By.ID, "file").send_keys(str(path))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-faces"))
        assert driver.find_element(By.ID, "status").get_attribute("class") != "error", \
            driver.find_element(By.ID, "status").text
        assert int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-faces")) == len(expected)
        bars = driver.find_elements(By.CSS_SELECTOR, ".face .bar")
        assert len(bars) == 7 * len(expected)
        widths = [float(b.value_of_css_property("width").rstrip("px")) for b in bars[:7]]
        assert max(widths) > 0
        titles = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".face h3")]
        assert titles == [f"Face {i + 1}: {f.emotion}" for i, f in enumerate(expected)]
        # The first box's bottom edge is drawn in the first colour (#e11d48) on the canvas: the row just
        # above y + h lies inside the stroke (at least 2 px wide, centred on y + h). The bottom edge, not
        # the top: the label above the top edge is filled in the same colour and would pass without a box.
        # The box's middle must not be that colour, or the check would not tell an edge from a fill.
        x, y, w, h = expected[0].box
        read = ("const c = document.getElementById('view');"
                "return Array.from(c.getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data);")
        edge = driver.execute_script(read, x + w // 2, y + h - 1)
        middle = driver.execute_script(read, x + w // 2, y + h // 2)
        assert edge[:3] == [225, 29, 72], edge
        assert middle[:3] != [225, 29, 72], middle
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("FERTUNE_SCREENSHOT"):  # refresh docs/serve_page.png on purpose, never by default
            shutil.copy(shot, REPO / os.environ["FERTUNE_SCREENSHOT"])
    finally:
        driver.quit()
