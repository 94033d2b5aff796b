"""Decode: look at what a world model's latents hold, through a trained visualisation decoder.

The decoder (``decoder/``) maps one latent back to pixels; it is trained after the world model,
on its frozen encoder, and lives beside it (``decoder.safetensors``, ``decoder.json``). This page
trains one for a user run (never for a shipped model) and shows an episode of the model's dataset
(where that is not on disk, of its held-out sample: ``models.frames_or_stop``) three ways: the
original frames, each frame encoded then decoded, and the first frame's latent rolled out
open-loop by the predictor with the true actions, decoded. The model, episode, start step and
decoder seed are mirrored in the URL (``?model=&episode=&start=&seed=``).
"""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from app import models, ui
from decoder import DECODER_CONFIG, DECODER_WEIGHTS
from decoder.rollout import decode_rollout, episode_clip
from decoder.train import finite_mean, train_decoder
from lewm_core.data.dataset import open_dataset
from lewm_core.errors import UserError

W_MODEL, W_EP, W_START, W_LEN, W_SEED = (
    "decode_model_w",
    "decode_ep_w",
    "decode_start_w",
    "decode_len_w",
    "decode_seed_w",
)
W_FRAME = "decode_frame_w"
RESULT = "decode_result"  # session_state: {"key": ..., "out": decode_rollout result, "video"}
TRAINED = "decode_trained"  # session_state: summary of the last decoder trained on this page


@st.cache_data(max_entries=16, show_spinner=False)
def _episode_lengths(path: str, mtime: float) -> np.ndarray:
    del mtime  # cache key only
    with open_dataset(path) as f:
        return f["ep_len"][:].astype(np.int64)


def _decoder_info(path) -> dict:
    try:
        return json.loads((path / DECODER_CONFIG).read_text())
    except (OSError, ValueError):
        return {}


def _train_form(entry, source, retrain: bool) -> None:
    """The decoder training form (on the frames `source`, `lewm_core.data.samples.Frames`); trains
    in this script run with a progress bar."""
    with st.form("decode_train_form"):
        c = st.columns(5)
        steps = c[0].number_input("Steps", 1, 100_000, 1500, key="decode_steps")
        batch = c[1].number_input("Batch size", 1, 4096, 64, key="decode_batch")
        lr = c[2].number_input(
            "Learning rate", 1e-5, 0.5, 1e-3, format="%.4f", step=1e-4, key="decode_lr"
        )
        seed = c[3].number_input("Seed", 0, 2**31 - 1, key=W_SEED)
        frames = c[4].number_input(
            "Training frames",
            10,
            200_000,
            10_000,
            key="decode_frames",
            help="Training-episode frames, encoded once: what the decoder learns from.",
        )
        label = "Train the decoder again" if retrain else "Train a decoder"
        submitted = st.form_submit_button(label, type="primary", icon=":material/brush:")
    ui.write_url({"seed": int(seed)})
    if not submitted:
        return
    models.set_torch_threads()
    bar = st.progress(0.0, text="Encoding the training frames with the frozen encoder...")
    every = max(1, int(steps) // 100)

    def progress(step: int, total: int, loss: float) -> None:
        if step % every == 0 or step == total:
            bar.progress(step / total, text=f"step {step} / {total}, loss {loss:.4f}")

    try:
        summary = train_decoder(
            entry.path,
            source,
            steps=int(steps),
            batch_size=int(batch),
            lr=float(lr),
            seed=int(seed),
            frames=int(frames),
            progress=progress,
        )
    except UserError as e:
        bar.empty()
        ui.show_error(e)
        return
    bar.empty()
    st.session_state[TRAINED] = {"model": entry.key, **summary}
    st.session_state.pop(RESULT, None)
    st.rerun()  # draw the page again with the new decoder (and the message above the form)


def _decoder_section(entry, source) -> bool:
    """Show the decoder's state, offer training; True when a decoder is there to use."""
    trained = st.session_state.get(TRAINED)
    if trained is not None and trained.get("model") == entry.key:
        st.success(
            f"Trained the decoder in {trained['wall_s']:.0f} s: held-out PSNR "
            f"{trained['val_psnr']:.1f} dB (the mean training frame scores "
            f"{trained['val_psnr_mean_image']:.1f} dB).",
            icon=":material/check:",
        )
    if models.has_decoder(entry.path):
        info = _decoder_info(entry.path)
        metrics, train = info.get("metrics", {}), info.get("train", {})
        if metrics.get("val_psnr") is not None:
            st.caption(
                f"Decoder: {train.get('steps', '?')} steps (seed {train.get('seed', '?')}), "
                f"held-out PSNR {metrics['val_psnr']:.1f} dB vs "
                f"{metrics.get('val_psnr_mean_image', float('nan')):.1f} dB for the mean frame."
            )
        if models.can_train_decoder(entry):
            with st.expander("Train the decoder again"):
                _train_form(entry, source, retrain=True)
        return models.has_decoder(entry.path)
    if not models.can_train_decoder(entry):
        st.info(
            f"`{entry.path.name}` is a shipped model without a decoder, and the lab does not "
            "write into shipped models. Train a decoder for one of your runs here, or run "
            f"`lewm decoder-train --checkpoint <folder>` on a copy of it."
        )
        return False
    st.info(
        "This run has no decoder yet. Train one (about a minute for 1500 steps on a laptop CPU; "
        "the time depends on the machine). It is written beside the run: "
        f"`{entry.path.name}/decoder.safetensors`.",
        icon=":material/info:",
    )
    _train_form(entry, source, retrain=False)
    return models.has_decoder(entry.path)


def _psnr_figure(out: dict, frameskip: int, k: int):
    def finite(values):
        return [float(v) if np.isfinite(v) else None for v in values]

    steps = np.arange(len(out["original"]))
    fig = ui.line_figure(
        {
            "autoencoded (encode -> decode)": (steps, finite(out["psnr_autoencoded"])),
            "predicted (open-loop rollout -> decode)": (steps, finite(out["psnr_predicted"])),
        },
        title="PSNR of each decoded frame against the original",
        x_title=f"model frame ({frameskip} raw steps apart)",
        y_title="PSNR (dB), higher is closer",
    )
    fig.update_traces(mode="lines+markers")
    for trace, colour in zip(fig.data, ("#1f77b4", "#ff7f0e"), strict=True):
        trace.line.color = colour
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10), height=360)
    fig.add_vline(x=k, line_dash="dot", line_color="gray")
    return fig


