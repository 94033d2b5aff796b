"""What a checkpoint measures and fixes before it is saved: validation losses, the collapse
monitor, and the re-estimated BatchNorm statistics.

    recalibrate          BatchNorm running statistics from training batches, weights frozen
    validation_batches   the fixed validation batches (same clips at every checkpoint)
    evaluate             validation losses (eval mode), copy loss, embedding std, effective rank

A collapsed encoder (every frame the same embedding) predicts trivially well: the prediction
loss alone cannot tell it from a good one. The copy loss ("the next embedding equals this one"),
the per-dimension std of the embeddings and their effective rank can.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lewm_core.data.dataset import ClipDataset, ClipMix
from lewm_core.world_model.model import LeWM, recalibrate_batchnorm

# The validation clips' order (fixed: every checkpoint evaluates the same batches).
_VAL_ORDER_SEED = 12345
# SIGReg's random directions during evaluation (fixed: checkpoints compare on the same test).
_VAL_SIGREG_SEED = 777
# Second word of the BatchNorm re-estimation's batch draw ([seed, this]).
_RECALIB_STREAM = 99

LossTerms = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred embeddings z (N, D)."""
    s = torch.linalg.svdvals(z.float() - z.float().mean(0))
    p = s / s.sum().clamp_min(1e-12)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


def validation_batches(num_clips: int, batch_size: int, max_batches: int) -> list[np.ndarray]:
    """Up to `max_batches` batches (clip indices) of the validation split, always the same."""
    if num_clips == 0:
        return []
    order = np.random.default_rng(_VAL_ORDER_SEED).permutation(num_clips)
    bs = min(batch_size, num_clips)
    batches = [order[i : i + bs] for i in range(0, min(num_clips, bs * max_batches), bs)]
    # SIGReg (a statistic of the batch) needs at least 2 clips: a last batch of 1 clip
    # (e.g. 9 validation clips at batch size 8) is dropped, as is a split of 1 clip.
    return [b for b in batches if len(b) >= 2]


@torch.no_grad()
def evaluate(
    model: LeWM,
    val_set: ClipDataset,
    batches: list[np.ndarray],
    loss_terms: LossTerms,
    sigreg_gen: torch.Generator,
) -> dict:
    """Validation losses and the collapse monitor over `batches`, in eval mode (BatchNorm
    running statistics).

    Also the prediction loss with BatchNorm on batch statistics (dropout off), which eval mode
    should match once the BatchNorm statistics are recalibrated. `loss_terms(batch)` is the
    trainer's (this process alone); `sigreg_gen` is reseeded so that SIGReg is the same test at
    every checkpoint.
    """
    model.eval()
    sigreg_gen.manual_seed(_VAL_SIGREG_SEED)
    sums: dict[str, float] = {}
    embs = []
    for idx in batches:
        t = loss_terms(val_set.batch(idx))
        emb = t["emb"]
        n = model.cfg.history + 1  # the frames the prediction loss covers
        copy = F.mse_loss(emb[:, : n - 1], emb[:, 1:n])
        for k, v in (
            ("val_pred_loss", t["pred_loss"]),
            ("val_sigreg", t["sigreg"]),
            ("val_copy_loss", copy),
            *([("val_rollout_loss", t["rollout_loss"])] if "rollout_loss" in t else []),
        ):
            sums[k] = sums.get(k, 0.0) + float(v)
        embs.append(emb.reshape(-1, emb.shape[-1]))
    with batchnorm_on_batch_stats(model):
        for idx in batches:
            t = loss_terms(val_set.batch(idx))
            sums["val_pred_loss_batchstats"] = sums.get("val_pred_loss_batchstats", 0.0) + float(
                t["pred_loss"]
            )
    out = {k: v / len(batches) for k, v in sums.items()}
    z = torch.cat(embs)
    std = z.float().std(0)
    out.update(
        emb_std_mean=float(std.mean()),
        emb_std_min=float(std.min()),
        effective_rank=effective_rank(z),
        pred_over_copy=out["val_pred_loss"] / max(out["val_copy_loss"], 1e-12),
    )
    return out


def recalibrate(
    model: LeWM,
    train_set: ClipDataset | ClipMix,
    num_batches: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
) -> None:
    """Re-estimate BatchNorm running statistics on `num_batches` random training batches with
    frozen weights (the caller keeps BatchNorm to this process: no collective)."""
    rng = np.random.default_rng([seed, _RECALIB_STREAM])

    def batches():
        for _ in range(num_batches):
            idx = rng.choice(len(train_set), batch_size, replace=False)
            b = train_set.batch(idx)
            yield b["pixels"].to(device), b["actions"].to(device)

    with torch.no_grad(), autocast:
        recalibrate_batchnorm(model, batches(), num_batches)


class batchnorm_on_batch_stats:
    """Context: BatchNorm layers use batch statistics (momentum 0: running stats untouched)."""

    def __init__(self, model: torch.nn.Module):
        self.bns = [
            m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]

    def __enter__(self):
        self.saved = [(m.training, m.momentum) for m in self.bns]
        for m in self.bns:
            m.train()
            m.momentum = 0.0

    def __exit__(self, *exc):
        for m, (training, momentum) in zip(self.bns, self.saved, strict=True):
            m.train(training)
            m.momentum = momentum
