"""The `lewm` command line: collect data, train, inspect and evaluate world models.

Every command that reports numbers takes `--json`: its last stdout line is then one JSON object.
Bad input prints one line `error: <problem and fix>` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time

from lewm_core.cli.arguments import (
    arch_setting,
    emit_json,
    finite_float,
    path_arg,
    seed_arg,
)
from lewm_core.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


@contextlib.contextmanager
def _sigint_flag():
    """Record Ctrl-C (SIGINT) in the yielded list instead of raising KeyboardInterrupt at once.

    The command checks the list at safe points and stops there. A KeyboardInterrupt raised at
    an arbitrary moment may land inside a finalizer or a library callback, which swallows it
    (then a parallel collection waited forever for the episodes of its interrupted workers),
    or between two updates that belong together. Outside the main thread (the lab) nothing is
    installed. Installed even when a parent process ignored SIGINT for us.
    """
    hits: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _episode_progress(total: int, desc: str, quiet: bool):
    """Yield a `progress(done, total)` callback that draws a tqdm bar of episodes; Ctrl-C
    stops between two episodes (KeyboardInterrupt from the callback: the writer then removes
    its temporary file)."""
    from tqdm import tqdm

    with (
        _sigint_flag() as interrupted,
        tqdm(total=total, unit="ep", desc=desc, disable=quiet) as bar,
    ):

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            if interrupted:
                raise KeyboardInterrupt

        yield progress


def _check_range(flag: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise UserError(f"{flag} must be between {lo} and {hi} (got {value})")


def _add_planning_flags(parser: argparse.ArgumentParser) -> None:
    """The planning flags `_cem_from_args` reads: the CEM budget (--samples, --iterations,
    --elites, --horizon; the paper's 300, 30, 30, 5) and --receding-horizon, --context,
    --sampling and --objective, each defaulting to the model's shipped setting."""
    from lewm_core.world_model.config import OBJECTIVES, SAMPLINGS

    parser.add_argument("--samples", type=int, default=300, help="CEM candidates per iteration")
    parser.add_argument("--iterations", type=int, default=30, help="CEM iterations per plan")
    parser.add_argument("--elites", type=int, default=30, help="CEM candidates refitted on")
    parser.add_argument("--horizon", type=int, default=5, help="action blocks per plan")
    parser.add_argument(
        "--receding-horizon",
        type=int,
        help="blocks of each plan executed before the next plan, at most the CEM horizon "
        "(published: all 5; default: the model's, see `lewm ship --receding-horizon`; else 5)",
    )
    parser.add_argument(
        "--context",
        type=int,
        help="observed frames each plan starts from, one block apart, with the blocks executed "
        "between them (1: the current frame, as published; at most the model's history; "
        "default: the model's, see `lewm ship --context`; else 1)",
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        help="CEM action sampling (default: the model's, see `lewm ship --sampling`; else block)",
    )
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="a candidate's cost: its last predicted latent's squared distance to the goal's "
        "(last, as published) or the smallest over the horizon (min); default: the model's, see "
        "`lewm ship --objective`; else last",
    )


CEM_FLAGS = (
    "samples", "iterations", "elites", "horizon", "sampling", "receding_horizon", "context",
    "objective",
)  # fmt: skip


def _cem_from_args(loaded, args: argparse.Namespace):
    """The model's default CEM settings (`LoadedModel.planning`) with the command's CEM flags
    (`CEM_FLAGS`, as `_add_planning_flags` adds them) applied, each checked: the budget against
    its range, --context against the model's history, --receding-horizon against the horizon,
    naming the flag."""
    from lewm_core.world_model.checkpoint import check_context

    for flag, value, lo, hi in (
        ("--samples", args.samples, 1, 100_000),  # CEM holds samples x horizon latents
        ("--iterations", args.iterations, 1, 10_000),
        ("--elites", args.elites, 1, args.samples),
        ("--horizon", args.horizon, 1, 100),
    ):
        _check_range(flag, value, lo, hi)
    if args.context is not None:
        check_context(args.context, loaded.model.cfg.history, "--context got")
    cem = loaded.planning.cem_config(**{k: getattr(args, k) for k in CEM_FLAGS})
    if args.receding_horizon is not None:
        _check_range("--receding-horizon", args.receding_horizon, 1, cem.horizon)
    return cem


