"""Planning success versus CEM budget for a shipped model, so the lab can offer a fast setting.

    python research/success_vs_time.py --model assets/models/tworoom --data data/tworoom.h5 \
        [--budgets 300x30,300x10,100x10] [--episodes 50] [--seed 0] [--json]

Runs the standard evaluation protocol (`lewm_core.planning.evaluate.evaluate`) once per CEM budget
(samples x iterations) on the same episodes and prints success, its interval and the median plan
time side by side. The last stdout line with --json is a JSON object {budget: summary}.
"""

from __future__ import annotations

import argparse
import json

from lewm_core.planning.evaluate import evaluate
from lewm_core.world_model.checkpoint import load_model
from lewm_core.world_model.config import SAMPLINGS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data")
    p.add_argument("--budgets", default="300x30,300x10,100x10")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampling", choices=SAMPLINGS, help="default: the model's")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    loaded = load_model(args.model)
    args.sampling = args.sampling or loaded.planning.sampling
    rows = {}
    for budget in args.budgets.split(","):
        samples, iterations = (int(x) for x in budget.split("x"))
        cem = loaded.planning.cem_config(  # the model's context, objective, receding horizon
            samples=samples,
            iterations=iterations,
            elites=min(30, samples // 10),
            sampling=args.sampling,
        )
        rows[budget] = evaluate(loaded, args.episodes, args.seed, args.data, cem, progress=False)
    print(
        f"{loaded.env_name}: {args.episodes} episodes, seed {args.seed}, {args.sampling} sampling"
    )
    print(f"{'CEM':>8s} {'success':>8s} {'95% CI':>10s} {'plan ms':>8s}")
    for budget, r in rows.items():
        lo, hi = r["success_ci95"]
        print(
            f"{budget:>8s} {r['success_rate']:8.0%} {lo:4.0%}-{hi:4.0%} {r['plan_ms_median']:8.0f}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
