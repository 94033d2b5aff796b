"""Latent space: a t-SNE map of single-frame latents, probes of the physical state, straightness.

The frames are the model's dataset or, where that is not on disk, its held-out sample
(``models.frames_or_stop``). The map comes from ``lewm_core.analysis.tsne.tsne_latents`` (seeded:
the same seed gives the same map), the probes from ``lewm_core.analysis.probing.probe`` and the
straightness from ``lewm_core.analysis.straightness.straightness``; both are computed on demand and
kept per model in the session. Clicking a point of the map shows its frame. The model, point count,
seed and colour are mirrored in the URL (``?model=&points=&seed=&color=``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import models, ui
from lewm_core.analysis.frames import dataset_quantities
from lewm_core.analysis.probing import probe
from lewm_core.analysis.straightness import straightness
from lewm_core.analysis.tsne import color_values, parse_color, tsne_latents
from lewm_core.data.dataset import open_dataset
from lewm_core.errors import UserError

W_MODEL, W_POINTS, W_SEED, W_COLOR, W_COMP = (
    "latent_model_w",
    "latent_points_w",
    "latent_seed_w",
    "latent_color_w",
    "latent_comp_w",
)
W_POINT, W_UNTRAINED, W_PERP = "latent_point_w", "latent_untrained_w", "latent_perp_w"
CHART = "latent_tsne_chart"
TSNE = "latent_tsne"  # session_state: {"key": settings, "result": tsne_latents(...), "state"}
PROBES = "latent_probes"  # session_state: {model key: {"settings": ..., "result": probe(...)}}
STRAIGHT = "latent_straight"  # session_state: {model key: straightness(...)}
LAST_CLICK = "latent_last_click"


@st.cache_data(max_entries=16, show_spinner=False)
def _quantities(path: str, mtime: float) -> tuple[dict, tuple, np.ndarray, np.ndarray]:
    """State quantities, angle names and the episode offsets/lengths of a dataset."""
    del mtime  # cache key only
    with open_dataset(path) as f:
        q, angles = dataset_quantities(f)
        return q, angles, f["ep_offset"][:], f["ep_len"][:]


def _row_frame(path: str, row: int) -> tuple[np.ndarray, np.ndarray]:
    with open_dataset(path) as f:
        return f["pixels"][row], f["state"][row]


def _read_state(path: str, rows: np.ndarray) -> np.ndarray:
    from lewm_core.analysis.frames import read_rows

    with open_dataset(path) as f:
        return read_rows(f["state"], rows)


def _progress_text(placeholder):
    def say(msg: str) -> None:
        placeholder.caption(f"{msg}...")

    return say


def _tsne_figure(coords: np.ndarray, color: np.ndarray, label: str, chosen: int | None, title: str):
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scattergl(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers",
            marker=dict(
                color=color,
                colorscale="Viridis",
                size=6,
                colorbar=dict(title=dict(text=label, side="right")),
            ),
            customdata=np.arange(len(coords)),
            hovertemplate="point %{customdata}<br>" + label + " %{marker.color:.3f}<extra></extra>",
            name="frames",
            showlegend=False,
        )
    )
    if chosen is not None:
        fig.add_trace(
            go.Scatter(
                x=[coords[chosen, 0]],
                y=[coords[chosen, 1]],
                mode="markers",
                marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(color="red", width=3)),
                hoverinfo="skip",
                showlegend=False,
            )
        )
    fig.update_layout(
        title=title,
        height=520,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis=dict(showticklabels=False, title="t-SNE 1"),
        yaxis=dict(showticklabels=False, title="t-SNE 2", scaleanchor="x"),
        dragmode="pan",
        clickmode="event+select",
    )
    return fig


def _chart_pick() -> int | None:
    """The index of the map point selected in the chart (None if none)."""
    state = st.session_state.get(CHART)
    try:
        points = list(state["selection"]["points"]) if state else []
    except (KeyError, TypeError):
        points = []
    for p in points:
        if int(p.get("curve_number", 0)) == 0:
            return int(p.get("point_index", p.get("point_number", 0)))
    return None


def _clicked_point() -> int | None:
    """The index of the map point clicked since the last run (None if no new click)."""
    picked = _chart_pick()
    if picked == st.session_state.get(LAST_CLICK):
        return None
    st.session_state[LAST_CLICK] = picked
    return picked


def _tsne_section(key: str, loaded, source, quantities) -> None:
    st.subheader("t-SNE map of the latents")
    dataset = source.path
    names = list(quantities)
    ui.url_int(W_POINTS, "points", 1000, 10, 20_000)
    ui.url_int(W_SEED, "seed", 0)
    ui.url_choice(W_COLOR, "color", names, names[0])
    c = st.columns([1, 1, 2, 1, 1])
    points = int(c[0].number_input("Points", 10, 20_000, key=W_POINTS, step=100))
    seed = int(c[1].number_input("Seed", 0, 2**31 - 1, key=W_SEED))
    color = c[2].selectbox("Colour by", names, key=W_COLOR)
    size = int(quantities[color][1])
    comps = [str(i) for i in range(size)] + (["norm"] if size > 1 else [])
    if st.session_state.get(W_COMP) not in comps:
        st.session_state[W_COMP] = comps[0]
    comp = c[3].selectbox(
        "Component", comps, key=W_COMP, help="Which part of the quantity (or its length)."
    )
    if W_PERP not in st.session_state:
        st.session_state[W_PERP] = 30.0
    perplexity = float(c[4].number_input("Perplexity", 1.0, 200.0, key=W_PERP, step=5.0))
    ui.write_url({"points": points, "seed": seed, "color": color})
    untrained = st.checkbox(
        "Also map an untrained encoder of the same architecture (the floor)", key=W_UNTRAINED
    )
    settings = (key, points, seed, perplexity, untrained)
    held = st.session_state.get(TSNE)
    if held is None or held["key"] != settings:
        if st.button(
            "Compute the map", key="latent_tsne_go", type="primary", icon=":material/scatter_plot:"
        ):
            note = st.empty()
            models.set_torch_threads()
            try:
                with st.spinner(f"t-SNE of {points} frames (seconds to a minute)..."):
                    result = tsne_latents(
                        loaded,
                        source,
                        points=points,
                        seed=seed,
                        color=color,
                        perplexity=perplexity,
                        untrained=untrained,
                        progress=_progress_text(note),
                    )
            except UserError as e:
                note.empty()
                ui.show_error(e)
                return
            note.empty()
            held = {
                "key": settings,
                "result": result,
                "state": _read_state(str(dataset), result["rows"]),
            }
            st.session_state[TSNE] = held
            st.session_state[W_POINT] = 0
            st.session_state[LAST_CLICK] = _chart_pick()  # an old click is not a new one
        elif held is None:
            st.caption("Press **Compute the map**: it encodes the frames and runs t-SNE.")
            return
        else:
            st.info("The settings changed: press **Compute the map** to redraw it.")
    result = held["result"]
    try:
        name, component = parse_color(color, comp, quantities)
    except UserError as e:
        ui.show_error(e)
        return
    values = color_values(held["state"], quantities, name, component)
    label = f"|{name}|" if component == "norm" else (name if size == 1 else f"{name}[{component}]")
    n = len(result["rows"])

    clicked = _clicked_point()
    if clicked is not None and 0 <= clicked < n:
        st.session_state[W_POINT] = clicked
    ui.clamp_state(W_POINT, 0, n - 1)

    m = st.columns(3)
    m[0].metric("Points", n)
    m[1].metric("Trustworthiness", f"{result['trustworthiness']:.4f}")
    if "untrained_trustworthiness" in result:
        m[2].metric("Untrained encoder", f"{result['untrained_trustworthiness']:.4f}")
    left, right = st.columns([3, 2], gap="medium")
    with right:
        i = int(st.number_input(f"Point (0 to {n - 1})", 0, n - 1, key=W_POINT))
        row = int(result["rows"][i])
        frame, state = _row_frame(str(dataset), row)
        _, angles, offsets, lengths = _quantities(str(dataset), dataset.stat().st_mtime)
        ep = int(np.searchsorted(offsets, row, side="right") - 1)
        ui.show_frame(frame, f"point {i}: episode {ep}, step {row - int(offsets[ep])}")
        st.dataframe(
            ui.state_table({q: state[s : s + k] for q, (s, k) in quantities.items()}, angles),
            hide_index=True,
        )
    with left:
        fig = _tsne_figure(result["coords"], values, label, i, f"trained encoder, colour: {label}")
        st.plotly_chart(
            fig, key=CHART, on_select="rerun", selection_mode="points", config={"scrollZoom": True}
        )
        st.caption("Click a point to see its frame (or type its index on the right).")
    if "untrained_coords" in result:
        fig_u = _tsne_figure(
            result["untrained_coords"], values, label, i, f"untrained encoder, colour: {label}"
        )
        st.plotly_chart(fig_u, key="latent_tsne_untrained_chart")


def _probe_table(result: dict) -> pd.DataFrame:
    rows = []
    for q in result["linear"]:
        row = {
            "quantity": q,
            "linear r": result["linear"][q]["r"],
            "linear MSE": result["linear"][q]["mse"],
        }
        if "mlp" in result:
            row.update({"MLP r": result["mlp"][q]["r"], "MLP MSE": result["mlp"][q]["mse"]})
        u = result["untrained"]["linear"][q]
        row.update({"untrained linear r": u["r"], "untrained linear MSE": u["mse"]})
        rest = result.get("state_floor", {}).get("linear", {}).get(q)
        if rest is not None:
            row["rest-of-state linear r"] = rest["r"]
        rows.append(row)
    return pd.DataFrame(rows)


def _probe_section(key: str, loaded, source, seed: int) -> None:
    st.subheader("Probing: can the state be read off one latent?")
    c = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    n_train = int(c[0].number_input("Train frames", 10, 200_000, 5000, key="latent_probe_train"))
    n_test = int(c[1].number_input("Test frames", 2, 50_000, 2000, key="latent_probe_test"))
    mlp = c[2].checkbox("MLP probe too", value=True, key="latent_probe_mlp")
    go = c[3].button("Run the probes", key="latent_probe_go", icon=":material/biotech:")
    settings = (n_train, n_test, mlp, seed)
    store = st.session_state.setdefault(PROBES, {})
    if go:
        note = st.empty()
        models.set_torch_threads()
        try:
            with st.spinner("Encoding frames and fitting probes..."):
                result = probe(
                    loaded,
                    source,
                    max_train=n_train,
                    max_test=n_test,
                    seed=seed,
                    mlp=mlp,
                    progress=_progress_text(note),
                )
        except UserError as e:
            note.empty()
            ui.show_error(e)
            return
        note.empty()
        store[key] = {"settings": settings, "result": result}
    held = store.get(key)
    if held is None:
        st.caption("Press **Run the probes** (a minute on a laptop for 5000 frames with the MLP).")
        return
    result = held["result"]
    if held["settings"] != settings:
        st.info("These probes were run with other settings: press **Run the probes** to rerun.")
    st.dataframe(
        _probe_table(result),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in _probe_table(result).columns
            if c != "quantity"
        },
    )
    st.caption(
        f"{result['train_frames']} train frames, {result['test_frames']} test frames from "
        "held-out episodes; targets z-scored, so MSE 1 = predicting the mean. The untrained "
        "encoder (same architecture, random weights) is the floor a probe reaches without "
        "learning; *rest-of-state* is a probe from the true values of the other quantities, "
        "the floor a latent reaches by knowing only them (a quantity at that floor is not in "
        "the latent on its own)."
    )


def _straightness_section(key: str, loaded, source, seed: int) -> None:
    st.subheader("Temporal straightness")
    store = st.session_state.setdefault(STRAIGHT, {})
    c = st.columns([1, 3], vertical_alignment="bottom")
    episodes = int(c[0].number_input("Episodes", 1, 10_000, 50, key="latent_straight_eps"))
    if c[1].button("Measure straightness", key="latent_straight_go", icon=":material/timeline:"):
        models.set_torch_threads()
        try:
            with st.spinner("Encoding episodes..."):
                store[key] = straightness(loaded, source, episodes=episodes, seed=seed)
        except UserError as e:
            ui.show_error(e)
            return
    res = store.get(key)
    if res is None:
        return
    m = st.columns(3)
    m[0].metric("Trained encoder", f"{res['trained']['mean']:.3f}")
    if "untrained" in res:
        m[1].metric("Untrained encoder", f"{res['untrained']['mean']:.3f}")
    if "pixels" in res:
        m[2].metric("Raw pixels", f"{res['pixels']['mean']:.3f}")
    st.caption(
        f"Mean cosine of consecutive latent velocities over {res['episodes']} held-out episodes: "
        "1 = straight paths, 0 = unrelated directions."
    )


# --------------------------------------------------------------------------- page
st.title("Latent space")
ui.explainer(
    """
