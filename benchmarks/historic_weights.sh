#!/usr/bin/env bash
# Print the path of a superseded weights file, restored from git history: weights/ keeps only the shipped files
# (weights/manifest.json); older ones (invdn-blind-v2, invdn-lc-v1..v7, danet-r-blind-v3..v7) were removed from
# the tree after commit 41c08a5 and are written to runs/historic/ on first use.
# Usage, from the repository root of a full (not shallow) clone:
#   INIT=$(bash benchmarks/historic_weights.sh invdn-blind-v2.safetensors)
set -euo pipefail
name=${1:?name of a weights file, e.g. invdn-blind-v2.safetensors}
case $name in */*|.*) echo "historic_weights.sh: a file name, not a path: $name" >&2; exit 2 ;; esac
if [ -f "weights/$name" ]; then echo "weights/$name"; exit 0; fi
out=runs/historic/$name
if [ ! -f "$out" ]; then
  mkdir -p runs/historic
  git show "41c08a5:weights/$name" > "$out.tmp" || { rm -f "$out.tmp"; exit 1; }
  mv "$out.tmp" "$out"
fi
echo "$out"
