"""Dataset collection: run an environment's data policy and write episodes to one HDF5 file.

File layout (format `lewm-dataset-v1`), N = total steps over all episodes, E = episodes:
    pixels     uint8   (N, H, W, 3)   frame observed *before* the step's action, chunked + lzf
    action     float32 (N, A)         raw action taken at that step, in [-1, 1]
    state      float32 (N, S)         named physical quantities, concatenated (probing targets)
    sim_state  float64 (N, Q)         full simulator state (restores the env exactly)
    ep_offset  int64   (E,)           index of each episode's first step
    ep_len     int64   (E,)           number of steps of each episode
Episodes fill the rows in order (ep_offset is the running sum of ep_len). They all have the
steps asked for unless the data policy ends its episodes (`Policy.done`, pusht-v1's expert):
then each has at most that many, and its per-step arrays are chunked (written as they come).
Attributes: env, resolution, seed, policy, lewm_version, format, state_quantities (JSON
{name: [start, size]}), state_columns, angle_quantities, action_dim.

Episode k is generated from seed (seed, k) alone, so the file does not depend on the number of
worker processes. The file is written to a temporary name and renamed when complete: an
interrupted collection leaves no half file and never touches an existing one. A collection
killed outright (SIGKILL) leaves its temporary `.<name>.tmp-<pid>-*`; the next collection to the
same file deletes it. Worker processes ignore Ctrl-C (the parent stops them) and exit when the
parent dies.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lewm_core import __version__
from lewm_core.atomic import atomic_path, remove_stale_temporaries
from lewm_core.errors import UserError

FORMAT = "lewm-dataset-v1"
MIN_RESOLUTION, MAX_RESOLUTION = 32, 224
MAX_EPISODES, MAX_STEPS = 1_000_000, 10_000


@dataclass(frozen=True)
class CollectSpec:
    """What to collect: `episodes` episodes of `steps` raw steps of env `env` at `resolution` px
    (at most `steps` when the policy ends its episodes, `Policy.done`)."""

    env: str
    episodes: int
    steps: int
    resolution: int = 64
    seed: int = 0
    policy: str = "default"  # one of lewm_core.envs.POLICIES[env]


def episode_seed(seed: int, episode: int) -> int:
    """A 31-bit seed for episode `episode` of a collection seeded with `seed`."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0] & 0x7FFFFFFF)


def run_episode(env, policy, steps: int, seed: int) -> dict[str, np.ndarray]:
    """Roll out `policy` in `env` for `steps` steps from `env.reset(seed=seed)`, or fewer: the
    episode ends with the first row after whose action `policy.done()` holds (that row and its
    action recorded; the action is not run).

    Returns, for T <= `steps` rows, pixels (T, H, W, 3) uint8, action (T, A) float32, state
    (T, S) float32, sim_state (T, Q) float64; row t is the observation before action t.
    """
    obs, _ = env.reset(seed=seed)
    policy.reset()
    base = env.unwrapped
    pixels = np.empty((steps, *obs.shape), np.uint8)
    actions = np.empty((steps, base.action_space.shape[0]), np.float32)
    states, sims = [], []
    for t in range(steps):
        pixels[t] = obs
        states.append(base.state_vector)
        sims.append(base.get_state())
        a = np.clip(np.asarray(policy.act(), np.float32), -1.0, 1.0)
        actions[t] = a
        if policy.done():
            pixels, actions = pixels[: t + 1], actions[: t + 1]
            break
        obs, *_ = env.step(a)
    return {
        "pixels": pixels,
        "action": actions,
        "state": np.asarray(states, np.float32),
        "sim_state": np.asarray(sims, np.float64),
    }


_worker_env = None


def _init_worker(parent: int) -> None:
    """Pool initializer: leave Ctrl-C to the parent, and exit once the parent is gone.

    A worker killed by the SIGINT of a terminal's Ctrl-C takes its episode with it and the
    parent would wait for that episode forever; an orphaned worker blocked on the task queue
    would live on after the parent was SIGKILLed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_episode(args: tuple[str, int, int, int, int, str]) -> dict[str, np.ndarray]:
    """Collect one episode in a worker process, reusing the worker's env."""
    global _worker_env
    from lewm_core.envs import make, make_policy

    name, resolution, steps, seed, episode, policy_name = args
    if _worker_env is None or _worker_env[0] != (name, resolution):
        _worker_env = ((name, resolution), make(name, resolution=resolution))
    env = _worker_env[1]
    ep_seed = episode_seed(seed, episode)
    policy = make_policy(name, env, seed=ep_seed, policy=policy_name)
    return run_episode(env, policy, steps, ep_seed)


