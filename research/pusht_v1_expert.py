"""Push-T v1's expert data and the paper's evaluation protocol on it, measured from a dataset.

    lewm collect --env pusht-v1 --policy expert --episodes 200 --steps 300 \\
        --out data/pusht-v1-expert.h5
    python research/pusht_v1_expert.py --data data/pusht-v1-expert.h5 [--episodes 50 200] [--json]

Reads a dataset of `PushTV1ExpertPolicy` (`lewm_core.envs.pusht_v1_policies`) and reports:

- the expert: the share of episodes whose last row has the T at the goal pose (the success
  test's block part, `block_at_goal`), the share that got there at any row, and the median
  row it first did;
- the data next to the published statistics of DINO-WM's expert set (block origin, agent and
  action mean and std per axis; `PUBLISHED`, as given in this project's issue 33 from the
  dataset's statistics);
- the protocol (`tasks_from_dataset`: start rows from every episode, `--split all`; goal the
  state 25 rows later; budget 50 steps): a uniformly random policy's success, the start not
  counted as the paper's evaluation does not check it, with 95% Wilson intervals, for each
  `--episodes`; beside it the same random runs with the start counted (what `lewm eval`
  reports), with the success test's angle ignored, and the share of tasks already met at the
  start;
- the goals' distance from their starts for each of `--offsets` (`goal_motion`).

States only: nothing is rendered but the goal frames the tasks carry. The last stdout line
with --json is one JSON object.
"""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np

from lewm_core.envs import make
from lewm_core.envs.pusht_v1 import SUCCESS_ANGLE, SUCCESS_POS, angle_difference
from lewm_core.envs.pusht_v1_policies import block_at_goal
from lewm_core.planning.evaluate import (
    EvalTask,
    random_policy_success,
    render_state,
    tasks_from_dataset,
    wilson_interval,
)

# DINO-WM's expert Push-T set (the paper's training data), per axis: (mean, std).
PUBLISHED = {
    "block_origin": {"mean": [255.0, 266.0], "std": [53.0, 58.0]},
    "agent": {"mean": [237.0, 265.0], "std": [100.0, 87.0]},
    "action_px": {"std": [20.0, 20.0]},  # px of relative target per step (100 px per unit)
}


def expert_outcome(path: str) -> dict:
    """How the dataset's episodes end, and its state and action statistics."""
    with h5py.File(path, "r") as f:
        sims, actions = f["sim_state"][:], f["action"][:]
        off, ln = f["ep_offset"][:], f["ep_len"][:]
        policy = str(f.attrs.get("policy", ""))
    at_goal = np.array([block_at_goal(s) for s in sims])
    first = []
    for o, n in zip(off, ln, strict=True):
        hits = np.flatnonzero(at_goal[o : o + n])
        first.append(int(hits[0]) if len(hits) else None)
    reached = [t for t in first if t is not None]
    ends = [bool(at_goal[o + n - 1]) for o, n in zip(off, ln, strict=True)]

    def stats(x: np.ndarray) -> dict:
        return {"mean": x.mean(0).round(1).tolist(), "std": x.std(0).round(1).tolist()}

    return {
        "policy": policy,
        "episodes": len(off),
        "steps": int(ln.sum()),
        "episode_steps": int(np.median(ln)),
        "ends_at_goal": float(np.mean(ends)),
        "reached_goal": len(reached) / len(off),
        "first_at_goal_median": float(np.median(reached)) if reached else None,
        "first_at_goal_p90": float(np.percentile(reached, 90)) if reached else None,
        "rows_at_goal": float(at_goal.mean()),
        "data": {
            "block_origin": stats(sims[:, 2:4]),
            "agent": stats(sims[:, 0:2]),
            "action_px": stats(100.0 * actions.astype(np.float64)),
        },
        "published": PUBLISHED,
    }


def _random(env, tasks: list[EvalTask], seed: int, budget: int, count_start: bool) -> list:
    """A uniformly random policy on each task; task i's actions from generator (seed, 3, i)."""
    return [
        random_policy_success(env, t, budget, np.random.default_rng([seed, 3, i]), count_start)
        for i, t in enumerate(tasks)
    ]


def _summary(env, tasks: list[EvalTask], seed: int, budget: int) -> dict:
    """Random success (start not counted, Wilson interval), with the start counted, with the
    angle ignored, and the share of tasks met at the start."""
    base = env.unwrapped
    met = sum(base.goal_kind(t.start_state, t.goal_state) == "met" for t in tasks)
    paper = _random(env, tasks, seed, budget, False)
    counted = _random(env, tasks, seed, budget, True)
    tolerances = base.success_tolerances
    base.success_tolerances = {"pos_dist": tolerances["pos_dist"]}  # a test blind to the angle
    no_angle = _random(env, tasks, seed, budget, False)
    base.success_tolerances = tolerances
    n, k = len(tasks), int(sum(paper))
    return {
        "episodes": n,
        "random_success": k / n,
        "random_ci95": [round(v, 4) for v in wilson_interval(k, n)],
        "random_success_start_counted": float(np.mean(counted)),
        "random_success_angle_ignored": float(np.mean(no_angle)),
        "met_at_start": met / n,
    }


