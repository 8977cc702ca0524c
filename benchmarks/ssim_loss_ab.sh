#!/usr/bin/env bash
# Does the SSIM term of InvDN's backward loss cost PSNR? Fine-tune the shipped InvDN for 410 steps twice, with the
# default loss (--ssim-weight 1) and without SSIM (--ssim-weight 0), on the same batches and latent draws, then
# score both and the starting weights on the first 8 Kodak24 and CBSD68 images at sigma 25 and 50.
# Usage: bash benchmarks/ssim_loss_ab.sh [DATASETS_DIR] [RUNS_DIR]     (about 25 minutes on 2 cores)
set -euo pipefail
D=${1:-../shared/datasets}; RUNS=${2:-runs}; INVDN=${INVDN:-invdn}
V2=$(bash benchmarks/historic_weights.sh invdn-blind-v2.safetensors)  # superseded: from git history
for w in 1.0 0.0; do
  "$INVDN" train --model invdn --init-from "$V2" --data "$D/CBSD432" --data "$D/Train400" \
    --batch 8 --lr 1e-4 --total-steps 4000 --max-steps 410 --bf16 --seed 5 --ssim-weight "$w" --name "ab-ssim-$w" \
    --runs-dir "$RUNS" --log-every 10 --checkpoint-every 1h
done
for weights in "$V2" "$RUNS/ab-ssim-1.0/checkpoint/main.safetensors" \
  "$RUNS/ab-ssim-0.0/checkpoint/main.safetensors"; do
  echo "== $weights"
  "$INVDN" eval --model invdn --weights "invdn=$weights" --dataset "$D/Kodak24" --dataset "$D/CBSD68" --limit 8 \
    --sigma 25,50 --no-bm3d --quiet
done
