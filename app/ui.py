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


# --------------------------------------------------------------------------- URL-mirrored widgets
def url_int(widget_key: str, param: str, default: int, lo: int = 0, hi: int = 2**31 - 1) -> None:
    """Seed an integer widget's state from `?param=` once (clamped to [lo, hi])."""
    if widget_key in st.session_state:
        return
    try:
        value = int(st.query_params.get(param, default))
    except (TypeError, ValueError):
        value = default
    st.session_state[widget_key] = min(hi, max(lo, value))


def url_choice(widget_key: str, param: str, choices: Iterable[str], default: str) -> None:
    """Seed a choice widget's state from `?param=` (or `default`) when unset or no longer valid."""
    choices = list(choices)
    if st.session_state.get(widget_key) in choices:
        return
    wanted = st.query_params.get(param)
    st.session_state[widget_key] = wanted if wanted in choices else default


def write_url(values: Mapping[str, object]) -> None:
    """Mirror the page's settings in the URL (only the parameters that changed)."""
    for param, value in values.items():
        value = str(value)
        if st.query_params.get(param) != value:
            st.query_params[param] = value


def clamp_state(widget_key: str, lo: int, hi: int) -> None:
    """Keep an integer widget's stored value inside [lo, hi] before the widget is drawn."""
    if widget_key in st.session_state:
        st.session_state[widget_key] = min(hi, max(lo, int(st.session_state[widget_key])))


# --------------------------------------------------------------------------- videos
def videos_side_by_side(videos: Iterable[np.ndarray], scale: int = 4, fps: int = 4) -> bytes | None:
    """An mp4 (bytes) of equal-length videos (T, H, W, 3) side by side, upscaled `scale` times.

    None when no video encoder is available (the frame slider still shows the frames).
    """
    import tempfile
    from pathlib import Path

    videos = [np.asarray(v, np.uint8) for v in videos]
    gap = np.full_like(videos[0][:, :, :2], 255)
    parts = []
    for i, v in enumerate(videos):
        parts += [gap] if i else []
        parts.append(v)
    video = np.concatenate(parts, axis=2).repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = video.shape[1:3]
    video = np.pad(video, ((0, 0), (0, (-h) % 16), (0, (-w) % 16), (0, 0)), constant_values=255)
    try:
        import imageio.v2 as imageio

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "video.mp4"
            imageio.mimwrite(
                path, list(video), fps=fps, format="FFMPEG", codec="libx264", macro_block_size=1
            )
            return path.read_bytes()
    except Exception:  # noqa: BLE001 - no encoder: callers fall back to frames
        return None
