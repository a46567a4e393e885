"""Built-in synthetic faces: the demo data set (scenes and videos of them: `fer_core.synthetic_scenes`).

Every face is drawn from scratch (numpy shading + cv2 shapes, supersampled, then shrunk with
INTER_AREA), never by upscaling a 48 px image, so a 100 px face in a scene has real 100 px detail.
Everything is deterministic given the seed or the `np.random.Generator` passed in.

The seven expressions (order of `fer_core.labels.CLASSES`) differ in:

| class    | mouth                     | brows                    | eyes        | other                |
|----------|---------------------------|--------------------------|-------------|----------------------|
| angry    | slight frown, narrow      | inner ends down, lowered | narrowed    |                      |
| disgust  | slight frown              | slightly lowered         | squint      | nose wrinkle, lip    |
| fear     | open, wide, corners down  | inner ends up, raised    | wide        |                      |
| happy    | smile (corners up), wider | as neutral               | as neutral  |                      |
| neutral  | straight                  | level                    | normal      |                      |
| sad      | frown (corners down)      | inner ends up            | a bit narrow|                      |
| surprise | round open "O"            | raised high              | wide        |                      |

("lip": disgust's upper lip is raised on the image-right side only.)

**happy and neutral differ only inside the mouth box**: their brows, eyes, nose and every identity /
pose / lighting draw come from the same distributions (rendered from the same rng state, a happy and
a neutral face differ in no pixel more than 1 px outside the two mouth boxes), so a model that tells
them apart must look at the mouth. The Grad-CAM test relies on this.

Each face also varies in identity (face oval width and height, skin and hair tone, hairline, eye
spacing, brow height, mouth position and width, resting mouth curve), expression intensity, pose
(rotation +-10 deg, shift, scale), background, a lighting gradient and gaussian noise. That variation
is what keeps a linear model on raw pixels near 50 % while a small CNN passes 80 % (see
tests/test_synthetic.py).
"""
from __future__ import annotations

import functools
import math
from dataclasses import astuple, dataclass

import cv2
import numpy as np

from fer_core.dataset import FerData, Split
from fer_core.labels import CLASSES

Box = tuple[int, int, int, int]  # x, y, w, h in output pixels
BOX_NAMES = ("face", "left_eye", "right_eye", "left_brow", "right_brow", "mouth")  # left = image left

_SHIFT = 4             # cv2 drawing fractional bits: coordinates are drawn at 1/16 px precision
_FACE_H = 0.42         # oval half-height as a fraction of the head canvas side
_FACE_W = 0.34         # oval half-width
_FACE_CY = 0.54        # oval centre height (the hair needs the room above)


@dataclass(frozen=True)
class Expression:
    mouth_curve: float  # + smile (corners up), - frown (corners down)
    mouth_open: float   # 0 closed .. 1 wide open
    mouth_width: float  # times the resting width
    brow_tilt: float    # + inner ends down (angry), - inner ends up (sad, fear)
    brow_raise: float   # + raised (surprise), - lowered (angry)
    eye_open: float     # times the resting opening
    sneer: float        # disgust: nose wrinkle and a one-sided upper-lip raise


EXPRESSIONS: dict[str, Expression] = {
    "angry": Expression(-0.3, 0.0, 0.85, 1.0, -0.7, 0.65, 0.0),
    "disgust": Expression(-0.35, 0.0, 0.9, 0.3, -0.4, 0.4, 1.0),
    "fear": Expression(-0.35, 0.5, 1.15, -0.9, 0.6, 1.35, 0.0),
    "happy": Expression(0.8, 0.0, 1.1, 0.0, 0.0, 1.0, 0.0),
    "neutral": Expression(0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0),
    "sad": Expression(-0.9, 0.0, 0.95, -1.0, 0.1, 0.8, 0.0),
    "surprise": Expression(0.0, 1.0, 0.75, 0.0, 1.2, 1.35, 0.0),
}
_NEUTRAL = EXPRESSIONS["neutral"]


@dataclass(frozen=True)
class Identity:
    face_w: float       # oval width factor
    face_h: float       # oval height factor
    skin: float         # skin luminance 0..255
    hair: float         # hair luminance (darker than skin: Haar wants a dark top)
    hairline: float     # hairline height, in oval half-heights above the centre
    eye_spacing: float  # eye centre offset, in oval half-widths
    brow_gap: float     # brow height above the eyes, in oval half-heights
    mouth_y: float      # mouth height below the centre, in oval half-heights
    mouth_w: float      # resting mouth width factor
    mouth_rest: float   # resting mouth curve (some people's neutral looks a little sad or glad)


