"""Plan: reach a goal frame with CEM + MPC through a trained world model.

The model, the task source and the seed are mirrored in the URL (``?model=&source=&seed=&cem=``),
so a shared link shows the same start and goal. Models are loaded once and shared read-only
(``models.load_model_cached``); the environment is per session.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import models, ui
from lewm_core.envs import make
from lewm_core.errors import UserError
from lewm_core.knobs import knobs_of
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import (
    render_state,
    side_by_side_video,
    tasks_from_dataset,
    tasks_from_policy,
)
from lewm_core.planning.mpc import run_mpc
from lewm_core.world_model.checkpoint import LoadedModel

CEM_PRESETS = {
    "fast": ("Fast (300 samples x 10 iterations)", dict(samples=300, iterations=10)),
    "paper": (  # CEMConfig's defaults are the paper's
        f"Paper ({CEMConfig.samples} samples x {CEMConfig.iterations} iterations)",
        dict(samples=CEMConfig.samples, iterations=CEMConfig.iterations),
    ),
    "custom": ("Custom", None),
}
SOURCES = {"policy": "Fresh episode of the data policy", "dataset": "The model's dataset"}
W_MODEL, W_SOURCE, W_SEED, W_CEM = "plan_model_w", "plan_source_w", "plan_seed_w", "plan_cem_w"
W_FRAME = "plan_frame_w"
ENV = "plan_env"  # session_state: {"key": (env, res), "env": env}
TASK = "plan_task"  # session_state: {"key": ..., "task": EvalTask, "start_frame": frame}
RESULT = "plan_result"


class _TrackingPlanner(Planner):
    """A Planner that keeps the first plan's CEM history and reports each plan's end."""

    def __init__(self, *args: Any, on_plan=None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.first = None
        self.plans = 0
        self.on_plan = on_plan

    def plan(self, z_start, z_goal, generator=None, keep_history=True, **kwargs: Any):
        result = super().plan(
            z_start, z_goal, generator, keep_history or self.first is None, **kwargs
        )
        if self.first is None:
            self.first = result
        self.plans += 1
        if self.on_plan is not None:
            self.on_plan(self.plans)
        return result


def _init_from_url(entries) -> None:
    qp = st.query_params
    keys = [e.key for e in entries]
    if W_MODEL not in st.session_state or st.session_state[W_MODEL] not in keys:
        st.session_state[W_MODEL] = qp.get("model") if qp.get("model") in keys else keys[0]
    if W_SOURCE not in st.session_state:
        st.session_state[W_SOURCE] = qp.get("source") if qp.get("source") in SOURCES else "policy"
    if W_SEED not in st.session_state:
        try:
            st.session_state[W_SEED] = max(0, int(qp.get("seed", 0)))
        except ValueError:
            st.session_state[W_SEED] = 0
    if W_CEM not in st.session_state:
        st.session_state[W_CEM] = qp.get("cem") if qp.get("cem") in CEM_PRESETS else "fast"


def _write_url(values: dict[str, str]) -> None:
    for param, value in values.items():
        if st.query_params.get(param) != value:
            st.query_params[param] = value


def _env(name: str, res: int):
    held = st.session_state.get(ENV)
    if held is None or held["key"] != (name, res):
        if held is not None:
            held["env"].close()
        env = make(name, resolution=res)
        env.reset(seed=0)
        held = {"key": (name, res), "env": env}
        st.session_state[ENV] = held
    return held["env"]


def _task(key: tuple, env, env_name: str, source: str, seed: int, frames):
    """The start and goal of `source` ("dataset": from the held-out episodes of `frames`,
    `lewm_core.data.samples.Frames`; "policy": a fresh policy episode), kept while `key` holds."""
    held = st.session_state.get(TASK)
    if held is None or held["key"] != key:
        if source == "dataset":
            val_fraction, split_seed = frames.split
            task = tasks_from_dataset(
                frames.path, env, 1, seed, val_fraction=val_fraction, split_seed=split_seed
            )[0]
        else:
            task = tasks_from_policy(env_name, env, 1, seed)[0]
        held = {
            "key": key,
            "task": task,
            "start_frame": render_state(env, task.start_state),
            "kind": env.unwrapped.goal_kind(task.start_state, task.goal_state),
        }
        st.session_state[TASK] = held
    return held["task"], held["start_frame"], held["kind"]


CEM_KNOBS = knobs_of(CEMConfig)  # each widget's limits and help


def _knob_input(column, label: str, name: str, value: int, key: str, note: str = "", hi=None):
    """A number input for CEM setting `name` within its declared limits (at most `hi`), with
    the knob's help line and `note` after it."""
    k = CEM_KNOBS[name]
    top = int(k.hi) if hi is None else min(int(k.hi), hi)
    text = f"{k.help[0].upper()}{k.help[1:]}; {int(k.lo):,} to {top:,}.{note}"
    return column.number_input(label, int(k.lo), top, value, key=key, help=text)


