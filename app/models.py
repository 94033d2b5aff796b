"""Where the lab keeps things, and loading them: models, datasets, user-typed names.

Folders (each overridable by an environment variable, e.g. to point tests at temporary folders):
    LEWM_ASSETS_DIR  shipped models, <dir>/<env>/{config.json, model.safetensors, MODEL_CARD.md}
    LEWM_RUNS_DIR    the user's training runs, <dir>/<name>/
    LEWM_DATA_DIR    datasets, <dir>/<name>.h5
A name typed by the user becomes a path only through `run_path` / `dataset_path`, which accept a
plain name (letters, digits, `.`, `_`, `-`) and check the result lies inside its folder.
Models are loaded once per (path, file modification time) and shared read-only by every session.
The frames a page reads for a model (`model_frames`) are its dataset in the data folder, or where
that is not there its held-out sample (`sample.h5` beside a shipped model).

The Streamlit-free part (folders, names, discovery, torch threads) lives in ``lab_store.py``,
which the Gradio demo shares; it is re-exported here, so pages keep calling ``models.<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app.lab_store import (  # noqa: F401 (re-exported for the pages)
    ENV_TITLES,
    NAME_RE,
    ROOT,
    ModelEntry,
    assets_dir,
    can_train_decoder,
    check_name,
    data_dir,
    dataset_path,
    discover_models,
    env_title,
    has_decoder,
    list_datasets,
    list_runs,
    load_model_readonly,
    run_path,
    runs_dir,
    set_torch_threads,
)
from decoder import DECODER_WEIGHTS
from lewm_core.data.samples import Frames, resolve_frames
from lewm_core.errors import UserError


def models_or_stop(known_task_only: bool = False) -> list[ModelEntry]:
    """The models a page can use; with none, an explanation on the page and `st.stop()`.

    `known_task_only` keeps models whose env is one of `lewm_core.envs.ENV_NAMES` (pages that
    need the simulator: Plan, Surprise).
    """
    from lewm_core.envs import ENV_NAMES

    entries = discover_models()
    if known_task_only:
        entries = [e for e in entries if e.env in ENV_NAMES]
    if not entries:
        kind = "model with a known task" if known_task_only else "model"
        st.info(
            f"No {kind} in {assets_dir()} or {runs_dir()}: train one on the Train page "
            "(its folder needs config.json and model.safetensors)."
        )
        st.stop()
    return entries


# --------------------------------------------------------------------------- frames
def model_frames(loaded) -> Frames | None:
    """The frames the pages read for a loaded model: its dataset, looked up by name in the data
    folder (or at its absolute path), else its held-out sample (`lewm_core.data.samples`); None
    with neither."""
    try:
        return resolve_frames(loaded, data_dir=data_dir())
    except UserError:
        return None


def frames_or_stop(loaded, uses: str) -> Frames:
    """`model_frames(loaded)`, with a caption when they are the model's held-out sample; with
    none, a warning naming both fixes and `st.stop()`. `uses`: what the page does with them."""
    frames = model_frames(loaded)
    stored = loaded.meta.get("data", {}).get("path", "unknown")
    if frames is None:
        st.warning(
            f"The model's dataset is not on disk ({stored}) and the model has no held-out "
            f"sample; {uses}. Put the dataset in {data_dir()}, or make a sample with "
            f"`lewm sample --checkpoint {loaded.path}`."
        )
        st.stop()
    if frames.source == "sample":
        st.caption(
            f":material/info: Frames from the model's held-out sample (`{frames.path.name}`, "
            f"episodes it never trained on): its dataset {stored} is not in {data_dir()}."
        )
    return frames


# --------------------------------------------------------------------------- loading
@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def _load(path: str, mtime: float):
    del mtime  # part of the cache key only: a retrained model is loaded again
    return load_model_readonly(path)


def load_model_cached(path: str | os.PathLike):
    """`lewm_core.world_model.checkpoint.load_model(path)`, cached by path and weights' mtime
    (read-only)."""
    path = Path(path).resolve()
    try:
        mtime = (path / "model.safetensors").stat().st_mtime
    except OSError:
        raise UserError(f"{path} has no model.safetensors; train or ship a model first") from None
    return _load(str(path), mtime)


# --------------------------------------------------------------------------- decoders
@st.cache_resource(max_entries=4, show_spinner="Loading the decoder...")
def _load_decoder(path: str, mtime: float):
    from decoder.train import load_decoder

    del mtime  # cache key only: a retrained decoder is loaded again
    decoder = load_decoder(path)
    for p in decoder.parameters():
        p.requires_grad_(False)  # shared read-only
    return decoder


def load_decoder_cached(path: str | os.PathLike):
    """`decoder.train.load_decoder(path)`, cached by path and weights' mtime (read-only)."""
    path = Path(path).resolve()
    try:
        mtime = (path / DECODER_WEIGHTS).stat().st_mtime
    except OSError:
        raise UserError(f"{path} has no decoder; train one first") from None
    return _load_decoder(str(path), mtime)