def random_identity(rng: np.random.Generator) -> Identity:
    """One person: face shape, tones and feature placement."""
    skin = rng.uniform(115, 215)
    return Identity(
        face_w=rng.uniform(0.88, 1.1), face_h=rng.uniform(0.9, 1.06), skin=skin,
        hair=rng.uniform(10, min(60, skin - 80)), hairline=rng.uniform(0.5, 0.75),
        eye_spacing=rng.uniform(0.36, 0.44), brow_gap=rng.uniform(0.22, 0.3),
        mouth_y=rng.uniform(0.52, 0.6), mouth_w=rng.uniform(0.9, 1.1), mouth_rest=rng.uniform(-0.15, 0.15),
    )


def _check_emotion(emotion: int) -> None:
    if not 0 <= int(emotion) < len(CLASSES):
        raise ValueError(f"emotion must be 0..{len(CLASSES) - 1} (index into {CLASSES}), got {emotion}")


def expression_for(emotion: int, intensity: float) -> Expression:
    """The class's expression blended with neutral: intensity 0 is neutral, 1 the full expression."""
    _check_emotion(emotion)
    full = EXPRESSIONS[CLASSES[emotion]]
    return Expression(*(n + intensity * (f - n) for n, f in zip(astuple(_NEUTRAL), astuple(full))))


@functools.lru_cache(maxsize=16)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    return xx, yy


def _fix(points) -> np.ndarray:
    """Float pixel coordinates -> cv2's fixed-point ints (see _SHIFT)."""
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _ellipse(img, centre, axes, color, thickness=-1, start=0, end=360):
    c, a = _fix(centre), _fix(np.maximum(axes, 0.5))
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int(a[0]), int(a[1])), 0, start, end, color, thickness,
                cv2.LINE_AA, _SHIFT)


def _bounds(points, pad: float) -> tuple[float, float, float, float]:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return p[:, 0].min() - pad, p[:, 1].min() - pad, p[:, 0].max() + pad, p[:, 1].max() + pad


