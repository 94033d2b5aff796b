#!/usr/bin/env bash
# The Push-T model of the reference task (pusht-v1, docs/pusht.md), end to end on the paper's
# data and protocol:
#   bash recipes/pusht_v1.sh
# 1. Data: the expert's episodes (`lewm collect --policy expert`: pushes from gym-pusht's reset
#    ranges to the fixed goal pose, each episode ending at the goal) into data/pusht-v1.h5, and a
#    held-out file of the same kind with another seed (the recipe's TEST_DATA) into
#    data/pusht-v1-test.h5.
# 2. Train the `lab` preset (TRAIN_STEPS steps) into runs/pusht-v1-lab.
# 3. Plan with the published planner (independent sampling, the last latent's distance, all 5
#    blocks executed, one observed frame) on the paper's protocol (PROTOCOL: tasks drawn from the
#    whole file as the authors draw them, the start not counted): 50 tasks of seed 0 from the
#    training file (the paper's figure) and from the held-out file (tasks no training frame
#    showed). The random policy runs on the same tasks (`lewm eval` reports both).
# 4. Decoder, probes (agent, block, angle, with the rest-of-state floor), surprise, and ship to
#    assets/models/pusht-v1 with its held-out sample. One planner is evaluated, so nothing is
#    chosen on the reported episodes.
# Each step is skipped when its output is there already. Wall times: the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=pusht-v1
source recipes/recipes.sh
recipe "$ENV"
DATA="data/$ENV.h5"
TEST="data/$ENV-test.h5"
RUN="runs/$ENV-lab"
IFS=: read -r TEST_EPISODES TEST_SEED <<< "$TEST_DATA"
read -r -a PROTO <<< "$PROTOCOL"
PUBLISHED=(--sampling independent --context 1 --objective last --receding-horizon 5)
mkdir -p data runs
[ -f "$DATA" ] || $LEWM collect --env "$ENV" --policy "$POLICY" --episodes "$EPISODES" \
  --steps "$STEPS" --resolution "$RESOLUTION" --seed "$SEED" --workers 2 --out "$DATA" --quiet
[ -f "$TEST" ] || $LEWM collect --env "$ENV" --policy "$POLICY" --episodes "$TEST_EPISODES" \
  --steps "$STEPS" --resolution "$RESOLUTION" --seed "$TEST_SEED" --workers 2 --out "$TEST" --quiet
if [ ! -f "$RUN/train_summary.json" ]; then
  if [ -f "$RUN/trainer_state.safetensors" ]; then
    $LEWM train --out "$RUN" --resume --max-steps "$TRAIN_STEPS" --quiet --json
  else
    $LEWM train --data "$DATA" --preset lab --out "$RUN" --max-steps "$TRAIN_STEPS" \
      --checkpoint-every "$CKPT" --quiet --json
  fi
fi
EVALS=()
for WHICH in train test; do
  FILE="$DATA"; [ "$WHICH" = train ] || FILE="$TEST"
  OUT="$RUN/eval-published-$WHICH.json"
  [ -s "$OUT" ] || $LEWM eval --checkpoint "$RUN" --data "$FILE" "${PROTO[@]}" --episodes 50 \
    --seed 0 "${PUBLISHED[@]}" --compile --videos 3 --video-dir "$RUN/videos-$WHICH" --quiet \
    --json > "$OUT"
  eval_summary "$OUT"
  EVALS+=(--eval "$OUT")
done
[ -f "$RUN/decoder.safetensors" ] || $LEWM decoder-train --checkpoint "$RUN" --steps 1500 --quiet --json
[ -s "$RUN/probe.out" ] || $LEWM probe --checkpoint "$RUN" --quiet --json > "$RUN/probe.out"
[ -s "$RUN/surprise.out" ] || $LEWM surprise --checkpoint "$RUN" --episodes 20 --seed 0 --quiet \
  --json > "$RUN/surprise.out"
$LEWM ship --run "$RUN" --out "assets/models/$ENV" "${EVALS[@]}" "${PUBLISHED[@]}" \
  --probe "$RUN/probe.out" --surprise "$RUN/surprise.out"
[ -f "assets/models/$ENV/sample.h5" ] || $LEWM sample --checkpoint "assets/models/$ENV" \
  --episodes "$SAMPLE_EPISODES" --steps "$STEPS" --policy "$POLICY" --quiet
