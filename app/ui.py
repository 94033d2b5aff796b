"""Small display helpers shared by the LeWM Lab pages (presentation only, no model logic)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

FRAME_WIDTH = 384  # on-screen size of an environment frame, pixels


def upscale(frame: np.ndarray, size: int = FRAME_WIDTH) -> np.ndarray:
    """Nearest-neighbour resize of an (r, r, 3) uint8 frame to (size, size, 3): crisp pixels."""
    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    return np.asarray(img.resize((size, size), Image.Resampling.NEAREST))


def show_frame(frame: np.ndarray, caption: str) -> None:
    st.image(upscale(frame), caption=caption, width=FRAME_WIDTH)


def state_table(state: Mapping[str, np.ndarray], angles: Iterable[str] = ()) -> pd.DataFrame:
    """One row per named physical quantity; angles are marked as radians."""
    angles = set(angles)
    rows = []
    for name, value in state.items():
        values = np.atleast_1d(np.asarray(value, dtype=np.float64))
        rows.append(
            {
                "quantity": name + (" (rad)" if name in angles else ""),
                "value": ", ".join(f"{v:.3f}" for v in values),
            }
        )
    return pd.DataFrame(rows, columns=["quantity", "value"])


def explainer(markdown: str, label: str = "What am I looking at?") -> None:
    with st.expander(label, icon=":material/help:"):
        st.markdown(markdown)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def rgb_to_hex(rgb: Iterable[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def show_error(error: BaseException) -> None:
    """A bad-input message in a red box (a `UserError`'s one line: problem and fix)."""
    st.error(str(error), icon=":material/error:")


def side_by_side(frames: Mapping[str, np.ndarray], size: int = 256) -> None:
    """Frames in equal columns, upscaled with crisp pixels, captioned by their keys."""
    cols = st.columns(len(frames))
    for col, (caption, frame) in zip(cols, frames.items(), strict=True):
        col.image(upscale(frame, size), caption=caption, width=size)


def line_figure(
    series: Mapping[str, tuple[Iterable[float], Iterable[float]]],
    title: str,
    x_title: str = "step",
    y_title: str = "",
    log_y: bool = False,
    height: int = 320,
):
    """A Plotly figure with one line per named (x, y) series."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, (x, y) in series.items():
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines", name=name))
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    if log_y:
        fig.update_yaxes(type="log", dtick=1)
    return fig
