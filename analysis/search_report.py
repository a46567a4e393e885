"""The report of a `fertune search` folder: leaderboard, hyperparameter importances, parallel-coordinate and
slice plots, learning curves (top trials and those ASHA stopped), the Pareto front with two metrics, and
the model sections of best/ and ensemble/.

It reads SPEC.md's `results.parquet`. While a search still runs, that file does not exist yet; then the
table is rebuilt from the trial folders Ray Tune keeps in the search's local storage (`result.json` per
trial, one JSON line per epoch), so a report of a running search shows the trials so far.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis.html import Page
from analysis.model_report import find_data_arg, load_eval_data, model_section
from fer_core import runs
from fer_core.runs import STATUS_DONE, objective_column

TOP_CURVES = 5  # learning curves drawn for the best trials


# ------------------------------------------------------------------------------------------- reading
def read_search_yaml(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / runs.SEARCH
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def objectives(saved: dict[str, Any], df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The search's metric(s) and mode(s): from search.yaml, else guessed from the columns."""
    space = saved.get("space") or {}
    metric, mode = space.get("metric"), space.get("mode")
    if metric is None:
        metric = "val_macro_f1" if "best_val_macro_f1" in df else "val_acc"
    metrics = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    modes = list(mode) if isinstance(mode, (list, tuple)) else [mode or "max"] * len(metrics)
    return metrics, modes


def searched_params(saved: dict[str, Any], df: pd.DataFrame) -> dict[str, tuple[str, list]]:
    """{key: (kind, args)} for every searched key with a config/<key> column (kind 'choice' if unknown)."""
    space = ((saved.get("space") or {}).get("space")) or {}
    params = {}
    for col in df.columns:
        if not col.startswith("config/"):
            continue
        key = col[len("config/"):]
        spec = space.get(key)
        if isinstance(spec, dict) and len(spec) == 1:
            kind, args = next(iter(spec.items()))
            params[key] = (kind, list(args))
        elif df[col].nunique(dropna=True) > 1:  # no search.yaml: a column that varies was searched
            numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
            params[key] = ("uniform", [df[col].min(), df[col].max()]) if numeric else \
                ("choice", sorted(df[col].dropna().unique().tolist(), key=str))
    return params


def trials_from_storage(folder: Path, saved: dict[str, Any], metric: str) -> pd.DataFrame:
    """A results.parquet-like table from Ray Tune's trial folders (a search still running)."""
    settings = saved.get("settings") or {}
    storage, name = settings.get("storage"), settings.get("experiment", folder.name)
    if not storage or "://" in str(storage):
        return pd.DataFrame()
    rows = []
    for result in sorted(Path(storage, name).glob(f"*/{runs.TUNE_RESULT}")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        params = runs.read_json(result.parent / runs.TUNE_PARAMS, {})
        last = lines[-1]
        trial_id = str(last.get("trial_id", result.parent.name))
        planned = int(last.get("epochs_planned", last.get("epoch", 0)))
        row = {"trial_id": trial_id, "trial": int(last.get("trial_index", len(rows))),
               "status": runs.TERMINATED if int(last.get("epoch", 0)) >= planned else runs.RUNNING,
               "epochs": int(last.get("epoch", 0)), "train_seconds": float(last.get("train_seconds", np.nan))}
        row.update({f"config/{k}": v for k, v in params.items()})
        row.update(runs.metric_summary(lines))
        ckpts = sorted(result.parent.glob(f"checkpoint_*/{runs.BEST}"))
        row["checkpoint"] = str(ckpts[-1]) if ckpts else None
        rows.append(row)
    df = pd.DataFrame(rows)
    col = objective_column(metric)
    if len(df) and col in df:
        df = df.sort_values(col, ascending=False, na_position="last").reset_index(drop=True)
        df.insert(0, "rank", range(1, len(df) + 1))
    return df


def trial_history(row: pd.Series) -> pd.DataFrame | None:
    """The trial's metrics.csv, next to its checkpoint (local storage only)."""
    ckpt = row.get("checkpoint")
    if not isinstance(ckpt, str) or "://" in ckpt:
        return None
    h = pd.DataFrame(runs.read_metrics(Path(ckpt).parent))
    if h.empty:
        return None
    return h.drop_duplicates(subset="epoch", keep="last").sort_values("epoch") if "epoch" in h else None


# ------------------------------------------------------------------------------------------ importance
def _distribution(kind: str, args: list):
    import optuna

    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(args))
    if kind in ("uniform", "loguniform"):
        return optuna.distributions.FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")
    if kind in ("int", "intlog"):
        return optuna.distributions.IntDistribution(int(args[0]), int(args[1]), log=kind == "intlog")
    raise ValueError(f"unknown search-space kind {kind!r}")


