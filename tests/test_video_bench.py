"""bench/gpu_video.sh --smoke runs the GPU script's pipeline on CPU and writes its result (no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import REPO


def test_gpu_video_smoke(tmp_path):
    out = subprocess.run(["bash", "bench/gpu_video.sh", "--smoke"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OUT": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_video" / "result.json").read_text())
    assert result["files"] == 2 and result["device"] == "cpu"
    assert result["faces"] >= 0.9 * 2 * 10  # 2 s of a face sampled at 5 fps, in each of 2 copies
    assert result["video_seconds"] > 3.9 and result["x_realtime"] > 0
