# The recipe of each shipped model's data and training, sourced by bench/train_assets.sh,
# bench/planner_rounds.sh and bench/gpu_train.sh so that they collect episodes of the same length.
#   recipe ENV   sets EPISODES, STEPS (raw steps per episode), RESOLUTION (image side, px),
#                TRAIN_STEPS, SEED (data seed), CKPT (checkpoint every CKPT steps) and
#                CONTEXTS and PLANNERS (the planning contexts and CEM objective:receding
#                horizon pairs train_assets.sh evaluates, unless set already); ROUNDS,
#                GOAL_KINDS and FT_STEPS of bench/planner_rounds.sh (ROUNDS empty: the env's
#                shipped model is train_assets.sh's); unknown ENV: an error naming the choices.
recipe() {
  CKPT=500
  RESOLUTION=64  # every shipped model; 96 and 128 px were tried (REPRODUCTION.md)
  local contexts=1 planners="last:5 min:2"  # min:2 won the selection on all four tasks
  ROUNDS=""; GOAL_KINDS=""; FT_STEPS=3000
  case "$1" in
    tworoom) EPISODES=1000; STEPS=100; TRAIN_STEPS=3000; SEED=1 ;;
    pusht)   EPISODES=1000; STEPS=200; TRAIN_STEPS=15000; SEED=1; CKPT=1500
             # planner rounds (episodes:seed:repeat) on the goals where the T must be pushed
             ROUNDS="400:10:5 200:11:5 400:12:3"; GOAL_KINDS=push ;;
    reacher) EPISODES=1000; STEPS=200; TRAIN_STEPS=3000; SEED=1; contexts="1 3" ;;
    cube)    EPISODES=1000; STEPS=200; TRAIN_STEPS=3000; SEED=1 ;;
    *) echo "error: unknown env '$1'; choose tworoom, pusht, reacher or cube" >&2; return 2 ;;
  esac
  CONTEXTS=${CONTEXTS:-$contexts}
  PLANNERS=${PLANNERS:-$planners}
}

# eval_successes FILE: the successes (rate x episodes) of a `lewm eval --json` output file.
eval_successes() {
  tail -n 1 "$1" | .venv/bin/python -c \
    'import json, sys; d = json.loads(sys.stdin.read()); print(round(d["success_rate"] * d["episodes"]))'
}
