"""How much of Push-T's block angle the positions give away in data pushed to one goal pose.

    python research/fixed_goal_floor.py [--episodes 300] [--json]

The paper's Push-T data are expert demonstrations that push the T into the classic task's one
goal pose; probes read its latents at linear r 0.902 for the angle. Where every episode ends at
the same pose, the angle goes with the positions, and a latent holding no angle of its own
reads some of it through them. This runs `PushTExpertPolicy` (`lewm collect --policy expert`)
with one fixed goal pose for every episode (centre of mass at (256, 256), angle pi/4, as the
classic task's T sits in the middle at 45 degrees; our T's origin is its centre of mass, not
the classic bar edge), each episode ending when the T is within 15 px and 0.15 rad of it or
after 300 steps, as demonstrations end at success. Then it fits
`lewm_core.analysis.probing.state_floor` (the angle's probe from the true agent position, velocity
and block position) on 8,000 train / 3,000 test frames of disjoint episodes, and the same for the
random goal poses of `--policy expert` (each episode a new pose), as `lewm probe` does for a
dataset. States only: nothing is rendered beyond the env's own 32-px frames. The last stdout line
with --json is one JSON object: {"fixed_goal": {"linear", "mlp", "frames", "episodes_met"},
"random_goals": {...}}.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from lewm_core.analysis import probing
from lewm_core.data.collect import dataset_layout
from lewm_core.envs import make, make_policy

GOAL = (np.array([256.0, 256.0]), math.pi / 4)
TRAIN_FRAMES, TEST_FRAMES = 8000, 3000


def run(episodes: int, fixed: bool, max_steps: int = 300) -> tuple[list[np.ndarray], int]:
    """State rows (T, S) of each episode and how many met their (first) goal."""
    env = make("pusht", 32)
    out, met = [], 0
    for ep in range(episodes):
        env.reset(seed=ep)
        pol = make_policy("pusht", env, seed=ep, policy="expert")
        pol.reset()
        if fixed:
            pol.goal, pol.GOAL_STEPS = GOAL, 10**9
        rows = []
        for _ in range(max_steps if fixed else 200):
            rows.append(env.unwrapped.state_vector.copy())
            env.step(pol.act())
            if fixed and pol.goal_met():
                met += 1
                break
        out.append(np.asarray(rows))
    env.close()
    return out, met


def floor(episodes: list[np.ndarray], seed: int = 0) -> dict[str, float]:
    """Angle's state floor (linear, MLP r) on train / test frames from disjoint episodes."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(episodes))
    n_test = max(1, len(episodes) // 10)
    test = np.concatenate([episodes[i] for i in order[:n_test]])
    train = np.concatenate([episodes[i] for i in order[n_test:]])
    train = train[rng.choice(len(train), min(TRAIN_FRAMES, len(train)), replace=False)]
    test = test[rng.choice(len(test), min(TEST_FRAMES, len(test)), replace=False)]
    layout = dataset_layout("pusht", 32)  # the state columns, as a dataset file records them
    targets = probing.quantity_targets(
        np.concatenate([train, test]),
        layout["state_quantities"],
        tuple(layout["angle_quantities"]),
    )
    result = probing.state_floor(targets, len(train), kinds=("linear", "mlp"), seed=seed)
    return {kind: result[kind]["block_angle"]["r"] for kind in ("linear", "mlp")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {}
    for name, fixed in (("fixed_goal", True), ("random_goals", False)):
        eps, met = run(args.episodes, fixed)
        r = floor(eps)
        result[name] = {**r, "frames": int(sum(len(e) for e in eps)), "episodes_met": met}
        print(
            f"{name}: angle from the rest of the state, linear r {r['linear']:.3f}, "
            f"MLP r {r['mlp']:.3f} ({result[name]['frames']} frames"
            + (f", {met} of {args.episodes} episodes met the goal)" if fixed else ")")
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
