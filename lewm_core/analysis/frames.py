"""Frames for the latent analyses: read them from a dataset, check they fit the model, encode them.

Probing, t-SNE, straightness, surprise and the visualisation decoder all start here: pick rows
of an HDF5 dataset (`read_rows`, `episode_rows`), split train and test frames by episode
(`sample_split_rows`), check the frames and actions fit the model (`check_dataset_matches`),
read the env's named state quantities (`dataset_quantities`), encode the frames in batches
(`encode_frames`), and build the untrained twin whose latents give each analysis its floor
(`untrained_model`). Which file the frames come from is `lewm_core.data.samples.resolve_frames`.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from lewm_core.data.dataset import split_episodes
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel
from lewm_core.world_model.model import LeWM


def dataset_quantities(f: h5py.File) -> tuple[dict[str, list[int]], tuple[str, ...]]:
    """`state_quantities` {name: [start, size]} and `angle_quantities` of an open dataset."""
    q = json.loads(f.attrs.get("state_quantities", "{}"))
    angles = tuple(json.loads(f.attrs.get("angle_quantities", "[]")))
    if not q:
        raise UserError("the dataset names no state quantities; collect it again")
    return q, angles


def check_dataset_matches(loaded: LoadedModel, f: h5py.File, path: Path) -> None:
    """UserError if the dataset's frames or actions do not fit the model."""
    res = int(f["pixels"].shape[1])
    if res != loaded.config.image_size:
        raise UserError(
            f"dataset {path} has {res}px frames but the model expects "
            f"{loaded.config.image_size}px; use the dataset the model was trained on"
        )
    if int(f["action"].shape[1]) != loaded.config.action_dim:
        raise UserError(
            f"dataset {path} has {f['action'].shape[1]}-D actions but the model expects "
            f"{loaded.config.action_dim}-D; use the dataset the model was trained on"
        )


def read_rows(ds: h5py.Dataset, rows: np.ndarray, window: int = 1024) -> np.ndarray:
    """Rows `rows` (N,) of an HDF5 dataset, in the given order: (N, ...).

    Reads contiguous windows of the file (fast with chunked, compressed data) instead of h5py's
    slow point selection; rows may repeat and come in any order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    i = 0
    while i < len(sorted_rows):
        lo = int(sorted_rows[i])
        j = int(np.searchsorted(sorted_rows, lo + window, side="left"))
        hi = int(sorted_rows[j - 1]) + 1
        block = ds[lo:hi]
        out[order[i:j]] = block[sorted_rows[i:j] - lo]
        i = j
    return out


def episode_rows(offsets: np.ndarray, lengths: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """All dataset rows of `episodes`, concatenated: (sum of their lengths,)."""
    if len(episodes) == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(offsets[e], offsets[e] + lengths[e]) for e in episodes])


@torch.no_grad()
def encode_frames(model: LeWM, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Encode frames in batches (eval mode, no grad).

    pixels: (N, H, W, 3) uint8. Returns float32 latents (N, D).
    """
    was_training = model.training
    model.eval()
    device = model.pixel_mean.device
    out = []
    try:
        for i in range(0, len(pixels), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(pixels[i : i + batch_size])).to(device)
            out.append(model.encode(x).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, model.cfg.latent_dim), np.float32)
    return np.concatenate(out)


def untrained_model(loaded: LoadedModel, seed: int = 0) -> LeWM:
    """A freshly initialised model of the same architecture (torch seed `seed`), eval mode.

    Its BatchNorm layers keep their initial running statistics (mean 0, var 1), so in eval mode
    they are identity maps: the untrained latent is projector(encoder(x)) with random weights.
    """
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LeWM(loaded.config)
    finally:
        torch.random.set_rng_state(state)
    return model.to(loaded.model.pixel_mean.device).eval()


def sample_split_rows(
    f: h5py.File,
    max_train: int,
    max_test: int,
    seed: int,
    val_fraction: float,
    split_seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Dataset rows of up to `max_train` train and `max_test` test frames, sorted.

    Train frames come from the train episodes of `split_episodes(E, val_fraction, split_seed)`,
    test frames from its validation episodes, sampled without replacement with `seed`.
    """
    off, ln = f["ep_offset"][:], f["ep_len"][:]
    train_eps, test_eps = split_episodes(len(off), val_fraction, split_seed)
    if len(train_eps) == 0 or len(test_eps) == 0:
        raise UserError("the analysis needs at least 2 episodes in the dataset (train and test)")
    rng = np.random.default_rng([seed, 17])
    out = []
    for eps, cap in ((train_eps, max_train), (test_eps, max_test)):
        rows = episode_rows(off, ln, eps)
        if len(rows) == 0:
            raise UserError("the dataset's train or test episodes hold no frames; collect again")
        if len(rows) > cap:
            rows = rng.choice(rows, size=cap, replace=False)
        out.append(np.sort(rows))
    return out[0], out[1]
