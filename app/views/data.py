"""Data: collect a dataset with an environment's data policy, list datasets, browse an episode.

Datasets are HDF5 files in ``data/`` (``LEWM_DATA_DIR``) written by ``lewm_core.data.collect``; the
browsed dataset and episode are mirrored in the URL (``?dataset=&episode=``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app import lab_public, models, ui
from lewm_core.data.collect import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    CollectSpec,
    collect,
    validate_spec,
)
from lewm_core.data.dataset import dataset_info, open_dataset
from lewm_core.envs import ENV_NAMES, POLICIES
from lewm_core.errors import UserError

RESOLUTIONS = (32, 64, 96, 128, 224)
W_BROWSE, W_EP, W_T = "data_browse_w", "data_ep_w", "data_t_w"


@st.cache_data(max_entries=64, show_spinner=False)
def _info(path: str, mtime: float) -> dict:
    del mtime  # cache key only
    return dataset_info(path)


@st.cache_data(max_entries=8, show_spinner=False)
def _episode(path: str, mtime: float, episode: int) -> dict:
    """Pixels, actions, states and names of one episode (read once per file version)."""
    del mtime
    with open_dataset(path) as f:
        n_eps = int(f["ep_len"].shape[0])
        if not 0 <= episode < n_eps:
            raise UserError(f"episode {episode} does not exist; choose 0 to {n_eps - 1}")
        off, ln = int(f["ep_offset"][episode]), int(f["ep_len"][episode])
        rows = slice(off, off + ln)
        columns = json.loads(f.attrs.get("state_columns", "[]"))
        quantities = json.loads(f.attrs.get("state_quantities", "{}"))
        angles = json.loads(f.attrs.get("angle_quantities", "[]"))
        return {
            "pixels": f["pixels"][rows],
            "action": f["action"][rows],
            "state": f["state"][rows],
            "columns": columns,
            "quantities": quantities,
            "angles": angles,
        }


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _dataset_table(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        try:
            info = _info(str(p), _mtime(p))
            rows.append(
                {
                    "dataset": p.stem,
                    "task": models.env_title(str(info.get("env", "?"))),
                    "episodes": info["num_episodes"],
                    "steps": info["num_steps"],
                    "resolution": f"{info['resolution']} px",
                    "seed": info.get("seed"),
                    "MB on disk": round(p.stat().st_size / 1e6, 1),
                    "problem": "",
                }
            )
        except (UserError, OSError) as e:
            rows.append({"dataset": p.stem, "problem": str(e)})
    return pd.DataFrame(rows)


ALL_POLICIES = tuple(dict.fromkeys(p for env in ENV_NAMES for p in POLICIES[env]))
POLICY_TITLES = {"default": "default (noisy explorer)", "expert": "expert (Push-T)"}


def _collect_section() -> None:
    st.subheader("Collect a dataset")
    with st.form("data_collect_form"):
        c1, c2, c3, c4, c5 = st.columns([2, 1, 1, 1, 1])
        env = c1.selectbox("Task", ENV_NAMES, key="data_env", format_func=models.env_title)
        episodes = c2.number_input("Episodes", 1, 10_000, 50, key="data_episodes")
        steps = c3.number_input("Steps / episode", 2, 2_000, 100, key="data_steps")
        res = c4.selectbox(
            "Resolution", RESOLUTIONS, index=1, key="data_res", format_func=lambda r: f"{r} px"
        )
        seed = c5.number_input("Seed", 0, 2**31 - 1, 0, key="data_seed")
        n0, n1, n2 = st.columns([2, 2, 2], vertical_alignment="bottom")
        policy = n0.selectbox(
            "Data policy",
            ALL_POLICIES,
            key="data_policy",
            format_func=lambda p: POLICY_TITLES.get(p, p),
            help="default: the noisy explorer the shipped models were trained on. expert "
            "(Push-T only): pushes the T to goal poses, like the paper's expert episodes.",
        )
        name = n1.text_input(
            "Dataset name",
            key="data_name",
            placeholder="empty: <task>-<episodes>x<steps>-s<seed>",
            help="Saved as data/<name>.h5. Letters, digits, '.', '_' and '-' only.",
        )
        overwrite = n2.checkbox("Replace a dataset of the same name", key="data_overwrite")
        submitted = st.form_submit_button("Collect", type="primary", icon=":material/download:")
    if not submitted:
        return
    suffix = "" if policy == "default" else f"-{policy}"
    name = name.strip() or f"{env}-{int(episodes)}x{int(steps)}-s{int(seed)}{suffix}"
    try:
        path = models.dataset_path(name)
        if path.exists() and not overwrite:
            raise UserError(
                f"dataset '{path.stem}' already exists; tick 'Replace' or choose another name"
            )
        spec = CollectSpec(env, int(episodes), int(steps), int(res), int(seed), policy)
        validate_spec(spec)  # e.g. a policy the task does not have, before anything is drawn
        lab_public.check_collect(spec.episodes, spec.steps, spec.resolution)
        bar = st.progress(0.0, text=f"Collecting {spec.episodes} episodes of {env}...")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"{done} / {total} episodes")

        out = collect(spec, path, workers=1, overwrite=overwrite, progress=progress)
    except UserError as e:
        ui.show_error(e)
        return
    st.success(f"Wrote {out.name}: {spec.episodes} episodes x {spec.steps} steps.")
    st.session_state[W_BROWSE] = out.stem  # browse the new dataset (widget not drawn yet)
    st.session_state[W_EP] = 0
    st.session_state[W_T] = 0


def _state_figure(ep: dict, t: int):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    action, state, columns = ep["action"], ep["state"], ep["columns"]
    if len(columns) != state.shape[1]:
        columns = [f"state[{i}]" for i in range(state.shape[1])]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("actions", "state"),
    )
    steps = np.arange(len(action))
    for i in range(action.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=action[:, i], name=f"action[{i}]"), row=1, col=1)
    for i, col in enumerate(columns):
        fig.add_trace(go.Scatter(x=steps, y=state[:, i], name=col), row=2, col=1)
    fig.add_vline(x=t, line_dash="dot", line_color="gray")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10))
    fig.update_xaxes(title_text="step", row=2, col=1)
    return fig


def _browse_section(paths) -> None:
    st.subheader("Browse an episode")
    names = [p.stem for p in paths]
    if W_BROWSE not in st.session_state or st.session_state[W_BROWSE] not in names:
        wanted = st.query_params.get("dataset")
        st.session_state[W_BROWSE] = wanted if wanted in names else names[0]
        try:
            st.session_state[W_EP] = max(0, int(st.query_params.get("episode", 0)))
        except ValueError:
            st.session_state[W_EP] = 0
    c1, c2 = st.columns([3, 1])
    chosen = c1.selectbox("Dataset", names, key=W_BROWSE)
    path = paths[names.index(chosen)]
    try:
        info = _info(str(path), _mtime(path))
    except UserError as e:
        ui.show_error(e)
        return
    n_eps = info["num_episodes"]
    if st.session_state.get(W_EP, 0) >= n_eps:
        st.session_state[W_EP] = n_eps - 1
    episode = int(c2.number_input(f"Episode (0 to {n_eps - 1})", 0, n_eps - 1, key=W_EP))
    for param, value in (("dataset", chosen), ("episode", str(episode))):
        if st.query_params.get(param) != value:
            st.query_params[param] = value
    try:
        ep = _episode(str(path), _mtime(path), episode)
    except UserError as e:
        ui.show_error(e)
        return
    length = len(ep["pixels"])
    if st.session_state.get(W_T, 0) > length - 1:
        st.session_state[W_T] = 0
    left, right = st.columns([2, 3], gap="medium")
    with left:
        t = st.slider("Step", 0, length - 1, key=W_T)
        ui.show_frame(ep["pixels"][t], f"{chosen}, episode {episode}, step {t} of {length - 1}")
        st.caption("Action taken at this step: " + ", ".join(f"{a:+.3f}" for a in ep["action"][t]))
        state = {
            name: ep["state"][t, start : start + size]
            for name, (start, size) in ep["quantities"].items()
        }
        st.dataframe(ui.state_table(state, ep["angles"]), hide_index=True)
    with right:
        st.plotly_chart(_state_figure(ep, t), key="data_state_chart")


# --------------------------------------------------------------------------- page
st.title("Data")
ui.explainer(
    f"""
