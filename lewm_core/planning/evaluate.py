"""The paper's planning evaluation protocol.

Start states come from held-out (validation) episodes of the dataset the model was trained on
(`split`, `SPLITS`: or from its training episodes, or from every episode of the file as the
paper's evaluation draws them), or, when no dataset is given, from fresh episodes of the env's
data-collection policy. The goal
is the state `goal_offset` (25) raw steps later in the same episode, shown to the planner as its
rendered frame. The agent has `budget` (50) raw steps; success = the env's `is_success` at any
step (the start included unless `count_start` is off, `GOAL_AT_START`: the paper checks only
the states after steps). The same episodes are also run with a uniformly random policy as the floor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lewm_core.data.dataset import open_dataset, split_episodes
from lewm_core.errors import UserError
from lewm_core.planning import SPLITS
from lewm_core.planning.cem import CEMPlanner, Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.mpc import EpisodeResult, episode_generator, met_at_start, run_mpc
from lewm_core.world_model.checkpoint import LoadedModel


@dataclass
class EvalTask:
    """One evaluation episode: start and goal simulator states (Q,) and the goal frame.

    `dataset_row`: for a task drawn from a dataset, the row of its start state (the goal is
    `goal_offset` rows later in the same episode, reached by the data's actions in between);
    None for fresh policy episodes."""

    start_state: np.ndarray
    goal_state: np.ndarray
    goal_frame: np.ndarray
    dataset_row: int | None = None


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def tasks_from_dataset(
    path: str | os.PathLike,
    env,
    episodes: int,
    seed: int,
    goal_offset: int = 25,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    split: str = "val",
    keep: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> list[EvalTask]:
    """Sample `episodes` (start, goal) pairs from the dataset's validation episodes (`split`
    "train": from its training episodes; "all": from every episode; see `SPLITS`): a start row
    with the goal `goal_offset` rows later in the same episode, among the episodes of more than
    `goal_offset` steps. Where those episodes all have one length, a uniform episode and then a
    uniform start row in it (the draw of every figure so far); where they differ (a policy that
    ends its episodes), a uniform row among all the valid start rows, as the paper's evaluation
    draws, so that a short episode is not drawn as often as a long one. `keep(start, goal)`:
    draw only pairs it accepts (UserError when 100 draws per wanted pair find too few)."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, 1])
    with open_dataset(path) as f:
        width, want = f["sim_state"].shape[1], env.unwrapped.state_dim
        if width != want:  # another env's data (or a damaged file): its states do not fit
            raise UserError(
                f"dataset {path} ({f.attrs.get('env')}) holds simulator states of {width} "
                f"values, the model's env has {want}; use a dataset of the model's env"
            )
        off, ln = f["ep_offset"][:], f["ep_len"][:]
        train, val = split_episodes(len(off), val_fraction, split_seed)
        chosen = {"val": val, "train": train, "all": np.arange(len(off))}[split]
        pool = [e for e in (chosen if len(chosen) else np.arange(len(off))) if ln[e] > goal_offset]
        if not pool:
            raise UserError(f"no episode of {path} is longer than {goal_offset} steps")
        valid = None  # every valid start row, where the episodes differ in length
        if len({int(ln[e]) for e in pool}) > 1:
            valid = np.concatenate([off[e] + np.arange(ln[e] - goal_offset) for e in pool])
        sims = f["sim_state"]
        tasks, draws = [], 0
        while len(tasks) < episodes:
            draws += 1
            if draws > 100 * episodes:
                raise UserError(
                    f"only {len(tasks)} of {draws - 1} (start, goal) pairs drawn from {path} "
                    f"are of the kind asked for; ask for fewer episodes or another kind"
                )
            if valid is None:
                e = pool[rng.integers(len(pool))]
                row = int(off[e]) + int(rng.integers(0, ln[e] - goal_offset))
            else:
                row = int(valid[rng.integers(len(valid))])
            start, goal = sims[row].astype(np.float64), sims[row + goal_offset].astype(np.float64)
            if keep is not None and np.isfinite(start).all() and not keep(start, goal):
                continue
            try:  # states from a file: the simulator must accept them (a damaged file: not)
                if not (np.isfinite(start).all() and np.isfinite(goal).all()):
                    raise ValueError("not finite")
                frame = render_state(env, goal)
                render_state(env, start)  # (the start is rendered when the episode begins)
            except Exception as e:  # noqa: BLE001 - whatever the simulator or renderer says
                raise UserError(
                    f"dataset {path} holds a simulator state the env cannot restore (row {row}: "
                    f"{str(e).splitlines()[0][:60]}); collect it again"
                ) from None
            tasks.append(EvalTask(start, goal, frame, dataset_row=row))
    return tasks


