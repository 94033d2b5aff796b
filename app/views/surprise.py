"""Surprise: does the world model notice when physics is broken (violation of expectation)?

Runs ``lewm_core.analysis.surprise.surprise_experiment``: episodes of the task's data policy are
replayed with and without a perturbation (a teleport or a colour change) at one step, and the
model's surprise (distance between the predicted and the observed next latent) is compared. The
model, perturbation, its step, the number of episodes and the seed are mirrored in the URL
(``?model=&perturbation=&steps=&step=&episodes=&seed=``).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import models, ui
from lewm_core.analysis.surprise import (
    PERTURBATIONS,
    record_episode,
    replay_episode,
    surprise_experiment,
    surprise_seed,
)
from lewm_core.envs import make, make_policy
from lewm_core.errors import UserError

W_MODEL, W_KIND, W_STEPS, W_STEP, W_EPS, W_SEED = (
    "surprise_model_w",
    "surprise_kind_w",
    "surprise_steps_w",
    "surprise_step_w",
    "surprise_eps_w",
    "surprise_seed_w",
)
W_EXAMPLE, W_LOG = "surprise_example_w", "surprise_log_w"
RESULT = "surprise_result"  # session_state: {"settings": ..., "result": surprise_experiment(...)}
EXAMPLE = "surprise_example"  # session_state: {"key": ..., "clean": frames, "perturbed": frames}
KIND_LABELS = {
    "teleport": "Teleport (the agent jumps to a random place)",
    "color": "Colour change (a part suddenly changes colour)",
}


def _run(loaded, settings: dict) -> dict:
    models.set_torch_threads()
    episodes = settings["episodes"]
    bar = st.progress(0.0, text=f"Simulating {episodes} episodes...")

    def progress(done: int, total: int) -> None:
        text = f"episode {done} / {total}" + (" - encoding and predicting" if done == total else "")
        bar.progress(done / total, text=text)

    try:
        return surprise_experiment(
            loaded,
            episodes=episodes,
            seed=settings["seed"],
            steps=settings["steps"],
            perturb_step=settings["step"],
            perturbations=(settings["kind"],),
            progress=progress,
        )
    finally:
        bar.empty()


def _example_frames(loaded, result: dict, kind: str, episode: int) -> tuple[np.ndarray, ...]:
    """Frames of one episode of the experiment, clean and perturbed (the protocol's own replay)."""
    cfg, env_name = loaded.config, loaded.env_name
    seed, steps, p_step = result["seed"], result["steps"], result["perturb_step"]
    env = make(env_name, resolution=cfg.image_size)
    try:
        ep_seed = surprise_seed(seed, episode)
        rec = record_episode(
            env, make_policy(env_name, env, seed=ep_seed), steps, cfg.frameskip, ep_seed
        )
        if kind == "teleport":
            rng = np.random.default_rng([seed, episode, 1])  # as in surprise_experiment

            def perturb(base):
                base.teleport(rng)

        else:
            part, rgb = result["color_part"], tuple(result["color_rgb"])

            def perturb(base):
                base.set_color(part, rgb)

        perturbed = replay_episode(
            env, ep_seed, rec["start_state"], rec["actions"], cfg.frameskip, p_step, perturb
        )
    finally:
        env.close()
    return rec["frames"], perturbed


def _curve_figure(result: dict, kind: str, example: int, log_y: bool):
    import plotly.graph_objects as go

    curves = result["curves"]
    steps = np.arange(1, result["steps"])
    colours = {"unperturbed": "#1f77b4", kind: "#d62728"}
    names = {"unperturbed": "unperturbed", kind: f"{kind} (perturbed)"}
    fig = go.Figure()
    for name in ("unperturbed", kind):
        c = curves[name][:, 1:]
        mean = c.mean(0)
        low, high = np.percentile(c, 25, axis=0), np.percentile(c, 75, axis=0)
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([steps, steps[::-1]]),
                y=np.concatenate([high, low[::-1]]),
                fill="toself",
                fillcolor=colours[name],
                opacity=0.15,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=mean,
                mode="lines+markers",
                name=f"{names[name]}: mean of {len(c)} episodes",
                line=dict(color=colours[name], width=3),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=c[example],
                mode="lines",
                name=f"{names[name]}: episode {example}",
                line=dict(color=colours[name], width=1, dash="dot"),
            )
        )
    fig.add_vline(
        x=result["perturb_step"],
        line_dash="dash",
        line_color="gray",
        annotation_text="perturbation",
        annotation_position="top left",
    )
    fig.update_layout(
        title="Surprise = ||predicted latent - observed latent||^2 per step "
        "(band: middle half of the episodes)",
        height=460,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="model step",
        yaxis_title="surprise",
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _show_stats(stats: dict) -> None:
    c = st.columns(4)
    c[0].metric(
        "p-value",
        f"{stats['p_value']:.2g}",
        help="One-sided paired t-test over episodes: is the surprise at the perturbation step "
        "larger with the perturbation than without?",
    )
    c[1].metric(
        "Jump",
        f"{stats['jump']:.3g}",
        help="Mean (perturbed - unperturbed) surprise at the perturbation step.",
    )
    c[2].metric(
        "Ratio",
        f"{stats['ratio']:.3g}x",
        help="Mean perturbed / mean unperturbed surprise at the perturbation step.",
    )
    c[3].metric(
        "Peaks at the perturbation",
        f"{stats['argmax_rate']:.0%}",
        help="Fraction of perturbed episodes whose surprise curve is highest at the perturbation "
        "step, among the steps predicted from a full history (the first few steps, predicted "
        "from the reset frame alone, are left out); the unperturbed curves peak there in "
        f"{stats['argmax_rate_unperturbed']:.0%} (chance).",
    )
    st.caption(
        f"Unperturbed curves peak at that step in {stats['argmax_rate_unperturbed']:.0%} of the "
        f"episodes (the chance level). t = {stats['t']:.3g}."
    )


def _show_example(loaded, held_result: dict, example: int) -> None:
    result, kind = held_result["result"], held_result["settings"]["kind"]
    key = (tuple(sorted(held_result["settings"].items())), example)  # the run is seeded
    held = st.session_state.get(EXAMPLE)
    if held is None or held["key"] != key:
        clean, perturbed = _example_frames(loaded, result, kind, example)
        held = {"key": key, "clean": clean, "perturbed": perturbed}
        st.session_state[EXAMPLE] = held
    p, steps = result["perturb_step"], result["steps"]
    shown = list(range(max(0, p - 2), min(steps, p + 3)))
    curves = result["curves"]
    for label, frames, name in (
        ("unperturbed", held["clean"], "unperturbed"),
        (f"{kind}", held["perturbed"], kind),
    ):
        st.markdown(f"**{label}**")
        cols = st.columns(len(shown))
        for col, t in zip(cols, shown, strict=True):
            s = curves[name][example, t]
            surprise = "-" if not np.isfinite(s) else f"{s:.3g}"
            mark = " (perturbed)" if t == p and name != "unperturbed" else ""
            col.image(
                ui.upscale(frames[t], 160),
                caption=f"step {t}{mark}, surprise {surprise}",
                width=160,
            )


# --------------------------------------------------------------------------- page
st.title("Surprise")
ui.explainer(
    """
A model that has learned physics should be **surprised** when physics is violated, like an
infant who stares longer at an object that vanishes. Surprise at step *t* is the squared
distance between the latent the predictor expected (from the previous latents and actions) and
the latent of the frame actually seen.

- **Protocol**: each episode of the task's data policy is recorded, then replayed from the same
  start with the same actions; in the replay, just before the chosen **perturbation step**, the
  world is perturbed: the agent is **teleported** to a random place, or a part **changes
  colour**. Both versions go through the model.
- **Curves**: the mean surprise per step over episodes, unperturbed (blue) and perturbed (red),
  with a band over the middle half of the episodes and one example episode dotted. A model
  that notices shows a spike at the perturbation step, then settles as it sees the new state.
- **Statistics** at the perturbation step: the one-sided paired **t-test p-value** (small =
  the jump is not chance), the **jump** (mean difference), the **ratio**, and how often the
  perturbed curve **peaks** exactly there (vs the unperturbed chance level), among the steps
  predicted from a full history: the first steps see little more than the reset frame and can
  surprise the model for that reason alone.
- **Frames**: the example episode around the perturbation, both versions.

Every number comes from `lewm_core.analysis.surprise.surprise_experiment`. The model, perturbation,
steps, episodes and seed are in the page URL.
"""
)

entries = models.models_or_stop(known_task_only=True)
by_key = {e.key: e for e in entries}
ui.url_choice(W_MODEL, "model", by_key, entries[0].key)
ui.url_choice(W_KIND, "perturbation", PERTURBATIONS, PERTURBATIONS[0])
ui.url_int(W_STEPS, "steps", 20, 3, 200)
ui.url_int(W_EPS, "episodes", 20, 2, 1000)
ui.url_int(W_SEED, "seed", 0)

c1, c2 = st.columns([3, 2])
key = c1.selectbox("Model", list(by_key), key=W_MODEL, format_func=lambda k: by_key[k].label)
kind = c2.radio("Perturbation", PERTURBATIONS, key=W_KIND, format_func=KIND_LABELS.get)
c = st.columns(4)
steps = int(c[0].number_input("Model steps per episode", 3, 200, key=W_STEPS))
ui.url_int(W_STEP, "step", steps // 2, 1, steps - 1)
ui.clamp_state(W_STEP, 1, steps - 1)
step = int(c[1].number_input(f"Perturbation step (1 to {steps - 1})", 1, steps - 1, key=W_STEP))
episodes = int(c[2].number_input("Episodes", 2, 1000, key=W_EPS))
seed = int(c[3].number_input("Seed", 0, 2**31 - 1, key=W_SEED))
ui.write_url(
    {
        "model": key,
        "perturbation": kind,
        "steps": steps,
        "step": step,
        "episodes": episodes,
        "seed": seed,
    }
)
try:
    loaded = models.load_model_cached(by_key[key].path)
except UserError as e:
    ui.show_error(e)
    st.stop()

settings = dict(model=key, kind=kind, steps=steps, step=step, episodes=episodes, seed=seed)
st.caption(
    f"{models.env_title(by_key[key].env)}: {episodes} episodes of {steps} model frames "
    f"({loaded.config.frameskip} raw steps apart), perturbed at step {step}."
)
if st.button("Run the experiment", key="surprise_go", type="primary", icon=":material/bolt:"):
    try:
        st.session_state[RESULT] = {"settings": settings, "result": _run(loaded, settings)}
        st.session_state[W_EXAMPLE] = 0
    except UserError as e:
        ui.show_error(e)

held = st.session_state.get(RESULT)
if held is None:
    st.caption("Press **Run the experiment** (seconds for 20 episodes on a laptop CPU).")
    st.stop()
if held["settings"] != settings:
    st.info("The settings changed since this run: press **Run the experiment** to run them.")
result, shown_kind = held["result"], held["settings"]["kind"]
st.subheader(f"{KIND_LABELS[shown_kind].split(' (')[0]} at step {result['perturb_step']}")
_show_stats(result[shown_kind])
n_eps = int(result["episodes"])
ui.clamp_state(W_EXAMPLE, 0, n_eps - 1)
left, right = st.columns([1, 4], vertical_alignment="bottom")
example = int(left.number_input(f"Example episode (0 to {n_eps - 1})", 0, n_eps - 1, key=W_EXAMPLE))
log_y = right.checkbox("Log scale", value=True, key=W_LOG)
st.plotly_chart(_curve_figure(result, shown_kind, example, log_y), key="surprise_chart")
st.markdown(f"**Episode {example} around the perturbation**")
try:
    _show_example(loaded, held, example)
except UserError as e:
    ui.show_error(e)
