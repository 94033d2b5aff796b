"""Planning through an ensemble of world models: `lewm eval`'s protocol with `EnsemblePlanner`.

    python research/ensemble_plan.py --checkpoints assets/models/pusht runs/a runs/b \
        --data data/pusht.h5 --episodes 50 --seed 1 [--compile] [--json]

The first checkpoint names the env, the held-out split and the planning defaults (sampling,
context, objective, replanning; `config.json` "planning", as `lewm eval` uses them); every
candidate's cost is the mean of its costs through each model (`EnsemblePlanner`, below). The
members must be trained on the same dataset (same action statistics). Prints success, its 95%
interval, success by goal kind and the median plan time; the last stdout line with --json is
`evaluate()`'s JSON object plus "checkpoints".
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from lewm_core.errors import UserError
from lewm_core.planning.cem import CEMPlanner, Planner
from lewm_core.planning.evaluate import evaluate
from lewm_core.world_model.checkpoint import load_model


class EnsemblePlanner(CEMPlanner):
    """CEM through several world models at once: a candidate's cost after each block is the
    mean over the models of its cost in each model's own latent space.

    Not in the paper. One model's rollout errs, and CEM, which keeps whatever scores best,
    finds the candidates whose predicted latents land on the goal by the model's error; a
    plan the models rate alike is harder to win that way. A "latent" here is the models'
    latents concatenated (M * D,); the members must share the frameskip, action size and
    action statistics (models trained on the same data), and each plans with its own
    `Planner` (dtype, compiled rollout) under the one CEM config.
    """

    def __init__(self, planners: list[Planner]):
        if not planners:
            raise UserError("an ensemble needs at least one model")
        first = planners[0]
        for p in planners[1:]:
            same_stats = np.array_equal(p.stats.mean, first.stats.mean) and np.array_equal(
                p.stats.std, first.stats.std
            )
            if (p.frameskip, p.action_dim) != (first.frameskip, first.action_dim) or not same_stats:
                raise UserError(
                    "the ensemble's models differ in frameskip, action size or action "
                    "statistics: use models trained on the same dataset"
                )
        self.planners = planners
        self._dims = [p.model.cfg.latent_dim for p in planners]
        super().__init__(first.stats, first.cfg, first.frameskip, first.action_dim, first.device)
        for p in planners:  # one CEM config (the search's) for every member's cost
            p.cfg = self.cfg

    @property
    def dtype_name(self) -> str:
        return self.planners[0].dtype_name

    @property
    def compiled(self) -> bool:
        """True while every member's rollout runs compiled."""
        return all(p.compiled for p in self.planners)

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(z, self._dims, dim=-1)

    def encode_observation(self, env, frames: np.ndarray) -> torch.Tensor:
        return torch.cat([p.encode_observation(env, frames) for p in self.planners], -1)

    def encode_goal(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        return torch.cat([p.encode_goal(goal_frame, goal_state) for p in self.planners], -1)

    def step_costs(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        blocks: torch.Tensor,
        context_blocks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over the models of each one's costs (N, H); predicted latents (N, H, M * D)."""
        parts = [
            p.step_costs(s, g, blocks, context_blocks)
            for p, s, g in zip(
                self.planners, self._split(z_start), self._split(z_goal), strict=True
            )
        ]
        costs = torch.stack([c for c, _ in parts]).mean(0)
        return costs, torch.cat([z for _, z in parts], -1)


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
