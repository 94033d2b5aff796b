"""Reading LeWM datasets: the HDF5 file written by `lewm_core.data.collect`, as training clips.

A clip is T frames spaced `frameskip` raw steps apart inside one episode (T = history + 1 unless
`clip_frames` asks for more, as the trainer's rollout loss does), with one action *block* per
frame: the `frameskip` raw actions that follow that frame, z-scored per action dimension with the
training split's statistics and concatenated:
    pixels  uint8   (T, H, W, 3)
    actions float32 (T, frameskip * action_dim)
The split is by episode (no clip of a validation episode is ever trained on). Episodes may
differ in length (a policy that ends its episodes): a clip never spans two episodes, and an
episode shorter than a clip gives none. Frames are read
lazily from the file unless `preload=True` (then the whole pixel array is read into RAM once).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from lewm_core.data.collect import FORMAT
from lewm_core.errors import UserError

REQUIRED_KEYS = ("pixels", "action", "state", "sim_state", "ep_offset", "ep_len")


def open_dataset(path: str | os.PathLike) -> h5py.File:
    """Open a LeWM dataset read-only, checking it is complete; raise UserError naming the fix."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"dataset {path} does not exist; create it with `lewm collect --out {path}`"
        )
    if path.is_dir():
        raise UserError(f"dataset {path} is a folder; give the .h5 file written by `lewm collect`")
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError) as e:  # h5py: RuntimeError for some damaged metadata
        raise UserError(
            f"dataset {path} is not a readable HDF5 file ({str(e).splitlines()[0][:80]}); "
            "it may be truncated or foreign: collect it again with `lewm collect`"
        ) from None
    try:
        if f.attrs.get("format") != FORMAT:
            raise UserError(
                f"dataset {path} is not a LeWM dataset (format attribute missing or not {FORMAT}); "
                "create one with `lewm collect`"
            )
        missing = [k for k in REQUIRED_KEYS if k not in f]
        if missing:
            raise UserError(
                f"dataset {path} lacks {', '.join(missing)}; collect it again with `lewm collect`"
            )
        ranks = {"pixels": 4, "action": 2, "state": 2, "sim_state": 2, "ep_offset": 1, "ep_len": 1}
        wrong = [
            k for k, r in ranks.items() if not isinstance(f[k], h5py.Dataset) or f[k].ndim != r
        ]
        if wrong:
            raise UserError(
                f"dataset {path} has '{wrong[0]}' of the wrong shape (or not an array); "
                "collect it again"
            )
        n = f["pixels"].shape[0]
        off, ln = f["ep_offset"][:], f["ep_len"][:]
        bad_rows = any(f[k].shape[0] != n for k in ("action", "state", "sim_state"))
        if bad_rows or len(off) != len(ln) or len(off) == 0 or int((off + ln).max()) > n:
            raise UserError(f"dataset {path} has inconsistent array lengths; collect it again")
        if f["pixels"].ndim != 4 or f["pixels"].shape[-1] != 3 or f["pixels"].dtype != np.uint8:
            raise UserError(f"dataset {path} has pixels of the wrong shape or dtype; collect again")
        _check_layout(f, path, off, ln)
        # Touch the last chunk: a truncated file fails here, not halfway through training.
        _ = f["pixels"][n - 1]
        _ = f["action"][n - 1]
    except UserError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        f.close()
        raise UserError(
            f"dataset {path} is damaged ({str(e).splitlines()[0][:80]}); collect it again"
        ) from None
    return f


def _check_layout(f: h5py.File, path: Path, off: np.ndarray, ln: np.ndarray) -> None:
    """UserError unless the arrays and attributes that readers rely on are well formed."""
    for key in ("action", "state", "sim_state"):
        d = f[key]
        if d.ndim != 2 or d.dtype.kind not in "fiu" or (key == "action" and d.shape[1] < 1):
            raise UserError(
                f"dataset {path} has '{key}' of the wrong shape or dtype; collect again"
            )
    if off.dtype.kind not in "iu" or ln.dtype.kind not in "iu" or off.min() < 0 or ln.min() < 0:
        raise UserError(f"dataset {path} has invalid episode offsets or lengths; collect again")
    name = "env"
    try:
        env = f.attrs["env"]
        if not isinstance(env, str) or not env:
            raise TypeError("not a name")
        name = "resolution"
        res = f.attrs["resolution"]
        if int(res) != res or not int(res) == f["pixels"].shape[1] == f["pixels"].shape[2]:
            raise ValueError("does not match the frames")
        name = "state_quantities"
        quantities = json.loads(f.attrs["state_quantities"])
        width = f["state"].shape[1]
        for start, size in quantities.values():
            if not (isinstance(start, int) and isinstance(size, int)):
                raise TypeError("not integers")
            if not (0 <= start and 1 <= size and start + size <= width):
                raise ValueError("outside the state columns")
        name = "angle_quantities"
        angles = json.loads(f.attrs.get("angle_quantities", "[]"))
        if not isinstance(angles, list) or not all(isinstance(a, str) for a in angles):
            raise TypeError("not a list of names")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise UserError(
            f"dataset {path} has a missing or malformed '{name}' attribute ({str(e)[:60]}); "
            "collect it again"
        ) from None


