"""Planned episodes of the shipped models: the rollout GIFs and success against the CEM budget.

A task is a (start, goal) pair drawn by `evaluate.tasks_from_dataset` from the model's held-out
sample (`sample.h5`, every episode, the seed of the run), the goal `goal_offset` steps after the
start; `evaluate.run_task` plans task i exactly as `lewm eval` plans its i-th task (the env reset
with seed + i, CEM seeded by `mpc.episode_generator`). The planner is the model's shipped one
(`LoadedModel.planning`: sampling, context, objective, blocks executed) at the budget asked for.
Each task is planned once per model and budget and shared by the figures that show it (the
Push-T GIF and the failed push; the Two-Room GIF and the sweep's matching budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lewm_core.envs import make
from lewm_core.folders import EVAL_FILE, SAMPLE_FILE
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import EvalTask, run_task, tasks_from_dataset, wilson_interval
from lewm_core.planning.mpc import EpisodeResult
from recipes.figures.common import (
    GIF_SCALE,
    HERO_SCALE,
    PROTOCOL,
    Run,
    budget_words,
    cem_budget,
    config_of,
    framed,
    hstack,
    labelled,
    published_budget_words,
    save_gif,
    save_png,
    shown,
    title,
    upscale,
    vstack,
)
from recipes.figures.results import read_json, row_of, training_file

REACHED, MISSED = (40, 170, 60), (220, 40, 40)  # the border of a rollout's last frame
TASKS_PER_TRY = 6  # tasks drawn per task planned: the kind shown is one of several


@dataclass
class Planned:
    """Task `index` of a model's sample and its planned episode."""

    index: int
    task: EvalTask
    result: EpisodeResult


class TaskPlanner:
    """The tasks of one model's sample, planned in order by its shipped planner at one CEM
    budget, each at most once. `kind`: the env's most demanding kind of task (the last of its
    `goal_kinds`: Push-T's "push", Cube's "pick", else "move"), the kind the GIFs and the
    failed push show; `kinds` the kind of each task."""

    def __init__(self, run: Run, folder: Path, samples: int, iterations: int, tasks: int):
        self.loaded = run.model(folder)
        self.seed = run.seed
        self.env = make(self.loaded.env_name, resolution=self.loaded.config.image_size)
        self.env.reset(seed=run.seed)
        self.tasks = tasks_from_dataset(
            folder / SAMPLE_FILE,
            self.env,
            tasks,
            run.seed,
            PROTOCOL["goal_offset"],
            split="all",
        )
        base = self.env.unwrapped
        self.kinds = [base.goal_kind(t.start_state, t.goal_state) for t in self.tasks]
        self.kind = list(base.goal_kinds)[-1]
        self.kind_words = base.goal_kinds[self.kind]
        self.cfg: CEMConfig = self.loaded.planning.cem_config(**cem_budget(samples, iterations))
        self.planner = Planner(
            self.loaded.model, self.loaded.action_stats, self.cfg, dtype="float32"
        )
        self.planned: dict[int, Planned] = {}

    def episode(self, i: int) -> Planned:
        """Task i planned (once)."""
        if i not in self.planned:
            result = run_task(
                self.env, self.planner, self.tasks[i], PROTOCOL["budget"], self.seed, i
            )
            self.planned[i] = Planned(i, self.tasks[i], result)
        return self.planned[i]

    def first(self, solved: bool, tries: int) -> tuple[Planned, list[int]]:
        """Plan the tasks of kind `kind` in order until one is `solved` (or, False, is not), at
        most `tries` of them; return the last one planned and the indices of those planned."""
        tried = []
        for i in (i for i, kind in enumerate(self.kinds) if kind == self.kind):
            p = self.episode(i)
            tried.append(i)
            if p.result.success == solved or len(tried) == tries:
                return p, tried
        if not tried:
            raise SystemExit(
                f"error: none of the {len(self.tasks)} tasks drawn from {self.loaded.path} is "
                f"of the kind '{self.kind}'; ask for more tries"
            )
        return p, tried

    def chosen_words(self, p: Planned, tried: list[int], solved: bool) -> str:
        """How task `p` was chosen among the planned `tried`, in words."""
        planned = ", ".join(map(str, tried))
        if p.result.success == solved:
            which = "solved" if solved else "did not solve"
            choice = f"the first of the planned tasks {planned} the planner {which}"
        else:
            which = "none" if solved else "every one"
            choice = f"the last of the planned tasks {planned}, {which} of which it solved"
        return f"{choice}, among those where {self.kind_words}"

    def settings_words(self) -> str:
        """The shipped planner's settings in words, with the budget it runs at here."""
        c = self.cfg
        return (
            f"shipped planner: {c.sampling} sampling, {c.objective} objective, executing "
            f"{c.receding_horizon} of {c.horizon} blocks, context {c.context}; "
            f"{budget_words(c.samples, c.iterations)}, published {published_budget_words()}"
        )


