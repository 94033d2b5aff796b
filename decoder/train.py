"""Training the visualisation decoder on a frozen world model's latents.

Frames of the run's training episodes are encoded once by the frozen encoder (eval mode, no
gradient), then the decoder learns latent -> pixels with an MSE loss on pixels in [0, 1]
(AdamW, linear warm-up then cosine decay). Held-out frames (the run's validation episodes)
give the reported MSE and PSNR. Where the run's dataset is not on disk the frames come from
its held-out sample (`lewm_core.data.samples.resolve_frames`), split by `SAMPLE_SPLIT`. The result
is written beside the world model, atomically:

    runs/<name>/decoder.safetensors   decoder weights (safetensors, never a pickle)
    runs/<name>/decoder.json          {"config": DecoderConfig, "train": ..., "metrics": ...}
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from decoder import DECODER_CONFIG, DECODER_WEIGHTS
from decoder.model import DecoderConfig, LatentDecoder
from lewm_core.analysis.frames import (
    check_dataset_matches,
    encode_frames,
    read_rows,
    sample_split_rows,
)
from lewm_core.atomic import write_json
from lewm_core.data.dataset import open_dataset
from lewm_core.data.samples import resolve_frames
from lewm_core.errors import UserError
from lewm_core.training.trainer import lr_at
from lewm_core.world_model.checkpoint import (
    check_weights_match,
    load_model,
    load_tensors,
    save_tensors,
    tensor_shapes,
)


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> np.ndarray:
    """Per-image PSNR in dB of two image stacks (..., H, W, C): shape (...).

    10 * log10(max_val^2 / MSE); identical images give +inf. Inputs may be uint8 or float
    (use max_val=1.0 for images in [0, 1]).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"PSNR of images of different shapes {a.shape} and {b.shape}")
    mse = ((a - b) ** 2).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(max_val**2 / np.maximum(mse, 1e-300)), np.inf)