def tasks_from_policy(
    env_name: str, env, episodes: int, seed: int, goal_offset: int = 25, max_warmup: int = 50
) -> list[EvalTask]:
    """(start, goal) pairs from fresh episodes of the data policy: goal = `goal_offset` later."""
    from lewm_core.envs import make_policy

    rng = np.random.default_rng([seed, 2])
    tasks = []
    base = env.unwrapped
    for _ in range(episodes):
        ep_seed = int(rng.integers(2**31))
        env.reset(seed=ep_seed)
        policy = make_policy(env_name, env, seed=ep_seed)
        policy.reset()
        for _ in range(int(rng.integers(0, max_warmup + 1))):
            env.step(policy.act())
        start = base.get_state().copy()
        for _ in range(goal_offset):
            env.step(policy.act())
        goal = base.get_state().copy()
        tasks.append(EvalTask(start, goal, render_state(env, goal)))
    return tasks


def render_state(env, state: np.ndarray) -> np.ndarray:
    """The frame (H, W, 3) of simulator state `state`."""
    env.unwrapped.set_state(state)
    return env.unwrapped.render().copy()


def reaches_goal(
    env,
    task: EvalTask,
    actions: Iterable[np.ndarray],
    stop_at_goal: bool = True,
    count_start: bool = True,
) -> bool:
    """Set the task's start state and step `env` through raw `actions` (each (A,)); True when
    the goal's success test holds at the start (unless not `count_start`: `mpc.met_at_start`,
    the rule `run_mpc` follows) or after any step. With `stop_at_goal`
    the actions after the first success are neither run nor, from a generator, drawn; without
    it the env ends in the state after the last action."""
    base = env.unwrapped
    base.set_state(task.start_state)
    reached = met_at_start(env, task.goal_state, count_start)
    if reached and stop_at_goal:
        return True
    for action in actions:
        env.step(np.asarray(action, dtype=np.float32))
        reached = reached or bool(base.is_success(task.goal_state))
        if reached and stop_at_goal:
            return True
    return reached


def run_task(
    env, planner: CEMPlanner, task: EvalTask, budget: int, seed: int, index: int, **mpc_options
) -> EpisodeResult:
    """Task `index` of a run seeded `seed`: the env reset with seed + index and the CEM sampler
    from `episode_generator(seed, index)`, then `run_mpc` (`mpc_options` passed on), so that
    `lewm eval` and `lewm collect-planned` plan a task alike."""
    gen = episode_generator(seed, index, planner.device)
    env.reset(seed=seed + index)
    return run_mpc(
        env,
        planner,
        task.start_state,
        task.goal_state,
        task.goal_frame,
        budget,
        gen,
        **mpc_options,
    )


def random_policy_success(
    env, task: EvalTask, budget: int, rng: np.random.Generator, count_start: bool = True
) -> bool:
    """Does a uniformly random policy reach the goal within `budget` steps? (`count_start`:
    as `reaches_goal`'s.)"""
    shape = env.unwrapped.action_space.shape
    actions = (rng.uniform(-1, 1, shape) for _ in range(budget))
    return reaches_goal(env, task, actions, count_start=count_start)


def side_by_side_video(
    frames: np.ndarray, goal: np.ndarray, path: str | os.PathLike, scale: int = 4, fps: int = 10
) -> None:
    """Write an mp4 of rollout | goal, each frame upscaled `scale` times."""
    import imageio.v2 as imageio

    from lewm_core.atomic import atomic_path

    goal = np.broadcast_to(goal, frames.shape)
    video = np.concatenate([frames, np.full_like(frames[:, :, :2], 255), goal], axis=2)
    video = video.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = video.shape[1:3]
    video = np.pad(video, ((0, 0), (0, (-h) % 16), (0, (-w) % 16), (0, 0)))
    with atomic_path(path) as tmp:
        imageio.mimwrite(
            tmp, list(video), fps=fps, format="FFMPEG", codec="libx264", macro_block_size=1
        )


