"""`lewm decoder-train`: train the visualisation decoder on a frozen model.

The library's command line finds this command through the `lewm.commands` entry point
(pyproject.toml), so `lewm_core` never imports the decoder.

    lewm decoder-train --checkpoint runs/x [--data data/x.h5] [--steps --batch-size --lr --seed]
"""

from __future__ import annotations

import argparse

from lewm_core.cli.arguments import (
    add_model_flag,
    add_output_flags,
    add_seed_flag,
    emit_json,
    path_arg,
    positive_float,
)


def cmd_decoder_train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from decoder.train import train_decoder

    with tqdm(total=args.steps, unit="step", disable=args.quiet, desc="decoder") as bar:

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(step - bar.n)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.5f}")

        summary = train_decoder(
            args.checkpoint,
            args.data,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            frames=args.frames,
            val_frames=args.val_frames,
            progress=progress,
        )
    print(summary["frames_note"])
    print(
        f"decoder saved to {summary['path']}: val PSNR {summary['val_psnr']:.2f} dB "
        f"(mean frame {summary['val_psnr_mean_image']:.2f} dB), val MSE {summary['val_mse']:.5f}"
    )
    if args.json:
        emit_json(summary)


def register(sub) -> None:
    """Add `decoder-train` to the `lewm` parser's sub-parsers `sub`."""
    d = sub.add_parser("decoder-train", help="train the visualisation decoder on a frozen model")
    add_model_flag(d, help="run folder; the decoder is saved there")
    d.add_argument(
        "--data", type=path_arg, help="dataset (default: the one the model was trained on)"
    )
    d.add_argument("--steps", type=int, default=1000, help="training steps")
    d.add_argument("--batch-size", type=int, default=64, help="frames per step")
    d.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate")
    add_seed_flag(d)
    d.add_argument("--frames", type=int, default=10000, help="training frames encoded once")
    d.add_argument(
        "--val-frames", type=int, default=512, help="held-out frames the PSNR is measured on"
    )
    add_output_flags(d)
    d.set_defaults(func=cmd_decoder_train)
