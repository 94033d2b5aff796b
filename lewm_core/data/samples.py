"""Held-out samples, and which frames an analysis reads.

A model folder may carry a small held-out sample of its task's frames, so that everything that
reads frames (`lewm probe`, `tsne`, `straightness`, `decoder-train`; the lab's Decode, Latent
space and Plan pages) works where the model's dataset is not on disk (a fresh clone, a Space):

    <model>/sample.h5    episodes of the env's data policy at the model's resolution, in the
                         layout `lewm collect` writes (format `lewm-dataset-v1`, so every reader
                         reads it unchanged), every array gzip-compressed
    <model>/sample.json  what the sample is: env, resolution, policy, episodes, steps, frames,
                         the seed of its first episode, its split, file size and collection time

Seed rule: `lewm collect` starts episode k of a collection seeded s from `episode_seed(s, k)`,
a 31-bit number, below 2**31; episode k of a sample starts from SAMPLE_SEED_BASE + k =
2**31 + k (the env's reset and the policy's seed). No sample episode can start from the seed
of any collected episode, whatever seeds a model's training data used: every frame of the
sample is one the model never trained on.

`resolve_frames` chooses the frames: `--data` when given; else the model's dataset (config.json
`data.path`) when it is on disk; else the model's sample, and says so; else a UserError naming
both fixes. An analysis reports `Frames.note` (and `Frames.source` in its JSON).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lewm_core import __version__
from lewm_core.atomic import write_json
from lewm_core.data.dataset import episode_lengths, open_dataset, split_episodes
from lewm_core.errors import UserError
from lewm_core.folders import SAMPLE_FILE, SAMPLE_INFO
from lewm_core.world_model.checkpoint import LoadedModel, read_config

SAMPLE_SEED_BASE = 2**31  # above every `collect.episode_seed` (31 bits)
# How a sample's episodes divide between fitting and testing a probe or a decoder (every
# episode of a sample is held out from the world model; a quarter is held out from the probe).
SAMPLE_SPLIT = (0.25, 0)
MAX_SAMPLE_EPISODES, MAX_SAMPLE_FRAMES = 1000, 100_000


@dataclass(frozen=True)
class Frames:
    """The dataset file an analysis reads, and what it is to the model.

    source: "given" (`--data`), "dataset" (the one the model was trained on) or "sample" (the
    model's held-out sample). split: (val_fraction, split_seed) dividing the file's episodes
    into fitting and testing episodes for a probe or a decoder (`split_episodes`): the
    model's own split for its dataset (its validation episodes are the test ones), SAMPLE_SPLIT
    for a sample. `missing`: for a sample, the dataset path the model records, not on disk.
    """

    path: Path
    source: str
    split: tuple[float, int]
    missing: str = ""

    def held_out(self, num_episodes: int) -> np.ndarray:
        """The episodes (indices) the world model never trained on: every episode of a sample,
        the validation episodes of the model's split otherwise."""
        if self.source == "sample":
            return np.arange(num_episodes)
        return split_episodes(num_episodes, *self.split)[1]

    @property
    def label(self) -> str:
        """What the file is, in words (no path)."""
        if self.source == "sample":
            return f"the model's held-out sample (its dataset {self.missing or '?'} is not on disk)"
        if self.source == "dataset":
            return "the model's training dataset"
        return "given with --data"

    def note(self, frames: int) -> str:
        """One line for an analysis's output: "frames: <path>, <label>, <frames> frames"."""
        return f"frames: {self.path}, {self.label}, {frames:,} frames"


def sample_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / SAMPLE_FILE


def read_sample_info(folder: str | os.PathLike) -> dict | None:
    """The parsed sample.json of a model folder; None when it has no sample (or an unreadable
    description)."""
    path = Path(folder) / SAMPLE_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def dataset_candidates(
    model_dir: Path, stored: str, data_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Where the dataset path `stored` (config.json `data.path`) may be found.

    Without `data_dir` (the CLI): as stored (from the current folder) and from the model
    folder's grandparent (the project root of runs/<name>). With `data_dir` (the lab's data
    folder, LEWM_DATA_DIR): an absolute path as stored, else the file of that name in
    `data_dir`.
    """
    raw = Path(stored)
    if data_dir is not None:
        return [raw] if raw.is_absolute() else [Path(data_dir) / raw.name]
    return [raw] if raw.is_absolute() else [raw, model_dir.parent.parent / raw]


def resolve_frames(
    loaded: LoadedModel,
    data: str | os.PathLike | Frames | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Frames:
    """The frames an analysis of `loaded` reads: `data` if given (a path, which must exist, or
    `Frames` resolved already, returned as they are), else the model's dataset if it is on disk
    (`dataset_candidates`), else its held-out sample; else a UserError naming `--data` and
    `lewm sample`."""
    if isinstance(data, Frames):
        return data
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise UserError(f"dataset {path} does not exist; pass the .h5 file with --data")
        return Frames(path, "given", loaded.split)
    stored = loaded.meta.get("data", {}).get("path")
    for cand in dataset_candidates(loaded.path, stored, data_dir) if stored else []:
        if cand.is_file():
            return Frames(cand, "dataset", loaded.split)
    sample = sample_path(loaded.path)
    if sample.is_file():
        return Frames(sample, "sample", SAMPLE_SPLIT, missing=str(stored or "?"))
    if not stored:
        raise UserError(
            f"{loaded.path} does not record its training dataset and has no {SAMPLE_FILE}; "
            f"pass the .h5 file with --data, or make a sample with `lewm sample --checkpoint "
            f"{loaded.path}`"
        )
    where = f"in {data_dir}" if data_dir is not None else f"from here or beside {loaded.path}"
    raise UserError(
        f"the model's dataset {stored} was not found ({where}) and the model has no "
        f"{SAMPLE_FILE}; pass the .h5 file with --data, or make a held-out sample with "
        f"`lewm sample --checkpoint {loaded.path}`"
    )


# --------------------------------------------------------------------------- making one


def sample_episode_seed(episode: int) -> int:
    """The seed of episode `episode` of a sample (its env reset and its policy)."""
    return SAMPLE_SEED_BASE + episode


def _episodes(env_name: str, resolution: int, policy: str, episodes: int, steps: int) -> Iterator:
    from lewm_core.data.collect import run_episode
    from lewm_core.envs import make, make_policy

    env = make(env_name, resolution=resolution)
    try:
        for k in range(episodes):
            seed = sample_episode_seed(k)
            yield run_episode(env, make_policy(env_name, env, seed, policy), steps, seed)
    finally:
        env.close()


def collect_sample(
    folder: str | os.PathLike,
    episodes: int,
    steps: int,
    policy: str = "default",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Collect a held-out sample for the model in `folder`: `episodes` episodes of `steps` raw
    steps of its env's data policy `policy` at its resolution, episode k from seed
    SAMPLE_SEED_BASE + k. Writes sample.h5 (gzip) and then sample.json, each atomically, and
    returns the description written to sample.json. `progress(done, total)` after each episode.
    UserError on bad input, before anything is written."""
    from lewm_core.data.collect import CollectSpec, validate_spec, write_episodes
    from lewm_core.envs import ends_episodes

    folder = Path(folder)
    config = read_config(folder)
    env_name = config.get("data", {}).get("env")
    resolution = config.get("model", {}).get("image_size")
    if not env_name or not isinstance(resolution, int):
        raise UserError(f"{folder}/config.json names no env or image size; retrain or restore it")
    validate_spec(CollectSpec(env_name, episodes, steps, resolution, 0, policy))
    if not 2 <= episodes <= MAX_SAMPLE_EPISODES:
        raise UserError(
            f"--episodes must be between 2 and {MAX_SAMPLE_EPISODES} for a sample (a probe "
            f"needs fitting and testing episodes); got {episodes}"
        )
    if episodes * steps > MAX_SAMPLE_FRAMES:
        raise UserError(
            f"a sample holds at most {MAX_SAMPLE_FRAMES:,} frames (asked: {episodes} x {steps}); "
            "collect a dataset with `lewm collect` for more"
        )
    out = sample_path(folder)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to collect it again")
    which = "" if policy == "default" else f", policy='{policy}'"
    policy_name = f"lewm_core.envs.make_policy('{env_name}'{which})"
    attrs = dict(policy=policy_name, episode_seed_base=SAMPLE_SEED_BASE)
    t0 = time.perf_counter()
    write_episodes(
        out,
        env_name,
        resolution,
        _episodes(env_name, resolution, policy, episodes, steps),
        episodes,
        steps,
        attrs,
        progress,
        compression="gzip",
        varying=ends_episodes(env_name, policy),
    )
    info = {
        "env": env_name,
        "resolution": resolution,
        "policy": policy_name,
        "episodes": episodes,
        "steps": steps,
        "frames": int(episode_lengths(out).sum()),  # fewer where the policy ends episodes
        "episode_seed_base": SAMPLE_SEED_BASE,
        "split": list(SAMPLE_SPLIT),
        "bytes": out.stat().st_size,
        "wall_s": round(time.perf_counter() - t0, 1),
        "lewm_version": __version__,
    }
    write_json(folder / SAMPLE_INFO, info)
    return info


def check_sample(folder: str | os.PathLike) -> dict:
    """The description of a model folder's sample, checked against the file; UserError if
    the folder has none or the two disagree."""
    folder = Path(folder)
    info = read_sample_info(folder)
    if info is None or not sample_path(folder).is_file():
        raise UserError(f"{folder} has no held-out sample; make one with `lewm sample`")
    with open_dataset(sample_path(folder)) as f:
        found = (str(f.attrs["env"]), int(f.attrs["resolution"]), len(f["ep_len"]))
        seed_base = int(f.attrs.get("episode_seed_base", -1))
    if found != (info.get("env"), info.get("resolution"), info.get("episodes")) or (
        seed_base != SAMPLE_SEED_BASE
    ):
        raise UserError(
            f"{folder}/{SAMPLE_INFO} does not describe {SAMPLE_FILE}; collect the sample again "
            "with `lewm sample --overwrite`"
        )
    return info


def sample_card_lines(info: dict, folder_name: str = "<this folder>", level: int = 2) -> list[str]:
    """The model card's "Held-out sample" section for a sample.json description, its heading
    at markdown `level` (2: `##`)."""
    mb = info.get("bytes", 0) / 1e6
    episodes, steps = info.get("episodes", 0), info.get("steps", 0)
    shorter = info.get("frames", 0) < episodes * steps  # a policy that ends its episodes
    policy = policy_flag(info.get("policy", ""))
    return [
        "",
        "#" * level + " Held-out sample",
        "",
        f"`{SAMPLE_FILE}`: {episodes} episodes x {'up to ' if shorter else ''}{steps} steps "
        f"({info.get('frames', 0):,} frames, {mb:.1f} MB) of the data policy "
        f"{info.get('policy')} at {info.get('resolution')} px; episode k starts from seed "
        f"2**31 + k, above every seed `lewm collect` gives an episode, so the model never "
        "trained on them. `lewm probe`, `tsne`, `straightness`, `decoder-train` and the lab's "
        "Decode, Latent space and Plan pages read it when the dataset above is not on disk "
        f"({SAMPLE_SPLIT[0]:.0%} of its episodes test the probes and the decoder). "
        f"`lewm sample --checkpoint {folder_name} --episodes {episodes} --steps "
        f"{steps}{policy}` ({info.get('wall_s')} s on the machine that made it).",
    ]


def policy_flag(policy_name: str) -> str:
    """" --policy NAME" for a recorded data policy other than the default (the `policy`
    attribute collect writes: "lewm_core.envs.make_policy('pusht-v1', policy='expert')"), else
    ""."""
    marker = "policy='"
    if marker not in policy_name:
        return ""
    return f" --policy {policy_name.split(marker, 1)[1].split(chr(39), 1)[0]}"
