"""Environment throughput benchmark: step + render per second at 64 px with policy actions.

Usage: ``python bench/envs.py [--json] [--seconds S] [--resolution R]``. Prints a table; with
``--json`` the last line is a JSON object ``{"tworoom_steps_s": ..., "pusht_steps_s": ...,
"pusht-v1_steps_s": ..., "reacher_steps_s": ..., "cube_steps_s": ...}``. Targets (64 px, one
process): Two-Room >= 20,000/s, Push-T v0 >= 5,000/s, Push-T (v1) >= 1,000/s (it draws at
512 px and resizes twice, as the reference's frames are made), Reacher >= 200/s, Cube >= 100/s.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from lewm_core.envs import make, make_policy  # noqa: E402

TARGETS = {
    "tworoom": 20_000.0,
    "pusht": 5_000.0,
    "pusht-v1": 1_000.0,
    "reacher": 200.0,
    "cube": 100.0,
}
EPISODE_LEN = 100


def measure_env_steps(name: str, seconds: float = 2.5, resolution: int = 64) -> float:
    """Env steps per second (policy act + step incl. render) of ``name``, resets every 100."""
    env = make(name, resolution)
    try:
        policy = make_policy(name, env, seed=0)
        env.reset(seed=0)
        policy.reset()
        for _ in range(20):  # warm-up (lazy renderer creation, caches)
            env.step(policy.act())
        steps, t_in_reset = 0, 0.0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(EPISODE_LEN):
                env.step(policy.act())
            steps += EPISODE_LEN
            if time.perf_counter() >= deadline:
                break
            t0 = time.perf_counter()
            env.reset()
            policy.reset()
            t_in_reset += time.perf_counter() - t0
        elapsed = time.perf_counter() - start - t_in_reset
        return steps / elapsed
    finally:
        env.close()


def measure_collection(
    env: str = "pusht", episodes: int = 1000, steps: int = 100, workers: int = 2
) -> float:
    """Wall seconds of `lewm collect` (policy, render, compressed HDF5) into a temporary file."""
    import tempfile
    from pathlib import Path

    from lewm_core.data.collect import CollectSpec, collect

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        collect(CollectSpec(env, episodes, steps, 64, seed=0), Path(tmp) / "d.h5", workers=workers)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run all measurements, print a table (and a JSON line with --json); return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON object last")
    parser.add_argument("--seconds", type=float, default=2.5, help="timed seconds per env")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument(
        "--collect-episodes",
        type=int,
        default=1000,
        help="Push-T episodes (100 steps, 2 workers) to time collecting; 0 skips",
    )
    args = parser.parse_args(argv)

    results: dict[str, float] = {}
    print(f"{'env':<10}{'steps/s':>12}{'target':>10}  ok")
    for name, target in TARGETS.items():
        rate = measure_env_steps(name, args.seconds, args.resolution)
        results[f"{name}_steps_s"] = round(rate, 1)
        print(f"{name:<10}{rate:>12,.0f}{target:>10,.0f}  {'yes' if rate >= target else 'NO'}")
    if args.collect_episodes:
        wall = measure_collection("pusht", args.collect_episodes)
        results["pusht_collect_s"] = round(wall, 1)
        results["pusht_collect_episodes"] = args.collect_episodes
        ok = "yes" if args.collect_episodes < 1000 or wall <= 120 else "NO"
        print(
            f"collect {args.collect_episodes} Push-T episodes x 100 steps, 2 workers: "
            f"{wall:.1f} s (target <= 120 s for 1,000)  {ok}"
        )
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
