#!/usr/bin/env bash
# One more round of training on the planner's own episodes, on top of the shipped model (after
# recipes/more_data.sh), and ship the result if it plans better on the selection episodes.
#   bash recipes/planner_round.sh pusht
# The recipe's TOP_ROUND is "episodes:seed:repeat:iterations": the shipped model (copied once to
# runs/<env>-top/start, so a rerun starts from the same weights) plans that many tasks of the
# goal kinds GOAL_KINDS, drawn with that seed from the data's training split, with its shipped
# planning at CEM budget 300 x iterations (10: three times faster than 300 x 30, and as good on
# the selection episodes), each for the full 50-step budget (`lewm collect-planned`, into
# data/<env>-planned-top.h5); then `lewm train --init-from` it for FT_STEPS steps on the data,
# recipes/more_data.sh's episodes (data/<env>-more.h5, once each) and the planner episodes (each
# clip `repeat` times: 400 Push-T episodes x 50 make about a quarter of the clips at 50). Both
# models are evaluated with the shipped planning on the selection episodes (eval seeds 1 and 2);
# a strictly better new model is evaluated on the reported episodes (seed 0), gets its decoder,
# probes and surprise, and is shipped with its training history. Each step is skipped when its
# output is there already. Push-T: 32 minutes of planning and 21 of training on this 2-core
# machine (Intel; 2.4-2.7 s per 300 x 30 plan), 15 of selection.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV="${1:?usage: recipes/planner_round.sh pusht}"
source recipes/recipes.sh
recipe "$ENV"
if [ -z "$TOP_ROUND" ]; then
  echo "error: the $ENV recipe has no planner round on top (TOP_ROUND in recipes/recipes.sh)" >&2
  exit 2
fi
IFS=: read -r EPS SEED REPEAT ITERATIONS <<< "$TOP_ROUND"
DATA="data/$ENV.h5"
MORE="data/$ENV-more.h5"
PLANNED="data/$ENV-planned-top.h5"
DIR="runs/$ENV-top"
for F in "$DATA" "$MORE"; do
  [ -f "$F" ] || { echo "error: $F is missing; run recipes/more_data.sh $ENV first" >&2; exit 2; }
done
start_from_shipped "$DIR"  # sets PLAN
KINDS=(); for K in $GOAL_KINDS; do KINDS+=(--goal-kind "$K"); done
[ -f "$PLANNED" ] || $LEWM collect-planned --checkpoint "$DIR/start" --data "$DATA" \
  --episodes "$EPS" --seed "$SEED" --budget 50 "${KINDS[@]}" "${PLAN[@]}" \
  --samples 300 --iterations "$ITERATIONS" --compile --quiet --out "$PLANNED" --json
RUN="$DIR/round"
[ -f "$RUN/train_summary.json" ] || $LEWM train --data "$DATA" --extra-data "$MORE" \
  --extra-data "$PLANNED" --extra-repeat 1 "$REPEAT" --preset lab --init-from "$DIR/start" \
  --max-steps "$FT_STEPS" --checkpoint-every "$CKPT" --out "$RUN" --quiet --json
ship_if_better "$DIR" "$RUN" round "after the planner round" "${PLAN[@]}"