def evaluate(
    loaded: LoadedModel,
    episodes: int = 50,
    seed: int = 0,
    data: str | os.PathLike | None = None,
    cem: CEMConfig | None = None,
    budget: int = 50,
    goal_offset: int = 25,
    videos: int = 0,
    video_dir: str | os.PathLike | None = None,
    progress: bool = True,
    dtype: str = "auto",
    compile_rollout: bool = False,
    planner: CEMPlanner | None = None,
    split: str = "val",
    count_start: bool = True,
) -> dict:
    """Run the protocol; return the summary dict (success rate, interval, random floor, times).

    `split`: which episodes of `data` the tasks come from (`SPLITS`; "val" by default).
    `count_start`: whether a task whose goal holds at its start is reached there, for the
    planner and the random floor alike (`GOAL_AT_START`; True by default, False: the paper's
    rule, `mpc.met_at_start`).

    `dtype` and `compile_rollout` are the `Planner`'s; with compilation the first plan's time
    includes it (the median plan time does not). `planner`: plan with this one instead of a
    `Planner` over `loaded` (e.g. research/ensemble_plan.py's; `cem`, `dtype` and `compile_rollout`
    are then its own); `loaded` still names the env, the image size and the held-out split.
    """
    from lewm_core.envs import make

    env_name = loaded.env_name
    if not env_name:
        raise UserError(f"{loaded.path} does not record its env; retrain it with `lewm train`")
    env = make(env_name, resolution=loaded.config.image_size)
    env.reset(seed=seed)
    if data is not None:
        tasks = tasks_from_dataset(
            data, env, episodes, seed, goal_offset, *loaded.split, split=split
        )
    else:
        tasks = tasks_from_policy(env_name, env, episodes, seed, goal_offset)
    if planner is None:
        planner = Planner(
            loaded.model, loaded.action_stats, cem, dtype=dtype, compile_rollout=compile_rollout
        )
    rng = np.random.default_rng([seed, 3])
    results: list[EpisodeResult] = []
    random_ok, kinds = [], []
    for i, task in enumerate(tqdm(tasks, desc="eval", unit="ep", disable=not progress)):
        kinds.append(env.unwrapped.goal_kind(task.start_state, task.goal_state))
        res = run_task(env, planner, task, budget, seed, i, count_start=count_start)
        results.append(res)
        if i < videos and video_dir is not None:
            Path(video_dir).mkdir(parents=True, exist_ok=True)
            side_by_side_video(
                res.frames,
                task.goal_frame,
                Path(video_dir) / f"episode_{i:03d}_{'ok' if res.success else 'fail'}.mp4",
            )
        random_ok.append(random_policy_success(env, task, budget, rng, count_start))
    env.close()
    n_ok = sum(r.success for r in results)
    lo, hi = wilson_interval(n_ok, len(results))
    plan_ms = np.array([s * 1000 for r in results for s in r.plan_seconds]) if results else None
    has_plans = plan_ms is not None and len(plan_ms) > 0
    return {
        "env": env_name,
        "episodes": len(results),
        "success_rate": n_ok / max(1, len(results)),
        "success_ci95": [lo, hi],
        "random_success_rate": float(np.mean(random_ok)) if random_ok else 0.0,
        "plan_ms_median": float(np.median(plan_ms)) if has_plans else 0.0,
        "plan_ms_p95": float(np.percentile(plan_ms, 95)) if has_plans else 0.0,
        "plans": int(len(plan_ms)) if has_plans else 0,
        "mean_steps": float(np.mean([r.steps for r in results])) if results else 0.0,
        "sampling": planner.cfg.sampling,
        "dtype": planner.dtype_name,
        "compiled": planner.compiled,
        "cem": {
            "samples": planner.cfg.samples,
            "iterations": planner.cfg.iterations,
            "elites": planner.cfg.elites,
            "context": planner.cfg.context,
            "horizon": planner.cfg.horizon,
            "objective": planner.cfg.objective,
            "receding_horizon": planner.cfg.receding_horizon,
        },
        "seed": seed,
        "source": "dataset" if data is not None else "policy",
        "data": str(data) if data is not None else None,
        "split": split if data is not None else None,
        "goal_at_start": "counted" if count_start else "not-counted",
        "goal_errors": goal_error_summary(results, env.unwrapped.success_tolerances),
        "goal_kinds": goal_kind_summary(
            kinds, [r.success for r in results], env.unwrapped.goal_kinds, random_ok
        ),
        "episode_results": [
            {"success": r.success, "steps": r.steps, "kind": kind, "final_errors": r.final_errors}
            for r, kind in zip(results, kinds, strict=True)
        ],
    }


def goal_kind_summary(
    kinds: list[str],
    successes: list[bool],
    order: Iterable[str],
    random_successes: list[bool] | None = None,
) -> dict[str, dict[str, int]]:
    """Success per kind of task (the env's `goal_kind`, in the env's `goal_kinds` order, kinds
    with no task left out): {kind: {"episodes", "successes"[, "random_successes"]}}. Push-T's
    "push" tasks, where the T must be moved, are the ones the paper's expert goals ask for."""
    out: dict[str, dict[str, int]] = {}
    for kind in order:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            out[kind] = {"episodes": len(idx), "successes": sum(bool(successes[i]) for i in idx)}
            if random_successes is not None:
                out[kind]["random_successes"] = sum(bool(random_successes[i]) for i in idx)
    return out


def goal_error_summary(results: list[EpisodeResult], tolerances: dict[str, float]) -> dict:
    """How close the episodes ended: per error of the env's success test, its tolerance and the
    median final error over all and over the failed episodes; `failed_within_2x` is the share
    of failed episodes whose every error ended below twice its tolerance (near misses)."""
    failed = [r for r in results if not r.success]

    def median(rs: list[EpisodeResult], name: str) -> float | None:
        return float(np.median([r.final_errors[name] for r in rs])) if rs else None

    near = [all(r.final_errors[k] < 2 * t for k, t in tolerances.items()) for r in failed]
    return {
        "tolerance": dict(tolerances),
        "final_median": {k: median(results, k) for k in tolerances},
        "failed_final_median": {k: median(failed, k) for k in tolerances},
        "failed_within_2x": float(np.mean(near)) if near else None,
    }