Each frame becomes one **latent** vector (192 numbers for the lab model). Are those latents
organised by the physics, or arbitrary?

- **t-SNE map**: frames sampled from the model's dataset, encoded, and laid out in 2-D so that
  frames with nearby latents land near each other. Colour is a physical quantity from the
  dataset (e.g. the agent's x position). A smooth colour gradient means the latent space is
  arranged by that quantity. **Trustworthiness** (0 to 1) says how faithfully the 2-D map keeps
  each point's latent-space neighbours; the untrained encoder gives a reference.
  Click a point (or type its index) to see the frame it came from.
- **Probing**: a linear (ridge) and a small MLP regressor are fitted from latents to each state
  quantity on training episodes and scored on held-out ones: **r** is the correlation of
  prediction and truth (1 = perfect), **MSE** is on standardised targets (1 = no better than the
  mean). A random, untrained encoder is the floor: pixels alone already carry information.
- **Straightness**: how straight the latent path of an episode is (mean cosine between
  consecutive steps). Physical motion at steady velocity gives straight latent paths in a good
  world model.

All numbers come from `lewm_core.analysis.tsne`, `lewm_core.analysis.probing` and
`lewm_core.analysis.straightness`. The model, point count, seed and colour are in the page URL.
"""
)

entries = models.models_or_stop()
by_key = {e.key: e for e in entries}
ui.url_choice(W_MODEL, "model", by_key, entries[0].key)
key = st.selectbox("Model", list(by_key), key=W_MODEL, format_func=lambda k: by_key[k].label)
ui.write_url({"model": key})
try:
    loaded = models.load_model_cached(by_key[key].path)
except UserError as e:
    ui.show_error(e)
    st.stop()
source = models.frames_or_stop(loaded, "the map, the probes and the straightness use its frames")
dataset = source.path
try:
    quantities = _quantities(str(dataset), dataset.stat().st_mtime)[0]
except UserError as e:
    ui.show_error(e)
    st.stop()

_tsne_section(key, loaded, source, quantities)
seed = int(st.session_state.get(W_SEED, 0))
st.divider()
_probe_section(key, loaded, source, seed)
st.divider()
_straightness_section(key, loaded, source, seed)