def random_on_protocol(path: str, episodes: int, seed: int, budget: int = 50) -> dict:
    """A uniformly random policy on `episodes` protocol tasks of the dataset: "whole", drawn
    by `tasks_from_dataset` (split "all"); "until_goal", drawn the same way (a uniform episode,
    a uniform start row with 25 rows after it) from each episode cut one row after the T first
    meets the goal, as DINO-WM's demonstrations end at success."""
    env = make("pusht-v1", resolution=32)
    env.reset(seed=seed)
    whole = tasks_from_dataset(path, env, episodes, seed, goal_offset=25, split="all")
    with h5py.File(path, "r") as f:
        sims, off, ln = f["sim_state"][:], f["ep_offset"][:], f["ep_len"][:]
    cut = []
    for o, n in zip(off, ln, strict=True):
        hits = np.flatnonzero([block_at_goal(s) for s in sims[o : o + n]])
        cut.append(int(hits[0]) + 1 if len(hits) else int(n))
    pool = [e for e in range(len(off)) if cut[e] > 25]
    rng = np.random.default_rng([seed, 1])
    until_goal = []
    for _ in range(episodes):
        e = pool[rng.integers(len(pool))]
        row = int(off[e]) + int(rng.integers(0, cut[e] - 25))
        goal = sims[row + 25]
        until_goal.append(EvalTask(sims[row], goal, render_state(env, goal), row))
    out = {
        "whole": _summary(env, whole, seed, budget),
        "until_goal": _summary(env, until_goal, seed, budget),
    }
    env.close()
    return out


def goal_motion(path: str, offsets: list[int]) -> list[dict]:
    """How far the protocol's goals lie from their starts, for each goal offset: over every
    start row with `offset` rows after it in its episode (the rows the paper's draw can pick),
    the median block origin move (px), block turn (rad, `angle_difference`) and agent move (px),
    and the share of starts that fail the success test's block part against their goal (block
    origin >= 20 px off or angle >= pi/9: goals that need the T pushed)."""
    with h5py.File(path, "r") as f:
        sims, off, ln = f["sim_state"][:], f["ep_offset"][:], f["ep_len"][:]
    out = []
    for k in offsets:
        starts = np.concatenate([np.arange(o, o + n - k) for o, n in zip(off, ln, strict=True)])
        if len(starts) == 0:
            raise SystemExit(f"error: no episode of {path} has {k} rows after a start row")
        a, b = sims[starts], sims[starts + k]
        block = np.hypot(*(b[:, 2:4] - a[:, 2:4]).T)
        turn = np.array([angle_difference(x, y) for x, y in zip(a[:, 4], b[:, 4], strict=True)])
        agent = np.hypot(*(b[:, 0:2] - a[:, 0:2]).T)
        out.append(
            {
                "offset": k,
                "starts": len(starts),
                "block_px_median": round(float(np.median(block)), 1),
                "turn_rad_median": round(float(np.median(turn)), 3),
                "agent_px_median": round(float(np.median(agent)), 1),
                "push_share": round(
                    float(np.mean((block >= SUCCESS_POS) | (turn >= SUCCESS_ANGLE))), 3
                ),
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a dataset of `lewm collect --policy expert`")
    p.add_argument("--episodes", type=int, nargs="+", default=[50, 200])
    p.add_argument("--seed", type=int, default=42, help="the paper's evaluation seed")
    p.add_argument(
        "--offsets",
        type=int,
        nargs="+",
        default=[25],
        help="goal offsets (rows after the start; the paper's is 25) whose goal motion to report",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = {"expert": expert_outcome(args.data)}
    out["protocol"] = [random_on_protocol(args.data, n, args.seed) for n in args.episodes]
    out["goal_motion"] = goal_motion(args.data, args.offsets)
    e = out["expert"]
    print(
        f"{e['episodes']} episodes of {e['episode_steps']} steps ({e['policy']}): "
        f"{e['ends_at_goal']:.1%} end with the T at the goal, {e['reached_goal']:.1%} reach it "
        f"(first at row {e['first_at_goal_median']} median, {e['first_at_goal_p90']} p90)"
    )
    for name, d in e["data"].items():
        print(f"  {name}: data {d} | published {PUBLISHED[name]}")
    for r in out["protocol"]:
        for name, d in r.items():
            lo, hi = d["random_ci95"]
            print(
                f"random policy, {d['episodes']} tasks ({name}): {d['random_success']:.1%} "
                f"(95% CI {lo:.1%}-{hi:.1%}); start counted "
                f"{d['random_success_start_counted']:.1%}; angle ignored "
                f"{d['random_success_angle_ignored']:.1%}; met at start {d['met_at_start']:.1%}"
            )
    for m in out["goal_motion"]:
        print(
            f"goals {m['offset']} rows on ({m['starts']} start rows): block moves "
            f"{m['block_px_median']} px, turns {m['turn_rad_median']} rad, agent moves "
            f"{m['agent_px_median']} px (medians); {m['push_share']:.0%} need the T pushed"
        )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