def finite_mean(x: np.ndarray) -> float | None:
    """Mean of the finite entries (None if there are none): for PSNR averages with infs."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


@torch.no_grad()
def decode_images(decoder: LatentDecoder, z: np.ndarray | torch.Tensor, batch: int = 256):
    """Latents (N, D) -> uint8 images (N, H, W, 3) with the decoder in eval mode."""
    was = decoder.training
    decoder.eval()
    z = torch.as_tensor(np.asarray(z, np.float32) if isinstance(z, np.ndarray) else z)
    z = z.to(next(decoder.parameters()).device, torch.float32)
    out = [
        (decoder(z[i : i + batch]) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        for i in range(0, len(z), batch)
    ]
    decoder.train(was)
    c = decoder.cfg
    return np.concatenate(out) if out else np.zeros((0, c.image_size, c.image_size, 3), np.uint8)


def train_decoder(
    run_dir: str | os.PathLike,
    data_path: str | os.PathLike | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    frames: int = 10000,
    val_frames: int = 512,
    config: dict | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train a `LatentDecoder` on the frozen encoder of the model in `run_dir` and save it.

    Encodes up to `frames` train-episode frames (N, H, W, 3) -> latents (N, D) once, then runs
    `steps` AdamW steps of batch `batch_size` on MSE(decoder(z), pixels / 255). `config`
    overrides `DecoderConfig` fields (latent_dim and image_size come from the model).
    `progress(step, steps, loss)` is called after every step. Returns {"steps", "train_loss"
    (mean of the last 50 steps), "val_mse", "val_psnr", "val_psnr_mean_image" (PSNR of the mean
    training frame: the floor), "params", "wall_s", "path", ...}.
    """
    if steps < 1:
        raise UserError(f"--steps must be at least 1 (got {steps})")
    if not 1 <= batch_size <= 65536:
        raise UserError("--batch-size must be between 1 and 65536")
    if not (math.isfinite(lr) and 0 < lr < 1):
        raise UserError("--lr must be a finite number in (0, 1)")
    if frames < 1 or val_frames < 1:
        raise UserError("--frames and --val-frames must be at least 1")
    t0 = time.perf_counter()
    loaded = load_model(run_dir)
    source = resolve_frames(loaded, data_path)
    path = source.path
    with open_dataset(path) as f:
        check_dataset_matches(loaded, f, path)
        train_rows, val_rows = sample_split_rows(f, frames, val_frames, seed, *source.split)
        rows = np.concatenate([train_rows, val_rows])
        pixels = read_rows(f["pixels"], rows)
    n_train = len(train_rows)
    z = torch.from_numpy(encode_frames(loaded.model, pixels))
    x = torch.from_numpy(pixels)
    z_train, x_train, z_val, x_val = z[:n_train], x[:n_train], z[n_train:], x[n_train:]

    try:
        cfg = DecoderConfig.from_dict(
            {
                **(config or {}),
                "latent_dim": loaded.config.latent_dim,
                "image_size": loaded.config.image_size,
            }
        )
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    torch.manual_seed(seed)
    decoder = LatentDecoder(cfg)
    decoder.set_output_bias(x_train.float().mean(0) / 255.0)
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    gen = np.random.default_rng([seed, 41])
    losses = []
    decoder.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        idx = torch.from_numpy(gen.integers(0, n_train, size=min(batch_size, n_train)))
        target = x_train[idx].float() / 255.0
        loss = F.mse_loss(decoder(z_train[idx]), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        value = loss.item()
        if not math.isfinite(value):
            raise UserError(f"decoder training diverged at step {step} (loss {value}); lower --lr")
        losses.append(value)
        if progress is not None:
            progress(step + 1, steps, value)

    recon = decode_images(decoder, z_val)
    val = x_val.numpy()
    mean_image = np.broadcast_to(x_train.float().mean(0).round().to(torch.uint8).numpy(), val.shape)
    metrics = {
        "val_mse": float(((recon / 255.0 - val / 255.0) ** 2).mean()),
        "val_psnr": finite_mean(psnr(recon, val)),
        "val_psnr_mean_image": finite_mean(psnr(mean_image, val)),
    }
    run_dir = Path(run_dir)
    save_tensors(run_dir / DECODER_WEIGHTS, decoder.state_dict())
    summary = {
        "steps": steps,
        "train_loss": float(np.mean(losses[-50:])),
        **metrics,
        "params": sum(p.numel() for p in decoder.parameters()),
        "train_frames": int(n_train),
        "val_frames": int(len(val_rows)),
        "wall_s": round(time.perf_counter() - t0, 2),
        "path": str(run_dir / DECODER_WEIGHTS),
        "data": str(path),
        "data_source": source.source,
        "frames_note": source.note(n_train + len(val_rows)),
    }
    write_json(
        run_dir / DECODER_CONFIG,
        {
            "config": cfg.to_dict(),
            "train": {
                "data": str(path),
                "data_source": source.source,
                "steps": steps,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "frames": int(n_train),
                "model_step": loaded.meta.get("step"),
            },
            "metrics": {k: summary[k] for k in ("train_loss", *metrics)},
        },
    )
    return summary


def load_decoder(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LatentDecoder:
    """The decoder saved in `run_dir` (eval mode); UserError naming the fix if absent/bad."""
    import json

    run_dir = Path(run_dir)
    cfg_path = run_dir / DECODER_CONFIG
    if not cfg_path.is_file():
        raise UserError(
            f"{run_dir} has no decoder ({DECODER_CONFIG} missing); train one with "
            f"`lewm decoder-train --checkpoint {run_dir}`"
        )
    try:
        cfg = DecoderConfig.from_dict(json.loads(cfg_path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{cfg_path} is malformed ({e}); train the decoder again") from None
    if not (run_dir / DECODER_WEIGHTS).is_file():
        raise UserError(
            f"{run_dir} has {DECODER_CONFIG} but no {DECODER_WEIGHTS}; train the decoder again "
            f"with `lewm decoder-train --checkpoint {run_dir}`"
        )
    weights = run_dir / DECODER_WEIGHTS
    try:
        with torch.device("meta"):  # names and shapes before any allocation (see load_model)
            expected = {k: tuple(v.shape) for k, v in LatentDecoder(cfg).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError) as e:
        raise UserError(f"{cfg_path} describes no buildable decoder ({e})") from None
    check_weights_match(weights, tensor_shapes(weights), expected, DECODER_CONFIG)
    decoder = LatentDecoder(cfg)
    state = load_tensors(weights)
    try:
        decoder.load_state_dict(state)
    except RuntimeError:
        raise UserError(
            f"{run_dir / DECODER_WEIGHTS} does not match {DECODER_CONFIG}; train the decoder again"
        ) from None
    return decoder.to(device).eval()
