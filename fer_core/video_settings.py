"""`fertune video` settings: every flag's default and help text, in one place.

The CLI generates its flags from `VideoSettings` (fer_core.settings.add_flags), docs/video.md shows
`docs_table(VideoSettings)`, and fer_core's video code takes its defaults from here (FaceFinder's key-frame
interval, the smoothing window in temporal, the minimum face in faces), so each default is written once.
The Haar cascade's own constants (scale 1.1, minNeighbors 5) live in fer_core.faces. Crops are not a
setting: they are cut at the model's input size (its checkpoint's preprocess img_size).

Imports nothing heavy: the CLI builds its parser from this module before any subcommand runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fer_core.settings import flag_name, setting

# detector name -> key-frame interval in sampled frames while faces are tracked (1: full Haar on every frame)
KEY_FRAME_INTERVAL = 20  # 98 % of full-frame Haar's boxes at 28 % of its time on the shared clips (docs/video.md)
DETECTORS = {"haar": KEY_FRAME_INTERVAL, "haar-full": 1}
HAAR_WINDOW = 24  # the frontal-face cascade's own window: it finds no smaller face


@dataclass(frozen=True)
class VideoSettings:
    """The settings of `fertune video` (besides the inputs, --model, --out and --address). Validated on creation;
    a ValueError names the flag and what it accepts."""
    sample_fps: float = setting(5.0, "frames analysed per second of video, by the container's timestamps "
                                     "(variable-fps files work)", metavar="F")
    window: int = setting(10, "moving-average window, in sampled frames of the same face (centred: the job is "
                              "offline)", metavar="N")
    detector: str = setting("haar", "haar: full-frame Haar on key frames, a windowed search around tracked faces "
                                    "between them; haar-full: full-frame Haar on every sampled frame")
    detect_every: int | None = setting(None, "key-frame interval in sampled frames while faces are tracked "
                                             f"(none: {DETECTORS['haar']} with haar, {DETECTORS['haar-full']} "
                                             "with haar-full)", metavar="K")
    min_face: int = setting(30, f"smallest face found, px (the Haar cascade finds none under {HAAR_WINDOW})",
                            metavar="S")
    batch_size: int = setting(64, "face crops per classification batch", metavar="B")
    gpus_per_worker: float = setting(0.0, "GPUs per classifier actor (fractions share a GPU); 0 classifies on CPU",
                                     metavar="G")

    # What enters a video's key (jobs/video.py): the settings that change its outputs. The others change
    # only how fast they come. A new field goes in one of the two (tests/test_video_settings.py checks).
    OUTPUT_FIELDS = ("sample_fps", "window", "detector", "detect_every", "min_face")
    RUN_FIELDS = ("batch_size", "gpus_per_worker")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown {flag_name('detector')} '{self.detector}'; available: {', '.join(DETECTORS)} "
                             f"(a detector with shipped weights, e.g. MTCNN, is not available yet)")
        checks = [("sample_fps", self.sample_fps > 0, "> 0"),
                  ("window", self.window >= 1, ">= 1 sampled frame"),
                  ("detect_every", self.detect_every is None or self.detect_every >= 1, ">= 1"),
                  ("min_face", self.min_face >= HAAR_WINDOW, f">= {HAAR_WINDOW} px (the Haar cascade's window)"),
                  ("batch_size", self.batch_size >= 1, ">= 1")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{flag_name(name)} must be {rule}, got {getattr(self, name)}")

    @property
    def key_frame_interval(self) -> int:
        """--detect-every, or the detector's own interval when it is not given."""
        return self.detect_every if self.detect_every is not None else DETECTORS[self.detector]

    def output_settings(self) -> dict[str, Any]:
        """The settings that change a video's outputs, as plain values: they enter its key and summary.json.

        The types are fixed (5 fps is 5.0), so a key does not change with how a value was spelled.
        """
        return {"sample_fps": float(self.sample_fps), "window": int(self.window), "detector": self.detector,
                "detect_every": int(self.key_frame_interval), "min_face": int(self.min_face)}

