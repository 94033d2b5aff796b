"""The data a run trains on, and in which order: the train/validation split (with any extra
training-only datasets), the clips of each step, and the DataLoader that prefetches them.

The order is a fixed permutation per epoch (`step_batch_indices`), so step s always sees the same
batch: a resumed run continues exactly where it stopped, and several processes agree on the
global batch of every step (rank r takes the r-th contiguous shard of it).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch

from lewm_core.data.dataset import ClipDataset, ClipMix, dataset_info
from lewm_core.errors import UserError
from lewm_core.training.config import TrainConfig


def step_batch_indices(
    step: int, num_clips: int, batch_size: int, steps_per_epoch: int, seed: int
) -> np.ndarray:
    """Clip indices (batch_size,) of the global batch of `step`: a fixed permutation per epoch."""
    epoch, b = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(num_clips)
    return perm[b * batch_size : (b + 1) * batch_size]


def load_splits(
    cfg: TrainConfig, info: dict, history: int, frameskip: int
) -> tuple[ClipDataset | ClipMix, ClipDataset, bool]:
    """(training clips, validation clips, preloaded?) of `cfg.data` and `cfg.extra_data`.

    `info` is `dataset_info(cfg.data)`. The validation split shares the training split's
    preloaded pixels (one copy in RAM, read once); extra data only adds training clips, z-scored
    with the main data's action statistics.
    """
    preload = info["pixels_gb"] <= cfg.preload_max_gb
    split = dict(
        history=history,
        frameskip=frameskip,
        val_fraction=cfg.val_fraction,
        split_seed=cfg.seed,
        preload=preload,
        clip_frames=cfg.clip_frames(history),
    )
    first = ClipDataset(cfg.data, "train", **split)
    val_set = ClipDataset(
        cfg.data, "val", action_stats=first.action_stats, pixels=first.pixels, **split
    )
    train_set: ClipDataset | ClipMix = first
    if cfg.extra_data:
        extra = _extra_sets(cfg, info, split, first.action_stats, preload)
        train_set = ClipMix(first, extra, cfg.extra_repeats())
    if len(train_set) < cfg.batch_size:
        raise UserError(
            f"the training split has {len(train_set)} clips, fewer than --batch-size "
            f"{cfg.batch_size}; collect more episodes or lower --batch-size"
        )
    return train_set, val_set, preload


def _extra_sets(
    cfg: TrainConfig, info: dict, split: dict, stats, preloaded: bool
) -> list[ClipDataset]:
    """Every clip of each `--extra-data` file, z-scored with the main data's statistics."""
    sets = []
    for path in cfg.extra_data:
        extra = dataset_info(path)
        for key in ("env", "resolution", "action_dim"):
            if extra[key] != info[key]:
                raise UserError(
                    f"--extra-data {path} has {key} {extra[key]}, --data {cfg.data} has "
                    f"{info[key]}; extra data must come from the same env and resolution"
                )
        preload = extra["pixels_gb"] <= cfg.preload_max_gb and preloaded
        part = ClipDataset(path, "all", action_stats=stats, **{**split, "preload": preload})
        if len(part) == 0:
            raise UserError(
                f"--extra-data {path} has no episode long enough for a training clip; "
                "collect longer episodes (e.g. a larger --budget)"
            )
        sets.append(part)
    return sets


class StepBatches(torch.utils.data.Dataset):
    """Item s: one rank's shard of the global batch of step s (what `Trainer.step` trains on).

    For a DataLoader with `batch_size=None`: a worker loads whole batches with the vectorised
    `ClipDataset.batch`. Holds only plain values, so it pickles to spawned workers too.
    """

    def __init__(
        self,
        clips: ClipDataset | ClipMix,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
        rank: int,
        local_batch_size: int,
    ):
        self.clips = clips
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed
        self.rank, self.local_batch_size = rank, local_batch_size

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        idx = step_batch_indices(
            step, len(self.clips), self.batch_size, self.steps_per_epoch, self.seed
        )
        n = self.local_batch_size
        return self.clips.batch(idx[self.rank * n : (self.rank + 1) * n])


def prefetched_batches(
    source: StepBatches,
    start: int,
    stop: int,
    workers: int,
    seed: int,
    pin: bool,
    preloaded: bool,
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of steps start, start + 1, ..., stop - 1 from a DataLoader with `workers`.

    Yields what `source[s]` returns (pinned when `pin`, for CUDA). The loader has its own
    generator, so the global torch RNG (dropout) is not consumed.
    """
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2,  # batches per worker in flight
        # Preloaded pixels: fork shares them copy-on-write. Read from HDF5: spawn, so that no
        # worker inherits an open h5py handle (ClipDataset drops it when pickled).
        multiprocessing_context="fork" if preloaded else "spawn",
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_ignore_sigint,  # Ctrl-C is the main process's: it stops in step
    )
    it = iter(loader)
    try:
        yield from it
    finally:
        del it  # shuts the workers down


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader worker start-up: ignore SIGINT. A Ctrl-C reaches the whole process group; a
    worker that died of it would fail the batch the main process is waiting for, whereas the
    main process stops cleanly after the current step (and shuts the workers down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
