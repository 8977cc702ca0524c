#!/usr/bin/env bash
# The gate that chooses between candidate weights of one model before the eval suite runs on the shipped ones:
#   bash benchmarks/gate.sh MODEL FILE TAG OUTDIR [DATASETS [TEXTURE]]
# MODEL a registry name (invdn, danet-r), FILE its weights, TAG a short name; writes OUTDIR/TAG-{cbsd,cc15,kodakgrey,
# texture}.json (invdn eval --json) and prints one line of the models' PSNRs. It reads CBSD68's first 10 images
# (sigma 25 and 50) and all CC15 pairs, both test sets (the model card says so), and two sets no floor is measured
# on: Kodak24_crop500 made grey and the grey texture set of benchmarks/texture_set.py (sigma 25), written to TEXTURE
# (default runs/texture) when missing. It never reads Set12 or BSD68. All noisy inputs 8-bit; one thread each.
set -euo pipefail
MODEL=$1 FILE=$2 TAG=$3 OUT=$4
DATA=${5:-../shared/datasets}
TEXTURE=${6:-runs/texture}
PY=${PY:-python}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
[ -f "$TEXTURE/brick.png" ] || "$PY" benchmarks/texture_set.py "$TEXTURE" > /dev/null
E=("$PY" -m invdn eval --clip8 --no-bm3d --threads 1 --json --quiet --model "$MODEL" --weights "$MODEL=$FILE")
"${E[@]}" --dataset "$DATA/CBSD68" --limit 10 --sigma 25,50 > "$OUT/$TAG-cbsd.json"
"${E[@]}" --pairs "$DATA/CC15" > "$OUT/$TAG-cc15.json"
"${E[@]}" --dataset "$DATA/Kodak24_crop500" --grey on --sigma 25 > "$OUT/$TAG-kodakgrey.json"
"${E[@]}" --dataset "$TEXTURE" --sigma 25 > "$OUT/$TAG-texture.json"
"$PY" - "$OUT" "$TAG" <<'PY'
import json
import sys

out, tag = sys.argv[1:]
cells = []
for part in ("cbsd", "cc15", "kodakgrey", "texture"):
    rows = json.load(open(f"{out}/{tag}-{part}.json"))["rows"]
    cells += [f"{part} {r['condition']} {r['psnr']:.3f}" for r in rows if r["kind"] == "model"]
print(tag, " | ".join(cells))
PY
