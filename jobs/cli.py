"""`fertune`: the command line. Each subcommand imports its package lazily, so `fertune train` starts
without Ray Serve or matplotlib; this module is the only place jobs/, serve/ and analysis/ meet."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_core.config import ConfigError

EPILOG = "Run `fertune COMMAND -h` for a command's flags. Docs: README.md and docs/interfaces.md."


def _add_model_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="TrainConfig values from a YAML file (applied before --set)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one TrainConfig value, repeatable (e.g. --set model=cnn_small --set lr=3e-4)")


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="PATH|demo",
                   help="FER2013 Parquet or CSV, an image folder ROOT/<split>/<class>/, or 'demo' (synthetic faces)")
    p.add_argument("--classes", metavar="MAP", help="map other class names, e.g. 'joyful=happy,contempt=drop'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fertune", description="Find, train and ship facial-emotion models on Ray.",
                                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train one model (runs/train/NAME)")
    _add_data(p)
    _add_model_settings(p)
    p.add_argument("--project", default="runs/train", help="parent folder of run folders (default runs/train)")
    p.add_argument("--name", help="run folder name (default: a fresh exp, exp2, ...)")
    p.add_argument("--resume", action="store_true", help="continue --name from its weights/last.pt")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing --name folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="training device (default: TrainConfig.device)")

    p = sub.add_parser("eval", help="evaluate a model on a dataset split, write eval.json")
    p.add_argument("--model", required=True, help="checkpoint .pt, run folder, or a search's best/ or ensemble/")
    _add_data(p, required=False)
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default test)")
    p.add_argument("--labels", metavar="FERPLUS_CSV", help="score against FER+ votes instead of the dataset's labels")
    p.add_argument("--tta", action="store_true", help="also report horizontal-flip test-time augmentation")
    p.add_argument("--out", help="where to write the eval JSON (default: eval.json beside the model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    p = sub.add_parser("search", help="hyperparameter search with Ray Tune + Optuna (runs/search/NAME)")
    _add_data(p, required=False)
    p.add_argument("--name")
    p.add_argument("--space", metavar="YAML", help="search space: a packaged name (default.yaml, cnn_small.yaml, demo.yaml) or a file")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--time-budget", type=float, metavar="MIN")
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--gpus-per-trial", type=float)
    p.add_argument("--metric", action="append", metavar="M")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--address", metavar="auto|ray://HOST:PORT")
    p.add_argument("--storage", metavar="PATH|s3://...")
    p.add_argument("--wandb", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--show", action="store_true", help="print the leaderboard of --name and exit")
    p.add_argument("--project", default="runs/search")

    p = sub.add_parser("serve", help="serve a model over HTTP with Ray Serve")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", default="1", metavar="N|auto")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--api-key")

    p = sub.add_parser("export", help="export a model to ONNX or TorchScript")
    p.add_argument("--model", required=True)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    p.add_argument("--out")

    p = sub.add_parser("video", help="batch emotion timelines for video files with Ray Data")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sample-fps", type=float, default=5.0)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--detector", default="haar")
    p.add_argument("--min-face", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--address")

    p = sub.add_parser("report", help="HTML report of a train run, search or video output")
    p.add_argument("folder")

    p = sub.add_parser("demo", help="a short end-to-end run on synthetic faces")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "eval", "demo"):
            from jobs import train_cli

            return getattr(train_cli, f"cmd_{args.command}")(args)
        if args.command == "search":
            from jobs.search import main as run
        elif args.command == "video":
            from jobs.video import main as run
        elif args.command in ("serve", "export"):
            module = __import__(f"serve.{'app' if args.command == 'serve' else 'export'}", fromlist=["main"])
            run = module.main
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
        print(f"\nfertune {args.command}: interrupted; a train run continues with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