def _knob_select(column, label: str, name: str, value: str, key: str, note: str = ""):
    """A select box over the choices of CEM setting `name`, with the knob's help line."""
    k = CEM_KNOBS[name]
    text = f"{k.help[0].upper()}{k.help[1:]}.{note}"
    return column.selectbox(label, k.choices, index=k.choices.index(value), key=key, help=text)


def _cem_settings(preset: str, model_key: str, loaded: LoadedModel) -> CEMConfig:
    """The CEM settings from the widgets (limits and help from `CEMConfig`'s knobs); sampling,
    context, objective and the blocks executed start at the model's defaults, and each model
    keeps its own choice (those widgets are keyed by model)."""
    d, history = loaded.planning, loaded.model.cfg.history
    fast = CEM_PRESETS["fast"][1]
    with st.expander("CEM settings", expanded=preset == "custom"):
        c = st.columns(8)
        samples = _knob_input(c[0], "Samples", "samples", fast["samples"], "plan_samples")
        iterations = _knob_input(c[1], "Iterations", "iterations", fast["iterations"], "plan_iters")
        elites = _knob_input(c[2], "Elites", "elites", CEMConfig.elites, "plan_elites")
        horizon = _knob_input(
            c[3], "Horizon (blocks)", "horizon", CEMConfig.horizon, "plan_horizon"
        )
        default = " This model's default: {}."
        receding = _knob_input(
            c[4],
            "Execute (blocks)",
            "receding_horizon",
            d.receding_horizon,
            f"plan_receding:{model_key}",
            default.format(d.receding_horizon),
        )
        sampling = _knob_select(
            c[5],
            "Sampling",
            "sampling",
            d.sampling,
            f"plan_sampling:{model_key}",
            default.format(d.sampling),
        )
        context = _knob_input(
            c[6],
            "Context (frames)",
            "context",
            d.context,
            f"plan_context:{model_key}",
            default.format(d.context),
            hi=history,
        )
        objective = _knob_select(
            c[7],
            "Objective",
            "objective",
            d.objective,
            f"plan_objective:{model_key}",
            default.format(d.objective),
        )
        if preset != "custom":
            st.caption("Samples and iterations come from the preset; choose Custom to set them.")
    values = dict(
        samples=int(samples),
        iterations=int(iterations),
        elites=int(elites),
        horizon=int(horizon),
        receding_horizon=int(receding),
        sampling=sampling,
        context=int(context),
        objective=objective,
    )
    if CEM_PRESETS[preset][1] is not None:
        values.update(CEM_PRESETS[preset][1])
    values["elites"] = min(values["elites"], values["samples"])
    values["receding_horizon"] = min(values["receding_horizon"], values["horizon"])
    cfg = CEMConfig(**values)
    cfg.validate()
    return cfg


