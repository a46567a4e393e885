"""`fertune train` and `fertune eval`: fer_core only, no Ray."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from fer_core import config as cfg_mod
from fer_core import runs
from fer_core.data import describe, load_data
from fer_core.labels import parse_class_map
from fer_core.runs import run_folder


def _progress_bar():
    """A tqdm bar per epoch on an interactive terminal; nothing when output goes to a file or a test."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    state: dict = {}

    def update(epoch: int, batch: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None or state.get("epoch") != epoch:
            if bar is not None:
                bar.close()
            state["bar"] = bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, unit="batch")
            state["epoch"] = epoch
        bar.update(batch - bar.n)
        if batch == total:
            bar.close()
            state["bar"] = None

    return update


def train(overrides: dict, data_arg: str, project: str, name: str | None, resume: bool, exist_ok: bool,
          config_file: str | None = None, classes: str | None = None) -> Path:
    """Resolve settings, load data, train, evaluate; returns the run folder."""
    started = time.time()  # a time budget counts from here: data loading is part of the command
    if resume:
        folder = run_folder(project, name, resume=True)
        saved = cfg_mod.load_yaml(folder / runs.CONFIG) if (folder / runs.CONFIG).is_file() else {}
        if not runs.weights(folder, runs.LAST).is_file():
            raise FileNotFoundError(f"cannot resume {folder}: it has no {runs.WEIGHTS}/{runs.LAST} (no epoch "
                                    f"finished); start it again with --exist-ok")
        cfg = cfg_mod.resolve({**saved, **overrides}, config_file)
        if data_arg is None:  # the data the run was started on
            recorded = runs.read_data_json(folder) or {}
            data_arg, classes = recorded.get("data"), classes or recorded.get("classes")
            if data_arg is None:
                raise ValueError(f"{folder} does not record its data ({runs.DATA} is missing); pass --data PATH")
    elif data_arg is None:
        raise ValueError("fertune train needs --data PATH|demo (a FER2013 Parquet/CSV, an image folder, or demo)")
    else:
        cfg = cfg_mod.resolve(overrides, config_file)  # fails on a bad key before any data is read
        folder = None
    t0 = time.perf_counter()
    data = load_data(data_arg, classes=parse_class_map(classes), seed=cfg.seed, img_size=cfg.img_size)
    print(describe(data))
    print(f"data loaded in {time.perf_counter() - t0:.1f}s")
    if folder is None:
        folder = run_folder(project, name, exist_ok=exist_ok)
    runs.write_data_json(folder, data_arg, classes)
    budget = None
    if cfg.time_budget > 0 and not resume:  # a resumed run keeps its plan (epochs in config.yaml)
        from fer_core.budget import TimeBudget

        scored = data.test if data.test is not None else data.val
        budget = TimeBudget.starting_now(cfg.time_budget, len(scored) * (2 if cfg.tta else 1), started)
    epochs = f"epochs planned for {cfg.time_budget:g} min" if budget else f"{cfg.epochs} epochs"
    print(f"run folder: {folder}\nmodel {cfg.model}, {epochs}, batch {cfg.batch_size}, device {cfg.device}")

    from fer_core.evaluate import evaluate
    from fer_core.metrics import format_report
    from fer_core.train import fit

    result = fit(cfg, data, run_dir=folder, resume=resume, progress=_progress_bar(), budget=budget)
    best = evaluate(runs.weights(folder), data, tta=cfg.tta, device=cfg.device)
    best.write(folder / runs.EVAL)
    print(f"best epoch {result.best_epoch} ({cfg.metric} {result.best_metric:.4f}); "
          f"{best.split} evaluation of {runs.WEIGHTS}/{runs.BEST}:")
    print(format_report(best.report))
    print(f"total {time.time() - started:.0f}s" + (f" (time budget {cfg.time_budget:g} min: "
                                                   f"{result.epochs_done} of {result.config.epochs} planned epochs)"
                                                   if budget else ""))
    return folder


