"""Decoded videos: what the world model sees (autoencoded) and what it imagines (predicted).

Given T frames at model-frame spacing (`frameskip` raw steps apart) and the T - 1 action blocks
between them, `decode_rollout` returns three aligned videos:
    original     the frames themselves
    autoencoded  each frame encoded then decoded (what a single latent keeps)
    predicted    the first frame's latent rolled out open-loop with the true actions, decoded
                 (frame 0 is the decoded start latent, equal to autoencoded[0])
and the per-frame PSNR of the last two against the original.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from decoder.model import LatentDecoder
from decoder.train import decode_images, psnr
from lewm_core.data.dataset import ActionStats, open_dataset
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel


def episode_clip(
    data_path: str | os.PathLike,
    episode: int,
    action_stats: ActionStats,
    frameskip: int = 5,
    start: int = 0,
    frames: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames and normalised action blocks of one dataset episode at model-frame spacing.

    Frame k is raw step `start + k * frameskip` of episode `episode`; block k is the
    `frameskip` raw actions after frame k, z-scored with `action_stats` and flattened. `frames`
    defaults to as many as fit. Returns frames (T, H, W, 3) uint8, blocks (T-1, frameskip * A).
    """
    with open_dataset(data_path) as f:
        off, ln = f["ep_offset"][:], f["ep_len"][:]
        if not 0 <= episode < len(off):
            raise UserError(f"episode {episode} is out of range; the dataset has {len(off)}")
        length = int(ln[episode])
        if not 0 <= start < length:
            raise UserError(f"start {start} is out of range; episode {episode} has {length} steps")
        fit = (length - 1 - start) // frameskip + 1
        t = fit if frames is None else frames
        if not 1 <= t <= fit:
            raise UserError(
                f"episode {episode} from step {start} fits {fit} frames at frameskip "
                f"{frameskip}; ask for 1..{fit}"
            )
        base = int(off[episode]) + start
        lo, hi = base, base + (t - 1) * frameskip + 1
        pixels = f["pixels"][lo:hi][::frameskip]
        raw = f["action"][lo : lo + (t - 1) * frameskip]
    blocks = (
        action_stats.normalize(raw).astype(np.float32).reshape(t - 1, frameskip * raw.shape[-1])
    )
    return np.ascontiguousarray(pixels), blocks


@torch.no_grad()
def decode_rollout(
    loaded: LoadedModel, decoder: LatentDecoder, frames: np.ndarray, action_blocks: np.ndarray
) -> dict[str, np.ndarray]:
    """Original, autoencoded and predicted videos with per-frame PSNR.

    frames: (T, H, W, 3) uint8 at model-frame spacing; action_blocks: (T-1, frameskip * A)
    normalised blocks (block k leads from frame k to k + 1). Returns "original",
    "autoencoded", "predicted" (T, H, W, 3) uint8, "psnr_autoencoded", "psnr_predicted" (T,)
    in dB (inf for identical frames) and "latent_error" (T,): squared L2 between the rolled-out
    and the encoded latent of each frame (0 at frame 0).
    """
    model, cfg = loaded.model, loaded.config
    frames = np.asarray(frames)
    blocks = np.asarray(action_blocks, np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape}")
    if blocks.shape != (len(frames) - 1, cfg.action_block_dim):
        raise UserError(
            f"action blocks must be (T-1, {cfg.action_block_dim}) = "
            f"({len(frames) - 1}, {cfg.action_block_dim}), got {blocks.shape}"
        )
    if decoder.cfg.latent_dim != cfg.latent_dim or decoder.cfg.image_size != cfg.image_size:
        raise UserError(
            "the decoder was trained for another model (latent or image size differs); "
            "train it again with `lewm decoder-train`"
        )
    model.eval()
    device = model.pixel_mean.device
    z = model.encode(torch.from_numpy(frames).to(device)[None])[0]  # (T, D)
    if len(frames) > 1:
        act = torch.from_numpy(blocks).to(device)[None]
        rolled = model.rollout(z[None, :1], act)[0]  # (T-1, D)
        z_pred = torch.cat([z[:1], rolled], dim=0)
    else:
        z_pred = z[:1]
    auto = decode_images(decoder, z.float().cpu())
    pred = decode_images(decoder, z_pred.float().cpu())
    return {
        "original": frames,
        "autoencoded": auto,
        "predicted": pred,
        "psnr_autoencoded": psnr(auto, frames),
        "psnr_predicted": psnr(pred, frames),
        "latent_error": ((z_pred - z) ** 2).sum(-1).double().cpu().numpy(),
    }
