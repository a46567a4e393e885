"""The Ray Data pipeline of `fertune video`: one row per video through three stages.

  find faces   decode with timestamp sampling, YuNet on every sampled frame (or Haar on key frames plus
               windowed search between them), tracks that end at shot cuts, crops at the model's input size
  classify     all crops of a video in batches
  write        smoothing, deltas, segments, summary, timeline; summary.json last

On CPUs one actor per core (`VideoWorker`) runs the three stages of a video in turn: no crops or
probabilities copied between processes, and as many busy processes as cores (measured on 2 cores,
40 files: 56.4 s against 66.7 s with the stages as separate operators, BENCHMARKS.md). With
--gpus-per-worker the stages are separate operators: decoder tasks on the CPUs feed a GPU actor pool
that classifies, and a writer pool writes.

Rows are plain (strings, numbers, bytes), so nothing depends on Ray's tensor extension types. A
video's outputs are written as soon as it is done, while others decode, so a crash loses only the
videos in flight. Each stage catches its own errors and marks the row failed with the reason, so one bad
file never stops the job; a worker process that dies is restarted by Ray Data and its video done again.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fer_core.stop import sigterm_kept

# CPU shares per stage of the GPU layout on the logical resources Ray sees: two decoders plus the
# classifier and a writer exactly fill two cores (the detectors run single-threaded inside each decoder).
DECODE_CPUS = 0.75
CLASSIFY_CPUS = 0.25
WRITE_CPUS = 0.25
# A writer keeps up with the decoders of about this many cores (on one core, a 13 s clip's faces take
# 1-2 s to find and ~0.1 s to write).
CPUS_PER_SERVING_ACTOR = 4


def _process_start(pid: int) -> str | None:
    """An id of the process `pid` that a later process reusing the pid does not share; None when none runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): liveness only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, start time in clock ticks since boot


@functools.cache
def _this_node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


@dataclass(frozen=True)
class DriverWatch:
    """Lets a stage tell that the driver that submitted it is gone, so it stops instead of working on.

    Ray keeps running the tasks it has already pushed to a worker after a SIGKILLed driver (measured:
    outputs of one or two more videos appeared after a kill). Each stage checks this first, and the
    decoder before every frame. Only workers on the driver's own node can see its process; elsewhere
    Ray's job cleanup is what stops them.
    """
    node_id: str
    pid: int
    started: str | None

    @classmethod
    def of_this_process(cls) -> "DriverWatch":
        import ray  # not _this_node_id(): a driver may start a second Ray later, a worker's node never changes

        return cls(ray.get_runtime_context().get_node_id(), os.getpid(), _process_start(os.getpid()))

    def gone(self) -> bool:
        if _this_node_id() != self.node_id:
            return False
        return _process_start(self.pid) != self.started

    def check(self) -> None:
        if self.gone():
            raise DriverGone(f"the fertune video driver (pid {self.pid}) is gone; stopping")


class DriverGone(RuntimeError):
    """The driver died: a stage must not go on (its outputs would only be redone by the rerun's plan)."""