def cmd_train(args) -> int:
    overrides = cfg_mod.parse_set(args.overrides)
    if args.device:
        overrides["device"] = args.device
    if args.time_budget is not None:
        overrides["time_budget"] = args.time_budget
    folder = train(overrides, args.data, args.project, args.name, args.resume, args.exist_ok, args.config, args.classes)
    print(f"\nResults: {folder}  ({runs.METRICS}, {runs.WEIGHTS}/{runs.BEST}, {runs.EVAL})\n"
          f"Next: fertune eval --model {folder} --data {args.data} --tta\n"
          f"      fertune serve --model {folder}")
    return 0


def save_crops(split, folder: Path, no_face: list[str]) -> int:
    """The images as scored, as PNGs: folder/<true class>/<source name>.png, and folder/no_face.txt listing
    the images in which no face was found."""
    import cv2

    from fer_core.labels import CLASSES

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no_face.txt").write_text("".join(f"{name}\n" for name in no_face))
    for i, (image, label) in enumerate(zip(split.images, split.labels)):
        name = str(split.names[i]) if split.names is not None else f"{i:06d}"
        out = folder / CLASSES[int(label)] / (name.replace("/", "__").replace(" ", "_").rsplit(".", 1)[0] + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), image)
    return len(split.images)


def cmd_eval(args) -> int:
    from fer_core.evaluate import evaluate
    from fer_core.infer import Predictor
    from fer_core.metrics import format_report

    if not args.data:
        raise ValueError("fertune eval needs --data PATH (the dataset to score; with --labels, the images the FER+ "
                         "votes belong to)")
    if args.faces and args.labels:
        raise ValueError("--faces and --labels do not go together: FER+ votes belong to FER2013's 48x48 crops, "
                         "which need no face detection")
    predictor = Predictor(args.model, device=args.device, precision=args.precision)
    crop = detector = None
    if args.faces:
        from fer_core.faces import FaceDetector, largest_face_crop

        detector = FaceDetector(args.detector)
        crop = largest_face_crop(predictor.img_size, detector)
    data = load_data(args.data, classes=parse_class_map(args.classes), splits=(args.split,),
                     img_size=predictor.img_size, crop=crop)
    scored = data.split(args.split)
    if args.save_crops:
        saved = save_crops(scored, Path(args.save_crops), data.no_face)
        print(f"wrote {saved} scored crops to {args.save_crops} (and no_face.txt: {len(data.no_face)} images)")
    counts = None
    if args.labels:
        from fer_core.dataset import Split
        from fer_core.ferplus import ferplus_labels

        labels, keep, counts = ferplus_labels(args.labels, args.data, args.split)
        if len(keep) != len(scored):
            raise ValueError(f"{args.data} gave {len(scored)} {args.split} images but {args.labels} has {len(keep)} "
                             f"rows for that split (rows were dropped or are corrupt); FER+ votes join by row order")
        scored = Split(scored.images[keep], labels)
        left = ", ".join(f"{counts[k]} {k}" for k in ("tied", "contempt", "unknown", "not_a_face"))
        print(f"FER+ labels: {counts['kept']} of {counts['rows']} {args.split} rows scored; left out: {left}")
    result = evaluate(predictor, scored if args.labels else data, args.split, tta=args.tta)
    report = result.report
    report["model"] = str(args.model)
    report["data"] = str(args.data)
    if detector is not None:
        report["detector"] = detector.name
    if args.labels:
        report["labels"] = str(args.labels)
        report["ferplus_counts"] = counts
    print(format_report(report))
    if report.get("absent_classes"):
        print(f"note: no {args.split} images of {', '.join(report['absent_classes'])} in {args.data}; "
              f"those classes are left out of the macro averages")
    from fer_core.bundled import output_home

    out = Path(args.out) if args.out else runs.eval_path(output_home(predictor.folder), args.data, args.split)
    result.write(out)
    print(f"wrote {out}")
    return 0
