"""The Gradio demo's two endpoints, and what they share: the shipped models, loaded once, and the
checks of what a visitor types.

    plan_to_goal       /plan      (task, seed, samples, iterations, budget) -> rollout video,
                                  image strip, summary text, details
    teleport_surprise  /surprise  (task, seed, episodes, steps, perturb_step) -> plot, summary
                                  text, details

The task is episode 0 of ``lewm eval --seed <seed>`` with start and goal from a fresh episode of
the data policy (``lewm_core.planning.evaluate.tasks_from_policy``), planned with
``lewm_core.planning.cem.Planner`` + ``lewm_core.planning.mpc.run_mpc``; the surprise curves are
``lewm_core.analysis.surprise.surprise_experiment`` with the teleport perturbation. The shipped
models (``assets/models/<task>/``, or LEWM_ASSETS_DIR) are loaded once, kept in a small LRU cache
and shared read-only by every session; torch uses LEWM_APP_THREADS threads (default: half the
cores). The page that calls them is ``app/gradio_app.py``.
"""

from __future__ import annotations

import os

# Must be set before anything imports mujoco (Reacher renders offscreen through EGL).
os.environ.setdefault("MUJOCO_GL", "egl")

import functools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from app.lab_store import discover_models, env_title, load_model_readonly, set_torch_threads  # noqa: E402
from lewm_core.atomic import jsonable  # noqa: E402
from lewm_core.errors import UserError  # noqa: E402
from lewm_core.knobs import knobs_of  # noqa: E402
from lewm_core.planning.cem_config import CEMConfig  # noqa: E402
from lewm_core.world_model.checkpoint import LoadedModel  # noqa: E402

CEM_KNOBS = knobs_of(CEMConfig)  # limits and help of the CEM inputs
# The fast interactive CEM budget: REPRODUCTION.md ("Planning speed") and
# docs/notebook/2026-11-29-success-vs-cem-budget.md compare its success and plan time with the
# paper's (CEMConfig's defaults) on every shipped model.
FAST_SAMPLES, FAST_ITERATIONS = CEMConfig.samples, 10
# A public server plans for anyone: the demo caps the CEM budget inside CEMConfig's limits.
MAX_SAMPLES, MAX_ITERATIONS = 1000, 50
for _name, _cap in (("samples", MAX_SAMPLES), ("iterations", MAX_ITERATIONS)):
    CEM_KNOBS[_name].check(_cap, f"the demo's cap on CEM {_name}")
MAX_BUDGET = 200
MAX_EPISODES, MAX_STEPS = 50, 60
MAX_SEED = 2**31 - 1
MAX_MODELS = 4  # models kept loaded (one per shipped task)
OUTPUT_AGE_S = 900  # rollout videos and strips older than this are deleted
STRIP_FRAMES = 6  # rollout frames in the image strip (first and last included)
SCALE = 4  # 64 px frames are shown 4x larger, crisp pixels


# --------------------------------------------------------------------------- models
def shipped_models() -> dict[str, Path]:
    """{task: model folder} of the shipped models whose task has a simulator here.

    Reads LEWM_ASSETS_DIR like the Streamlit lab; tasks in `lewm_core.envs.ENV_NAMES` order, the
    first folder wins when two ship the same task.
    """
    from lewm_core.envs import ENV_NAMES

    found: dict[str, Path] = {}
    for entry in discover_models():
        if entry.source == "shipped" and entry.env in ENV_NAMES:
            found.setdefault(entry.env, entry.path)
    return {name: found[name] for name in ENV_NAMES if name in found}


class ModelCache:
    """A bounded, thread-safe LRU of loaded models keyed by (folder, weights' mtime).

    The models are frozen (`load_model_readonly`) and shared read-only by every session; a
    retrained model (new mtime) is loaded again.
    """

    def __init__(self, max_entries: int = MAX_MODELS):
        self.max_entries = max_entries
        self._models: OrderedDict[tuple[str, float], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike) -> LoadedModel:
        """The model of folder `path`, loaded on first use (UserError if it cannot be)."""
        path = Path(path).resolve()
        try:
            mtime = (path / "model.safetensors").stat().st_mtime
        except OSError:
            raise UserError(f"{path} has no model.safetensors; ship a model first") from None
        key = (str(path), mtime)
        with self._lock:  # one load at a time: two sessions never load the same model twice
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = load_model_readonly(path)
            self._models[key] = loaded
            while len(self._models) > self.max_entries:
                self._models.popitem(last=False)
            return loaded

    def __len__(self) -> int:
        return len(self._models)


MODELS = ModelCache()


