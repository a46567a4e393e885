#!/usr/bin/env bash
# The search's trial function on one GPU without Ray or Optuna (the GPU box has neither): P worker
# processes share the GPU, each takes sampled configurations from a common queue and runs
# fer_core.train.fit on them (exactly what a `fertune search` trial runs), until the time budget.
# Prints the aggregate training throughput (target >= 20,000 img/s on an H100) and the best single
# model's private_test accuracy (target >= 72 %), and writes $OUT/gpu_search/summary.json.
#
#   bash bench/gpu_search.sh --data data_local/fer2013.parquet           # on the GPU machine, < 6 minutes
#   bash bench/gpu_search.sh --smoke                                       # CPU, tiny sizes: checks the script
#   options: --procs P (default 4) --minutes M (default 5) --epochs E (default 12) --model resnet18|cnn_small
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=""; SMOKE=0; PROCS=4; MINUTES=5; EPOCHS=12; MODEL=resnet18
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --procs) PROCS="$2"; shift 2 ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    *) echo "usage: bench/gpu_search.sh --data PARQUET [--procs P] [--minutes M] [--epochs E] [--model NAME] | --smoke" >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  DATA="${DATA:-demo}"; PROCS=2; MINUTES=2; EPOCHS=1; MODEL=cnn_small
fi
[ -n "$DATA" ] || { echo "bench/gpu_search.sh: pass --data path/to/fer2013.parquet (or --smoke)" >&2; exit 2; }
source bench/_gpu_env.sh && gpu_env gpu_search
export DATA SMOKE PROCS MINUTES EPOCHS MODEL OUT_DIR
# written to a file: worker processes are spawned (CUDA needs it) and re-import the main script by path
PYFILE="$OUT_DIR/gpu_search_run.py"
cat > "$PYFILE" <<'PY'
import json, math, multiprocessing as mp, os, queue, random, time
from pathlib import Path

SMOKE = os.environ["SMOKE"] == "1"
DATA, OUT = os.environ["DATA"], Path(os.environ["OUT_DIR"])
PROCS, EPOCHS, MODEL = int(os.environ["PROCS"]), int(os.environ["EPOCHS"]), os.environ["MODEL"]
DEADLINE_S = float(os.environ["MINUTES"]) * 60


def configs(n, seed=0):
    """Trial 0 is the model's default configuration (as in `fertune search`), then random draws from
    default.yaml's ranges (no Optuna here: random search over the same space)."""
    rng = random.Random(seed)
    base = {"model": MODEL, "epochs": EPOCHS, "device": "cpu" if SMOKE else "cuda", "patience": 0}
    if SMOKE:
        base.update(train_subset=300, batch_size=32, eval_batch_size=256, threads=1)
    yield dict(base)
    for _ in range(n - 1):
        yield dict(base, lr=math.exp(rng.uniform(math.log(5e-5), math.log(3e-3))), dropout=rng.uniform(0.1, 0.7),
                   erase_p=rng.uniform(0.0, 0.6), head_width=rng.choice([0, 128, 256, 512]),
                   **({} if SMOKE else {"batch_size": rng.choice([64, 128, 256])}),
                   focus_k=rng.choice([0, 1, 2, 3]), focus_weight=rng.uniform(1.0, 5.0),
                   label_smoothing=rng.uniform(0.0, 0.2))


def worker(rank, todo, done, t_start):
    import torch
    from fer_core.config import resolve
    from fer_core.data import load_data
    from fer_core.evaluate import evaluate
    from fer_core.train import fit

    data = load_data(DATA, seed=0)
    while time.time() - t_start < DEADLINE_S:
        try:
            index, overrides = todo.get_nowait()
        except queue.Empty:
            return
        cfg = resolve(overrides)
        run_dir = OUT / f"trial_{index:03d}"
        stop = {"images": 0}
        n_train = min(len(data.train), cfg.train_subset or len(data.train))
        per_epoch = (n_train // cfg.batch_size) * cfg.batch_size

        def report(row, last, stop=stop):
            stop["images"] += per_epoch
            if time.time() - t_start > DEADLINE_S:  # out of time: stop after this epoch, keep best.pt
                raise TimeoutError
        t0 = time.time()
        try:
            result = fit(cfg, data, run_dir=run_dir, report=report, log=lambda _m: None)
            epochs = result.epochs_done
        except TimeoutError:
            epochs = -1
        seconds = time.time() - t0
        ev = evaluate(run_dir, data, tta=True, device=cfg.device).report
        from fer_core.checkpoint import load_checkpoint

        val = load_checkpoint(ev["checkpoint"])["best_metric"]  # chosen on validation
        done.put({"trial": index, "proc": rank, "config": overrides, "epochs_done": epochs,
                  "train_images": stop["images"], "seconds": seconds, cfg.metric: val, "test_accuracy": ev["accuracy"],
                  "test_accuracy_tta": ev.get("accuracy_tta"), "split": ev["split"], "n": ev["n"]})


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    todo, done = ctx.Queue(), ctx.Queue()
    for i, c in enumerate(configs(PROCS if SMOKE else 64)):
        todo.put((i, c))
    t_start = time.time()
    procs = [ctx.Process(target=worker, args=(r, todo, done, t_start)) for r in range(PROCS)]
    for p in procs:
        p.start()
    results = []
    while any(p.is_alive() for p in procs) or not done.empty():
        try:
            results.append(done.get(timeout=1))
            r = results[-1]
            print(f"trial {r['trial']:3d} (proc {r['proc']}): {r['epochs_done']} epochs, "
                  f"{r['train_images'] / r['seconds']:.0f} img/s, {r['split']} acc {r['test_accuracy']:.4f}"
                  f" (tta {r['test_accuracy_tta']:.4f})", flush=True)
        except queue.Empty:
            pass
    for p in procs:
        p.join()
    wall = time.time() - t_start
    best = max(results, key=lambda r: r["val_macro_f1"], default=None)  # chosen on validation, as the search does
    summary = {"data": DATA, "procs": PROCS, "model": MODEL, "epochs": EPOCHS, "wall_s": round(wall, 1),
               "trials": len(results), "aggregate_train_img_s": round(sum(r["train_images"] for r in results) / wall),
               "best": best, "results": results, "smoke": SMOKE}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2, default=str))
    if not results or any(p.exitcode for p in procs):
        raise SystemExit("some worker failed; see the output above")
PY
"${PYTHON:-python}" "$PYFILE"