def cmd_collect(args: argparse.Namespace) -> None:
    from lewm_core.data.collect import CollectSpec, check_output_path, collect, validate_spec

    spec = CollectSpec(args.env, args.episodes, args.steps, args.resolution, args.seed, args.policy)
    validate_spec(spec, args.workers)  # bad input fails before any progress bar is drawn
    check_output_path(args.out, args.overwrite)

    t0 = time.perf_counter()
    with _episode_progress(args.episodes, f"collect {args.env}", args.quiet) as progress:
        out = collect(
            spec, args.out, workers=args.workers, overwrite=args.overwrite, progress=progress
        )
    wall = time.perf_counter() - t0
    summary = {
        "out": str(out),
        "env": args.env,
        "episodes": args.episodes,
        "steps": args.episodes * args.steps,
        "wall_s": round(wall, 2),
    }
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {out}: {args.episodes} episodes, {summary['steps']} steps in {wall:.1f} s")


def cmd_collect_planned(args: argparse.Namespace) -> None:
    from lewm_core.data.collect import check_output_path
    from lewm_core.planning.planner_data import collect_planner_episodes
    from lewm_core.world_model.checkpoint import load_model

    for flag, value, lo, hi in (
        ("--episodes", args.episodes, 1, 100_000),
        ("--budget", args.budget, 2, 10_000),
        ("--goal-offset", args.goal_offset, 1, 100_000),
    ):
        _check_range(flag, value, lo, hi)
    check_output_path(args.out, args.overwrite)
    loaded = load_model(args.checkpoint)
    cem = _cem_from_args(loaded, args)
    t0 = time.perf_counter()
    with _episode_progress(args.episodes, "planner episodes", args.quiet) as progress:
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


def cmd_train(args: argparse.Namespace) -> None:
    """Train in this process, or as one rank of `torchrun --nproc_per_node N -m lewm_core train`."""
    from lewm_core.training import distributed

    in_main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        _train(args)
    finally:
        distributed.shutdown()
        for signum, handler in handlers.items():  # as they were (`main` called in-process)
            if handler is not None:
                signal.signal(signum, handler)
    if distributed.env_info().world_size > 1:  # a torchrun worker whose run is complete
        distributed.exit_worker(0)


