"""Datasets of the planner's own episodes, to train the model where planning leads it.

CEM picks the action sequences that the model rates closest to the goal, and a model is least
accurate on sequences unlike its training data: on Push-T the shipped model's 5-block prediction
error is 2.4x larger along CEM's plans than along the data's own goal-reaching actions
(`research/expert_cost.py`). Running the planner in the simulator and recording what really
happened gives exactly those transitions with their true outcome; training on them (`lewm train
--extra-data`) corrects the model there. This is DAgger's idea applied to a world model: the
data follow the distribution the model's own planner visits.

Each episode starts from a (start, goal) pair of the model's dataset drawn as `lewm eval` draws
them, but from the dataset's *training* episodes, so the held-out episodes that evaluation uses
stay unseen. The planner runs `budget` raw steps without stopping at the goal (every episode has
the same length; after reaching it the planner keeps aiming at it). The file has the layout of
`lewm collect` (`lewm_core.data.collect`), with attributes naming the model, the source dataset and
the CEM settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lewm_core.data.collect import check_output_path, write_episodes
from lewm_core.errors import UserError
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import run_task, tasks_from_dataset
from lewm_core.world_model.checkpoint import LoadedModel


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
            res = run_task(env, planner, task, budget, seed, i, stop_at_goal=False)
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
        policy=f"CEM planner of {loaded.path} (lewm_core.planning.planner_data)",
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