def param_importances(df: pd.DataFrame, params: dict[str, tuple[str, list]], score: str, mode: str) -> dict[str, float]:
    """optuna.importance over the finished trials, rebuilt as an in-memory Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    dists = {k: _distribution(kind, args) for k, (kind, args) in params.items()}
    for _, row in df.iterrows():
        value = row.get(score)
        if value is None or not np.isfinite(value):
            continue
        values = {}
        for k, d in dists.items():
            v = row[f"config/{k}"]
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                v = next((c for c in d.choices if str(c) == str(v)), None)
                if v is None:
                    break
            elif isinstance(d, optuna.distributions.IntDistribution):
                v = int(v)
            else:
                v = float(v)
            if not d._contains(d.to_internal_repr(v)):
                break
            values[k] = v
        else:
            study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=float(value)))
    varying = [k for k in dists if len({str(t.params[k]) for t in study.trials}) > 1]
    if len(study.trials) < 2 or not varying:
        raise ValueError(f"{len(study.trials)} finished trial(s) with varying parameters; importances need at least 2")
    return optuna.importance.get_param_importances(study, params=varying)


# ----------------------------------------------------------------------------------------------- build
def build(folder: Path, out: Path, page: Page, data_override: str | None) -> None:
    saved = read_search_yaml(folder)
    live = not (folder / runs.RESULTS).is_file()
    metrics_, modes = objectives(saved, pd.DataFrame())
    df = trials_from_storage(folder, saved, metrics_[0]) if live else pd.read_parquet(folder / runs.RESULTS)
    metrics_, modes = objectives(saved, df)
    if live and df.empty:
        raise FileNotFoundError(f"{folder} has no {runs.RESULTS} and no trial has reported yet; "
                                "wait for the first epoch, or pass a finished search folder")
    if "trial" not in df:
        df["trial"] = range(len(df))
    score = objective_column(metrics_[0])
    params = searched_params(saved, df)
    page.subtitle = f"search {folder.resolve()}" + (" (still running: trials so far)" if live else "")

    refits = runs.refits_beside_explored(df, score)
    if not refits.empty:  # the leaderboard and the plots compare exploration trials; refits get their table
        df = df[df["phase"] == runs.PHASE_EXPLORE]
    _leaderboard(page, df, metrics_, params, live)
    if not refits.empty:
        page.section("refits", "Refits")
        page.text("After exploring, the search trained its best configurations again on all the training images "
                  "to the time budget's end, each continuing its trial's last checkpoint (unless --refit-from "
                  "scratch); best/ and ensemble/ are made from these refits.")
        page.table(refits)
    _importance(page, out, df, params, score, modes[0])
    _curves(page, out, df, metrics_[0])
    if len(metrics_) == 2:
        _pareto(page, out, df, metrics_)
    cache: dict = {}
    best, ensemble = folder / runs.BEST_DIR, folder / runs.ENSEMBLE_DIR
    data = load_eval_data(find_data_arg(best, data_override), cache) if best.is_dir() else None
    if best.is_dir():
        chosen = "the chosen refit" if not refits.empty else "the chosen trial"
        model_section(page, out, best, data, "best", f"{best.name}/ ({chosen})", with_gradcam=True)
    if (ensemble / runs.MEMBERS).is_file():
        data = data or load_eval_data(find_data_arg(ensemble, data_override), cache)
        members = runs.read_json(ensemble / runs.MEMBERS).get("members", [])
        model_section(page, out, ensemble, data, "ensemble",
                      f"{ensemble.name}/ (mean of {len(members)} trials' probabilities)", with_gradcam=False)


def _leaderboard(page: Page, df: pd.DataFrame, metrics_: list[str], params: dict, live: bool) -> None:
    page.section("leaderboard", "Leaderboard")
    counts = df["status"].value_counts().to_dict() if "status" in df else {}
    page.kpis({"trials": str(len(df)), **{s.lower(): str(n) for s, n in counts.items()}})
    if live:
        page.note(f"{runs.RESULTS} is written when the search ends; this table comes from Ray Tune's trial folders.")
    cols = [c for c in ("rank", "trial", "status", "epochs") if c in df]
    cols += [objective_column(m) for m in metrics_ if objective_column(m) in df]
    cols += [c for c in ("best_val_acc", "best_val_macro_f1", "last_val_macro_f1") if c in df and c not in cols]
    cols += [f"config/{k}" for k in params] + [c for c in ("pareto", "train_seconds") if c in df]
    table = df[cols].rename(columns=lambda c: c.replace("config/", ""))
    if "trial" in table:
        table["trial"] = [f"{t} (default)" if t == 0 else str(t) for t in table["trial"]]
    page.table(table, highlight=[i == 0 for i in range(len(table))])


def _importance(page: Page, out: Path, df: pd.DataFrame, params: dict, score: str, mode: str) -> None:
    page.section("importance", "Hyperparameters")
    log_params = [k for k, (kind, _) in params.items() if kind in ("loguniform", "intlog")]
    done = df[df[score].notna()] if score in df else df.iloc[:0]
    if not params or done.empty:
        page.note("No searched parameters with finished trials yet.")
        return
    try:
        imp = param_importances(done, params, score, mode)
        page.text("optuna.importance (PED-ANOVA, Optuna's default evaluator) over the finished trials: "
                  "how much of the objective's variation each parameter explains.")
        page.figure(plots.importances(imp, out / "importance.png", f"parameter importance for {score}"),
                    "hyperparameter importance")
    except (ValueError, RuntimeError) as err:
        page.note(f"Importances not computed: {err}")
    keys = [f"config/{k}" for k in params]
    frame = done[keys + [score] + (["trial"] if "trial" in done else [])].rename(columns=lambda c: c.replace("config/", ""))
    page.figure(plots.parallel_coordinates(frame, list(params), score, out / "parallel.png",
                                           "parallel coordinates", log_params), "parallel coordinates")
    page.figure(plots.slices(frame, list(params), score, out / "slices.png", f"{score} against each parameter",
                             log_params), "slice plots")


def _curves(page: Page, out: Path, df: pd.DataFrame, metric: str) -> None:
    page.section("curves", "Learning curves")
    ranked = df[df["status"].isin(STATUS_DONE + (runs.RUNNING,))] if "status" in df else df
    top = {f"trial {r['trial']}": h for _, r in ranked.head(TOP_CURVES).iterrows()
           if (h := trial_history(r)) is not None}
    page.figure(plots.curves_by_trial(top, metric, out / "curves_top.png", f"top {TOP_CURVES} trials: {metric}"),
                "learning curves of the top trials")
    stopped = df[df["status"] == runs.STOPPED_EARLY] if "status" in df else df.iloc[:0]
    curves = {f"trial {r['trial']} (stopped at {r['epochs']})": h for _, r in stopped.iterrows()
              if (h := trial_history(r)) is not None}
    if len(stopped):
        page.figure(plots.curves_by_trial(curves, metric, out / "curves_stopped.png",
                                          f"trials stopped early (ASHA): {metric}"), "learning curves of stopped trials")
    else:
        page.note("No trial was stopped early.")
    if not top and not curves:
        page.note(f"No {runs.METRICS} found next to the trials' checkpoints (remote storage?).")


def _pareto(page: Page, out: Path, df: pd.DataFrame, metrics_: list[str]) -> None:
    page.section("pareto", "Pareto front")
    x, y = objective_column(metrics_[1]), objective_column(metrics_[0])
    if x not in df or y not in df:
        page.note(f"Columns {x} and {y} are missing from {runs.RESULTS}.")
        return
    ok = df[[x, y]].notna().all(axis=1)
    front = df["pareto"].fillna(False).astype(bool) if "pareto" in df else pd.Series(False, index=df.index)
    page.figure(plots.pareto(df[ok], x, y, front[ok].to_numpy(), out / "pareto.png", f"{metrics_[0]} vs {metrics_[1]}"),
                "Pareto front")
    page.text("On the front: trials " + ", ".join(str(t) for t in df.loc[front, "trial"]) if front.any()
              else "No trial is marked on the Pareto front.")
