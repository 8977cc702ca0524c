#!/usr/bin/env bash
# Does bf16 autocast training hold accuracy? Fine-tune the shipped InvDN for 60 steps twice, float32 and
# `--bf16`, on the same batches and latent draws, then score both on the first 10 CBSD68 images at sigma 25.
# Usage: bash benchmarks/bf16_training_check.sh [DATASETS_DIR] [RUNS_DIR]
set -euo pipefail
D=${1:-../shared/datasets}; RUNS=${2:-runs}; INVDN=${INVDN:-invdn}
V2=$(bash benchmarks/historic_weights.sh invdn-blind-v2.safetensors)  # superseded: from git history
for v in fp32 bf16; do
  flag=""; [ $v = bf16 ] && flag=--bf16
  "$INVDN" train --model invdn --init-from "$V2" --data "$D/CBSD432" --data "$D/Train400" \
    --batch 8 --patch 96 --lr 5e-5 --total-steps 60 --max-steps 60 --seed 3 --threads 1 --name "bf16-check-$v" \
    --runs-dir "$RUNS" --log-every 10 --checkpoint-every 1h $flag
done
for v in fp32 bf16; do
  echo "== $v: training loss every 10 steps"
  grep '"loss"' "$RUNS/bf16-check-$v/metrics.jsonl" | cut -d, -f1,3
  "$INVDN" eval --dataset "$D/CBSD68" --sigma 25 --limit 10 --no-bm3d --model invdn --threads 1 --quiet \
    --weights "invdn=$RUNS/bf16-check-$v/checkpoint/main.safetensors"
done
