#!/usr/bin/env bash
# Reproduce a shipped model: collect data, train the lab preset, evaluate planning with both CEM
# samplings (50 episodes, seed 0), and ship config + weights + model card to assets/models/<env>/.
#   bash bench/train_assets.sh tworoom|pusht|reacher|cube
# SAMPLINGS="block" limits the evaluation to one CEM sampling scheme.
# Wall times on this 2-core machine are in each model card.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=egl
LEWM=".venv/bin/lewm"
ENV="${1:?usage: bench/train_assets.sh tworoom|pusht|reacher|cube}"
case "$ENV" in
  tworoom) EPISODES=1000; STEPS=100; TRAIN_STEPS=3000; SEED=1 ;;
  pusht)   EPISODES=1000; STEPS=200; TRAIN_STEPS=15000; SEED=1; CKPT=1500 ;;
  reacher) EPISODES=1000; STEPS=200; TRAIN_STEPS=3000; SEED=1 ;;
  cube)    EPISODES=1000; STEPS=200; TRAIN_STEPS=3000; SEED=1 ;;
  *) echo "error: unknown env '$ENV'; choose tworoom, pusht, reacher or cube" >&2; exit 2 ;;
esac
DATA="data/$ENV.h5"
RUN="runs/$ENV-lab"
mkdir -p data runs
[ -f "$DATA" ] || $LEWM collect --env "$ENV" --episodes "$EPISODES" --steps "$STEPS" \
  --resolution 64 --seed "$SEED" --workers 2 --out "$DATA" --quiet
if [ -f "$RUN/trainer_state.safetensors" ]; then
  $LEWM train --out "$RUN" --resume --max-steps "$TRAIN_STEPS" --quiet --json
else
  $LEWM train --data "$DATA" --preset lab --out "$RUN" --max-steps "$TRAIN_STEPS" \
    --checkpoint-every "${CKPT:-500}" --quiet --json
fi
for SAMPLING in ${SAMPLINGS:-block independent}; do
  $LEWM eval --checkpoint "$RUN" --data "$DATA" --episodes 50 --seed 0 --sampling "$SAMPLING" \
    --videos 3 --video-dir "$RUN/videos-$SAMPLING" --quiet --json > "$RUN/eval-$SAMPLING.json"
  tail -n 1 "$RUN/eval-$SAMPLING.json"
done
EVALS=()
for SAMPLING in ${SAMPLINGS:-block independent}; do EVALS+=(--eval "$RUN/eval-$SAMPLING.json"); done
$LEWM ship --run "$RUN" --out "assets/models/$ENV" "${EVALS[@]}"