def check_output_path(out: str | os.PathLike, overwrite: bool) -> Path:
    """Validate an output file path before any work starts; raise UserError naming the fix."""
    out = Path(out)
    try:
        exists, is_dir = out.exists(), out.is_dir()
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, a file as a folder
        why = getattr(e, "strerror", None) or e
        msg = f"cannot use output {str(out)[:80]} ({why}); choose another --out"
        raise UserError(msg) from None
    if exists and is_dir:
        raise UserError(f"output {out} is a folder; give a file path such as {out}/data.h5")
    if exists and not overwrite:
        raise UserError(f"output {out} already exists; pass --overwrite or choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(
                f"cannot create folder {parent} ({e.strerror}); choose another --out"
            ) from None
    if not parent.is_dir():
        raise UserError(f"{parent} is not a folder; choose another --out")
    if not os.access(parent, os.W_OK):
        raise UserError(f"folder {parent} is not writable; choose another --out")
    return out


def validate_spec(spec: CollectSpec, workers: int = 1) -> None:
    """Raise UserError if any value of `spec` is out of range."""
    from lewm_core.envs import ENV_NAMES, POLICIES

    if spec.env not in ENV_NAMES:
        raise UserError(f"unknown env '{spec.env}'; choose one of {', '.join(ENV_NAMES)}")
    if spec.policy not in POLICIES[spec.env]:
        raise UserError(
            f"--policy {spec.policy!r}: {spec.env} has the data policies "
            f"{', '.join(POLICIES[spec.env])}"
        )
    if not MIN_RESOLUTION <= spec.resolution <= MAX_RESOLUTION:
        raise UserError(
            f"resolution {spec.resolution} is out of range; "
            f"choose {MIN_RESOLUTION} to {MAX_RESOLUTION}"
        )
    if not 1 <= spec.episodes <= MAX_EPISODES:
        raise UserError(f"--episodes must be between 1 and {MAX_EPISODES} (got {spec.episodes})")
    if not 2 <= spec.steps <= MAX_STEPS:  # one episode's frames are held in memory
        raise UserError(f"--steps must be between 2 and {MAX_STEPS} (got {spec.steps})")
    if not 0 <= spec.seed < 2**32:
        raise UserError(f"--seed must be between 0 and {2**32 - 1} (got {spec.seed})")
    max_workers = max(64, 2 * (os.cpu_count() or 1))
    if not 1 <= workers <= max_workers:
        raise UserError(f"--workers must be between 1 and {max_workers} (got {workers})")


def dataset_layout(env_name: str, resolution: int) -> dict:
    """What a dataset of env `env_name` records per step: {state_quantities ({name: [start,
    size]}), state_columns, state_dim, action_dim, sim_dim, angle_quantities}."""
    from lewm_core.envs import make

    probe = make(env_name, resolution=resolution)
    _, info = probe.reset(seed=0)
    base = probe.unwrapped
    quantities, start = {}, 0
    columns = []
    for name, value in info["state"].items():
        size = int(np.size(value))
        quantities[name] = [start, size]
        columns += [name] if size == 1 else [f"{name}[{i}]" for i in range(size)]
        start += size
    layout = dict(
        state_quantities=quantities,
        state_columns=columns,
        state_dim=start,
        action_dim=int(base.action_space.shape[0]),
        sim_dim=int(np.size(base.get_state())),
        angle_quantities=list(getattr(base, "angle_quantities", ())),
    )
    probe.close()
    return layout


def format_attrs(
    env_name: str, resolution: int, num_episodes: int, steps: int, layout: dict | None = None
) -> dict:
    """The attributes every dataset file carries (the format, env, size and state layout);
    `write_episodes` sets them, and a caller's own attributes may not repeat them. `layout`:
    `dataset_layout(env_name, resolution)` if the caller has it (it builds the env)."""
    layout = layout or dataset_layout(env_name, resolution)
    return dict(
        format=FORMAT,
        env=env_name,
        resolution=resolution,
        episodes=num_episodes,
        steps=steps,
        action_dim=layout["action_dim"],
        lewm_version=__version__,
        state_quantities=json.dumps(layout["state_quantities"]),
        state_columns=json.dumps(layout["state_columns"]),
        angle_quantities=json.dumps(layout["angle_quantities"]),
    )


