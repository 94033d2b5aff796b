#!/usr/bin/env bash
# Train the shipped model further on many more episodes of its env's data policy, and ship the
# result if it plans better on the selection episodes.
#   bash recipes/more_data.sh pusht-v1
# The recipe's MORE_DATA is "episodes:seed:steps[:passes]": `lewm collect` that many episodes of
# the data policy with a fresh data seed (disjoint from data/<env>.h5's episodes) into
# data/<env>-more.h5, then `lewm train --init-from` the shipped model (copied once to
# runs/<env>-more/start, so a rerun starts from the same weights) for that many steps on the data
# plus the new episodes (`--extra-data`: the held-out split and the action statistics stay
# data/<env>.h5's, so the evaluation tasks stay unseen). Both models are evaluated with the
# shipped planning on the selection episodes (eval seeds 1 and 2); a strictly better new model is
# evaluated on the reported episodes (seed 0), gets its decoder, probes and surprise, and is
# shipped with its training history. With passes > 1, pass k (folder runs/<env>-more<k>) does the
# same on the same episodes from the model pass k-1 shipped (whose selection evaluations it
# reuses); a pass whose model is not shipped ends the recipe. Each step is skipped when its
# output is there already.
# Push-T (10,000 episodes, 6,000 steps): 5 minutes of collection and 43 minutes of training on
# this 2-core machine (the new episodes are read from disk: about 2.3 steps/s).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV="${1:?usage: recipes/more_data.sh pusht-v1|pusht|cube}"
source recipes/recipes.sh
recipe "$ENV"
if [ -z "$MORE_DATA" ]; then
  echo "error: the $ENV recipe has no more-data stage (MORE_DATA in recipes/recipes.sh)" >&2; exit 2
fi
IFS=: read -r MORE_EPISODES MORE_SEED MORE_STEPS MORE_PASSES <<< "$MORE_DATA"
DATA="data/$ENV.h5"
MORE="data/$ENV-more.h5"
[ -f "$DATA" ] || { echo "error: $DATA is missing; run recipes/train_assets.sh $ENV first" >&2; exit 2; }
[ -f "$MORE" ] || $LEWM collect --env "$ENV" --policy "$POLICY" --episodes "$MORE_EPISODES" \
  --steps "$STEPS" --resolution "$RESOLUTION" --seed "$MORE_SEED" --workers 2 --out "$MORE" --quiet
for PASS in $(seq 1 "${MORE_PASSES:-1}"); do
  DIR="runs/$ENV-more"
  [ "$PASS" = 1 ] || DIR="runs/$ENV-more$PASS"
  start_from_shipped "$DIR"  # sets PLAN
  if [ -n "${RUN:-}" ] && cmp -s "$DIR/start/model.safetensors" "$RUN/model.safetensors"; then
    # the start is the previous pass's model: its selection evaluations serve again
    for f in "$(dirname "$RUN")"/select-more-seed*.json; do
      if [ -s "$f" ]; then cp -n "$f" "$DIR/select-start-${f##*/select-more-}"; fi
    done
  fi
  RUN="$DIR/more"
  [ -f "$RUN/train_summary.json" ] || $LEWM train --data "$DATA" --extra-data "$MORE" \
    --extra-repeat 1 --preset lab --init-from "$DIR/start" --max-steps "$MORE_STEPS" \
    --checkpoint-every "$CKPT" --out "$RUN" --quiet --json
  ship_if_better "$DIR" "$RUN" more "with more data (pass $PASS)" "${PLAN[@]}"
  cmp -s "$RUN/model.safetensors" "assets/models/$ENV/model.safetensors" \
    || { echo "pass $PASS was not shipped: no further pass"; break; }
done