def _train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from lewm_core.training.trainer import TrainConfig, Trainer, resume_config

    # Ctrl-C (SIGINT) while the data loads stops at once (nothing is written yet); once training
    # runs it saves a checkpoint. Even when a parent process ignored SIGINT for us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.resume:
        # from the checkpoint itself (config.json may be missing or one checkpoint older), with
        # --out as given: a moved or copied run folder resumes where it is
        fixed = (args.arch, args.init_from, args.rollout_steps, args.rollout_context)
        if any(fixed) or args.extra_data or args.extra_repeat:
            raise UserError(
                "--arch, --init-from, --rollout-* and --extra-* cannot change a run being "
                "resumed; drop them"
            )
        cfg = resume_config(args.out)
        for k in ("epochs", "max_steps", "threads", "loader_workers", "compile"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
    else:
        if args.data is None:
            raise UserError("--data is required for a new run (the .h5 file from `lewm collect`)")
        cfg = TrainConfig.from_preset(
            args.preset,
            args.data,
            args.out,
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            sigreg_weight=args.sigreg_weight,
            warmup_frac=args.warmup_frac,
            preload_max_gb=args.preload_max_gb,
            seed=args.seed,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
            threads=args.threads,
            loader_workers=args.loader_workers,
            compile=args.compile,
            model_overrides=dict(args.arch or []),
            init_from=args.init_from,
            rollout_steps=args.rollout_steps,
            rollout_context=args.rollout_context,
            extra_data=list(args.extra_data or []),
            # one number stays a number (the config of a run with one repeat for all files)
            extra_repeat=r[0] if (r := args.extra_repeat) and len(r) == 1 else r,
        )
    trainer = Trainer(cfg, resume=args.resume)
    main = trainer.dist.is_main  # rank 0 prints; the others stay quiet
    interrupted = []
    several = trainer.dist.world_size > 1

    # Ctrl-C asks the trainer to stop after the current step; `run` then saves a checkpoint.
    # Never in the middle of a step or of a checkpoint: a KeyboardInterrupt there could save
    # weights already updated by a step that was not counted, or lose or repeat a metrics row.
    # Several processes: a signal must not interrupt one rank inside a collective either; every
    # rank asks to stop, they agree in the next step, rank 0 checkpoints, all exit. One process:
    # a second Ctrl-C stops at once (the files on disk stay whole: every write is atomic).
    def ask_stop(signum, frame) -> None:
        if interrupted and not several:
            raise KeyboardInterrupt
        interrupted.append(signum)
        trainer.request_stop()

    signal.signal(signal.SIGINT, ask_stop)
    if several:
        signal.signal(signal.SIGTERM, ask_stop)
    bar = tqdm(
        total=trainer.total_steps,
        initial=trainer.step_count,
        unit="step",
        disable=args.quiet or not main,
    )

    def on_step(m: dict) -> None:
        bar.update(1)
        if m["step"] % 10 == 0:
            bar.set_postfix(
                loss=f"{m['loss']:.4f}", pred=f"{m['pred_loss']:.4f}", sigreg=f"{m['sigreg']:.3f}"
            )

    try:
        summary = trainer.run(on_step)
    finally:
        bar.close()
    if interrupted and summary["stopped_early"]:
        err = UserError(
            f"interrupted at step {summary['steps']}; checkpoint saved in {cfg.out}: "
            "continue with --resume"
        )
        err.collective = True  # every rank stopped at the same step: rank 0 reports it
        raise err
    if not main:
        return
    if args.json:
        emit_json(summary)
    else:
        print(json.dumps(summary, indent=2))


def cmd_model_info(args: argparse.Namespace) -> None:
    import torch

    from lewm_core.world_model.config import ModelConfig
    from lewm_core.world_model.model import LeWM, parameter_counts

    _check_range("--action-dim", args.action_dim, 1, 1024)
    arch = dict(args.arch or [])
    try:
        cfg = ModelConfig.preset(args.preset, action_dim=args.action_dim, **arch)
    except ValueError as e:
        raise UserError(f"cannot build the {args.preset} model with --arch ({e})") from None
    with torch.device("meta"):  # shapes only: nothing is allocated
        counts = parameter_counts(LeWM(cfg))
    info = {"preset": args.preset, "action_dim": args.action_dim, **arch, **counts}
    if args.json:
        emit_json(info)
    else:
        for k, v in info.items():
            print(f"{k:24s} {v:,}" if isinstance(v, int) else f"{k:24s} {v}")


def cmd_eval(args: argparse.Namespace) -> None:
    from lewm_core.planning.evaluate import evaluate
    from lewm_core.world_model.checkpoint import load_model

    for flag, value, lo, hi in (
        ("--episodes", args.episodes, 1, 100_000),
        ("--budget", args.budget, 1, 100_000),
        ("--goal-offset", args.goal_offset, 1, 100_000),
        ("--videos", args.videos, 0, 100_000),
    ):
        _check_range(flag, value, lo, hi)
    loaded = load_model(args.checkpoint)
    cem = _cem_from_args(loaded, args)
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


def _last_json_line(path: str, command: str) -> dict:
    """The JSON object on the last line of a `--json` output file written by `command`."""
    from pathlib import Path

    text = Path(path).read_text().strip().splitlines() if Path(path).is_file() else []
    if not text:
        raise UserError(f"{path} is missing or empty; write it with `{command} --json > {path}`")
    try:
        result = json.loads(text[-1])
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise UserError(
            f"the last line of {path} is not a JSON object; write it with `{command} --json`"
        )
    return result


def cmd_ship(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lewm_core.shipping import eval_label, ship

    evals = {}
    for path in args.eval or []:
        e = _last_json_line(path, "lewm eval")
        evals[eval_label(e, Path(path).stem)] = e
    probe = _last_json_line(args.probe, "lewm probe") if args.probe else None
    surprise = _last_json_line(args.surprise, "lewm surprise") if args.surprise else None
    out = ship(
        args.run,
        args.out,
        evals,
        planning={
            "sampling": args.sampling,
            "context": args.context,
            "objective": args.objective,
            "receding_horizon": args.receding_horizon,
        },
        probe=probe,
        surprise=surprise,
    )
    print(f"shipped {args.run} to {out}")


def build_parser() -> argparse.ArgumentParser:
    from lewm_core.world_model.config import OBJECTIVES, PRESETS, SAMPLINGS

    p = _Parser(prog="lewm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("collect", help="collect a dataset with an env's data policy")
    c.add_argument("--env", required=True)
    c.add_argument("--episodes", type=int, default=100)
    c.add_argument("--steps", type=int, default=100, help="raw steps per episode")
    c.add_argument("--resolution", type=int, default=64)
    c.add_argument("--seed", type=seed_arg, default=0)
    c.add_argument(
        "--policy",
        default="default",
        help="the env's data policy: default, or for pusht 'expert' (pushes the T to goal poses)",
    )
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--out", required=True, type=path_arg)
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_collect)

    cp = sub.add_parser(
        "collect-planned",
        help="a dataset of the model's own planner episodes (train on them with --extra-data)",
    )
    cp.add_argument("--checkpoint", required=True, type=path_arg, help="model folder")
    cp.add_argument(
        "--data",
        required=True,
        type=path_arg,
        help="the model's dataset: tasks come from its training episodes only",
    )
    cp.add_argument("--episodes", type=int, default=100)
    cp.add_argument("--seed", type=seed_arg, default=0)
    cp.add_argument("--budget", type=int, default=50, help="raw steps per episode")
    cp.add_argument("--goal-offset", type=int, default=25, help="goal = state this many steps on")
    cp.add_argument(
        "--goal-kind",
        action="append",
        help="only tasks of this kind (e.g. push for Push-T; repeatable; default: all)",
    )
    _add_planning_flags(cp)  # a run folder has no shipped settings: give the planner's
    cp.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    cp.add_argument("--compile", action="store_true", help="torch.compile the rollout")
    cp.add_argument("--out", required=True, type=path_arg)
    cp.add_argument("--overwrite", action="store_true")
    cp.add_argument("--quiet", action="store_true")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_collect_planned)

    t = sub.add_parser("train", help="train a world model (or --resume one)")
    t.add_argument("--data", type=path_arg)
    t.add_argument("--out", required=True, type=path_arg)
    t.add_argument("--preset", default="lab", choices=PRESETS)
    t.add_argument(
        "--arch",
        type=arch_setting,
        action="append",
        metavar="KEY=VALUE",
        help="change one size of the preset's model, e.g. --arch pred_depth=6 (repeatable; "
        "recorded in the run's config.json)",
    )
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=finite_float)
    t.add_argument("--weight-decay", type=finite_float)
    t.add_argument("--sigreg-weight", type=finite_float, help="lambda; 0 disables SIGReg")
    t.add_argument(
        "--warmup-frac",
        type=finite_float,
        help="fraction of the steps spent in the linear lr warm-up (preset default: paper 0.01, "
        "lab 0.03)",
    )
    t.add_argument(
        "--preload-max-gb",
        type=finite_float,
        help="read the dataset's pixels into RAM when they take at most this many GB "
        "(default 4; a GPU box with RAM to spare trains several times faster preloaded)",
    )
    t.add_argument("--seed", type=seed_arg)
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument(
        "--threads", type=int, help="CPU threads (default: every core, shared among processes)"
    )
    t.add_argument(
        "--loader-workers",
        type=int,
        help="DataLoader worker processes per training process (default: 4 on CUDA, 0 on CPU)",
    )
    t.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model for training (GPU; first steps are slow while it compiles)",
    )
    t.add_argument(
        "--init-from",
        type=path_arg,
        metavar="MODEL_FOLDER",
        help="fine-tune: start from this model's weights (a run or shipped folder of the same "
        "architecture) with a fresh optimiser and schedule; recorded in config.json",
    )
    t.add_argument(
        "--rollout-steps",
        type=int,
        metavar="K",
        help="add a rollout loss (not in the paper): predict K latents autoregressively from "
        "the clip's first frames, as planning does (default 0: teacher forcing alone)",
    )
    t.add_argument(
        "--rollout-context",
        type=int,
        metavar="C",
        help="true frames the rollout loss starts from (default 1, planning's default context)",
    )
    t.add_argument(
        "--extra-data",
        type=path_arg,
        action="append",
        metavar="H5",
        help="a training-only dataset of the same env, e.g. the planner's own episodes from "
        "`lewm collect-planned` (repeatable; all its clips are trained on, none held out)",
    )
    t.add_argument(
        "--extra-repeat",
        type=int,
        nargs="+",
        metavar="N",
        help="draw each --extra-data clip N times as often as a --data clip (default 1); one "
        "number for every file, or one per --extra-data file in their order",
    )
    t.add_argument("--resume", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("model-info", help="parameter counts of a preset")
    m.add_argument("--preset", default="paper", choices=PRESETS)
    m.add_argument("--arch", type=arch_setting, action="append", metavar="KEY=VALUE")
    m.add_argument("--action-dim", type=int, default=2)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_model_info)

    e = sub.add_parser("eval", help="planning success with CEM + MPC (the paper's protocol)")
    e.add_argument(
        "--checkpoint", required=True, type=path_arg, help="run folder (config.json + safetensors)"
    )
    e.add_argument(
        "--data",
        type=path_arg,
        help="dataset for start/goal states (default: fresh policy episodes)",
    )
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed", type=seed_arg, default=0)
    e.add_argument("--budget", type=int, default=50, help="raw steps per episode")
    e.add_argument("--goal-offset", type=int, default=25, help="goal = state this many steps on")
    _add_planning_flags(e)
    e.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="planning precision; auto = bfloat16 where it multiplies 1.5x faster than float32",
    )
    e.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the rollout (C++ compiler needed): ~25%% faster plans after a "
        "one-time compilation of ~5-60 s",
    )
    e.add_argument("--videos", type=int, default=0, help="write videos of the first K episodes")
    e.add_argument("--video-dir", type=path_arg)
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)
    s = sub.add_parser("ship", help="copy a run to a small model folder with a model card")
    s.add_argument("--run", required=True, type=path_arg)
    s.add_argument("--out", required=True, type=path_arg, help="e.g. assets/models/tworoom")
    s.add_argument("--eval", action="append", help="`lewm eval --json` output file (repeatable)")
    s.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        help="record this CEM sampling as the model's default (choose it on other episodes "
        "than the ones you report, e.g. `lewm eval --seed 1`)",
    )
    s.add_argument(
        "--context",
        type=int,
        help="record this planning context (observed frames, 1 to the model's history) as the "
        "model's default (choose it on other episodes than the ones you report)",
    )
    s.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="record this CEM objective as the model's default (choose it on other episodes)",
    )
    s.add_argument(
        "--receding-horizon",
        type=int,
        help="record the blocks executed per plan (1 to 5) as the model's default (choose it on "
        "other episodes)",
    )
    s.add_argument("--probe", type=path_arg, help="`lewm probe --json` output file on this run")
    s.add_argument(
        "--surprise", type=path_arg, help="`lewm surprise --json` output file on this run"
    )
    s.set_defaults(func=cmd_ship)

    from lewm_core.cli.analysis import register

    register(sub)  # decoder-train, probe, tsne, surprise, straightness
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        rank = os.environ.get("RANK", "0")  # set by torchrun
        if rank in ("", "0"):
            sys.stderr.write(f"error: {e}\n")
        elif not getattr(e, "collective", False):  # all ranks failed alike: rank 0 said it
            sys.stderr.write(f"error: [rank {rank}] {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing half-written was kept\n")
        return 130
    except OSError as e:  # a file that could not be read or written (damaged, disk full, ...)
        what = f" ({e.filename})" if getattr(e, "filename", None) else ""
        sys.stderr.write(f"error: {str(e).splitlines()[0][:200]}{what}; check the file\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