# --------------------------------------------------------------------------- input checks
def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a `UserError` (bad input, with its fix) into a `gr.Error` shown to the user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def check_task(task: Any) -> tuple[str, Path]:
    """(task, model folder) of a shipped task name; UserError naming the choices otherwise."""
    tasks = shipped_models()
    if not tasks:
        raise UserError(
            "no shipped model found: a folder per task in assets/models (or LEWM_ASSETS_DIR) with "
            "config.json and model.safetensors"
        )
    if not isinstance(task, str) or task.strip() not in tasks:
        raise UserError(f"unknown task {str(task)[:40]!r}; choose one of {', '.join(tasks)}")
    task = task.strip()
    return task, tasks[task]


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """`value` as an int in [lo, hi]; UserError saying the allowed range otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        shown = int(number) if math.isfinite(number) and number == int(number) else value
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {shown}")
    return int(number)


# --------------------------------------------------------------------------- outputs
_OUT_DIR: Path | None = None


def _output_path(suffix: str) -> Path:
    """A fresh file name in this process's output folder; old outputs are deleted first."""
    global _OUT_DIR
    if _OUT_DIR is None:
        _OUT_DIR = Path(tempfile.mkdtemp(prefix="lewm-gradio-"))
    now = time.time()
    for old in _OUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > OUTPUT_AGE_S:
                old.unlink()
        except OSError:
            pass
    fd, name = tempfile.mkstemp(suffix=suffix, dir=_OUT_DIR)
    os.close(fd)
    return Path(name)


