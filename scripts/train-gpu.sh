#!/usr/bin/env bash
# One-shot GPU training of InvDN and DANet-R on the same data, noise, batch, patch and number of steps.
# For training one registry model in resumable pieces of <= 10 minutes (sharded checkpoints under 16 MiB, data and
# noise on the device, bf16, channels-last, optional torch.compile, auto batch), use scripts/train_gpu.py.
# On a lent GPU, scripts/gpu-prepare.py (data that fits the 64 MiB a call carries) and scripts/gpu-session.sh (one
# call, both models from the shipped weights) run it; this older script needs DATA/val/ as well and is kept for the
# side-by-side runs that made the v2 weights.
#
# Usage: bash scripts/train-gpu.sh DEVICE STEPS BUDGET_S WORKERS OUTDIR
#   STEPS: steps for both models, or "auto": time 40 InvDN steps first and size the run so that InvDN (the slower
#   one) finishes its cosine schedule inside BUDGET_S seconds; DANet-R then runs the same number of steps.
# Environment: DATA (folder with CBSD432/, Train400/, val/; default .gpu/data), BATCH (default 16), PATCH (128),
#   INIT_INVDN / INIT_DANET (weights files to continue from; default none = random init), SEED (0),
#   INVDN_LR (default: the model's own, 2e-4; lower it to continue from trained weights),
#   SSIM_WEIGHT (default 1, the v2 loss; 0 drops the SSIM term, which cost 0.5-1.0 dB PSNR in
#   benchmarks/ssim_loss_ab.sh, see weights/MODEL_CARD.md),
#   DANET_EXTRA (default 0): DANet-R runs this many steps more than InvDN, e.g. to start DANet-R from scratch while
#   InvDN continues from weights that already saw that many batches (equal training pixels in total).
# On a lent GPU machine: copy the data into a git-ignored folder of the repo, carry it, and set DATA to it.
# Results land in OUTDIR: invdn-main.safetensors, danet-partN.safetensors (DANet-R split below 14 MB per file),
# logs.tgz (logs, metrics.jsonl, curves, configs).
set -u
step_of() {  # the training step stored in a weights file's metadata
  python3 -c "from safetensors import safe_open; print(safe_open('$1', 'pt').metadata()['step'])"
}
DATA=${DATA:-.gpu/data}; BATCH=${BATCH:-16}; PATCH=${PATCH:-128}; SEED=${SEED:-0}
DANET_EXTRA=${DANET_EXTRA:-0}
DEV=${1:-cuda}; STEPS=${2:-4000}; BUDGET=${3:-450}; WORKERS=${4:-6}; OUTDIR=${5:-$OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RUNS=/tmp/gpu-runs; rm -rf $RUNS; mkdir -p $RUNS $OUTDIR
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, safetensors, skimage, PIL, click, tqdm, matplotlib; print('torch', torch.__version__, torch.cuda.is_available())"
INIT_I="${INIT_INVDN:+--init-from $INIT_INVDN} ${INVDN_LR:+--lr $INVDN_LR} --ssim-weight ${SSIM_WEIGHT:-1}"; INIT_D=${INIT_DANET:+--init-from $INIT_DANET}
DATAOPTS="--data $DATA/CBSD432 --data $DATA/Train400 --batch $BATCH --patch $PATCH --device $DEV --seed $SEED --threads 4"
T0=$(date +%s)
if [ "$STEPS" = auto ]; then
  # calibration: 40 InvDN steps alone; the rate over steps 20-40 sizes the run (x0.75 for sharing the GPU with DANet)
  python3 -m invdn train --model invdn --name calib $DATAOPTS $INIT_I --workers $WORKERS --runs-dir $RUNS \
    --max-steps 40 --total-steps 1000 --log-every 20 --checkpoint-every 1h > $RUNS/calib.log 2>&1
  STEPS=$(python3 - <<PY
import json
rows = [json.loads(x) for x in open("$RUNS/calib/metrics.jsonl") if '"loss"' in x]
dt = rows[-1]["time"] - rows[-2]["time"]
left = $BUDGET - ($(date +%s) - $T0)
print(max(100, int(0.75 * left * 20 / dt) // 50 * 50))
PY
)
  tail -n 4 $RUNS/calib.log
  echo "calibrated: $STEPS steps in the $((BUDGET - $(date +%s) + T0)) s left"
fi
LEFT=$((BUDGET - $(date +%s) + T0))
COMMON="$DATAOPTS --val $DATA/val --val-limit 4 --val-every 500 --checkpoint-every 2m --log-every 50
  --runs-dir $RUNS --time-budget $((LEFT + 20)) --snapshot-every 250 --workers $WORKERS"
DSTEPS=$((STEPS + DANET_EXTRA))
python3 -m invdn train --model invdn --name invdn $COMMON $INIT_I --max-steps $STEPS --total-steps $STEPS \
  > $RUNS/invdn.log 2>&1 &
P1=$!
python3 -m invdn train --model danet --danet-mode l1 --name danet $COMMON $INIT_D --max-steps $DSTEPS \
  --total-steps $DSTEPS > $RUNS/danet.log 2>&1 &
P2=$!
wait $P1; echo "invdn exit $?"; wait $P2; echo "danet exit $?"
tail -n 3 $RUNS/invdn.log $RUNS/danet.log
# InvDN's final step decides the DANet snapshot with the same pixels seen
INV_STEP=$(step_of $RUNS/invdn/checkpoint/main.safetensors)
echo "invdn reached step $INV_STEP of $STEPS"
cp $RUNS/invdn/checkpoint/main.safetensors $OUTDIR/invdn-main.safetensors
MATCH=$((INV_STEP + DANET_EXTRA))
SNAP=$(ls $RUNS/danet/snapshots/ | awk -F'[-.]' -v s=$MATCH '$2+0<=s' | tail -n1)
DANET_STEP=$(step_of $RUNS/danet/checkpoint/main.safetensors)
[ "$DANET_STEP" = "$MATCH" ] && SNAP=""  # both reached the same step: the final checkpoint is the match
echo "danet reached step $DANET_STEP (match: $MATCH); shipped from ${SNAP:-its final checkpoint}"
python3 - <<PY
from safetensors.torch import load_file, save_file
from safetensors import safe_open
import os
src = "$RUNS/danet/snapshots/$SNAP" if "$SNAP" else "$RUNS/danet/checkpoint/main.safetensors"
with safe_open(src, "pt") as f: meta = f.metadata()
sd = load_file(src)
parts, cur, size = [], {}, 0
for k in sorted(sd):
    n = sd[k].numel() * sd[k].element_size()
    if cur and size + n > 14_000_000:
        parts.append(cur); cur, size = {}, 0
    cur[k] = sd[k]; size += n
parts.append(cur)
for i, part in enumerate(parts, 1):
    save_file(part, f"$OUTDIR/danet-part{i}.safetensors", metadata=meta)
print("danet from", src, "parts", len(parts), [os.path.getsize(f"$OUTDIR/danet-part{i}.safetensors") for i in range(1, len(parts) + 1)])
PY
tar -C $RUNS -czf $OUTDIR/logs.tgz --ignore-failed-read calib.log invdn.log danet.log calib/metrics.jsonl \
  invdn/metrics.jsonl danet/metrics.jsonl invdn/curves.png danet/curves.png invdn/config.json danet/config.json 2>&1
ls -la $OUTDIR
