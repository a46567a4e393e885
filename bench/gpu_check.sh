#!/usr/bin/env bash
# One prepared command for a GPU machine (torch, torchvision, pandas, pyarrow, opencv; no Ray needed):
# prints the training-throughput table, then trains the default ResNet-18 recipe on FER2013 to its end
# and evaluates it on private_test (plain and flip-TTA). Under 8 minutes on an H100.
#
#   bash bench/gpu_check.sh --data data_local/fer2013.parquet      # on the GPU machine
#   bash bench/gpu_check.sh --smoke [--data PARQUET]                # same steps on CPU, tiny sizes (a test runs this)
#
# Results land in $OUT (or bench/results/) as throughput.json, train.log and the run folder's eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=""
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "usage: bench/gpu_check.sh --data PARQUET [--smoke]" >&2; exit 2 ;;
  esac
done
source bench/_gpu_env.sh && gpu_env gpu_check
PY="${PYTHON:-python}"

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  TABLE_ARGS=(--models cnn_small,resnet18 --batch-sizes 8 --steps 3 --warmup 1 --device cpu --eval-steps 1
              --set eval_batch_size=32)
  TRAIN_SETS=(--set epochs=1 --set train_subset=64 --set batch_size=16 --set eval_batch_size=64)
else
  [ -n "$DATA" ] || { echo "bench/gpu_check.sh: pass --data path/to/fer2013.parquet (or --smoke)" >&2; exit 2; }
  DEVICE=cuda
  TABLE_ARGS=(--models resnet18 --batch-sizes 64,512 --steps 200 --warmup 30 --device cuda --baseline-workers 8)
  TRAIN_SETS=()
fi

echo "== machine"; date -u; "$PY" - <<'PY'
import torch, platform
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor())
PY
echo "== training throughput (img/s)"
"$PY" bench/train_throughput.py "${TABLE_ARGS[@]}" --out "$OUT_DIR/throughput.json"
if [ "$SMOKE" = 0 ]; then
  echo "== the same at batch 64 with torch.compile (launch overhead removed)"
  "$PY" bench/train_throughput.py --models resnet18 --batch-sizes 64 --steps 200 --warmup 30 --device cuda \
    --skip baseline --set compile=true --out "$OUT_DIR/throughput_compiled.json" || echo "torch.compile row failed"
fi
if [ "$SMOKE" = 1 ] && [ -z "$DATA" ]; then
  # a small synthetic Parquet in FER2013's layout: ResNet-18 scores its test split in seconds on 2 cores
  DATA="$OUT_DIR/smoke.parquet"
  "$PY" - "$DATA" <<'PY'
import sys
import pandas as pd
from fer_core.synthetic import make_demo_data
d = make_demo_data(n_train=64, n_val=64, n_test=64)
rows = [(int(y), " ".join(map(str, img.ravel())), usage)
        for split, usage in ((d.train, "Training"), (d.val, "PublicTest"), (d.test, "PrivateTest"))
        for img, y in zip(split.images, split.labels)]
pd.DataFrame(rows, columns=["emotion", "pixels", "usage"]).to_parquet(sys.argv[1])
PY
fi
echo "== default recipe on $DATA"
rm -rf "$OUT_DIR/run"
start=$(date +%s)
"$PY" -m jobs.cli train --data "$DATA" --device "$DEVICE" "${TRAIN_SETS[@]}" --project "$OUT_DIR" --name run \
  | tee "$OUT_DIR/train.log"
echo "== wall seconds for the training command: $(( $(date +%s) - start ))"
cp "$OUT_DIR/run/eval.json" "$OUT_DIR/eval.json"
echo "== done: $OUT_DIR"
