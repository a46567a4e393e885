"""jobs.timeline_png: `fertune video`'s timeline.png, drawn with OpenCV (no Ray, no model)."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from fer_core import temporal
from fer_core.labels import CLASSES
from jobs import timeline_png as tl


def _frames(samples_per_face: dict[int, int], label: str = "happy", step: float = 0.2) -> pd.DataFrame:
    rows = []
    for face_id, n in samples_per_face.items():
        p = np.full(len(CLASSES), 0.05)
        p[CLASSES.index(label)] = 0.7
        rows += [{"video": "v", "frame": i, "t": i * step, "face_id": face_id, "x": 0, "y": 0, "w": 9, "h": 9,
                  **dict(zip(temporal.P_COLS, p))} for i in range(n)]
    return temporal.add_temporal(pd.DataFrame(rows), window=3)


@pytest.mark.parametrize("span, step", [(17.0, 2.5), (9.0, 2.0), (0.6, 0.1), (300.0, 50.0), (0.0, 1.0)])
def test_ticks_step_through_round_numbers(span, step):
    assert tl.tick_step(span) == pytest.approx(step)


def test_one_panel_per_face_for_the_six_faces_seen_most_often():
    frames = _frames({0: 2, 1: 30, 2: 30, 3: 1, 4: 30, 5: 30, 6: 30, 7: 30})
    assert tl.faces_to_plot(frames) == [1, 2, 4, 5, 6, 7]
    image = tl.draw_timeline(frames, "v.mp4")
    assert image.shape == (tl.TOP + 6 * tl.PANEL_HEIGHT + 5 * tl.GAP + tl.BOTTOM, tl.WIDTH, 3)


def test_each_class_is_drawn_at_its_probability_in_its_colour():
    frames = _frames({0: 40})  # happy at 0.7 after smoothing, every other class at 0.05
    image = tl.draw_timeline(frames, "v.mp4")
    bottom = tl.TOP + tl.PANEL_HEIGHT

    def rows_in(colour) -> np.ndarray:
        """Rows of the panel with pixels near `colour` (anti-aliasing blends a line's edges into white)."""
        panel = image[tl.TOP:bottom, tl.LEFT + 1:tl.WIDTH - tl.RIGHT - 1].astype(int)
        near = (np.abs(panel - np.array(colour)).max(axis=2) < 30).sum(axis=1)
        return tl.TOP + np.nonzero(near > 100)[0]  # a line across the panel, not a stray pixel

    happy_rows = rows_in(tl.COLOURS[CLASSES.index("happy")])
    assert happy_rows.size and abs(np.median(happy_rows) - (bottom - 0.7 * tl.PANEL_HEIGHT)) <= 2
    # the six other lines coincide at 0.05: the last drawn covers the others there
    surprise_rows = rows_in(tl.COLOURS[CLASSES.index("surprise")])
    assert surprise_rows.size and abs(np.median(surprise_rows) - (bottom - 0.05 * tl.PANEL_HEIGHT)) <= 2


def test_a_one_sample_face_is_a_dot_and_the_png_decodes():
    image = tl.draw_timeline(_frames({0: 1}), "one.mp4")
    assert (image == tl.COLOURS[CLASSES.index("happy")]).all(axis=2).any()
    decoded = cv2.imdecode(np.frombuffer(tl.encode_png(image), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape and (decoded == image).all()
