"""The planning protocol's ceiling: the same CEM and MPC loop with the true simulator as the model.

    python research/oracle_plan.py --env pusht --data data/pusht.h5 --episodes 20 --seed 0 [--json]
        [--sampling independent --objective min --receding-horizon 2]  (a model's shipped planning)
    python research/oracle_plan.py --env pusht-v1 --data data/pusht-v1.h5 --episodes 50 --seed 0 \
        --sampling independent --split all --goal-at-start not-counted  (the paper's protocol)

Where `lewm eval` rolls candidates out through the world model and scores the last predicted
latent against the goal image's latent, this rolls each candidate out in the environment itself
(from the true start state, no rendering) and scores the last state against the goal state:

    cost = sum_q (goal_error_q / tolerance_q)^2     over the env's success tolerances q

(Push-T: pos_dist / 20 and angle_error / (pi/9); Two-Room: agent_dist / 16; Reacher:
joint_error / 0.05; Cube: cube_dist / 0.04). Everything else is `lewm eval`'s: the episodes
(`tasks_from_dataset`, same seed and split = same start and goal states), the action statistics
of the data (sampling in the normalised space), `CEMPlanner.plan`, the search `Planner` runs
(CEM: samples, elites, iterations, horizon, block or independent sampling) and `run_task`
(the env reset and CEM sampler per task, receding horizon, budget 50 raw steps, success at any
step, a goal met at the start counted or not). What it measures: how often CEM under this protocol
reaches the goal when the model is perfect, i.e. how much of a world model's shortfall is the
model's and how much the search's.
The last stdout line with --json is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from lewm_core.data.dataset import ActionStats, ClipDataset
from lewm_core.envs import make
from lewm_core.errors import UserError
from lewm_core.planning import GOAL_AT_START, SPLITS
from lewm_core.planning.cem import CEMPlanner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import (
    goal_kind_summary,
    run_task,
    tasks_from_dataset,
    wilson_interval,
)
from lewm_core.world_model.config import OBJECTIVES, SAMPLINGS


class SimulatorPlanner(CEMPlanner):
    """A CEM planner whose "latent" is the simulator state and whose rollout is the simulator.

    `encode_observation` returns the state the env is in, shape (1, S), and `encode_goal` the
    goal state, shape (S,); `step_costs` replays each candidate's raw actions from the start
    state and returns its costs against the goal state after each block, (N, H).
    """

    def __init__(self, env, stats: ActionStats, cfg: CEMConfig, frameskip: int) -> None:
        self.env = env.unwrapped
        super().__init__(stats, cfg, frameskip, self.env.action_dim)
        self.tolerances = dict(self.env.success_tolerances)

    def encode_observation(self, env, frames: np.ndarray) -> torch.Tensor:
        if len(frames) != 1:  # the state holds the velocities: no history needed
            raise ValueError("the simulator planner plans from the current state (context 1)")
        return torch.as_tensor(np.asarray(env.get_state(), np.float64))[None]  # (1, S)

    def encode_goal(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(goal_state, np.float64))

    def step_costs(self, z_start, z_goal, blocks, context_blocks=None):
        env, start = self.env, z_start.numpy().astype(np.float64)
        goal = z_goal.numpy().astype(np.float64)
        n, h = blocks.shape[:2]
        raw = self.stats.denormalize(blocks.reshape(n, h, -1, self.action_dim).numpy())
        raw = np.clip(raw, -1.0, 1.0).astype(np.float64)
        costs = np.empty((n, h))
        for i in range(n):
            env.set_state(start)
            for j, block in enumerate(raw[i]):
                for a in block:
                    env.simulate(a)
                errors = env.goal_errors(goal)
                costs[i, j] = sum((errors[q] / tol) ** 2 for q, tol in self.tolerances.items())
        env.set_state(start)  # as found: run_mpc steps the env from here
        return torch.as_tensor(costs, dtype=torch.float32), torch.zeros(n, h, 1)


def action_stats_of(path: str) -> ActionStats:
    """The z-scoring statistics a model trained on `path` uses (its training episodes' actions)."""
    return ClipDataset(path, "train").action_stats  # split seed 0, as `lewm train` by default


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", required=True)
    p.add_argument("--data", required=True, help="the dataset whose episodes to plan")
    p.add_argument("--split", default="val", choices=tuple(SPLITS), help="as `lewm eval --split`")
    p.add_argument(
        "--goal-at-start",
        default="counted",
        choices=tuple(GOAL_AT_START),
        help="as `lewm eval --goal-at-start`",
    )
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--goal-offset", type=int, default=25, help="as `lewm eval --goal-offset` (the paper's 25)"
    )
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--sampling", default="block", choices=SAMPLINGS)
    p.add_argument("--objective", default="last", choices=OBJECTIVES)
    p.add_argument(
        "--receding-horizon", type=int, default=5, help="blocks executed per plan (1..horizon)"
    )
    p.add_argument("--frameskip", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    env = make(args.env, resolution=64)
    env.reset(seed=args.seed)
    tasks = tasks_from_dataset(
        args.data, env, args.episodes, args.seed, goal_offset=args.goal_offset, split=args.split
    )
    cem = CEMConfig(
        samples=args.samples,
        iterations=args.iterations,
        sampling=args.sampling,
        objective=args.objective,
        receding_horizon=args.receding_horizon,
    )
    try:
        cem.validate()
    except UserError as err:
        p.error(str(err))
    planner = SimulatorPlanner(env, action_stats_of(args.data), cem, args.frameskip)
    count_start = args.goal_at_start == "counted"
    results, kinds, t0 = [], [], time.perf_counter()
    for i, task in enumerate(tasks):
        kinds.append(env.unwrapped.goal_kind(task.start_state, task.goal_state))
        res = run_task(env, planner, task, 50, args.seed, i, count_start=count_start)
        results.append(res)
        print(
            f"episode {i}: {'ok' if res.success else 'fail'} after {res.steps} steps "
            f"{ {k: round(v, 3) for k, v in res.final_errors.items()} }",
            file=sys.stderr,
        )
    n_ok = sum(r.success for r in results)
    summary = {
        "env": args.env,
        "planner": "simulator",
        "episodes": len(results),
        "success_rate": n_ok / len(results),
        "success_ci95": list(wilson_interval(n_ok, len(results))),
        "sampling": args.sampling,
        "objective": args.objective,
        "receding_horizon": args.receding_horizon,
        "cem": {"samples": args.samples, "iterations": args.iterations},
        "seed": args.seed,
        "goal_offset": args.goal_offset,
        "data": args.data,
        "split": args.split,
        "goal_at_start": args.goal_at_start,
        "plan_s_median": float(np.median([s for r in results for s in r.plan_seconds] or [0])),
        "wall_s": round(time.perf_counter() - t0, 1),
        "episode_success": [r.success for r in results],
        "goal_kinds": goal_kind_summary(
            kinds, [r.success for r in results], env.unwrapped.goal_kinds
        ),
    }
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
