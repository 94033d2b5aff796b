"""Temporal straightness of latent trajectories.

For an episode's frames at model-frame spacing (every `frameskip` raw steps) with latents
z_0..z_{T-1} (T, D), the velocities are v_t = z_{t+1} - z_t and the straightness is the mean
cosine similarity of consecutive velocities, cos(v_t, v_{t+1}), over all pairs of all episodes:
1 = straight lines, 0 = uncorrelated directions, negative = back-and-forth. Pairs where either
velocity is (numerically) zero have no direction and are skipped. Reported for the trained
encoder, an untrained one of the same architecture (fixed seed) and, as a reference, the raw
pixels (flattened frames in [0, 1]).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from lewm_core.analysis.frames import (
    check_dataset_matches,
    encode_frames,
    read_rows,
    untrained_model,
)
from lewm_core.data.dataset import open_dataset
from lewm_core.data.samples import resolve_frames
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel


def consecutive_cosines(traj: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosines of consecutive velocities of one trajectory (T, D): (K,), K <= T - 2.

    Pairs where either velocity has norm <= eps * (1 + mean |z|) are dropped.
    """
    traj = np.asarray(traj, np.float64)
    if len(traj) < 3:
        return np.zeros(0)
    v = np.diff(traj, axis=0)  # (T-1, D)
    norm = np.linalg.norm(v, axis=1)
    tol = eps * (1.0 + float(np.abs(traj).mean()))
    a, b = v[:-1], v[1:]
    na, nb = norm[:-1], norm[1:]
    keep = (na > tol) & (nb > tol)
    return (a[keep] * b[keep]).sum(1) / (na[keep] * nb[keep])


def summarise(cosines: list[np.ndarray]) -> dict:
    """{"mean", "std", "pairs"} of the pooled cosines (mean/std 0 when there are no pairs)."""
    c = np.concatenate(cosines) if cosines else np.zeros(0)
    if len(c) == 0:
        return {"mean": 0.0, "std": 0.0, "pairs": 0}
    return {"mean": float(c.mean()), "std": float(c.std()), "pairs": int(len(c))}


def straightness(
    loaded: LoadedModel,
    data: str | os.PathLike | None = None,
    episodes: int = 50,
    seed: int = 0,
    split: str = "val",
    untrained: bool = True,
    pixels: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Mean consecutive-velocity cosine of latent trajectories over dataset episodes.

    Uses up to `episodes` episodes (sampled with `seed`) of `split` ("val": the episodes the
    model never trained on, `Frames.held_out`: its validation episodes, or every episode of its
    held-out sample; or "all"), each read at model-frame spacing (T = ceil(len / frameskip)
    frames). Returns {"trained": {"mean", "std", "pairs"}, "untrained": {...}, "pixels": {...},
    "episodes", "frames_per_episode" (mean T), "split", "seed", "data", "data_source",
    "frames_note"}.
    """
    if episodes < 1:
        raise UserError(f"--episodes must be at least 1 (got {episodes})")
    if split not in ("val", "all"):
        raise UserError(f"unknown split '{split}'; choose val or all")
    say = progress or (lambda _msg: None)
    source = resolve_frames(loaded, data)
    path = source.path
    fs = loaded.config.frameskip
    with open_dataset(path) as f:
        check_dataset_matches(loaded, f, path)
        off, ln = f["ep_offset"][:], f["ep_len"][:]
        if split == "val":
            eps = source.held_out(len(off))
            if len(eps) == 0:
                eps = np.arange(len(off))
        else:
            eps = np.arange(len(off))
        rng = np.random.default_rng([seed, 31])
        if len(eps) > episodes:
            eps = np.sort(rng.choice(eps, size=episodes, replace=False))
        per_ep = [off[e] + np.arange(0, ln[e], fs) for e in eps]
        per_ep = [r for r in per_ep if len(r) >= 3]
        if not per_ep:
            raise UserError(
                f"no episode of {path} has 3 frames at frameskip {fs}; collect longer episodes"
            )
        rows = np.concatenate(per_ep)
        say(f"reading {len(rows)} frames of {len(per_ep)} episodes")
        frames = read_rows(f["pixels"], rows)
    bounds = np.cumsum([0] + [len(r) for r in per_ep])
    models = {"trained": loaded.model}
    if untrained:
        models["untrained"] = untrained_model(loaded, seed)
    result: dict = {}
    for name, model in models.items():
        say(f"encoding ({name})")
        z = encode_frames(model, frames)
        result[name] = summarise(
            [consecutive_cosines(z[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        )
    if pixels:
        flat = frames.reshape(len(frames), -1).astype(np.float32) / 255.0
        result["pixels"] = summarise(
            [consecutive_cosines(flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        )
    result.update(
        episodes=len(per_ep),
        frames_per_episode=float(np.mean([len(r) for r in per_ep])),
        split=split,
        seed=seed,
        data=str(path),
        data_source=source.source,
        frames_note=source.note(len(rows)),
    )
    return result
