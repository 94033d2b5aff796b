"""`lewm train` (one process, or one rank of `torchrun`) and `lewm model-info`."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from lewm_core.cli.arguments import (
    add_output_flags,
    arch_setting,
    check_range,
    emit_json,
    path_arg,
    seed_arg,
)
from lewm_core.errors import UserError

# Flags built from TrainConfig's knobs that parse their text with the CLI's own checks.
FLAG_TYPES = {"seed": seed_arg, "init_from": path_arg}


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

    from lewm_core.knobs import values_from
    from lewm_core.training.config import TRAIN_FLAGS, TrainConfig
    from lewm_core.training.state import resume_config
    from lewm_core.training.trainer import Trainer

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
            **values_from(args, TrainConfig, TRAIN_FLAGS),
            model_overrides=dict(args.arch or []),
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

    from lewm_core.world_model.config import MAX_SIZES, ModelConfig
    from lewm_core.world_model.model import LeWM, parameter_counts

    check_range("--action-dim", args.action_dim, 1, MAX_SIZES["action_dim"])
    arch = dict(args.arch or [])
    if args.image_size is not None:
        check_range("--image-size", args.image_size, 1, MAX_SIZES["image_size"])
        arch["image_size"] = args.image_size
    try:
        cfg = ModelConfig.preset(args.preset, action_dim=args.action_dim, **arch)
    except ValueError as e:
        raise UserError(f"cannot build the {args.preset} model with these sizes ({e})") from None
    with torch.device("meta"):  # shapes only: nothing is allocated
        counts = parameter_counts(LeWM(cfg))
    layout: dict = {"image_size": cfg.image_size, "encoder": cfg.encoder}
    if cfg.encoder == "cnn":  # the stages the resolution gave, and the map the Linear reads
        side = cfg.cnn_map_side
        layout |= {"cnn_channels": list(cfg.cnn_channels), "cnn_map": f"{side}x{side}"}
    info = {"preset": args.preset, "action_dim": args.action_dim, **arch, **layout, **counts}
    if args.json:
        emit_json(info)
    else:
        for k, v in info.items():
            print(f"{k:24s} {v:,}" if isinstance(v, int) else f"{k:24s} {v}")


def register(sub) -> None:
    """Add `train` and `model-info` to the main parser's sub-parsers `sub`."""
    from lewm_core.knobs import add_flags
    from lewm_core.training.config import TRAIN_FLAGS, TrainConfig
    from lewm_core.world_model.config import PRESETS

    t = sub.add_parser("train", help="train a world model (or --resume one)")
    t.add_argument(
        "--data", type=path_arg, help="HDF5 dataset of `lewm collect` (required unless --resume)"
    )
    t.add_argument(
        "--out", required=True, type=path_arg, help="run folder: config, checkpoints, logs"
    )
    t.add_argument(
        "--preset",
        default="lab",
        choices=PRESETS,
        help="named model and training settings (lewm_core/presets.py)",
    )
    t.add_argument(
        "--arch",
        type=arch_setting,
        action="append",
        metavar="KEY=VALUE",
        help="change one size of the preset's model, e.g. --arch pred_depth=6 (repeatable; "
        "recorded in the run's config.json)",
    )
    add_flags(t, TrainConfig, TRAIN_FLAGS, unset=True, types=FLAG_TYPES)
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
    t.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    add_output_flags(t)
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("model-info", help="parameter counts of a preset")
    m.add_argument(
        "--preset",
        default="paper",
        choices=PRESETS,
        help="named model sizes (lewm_core/presets.py)",
    )
    m.add_argument(
        "--arch",
        type=arch_setting,
        action="append",
        metavar="KEY=VALUE",
        help="change one size of the preset, as in `lewm train` (repeatable)",
    )
    m.add_argument(
        "--action-dim",
        type=int,
        default=2,
        help="action size per raw step (Push-T, Two-Room, Reacher: 2; Cube: 5)",
    )
    m.add_argument(
        "--image-size",
        type=int,
        help="frame side in pixels (default: the preset's); a dataset's resolution sets it in "
        "`lewm train`, and the cnn encoder has one more stride-2 stage per doubling above 64 px",
    )
    m.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    m.set_defaults(func=cmd_model_info)
