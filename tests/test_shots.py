"""fer_core.shots: shot cuts between sampled frames, on drawn scenes and on the shared clips."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from fer_core.shots import CUT_DISTANCE, ShotCuts, colour_histogram, distance
from fer_core.synthetic_scenes import render_scene
from fer_core.video_frames import sample_frames

CLIPS = SHARED_DATA / "video"


def test_a_new_scene_is_a_new_shot_and_motion_is_not():
    rng = np.random.default_rng(0)
    one, _ = render_scene([(3, 90)], rng, 240, 320, background="gradient")
    two, _ = render_scene([(4, 90)], rng, 240, 320, background="stripes")
    shifted = np.roll(one, 12, axis=1)  # the camera pans a little
    noisy = np.clip(one.astype(np.int16) + rng.integers(-6, 7, one.shape), 0, 255).astype(np.uint8)
    cuts = ShotCuts()
    assert [cuts.shot(f) for f in (one, shifted, noisy, two, two, one)] == [0, 0, 0, 1, 1, 2]
    assert distance(colour_histogram(one), colour_histogram(one)) == pytest.approx(0, abs=1e-6)
    assert colour_histogram(one[..., 0]).sum() == pytest.approx(1)  # gray frames work too


@pytest.mark.skipif(not (CLIPS / "short_hamilton_clip.mp4").is_file(), reason=f"real clips absent: {CLIPS}")
def test_the_cuts_of_the_shared_clips():
    """short_hamilton_clip cuts at 0.8 s, 2.8 s and 7.2 s (by eye); pbs_oval_office_clip is one shot with a
    zoom. The distances around the threshold are the margins docs/video.md quotes."""
    for name, cuts_at in [("short_hamilton_clip.mp4", [0.8, 2.8, 7.2]), ("pbs_oval_office_clip.mp4", [])]:
        cuts, shots, times, steps, previous = ShotCuts(), [], [], [], None
        for _, t, image in sample_frames(CLIPS / name, 5.0):
            hist = colour_histogram(image)
            steps.append(distance(previous, hist) if previous is not None else 0.0)
            shots.append(cuts.shot(image))
            times.append(t)
            previous = hist
        assert [round(t, 1) for t, a, b in zip(times[1:], shots, shots[1:]) if a != b] == cuts_at, name
        within = [d for d, a, b in zip(steps[1:], shots, shots[1:]) if a == b]
        assert max(within) < 0.8 * CUT_DISTANCE, name  # the largest change inside a shot is well under a cut