def image_strip(frames: np.ndarray, goal: np.ndarray, n: int = STRIP_FRAMES) -> np.ndarray:
    """`n` evenly spaced rollout frames (first and last included), a gap, then the goal frame.

    frames: (T, H, W, 3) uint8; returns one (H * SCALE, ..., 3) uint8 image, crisp pixels.
    """
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    h = frames.shape[1]
    gap = np.full((h, 2, 3), 255, np.uint8)
    wide = np.full((h, 8, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i in idx:
        parts += [frames[i], gap]
    parts[-1] = wide
    parts.append(goal)
    strip = np.concatenate(parts, axis=1)
    return strip.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def surprise_figure(means: dict[str, list], perturb_step: int, task: str):
    """A Plotly figure of the mean surprise per step, unperturbed vs teleported."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colours = {"unperturbed": "#1f77b4", "teleport": "#d62728"}
    for name in ("unperturbed", "teleport"):
        y = means[name][1:]  # step 0 has no prediction
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(y) + 1)),
                y=y,
                mode="lines+markers",
                name="teleported copy" if name == "teleport" else "unperturbed copy",
                line=dict(color=colours[name], width=3),
            )
        )
    fig.add_vline(
        x=perturb_step,
        line_dash="dash",
        line_color="gray",
        annotation_text="teleport",
        annotation_position="top left",
    )
    fig.update_layout(
        title=f"{env_title(task)}: surprise = ||predicted - observed latent||^2 (mean of episodes)",
        xaxis_title="model step",
        yaxis_title="surprise (log scale)",
        yaxis_type="log",
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
    )
    return fig


# --------------------------------------------------------------------------- endpoints
@_user_errors
def plan_to_goal(
    task: str,
    seed: float,
    samples: float = FAST_SAMPLES,
    iterations: float = FAST_ITERATIONS,
    budget: float = 50,
) -> tuple[str | None, np.ndarray, str, dict]:
    """Plan from a start to a goal 25 steps later with CEM + MPC through the shipped model.

    The task is episode 0 of `lewm eval --seed <seed>` without a dataset: start and goal come
    from a fresh episode of the task's data policy (`tasks_from_policy`), the plan from
    `Planner` + `run_mpc` with the same environment reset and generator seed.

    Returns (rollout | goal mp4 path, or None if no video encoder; image strip of the rollout
    with the goal on the right; summary markdown; details: task, seed, success, steps, budget,
    plans, plan_ms, plan_ms_median, wall_s, final_cost, goal_kind (`env.goal_kind`), cem).
    """

    from lewm_core.envs import make
    from lewm_core.planning.cem import Planner
    from lewm_core.planning.evaluate import side_by_side_video, tasks_from_policy
    from lewm_core.planning.mpc import episode_generator, run_mpc

    task, path = check_task(task)
    seed = check_int("seed", seed, 0, MAX_SEED)
    samples = check_int("CEM samples", samples, int(CEM_KNOBS["samples"].lo), MAX_SAMPLES)
    iterations = check_int(
        "CEM iterations", iterations, int(CEM_KNOBS["iterations"].lo), MAX_ITERATIONS
    )
    budget = check_int("step budget", budget, 1, MAX_BUDGET)
    set_torch_threads()
    loaded = MODELS.get(path)
    cem = loaded.planning.cem_config(
        samples=samples, iterations=iterations, elites=min(CEMConfig.elites, samples)
    )
    env = make(loaded.env_name, resolution=loaded.config.image_size)
    try:
        env.reset(seed=seed)  # as `evaluate()`: tasks, then episode i = 0
        goal_task = tasks_from_policy(loaded.env_name, env, 1, seed)[0]
        kind = env.unwrapped.goal_kind(goal_task.start_state, goal_task.goal_state)
        kind_text = env.unwrapped.goal_kinds[kind]
        planner = Planner(loaded.model, loaded.action_stats, cem)
        gen = episode_generator(seed, 0, planner.device)
        env.reset(seed=seed)
        t0 = time.perf_counter()
        res = run_mpc(
            env,
            planner,
            goal_task.start_state,
            goal_task.goal_state,
            goal_task.goal_frame,
            budget,
            gen,
        )
        wall = time.perf_counter() - t0
    finally:
        env.close()
    video: str | None = str(_output_path(".mp4"))
    try:
        side_by_side_video(res.frames, goal_task.goal_frame, video)
    except Exception:  # noqa: BLE001 - no video encoder: the image strip still shows
        video = None
    plan_ms = [s * 1000 for s in res.plan_seconds]
    median = float(np.median(plan_ms)) if plan_ms else None
    details = {
        "task": task,
        "seed": seed,
        "success": bool(res.success),
        "steps": int(res.steps),
        "budget": budget,
        "plans": len(plan_ms),
        "plan_ms": plan_ms,
        "plan_ms_median": median,
        "wall_s": wall,
        "final_cost": res.final_cost,
        "goal_kind": kind,
        "cem": {
            "samples": cem.samples,
            "iterations": cem.iterations,
            "elites": cem.elites,
            "horizon": cem.horizon,
            "sampling": cem.sampling,
            "context": cem.context,
            "objective": cem.objective,
            "receding_horizon": cem.receding_horizon,
        },
    }
    verdict = (
        f"**Success**: the goal was reached after {res.steps} steps."
        if res.success
        else f"**Not reached** within the budget of {budget} steps."
    )
    timing = (
        f"{len(plan_ms)} plans, median plan time **{median:.0f} ms**"
        if plan_ms
        else "no plan needed (the start already satisfies the goal)"
    )
    summary = (
        f"{verdict}  \n{env_title(task)}, seed {seed}: {timing}; the episode took {wall:.2f} s "
        f"(CEM {cem.samples} samples x {cem.iterations} iterations). Goal kind **{kind}**: "
        f"{kind_text}."
    )
    return video, image_strip(res.frames, goal_task.goal_frame), summary, jsonable(details)


@_user_errors
def teleport_surprise(
    task: str, seed: float, episodes: float = 8, steps: float = 20, perturb_step: float = 10
) -> tuple[Any, str, dict]:
    """The world model's surprise when the agent is teleported, vs an unperturbed copy.

    `lewm_core.analysis.surprise.surprise_experiment` with the teleport perturbation: each episode
    of the data policy is replayed with the same actions, teleported just before `perturb_step`.

    Returns (Plotly figure of the mean curves; summary markdown; details: task, seed, episodes,
    steps, perturb_step, unperturbed and teleport (mean surprise per step, None at step 0),
    stats (jump, ratio, t, p_value, argmax_rate, ... at the teleport step)).
    """
    from lewm_core.analysis.surprise import curve_summary, surprise_experiment

    task, path = check_task(task)
    seed = check_int("seed", seed, 0, MAX_SEED)
    episodes = check_int("episodes", episodes, 2, MAX_EPISODES)
    steps = check_int("model steps", steps, 3, MAX_STEPS)
    perturb_step = check_int("teleport step", perturb_step, 1, steps - 1)
    set_torch_threads()
    loaded = MODELS.get(path)
    result = surprise_experiment(
        loaded,
        episodes=episodes,
        seed=seed,
        steps=steps,
        perturb_step=perturb_step,
        perturbations=("teleport",),
    )
    means = curve_summary(result["curves"])
    stats = result["teleport"]
    details = {
        "task": task,
        "seed": seed,
        "episodes": episodes,
        "steps": steps,
        "perturb_step": perturb_step,
        "unperturbed": means["unperturbed"],
        "teleport": means["teleport"],
        "stats": stats,
    }
    ratio = stats["ratio"]
    shown = "-" if ratio is None or not math.isfinite(ratio) else f"{ratio:,.3g}"
    if shown != "-" and ratio >= 100:
        shown = f"{ratio:,.0f}"
    summary = (
        f"At the teleport (step {perturb_step}) the mean surprise is **{shown}x** "
        f"the unperturbed copy's (jump {stats['jump']:.3g}; one-sided paired t-test p = "
        f"{stats['p_value']:.2g} over {episodes} episodes). The teleported curve peaks at the "
        f"teleport in {stats['argmax_rate']:.0%} of the episodes, the unperturbed one in "
        f"{stats['argmax_rate_unperturbed']:.0%} (chance)."
    )
    return surprise_figure(means, perturb_step, task), summary, jsonable(details)


def warm_up() -> None:
    """Load every shipped model into the cache (in the background, after the server starts)."""
    for path in shipped_models().values():
        try:
            MODELS.get(path)
        except UserError as e:
            print(f"warning: {e}", file=sys.stderr)
