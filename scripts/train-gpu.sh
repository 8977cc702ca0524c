#!/usr/bin/env bash
# One-shot GPU training of InvDN and DANet-R on the same data, noise, batch, patch and step budget.
# Usage: bash scripts/train-gpu.sh DEVICE STEPS BUDGET_S WORKERS OUTDIR  (data under $DATA: CBSD432/, Train400/, val/)
# On a lent GPU machine: copy the data into a git-ignored folder of the repo, carry it, and set DATA to it.
set -u
DATA=${DATA:-.gpu/data}
DEV=${1:-cuda}; STEPS=${2:-4000}; BUDGET=${3:-450}; WORKERS=${4:-6}; OUTDIR=${5:-$OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RUNS=/tmp/gpu-runs; rm -rf $RUNS; mkdir -p $RUNS $OUTDIR
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, safetensors, skimage, PIL, click, tqdm, matplotlib; print('torch', torch.__version__, torch.cuda.is_available())"
COMMON="--data $DATA/CBSD432 --data $DATA/Train400 --batch 16 --patch 128 --device $DEV --workers $WORKERS
  --val $DATA/val --val-limit 4 --val-every 500 --checkpoint-every 2m --log-every 50 --runs-dir $RUNS
  --max-steps $STEPS --total-steps $STEPS --time-budget $BUDGET --snapshot-every 250 --seed 0 --threads 4"
python3 -m invdn train --model invdn --name invdn $COMMON > $RUNS/invdn.log 2>&1 &
P1=$!
python3 -m invdn train --model danet --danet-mode l1 --name danet $COMMON > $RUNS/danet.log 2>&1 &
P2=$!
wait $P1; echo "invdn exit $?"; wait $P2; echo "danet exit $?"
tail -n 3 $RUNS/invdn.log $RUNS/danet.log
# InvDN's final step decides the DANet snapshot with the same pixels seen
INV_STEP=$(python3 -c "from safetensors import safe_open; print(safe_open('$RUNS/invdn/checkpoint/main.safetensors','pt').metadata()['step'])")
echo "invdn reached step $INV_STEP"
cp $RUNS/invdn/checkpoint/main.safetensors $OUTDIR/invdn-main.safetensors
SNAP=$(ls $RUNS/danet/snapshots/ | awk -F'[-.]' -v s=$INV_STEP '$2+0<=s' | tail -n1)
echo "danet snapshot $SNAP; danet last step file kept as danet-main"
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
tar -C $RUNS -czf $OUTDIR/logs.tgz --ignore-failed-read invdn.log danet.log invdn/metrics.jsonl danet/metrics.jsonl invdn/curves.png danet/curves.png invdn/config.json danet/config.json 2>&1
ls -la $OUTDIR
