"""Keep the planner's episodes that met their goal: a subset of a `lewm collect-planned` file.

    python research/planner_reached.py --planned data/pusht-planned-r1.h5 \
        --out data/pusht-planned-r1-reached.h5 [--overwrite] [--json]

Each episode's task is drawn again from the file's attributes and its stored actions replayed
from the task's start state (`episodes_reached`, below); the episodes that met the goal at some
step are written in the same format (`write_reached`), to train on with `lewm train
--extra-data`. Prints how many were kept; with --json the last stdout line is
{"out", "episodes", "of"}. Files planned before the episode split was recorded in them are
assumed to use the default split (validation fraction 0.1, seed 0); --split F S says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

import numpy as np

from lewm_core.data.collect import check_output_path, format_attrs, write_episodes
from lewm_core.data.dataset import open_dataset
from lewm_core.envs import make
from lewm_core.errors import UserError
from lewm_core.planning.evaluate import reaches_goal
from lewm_core.planning.planner_data import planner_tasks


def episodes_reached(path: str | os.PathLike, split: tuple[float, int] = (0.1, 0)) -> np.ndarray:
    """(E,) bool: which episodes of a planner-episode file met their goal at some step.

    The tasks are drawn again from the file's attributes (source data, seed, goal offset, goal
    kinds; the episode split recorded, else `split`) and each episode's stored actions replayed
    from its task's start state; UserError when a task's start is not the episode's first
    state row (the source data or the split is not the one the file was planned on)."""
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--planned", required=True, help="a `lewm collect-planned` file")
    p.add_argument("--out", required=True)
    p.add_argument("--split", nargs=2, type=float, default=(0.1, 0), metavar=("FRACTION", "SEED"))
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        split = (args.split[0], int(args.split[1]))
        summary = write_reached(args.planned, args.out, split, overwrite=args.overwrite)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"kept {summary['episodes']} of {summary['of']} episodes in {summary['out']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