def dataset_info(path: str | os.PathLike) -> dict:
    """Attributes of a dataset plus action_dim, num_steps, num_episodes and pixels_gb."""
    with open_dataset(path) as f:
        info = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        info.update(
            action_dim=int(f["action"].shape[1]),
            num_steps=int(f["pixels"].shape[0]),
            num_episodes=int(f["ep_len"].shape[0]),
            pixels_gb=f["pixels"].size / 1e9,
            resolution=int(f["pixels"].shape[1]),
        )
    return info


def episode_lengths(path: str | os.PathLike) -> np.ndarray:
    """The number of steps of each episode of a dataset: (E,) int64."""
    with open_dataset(path) as f:
        return f["ep_len"][:].astype(np.int64)


@dataclass(frozen=True)
class ActionStats:
    """Per raw-action-dimension mean and std used to z-score actions: shapes (A,), (A,)."""

    mean: np.ndarray
    std: np.ndarray

    def normalize(self, a: np.ndarray) -> np.ndarray:
        """Z-score raw actions (..., A)."""
        return (a - self.mean) / self.std

    def denormalize(self, a: np.ndarray) -> np.ndarray:
        """Map z-scored actions (..., A) back to raw actions."""
        return a * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> ActionStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle episode indices with `seed`; return (train, val) index arrays (val non-empty)."""
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = int(round(num_episodes * val_fraction))
    if num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    else:
        n_val = 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ClipDataset(torch.utils.data.Dataset):
    """Training clips of one split of a LeWM dataset (see the module docstring for shapes)."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        history: int = 3,
        frameskip: int = 5,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        action_stats: ActionStats | None = None,
        preload: bool = False,
        pixels: np.ndarray | None = None,
        clip_frames: int | None = None,
    ):
        """`preload`: read the file's pixels (N, H, W, 3) uint8 into RAM. `pixels`: the pixels of
        this same file already in RAM (another split's `.pixels`), shared instead of read again,
        so a preloaded train and val split hold one copy between them. `clip_frames`: frames per
        clip (default history + 1)."""
        clip_frames = history + 1 if clip_frames is None else clip_frames
        if clip_frames < 1:
            raise UserError(f"clip_frames must be at least 1, got {clip_frames}")
        if split not in ("train", "val", "all"):
            raise UserError(f"unknown split '{split}'; choose train, val or all")
        self.path = str(path)
        self.history, self.frameskip = history, frameskip
        f = open_dataset(path)
        try:
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            self.env_name = str(self.attrs["env"])
            self.resolution = int(self.attrs["resolution"])
            self.state_quantities = json.loads(self.attrs["state_quantities"])
            self.angle_quantities = tuple(json.loads(self.attrs.get("angle_quantities", "[]")))
            offsets, lengths = f["ep_offset"][:], f["ep_len"][:]
            train_eps, val_eps = split_episodes(len(offsets), val_fraction, split_seed)
            self.episodes = {"train": train_eps, "val": val_eps}.get(split, np.arange(len(offsets)))
            self.ep_offset, self.ep_len = offsets, lengths
            span = clip_frames * frameskip  # raw steps a clip needs (its frames + last block)
            starts = []
            for e in self.episodes:
                n_starts = int(lengths[e]) - span + 1
                if n_starts > 0:
                    starts.append(offsets[e] + np.arange(n_starts))
            self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
            if action_stats is None:
                rows = np.concatenate(
                    [np.arange(offsets[e], offsets[e] + lengths[e]) for e in train_eps]
                    if len(train_eps)
                    else [np.arange(len(f["action"]))]
                )
                acts = f["action"][:][rows]
                action_stats = ActionStats(
                    acts.mean(0).astype(np.float32),
                    np.maximum(acts.std(0), 1e-6).astype(np.float32),
                )
            self.action_stats = action_stats
            self.action_dim = int(f["action"].shape[1])
            self._actions = self.action_stats.normalize(f["action"][:]).astype(np.float32)
            if pixels is not None and pixels.shape != f["pixels"].shape:
                raise UserError(
                    f"the shared pixel array {pixels.shape} is not the pixels of {path} "
                    f"{f['pixels'].shape}: pass the .pixels of a split of the same file"
                )
            self._pixels = pixels if pixels is not None else f["pixels"][:] if preload else None
        except (OSError, RuntimeError) as e:  # a damaged chunk met while reading
            raise UserError(
                f"dataset {path} is damaged ({str(e).splitlines()[0][:80]}); collect it again"
            ) from None
        finally:
            f.close()
        self._file: h5py.File | None = None
        self.offsets = np.arange(clip_frames) * frameskip

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def pixels(self) -> np.ndarray | None:
        """The whole file's pixels (N, H, W, 3) uint8 when held in RAM, else None."""
        return self._pixels

    def _frames(self, rows: np.ndarray) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[rows]
        try:
            if self._file is None:  # opened per process: h5py handles must not cross a fork
                self._file = h5py.File(self.path, "r")
            lo, hi = int(rows.min()), int(rows.max()) + 1
            return self._file["pixels"][lo:hi][rows - lo]
        except (OSError, RuntimeError) as e:  # a damaged chunk, or the file changed underneath
            raise UserError(
                f"dataset {self.path} could not be read ({str(e).splitlines()[0][:80]}); "
                "collect it again"
            ) from None

    def clip_rows(self, i: int) -> np.ndarray:
        """Dataset rows of the frames of clip `i`: (T,)."""
        return self.starts[i] + self.offsets

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rows = self.clip_rows(i)
        act_rows = rows[:, None] + np.arange(self.frameskip)[None, :]
        actions = self._actions[act_rows].reshape(len(rows), -1)
        return {
            "pixels": torch.from_numpy(np.ascontiguousarray(self._frames(rows))),
            "actions": torch.from_numpy(actions),
        }

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Clips `indices` stacked: pixels (B, T, H, W, 3) uint8, actions (B, T, frameskip*A)."""
        rows = self.starts[np.asarray(indices)][:, None] + self.offsets[None, :]
        act_rows = rows[..., None] + np.arange(self.frameskip)
        actions = self._actions[act_rows].reshape(*rows.shape, -1)
        if self._pixels is not None:
            pixels = self._pixels[rows]
        else:
            pixels = np.stack([self._frames(r) for r in rows])
        return {"pixels": torch.from_numpy(pixels), "actions": torch.from_numpy(actions)}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state


class ClipMix(torch.utils.data.Dataset):
    """The training clips of one dataset followed by every clip of extra datasets, each extra
    counted `repeat` times (drawn `repeat` times as often as a clip of the first): one number
    for every extra, or one per extra, in order.

    Index i < len(first) is the first dataset's clip i; the rest are the extras in order, extra
    k's block of repeat[k] * len(extra k) indices cycling through its clips. `batch(indices)`
    returns what `ClipDataset.batch` does: pixels (B, T, H, W, 3) uint8, actions (B, T,
    frameskip * A), in the order of `indices`. Every part must have the same clip shape and
    share the first part's action statistics.
    """

    def __init__(self, first: ClipDataset, extras: list[ClipDataset], repeat: int | list[int] = 1):
        repeats = [repeat] * len(extras) if isinstance(repeat, int) else list(repeat)
        if len(repeats) != len(extras):
            raise UserError(
                f"{len(repeats)} extra-data repeats for {len(extras)} extra files; give one "
                "repeat for all of them or one per file"
            )
        if any(r < 1 for r in repeats):
            raise UserError(f"the extra data's repeat must be at least 1, got {repeats}")
        self.parts = [first, *extras]
        self.action_stats = first.action_stats
        self._sizes = np.array([len(p) for p in extras], np.int64)
        self._block_ends = np.cumsum(self._sizes * np.array(repeats, np.int64))
        self._n_first = len(first)

    def __len__(self) -> int:
        return self._n_first + int(self._block_ends[-1] if len(self._block_ends) else 0)

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part, clip index within that part) of each index: two (B,) int arrays."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"clip index out of range 0..{len(self) - 1}")
        part = np.zeros(len(indices), np.int64)
        local = indices.copy()
        extra = indices >= self._n_first
        if extra.any():
            j = indices[extra] - self._n_first
            k = np.searchsorted(self._block_ends, j, side="right")
            start = np.concatenate([[0], self._block_ends])[k]
            part[extra] = k + 1
            local[extra] = (j - start) % self._sizes[k]
        return part, local

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        part, local = self.locate(indices)
        pixels, actions = [None] * len(part), [None] * len(part)
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            b = self.parts[p].batch(local[where])
            for n, i in enumerate(where):
                pixels[i], actions[i] = b["pixels"][n], b["actions"][n]
        return {"pixels": torch.stack(pixels), "actions": torch.stack(actions)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        part, local = self.locate(np.array([i]))
        return self.parts[int(part[0])][int(local[0])]
