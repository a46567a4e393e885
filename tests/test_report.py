"""`fertune report`: reports of a train run, a search (finished, running, two metrics) and a video output,
built from a real tiny training and real tiny searches on synthetic faces (conftest's session fixtures; the
synthetic test split stands in for private_test)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli
from fer_core.labels import CLASSES

VARIANCE_FLOOR = 1e-3  # of gray pixel values in 0..1: a blank (one-colour) PNG has 0


def png_variance(path: Path) -> float:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3].mean(axis=2)
    return float(img.var())


def check_report(index: Path, sections: list[str], min_figures: int) -> str:
    """Every section exists; every PNG the page names exists beside it and is not blank; no network."""
    html = index.read_text()
    for anchor in sections:
        assert f'<section id="{anchor}">' in html, f"section {anchor} missing"
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= min_figures, images
    for name in images:
        assert "/" not in name and name.endswith(".png"), name  # beside index.html, no URL
        assert png_variance(index.parent / name) > VARIANCE_FLOOR, f"{name} looks blank"
    assert "http://" not in html and "https://" not in html and "<script" not in html
    return html


def test_blank_png_fails_the_variance_check(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 2))
    fig.savefig(tmp_path / "blank.png")
    plt.close(fig)
    assert png_variance(tmp_path / "blank.png") <= VARIANCE_FLOOR


def test_train_run_report(trained_run, tmp_path):
    from analysis.report import make_report

    index = make_report(trained_run.path, out=tmp_path / "report")
    html = check_report(index, ["training", "model"], min_figures=6)
    for name in ("training_curves", "model_confusion", "model_per_class", "model_reliability", "model_confused",
                 "model_gradcam"):
        assert f"{name}.png" in html
    assert "ECE" in html and "Most confused" in html and "Grad-CAM" in html


def test_search_report_via_cli(demo_search, tmp_path):
    import pandas as pd

    folder, _ = demo_search
    out = run_cli("report", str(folder), "--out", str(tmp_path / "report"), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    index = tmp_path / "report" / "index.html"
    assert str(index) in out.stdout
    html = check_report(index, ["leaderboard", "importance", "curves", "best", "ensemble"], min_figures=12)
    for name in ("importance", "parallel", "slices", "curves_top", "best_confusion", "best_reliability",
                 "best_confused", "best_gradcam", "ensemble_confusion", "ensemble_per_class"):
        assert f"{name}.png" in html, name
    assert "ensemble_gradcam.png" not in html  # Grad-CAM is per network: best/ only
    df = pd.read_parquet(folder / "results.parquet")
    for status in df["status"]:
        assert status in html
    assert ("curves_stopped.png" in html) == (df["status"] == "STOPPED_EARLY").any()
    assert "0 (default)" in html
    members = json.loads((folder / "ensemble" / "members.json").read_text())["members"]
    assert f"mean of {len(members)} trials" in html


def test_search_importances_rank_the_searched_keys(demo_search):
    import pandas as pd

    from analysis.search_report import param_importances, read_search_yaml, searched_params

    folder, _ = demo_search
    df = pd.read_parquet(folder / "results.parquet")
    params = searched_params(read_search_yaml(folder), df)
    assert params["lr"] == ("loguniform", [5e-4, 5e-3]) and params["dropout"] == ("uniform", [0.1, 0.6])
    imp = param_importances(df, params, "best_val_macro_f1", "max")
    assert set(imp) == {"lr", "dropout"}
    assert sum(imp.values()) == pytest.approx(1.0)


@pytest.mark.long  # its search fixture takes ~1.5 min
def test_two_metric_search_has_a_pareto_front(two_metric_search, tmp_path):
    from analysis.report import make_report

    folder, _ = two_metric_search
    html = check_report(make_report(folder, out=tmp_path / "report"), ["leaderboard", "pareto", "best"], min_figures=8)
    assert "pareto.png" in html and "On the front: trials" in html


def test_running_search_reads_ray_trial_folders(demo_search, tmp_path):
    """A search that has not finished has Tune's trial folders but no results.parquet, best/ or ensemble/."""
    from analysis.report import make_report

    finished, _ = demo_search
    folder = tmp_path / finished.name
    shutil.copytree(finished, folder, ignore=shutil.ignore_patterns("results.parquet", "best", "ensemble", "report"))
    html = check_report(make_report(folder), ["leaderboard", "importance", "curves"], min_figures=3)
    assert "still running" in html
    leaderboard = html.split('<section id="leaderboard">')[1].split("</section>")[0]
    assert leaderboard.count("<tr") == 1 + 4  # header + the 4 trials


