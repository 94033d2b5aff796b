"""`lewm eval` and `lewm collect-planned`: plan with CEM + MPC through a model, and the planning
flags they share (the CEM budget and the model's shipped planning settings)."""

from __future__ import annotations

import argparse
import time

from lewm_core.cli.arguments import (
    add_model_flag,
    add_output_flags,
    add_seed_flag,
    check_range,
    emit_json,
    episode_progress,
    path_arg,
)
from lewm_core.knobs import add_flags, check_value, knobs_of, values_from
from lewm_core.planning import GOAL_AT_START, SPLITS
from lewm_core.planning.cem_config import BF16_MIN_SPEEDUP, PRECISION_CHOICES, CEMConfig

CEM_BUDGET = ("samples", "iterations", "elites", "horizon")  # flags with a fixed default
MODEL_DEFAULTS = ("receding_horizon", "context", "sampling", "objective")  # the model's, if unset
CEM_FLAGS = (*CEM_BUDGET, *MODEL_DEFAULTS)


def add_planning_flags(parser: argparse.ArgumentParser) -> None:
    """The planning flags `cem_from_args` reads, built from `CEMConfig`'s knobs: the CEM budget
    (--samples, --iterations, --elites, --horizon; the paper's 300, 30, 30, 5) and
    --receding-horizon, --context, --sampling and --objective, each defaulting to the model's
    shipped setting."""
    knobs = knobs_of(CEMConfig)
    add_flags(parser, CEMConfig, CEM_BUDGET)
    model_default = {
        name: f"; default: the model's, see `lewm ship {knobs[name].flag}`; "
        f"else {knobs[name].default}"
        for name in MODEL_DEFAULTS
    }
    add_flags(parser, CEMConfig, MODEL_DEFAULTS, unset=True, help_suffix=model_default)


def cem_from_args(loaded, args: argparse.Namespace):
    """The model's default CEM settings (`LoadedModel.planning`) with the command's CEM flags
    (`CEM_FLAGS`, as `add_planning_flags` adds them) applied, each checked naming the flag: the
    budget against `CEMConfig`'s limits, --elites against --samples, --context against the
    model's history, --receding-horizon against the horizon."""
    from lewm_core.world_model.checkpoint import check_context

    for name in CEM_BUDGET:
        check_value(CEMConfig, name, getattr(args, name))
    check_range("--elites", args.elites, 1, args.samples)
    if args.context is not None:
        check_context(args.context, loaded.model.cfg.history, "--context got")
    cem = loaded.planning.cem_config(**values_from(args, CEMConfig, CEM_FLAGS))
    if args.receding_horizon is not None:
        check_range("--receding-horizon", args.receding_horizon, 1, cem.horizon)
    return cem


def cmd_collect_planned(args: argparse.Namespace) -> None:
    from lewm_core.data.collect import check_output_path
    from lewm_core.planning.planner_data import collect_planner_episodes
    from lewm_core.world_model.checkpoint import load_model

    for flag, value, lo, hi in (
        ("--episodes", args.episodes, 1, 100_000),
        ("--budget", args.budget, 2, 10_000),
        ("--goal-offset", args.goal_offset, 1, 100_000),
    ):
        check_range(flag, value, lo, hi)
    check_output_path(args.out, args.overwrite)
    loaded = load_model(args.checkpoint)
    cem = cem_from_args(loaded, args)
    t0 = time.perf_counter()
    with episode_progress(args.episodes, "planner episodes", args.quiet) as progress:
        summary = collect_planner_episodes(
            loaded,
            args.data,
            args.out,
            args.episodes,
            seed=args.seed,
            budget=args.budget,
            goal_offset=args.goal_offset,
            goal_kinds=args.goal_kind,
            cem=cem,
            dtype=args.dtype,
            compile_rollout=args.compile,
            overwrite=args.overwrite,
            progress=progress,
        )
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.json:
        emit_json(summary)
    else:
        print(
            f"wrote {summary['out']}: {summary['episodes']} planner episodes, "
            f"{summary['steps']} steps in {summary['wall_s']:.1f} s; "
            f"{summary['reached_goal']:.0%} reached their goal"
        )


