"""`fertune report FOLDER`: an HTML report (FOLDER/report/index.html and its PNGs) of a train run, a search
or a video output, told apart by the files SPEC.md gives each:

| folder | recognised by | report |
|---|---|---|
| train run | config.yaml + metrics.csv + weights/ | training curves, then the model section |
| search | results.parquet (or search.yaml while running) + best/ + ensemble/ | leaderboard, importances, curves, Pareto, best/ and ensemble/ |
| video output | manifest.parquet | archive summary, per-video timelines and segment strips |
| evaluation JSON | a `fertune eval` JSON (report next to it, in report-<stem>/) | cross-dataset figures beside the model's own |

Nothing is fetched from the network: matplotlib draws PNGs next to index.html, which uses no scripts.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from analysis.html import Page
from fer_core import runs


def kind_of(folder: Path) -> str:
    """'train', 'search', 'video' or 'eval'; raises FileNotFoundError naming what each kind needs."""
    from analysis.eval_report import is_eval_file

    if is_eval_file(folder):
        return "eval"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is neither a folder nor an evaluation JSON; pass a train run "
                                "(runs/train/NAME), a search (runs/search/NAME), a `fertune video --out` folder or "
                                "a JSON written by `fertune eval`")
    if runs.is_video_folder(folder):
        return "video"
    if runs.is_search_folder(folder):
        return "search"
    if runs.is_train_run(folder):
        return "train"
    raise FileNotFoundError(f"{folder} is not a report source: expected a train run ({runs.CONFIG}, {runs.METRICS}, "
                            f"{runs.WEIGHTS}/), a search ({runs.RESULTS}, {runs.BEST_DIR}/, {runs.ENSEMBLE_DIR}/) or "
                            f"a video output ({runs.MANIFEST})")


def build_train(folder: Path, out: Path, page: Page, data_override: str | None) -> None:
    import pandas as pd

    from analysis import plots
    from analysis.model_report import find_data_arg, load_eval_data, model_section

    page.subtitle = f"train run {folder.resolve()}"
    page.section("training", "Training")
    history = pd.DataFrame(runs.read_metrics(folder))
    if len(history):
        last = history.iloc[-1]
        best = history.loc[history["val_macro_f1"].idxmax()] if "val_macro_f1" in history else last
        page.kpis({"epochs": str(int(last["epoch"])), "best val macro-F1": f"{best.get('val_macro_f1', float('nan')):.4f}",
                   "at epoch": str(int(best["epoch"])), "last val accuracy": f"{last.get('val_acc', float('nan')):.2%}",
                   "train seconds": f"{history['seconds'].sum():.0f}" if "seconds" in history else "-"})
        page.figure(plots.training_curves(history, out / "training_curves.png", folder.name), "training curves")
        page.table(history.round(4))
    else:
        page.note(f"{runs.METRICS} has no epochs yet.")
    config = folder / runs.CONFIG
    if config.is_file():
        import yaml

        values = yaml.safe_load(config.read_text()) or {}
        page.heading(f"Settings ({runs.CONFIG})")
        page.table([{"key": k, "value": str(v)} for k, v in values.items()])
    best_pt = runs.weights(folder)
    if not best_pt.is_file():
        page.section("model", "Model")
        page.note(f"No {best_pt.relative_to(folder)} yet: the model section appears once an epoch has finished.")
        return
    data = load_eval_data(find_data_arg(folder, data_override), {})
    model_section(page, out, folder, data, "model", str(best_pt.relative_to(folder)), with_gradcam=True)


def make_report(folder: str | Path, data: str | None = None, out: str | Path | None = None) -> Path:
    """Write the report of `folder` into out (default folder/report/); returns the index.html path."""
    folder = Path(folder).expanduser()
    kind = kind_of(folder)
    default = folder.with_name(f"{runs.REPORT_DIR}-{folder.stem}") if kind == "eval" else folder / runs.REPORT_DIR
    out = Path(out) if out else default
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # figures of an earlier report that this one may not redraw
        old.unlink()
    page = Page(f"fertune report: {folder.resolve().name}")
    if kind == "train":
        build_train(folder, out, page, data)
    elif kind == "search":
        from analysis import search_report

        search_report.build(folder, out, page, data)
    elif kind == "eval":
        from analysis import eval_report

        eval_report.build(folder, out, page)
    else:
        from analysis import video_report

        video_report.build(folder, out, page)
    page.subtitle += f" · written {time.strftime('%Y-%m-%d %H:%M')}"
    return page.write(out)


def main(args: Any) -> int:
    t0 = time.perf_counter()
    index = make_report(args.folder, data=getattr(args, "data", None), out=getattr(args, "out", None))
    print(f"report: {index} ({len(list(index.parent.glob('*.png')))} figures, {time.perf_counter() - t0:.0f}s)\n"
          f"open it in a browser: file://{index.resolve()}")
    return 0
