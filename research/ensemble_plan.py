"""Planning through an ensemble of world models: `lewm eval`'s protocol with `EnsemblePlanner`.

    python bench/ensemble_plan.py --checkpoints assets/models/pusht runs/a runs/b \
        --data data/pusht.h5 --episodes 50 --seed 1 [--compile] [--json]

The first checkpoint names the env, the held-out split and the planning defaults (sampling,
context, objective, replanning; `config.json` "planning", as `lewm eval` uses them); every
candidate's cost is the mean of its costs through each model (`lewm_core.planning.
EnsemblePlanner`). The members must be trained on the same dataset (same action statistics).
Prints success, its 95% interval, success by goal kind and the median plan time; the last
stdout line with --json is `evaluate()`'s JSON object plus "checkpoints".
"""

from __future__ import annotations

import argparse
import json
import sys

from lewm_core.checkpoint import load_model
from lewm_core.evaluate import evaluate
from lewm_core.planning import EnsemblePlanner, Planner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile each member's rollout")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    models = [load_model(c) for c in args.checkpoints]
    cem = models[0].planning.cem_config(samples=args.samples, iterations=args.iterations)
    members = [
        Planner(m.model, m.action_stats, cem, dtype=args.dtype, compile_rollout=args.compile)
        for m in models
    ]
    out = evaluate(
        models[0],
        episodes=args.episodes,
        seed=args.seed,
        data=args.data,
        planner=EnsemblePlanner(members),
    )
    out["checkpoints"] = args.checkpoints
    lo, hi = out["success_ci95"]
    print(
        f"{len(models)} models, {out['env']}: success {out['success_rate']:.0%} "
        f"({lo:.0%}-{hi:.0%}), random policy {out['random_success_rate']:.0%}, "
        f"plan {out['plan_ms_median']:.0f} ms (median)"
    )
    for kind, g in out["goal_kinds"].items():
        print(f"  {kind}: {g['successes']}/{g['episodes']} (random {g['random_successes']})")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