def test_video_report(tmp_path):
    from analysis.report import make_report
    from analysis.video_report import time_shares

    folder = video_folder(tmp_path)
    html = check_report(make_report(folder), ["archive", "videos"], min_figures=5)
    assert "clip_a.mp4" in html and "broken.mp4" in html and "cannot decode" in html
    for k in range(2):
        assert f"video{k}_timeline.png" in html and f"video{k}_segments.png" in html
    import pandas as pd

    seg = pd.read_csv(next(folder.glob("clip_a-*")) / "segments.csv")
    shares = time_shares(seg)  # happy 4 s, sad 2 s, neutral 5 s of 11 s
    assert shares["happy"] == pytest.approx(4 / 11) and shares["neutral"] == pytest.approx(5 / 11)


def test_report_refuses_a_folder_it_cannot_read(tmp_path):
    (tmp_path / "junk").mkdir()
    out = run_cli("report", str(tmp_path / "junk"), cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert "not a report source" in out.stderr and "manifest.parquet" in out.stderr


def test_report_without_data_falls_back_to_eval_json(trained_run, tmp_path):
    from analysis.report import make_report

    run = tmp_path / "copy"
    shutil.copytree(trained_run.path, run)
    (run / "data.json").unlink()
    html = check_report(make_report(run), ["training", "model"], min_figures=3)
    assert "--data PATH" in html and "model_reliability.png" not in html


def test_analysis_imports_only_fer_core():
    # the import rule for analysis/ (tests/test_imports.py checks every package; this names the files)
    files = sorted((REPO / "analysis").glob("*.py"))
    assert {f.name for f in files} >= {"report.py", "plots.py", "gradcam.py", "html.py"}
    for f in files:
        assert not re.search(r"^\s*(from|import) (jobs|serve)\b", f.read_text(), re.M), f


# Known timeline of the video fixture: (face_id, emotion, start_t, end_t)
VIDEO_SEGMENTS = {
    "clip_a": [(0, "happy", 0.0, 4.0), (0, "sad", 4.0, 6.0), (1, "neutral", 1.0, 6.0)],
    "clip_b": [(0, "angry", 0.0, 3.0)],
}


def video_folder(root: Path) -> Path:
    """A `fertune video --out` folder: two videos with outputs, one failed input."""
    out = root / "video_out"
    out.mkdir(parents=True)
    manifest = []
    for stem, segments in VIDEO_SEGMENTS.items():
        vdir = out / f"{stem}-0123abcd"
        vdir.mkdir()
        frames = []
        duration = max(e for *_, e in segments)
        for face, emotion, start, end in segments:
            for t in np.arange(start, end, 0.2):
                p = np.full(len(CLASSES), 0.05)
                p[CLASSES.index(emotion)] = 0.7
                row = {"video": stem, "frame": int(round(t * 25)), "t": float(t), "face_id": face,
                       "x": 10, "y": 10, "w": 60, "h": 60}
                row.update({f"p_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"s_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"e_{c}": float(v) for c, v in zip(CLASSES, p)})
                row.update({f"d_{c}": 0.0 for c in CLASSES})
                row.update(emotion=emotion, score=0.7)
                frames.append(row)
        pd.DataFrame(frames).to_parquet(vdir / "frames.parquet", index=False)
        pd.DataFrame([{"face_id": f, "emotion": e, "start_t": s, "end_t": t_, "mean_score": 0.7}
                      for f, e, s, t_ in segments]).to_csv(vdir / "segments.csv", index=False)
        (vdir / "summary.json").write_text(json.dumps({"duration": duration, "frames_sampled": len(frames),
                                                       "faces": len({s[0] for s in segments}), "transitions": 1}))
        manifest.append({"path": f"/videos/{stem}.mp4", "status": "ok", "reason": "", "frames": len(frames),
                         "faces": len({s[0] for s in segments}), "seconds": 1.5, "out_dir": str(vdir), "key": "k"})
    manifest.append({"path": "/videos/broken.mp4", "status": "failed", "reason": "cannot decode", "frames": 0,
                     "faces": 0, "seconds": 0.1, "out_dir": "", "key": "k"})
    pd.DataFrame(manifest).to_parquet(out / "manifest.parquet", index=False)
    return out