LeWM is trained **offline** on recorded episodes: frames, the actions taken, nothing else (no
rewards, no goals). **Collect** runs a task's scripted data policy (by default a noisy explorer,
not an expert; Push-T also has an expert that pushes the T to goal poses) and writes every
frame *before* each action, the action, and the simulator's physical state to one HDF5 file in
`data/`. Each episode is generated from (seed, episode index) alone,
so the same settings always give the same file; the file appears only once it is complete.

- Keep it small on a CPU: 50 episodes x 100 steps at 64 px (5,000 frames, a few MB) trains in
  minutes. Resolution: {MIN_RESOLUTION} to {MAX_RESOLUTION} px (the lab model wants a multiple of
  16; the paper uses 224 px).
- **Browse**: the frame slider walks through one episode. The plots show the actions (what the
  model is conditioned on) and the state columns (positions, angles...). The model never sees
  the state: it is kept for success tests and for probing what the latent space learned.

The browsed dataset and episode are in the page URL.
"""
)

lab_public.notice()
_collect_section()

st.subheader("Datasets")
paths = models.list_datasets()
if not paths:
    st.info(f"No dataset in {models.data_dir()} yet: collect one above.")
    st.stop()
st.dataframe(_dataset_table(paths), hide_index=True)
_browse_section(paths)