def _draw_head(side: int, expr: Expression, ident: Identity) -> tuple[np.ndarray, np.ndarray, dict]:
    """An upright head centred on a side x side canvas.

    Returns (luminance premultiplied by coverage, coverage 0..1, boxes as float (x0, y0, x1, y1)).
    The shading is what the Haar cascade keys on: darker eye sockets and brows above brighter
    cheeks, a bright nose bridge, a darker rim around the oval and dark hair on top.
    """
    xx, yy = _grid(side)
    s = float(side)
    cx, cy = s / 2, s * _FACE_CY
    a, b = s * _FACE_W * ident.face_w, s * _FACE_H * ident.face_h
    skin, hair = ident.skin, ident.hair

    ey = cy - 0.16 * b
    ew, eh = 0.19 * a, max(0.085 * b * expr.eye_open, 0.015 * b)
    eyes = [(cx - ident.eye_spacing * a, ey), (cx + ident.eye_spacing * a, ey)]

    # Shading: darker rim (r2 -> 1), eye sockets, bright nose bridge.
    r2 = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
    shade = 1.0 - 0.32 * r2
    for ex, _ in eyes:
        shade -= 0.22 * np.exp(-(((xx - ex) / (1.7 * ew)) ** 2 + ((yy - ey + 0.02 * b) / (0.2 * b)) ** 2))
    shade += 0.08 * np.exp(-(((xx - cx) / (0.09 * a)) ** 2 + ((yy - cy + 0.05 * b) / (0.3 * b)) ** 2))
    face = r2 <= 1.0
    hairline = cy - ident.hairline * b + 0.25 * b * ((xx - cx) / a) ** 2  # dips at the temples
    hair_mask = ((xx - cx) / (1.1 * a)) ** 2 + ((yy - cy + 0.1 * b) / (1.04 * b)) ** 2 <= 1.0
    hair_mask &= ~face | (yy < hairline)
    neck = (np.abs(xx - cx) < 0.55 * a) & (yy > cy + 0.5 * b)
    lum = np.where(face, skin * shade, 0.0)
    lum = np.where(neck & ~face & ~hair_mask, skin * 0.7, lum)
    lum = np.where(hair_mask, hair, lum).astype(np.float32)
    cover = (face | hair_mask | neck).astype(np.float32)

    boxes = {"face": (cx - a, cy - b, cx + a, cy + b)}
    dark = skin * 0.35
    line = max(0.035 * b, 1.0)
    for name, (ex, ey_) in zip(("left_eye", "right_eye"), eyes):
        _ellipse(lum, (ex, ey_), (ew, eh), min(skin + 40, 240) * 0.85)
        _ellipse(lum, (ex, ey_), (0.5 * ew, min(eh, 0.5 * ew)), 35.0)        # iris, cut by the lids
        _ellipse(lum, (ex, ey_), (ew, eh), dark, max(int(line), 1), 180, 360)  # upper lid
        boxes[name] = _bounds([(ex - ew, ey_ - eh), (ex + ew, ey_ + eh)], line)

    brow_y = ey - ident.brow_gap * b - expr.brow_raise * 0.1 * b
    brow_tone = min(hair, skin * 0.4)
    for name, (ex, _), inward in zip(("left_brow", "right_brow"), eyes, (1, -1)):
        pts = [(ex - inward * 1.25 * ew, brow_y + 0.03 * b),
               (ex, brow_y - 0.03 * b),
               (ex + inward * 1.15 * ew, brow_y + expr.brow_tilt * 0.14 * b)]
        cv2.polylines(lum, [_fix(pts)], False, brow_tone, max(int(0.08 * b), 1), cv2.LINE_AA, _SHIFT)
        boxes[name] = _bounds(pts, 0.04 * b)

    ny = cy + 0.28 * b
    for side_x in (-1, 1):
        _ellipse(lum, (cx + side_x * 0.1 * a, ny), (0.05 * a, 0.03 * b), skin * 0.5)
    if expr.sneer > 0:  # disgust: wrinkles across the nose bridge
        for k in range(2):
            y = ey + (0.14 + 0.08 * k) * b
            pts = [(cx - 0.12 * a, y + 0.02 * b), (cx, y), (cx + 0.12 * a, y + 0.02 * b)]
            cv2.polylines(lum, [_fix(pts)], False, skin * (1 - 0.55 * expr.sneer), max(int(line), 1),
                          cv2.LINE_AA, _SHIFT)

    # Mouth: upper and lower lip curves around a base curve; the gap between them is the open mouth.
    my, mw = cy + ident.mouth_y * b, 0.3 * a * expr.mouth_width * ident.mouth_w
    t = np.linspace(-1.0, 1.0, 17)
    curve = expr.mouth_curve + ident.mouth_rest
    base = my + curve * 0.28 * b * (0.5 - t ** 2)
    gap = expr.mouth_open * 0.12 * b * np.sqrt(1 - t ** 2)
    upper = base - gap - expr.sneer * 0.09 * b * np.clip(t + 0.1, 0, None) * np.sqrt(1 - t ** 2)
    lower = base + gap
    up_pts, low_pts = np.stack([cx + mw * t, upper], 1), np.stack([cx + mw * t, lower], 1)
    if expr.mouth_open > 0.05 or expr.sneer > 0.05:
        cv2.fillPoly(lum, [_fix(np.concatenate([up_pts, low_pts[::-1]]))], skin * 0.45, cv2.LINE_AA, _SHIFT)
    lip = max(int(0.07 * b), 1)
    cv2.polylines(lum, [_fix(up_pts), _fix(low_pts)], False, skin * 0.3, lip, cv2.LINE_AA, _SHIFT)
    boxes["mouth"] = _bounds(np.concatenate([up_pts, low_pts]), 0.05 * b)
    # Features were drawn as premultiplied luminance only where the head covers.
    return lum * cover, cover, boxes