def task_planner(run: Run, folder: Path, samples: int, iterations: int) -> TaskPlanner:
    """The run's `TaskPlanner` of `folder` at (samples, iterations), made once."""
    b = run.budget
    key = ("planner", folder, samples, iterations)
    if key not in run.cache:
        count = TASKS_PER_TRY * max(b.tries, b.failure_tries, b.sweep_episodes)
        run.cache[key] = TaskPlanner(run, folder, samples, iterations, count)
    return run.cache[key]


def rollout_frames(p: Planned, name: str, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per step of the episode: (the frame, the goal), upscaled and labelled; the last frame
    framed green when the goal was reached, red when not."""
    frames, goal = p.result.frames, upscale(p.task.goal_frame, scale)
    budget = PROTOCOL["budget"]
    out = []
    for t, frame in enumerate(frames):
        last = t == len(frames) - 1
        colour = (REACHED if p.result.success else MISSED) if last else None
        shown = upscale(framed(frame, colour, width=2), scale)
        out.append((labelled(shown, f"{name}  step {t}/{budget}"), labelled(goal, "goal")))
    return out


def other_shipped_models(run: Run) -> list[Path]:
    """Shipped model folders beside the four tasks' (e.g. the reference Push-T's, pusht-v1):
    they get a rollout GIF too, for the demo, but no column in the hero GIF."""
    models = run.models[0].parent
    chosen = {Path(m).resolve() for m in run.models}
    return [
        p
        for p in sorted(models.iterdir())
        if (p / "model.safetensors").is_file() and p.resolve() not in chosen
    ]


def rollouts(run: Run) -> None:
    """One GIF per shipped model (plan | goal) and the hero GIF with the four tasks in a row."""
    b = run.budget
    columns = []
    for folder in [*run.models, *other_shipped_models(run)]:
        tp = task_planner(run, folder, b.plan_samples, b.plan_iterations)
        p, tried = tp.first(solved=True, tries=b.tries)
        name = title(tp.loaded)
        env = tp.loaded.env_name
        path = run.out / f"rollout_{env}.gif"
        save_gif([hstack(pair) for pair in rollout_frames(p, name, GIF_SCALE)], path)
        outcome = (
            f"reached its goal after {p.result.steps} steps"
            if p.result.success
            else f"missed its goal in {p.result.steps} steps"
        )
        which = tp.chosen_words(p, tried, solved=True)
        caption = (
            f"{name}: the shipped model ({shown(folder)}) plans task {p.index} of its held-out "
            f"sample (goal {PROTOCOL['goal_offset']} steps ahead, budget {PROTOCOL['budget']} "
            f"steps) and {outcome} ({which}); left the episode, right the goal image; "
            f"{tp.settings_words()}, seed {run.seed}."
        )
        data = {
            "task": p.index,
            "success": bool(p.result.success),
            "steps": int(p.result.steps),
            "tried": tried,
            "kind": tp.kind,
            "cem": cem_budget(b.plan_samples, b.plan_iterations),
        }
        run.record(f"rollout_{env}", path, caption, data)
        if folder in run.models:
            columns.append((name, p))
    hero(run, columns)


def hero(run: Run, columns: list[tuple[str, Planned]]) -> None:
    """The four tasks' episodes in a row, each above its goal, padded to the longest."""
    shown = [rollout_frames(p, name, HERO_SCALE) for name, p in columns]
    length = max(len(s) for s in shown)
    frames = [
        hstack([vstack(list(s[min(t, len(s) - 1)])) for s in shown], gap=8) for t in range(length)
    ]
    path = save_gif(frames, run.out / "rollouts.gif")
    b = run.budget
    parts = [
        f"{name} task {p.index} {'reached' if p.result.success else 'missed'} "
        f"({p.result.steps} steps)"
        for name, p in columns
    ]
    caption = (
        "The shipped models plan one task each with their shipped planners (above: the "
        "episode, below: the goal; the last frame framed green when the goal was reached): "
        f"{'; '.join(parts)}; {budget_words(b.plan_samples, b.plan_iterations)} instead of "
        f"the published {published_budget_words()}, seed {run.seed}."
    )
    data = {name: {"task": p.index, "success": bool(p.result.success)} for name, p in columns}
    run.record("rollouts", path, caption, data)


