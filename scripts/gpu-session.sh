#!/usr/bin/env bash
# One call of a lent GPU: InvDN-LC, then DANet-R, each trained alone for MINUTES by scripts/train_gpu.py (the issue's
# per-model rates), starting from the shipped weights, or resuming its run under RUNS when the machine is still warm.
# Each model's weights/ folder (shards < 16 MiB) is copied to OUT/<model>/, and every log (console and log.jsonl)
# into OUT/logs.tgz: 7 files for both models, inside the tool's limit of 8 files of 16 MiB.
#
# Prepare here, after the last commit before the call (the weights travel with the working tree, 64 MiB in all):
#   python scripts/gpu-prepare.py     # .gpu/data/: Train400 whole, the CBSD432 images that fit (about half of
#                                     # them beside today's 38.6 MiB tree), evenly spaced; it prints what it took
# The call (device tool: carry [".gpu"], timeout_s 600):
#   bash scripts/gpu-session.sh
# Back here, for each model (DANet-R ships in float16), then gate it (benchmarks/gate.sh):
#   python scripts/train_gpu.py --export FILES_AT/invdn/weights --out runs/gpu-invdn.safetensors
#   python scripts/train_gpu.py --export FILES_AT/danet-r/weights --out runs/gpu-danet-r.safetensors --dtype float16
#
# Environment (defaults in brackets): MINUTES per model [4], MODELS: invdn, danet-r or both ["invdn danet-r"] (a third
#   model would overrun the 8 files that come back), DATA [.gpu/data],
#   RUNS [runs/gpu: git-ignored and not carried, so kept between calls while the machine stays warm], OUT [$OUT],
#   DEVICE [cuda], TOTAL_STEPS: cosine length of each run [8000],
#   LR_INVDN [1e-4], LR_DANET [5e-5] (lower than from scratch: the runs continue trained weights),
#   INIT_INVDN / INIT_DANET: weights files to start from [the shipped ones], EXTRA: more train_gpu.py options
#   (e.g. "--compile", or "--steps 1 --batch 2 --patch 32" for a smoke run on a CPU).
# Exit status: non-zero if any model's piece failed (the others still run and are copied).
set -uo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-4}; MODELS=${MODELS:-"invdn danet-r"}; DATA=${DATA:-.gpu/data}; RUNS=${RUNS:-runs/gpu}
OUT=${OUT:?set OUT to the folder that receives the weights and logs}; DEVICE=${DEVICE:-cuda}
TOTAL_STEPS=${TOTAL_STEPS:-8000}; EXTRA=${EXTRA:-}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
shipped() { $PY -c "import sys; sys.path.insert(0, '.'); from invdn.models.weights import shipped_path; print(shipped_path('$1'))"; }
failed=0
for model in $MODELS; do
  run=$RUNS/$model
  case $model in
    invdn) lr=${LR_INVDN:-1e-4}; init=${INIT_INVDN:-} ;;
    danet-r) lr=${LR_DANET:-5e-5}; init=${INIT_DANET:-} ;;
    *) echo "== $model: not trained here (MODELS takes invdn and danet-r)"; failed=1; continue ;;
  esac
  start=(); how="resuming $run (its saved lr and schedule win)"
  if [ ! -f "$run/checkpoint/index.json" ]; then  # a new run: from the shipped (or given) weights
    init=${init:-$(shipped "$model")}
    if [ -z "$init" ] || [ ! -f "$init" ]; then
      echo "== $model: FAILED: no weights file to start from (${init:-the shipped one did not load})"
      failed=1; continue
    fi
    start=(--init-from "$init"); how="new run from $init, lr $lr over $TOTAL_STEPS steps"
  fi
  mkdir -p "$OUT/$model" "$run"
  echo "== $model: $how, $MINUTES min"
  # shellcheck disable=SC2086  # EXTRA is a list of options
  if ! $PY scripts/train_gpu.py --model "$model" --data "$DATA/CBSD432" --data "$DATA/Train400" --run "$run" \
      --device "$DEVICE" --minutes "$MINUTES" --total-steps "$TOTAL_STEPS" --lr "$lr" "${start[@]}" $EXTRA \
      2>&1 | tee "$run/console.log"; then
    echo "== $model: FAILED (its console log is in $OUT/logs.tgz)"
    failed=1
  fi
  if [ -d "$run/weights" ]; then cp -r "$run/weights" "$OUT/$model/"; fi
done
logs=()
for model in $MODELS; do
  for f in console.log log.jsonl; do [ -f "$RUNS/$model/$f" ] && logs+=("$model/$f"); done
done
if [ ${#logs[@]} -gt 0 ]; then tar -C "$RUNS" -czf "$OUT/logs.tgz" "${logs[@]}"; fi
ls -laR "$OUT"
exit $failed
