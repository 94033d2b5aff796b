"""Datasets of the planner's own episodes, to train the model where planning leads it.

CEM picks the action sequences that the model rates closest to the goal, and a model is least
accurate on sequences unlike its training data: on Push-T the shipped model's 5-block prediction
error is 2.4x larger along CEM's plans than along the data's own goal-reaching actions
(`bench/expert_cost.py`). Running the planner in the simulator and recording what really
happened gives exactly those transitions with their true outcome; training on them (`lewm train
--extra-data`) corrects the model there. This is DAgger's idea applied to a world model: the
data follow the distribution the model's own planner visits.

Each episode starts from a (start, goal) pair of the model's dataset drawn as `lewm eval` draws
them, but from the dataset's *training* episodes, so the held-out episodes that evaluation uses
stay unseen. The planner runs `budget` raw steps without stopping at the goal (every episode has
the same length; after reaching it the planner keeps aiming at it). The file has the layout of
`lewm collect` (`lewm_core.collect`), with attributes naming the model, the source dataset and
the CEM settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lewm_core.checkpoint import LoadedModel
from lewm_core.collect import check_output_path, format_attrs, write_episodes
from lewm_core.errors import UserError
from lewm_core.planning import CEMConfig, Planner, episode_generator, run_mpc


def planner_tasks(
    env,
    env_name: str,
    data: str | os.PathLike,
    episodes: int,
    seed: int,
    goal_offset: int,
    goal_kinds: Sequence[str] | None,
    split: tuple[float, int],
) -> list:
    """The `episodes` (start, goal) tasks a planner-episode file of this seed plans: drawn as
    `lewm eval` draws them, from the training episodes of `data` under the model's episode
    `split` (val_fraction, split_seed), only of `goal_kinds` (the env's `goal_kind`) if given."""
    from lewm_core.evaluate import tasks_from_dataset

    base = env.unwrapped
    keep = None
    if goal_kinds:
        unknown = sorted(set(goal_kinds) - set(base.goal_kinds))
        if unknown:
            raise UserError(
                f"{env_name} has no goal kind {', '.join(unknown)}; "
                f"choose from {', '.join(base.goal_kinds)}"
            )
        wanted = set(goal_kinds)

        def keep(start: np.ndarray, goal: np.ndarray) -> bool:
            return base.goal_kind(start, goal) in wanted

    return tasks_from_dataset(
        data, env, episodes, seed, goal_offset, *split, split="train", keep=keep
    )


def collect_planner_episodes(
    loaded: LoadedModel,
    data: str | os.PathLike,
    out: str | os.PathLike,
    episodes: int,
    seed: int = 0,
    budget: int = 50,
    goal_offset: int = 25,
    goal_kinds: Sequence[str] | None = None,
    cem: CEMConfig | None = None,
    dtype: str = "auto",
    compile_rollout: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the planner of `loaded` on `episodes` tasks drawn from the training split of `data`
    and write the episodes (`budget` rows each) to the dataset `out`. Returns {"out", "env",
    "episodes", "steps", "reached_goal" (share of episodes that met the goal at some step)}.

    `goal_kinds`: only tasks of these kinds (the env's `goal_kind`, e.g. Push-T's "push").
    `progress(done, total)` after each episode. UserError on bad input, before any planning.
    """
    from lewm_core.envs import make

    env_name = loaded.env_name
    if not env_name:
        raise UserError(f"{loaded.path} does not record its env; retrain it with `lewm train`")
    if not 1 <= episodes <= 100_000:
        raise UserError(f"--episodes must be between 1 and 100000 (got {episodes})")
    if not 2 <= budget <= 10_000:
        raise UserError(f"--budget must be between 2 and 10000 raw steps (got {budget})")
    out = check_output_path(out, overwrite)
    env = make(env_name, resolution=loaded.config.image_size)
    env.reset(seed=seed)
    tasks = planner_tasks(
        env, env_name, data, episodes, seed, goal_offset, goal_kinds, loaded.split
    )
    planner = Planner(
        loaded.model, loaded.action_stats, cem, dtype=dtype, compile_rollout=compile_rollout
    )
    successes = []

    def run() -> Iterator[dict[str, np.ndarray]]:
        for i, task in enumerate(tasks):
            gen = episode_generator(seed, i, planner.device)
            env.reset(seed=seed + i)
            res = run_mpc(
                env,
                planner,
                task.start_state,
                task.goal_state,
                task.goal_frame,
                budget,
                gen,
                stop_at_goal=False,
            )
            successes.append(res.success)
            yield {
                "pixels": res.frames[:budget],
                "action": res.actions,
                "state": res.states,
                "sim_state": res.sim_states,
            }

    c = planner.cfg
    attrs = dict(
        seed=seed,
        policy=f"CEM planner of {loaded.path} (lewm_core.planner_data)",
        source_data=str(data),
        source_split="train",
        split=json.dumps(list(loaded.split)),  # (val_fraction, split_seed) the tasks came from
        budget=budget,
        goal_offset=goal_offset,
        goal_kinds=json.dumps(list(goal_kinds or [])),
        cem=json.dumps(
            dict(
                samples=c.samples,
                iterations=c.iterations,
                elites=c.elites,
                horizon=c.horizon,
                receding_horizon=c.receding_horizon,
                context=c.context,
                sampling=c.sampling,
                objective=c.objective,
            )
        ),
    )
    try:
        path = write_episodes(
            out, env_name, loaded.config.image_size, run(), episodes, budget, attrs, progress
        )
    finally:
        env.close()
    return {
        "out": str(path),
        "env": env_name,
        "episodes": episodes,
        "steps": episodes * budget,
        "reached_goal": float(np.mean(successes)),
    }


def episodes_reached(path: str | os.PathLike, split: tuple[float, int] = (0.1, 0)) -> np.ndarray:
    """(E,) bool: which episodes of a planner-episode file met their goal at some step.

    The tasks are drawn again from the file's attributes (source data, seed, goal offset, goal
    kinds; the episode split recorded, else `split`) and each episode's stored actions replayed
    from its task's start state; UserError when a task's start is not the episode's first
    state row (the source data or the split is not the one the file was planned on)."""
    from lewm_core.data import open_dataset
    from lewm_core.envs import make
    from lewm_core.evaluate import reaches_goal

    with open_dataset(path) as f:
        a = dict(f.attrs)
        if "source_data" not in a:
            raise UserError(f"{path} is not a `lewm collect-planned` file (no source_data)")
        if "filtered_from" in a:
            raise UserError(f"{path} is a subset already ({a['filtered_from']}); give its source")
        actions, states = f["action"][:], f["state"][:]
        offsets, lengths = f["ep_offset"][:], f["ep_len"][:]
    if "split" in a:
        split = tuple(json.loads(a["split"]))
    env = make(a["env"], resolution=int(a["resolution"]))
    try:
        env.reset(seed=int(a["seed"]))
        tasks = planner_tasks(
            env, a["env"], a["source_data"], len(offsets), int(a["seed"]),
            int(a["goal_offset"]), json.loads(a["goal_kinds"]), split,
        )  # fmt: skip
        reached = np.zeros(len(offsets), bool)
        for k, (task, start, n) in enumerate(zip(tasks, offsets, lengths, strict=True)):
            env.unwrapped.set_state(task.start_state)  # a state row is the state before its action
            if not np.allclose(env.unwrapped.state_vector, states[start], atol=1e-4):
                raise UserError(
                    f"episode {k} of {path} does not replay from its task: is "
                    f"{a['source_data']} the data it was planned on (split {split})?"
                )
            reached[k] = reaches_goal(env, task, actions[start : start + n], stop_at_goal=False)
    finally:
        env.close()
    return reached


def write_reached(
    path: str | os.PathLike,
    out: str | os.PathLike,
    split: tuple[float, int] = (0.1, 0),
    overwrite: bool = False,
) -> dict:
    """Write the episodes of a planner-episode file that met their goal (`episodes_reached`) to
    the dataset `out`, with the source's attributes plus `filtered_from`. Returns {"out",
    "episodes" (kept), "of" (all)}."""
    from lewm_core.data import open_dataset

    out = check_output_path(out, overwrite)
    reached = episodes_reached(path, split)
    if not reached.any():
        raise UserError(f"no episode of {path} met its goal; nothing to write")
    with open_dataset(path) as f:
        a = dict(f.attrs)
        env_name, resolution, steps = a["env"], int(a["resolution"]), int(a["steps"])
        own = format_attrs(env_name, resolution, int(reached.sum()), steps)  # set anew
        attrs = {k: v for k, v in a.items() if k not in own}
        attrs["filtered_from"] = f"{path}: the episodes that met their goal"
        offsets = f["ep_offset"][:]

        def kept() -> Iterator[dict[str, np.ndarray]]:
            for start in offsets[reached]:
                sl = slice(int(start), int(start) + steps)
                yield {name: f[name][sl] for name in ("pixels", "action", "state", "sim_state")}

        write_episodes(out, env_name, resolution, kept(), int(reached.sum()), steps, attrs)
    return {"out": str(out), "episodes": int(reached.sum()), "of": len(reached)}