def _run(loaded, env, task, cem: CEMConfig, budget: int, seed: int) -> dict:
    import torch

    models.set_torch_threads()
    n_exec = cem.receding_horizon * loaded.config.frameskip
    expected = max(1, -(-budget // n_exec))
    bar = st.progress(0.0, text=f"Planning: CEM {cem.samples} x {cem.iterations}...")

    def on_plan(done: int) -> None:
        bar.progress(min(1.0, done / expected), text=f"plan {done} (up to {expected})")

    planner = _TrackingPlanner(loaded.model, loaded.action_stats, cem, on_plan=on_plan)
    gen = torch.Generator(device=planner.device).manual_seed(seed)
    res = run_mpc(env, planner, task.start_state, task.goal_state, task.goal_frame, budget, gen)
    bar.empty()
    video = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollout.mp4"
        try:
            side_by_side_video(res.frames, task.goal_frame, path)
            video = path.read_bytes()
        except Exception as e:  # noqa: BLE001 - no video encoder: the frames still show
            st.warning(f"Could not write the video ({e}); the frame slider still works.")
    first = planner.first
    return {
        "success": res.success,
        "steps": res.steps,
        "frames": res.frames,
        "plan_ms": [s * 1000 for s in res.plan_seconds],
        "final_cost": res.final_cost,
        "history": first.history if first is not None else [],
        "first_cost": first.cost if first is not None else None,
        "video": video,
        "goal_frame": task.goal_frame,
    }


def _convergence_figure(history: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    its = list(range(1, len(history) + 1))
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("best and mean elite cost", "elite cost distribution per iteration"),
    )
    best = [h["best_cost"] for h in history]
    mean = [float(np.mean(h["elite_costs"])) for h in history]
    fig.add_trace(
        go.Scatter(x=its, y=best, name="best candidate of the iteration", mode="lines+markers"),
        1,
        1,
    )
    fig.add_trace(go.Scatter(x=its, y=mean, name="mean of elites", mode="lines+markers"), 1, 1)
    for i, h in zip(its, history, strict=True):
        fig.add_trace(
            go.Box(y=h["elite_costs"], name=str(i), showlegend=False, marker_color="#7f7f7f"),
            1,
            2,
        )
    fig.update_yaxes(type="log", dtick=1, title_text="cost = ||z_pred - z_goal||^2")
    fig.update_xaxes(title_text="CEM iteration")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def _show_result(r: dict, stale: bool) -> None:
    st.subheader("Result")
    if stale:
        st.info("The settings changed since this plan: press **Plan** to run them.")
    if r["success"]:
        st.badge("Success: the goal was reached", icon=":material/check:", color="green")
    else:
        st.badge("Goal not reached within the budget", icon=":material/close:", color="red")
    c = st.columns(4)
    c[0].metric("Steps", r["steps"])
    c[1].metric("Plans", len(r["plan_ms"]))
    c[2].metric("Plan time (median)", f"{np.median(r['plan_ms']):.0f} ms" if r["plan_ms"] else "-")
    c[3].metric("Final predicted cost", f"{r['final_cost']:.3f}" if r["plan_ms"] else "-")
    frames = r["frames"]
    left, right = st.columns([3, 2], gap="medium")
    with left:
        if st.session_state.get(W_FRAME, 0) > len(frames) - 1:
            st.session_state[W_FRAME] = len(frames) - 1
        t = st.slider("Rollout step", 0, len(frames) - 1, key=W_FRAME) if len(frames) > 1 else 0
        ui.side_by_side({f"rollout, step {t}": frames[t], "goal": r["goal_frame"]})
    with right:
        if r["video"] is not None:
            st.video(r["video"], format="video/mp4")
            st.caption("Rollout (left) next to the goal (right), 10 frames per second.")
    if r["history"]:
        st.markdown("**How CEM converged on the first plan**")
        st.plotly_chart(_convergence_figure(r["history"]), key="plan_cem_chart")


# --------------------------------------------------------------------------- page
st.title("Plan")
ui.explainer(
    """
The world model plans **in its latent space**: it encodes the current frame and the goal frame,
then the **cross-entropy method (CEM)** samples action sequences (a horizon of 5 blocks of 5 raw
steps), rolls each one out with the predictor, and keeps the *elites* whose predicted final
embedding lands closest to the goal's (cost = squared distance). It refits a Gaussian to the
elites and repeats. **MPC** executes the first blocks of the plan in the real simulator, encodes
the new frame and replans, until the task's success test passes or the step budget is spent.

- **Start / goal**: the goal is the state 25 steps later in an episode of the task's data policy
  (a fresh one drawn from the seed), or of the model's own dataset (its validation episodes;
  where the dataset is not on disk, its held-out sample).
- **CEM**: *Fast* (300 x 10) answers in seconds on a CPU; *Paper* (300 x 30) is the published
  setting. *Sampling*: `block` holds one action per block (moves far), `independent` samples
  every raw action (as published); each model starts on the one recorded with it, chosen on
  other episodes than those its model card reports. *Objective*: `last` scores a candidate by
  its final predicted embedding (as published), `min` by the one closest to the goal over the
  horizon, since the goal counts as reached at any step. A model's card (`MODEL_CARD.md`)
  reports its success with the settings it ships, as `lewm eval` measured them.
- **Plot**: the cost of the best candidate and the spread of the elites at each iteration of the
  first plan; a search that converges narrows the box and lowers the cost.
- Success, steps, times and costs are computed by `lewm_core.planning.mpc.run_mpc`.

The model, seed and settings are in the page URL.
"""
)

entries = models.models_or_stop(known_task_only=True)
_init_from_url(entries)
by_key = {e.key: e for e in entries}

c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
key = c1.selectbox("Model", list(by_key), key=W_MODEL, format_func=lambda k: by_key[k].label)
entry = by_key[key]
try:
    loaded = models.load_model_cached(entry.path)
except UserError as e:
    ui.show_error(e)
    st.stop()
frames = models.model_frames(loaded)
source = c2.radio(
    "Start and goal from",
    list(SOURCES),
    key=W_SOURCE,
    format_func=SOURCES.get,
    horizontal=False,
)
seed = int(c3.number_input("Seed", 0, 2**31 - 1, key=W_SEED))
budget = int(c4.number_input("Step budget", 1, 500, 50, key="plan_budget"))
preset = st.radio(
    "CEM", list(CEM_PRESETS), key=W_CEM, format_func=lambda k: CEM_PRESETS[k][0], horizontal=True
)
_write_url({"model": key, "source": source, "seed": str(seed), "cem": preset})
if source == "dataset" and frames is None:
    st.warning(
        "The model's dataset is not on disk "
        f"({loaded.meta.get('data', {}).get('path', 'unknown')}) and the model has no held-out "
        "sample: using a fresh policy episode."
    )
    source = "policy"
elif source == "dataset" and frames.source == "sample":
    st.caption(
        f":material/info: Start and goal from the model's held-out sample (`{frames.path.name}`, "
        "episodes it never trained on): its dataset is not on disk."
    )

try:
    cem = _cem_settings(preset, key, loaded)
    res = int(loaded.config.image_size)
    env = _env(entry.env, res)
    task_key = (key, source, seed, res, frames and str(frames.path))
    task, start_frame, kind = _task(task_key, env, entry.env, source, seed, frames)
except UserError as e:
    ui.show_error(e)
    st.stop()

settings = (key, source, seed, budget, tuple(sorted(vars(cem).items())))
left, right = st.columns([3, 2], gap="medium")
with left:
    ui.side_by_side({"start": start_frame, "goal (25 steps later)": task.goal_frame})
    st.caption(
        f"This goal is of kind **{kind}**: {env.unwrapped.goal_kinds[kind]} "
        "(`lewm eval` reports success per kind)."
    )
with right:
    st.markdown(
        f"**{models.env_title(entry.env)}**, model `{entry.path.name}` "
        f"({loaded.config.encoder} encoder, {res} px, latent {loaded.config.latent_dim}).  \n"
        f"CEM: {cem.samples} samples x {cem.iterations} iterations, top {cem.elites}, "
        f"horizon {cem.horizon} blocks, execute {cem.receding_horizon}, {cem.sampling} sampling, "
        f"context {cem.context} frame{'s' if cem.context > 1 else ''}, {cem.objective} "
        f"objective; budget {budget} steps."
    )
    clicked = st.button("Plan", key="plan_go", type="primary", icon=":material/route:")
if clicked:
    try:
        st.session_state[RESULT] = {
            "settings": settings,
            **_run(loaded, env, task, cem, budget, seed),
        }
        st.session_state[W_FRAME] = len(st.session_state[RESULT]["frames"]) - 1
    except UserError as e:
        ui.show_error(e)
result = st.session_state.get(RESULT)
if result is not None:
    _show_result(result, stale=result["settings"] != settings)
