"""Record Push-T trajectories and frames from the reference, gym-pusht 0.1.8, for the
side-by-side tests of ``lewm_core.envs.pusht_v1`` (tests/test_pusht_v1.py).

It runs in a virtual environment that holds gym-pusht (which pins pymunk < 7, so it cannot
share the project's venv) and imports nothing from this repository:

    python3.11 -m venv /tmp/gym_pusht_venv
    /tmp/gym_pusht_venv/bin/pip install gym-pusht==0.1.8
    /tmp/gym_pusht_venv/bin/python tests/gym_pusht_record.py \\
        --out tests/data/gym_pusht_trajectories.json --frames tests/data/gym_pusht_frames.png

writes the committed fixture (fixed cases below, and the frames of the first case); with
``--random N --seed S`` it records N random cases instead (what the slow test does). Prints
one JSON line with what it wrote.

Each case is a start ``[agent x, y, block x, y, angle]`` and one ABSOLUTE agent target per
step (gym-pusht's action). Every case runs twice:

- ``authors``: a fresh gym-pusht space set in the order of stable-worldmodel 0.1.1's
  ``_set_state`` (agent velocity 0, agent position, block angle, block position, one 0.01 s
  step), so the block origin lands on the start's;
- ``gym_pusht``: gym-pusht's own ``reset(options={"reset_to_state": start})``, which sets the
  block position before its angle; pymunk turns the body about its centre of gravity, so the
  origin moves off the start's unless the angle is 0.

Each run stores the state after the reset and after every step as
``[agent x, y, block origin x, y, angle mod 2 pi, agent vx, vy]``, the reference's coverage and
success flag, and the 224 px observation's pixels only for ``--frames`` (steps 0, 4, 10 of the
first case's ``gym_pusht`` run, side by side in one PNG).
"""

from __future__ import annotations

import argparse
import json
import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no display needed

import cv2  # noqa: E402  (gym-pusht depends on opencv-python)
import numpy as np  # noqa: E402
import pymunk  # noqa: E402
from gym_pusht.envs.pusht import PushTEnv  # noqa: E402

FRAME_STEPS = (0, 4, 10)
FRAME_SIZE = 224


def fixed_cases() -> list[dict]:
    """Hand-made starts with targets that make the agent touch the T (or a wall)."""
    scatter = np.random.default_rng(3).uniform(-70.0, 70.0, (10, 2)) + (250.0, 290.0)
    return [
        # stem's left side hit below the bar: the T turns (frames of this case are kept)
        {"name": "stem_side", "start": [150, 370, 256, 300, 0], "targets": [[320, 370]] * 10},
        # stem's end pushed straight up
        {"name": "stem_up", "start": [256, 470, 256, 300, 0], "targets": [[256, 380]] * 10},
        # T at the goal pose, agent sweeps into the bar
        {"name": "goal_bar", "start": [120, 120, 256, 256, math.pi / 4],
         "targets": [[256, 270]] * 10},
        # a tilted T, target moving every step
        {"name": "zigzag", "start": [400, 160, 300, 260, 2.0],
         "targets": [[300 + 12 * (i % 2), 190 + 10 * i] for i in range(10)]},
        # targets scattered around the block
        {"name": "scatter", "start": [300, 420, 250, 280, 1.0], "targets": scatter.tolist()},
        # T lying by the left wall, driven into it (actions beyond 1 in the relative form)
        {"name": "into_wall", "start": [200, 250, 60, 250, -math.pi / 2],
         "targets": [[40, 250]] * 10},
    ]  # fmt: skip


def random_cases(n: int, seed: int, steps: int = 10) -> list[dict]:
    """``n`` starts drawn as gym-pusht's reset draws them, with targets around the block."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        agent = rng.uniform(50.0, 450.0, 2)
        block = rng.uniform(100.0, 400.0, 2)
        angle = float(rng.uniform(-math.pi, math.pi))
        targets = block + rng.uniform(-90.0, 90.0, (steps, 2))
        cases.append({"name": f"random_{i}", "start": [*agent, *block, angle],
                      "targets": targets.tolist()})  # fmt: skip
    return cases


def state_of(env: PushTEnv) -> list[float]:
    a, b = env.agent, env.block
    return [*map(float, a.position), *map(float, b.position),
            float(b.angle % (2 * math.pi)), *map(float, a.velocity)]  # fmt: skip


def start_run(start: list[float], order: str) -> PushTEnv:
    env = PushTEnv(obs_type="pixels", observation_width=FRAME_SIZE, observation_height=FRAME_SIZE)
    if order == "gym_pusht":
        env.reset(seed=0, options={"reset_to_state": np.array(start, np.float64)})
    else:  # the authors' order on a fresh space
        env.reset(seed=0)
        env._setup()
        env.agent.velocity = (0.0, 0.0)
        env.agent.position = (float(start[0]), float(start[1]))
        env.block.angle = float(start[4])
        env.block.position = (float(start[2]), float(start[3]))
        env.space.step(env.dt)
    return env


def run(case: dict, order: str, keep_frames: bool) -> tuple[dict, list[np.ndarray]]:
    env = start_run(case["start"], order)
    states, coverage, success, frames = [state_of(env)], [], [], []
    if keep_frames:
        frames.append(env.get_obs())
    for step, target in enumerate(case["targets"], start=1):
        obs, _, _, _, info = env.step(np.array(target, np.float64))
        states.append(state_of(env))
        coverage.append(float(info["coverage"]))
        success.append(bool(info["is_success"]))
        if keep_frames and step in FRAME_STEPS:
            frames.append(obs)
    env.close()
    return {"states": states, "coverage": coverage, "is_success": success}, frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--frames", help="PNG of the first case's gym_pusht frames (steps 0, 4, 10)")
    p.add_argument("--random", type=int, default=0, help="record N random cases instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases")
    args = p.parse_args()
    from importlib.metadata import version

    cases = random_cases(args.random, args.seed) if args.random else fixed_cases()
    for case in cases:
        case["start"] = [float(v) for v in case["start"]]
        case["targets"] = [[float(v) for v in t] for t in case["targets"]]
        case["runs"] = {}
        for order in ("authors", "gym_pusht"):
            keep = bool(args.frames) and order == "gym_pusht" and case is cases[0]
            case["runs"][order], frames = run(case, order, keep)
            if keep:
                strip = cv2.cvtColor(np.concatenate(frames, axis=1), cv2.COLOR_RGB2BGR)
                cv2.imwrite(args.frames, strip)
    out = {
        "source": f"gym-pusht {version('gym-pusht')}, "
        f"pymunk {pymunk.version}, tests/gym_pusht_record.py",
        "state": "agent x, y, block origin x, y, angle mod 2pi, agent vx, vy",
        "frame_steps": list(FRAME_STEPS) if args.frames else [],
        "frame_size": FRAME_SIZE,
        "cases": cases,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({"out": args.out, "cases": len(cases), "frames": args.frames}))


if __name__ == "__main__":
    main()