def _show(out: dict, video: bytes | None, frameskip: int, start: int) -> None:
    t_len = len(out["original"])
    c = st.columns(3)
    c[0].metric("Frames", t_len)
    auto, pred = finite_mean(out["psnr_autoencoded"]), finite_mean(out["psnr_predicted"])
    c[1].metric("Mean PSNR, autoencoded", f"{auto:.1f} dB" if auto is not None else "-")
    c[2].metric("Mean PSNR, predicted", f"{pred:.1f} dB" if pred is not None else "-")
    ui.clamp_state(W_FRAME, 0, t_len - 1)
    k = st.slider("Model frame", 0, t_len - 1, key=W_FRAME)
    ui.side_by_side(
        {
            f"original (raw step {start + k * frameskip})": out["original"][k],
            "autoencoded": out["autoencoded"][k],
            f"predicted ({k} steps open loop)": out["predicted"][k],
        },
        size=256,
    )
    st.caption(
        f"Latent error of the rollout at this frame: {out['latent_error'][k]:.3f} "
        "(squared distance between the predicted and the encoded latent)."
    )
    left, right = st.columns([2, 3], gap="medium")
    with left:
        if video is not None:
            st.video(video, format="video/mp4")
            st.caption("Original | autoencoded | predicted, 4 model frames per second.")
        else:
            st.caption("No video encoder here: use the frame slider.")
    with right:
        st.plotly_chart(_psnr_figure(out, frameskip, k), key="decode_psnr_chart")


