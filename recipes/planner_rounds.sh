#!/usr/bin/env bash
# Train a shipped model further on its own planner's episodes, round by round (DAgger's idea for
# a world model: the planner visits states the data policy never does, and the model errs most
# there), then ship the round that plans best on the selection episodes.
#   bash recipes/planner_rounds.sh pusht
# Starts from assets/models/<env> as recipes/train_assets.sh shipped it (copied once to
# runs/<env>-rounds/round0, so a rerun starts from the same weights). The recipe's ROUNDS lists
# "episodes:seed:repeat" per round; round k:
#   1. `lewm collect-planned`: round k-1's model plans (its shipped CEM settings) EPISODES tasks
#      of the goal kinds GOAL_KINDS drawn with that seed from the data's training split, each
#      for the full 50-step budget;
#   2. `lewm train --init-from` round k-1: FT_STEPS steps on the data plus every round's planner
#      episodes so far, each planner clip REPEAT times as often as a data clip;
#   3. `lewm eval` on the selection episodes (eval seeds 1 and 2, 100 in all).
# The round with the most selection successes wins (round 0 included; a tie keeps the earlier).
# It is evaluated on the reported episodes (seed 0) with its planning and with the published
# planner (both samplings), gets its decoder, probes and surprise, and is shipped with its
# training history (`lewm ship` records every stage). Each step is skipped when its output is
# there already, so an interrupted run resumes. Wall time on this 2-core machine for Push-T's
# three rounds: about 2 hours 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV="${1:?usage: recipes/planner_rounds.sh pusht}"
source recipes/recipes.sh
recipe "$ENV"
if [ -z "$ROUNDS" ]; then
  echo "error: the $ENV recipe has no planner rounds (ROUNDS in recipes/recipes.sh)" >&2; exit 2
fi
DATA="data/$ENV.h5"
DIR="runs/$ENV-rounds"
[ -f "$DATA" ] || { echo "error: $DATA is missing; run recipes/train_assets.sh $ENV first" >&2; exit 2; }
mkdir -p "$DIR"
if [ ! -d "$DIR/round0" ]; then
  if grep -q '"lineage"' "assets/models/$ENV/config.json"; then
    echo "error: assets/models/$ENV was trained in stages already (its config.json has a" \
      "lineage): ship the base model with recipes/train_assets.sh $ENV first, or put the base" \
      "weights in $DIR/round0" >&2
    exit 2
  fi
  cp -r "assets/models/$ENV" "$DIR/round0"
fi
# The shipped planning of round 0, passed as flags: a run folder records none.
FLAGS=$(planning_flags "$DIR/round0")  # stops here (set -e) when it records none
read -r -a PLAN <<< "$FLAGS"
KINDS=(); for K in $GOAL_KINDS; do KINDS+=(--goal-kind "$K"); done

SCORES=("$(select_score "$DIR/round0" "$DIR/select-round0" "${PLAN[@]}")")
echo "round 0: $(( SCORES[0] )) of 100 selection episodes"
PREV="$DIR/round0"; EXTRA=(); K=0
for ROUND in $ROUNDS; do
  K=$(( K + 1 ))
  IFS=: read -r EPS SEED REPEAT <<< "$ROUND"
  PLANNED="data/$ENV-planned-r$K.h5"
  [ -f "$PLANNED" ] || $LEWM collect-planned --checkpoint "$PREV" --data "$DATA" --episodes "$EPS" \
    --seed "$SEED" --budget 50 "${KINDS[@]}" "${PLAN[@]}" --compile --quiet --out "$PLANNED" --json
  EXTRA+=(--extra-data "$PLANNED")
  RUN="$DIR/round$K"
  [ -f "$RUN/train_summary.json" ] || $LEWM train --data "$DATA" "${EXTRA[@]}" \
    --extra-repeat "$REPEAT" --preset lab --init-from "$PREV" --max-steps "$FT_STEPS" \
    --checkpoint-every "$CKPT" --out "$RUN" --quiet --json
  SCORES+=("$(select_score "$RUN" "$DIR/select-round$K" "${PLAN[@]}")")
  echo "round $K: ${SCORES[$K]} of 100 selection episodes"
  PREV="$RUN"
done
BEST=0
for I in "${!SCORES[@]}"; do [ "${SCORES[$I]}" -gt "${SCORES[$BEST]}" ] && BEST=$I; done
echo "selection successes per round: ${SCORES[*]}; shipping round $BEST"
[ "$BEST" -gt 0 ] || { echo "round 0 (the shipped model) stays"; exit 0; }
report_and_ship "$DIR/round$BEST" "${PLAN[@]}"