def write_episodes(
    out: Path,
    env_name: str,
    resolution: int,
    episodes: Iterable[dict[str, np.ndarray]],
    num_episodes: int,
    steps: int,
    attrs: dict,
    progress: Callable[[int, int], None] | None = None,
    compression: str = "lzf",
    varying: bool = False,
) -> Path:
    """Write `num_episodes` episodes of `steps` rows each (dicts as `run_episode` returns) to
    the HDF5 file `out`, atomically, with the format's attributes plus `attrs`; return `out`.

    `varying`: episodes of 1 to `steps` rows each (a data policy that ends its episodes); the
    per-step arrays are then chunked and cut to the rows written, and ep_offset and ep_len
    follow the episodes' lengths. Without it the layout is that of every fixed-length file.

    `compression` "lzf": the pixels lzf-compressed (fast to write and read, the default);
    "gzip": every per-step array gzip-compressed at level 9, bytes shuffled (a few times
    smaller, slower to write: for files kept small, such as a model's held-out sample)."""
    if compression not in ("lzf", "gzip"):
        raise ValueError(f"unknown compression {compression!r}; choose lzf or gzip")
    small = (
        dict(compression="gzip", compression_opts=9, shuffle=True) if compression == "gzip" else {}
    )
    try:
        layout = dataset_layout(env_name, resolution)
        n, r = num_episodes * steps, resolution
        remove_stale_temporaries(out.parent, out.name)  # left by a collection killed outright
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            chunk = (max(1, min(16, steps)), r, r, 3)

            def per_step(name: str, width: tuple, dtype: type, **kw) -> h5py.Dataset:
                if varying:  # cut to the rows written at the end
                    kw = {**kw, "maxshape": (None, *width), "chunks": kw.get("chunks", True)}
                return f.create_dataset(name, (n, *width), dtype, **kw)

            d_pix = per_step(
                "pixels", (r, r, 3), np.uint8, chunks=chunk, **(small or {"compression": "lzf"})
            )
            d_act = per_step("action", (layout["action_dim"],), np.float32, **small)
            d_state = per_step("state", (layout["state_dim"],), np.float32, **small)
            d_sim = per_step("sim_state", (layout["sim_dim"],), np.float64, **small)
            if not varying:
                f.create_dataset("ep_offset", data=np.arange(num_episodes, dtype=np.int64) * steps)
                f.create_dataset("ep_len", data=np.full(num_episodes, steps, np.int64))
            f.attrs.update(**format_attrs(env_name, r, num_episodes, steps, layout), **attrs)
            k, row, lengths = -1, 0, []
            for k, ep in enumerate(episodes):
                m = len(ep["action"])
                if k >= num_episodes or not (m == steps or (varying and 1 <= m <= steps)):
                    rows = f"1 to {steps}" if varying else f"{steps}"
                    raise ValueError(
                        f"episode {k} ({m} rows) does not fit: {num_episodes} x {rows} rows"
                    )
                sl = slice(row, row + m)
                d_pix[sl] = ep["pixels"]
                d_act[sl] = ep["action"]
                d_state[sl] = ep["state"]
                d_sim[sl] = ep["sim_state"]
                row += m
                lengths.append(m)
                if progress is not None:
                    progress(k + 1, num_episodes)
            if k + 1 != num_episodes:
                raise ValueError(f"{k + 1} episodes written, {num_episodes} announced")
            if varying:
                for d in (d_pix, d_act, d_state, d_sim):
                    d.resize(row, axis=0)
                ep_len = np.asarray(lengths, np.int64)
                f.create_dataset("ep_offset", data=np.cumsum(ep_len) - ep_len)
                f.create_dataset("ep_len", data=ep_len)
        return out
    finally:  # a generator (a worker pool, a planner) stops here, not when garbage-collected
        close = getattr(episodes, "close", None)
        if close is not None:
            close()


def collect(
    spec: CollectSpec,
    out: str | os.PathLike,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Collect `spec` into the HDF5 file `out` (atomically); return its path.

    Each episode has `spec.steps` rows, or fewer when the data policy ends it (`Policy.done`;
    `lewm_core.envs.ends_episodes`). `progress(done, total)` is called after each episode.
    Raises UserError on bad input, before anything is written.
    """
    from lewm_core.envs import ends_episodes

    validate_spec(spec, workers)
    out = check_output_path(out, overwrite)
    jobs = [
        (spec.env, spec.resolution, spec.steps, spec.seed, k, spec.policy)
        for k in range(spec.episodes)
    ]
    which = "" if spec.policy == "default" else f", policy='{spec.policy}'"
    attrs = dict(seed=spec.seed, policy=f"lewm_core.envs.make_policy('{spec.env}'{which})")

    def episodes() -> Iterator[dict[str, np.ndarray]]:
        if workers == 1:
            for job in jobs:
                yield _worker_episode(job)
            return
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            chunksize = max(1, min(8, spec.episodes // (4 * workers)))
            yield from pool.imap(_worker_episode, jobs, chunksize=chunksize)

    return write_episodes(
        out,
        spec.env,
        spec.resolution,
        episodes(),
        spec.episodes,
        spec.steps,
        attrs,
        progress,
        varying=ends_episodes(spec.env, spec.policy),
    )
