"""Request bodies to images, refusing anything that could hurt the replica before it is decoded.

Every check here raises `RequestError(status, code, detail)`, which the app turns into SPEC.md's
`{"error": code, "detail": ...}` reply. The order matters: content type, then byte count, then the
format's magic bytes, then the pixel count read from the file's own header, and only then the decoder.
A 50 kB PNG that declares 100000 x 100000 pixels (a decompression bomb) is refused from its header
without allocating the 10 GB the decoder would ask for.

Supported: JPEG, PNG, WebP and BMP, as a raw body or as parts of a multipart/form-data body, or
(for the batch route) base64 strings in a JSON body. Animated images (APNG, animated WebP) and other
formats (GIF, TIFF, ...) are refused with 415: the model classifies one still image.
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from fer_core.settings import defaults
from serve.settings import ServeSettings

_DEFAULTS = defaults(ServeSettings)

# The content types a raw body may declare. octet-stream is what `curl --data-binary` and many HTTP
# libraries send by default; the bytes are sniffed either way, so a declared type is only a filter.
RAW_TYPES = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/webp", "image/bmp", "image/x-bmp",
             "image/x-ms-bmp", "application/octet-stream"}
SUPPORTED_FORMATS = ("jpeg", "png", "webp", "bmp")


@dataclass(frozen=True)
class Limits:
    """What one request may hold; the defaults (ServeSettings') suit a public endpoint on a small machine."""
    max_bytes: int = _DEFAULTS["max_bytes"]      # whole request body (raw, multipart or JSON)
    max_pixels: int = _DEFAULTS["max_pixels"]    # width x height of one image
    max_images: int = _DEFAULTS["max_images"]    # images in one /v1/predict/batch request


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP status, `code` the machine-readable error."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


def undecodable(detail: str) -> RequestError:
    return RequestError(400, "undecodable", detail)


def unsupported(detail: str) -> RequestError:
    return RequestError(415, "unsupported_media_type", detail)


def malformed(detail: str) -> RequestError:
    return RequestError(422, "malformed_request", detail)


def too_large(detail: str, code: str = "body_too_large") -> RequestError:
    return RequestError(413, code, detail)


# ------------------------------------------------------------------------------------ content types
def parse_content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """'multipart/form-data; boundary="x"' -> ('multipart/form-data', {'boundary': 'x'}); '' when absent."""
    if not header:
        return "", {}
    mime, *rest = header.split(";")
    params = {}
    for item in rest:
        key, sep, value = item.strip().partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params[key.strip().lower()] = value
    return mime.strip().lower(), params


# ------------------------------------------------------------------------------------ format headers
def sniff(data: bytes) -> str | None:
    """The image format from its magic bytes: jpeg, png, webp, bmp (supported) or gif, tiff, ... (not)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "heif/avif"
    if data[:4] == b"\x00\x00\x01\x00":
        return "ico"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first SOF marker; also insists on an end-of-image marker after the scan,
    because libjpeg decodes a truncated file without error (the missing rows come out gray)."""
    pos, size = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise undecodable(f"JPEG is corrupt: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise undecodable("JPEG is truncated or corrupt (a segment runs past the end of the file)")
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and size is None:
            if length < 7:
                raise undecodable("JPEG frame header is too short")
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows, then EOI
            if size is None:
                raise undecodable("JPEG has no frame header before its image data")
            # FF D9 cannot occur inside entropy-coded data (a literal FF is stuffed as FF 00).
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                raise undecodable("JPEG is truncated: no end-of-image marker; send the whole file")
            return size
        pos += 2 + length
    raise undecodable("JPEG is truncated: it ends before its image data")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise undecodable("PNG is truncated or corrupt: no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    # acTL before the first IDAT marks an animated PNG; its chunks are all before the image data.
    head = data[:data.find(b"IDAT")] if b"IDAT" in data else data
    if b"acTL" in head:
        raise unsupported("animated PNG is not supported; send one frame as a still PNG or JPEG")
    if b"IEND" not in data[-1024:]:  # tolerate a little trailing padding, not a missing end
        raise undecodable("PNG is truncated: no IEND chunk at the end; send the whole file")
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    (riff_size,) = struct.unpack("<I", data[4:8])
    if len(data) < 30 or riff_size + 8 > len(data):
        raise undecodable(f"WebP is truncated: its header declares {riff_size + 8} bytes, {len(data)} arrived")
    chunk = data[12:16]
    if chunk == b"VP8X":
        if data[20] & 0x02:
            raise unsupported("animated WebP is not supported; send one frame as a still image")
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise undecodable("WebP (lossy) frame header is corrupt")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise undecodable("WebP (lossless) header is corrupt")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise undecodable(f"WebP has an unknown first chunk {chunk!r}")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise undecodable("BMP is truncated: shorter than its headers")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    (offset,) = struct.unpack("<I", data[10:14])
    if offset >= len(data):
        raise undecodable("BMP is truncated: its pixel data would start past the end of the file")
    return abs(width), abs(height)  # negative height: rows stored top-down


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; raises RequestError for anything not acceptable."""
    fmt = sniff(data)
    if fmt is None:
        start = data[:8].hex(" ")
        raise undecodable(f"the body is not a JPEG, PNG, WebP or BMP image (it starts with bytes {start}); "
                          f"send the image file's bytes unchanged")
    if fmt not in SUPPORTED_FORMATS:
        raise unsupported(f"{fmt.upper()} images are not supported; convert to JPEG, PNG, WebP or BMP")
    try:
        width, height = {"jpeg": _jpeg_size, "png": _png_size, "webp": _webp_size, "bmp": _bmp_size}[fmt](data)
    except struct.error:
        raise undecodable(f"{fmt.upper()} header is truncated") from None
    return fmt, width, height


# ------------------------------------------------------------------------------------------ decoding
def decode_image(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Validated bytes -> BGR uint8 (H, W, 3), the way cv2.imread reads a file (EXIF orientation applied)."""
    if not data:
        raise malformed("the image is empty (0 bytes); send the image file as the request body")
    fmt, width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise undecodable(f"{fmt.upper()} declares a {width}x{height} image, which has no pixels")
    if width * height > limits.max_pixels:
        raise too_large(f"{fmt.upper()} declares {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{limits.max_pixels:,}; downscale the image", code="too_many_pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise undecodable(f"the {fmt.upper()} image could not be decoded (corrupt or truncated); "
                          f"check that it opens in an image viewer")
    if image.shape[0] * image.shape[1] != width * height:
        # The header lied about the size; the decoder's answer is the truth, but do not trust the file.
        raise undecodable(f"{fmt.upper()} decodes to {image.shape[1]}x{image.shape[0]}, not the {width}x{height} "
                          f"its header declares; the file is corrupt")
    return image


# ----------------------------------------------------------------------------------------- multipart
@dataclass
class Part:
    name: str | None
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(body: bytes, boundary: str | None, max_parts: int = 64) -> list[Part]:
    """RFC 7578 multipart/form-data -> its parts. Strict: anything malformed is a 422, never a guess."""
    if not boundary:
        raise malformed("multipart/form-data without a boundary parameter; let your HTTP library build the "
                        "Content-Type header (e.g. curl -F file=@face.jpg)")
    if len(boundary) > 200:
        raise malformed("multipart boundary is longer than 200 characters")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if not body.startswith(delimiter):
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise malformed("multipart body does not contain its boundary; the body and the Content-Type "
                            "header do not match")
        body = body[start + 2:]  # skip a preamble
    pieces = body.split(b"\r\n" + delimiter)
    pieces[0] = pieces[0][len(delimiter):]
    parts = []
    closed = False
    for piece in pieces:
        if piece.startswith(b"--"):
            closed = True
            break
        if not piece.startswith(b"\r\n"):
            raise malformed("multipart boundary is not followed by a line break")
        head, sep, data = piece[2:].partition(b"\r\n\r\n")
        if not sep:
            raise malformed("a multipart part has no blank line between its headers and its data")
        headers = {}
        for line in head.split(b"\r\n"):
            key, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise malformed(f"malformed multipart header line {line[:60]!r}")
            headers[key.strip().lower()] = value.strip()
        disposition, params = parse_content_type(headers.get("content-disposition", ""))
        if disposition != "form-data":
            raise malformed("a multipart part lacks 'Content-Disposition: form-data'")
        parts.append(Part(params.get("name"), params.get("filename"),
                          parse_content_type(headers.get("content-type", "application/octet-stream"))[0], data))
        if len(parts) > max_parts:
            raise too_large(f"multipart body has more than {max_parts} parts", code="too_many_images")
    if not closed:
        raise malformed("multipart body is truncated: no closing boundary; send the whole body")
    return parts


def _file_parts(parts: list[Part]) -> list[bytes]:
    """The parts that carry images: those with a filename or a non-text type (form text fields are skipped)."""
    files = [p for p in parts if p.filename is not None or not p.content_type.startswith("text/")]
    for p in files:
        if p.content_type not in RAW_TYPES and p.content_type.startswith(("image/", "text/", "application/")):
            raise unsupported(f"part {p.name or p.filename!r} has type {p.content_type}; send JPEG, PNG, WebP or BMP")
    return [p.data for p in files]


# ------------------------------------------------------------------------------------------- bodies
def images_from_body(body: bytes, content_type: str | None, batch: bool, limits: Limits = Limits()) -> list[bytes]:
    """The encoded images a request carries (not yet decoded); one for /v1/predict, 1..max_images for batch."""
    mime, params = parse_content_type(content_type)
    if not body:
        raise malformed("the request body is empty; send an image (raw bytes or multipart/form-data)")
    if mime == "multipart/form-data":
        images = _file_parts(parse_multipart(body, params.get("boundary"), max_parts=limits.max_images * 4))
    elif batch and mime == "application/json":
        images = _json_images(body)
    elif mime in RAW_TYPES or (mime == "" and sniff(body) is not None):
        images = [body]
    else:
        accepted = "an image type (image/jpeg, image/png, image/webp, image/bmp), application/octet-stream, " \
                   "multipart/form-data" + (" or application/json" if batch else "")
        raise unsupported(f"Content-Type {mime or '(none)'} is not accepted; send {accepted}")
    if not images:
        raise malformed("the request holds no image; send the file as a multipart part with a filename "
                        "(curl -F file=@face.jpg)")
    if not batch and len(images) > 1:
        raise malformed(f"/v1/predict takes one image, the request holds {len(images)}; use /v1/predict/batch")
    if len(images) > limits.max_images:
        raise too_large(f"{len(images)} images in one request, over the limit of {limits.max_images}; split it",
                        code="too_many_images")
    return images


def _json_images(body: bytes) -> list[bytes]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise malformed(f"the JSON body does not parse ({err}); send {{\"images\": [\"<base64>\", ...]}}") from None
    except RecursionError:
        # json's decoder recurses once per nesting level; a few kB of "[[[[..." reach Python's recursion
        # limit. That is the client's malformed body, not a server fault (it used to be a 500).
        raise malformed("the JSON body is nested too deeply to parse; send a flat "
                        "{\"images\": [\"<base64>\", ...]} (two levels)") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        raise malformed("the JSON body must be {\"images\": [\"<base64 of an image file>\", ...]}")
    images = []
    for i, item in enumerate(payload["images"]):
        if not isinstance(item, str):
            raise malformed(f"images[{i}] is not a base64 string")
        try:
            images.append(base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item,
                                           validate=True))
        except (binascii.Error, ValueError):
            raise malformed(f"images[{i}] is not valid base64") from None
    return images
