"""Make a bundled model (fer_core/bundled/NAME/) from a finished train run: the reproducible last step of
shipping a model in the package.

    python bench/bundle_model.py runs/train/cnn_small_fer2013 --data ../shared/data/fer2013.parquet \\
        --command "fertune train --data fer2013.parquet --set model=cnn_small --name cnn_small_fer2013"

It writes weights/best.pt (the run's best checkpoint with the training state left out: weights, model
settings, preprocessing and resolved config, in SPEC.md's checkpoint format, loadable with weights_only),
config.yaml, eval.json (private_test scored again from the written file, plain and flip-TTA) and
model.json (provenance: the command, data, machine, accuracy, terms).
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_core import runs  # noqa: E402
from machine import cpu_description  # noqa: E402  (bench/ is on sys.path when run as a script)
from fer_core.bundled import INFO, ROOT  # noqa: E402

# Training state a deployed model does not need (and a resume would): about two thirds of the file.
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "sampler_weights", "rng")
TERMS = ("Trained on FER2013 (Goodfellow et al., 2013), a research dataset released for the ICML 2013 "
         "Challenges in Representation Learning; its images come from web searches. Use this model for "
         "research and evaluation; check the dataset's terms before any other use.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished train run folder")
    parser.add_argument("--data", required=True, help="FER2013 (Parquet/CSV) to score private_test on")
    parser.add_argument("--command", required=True, help="the command that trained the run (recorded)")
    parser.add_argument("--name", default="fertune-cnn-small-fer2013")
    parser.add_argument("--summary", default="cnn_small (1.5 M parameters, 48x48 gray) trained on FER2013 with "
                                             "fertune's cnn_small preset")
    args = parser.parse_args()

    import torch

    from fer_core.checkpoint import atomic_torch_save, load_checkpoint
    from fer_core.data import load_scored
    from fer_core.evaluate import evaluate

    ckpt = load_checkpoint(runs.weights(args.run))
    slim = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    out = ROOT / args.name
    if out.exists():
        shutil.rmtree(out)
    atomic_torch_save(slim, runs.weights(out))
    torch.load(runs.weights(out), weights_only=True)  # the shipped file must load without pickled code
    shutil.copyfile(args.run / runs.CONFIG, out / runs.CONFIG)
    data = load_scored(args.data, "test")
    result = evaluate(out, data, "test", tta=True, precision="fp32")  # fp32: the same number on every CPU
    report = dict(result.report, data=Path(args.data).name, model=args.name, checkpoint=f"{runs.WEIGHTS}/{runs.BEST}")
    runs.write_json(out / runs.EVAL, report)
    info = {
        "name": args.name, "summary": args.summary, "command": args.command,
        "data": f"FER2013 train ({len(load_scored(args.data, 'train').train)} images), selected on public_test",
        "machine": cpu_description(), "made": datetime.date.today().isoformat(),
        "best_epoch": ckpt.get("best_epoch"), "epochs": ckpt.get("epoch"),
        "private_test": {k: report[k] for k in ("n", "accuracy", "accuracy_tta", "macro_f1", "mean_recall")},
        "precision": "fp32 (exact on every CPU; bf16 on CUDA and native-bf16 CPUs differs by a few hundredths of a point)",
        "terms": TERMS,
    }
    runs.write_json(out / INFO, info)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 1e6:.2f} MB; private_test {report['accuracy']:.2%} plain, {report['accuracy_tta']:.2%} "
          f"flip-TTA (n={report['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
