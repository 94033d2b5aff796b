"""How far Push-T v0 and v1 move the T from where the reference (gym-pusht 0.1.8) moves it.

    /tmp/gym_pusht_venv/bin/python tests/gym_pusht_record.py --random 60 --seed 0 \\
        --out /tmp/gym_pusht_60.json                       # the reference (its own venv)
    python research/pusht_versions.py --reference /tmp/gym_pusht_60.json [--json]

For every recorded case (a start state and one absolute agent target per step, recorded in
the authors' set order), each version starts from the same state and steps towards the same
targets, one relative action ``(target - agent position) / 100`` per step; after the last step
(10 steps = 1 s in the recorder's random cases) it compares the T with the reference's:

- ``pos_px``: distance between the midpoints of the bar's outer edge (v1's and the
  reference's block origin; v0 reports its block's centre of mass, 40.71 px down the stem
  from that point, so it is converted);
- ``angle_rad``: the angle difference, the shorter way round.

Prints the median and 90th percentile per version, the median distance the reference moved
the T (for scale), and the share of actions beyond [-1, 1]: v0 clips them (v1 does not, as the
reference), so "v0_unclipped" also steps v0's physics with the unclipped action (through its
private ``_step_sim``; v0 still keeps its targets 22 px off the walls). v0
(``lewm_core.envs.pusht``) differs from the reference by design (friction, a dynamic agent,
its inertia and centre of mass, solid walls, contact-cache reset); v1 should match to
rounding. The last stdout line with --json is one JSON object:
{"cases", "steps", "reference_moved_px", "v0", "v0_unclipped", "v1": {"pos_px": {"median",
"p90"}, "angle_rad": {...}}, "v0_clipped_share"}.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from lewm_core.envs.pusht import BLOCK_COG as V0_COM  # v0's centre of mass, design frame
from lewm_core.envs.pusht import PushTEnv
from lewm_core.envs.pusht_v1 import PushTV1Env, angle_difference, block_points


def bar_midpoint_of_v0(state: np.ndarray) -> np.ndarray:
    """v0 state (10,) -> the world midpoint of the T's bar's outer edge (2,)."""
    return block_points([(-V0_COM[0], -V0_COM[1])], state[4], state[5], state[6])[0]


def v0_start(start: list[float]) -> np.ndarray:
    """A reference start ``[ax, ay, bx, by, angle]`` (block origin) as v0's 10-D state."""
    ax, ay, bx, by, angle = start
    com = block_points([V0_COM], bx, by, angle)[0]
    return np.array([ax, ay, 0.0, 0.0, *com, angle, 0.0, 0.0, 0.0])


def run_v0(case: dict, clip: bool = True) -> tuple[np.ndarray, float, int]:
    """(bar midpoint (2,), angle, actions beyond [-1, 1]) of v0 after the case's targets;
    ``clip=False`` steps its physics with the unclipped action (v0's own step clips it)."""
    env = PushTEnv(64)
    env.set_state(v0_start(case["start"]))
    beyond = 0
    for target in case["targets"]:
        action = (np.array(target) - env.get_state()[:2]) / 100.0
        beyond += int(np.abs(action).max() > 1.0)
        if clip:
            env.simulate(action)
        else:
            env._step_sim(action)  # v0's physics with the reference's action
    s = env.get_state()
    return bar_midpoint_of_v0(s), float(s[6]), beyond


def run_v1(case: dict) -> tuple[np.ndarray, float]:
    env = PushTV1Env(64)
    env.set_state(np.array([*case["start"], 0.0, 0.0]))
    for target in case["targets"]:
        env.simulate((np.array(target) - env.get_state()[:2]) / 100.0)
    s = env.get_state()
    return s[2:4], float(s[4])


def summary(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def compare(reference: dict) -> dict:
    """Per-version differences from the reference's final T (authors' order runs)."""
    versions = ("v0", "v0_unclipped", "v1")
    pos: dict[str, list[float]] = {v: [] for v in versions}
    ang: dict[str, list[float]] = {v: [] for v in versions}
    moved, clipped, actions = [], 0, 0
    for case in reference["cases"]:
        states = np.array(case["runs"]["authors"]["states"])
        ref_pos, ref_angle = states[-1][2:4], float(states[-1][4])
        moved.append(float(np.linalg.norm(states[-1][2:4] - states[0][2:4])))
        p0, a0, n = run_v0(case)
        clipped, actions = clipped + n, actions + len(case["targets"])
        p0u, a0u, _ = run_v0(case, clip=False)
        p1, a1 = run_v1(case)
        for name, p, a in (("v0", p0, a0), ("v0_unclipped", p0u, a0u), ("v1", p1, a1)):
            pos[name].append(float(np.linalg.norm(p - ref_pos)))
            ang[name].append(angle_difference(a, ref_angle))
    return {
        "cases": len(reference["cases"]),
        "steps": len(reference["cases"][0]["targets"]),
        "reference_moved_px": float(np.median(moved)),
        **{v: {"pos_px": summary(pos[v]), "angle_rad": summary(ang[v])} for v in versions},
        "v0_clipped_share": clipped / max(actions, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="JSON from tests/gym_pusht_record.py")
    p.add_argument("--json", action="store_true", help="print a JSON object last")
    args = p.parse_args(argv)
    with open(args.reference) as f:
        result = compare(json.load(f))
    print(f"{result['cases']} cases, T after {result['steps']} steps; the reference moved it "
          f"{result['reference_moved_px']:.1f} px (median)")  # fmt: skip
    for v in ("v0", "v0_unclipped", "v1"):
        r = result[v]
        print(
            f"{v} - reference: T position {r['pos_px']['median']:.3g} px median "
            f"({r['pos_px']['p90']:.3g} p90), angle {r['angle_rad']['median']:.3g} rad median "
            f"({r['angle_rad']['p90']:.3g} p90, {math.degrees(r['angle_rad']['median']):.3g} deg)"
        )
    print(f"{100 * result['v0_clipped_share']:.0f}% of the actions lie beyond [-1, 1] (v0 clips "
          "them; v0_unclipped: v0's physics stepped with them)")  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
