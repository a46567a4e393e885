"""A search's results: results.parquet, the leaderboard, the Pareto front, best/ and ensemble/ exports.

Everything is read from Tune's experiment folder (local or remote storage) through
`ray.tune.ExperimentAnalysis`, so the same code serves the end of a search, a resumed one and
`fertune search --show` while a search still runs elsewhere.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_core import runs
from fer_core.runs import EPOCH_METRICS, objective_column
from fer_core.runs import PHASE_EXPLORE
from jobs.search_refit import format_refits, refit_pool
from jobs.search_space import SearchSpace


# ------------------------------------------------------------------------------------------ collecting
def _uri(path: str, filesystem: Any) -> str:
    """A checkpoint location a later process can open: local paths stay paths, others get their scheme."""
    kind = getattr(filesystem, "type_name", "local")
    return path if kind == "local" else f"{kind}://{path}"


def _trial_row(trial: Any, history: pd.DataFrame, space: SearchSpace) -> dict[str, Any]:
    from jobs.trainable import trial_index

    row: dict[str, Any] = {"trial_id": trial.trial_id, "trial": trial_index(trial),
                           "status": str(trial.status), "epochs": 0, "epochs_redone": 0,
                           "restarts": int(getattr(trial, "num_failures", 0))}  # worker or node failures survived
    for key in space.params:
        value = trial.config.get(key)
        row[f"config/{key}"] = value
    if "refit_of" in trial.config:  # a refit (jobs.search_refit): the exploration trial it trains again
        row["refit_of"] = int(trial.config["refit_of"])
    if not history.empty and "epoch" in history:
        # a trial that restarted from an older checkpoint reports some epochs twice: keep the newest
        reported = history.dropna(subset=["epoch"])
        h = reported.drop_duplicates(subset="epoch", keep="last").sort_values("epoch")
        row["epochs_redone"] = len(reported) - len(h)  # epochs trained again after a restart from a checkpoint
        last = h.iloc[-1]
        row["epochs"] = int(last["epoch"])
        row.update(runs.metric_summary(h.to_dict("records")))
        row["train_seconds"] = float(last.get("train_seconds", np.nan))
        if "latency_ms" in h:
            row["latency_ms"] = float(last["latency_ms"])
        if "node_id" in h:
            row["nodes"] = ",".join(sorted(set(map(str, h["node_id"].dropna()))))
        planned = int(last.get("epochs_planned", row["epochs"]))
        if row["status"] == runs.TERMINATED and row["epochs"] < planned:
            row["status"] = runs.STOPPED_EARLY  # ASHA, the time budget or the trial's own patience stopped it
    elif row["status"] == runs.TERMINATED:
        row["status"] = runs.STOPPED_EARLY  # the time budget ended the search before its first epoch
    checkpoint = trial.checkpoint
    row["checkpoint"] = _uri(f"{checkpoint.path}/{runs.BEST}", checkpoint.filesystem) if checkpoint else None
    return row


def _with_faults(row: dict[str, Any], faults: dict[str, Any] | None) -> dict[str, Any]:
    """The driver's own count of a restarted trial's losses (jobs.search_faults) over what its history shows."""
    if faults:
        row["epochs_redone"] = max(row["epochs_redone"], int(faults["epochs_redone"]))
        nodes = set(filter(None, str(row.get("nodes") or "").split(","))) | set(faults["lost_nodes"])
        row["nodes"] = ",".join(sorted(nodes))
    return row


def collect_results(experiment_path: str, space: SearchSpace) -> pd.DataFrame:
    """One row per trial (SPEC results.parquet columns), ranked on the first metric, best first."""
    from ray.tune import ExperimentAnalysis

    from jobs.search_faults import read_faults

    analysis = ExperimentAnalysis(experiment_path)
    frames, faults = analysis.trial_dataframes, read_faults(experiment_path)
    rows = [_with_faults(_trial_row(t, frames.get(t.trial_id, pd.DataFrame()), space), faults.get(t.trial_id))
            for t in analysis.trials]
    df = pd.DataFrame(rows)
    for m in EPOCH_METRICS:
        for col in (f"best_{m}", f"last_{m}"):
            if col not in df:
                df[col] = np.nan
    for col in ("train_seconds", "checkpoint"):
        if col not in df:
            df[col] = np.nan if col == "train_seconds" else None
    df["score"] = df[f"best_{space.metric}"]
    if space.multi_objective:
        df["pareto"] = pareto_front(df, space)
    df = df.sort_values("score", ascending=space.mode == "min", na_position="last", kind="stable")
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def pareto_front(df: pd.DataFrame, space: SearchSpace) -> pd.Series:
    """True for trials no other trial beats on one objective without losing on the other."""
    cols = [objective_column(m) for m in space.metrics]
    if any(c not in df for c in cols):
        return pd.Series(False, index=df.index)
    signs = np.array([1.0 if mode == "max" else -1.0 for mode in space.modes])
    values = df[cols].to_numpy(dtype=float) * signs
    ok = np.isfinite(values).all(axis=1)
    front = np.zeros(len(df), dtype=bool)
    for i in np.flatnonzero(ok):
        others = values[ok]
        dominated = ((others >= values[i]).all(axis=1) & (others > values[i]).any(axis=1)).any()
        front[i] = not dominated
    return pd.Series(front, index=df.index)


def choose_best(df: pd.DataFrame, space: SearchSpace) -> pd.Series | None:
    """The trial chosen on validation: the best first metric (among the Pareto front with two metrics); among
    the refits when the search made any."""
    pool = refit_pool(df)
    pool = pool[pool["checkpoint"].notna() & pool["score"].notna()]
    if space.multi_objective:
        pool = pool[pool["pareto"]]
    return pool.iloc[0] if len(pool) else None  # df is ranked on the first metric


# ---------------------------------------------------------------------------------------- leaderboard
def format_leaderboard(df: pd.DataFrame, space: SearchSpace, limit: int | None = 20) -> str:
    """A ranked table: the default configuration is marked, and the Pareto front with two metrics."""
    if df.empty:
        return "no trials yet"
    refits = format_refits(df, space)
    if refits:
        df = df[df["phase"] == PHASE_EXPLORE]
    show = pd.DataFrame({"rank": df["rank"],
                         "trial": [f"{t}{' (default)' if t == 0 else ''}" for t in df["trial"]],
                         "status": df["status"], "epochs": df["epochs"]})
    for m in space.metrics:
        col = objective_column(m)
        show[m] = df[col] if col in df else np.nan
    if space.multi_objective:
        show["pareto"] = np.where(df["pareto"], "*", "")
    for key in space.params:
        show[key] = df.get(f"config/{key}")
    show["train_s"] = df["train_seconds"]
    if limit and len(show) > limit:
        show = show.head(limit)
    text = show.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    lines = [text]
    default = df[df["trial"] == 0]
    best = choose_best(df, space)
    if best is not None:
        lines.append(f"best{' explored' if refits else ''}: trial {best['trial']} {space.metric} {best['score']:.4f}")
        if len(default) and not math.isnan(default.iloc[0]["score"]):
            d = default.iloc[0]["score"]
            lines[-1] += f" ({best['score'] - d:+.4f} over the default configuration, trial 0: {d:.4f})"
    if space.multi_objective:
        lines.append(f"Pareto front ({' vs '.join(space.metrics)}): trials "
                     f"{', '.join(str(t) for t in df.loc[df['pareto'], 'trial'])}")
    counts = df["status"].value_counts().to_dict()
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if refits:
        lines.append("\n" + refits)
    return "\n".join(lines)


def write_results(df: pd.DataFrame, folder: Path) -> Path:
    """results.parquet in the search folder (written to a temp name, then renamed)."""
    out = folder / runs.RESULTS
    tmp = folder / f".{runs.RESULTS}.tmp"
    df.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


# -------------------------------------------------------------------------------------------- exports
def fetch_file(uri: str, dest: Path) -> Path:
    """Copy one file from local or remote storage (s3://, gs://, ...) to dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in uri:
        shutil.copyfile(uri, dest)
        return dest
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    return dest


def sibling(uri: str, name: str) -> str:
    """The file `name` beside `uri` (a path or a storage URI): a checkpoint's other files."""
    return uri.rsplit("/", 1)[0] + "/" + name


def export_best(row: pd.Series, folder: Path, data: Any, data_arg: str) -> dict[str, Any]:
    """best/: a train run folder for the chosen trial (config.yaml, metrics.csv, weights/best.pt, eval.json)."""
    from fer_core.evaluate import evaluate

    best = folder / runs.BEST_DIR
    if best.exists():
        shutil.rmtree(best)  # our own export from an earlier finish of this search (e.g. before --resume)
    fetch_file(row["checkpoint"], runs.weights(best))
    for name in (runs.CONFIG, runs.METRICS):
        try:
            fetch_file(sibling(row["checkpoint"], name), best / name)
        except (FileNotFoundError, OSError):
            pass
    runs.write_json(best / runs.TRIAL, {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    runs.write_data_json(best, data_arg)
    result = evaluate(runs.weights(best), data, tta=True)
    result.write(best / runs.EVAL)
    return result.report


def _split_score(probs: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """The search metric of averaged probabilities, larger is better (val_loss is negated)."""
    from fer_core.metrics import confusion_matrix, macro_f1

    if metric == "val_loss":
        return -float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    if metric == "val_macro_f1":
        return macro_f1(confusion_matrix(labels, probs.argmax(1)))
    return float((probs.argmax(1) == labels).mean())


def greedy_members(val_probs: list[np.ndarray], labels: np.ndarray, metric: str) -> list[int]:
    """Forward selection on validation (Caruana et al., 2004): start from the best candidate, add the one
    whose inclusion helps the average most, stop when none helps. Candidates are in rank order; so is
    the answer's first member. A weak trial (one ASHA stopped after two epochs) only joins if it helps."""
    chosen = [0]
    total = val_probs[0].copy()
    best = _split_score(total, labels, metric)
    while True:
        trials = [(_split_score((total + p) / (len(chosen) + 1), labels, metric), i)
                  for i, p in enumerate(val_probs) if i not in chosen]
        if not trials:
            return chosen
        score, pick = max(trials)
        if score <= best:
            return chosen
        chosen.append(pick)
        total += val_probs[pick]
        best = score


def export_ensemble(df: pd.DataFrame, folder: Path, data: Any, top_k: int, space: SearchSpace) -> dict[str, Any] | None:
    """ensemble/: members picked greedily on validation among the top-k trials, their best checkpoints
    copied in; the averaged probabilities evaluated on test."""
    from fer_core.evaluate import evaluate
    from fer_core.infer import Predictor

    pool = refit_pool(df)
    pool = pool[pool["checkpoint"].notna() & pool["score"].notna()].head(top_k)
    if pool.empty:
        return None
    ens = folder / runs.ENSEMBLE_DIR
    if ens.exists():
        shutil.rmtree(ens)
    candidates = []
    for _, row in pool.iterrows():
        rel = f"{runs.MEMBERS_DIR}/{row['trial_id']}.pt"
        fetch_file(row["checkpoint"], ens / rel)
        candidates.append({"checkpoint": rel, "trial_id": row["trial_id"], "trial": int(row["trial"]),
                           space.metric: float(row["score"]), "source": row["checkpoint"]})
    selection = "the only candidate" if len(candidates) == 1 else "all of the top-k (no validation split to choose on)"
    members = candidates
    if data.val is not None and len(candidates) > 1:
        val_probs = [evaluate(ens / member["checkpoint"], data, "val", device="cpu").probs for member in candidates]
        keep = greedy_members(val_probs, np.asarray(data.val.labels), space.metric)
        members = [candidates[i] for i in keep]
        for i, member in enumerate(candidates):
            if i not in keep:
                (ens / member["checkpoint"]).unlink()
        selection = f"greedy forward selection on val {space.metric} among the top {len(candidates)}"
    runs.write_json(ens / runs.MEMBERS, {"members": members, "metric": space.metric, "selection": selection,
                                         "candidates": [c["trial"] for c in candidates]})
    # loads members.json exactly as eval and serve will
    result = evaluate(Predictor(ens, device="cpu", batch_size=512), data, tta=True)
    result.report.update(members=len(members), selection=selection)
    result.write(ens / runs.EVAL)
    return result.report
