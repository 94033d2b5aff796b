"""`lewm collect`: a dataset of an environment's data policy (HDF5, written atomically)."""

from __future__ import annotations

import argparse
import time

from lewm_core.cli.arguments import (
    add_output_flags,
    add_seed_flag,
    emit_json,
    episode_progress,
    path_arg,
)


def cmd_collect(args: argparse.Namespace) -> None:
    from lewm_core.data.collect import CollectSpec, check_output_path, collect, validate_spec
    from lewm_core.data.dataset import episode_lengths

    spec = CollectSpec(args.env, args.episodes, args.steps, args.resolution, args.seed, args.policy)
    validate_spec(spec, args.workers)  # bad input fails before any progress bar is drawn
    check_output_path(args.out, args.overwrite)

    t0 = time.perf_counter()
    with episode_progress(args.episodes, f"collect {args.env}", args.quiet) as progress:
        out = collect(
            spec, args.out, workers=args.workers, overwrite=args.overwrite, progress=progress
        )
    wall = time.perf_counter() - t0
    lengths = episode_lengths(out)
    summary = {
        "out": str(out),
        "env": args.env,
        "episodes": args.episodes,
        "steps": int(lengths.sum()),
        "episode_steps": {"min": int(lengths.min()), "max": int(lengths.max())},
        "wall_s": round(wall, 2),
    }
    if args.json:
        emit_json(summary)
    else:
        lo, hi = summary["episode_steps"].values()
        each = f"{lo}" if lo == hi else f"{lo} to {hi}"
        print(
            f"wrote {out}: {args.episodes} episodes of {each} steps, {summary['steps']} steps "
            f"in {wall:.1f} s"
        )


def register(sub) -> None:
    """Add `collect` to the main parser's sub-parsers `sub`."""
    c = sub.add_parser("collect", help="collect a dataset with an env's data policy")
    c.add_argument(
        "--env",
        required=True,
        help="environment: tworoom, pusht-v1 (the paper's Push-T), pusht (v0), reacher or cube",
    )
    c.add_argument("--episodes", type=int, default=100, help="episodes to collect")
    c.add_argument(
        "--steps",
        type=int,
        default=100,
        help="raw steps per episode: the most, where the policy ends its episodes earlier "
        "(pusht-v1's expert: at the first step with the T at the goal)",
    )
    c.add_argument("--resolution", type=int, default=64, help="frame side in pixels")
    add_seed_flag(c, help="data seed: episode k is drawn from (seed, k) alone")
    c.add_argument(
        "--policy",
        default="default",
        help="the env's data policy: default, or expert for pusht and pusht-v1 (pushes the T to "
        "goal poses)",
    )
    c.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel processes; the file is the same for any number",
    )
    c.add_argument("--out", required=True, type=path_arg, help="HDF5 file to write (atomically)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_output_flags(c)
    c.set_defaults(func=cmd_collect)
