"""Environments: drive Two-Room, Push-T and Reacher by hand, set a goal and test success.

The environment object lives in ``st.session_state`` (one per browser session) and is mutated
by button callbacks; task, seed and resolution are mirrored in the URL (``?env=&seed=&res=``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app import ui
from lewm_core.envs import ENV_NAMES, ENV_TITLES, make

RESOLUTIONS = (64, 96, 128, 224)
DEFAULT_RES = 64

# session_state keys
SETTINGS = "env_settings"  # persistent copy of {name, seed, res} (survives page switches)
SIM = "env_sim"  # dict: env, key, steps, rng, last_action
GOAL = "env_goal"  # dict: name, state, frame (or absent)
W_NAME, W_SEED, W_RES = "env_name_w", "env_seed_w", "env_res_w"


def _act_key(i: int) -> str:
    return f"env_act_{i}"


def _color_key(part: str) -> str:
    return f"env_color_{part}"


# --------------------------------------------------------------------------- settings / URL
def _settings_from_url() -> dict[str, Any]:
    qp = st.query_params
    name = qp.get("env", ENV_NAMES[0])
    if name not in ENV_NAMES:
        name = ENV_NAMES[0]
    try:
        seed = max(0, int(qp.get("seed", 0)))
    except ValueError:
        seed = 0
    try:
        res = int(qp.get("res", DEFAULT_RES))
    except ValueError:
        res = DEFAULT_RES
    if res not in RESOLUTIONS:
        res = DEFAULT_RES
    return {"name": name, "seed": seed, "res": res}


def _write_url(settings: dict[str, Any]) -> None:
    for param, field in (("env", "name"), ("seed", "seed"), ("res", "res")):
        value = str(settings[field])
        if st.query_params.get(param) != value:
            st.query_params[param] = value


# --------------------------------------------------------------------------- callbacks
def _sim() -> dict[str, Any]:
    return st.session_state[SIM]


def _clear_color_widgets() -> None:
    for key in [k for k in st.session_state if str(k).startswith("env_color_")]:
        del st.session_state[key]


def _reset() -> None:
    sim = _sim()
    seed = sim["key"][2]
    sim["env"].reset(seed=seed)
    sim["rng"] = np.random.default_rng(seed)
    sim["steps"] = 0
    sim["last_action"] = None
    _clear_color_widgets()


def _step(n: int, action: np.ndarray | None = None) -> None:
    sim = _sim()
    env = sim["env"]
    if action is None:
        dim = env.action_space.shape[0]
        action = np.array([st.session_state[_act_key(i)] for i in range(dim)], dtype=np.float32)
    for _ in range(n):
        env.step(action)
    sim["steps"] += n
    sim["last_action"] = action


def _random_action() -> None:
    sim = _sim()
    dim = sim["env"].action_space.shape[0]
    action = np.round(sim["rng"].uniform(-1.0, 1.0, dim), 2).astype(np.float32)
    for i, a in enumerate(action):
        st.session_state[_act_key(i)] = float(a)
    _step(1, action)


def _teleport() -> None:
    sim = _sim()
    sim["env"].unwrapped.teleport(sim["rng"])


def _set_goal() -> None:
    sim = _sim()
    env = sim["env"]
    st.session_state[GOAL] = {
        "name": sim["key"][0],
        "state": np.array(env.unwrapped.get_state(), dtype=np.float64),
        "frame": np.array(env.render()),
    }


def _clear_goal() -> None:
    st.session_state.pop(GOAL, None)


def _apply_color(part: str) -> None:
    rgb = ui.hex_to_rgb(st.session_state[_color_key(part)])
    _sim()["env"].unwrapped.set_color(part, rgb)


# --------------------------------------------------------------------------- page
st.title("Environments")
ui.explainer(
    """
