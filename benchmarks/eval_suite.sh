#!/usr/bin/env bash
# Every quality table of benchmarks/RESULTS.md and weights/MODEL_CARD.md, with the shipped weights.
# Usage: bash benchmarks/eval_suite.sh [DATASETS_DIR] [OUTDIR] [PART...]
#   parts: cbsd68 cbsd68-clip8 kodak24 set12 bsd68 cc15 cc15-cbm3d (default: all, in this order)
# Each part writes OUTDIR/PART/{results.md,summary.json,per_image.csv,psnr_vs_params.png} and its wall time to
# OUTDIR/PART/time.txt. CBM3D takes about 40 s per megapixel per sigma on one core, so the colour sets use the
# first N images, as each table states. Runs on one thread (background training may share the machine).
set -euo pipefail
D=${1:-../shared/datasets}; OUT=${2:-benchmarks/eval}; shift $(( $# > 2 ? 2 : $# ))
PARTS=${*:-cbsd68 cbsd68-clip8 kodak24 set12 bsd68 cc15 cc15-cbm3d}
INVDN=${INVDN:-invdn}
run() {  # run PART ARGS...
  local part=$1; shift
  mkdir -p "$OUT/$part"
  local t0; t0=$(date +%s)
  "$INVDN" eval --threads 1 --quiet --out "$OUT/$part" "$@"
  echo "$(( $(date +%s) - t0 )) s: invdn eval $*" > "$OUT/$part/time.txt"
  cat "$OUT/$part/time.txt"
}
for part in $PARTS; do
  case $part in
    cbsd68) run cbsd68 --dataset "$D/CBSD68" --sigma 15,25,50 --limit 10 ;;
    cbsd68-clip8) run cbsd68-clip8 --dataset "$D/CBSD68" --sigma 25,50 --limit 10 --clip8 ;;
    kodak24) run kodak24 --dataset "$D/Kodak24" --sigma 15,25,50 --limit 6 ;;
    set12) run set12 --dataset "$D/Set12" --sigma 15,25,50 ;;
    bsd68) run bsd68 --dataset "$D/BSD68" --sigma 15,25,50 --limit 20 ;;
    cc15) run cc15 --pairs "$D/CC15" --no-bm3d ;;
    cc15-cbm3d) run cc15-cbm3d --pairs "$D/CC15" --model invdn --bm3d-sweep 5:30:2.5 ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
