"""Cross-dataset check: a FER2013-trained model on JAFFE (Lyons et al. 1998: 213 photos, 256x256, of 10
Japanese women posing the 7 expressions), scored with `fertune eval --faces` next to FER2013 private_test.

The set is built from a public copy of JAFFE: repository fitoplankton/facial-expression-classification-
prediction, commit 673cdd2a1ba22cb1575d25c023e7696a07a5e0fa, folder jaffe/ (213 JPEG re-encodings of the
original TIFFs, file names as in the original: KA.AN1.39 = poser KA, expression AN, sample 1). The two
letters give the class; the images are put in an image folder without a split level, JAFFE/<class>/.
JAFFE is free for non-commercial research; the images are never committed.

    python bench/external_jaffe.py --jaffe path/to/jaffe --fer ../shared/data/fer2013.parquet [--model NAME]

Writes bench/results/jaffe_eval.json and prints both evaluations.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}


def build(source: Path, target: Path) -> dict[str, int]:
    """JAFFE file names -> target/<class>/<file>; returns images per class."""
    counts: dict[str, int] = {}
    for f in sorted(source.iterdir()):
        code = f.name.split(".")[1][:2] if f.name.count(".") >= 2 else ""
        if code not in CODES:
            continue
        (target / CODES[code]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target / CODES[code] / f.name)
        counts[CODES[code]] = counts.get(CODES[code], 0) + 1
    if sum(counts.values()) == 0:
        raise SystemExit(f"{source}: no JAFFE files (names like KA.AN1.39.jpg)")
    return counts


def fertune_eval(*args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-m", "jobs.cli", "eval", *args, "--out", out.name], check=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        return json.loads(Path(out.name).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jaffe", required=True, type=Path, help="the folder of JAFFE images")
    parser.add_argument("--fer", required=True, help="FER2013 Parquet/CSV (private_test is scored beside)")
    parser.add_argument("--model", default="fertune-cnn-small-fer2013")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "jaffe_eval.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fertune-jaffe-") as tmp:
        counts = build(args.jaffe, Path(tmp) / "JAFFE")
        jaffe = fertune_eval("--model", args.model, "--data", str(Path(tmp) / "JAFFE"), "--faces", "--tta")
    fer = fertune_eval("--model", args.model, "--data", args.fer, "--split", "test", "--tta")
    jaffe["data"] = "JAFFE (213 photos, image folder, --faces)"
    result = {"model": args.model, "jaffe_counts": counts, "jaffe": jaffe, "fer2013_private_test": fer}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, r in (("JAFFE", jaffe), ("FER2013 private_test", fer)):
        print(f"{name}: accuracy {r['accuracy']:.2%} (flip-TTA {r['accuracy_tta']:.2%}), macro-F1 {r['macro_f1']:.3f}, "
              f"mean recall {r['mean_recall']:.3f}, n={r['n']}" + (f", no face in {r['no_face']} of {r['images']}"
                                                                  if "no_face" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
