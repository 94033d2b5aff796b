"""Is a planning failure the model's or the search's? The model's cost of the data's own actions.

    python research/expert_cost.py --checkpoint runs/x --data data/x.h5 --episodes 50 --seed 0 \
        [--json]

Each `lewm eval` task drawn from a dataset (same seed = same start and goal states) starts at a
row of an episode whose goal is the frame `goal_offset` = horizon x frameskip raw steps later:
the data's own actions between the two reach the goal by construction. For each task this
scores, through the world model from the start frame and the k - 1 observed before it one block
apart (`--context k`, default the model's; fewer at an episode's start; the blocks between them
are the data's), with the `Planner`'s cost (squared L2 between the last predicted latent and the
goal image's latent)

    expert_cost = cost(the data's 25 actions)        cem_cost = cost(CEM's plan, 300 x 30)

and executes CEM's plan (all 25 raw actions, one plan, no replanning) in the env to see where
it ends (the data's actions are executed too: they reach the goal, or the task's row is
wrong). When CEM's plan costs less than the data's actions yet misses the goal, CEM has pushed
the model's cost below that of a known solution and the cost led it elsewhere: the model rates a
wrong sequence above a right one (whether another right sequence would score lower still is not
measured). When the data's actions cost less and CEM misses, the search stopped short of a
better sequence of the model's own cost (the search's fault). Tasks are grouped by what they
ask, the env's `goal_kind`: "met" (the goal holds at the start), and otherwise, for Cube, "carry"
(the cube is already lifted at the start) or "pick" (it rests on the floor), for Push-T "agent"
(the T already lies within tolerance of its goal pose) or "push"; "move" for the other envs.

Where does the model err? Both action sequences are executed from the start state and the
frames at each block boundary encoded; each task records the squared error of the model's
predicted latents against them, summed over the 5 blocks, for the data's actions and for CEM's
plan, and that of copying the start latent along the data's actions; each kind prints their
means. A model that CEM exploits errs far more on its plans than on the data's actions.
The last stdout line with --json is one JSON object: {"groups": {kind: {...}}, "tasks": [...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np
import torch

from lewm_core.data.dataset import open_dataset
from lewm_core.envs import make
from lewm_core.planning.cem import Planner
from lewm_core.planning.evaluate import reaches_goal, render_state, tasks_from_dataset
from lewm_core.world_model.checkpoint import load_model
from lewm_core.world_model.config import OBJECTIVES


def _recording(env, actions, frameskip: int, frames: list):
    """Yield `actions`, appending the env's frame at each block boundary before the next
    block's first action (the frame after the last action is the caller's to add)."""
    for i, action in enumerate(actions):
        if i and i % frameskip == 0:
            frames.append(env.unwrapped.render().copy())
        yield action


def _executed_latents(env, task, actions: np.ndarray, frameskip: int, planner: Planner):
    """(reached, latents (blocks, D) of the frames at the block boundaries) of `actions`
    (blocks * frameskip, A) executed from the task's start state."""
    frames: list[np.ndarray] = []
    reached = reaches_goal(env, task, _recording(env, actions, frameskip, frames), False)
    frames.append(env.unwrapped.render().copy())
    return reached, planner.encode(np.stack(frames))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampling", default=None, help="CEM sampling (default: the model's)")
    p.add_argument("--samples", type=int, default=300, help="CEM samples (paper: 300)")
    p.add_argument("--iterations", type=int, default=30, help="CEM iterations (paper: 30)")
    p.add_argument(
        "--context", type=int, default=None, help="observed frames (default: the model's)"
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="CEM cost (default: the model's; a run folder has none, so say it there)",
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    loaded = load_model(args.checkpoint)
    frameskip = loaded.config.frameskip
    cem = loaded.planning.cem_config(
        samples=args.samples,
        iterations=args.iterations,
        sampling=args.sampling,
        objective=args.objective,
    )
    offset = cem.horizon * frameskip
    env = make(loaded.env_name, resolution=loaded.config.image_size)
    planner = Planner(loaded.model, loaded.action_stats, cem, dtype=args.dtype)
    tasks = tasks_from_dataset(args.data, env, args.episodes, args.seed, goal_offset=offset)
    k_max = args.context or loaded.planning.context
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    with open_dataset(args.data) as f:
        ep_offset = f["ep_offset"][:]
        for i, task in enumerate(tasks):
            row = task.dataset_row
            ep_start = int(ep_offset[np.searchsorted(ep_offset, row, "right") - 1])
            k = min(k_max, 1 + (row - ep_start) // frameskip)  # fewer at an episode's start
            first = row - (k - 1) * frameskip
            kind = env.unwrapped.goal_kind(task.start_state, task.goal_state)
            # The last k observations one block apart (newest = the start); the data's actions
            # from the oldest: the k - 1 blocks between them, then the horizon from the start.
            frames = [
                render_state(env, f["sim_state"][r]) for r in range(first, row + 1, frameskip)
            ]
            z_start = planner.encode(np.stack(frames))  # (k, D)
            raw = np.asarray(f["action"][first : row + offset])
            blocks = torch.as_tensor(loaded.action_stats.normalize(raw), dtype=torch.float32)
            blocks = blocks.reshape(k - 1 + cem.horizon, -1)
            past, expert = (blocks[: k - 1] if k > 1 else None), blocks[k - 1 :]
            z_goal = planner.encode_goal(task.goal_frame, task.goal_state)
            expert_cost, expert_pred = planner.cost(z_start, z_goal, expert[None], past)
            plan = planner.plan(z_start, z_goal, generator, keep_history=False, context_blocks=past)
            plan_blocks = torch.as_tensor(plan.blocks, dtype=torch.float32)[None]
            _, plan_pred = planner.cost(z_start, z_goal, plan_blocks, past)
            # The data's actions reach the goal by construction (a check of the row and replay).
            expert_reached, z_expert = _executed_latents(
                env, task, raw[row - first :], frameskip, planner
            )
            reached, z_plan = _executed_latents(env, task, plan.actions, frameskip, planner)
            errors = env.unwrapped.goal_errors(task.goal_state)
            rows.append(
                {
                    "kind": kind,
                    "context": k,
                    "expert_cost": float(expert_cost[0]),
                    "cem_cost": plan.cost,
                    "expert_reached": expert_reached,
                    "cem_reached": reached,
                    "expert_rollout_error": float(((expert_pred[0] - z_expert) ** 2).sum()),
                    "cem_rollout_error": float(((plan_pred[0] - z_plan) ** 2).sum()),
                    "copy_error": float(((z_start[-1] - z_expert) ** 2).sum()),
                    "final_errors": {name: float(v) for name, v in errors.items()},
                }
            )
            print(
                f"task {i:2d} {kind:5s} expert {rows[-1]['expert_cost']:8.2f} "
                f"cem {plan.cost:8.2f} reached {reached}",
                file=sys.stderr,
            )
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["kind"]].append(r)
    summary = {}
    for kind, rs in sorted(groups.items()):
        e = np.array([r["expert_cost"] for r in rs])
        c = np.array([r["cem_cost"] for r in rs])
        reached = np.array([r["cem_reached"] for r in rs])
        summary[kind] = {
            "tasks": len(rs),
            "expert_reached": int(sum(r["expert_reached"] for r in rs)),
            "cem_reached": int(reached.sum()),
            "expert_cost_median": float(np.median(e)),
            "cem_cost_median": float(np.median(c)),
            "model_prefers_cem": int((c < e).sum()),
            "model_prefers_cem_and_missed": int(((c < e) & ~reached).sum()),
            "expert_cheaper_and_missed": int(((e <= c) & ~reached).sum()),
            "expert_rollout_error_mean": float(np.mean([r["expert_rollout_error"] for r in rs])),
            "cem_rollout_error_mean": float(np.mean([r["cem_rollout_error"] for r in rs])),
            "copy_error_mean": float(np.mean([r["copy_error"] for r in rs])),
        }
        s = summary[kind]
        print(
            f"{kind:5s} n={s['tasks']:2d} CEM plan reached {s['cem_reached']:2d}; median cost "
            f"expert {s['expert_cost_median']:.2f} vs CEM {s['cem_cost_median']:.2f}; missed "
            f"with CEM's plan rated cheaper {s['model_prefers_cem_and_missed']}, with the "
            f"expert's rated cheaper {s['expert_cheaper_and_missed']}; the model's rollout error "
            f"(mean, 5 blocks) on the data's actions {s['expert_rollout_error_mean']:.1f}, on "
            f"CEM's plans {s['cem_rollout_error_mean']:.1f} (copying the start: "
            f"{s['copy_error_mean']:.1f})"
        )
    if args.json:
        settings = {"sampling": cem.sampling, "objective": cem.objective}
        print(json.dumps({"cem": settings, "groups": summary, "tasks": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