def budget_sweep(run: Run) -> None:
    """Planning success of the analysis model's shipped planner at a few CEM budgets, with
    Wilson 95% intervals, beside its shipped evaluation (eval.json) at the published budget."""
    b = run.budget
    folder = run.analysis_model
    points = []
    for samples, iterations in b.sweep:
        tp = task_planner(run, folder, samples, iterations)
        results = [tp.episode(i).result for i in range(b.sweep_episodes)]
        ok = sum(r.success for r in results)
        seconds = [s for r in results for s in r.plan_seconds]
        points.append(
            {
                "samples": samples,
                "iterations": iterations,
                "episodes": len(results),
                "successes": ok,
                "ci95": list(wilson_interval(ok, len(results))),
                "plan_s_median": float(np.median(seconds)) if seconds else 0.0,
            }
        )
    loaded = run.model(folder)
    row = row_of(read_json(folder / EVAL_FILE), loaded.planning, training_file(config_of(folder)))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = [p["samples"] * p["iterations"] for p in points]
    y = [100 * p["successes"] / p["episodes"] for p in points]
    ci = 100 * np.array([p["ci95"] for p in points])
    err = np.maximum(0.0, [y - ci[:, 0], ci[:, 1] - y])  # >= 0 (an interval at 100%: rounding)
    line = ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label="measured here")
    for xi, yi, p in zip(x, y, points, strict=True):
        ax.annotate(
            f"{p['samples']}x{p['iterations']}\n{p['plan_s_median']:.1f} s/plan",
            (xi, yi),
            textcoords="offset points",
            xytext=(6, -22),
            fontsize=7,
        )
    shipped = None
    if row is not None:
        cem = row["cem"]
        sx, sy = cem["samples"] * cem["iterations"], 100 * row["success_rate"]
        lo, hi = (100 * v for v in row["success_ci95"])
        ax.errorbar(
            [sx],
            [sy],
            yerr=np.maximum(0.0, [[sy - lo], [hi - sy]]),
            marker="s",
            mfc="white",
            capsize=4,
            color="0.3",
            label=f"eval.json: {row['episodes']} tasks, {cem['samples']}x{cem['iterations']}",
        )
        ax.axhline(100 * row["random_success_rate"], ls=":", color="0.5", label="random policy")
        shipped = {"x": sx, "success": sy, "episodes": row["episodes"]}
    ax.set_xscale("log")
    ax.set_ylim(-5, 105)
    ax.set_xlabel("CEM candidates rolled out per plan (samples x iterations)")
    ax.set_ylabel("planning success (%)")
    name = title(loaded)
    ax.set_title(f"{name}: success against the CEM budget (95% Wilson intervals)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = save_png(fig, run.out / "cem_budget.png")
    plt.close(fig)
    drawn = [float(v) for v in line.lines[0].get_ydata()]
    caption = (
        f"{name}: planning success of the shipped model's planner ({loaded.planning.sampling} "
        f"sampling, {loaded.planning.objective} objective) against the CEM budget, "
        f"{b.sweep_episodes} tasks of its held-out sample per budget (few: the intervals are "
        f"wide), seed {run.seed}; the square is its shipped evaluation (eval.json) at the "
        f"published budget on its own task set; labels give the median seconds per plan here."
    )
    run.record("cem_budget", path, caption, {"points": points, "drawn": drawn, "eval": shipped})
