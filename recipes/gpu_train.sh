#!/usr/bin/env bash
# Train a lab-preset model on a borrowed GPU box (the recipe of the H100 Push-T run in
# docs/notebook/2026-11-27-pusht-h100-batch-256.md): collect 10,000 episodes there (data seed
# 2, disjoint from the seed-1 episodes the shipped models are evaluated on), preload the pixels
# into RAM, train at batch 256, and pack the run folder (weights, config, metrics; not the
# optimiser state) in pieces of at most 15 MB.
#   bash recipes/gpu_train.sh ENV OUT_DIR [EPISODES] [STEPS] [WARMUP_FRAC]
# Runs with the box's own python3 (PYTHON=...) with the repo root on PYTHONPATH. Reassemble the
# run with `cat OUT_DIR/ENV-gpu.tar.gz.* | tar -xz` and evaluate, probe and ship it on any machine.
# On an H100 (16 cores): collection 102 s, loading 25 GB of pixels 171 s (read twice then, once
# now), 4,981 steps 152 s;
# one checkpoint, at the end, as in that run.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV="${1:?usage: recipes/gpu_train.sh ENV OUT_DIR [EPISODES] [STEPS] [WARMUP_FRAC]}"
OUT_DIR="${2:?output folder}"
source recipes/recipes.sh
recipe "$ENV"
STEPS_PER_EP="$STEPS"  # the shipped recipe's episode length; the rest comes from the arguments
EPISODES="${3:-10000}"
STEPS="${4:-4981}"
WARMUP="${5:-0.1807}"  # 900 of 4,981 steps
PY="${PYTHON:-python3}"
WORK="${WORK:-/tmp/gpu-train}"
START=$(date +%s)
mkdir -p "$WORK" "$OUT_DIR"
CORES=$(nproc)
DATA="$WORK/$ENV.h5"
[ -f "$DATA" ] || $PY -m lewm_core collect --env "$ENV" --episodes "$EPISODES" \
  --steps "$STEPS_PER_EP" --resolution "$RESOLUTION" --seed 2 --workers "$(( CORES > 2 ? CORES - 1 : 1 ))" \
  --out "$DATA" --quiet
echo "collected at $(( $(date +%s) - START )) s"
RUN="$WORK/$ENV-gpu"
rm -rf "$RUN"
$PY -m lewm_core train --data "$DATA" --preset lab --out "$RUN" --max-steps "$STEPS" \
  --batch-size 256 --warmup-frac "$WARMUP" --preload-max-gb 64 \
  --loader-workers "$(( CORES > 6 ? CORES - 6 : 1 ))" --checkpoint-every 100000 --quiet --json \
  | tee "$OUT_DIR/train.out"
rm -f "$RUN"/trainer_state*.safetensors
tar -C "$WORK" -cz "$ENV-gpu" | split -b 15M -d - "$OUT_DIR/$ENV-gpu.tar.gz."
echo "done at $(( $(date +%s) - START )) s"