LeWM learns from **pixels and actions only**. These are the four tasks it is trained on, as the
model sees them: a small RGB frame (64 px by default; the paper's encoder uses 224 px). Actions
are continuous vectors in [-1, 1] per dimension (a relative move of the agent; for Reacher, the
motor commands of its two joints; for Cube, the gripper's move in x, y, z, its yaw and its
closing).

- **Drive** the agent with the action sliders and the *Step* buttons (*x5*, *x25* repeat the same
  action); *Random action* draws one and applies it once.
- **Teleport** jumps the controllable parts to a random valid place; the **colour** controls
  recolour a part (a distribution shift the model never saw in training; undone by *Reset*).
- **Goals**: *Set current as goal* stores the full simulator state. The badge shows the task's own
  success test (the one used to score planning) of the current state against that goal: planning
  in the lab later asks the world model to reach such a goal frame.
- The **state table** lists the physical quantities the simulator tracks. The model never sees
  them; they are used for success tests and for probing the learned latent space.

Task, seed and resolution are in the page URL: share it to show the same start state.
"""
)

if SETTINGS not in st.session_state:
    st.session_state[SETTINGS] = _settings_from_url()
settings = st.session_state[SETTINGS]
for widget, field in ((W_NAME, "name"), (W_SEED, "seed"), (W_RES, "res")):
    if widget not in st.session_state:
        st.session_state[widget] = settings[field]

c_name, c_seed, c_res, c_reset = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
name = c_name.selectbox("Task", ENV_NAMES, key=W_NAME, format_func=lambda n: ENV_TITLES.get(n, n))
seed = int(c_seed.number_input("Seed", min_value=0, step=1, key=W_SEED))
res = c_res.selectbox("Resolution", RESOLUTIONS, key=W_RES, format_func=lambda r: f"{r} px")
settings.update(name=name, seed=seed, res=res)
_write_url(settings)

key = (name, res, seed)
sim = st.session_state.get(SIM)
if sim is None or sim["key"] != key:
    if sim is None or sim["key"][:2] != key[:2]:
        try:
            env = make(name, resolution=res)
        except Exception as e:  # an env that cannot be built (missing dependency) must not
            st.error(f"Could not build environment {name!r}: {e}")  # take the page down
            st.session_state.pop(SIM, None)
            st.stop()
        if sim is not None:
            sim["env"].close()
    else:
        env = sim["env"]
    st.session_state[SIM] = {"env": env, "key": key}
    _reset()
    goal = st.session_state.get(GOAL)
    if goal is not None and goal["name"] != name:
        _clear_goal()

c_reset.button("Reset", key="env_reset", on_click=_reset, icon=":material/restart_alt:")

sim = _sim()
env = sim["env"]
raw = env.unwrapped
frame = env.render()
goal = st.session_state.get(GOAL)

col_now, col_goal, col_ctl = st.columns([4, 4, 3], gap="medium")

with col_now:
    st.subheader("Current")
    ui.show_frame(frame, f"{ENV_TITLES.get(name, name)}, seed {seed}, {res} px")
    st.metric("Steps", sim["steps"])
    last = sim["last_action"]
    st.caption(
        "Last action: " + ("none yet" if last is None else ", ".join(f"{a:+.2f}" for a in last))
    )
    st.dataframe(
        ui.state_table(raw.state, getattr(raw, "angle_quantities", ())),
        hide_index=True,
    )

with col_goal:
    st.subheader("Goal")
    if goal is None:
        st.info("No goal set. Press **Set current as goal** to store this state as the goal.")
    else:
        ui.show_frame(goal["frame"], "goal frame")
        if raw.is_success(goal["state"]):
            st.badge(
                "Success: current state meets the goal", icon=":material/check:", color="green"
            )
        else:
            st.badge("Not at goal", icon=":material/close:", color="red")
    g1, g2 = st.columns(2)
    g1.button("Set current as goal", key="env_set_goal", on_click=_set_goal)
    g2.button("Clear goal", key="env_clear_goal", on_click=_clear_goal, disabled=goal is None)

with col_ctl:
    st.subheader("Controls")
    dim = env.action_space.shape[0]
    for i in range(dim):
        st.session_state.setdefault(_act_key(i), 0.0)  # set by "Random action" too
        st.slider(f"action[{i}]", -1.0, 1.0, step=0.05, key=_act_key(i))
    b1, b5, b25 = st.columns(3)
    b1.button("Step", key="env_step_1", on_click=_step, args=(1,), type="primary")
    b5.button("Step x5", key="env_step_5", on_click=_step, args=(5,))
    b25.button("Step x25", key="env_step_25", on_click=_step, args=(25,))
    r1, r2 = st.columns(2)
    r1.button("Random action", key="env_random", on_click=_random_action)
    r2.button("Teleport", key="env_teleport", on_click=_teleport, icon=":material/bolt:")

    parts = tuple(getattr(raw, "color_parts", ()))
    if parts:
        st.markdown("**Colour**")
        p1, p2 = st.columns([2, 1], vertical_alignment="bottom")
        part = p1.selectbox("Part", parts, key=f"env_part_{name}")
        current = raw.colors.get(part) if hasattr(raw, "colors") else None
        p2.color_picker(
            "Colour",
            value=ui.rgb_to_hex(current) if current is not None else "#ff0000",
            key=_color_key(part),
            on_change=_apply_color,
            args=(part,),
        )