def _render_head(side: int, expr: Expression, ident: Identity, angle: float = 0.0, scale: float = 1.0,
                 shift: tuple[float, float] = (0.0, 0.0), supersample: int = 2):
    """Draw at `supersample` x `side`, rotate/scale/shift about the face centre, shrink with INTER_AREA.

    Returns (premultiplied luminance, coverage, boxes as int (x, y, w, h)), all at `side` px.
    """
    big = side * supersample
    lum, cover, fboxes = _draw_head(big, expr, ident)
    # A light blur stands in for a camera's optics; it also keeps the shrink free of aliasing.
    blur = 0.5 * supersample
    lum = cv2.GaussianBlur(lum, (0, 0), blur)
    cover = cv2.GaussianBlur(cover, (0, 0), blur)
    m = cv2.getRotationMatrix2D((big / 2, big * _FACE_CY), angle, scale)
    m[:, 2] += np.asarray(shift) * supersample
    lum = cv2.warpAffine(lum, m, (big, big), flags=cv2.INTER_LINEAR, borderValue=0)
    cover = cv2.warpAffine(cover, m, (big, big), flags=cv2.INTER_LINEAR, borderValue=0)
    if supersample > 1:
        lum = cv2.resize(lum, (side, side), interpolation=cv2.INTER_AREA)
        cover = cv2.resize(cover, (side, side), interpolation=cv2.INTER_AREA)
    boxes = {}
    for name, (x0, y0, x1, y1) in fboxes.items():
        if name != "face":  # feature boxes also hold the blur's halo (2 sigma), so a feature stays inside
            x0, y0, x1, y1 = x0 - 2 * blur, y0 - 2 * blur, x1 + 2 * blur, y1 + 2 * blur
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ m.T / supersample
        lo = np.clip(np.floor(corners.min(0)), 0, side - 1).astype(int)
        hi = np.clip(np.ceil(corners.max(0)), lo + 1, side).astype(int)
        boxes[name] = (int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1]))
    return lum, cover, boxes


@functools.lru_cache(maxsize=16)
def _unit_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    xx, yy = np.meshgrid(np.linspace(-1, 1, w, dtype=np.float32), np.linspace(-1, 1, h, dtype=np.float32))
    return xx, yy


def _lighting(h: int, w: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A linear light gradient in a random direction: 1 in the centre, up to 1 +- strength at the edges."""
    xx, yy = _unit_grid(h, w)
    theta = rng.uniform(0, 2 * math.pi)
    return 1.0 + rng.uniform(-strength, strength) * (xx * math.cos(theta) + yy * math.sin(theta))


def render_face(emotion: int, rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, dict[str, Box]]:
    """One size x size uint8 gray face of class `emotion` (index into CLASSES), FER2013-style framing.

    Returns the image and boxes (x, y, w, h in this image's pixels) for BOX_NAMES; "left" means the
    image's left. Identity, intensity, pose, background, lighting and noise are drawn from `rng`.
    """
    _check_emotion(emotion)
    ident = random_identity(rng)
    expr = expression_for(emotion, rng.uniform(0.85, 1.0))
    lum, cover, boxes = _render_head(
        size, expr, ident, angle=rng.uniform(-10, 10), scale=rng.uniform(0.88, 1.1),
        shift=tuple(rng.uniform(-0.075, 0.075, 2) * size), supersample=max(2, -(-96 // size)))
    bg = rng.uniform(20, 235) * _lighting(size, size, rng, 0.4)
    img = (bg * (1 - cover) + lum) * _lighting(size, size, rng, 0.35)
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def _balanced_labels(n: int, rng: np.random.Generator, balanced: bool) -> np.ndarray:
    if balanced:
        return rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    return rng.integers(0, len(CLASSES), n).astype(np.int64)


def _make_faces(n: int, rng: np.random.Generator, size: int, balanced: bool):
    labels = _balanced_labels(n, rng, balanced)
    images = np.empty((n, size, size), np.uint8)
    boxes = []
    for i, emotion in enumerate(labels):
        images[i], face_boxes = render_face(int(emotion), rng, size)
        boxes.append(face_boxes)
    return images, labels, boxes


def make_faces(n: int, seed: int = 0, size: int = 48,
               balanced: bool = True) -> tuple[np.ndarray, np.ndarray, list[dict[str, Box]]]:
    """n faces: images (n, size, size) uint8, labels (n,) int64, and each face's boxes.

    balanced=True gives every class n // 7 or n // 7 + 1 faces (shuffled); False draws labels uniformly.
    """
    return _make_faces(n, np.random.default_rng(seed), size, balanced)


def make_demo_data(n_train: int = 2000, n_val: int = 500, n_test: int = 1000, seed: int = 0) -> FerData:
    """The built-in demo data set (source "demo"): balanced synthetic faces, 48 px.

    Each split draws from its own seed stream ([seed, 1], [seed, 2], [seed, 3]), so no face repeats
    across splits and growing one split leaves the others unchanged.
    """
    splits = []
    for k, n in enumerate((n_train, n_val, n_test), start=1):
        images, labels, _ = _make_faces(n, np.random.default_rng([seed, k]), 48, True)
        splits.append(Split(images, labels))
    return FerData(train=splits[0], val=splits[1], test=splits[2] if n_test else None, source="demo",
                   notes=[f"synthetic faces from fer_core.synthetic, seed {seed}"])