def _pack(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as data:
        return {k: data[k] for k in data.files}


def _fail(row: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**row, "status": "failed", "reason": reason, "payload": b"", "probs": b""}


def find_faces_row(row: dict[str, Any], settings: dict[str, Any], watch: DriverWatch | None = None) -> dict[str, Any]:
    """Stage 1: decode, detect, track and crop one video."""
    import cv2

    from fer_core.video_frames import Cancelled, find_faces_in_video, truncation_note

    if watch is not None:
        watch.check()
    cv2.setNumThreads(1)  # parallelism comes from Ray running several videos at once
    start = time.perf_counter()
    row = {**row, "status": "ok", "reason": "", "payload": b"", "probs": b"", "info": "{}", "timings": "{}",
           "frames": 0, "faces": 0}
    try:
        found = find_faces_in_video(row["path"], settings, crop_size=settings["crop_size"],
                                    cancelled=watch.gone if watch is not None else None)
    except Cancelled as err:
        raise DriverGone(str(err)) from None
    except ValueError as err:
        return _fail(row, str(err))
    except Exception as err:  # an unexpected decoder error must not stop the other videos
        return _fail(row, f"error while decoding: {type(err).__name__}: {err}")
    info = found.info
    notes = [n for n in [truncation_note(info)] if n]
    row["info"] = json.dumps({"fps": info.fps, "frame_count": info.frame_count, "width": info.width,
                              "height": info.height, "codec": info.codec, "frames_decoded": info.frames_decoded,
                              "duration": info.duration, "timestamps_from": info.timestamps_from,
                              "frames_sampled": found.frames_sampled, "notes": notes,
                              "full_detections": found.finder.full, "window_searches": found.finder.local})
    row["frames"] = found.frames_sampled
    row["faces"] = int(len(np.unique(found.face_id)))
    row["timings"] = json.dumps({**found.seconds, "find_total": time.perf_counter() - start})
    if len(found.crops) == 0:
        return _fail(row, f"no faces: none found in {found.frames_sampled} sampled frames "
                          f"(try --min-face smaller than {settings['min_face']} or another --detector)")
    row["payload"] = _pack(frame=found.frame, t=found.t, face_id=found.face_id, boxes=found.boxes, crops=found.crops)
    row["reason"] = "; ".join(notes)
    return row


class Classifier:
    """Stage 2: an actor holding the model; classifies every crop of a video, --batch-size at a time."""

    def __init__(self, model: str, batch_size: int, device: str, watch: DriverWatch | None = None):
        import torch

        from fer_core.infer import Predictor

        if device == "cpu":
            torch.set_num_threads(1)  # the decoders own the cores; classification is the small part
        self.predictor = Predictor(model, device=device, batch_size=batch_size)
        self.watch = watch

    def classify_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row` with the probabilities of its crops (`probs`) and the seconds it took (`timings`)."""
        if self.watch is not None:
            self.watch.check()
        if not row["payload"]:
            return {**row, "probs": b""}
        start = time.perf_counter()
        probs = self.predictor.predict_crops(_unpack(row["payload"])["crops"])
        return {**row, "probs": _pack(probs=probs),
                "timings": json.dumps({**json.loads(row["timings"]), "classify": time.perf_counter() - start})}

    def __call__(self, batch):  # a pandas DataFrame of whole videos
        import pandas as pd

        return pd.DataFrame([self.classify_row(row) for row in batch.to_dict("records")], columns=batch.columns)


def write_row(row: dict[str, Any], settings: dict[str, Any], watch: DriverWatch | None = None) -> dict[str, Any]:
    """Stage 3: temporal features and the four output files; drops the bulky columns."""
    from jobs.video_outputs import frames_table, write_video_outputs

    if watch is not None:
        watch.check()
    start = time.perf_counter()
    timings = json.loads(row["timings"] or "{}")
    slim = {k: v for k, v in row.items() if k not in ("payload", "probs")}
    if row["status"] != "ok":
        return {**slim, "timings": json.dumps(timings)}
    try:
        det = _unpack(row["payload"])
        probs = _unpack(row["probs"])["probs"]
        info = json.loads(row["info"])
        frames = frames_table(row["name"], det["frame"], det["t"], det["face_id"], det["boxes"], probs,
                              settings["window"])
        summary = {"video": row["name"], "path": row["path"], "key": row["key"], "settings": settings,
                   "model": settings["model"], "fps": info["fps"], "width": info["width"], "height": info["height"],
                   "codec": info["codec"], "frames_decoded": info["frames_decoded"],
                   "timestamps_from": info["timestamps_from"], "notes": info["notes"],
                   "duration": info["duration"], "frames_sampled": info["frames_sampled"],
                   "full_detections": info["full_detections"], "window_searches": info["window_searches"],
                   "timings": {k: round(v, 3) for k, v in timings.items()}}
        summary = write_video_outputs(row["out_dir"], frames, summary, 1.0 / settings["sample_fps"],
                                      plot=settings.get("plots", True))
        slim["faces"] = summary["faces"]
    except Exception as err:
        slim.update(status="failed", reason=f"error while writing outputs: {type(err).__name__}: {err}",
                    traceback=traceback.format_exc()[-2000:])
    timings["write"] = time.perf_counter() - start
    return {**slim, "timings": json.dumps(timings)}


class Writer:
    """Stage 3 as an actor: one long-lived process keeps pandas, pyarrow and OpenCV imported.

    As tasks, every write started whichever worker process was free, and Ray retires idle workers
    within a second, so new ones kept paying those imports (measured: 6 short-lived workers, ~18 CPU
    seconds of 40 videos' writes went to imports).
    """

    def __init__(self, settings: dict[str, Any], watch: DriverWatch | None = None):
        import jobs.timeline_png  # noqa: F401  (imported once here, not in the first video's time)
        import jobs.video_outputs  # noqa: F401

        self.settings, self.watch = settings, watch

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return write_row(row, self.settings, self.watch)


class VideoWorker:
    """The three stages of one video in one process, one after the other: `fertune video`'s CPU worker."""

    def __init__(self, settings: dict[str, Any], batch_size: int, watch: DriverWatch | None = None):
        self.classifier = Classifier(settings["model_path"], batch_size, "cpu", watch)
        # crops at the input size of the model it holds (the driver then never imports torch to read it)
        settings = {**settings, "crop_size": self.classifier.predictor.img_size}
        self.writer = Writer(settings, watch)
        self.settings, self.watch = settings, watch

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.writer(self.classifier.classify_row(find_faces_row(row, self.settings, self.watch)))


def run(tasks: list[dict[str, Any]], settings: dict[str, Any], batch_size: int, gpus_per_worker: float,
        address: str | None, on_result: Callable[[dict[str, Any]], None]) -> dict[str, float]:
    """Run the pipeline over `tasks` (path, name, out_dir, key), calling on_result(row) as each video ends.

    `settings`: VideoSettings.resolved() plus model and model_path; crops are cut at the model's input size
    (crop_size, read from the model here for the GPU layout, by each worker from the model it loads on CPUs).

    Starts a local Ray (or joins `address`) and shuts it down afterwards, also when stopped by Ctrl-C or
    SIGTERM. Returns wall seconds of start-up and of the pipeline.
    """
    import ray

    t0 = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR",
                                  "log_to_driver": False}
        with sigterm_kept():  # the CLI's SIGTERM stops as Ctrl-C does: exit 130, Ray shut down below
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=os.cpu_count(), **kwargs)
    startup = time.perf_counter() - t0
    import ray.data  # configures its loggers on import: set their level after that

    # Ray Data's notices ("progress bars disabled", "execution finished") would break the progress display
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver prints its own: videos done, frames/s, ETA
        ctx.print_on_execution_start = False
        # Ray Data's per-operator reservations would hold CPUs back for the GPU layout's classify and write
        # stages and so run one decoder at a time on 2 CPUs (1.04x the sequential loop, 1.33x without them).
        ctx.op_resource_reservation_enabled = False
        watch = DriverWatch.of_this_process()
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus_per_worker > 0 and gpus == 0:
            raise RuntimeError(f"--gpus-per-worker {gpus_per_worker} but the Ray cluster has no GPU; "
                               f"drop the flag to classify on CPU")
        on_gpu = gpus_per_worker > 0
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if on_gpu:  # one writer per CPUS_PER_SERVING_ACTOR cores (Ray Data adds them as their queues build up)
            from fer_core.infer import input_size

            # the decoders never load the model: they get its input size from here
            settings = {**settings, "crop_size": input_size(settings["model_path"])}
            ds = separate_stages(ds, settings, batch_size, watch, "cuda", gpus_per_worker,
                                 classifiers=max(1, int(gpus / gpus_per_worker)),
                                 writers=max(1, cpus // CPUS_PER_SERVING_ACTOR))
        else:  # one worker per core, never more than there are videos (each loads the model once)
            workers = max(1, min(cpus, len(tasks)))
            ds = ds.map(VideoWorker, fn_constructor_kwargs={"settings": settings, "batch_size": batch_size,
                                                            "watch": watch},
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
        # Whole blocks (one video each), no prefetch: each video is reported the moment it is written.
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
            for row in batch.to_dict("records"):
                on_result(row)
    finally:
        if started_here:
            ray.shutdown()
    return {"startup": startup, "total": time.perf_counter() - t0}


def separate_stages(ds, settings: dict[str, Any], batch_size: int, watch: DriverWatch | None, device: str = "cuda",
                    gpus_per_worker: float | None = None, classifiers: int = 1, writers: int = 1):
    """The GPU layout: decoder tasks on the CPUs, a pool of up to `classifiers` actors classifying on
    `device` (each holding `gpus_per_worker` GPUs), a pool of up to `writers` writers."""
    import ray.data

    ds = ds.map(find_faces_row, fn_kwargs={"settings": settings, "watch": watch}, num_cpus=DECODE_CPUS)
    ds = ds.map_batches(Classifier, fn_constructor_kwargs={"model": settings["model_path"], "batch_size": batch_size,
                                                           "device": device, "watch": watch},
                        batch_size=1, batch_format="pandas",
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=classifiers),
                        num_cpus=CLASSIFY_CPUS, num_gpus=gpus_per_worker)
    return ds.map(Writer, fn_constructor_kwargs={"settings": settings, "watch": watch},
                  compute=ray.data.ActorPoolStrategy(min_size=1, max_size=writers), num_cpus=WRITE_CPUS)