# --------------------------------------------------------------------------- page
st.title("Decode")
ui.explainer(
    """
LeWM never reconstructs pixels: it learns only to predict the next frame's **latent**. To see
what a latent holds, a small **decoder** (cross-attention from patch queries to the latent) is
trained *afterwards* on the frozen encoder: latent -> image, MSE on pixels. It is a lens, not
part of the model: the world model and its planning never use it.

- **original**: frames of one episode of the model's dataset, `frameskip` raw steps apart.
- **autoencoded**: each frame encoded, then decoded: what a single latent keeps of a frame.
  Details the decoder cannot draw are details the latent has dropped (or that the decoder has
  not learned yet).
- **predicted**: only the *first* frame is encoded; the predictor then rolls its latent forward
  with the episode's true actions, never seeing another frame (open loop), and each predicted
  latent is decoded. This is the model's imagination: it drifts as errors compound.
- **PSNR** (peak signal-to-noise ratio, dB) compares each decoded frame with the original:
  higher is closer; identical frames are +inf (not drawn). Frame 0 of both is the same latent.
- Training writes `decoder.safetensors` beside *your* run; shipped models are never modified.

Every number comes from `decoder.rollout.decode_rollout` and `decoder.train.train_decoder`.
The model, episode, start and decoder seed are in the page URL.
"""
)

entries = models.models_or_stop()
by_key = {e.key: e for e in entries}
ui.url_choice(W_MODEL, "model", by_key, entries[0].key)
ui.url_int(W_SEED, "seed", 0)


def _label(key: str) -> str:
    entry = by_key[key]
    return entry.label + (" - has a decoder" if models.has_decoder(entry.path) else "")


key = st.selectbox("Model", list(by_key), key=W_MODEL, format_func=_label)
entry = by_key[key]
ui.write_url({"model": key})
try:
    loaded = models.load_model_cached(entry.path)
except UserError as e:
    ui.show_error(e)
    st.stop()
source = models.frames_or_stop(loaded, "the decoder trains and decodes on its frames")
dataset = source.path

if not _decoder_section(entry, source):
    st.stop()
try:
    decoder = models.load_decoder_cached(entry.path)
except UserError as e:
    ui.show_error(e)
    st.stop()

st.subheader("An episode, three ways")
fs = int(loaded.config.frameskip)
try:
    lengths = _episode_lengths(str(dataset), dataset.stat().st_mtime)
except (UserError, OSError) as e:  # a damaged or vanished dataset: say so, no exception box
    ui.show_error(e)
    st.stop()
n_eps = len(lengths)
ui.url_int(W_EP, "episode", 0, 0, n_eps - 1)
ui.url_int(W_START, "start", 0, 0)
ui.clamp_state(W_EP, 0, n_eps - 1)
c1, c2, c3 = st.columns(3)
episode = int(c1.number_input(f"Episode (0 to {n_eps - 1})", 0, n_eps - 1, key=W_EP))
length = int(lengths[episode])
last_start = length - 1 - fs  # a clip has at least 2 model frames (one predicted step)
if last_start < 0:
    ui.show_error(
        UserError(
            f"episode {episode} has {length} raw steps, fewer than the {fs + 1} one model step "
            "needs; choose another episode"
        )
    )
    st.stop()
ui.clamp_state(W_START, 0, last_start)
start = int(c2.number_input(f"Start step (0 to {last_start})", 0, last_start, key=W_START))
fit = (length - 1 - start) // fs + 1
if W_LEN not in st.session_state:
    st.session_state[W_LEN] = min(fit, 16)
ui.clamp_state(W_LEN, 2, fit)
n_frames = int(c3.number_input(f"Model frames (2 to {fit})", 2, fit, key=W_LEN))
ui.write_url({"episode": episode, "start": start})
val_eps = source.held_out(n_eps)
held_out = episode in set(val_eps.tolist())
st.caption(
    f"Episode {episode} has {length} raw steps; it is a "
    + ("**held-out** episode (never trained on)." if held_out else "**training** episode.")
    + f" Held-out episodes: {', '.join(map(str, sorted(val_eps.tolist())[:12]))}"
    + (" ..." if len(val_eps) > 12 else "")
)

decoder_mtime = (entry.path / DECODER_WEIGHTS).stat().st_mtime
clip_key = (key, episode, start, n_frames, decoder_mtime)
held = st.session_state.get(RESULT)
if held is None or held["key"] != clip_key:
    try:
        models.set_torch_threads()
        frames, blocks = episode_clip(dataset, episode, loaded.action_stats, fs, start, n_frames)
        with st.spinner("Decoding..."):
            out = decode_rollout(loaded, decoder, frames, blocks)
    except UserError as e:
        ui.show_error(e)
        st.stop()
    video = ui.videos_side_by_side([out["original"], out["autoencoded"], out["predicted"]])
    held = {"key": clip_key, "out": out, "video": video}
    st.session_state[RESULT] = held
_show(held["out"], held["video"], fs, start)
