"""`python -m recipes.figures`: make the figures (all, or those named with --only).

    python -m recipes.figures [--out docs/figures] [--only NAME ...] [--quick] [--seed 0]
        [--push-model assets/models/pusht-v1] [--analysis-model assets/models/tworoom]

Prints one JSON object: each figure's file and size and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # before any env import: offscreen MuJoCo

from recipes.figures.analysis import surprise, tsne_map  # noqa: E402
from recipes.figures.collapse import collapse  # noqa: E402
from recipes.figures.common import (  # noqa: E402
    MODELS,
    PUSH_MODEL,
    QUICK,
    TASK_MODELS,
    Budget,
    Run,
)
from recipes.figures.diagram import architecture  # noqa: E402
from recipes.figures.failed_push import failed_push  # noqa: E402
from recipes.figures.planning import budget_sweep, rollouts  # noqa: E402
from recipes.figures.results import paper_vs_ours  # noqa: E402

# Each name `--only` takes, and the function that makes its figure(s).
FIGURES: dict[str, Callable[[Run], None]] = {
    "rollouts": rollouts,
    "architecture": architecture,
    "paper_vs_ours": paper_vs_ours,
    "cem_budget": budget_sweep,
    "collapse": collapse,
    "surprise": surprise,
    "tsne": tsne_map,
    "failed_push": failed_push,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m recipes.figures", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder of the files")
    p.add_argument(
        "--only",
        action="append",
        choices=tuple(FIGURES),
        help="make only this figure (repeatable); the others' entries in figures.json stay",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny CEM budgets and few episodes, points and steps (what the test runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every task, sample and run")
    p.add_argument(
        "--push-model",
        type=Path,
        default=MODELS / PUSH_MODEL,
        help="the Push-T model folder (the rollout and the failed push)",
    )
    p.add_argument(
        "--analysis-model",
        type=Path,
        default=MODELS / "tworoom",
        help="the model of the diagram, the CEM budget sweep, the surprise and the t-SNE",
    )
    p.add_argument("--plan-samples", type=int, help="CEM samples of the rollouts")
    p.add_argument("--plan-iterations", type=int, help="CEM iterations of the rollouts")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    budget = QUICK if args.quick else Budget()
    overrides = {"plan_samples": args.plan_samples, "plan_iterations": args.plan_iterations}
    budget = replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    # the four tasks in the paper's order: Two-Room, Reacher, Push-T, Cube
    models = [args.push_model if n == PUSH_MODEL else MODELS / n for n in TASK_MODELS]
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, budget, models, args.push_model, args.analysis_model, args.seed)
    t0 = time.perf_counter()
    times = {}
    for name in args.only or FIGURES:
        t = time.perf_counter()
        FIGURES[name](run)
        times[name] = round(time.perf_counter() - t, 1)
    run.write_index()
    report = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "seconds": times,
        "files": {e["file"]: (args.out / e["file"]).stat().st_size for e in run.entries.values()},
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