def cmd_eval(args: argparse.Namespace) -> None:
    from lewm_core.planning.evaluate import evaluate
    from lewm_core.world_model.checkpoint import load_model

    for flag, value, lo, hi in (
        ("--episodes", args.episodes, 1, 100_000),
        ("--budget", args.budget, 1, 100_000),
        ("--goal-offset", args.goal_offset, 1, 100_000),
        ("--videos", args.videos, 0, 100_000),
    ):
        check_range(flag, value, lo, hi)
    loaded = load_model(args.checkpoint)
    cem = cem_from_args(loaded, args)
    video_dir = args.video_dir or str(loaded.path / "videos")
    summary = evaluate(
        loaded,
        args.episodes,
        args.seed,
        args.data,
        cem,
        args.budget,
        args.goal_offset,
        args.videos,
        video_dir,
        progress=not args.quiet,
        dtype=args.dtype,
        compile_rollout=args.compile,
        split=args.split,
        count_start=args.goal_at_start == "counted",
    )
    lo, hi = summary["success_ci95"]
    print(
        f"success {summary['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%}) over "
        f"{summary['episodes']} episodes; random policy {summary['random_success_rate']:.0%}; "
        f"plan {summary['plan_ms_median']:.0f} ms median, {summary['plan_ms_p95']:.0f} ms p95"
    )
    errors = summary["goal_errors"]
    if errors["failed_within_2x"] is not None:
        ended = ", ".join(
            f"{k} {errors['failed_final_median'][k]:.3g} (tolerance {tol:.3g})"
            for k, tol in errors["tolerance"].items()
        )
        print(
            f"failed episodes ended at (median) {ended}; "
            f"{errors['failed_within_2x']:.0%} of them within twice every tolerance"
        )
    by_kind = ", ".join(
        f"{kind} {k['successes']}/{k['episodes']} (random policy {k['random_successes']})"
        for kind, k in summary["goal_kinds"].items()
    )
    print(f"success by goal kind: {by_kind}")
    if args.json:
        emit_json(summary)


def add_precision_flags(parser: argparse.ArgumentParser) -> None:
    """--dtype and --compile: how the rollout of CEM's candidates runs (`planning.precision`)."""
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=PRECISION_CHOICES,
        help="planning precision; auto = bfloat16 where a measured matmul runs at least "
        f"{BF16_MIN_SPEEDUP:g}x faster than float32, else float32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the rollout (C++ compiler needed): faster plans after a one-time "
        "compilation (`python bench/plan.py` measures both on your machine)",
    )


def register(sub) -> None:
    """Add `collect-planned` and `eval` to the main parser's sub-parsers `sub`."""
    cp = sub.add_parser(
        "collect-planned",
        help="a dataset of the model's own planner episodes (train on them with --extra-data)",
    )
    add_model_flag(cp, help="model folder")
    cp.add_argument(
        "--data",
        required=True,
        type=path_arg,
        help="the model's dataset: tasks come from its training episodes only",
    )
    cp.add_argument("--episodes", type=int, default=100, help="planner episodes to collect")
    add_seed_flag(cp, help="task seed: task i resets the env with seed + i")
    cp.add_argument("--budget", type=int, default=50, help="raw steps per episode")
    cp.add_argument("--goal-offset", type=int, default=25, help="goal = state this many steps on")
    cp.add_argument(
        "--goal-kind",
        action="append",
        help="only tasks of this kind (e.g. push for Push-T; repeatable; default: all)",
    )
    add_planning_flags(cp)  # a run folder has no shipped settings: give the planner's
    add_precision_flags(cp)
    cp.add_argument("--out", required=True, type=path_arg, help="HDF5 file to write (atomically)")
    cp.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_output_flags(cp)
    cp.set_defaults(func=cmd_collect_planned)

    e = sub.add_parser("eval", help="planning success with CEM + MPC (the paper's protocol)")
    add_model_flag(e, help="run folder (config.json + safetensors)")
    e.add_argument(
        "--data",
        type=path_arg,
        help="dataset for start/goal states (default: fresh policy episodes)",
    )
    e.add_argument(
        "--split",
        default="val",
        choices=tuple(SPLITS),
        help="which episodes of --data the start states come from: "
        + "; ".join(f"{name}: {what}" for name, what in SPLITS.items()),
    )
    e.add_argument(
        "--goal-at-start",
        default="counted",
        choices=tuple(GOAL_AT_START),
        help="a task whose goal holds at its start, for the planner and the random policy: "
        + "; ".join(f"{name}: {what}" for name, what in GOAL_AT_START.items()),
    )
    e.add_argument("--episodes", type=int, default=50, help="tasks (start, goal) to plan")
    add_seed_flag(e, help="task seed: the same seed draws the same tasks")
    e.add_argument("--budget", type=int, default=50, help="raw steps per episode")
    e.add_argument("--goal-offset", type=int, default=25, help="goal = state this many steps on")
    add_planning_flags(e)
    add_precision_flags(e)
    e.add_argument("--videos", type=int, default=0, help="write videos of the first K episodes")
    e.add_argument(
        "--video-dir", type=path_arg, help="folder for --videos (default: <checkpoint>/videos)"
    )
    add_output_flags(e)
    e.set_defaults(func=cmd_eval)
