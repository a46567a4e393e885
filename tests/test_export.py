"""`fertune export`: ONNX equals PyTorch within 1e-4 under onnxruntime; TorchScript runs with torch alone."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from conftest import FER_PARQUET, REPO, run_cli


@pytest.fixture
def tiny_model(tiny_run):
    return tiny_run


def face_crops(n: int = 24) -> np.ndarray:
    """FER2013 test faces when ../shared exists, synthetic faces otherwise: (n, 48, 48) uint8."""
    if FER_PARQUET.is_file():
        import cv2
        import pyarrow.parquet as pq

        rows = pq.read_table(FER_PARQUET, columns=["image"]).slice(32298, n).column("image").to_pylist()
        return np.stack([cv2.imdecode(np.frombuffer(r, np.uint8), cv2.IMREAD_GRAYSCALE) for r in rows])
    from fer_core.synthetic import make_faces

    return make_faces(n, seed=4)[0]


def normalise(crops: np.ndarray, contract: dict) -> np.ndarray:
    return ((crops.astype(np.float32) / 255 - contract["mean"]) / contract["std"])[:, None]


def test_onnx_export_matches_pytorch(tiny_model, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="pip install 'fertune[export]'")
    from fer_core.infer import Predictor

    out = tmp_path / "onnx"
    done = run_cli("export", "--model", str(tiny_model), "--format", "onnx", "--out", str(out), cwd=tmp_path,
                   timeout=300)
    assert done.returncode == 0, done.stderr
    contract = json.loads((out / "preprocess.json").read_text())
    assert contract["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert (contract["img_size"], contract["input"]["shape"]) == (48, ["N", 1, 48, 48])
    assert contract["file"] == "model.onnx" and (out / "model.onnx").is_file()
    crops = face_crops()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"input": normalise(crops, contract)})[0]
    expected = Predictor(tiny_model, device="cpu", precision="fp32").predict_crops(crops)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()
    # nothing is overwritten silently
    again = run_cli("export", "--model", str(tiny_model), "--format", "onnx", "--out", str(out), cwd=tmp_path,
                    timeout=300)
    assert again.returncode == 2 and "--exist-ok" in again.stderr


def test_torchscript_runs_with_torch_alone(tiny_model, tmp_path):
    from fer_core.infer import Predictor
    from serve.export import export

    result = export(tiny_model, "torchscript", out=str(tmp_path / "ts"))
    contract = json.loads((tmp_path / "ts" / "preprocess.json").read_text())
    crops = face_crops(8)
    np.save(tmp_path / "x.npy", normalise(crops, contract))
    # -S: no site-packages processing, so fertune's editable install is invisible; only the folder that
    # holds torch (and numpy) is put back on sys.path, by hand.
    code = (f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r});"
            "import importlib.util as u; assert u.find_spec('fer_core') is None and u.find_spec('serve') is None;"
            "import numpy, torch; m = torch.jit.load(sys.argv[1]);"
            "numpy.save(sys.argv[3], m(torch.from_numpy(numpy.load(sys.argv[2]))).detach().numpy())")
    done = subprocess.run([sys.executable, "-S", "-c", code, result["model"], str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), Predictor(tiny_model, precision="fp32").predict_crops(crops),
                               atol=1e-4, rtol=0)


def test_ensemble_export_averages_members(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from fer_core.infer import Predictor
    from serve.export import export

    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    # a second member with perturbed weights, so the average differs from either member
    import torch

    ckpt = torch.load(tiny_model / "weights" / "best.pt", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    ckpt["state_dict"] = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, ensemble / "member2.pt")
    members = [{"checkpoint": str(tiny_model / "weights" / "best.pt")}, {"checkpoint": "member2.pt"}]
    (ensemble / "members.json").write_text(json.dumps({"members": members}))
    result = export(ensemble, "onnx")
    assert result["model"] == str(ensemble / "export" / "model.onnx")
    crops = face_crops(8)
    contract = json.loads((ensemble / "export" / "preprocess.json").read_text())
    got = ort.InferenceSession(result["model"]).run(["probs"], {"input": normalise(crops, contract)})[0]
    np.testing.assert_allclose(got, Predictor(ensemble, precision="fp32").predict_crops(crops), atol=1e-4, rtol=0)
    assert np.abs(got - Predictor(tiny_model, precision="fp32").predict_crops(crops)).max() > 1e-3


def test_export_errors_name_the_fix(tmp_path):
    done = run_cli("export", "--model", str(tmp_path / "missing"), "--format", "onnx", cwd=REPO, timeout=120)
    assert done.returncode == 2 and "does not exist" in done.stderr
