"""What the lab and the demo show before anything is computed: the figures that `make figures`
draws (docs/figures/, listed with their captions in docs/figures/figures.json) and the shipped
models' cards.

    figure(name)            the file and caption of one figure, or None when it is not there
    rollout_figure(task)    the precomputed planning rollout of a task (rollout_<task>.gif)
    model_card(folder)      a model folder's MODEL_CARD.md without its YAML metadata block

Nothing here draws or computes: the figures are made by `python -m recipes.figures` from the
shipped models with the library's functions, and the cards by `lewm_core.model_card`. Neither
Streamlit nor Gradio is imported, so both apps share it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lewm_core.folders import CARD_FILE

ROOT = Path(__file__).resolve().parents[1]
FIGURES_DIR = ROOT / "docs" / "figures"
FIGURES_INDEX = "figures.json"  # name -> {file, caption, data}
MAKE_FIGURES = "make figures"  # the command that draws them (python -m recipes.figures)
ARCHITECTURE = "architecture"  # the model and the CEM loop as a diagram
HERO = "rollouts"  # every shipped model planning one task, rollout above goal
ROLLOUT_PREFIX = "rollout_"  # + task: one model planning one task, rollout beside goal
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)


@dataclass(frozen=True)
class Figure:
    """One figure of docs/figures: its name in figures.json, its file and its caption."""

    name: str
    path: Path
    caption: str


def _index(folder: Path) -> dict:
    try:
        index = json.loads((folder / FIGURES_INDEX).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return index if isinstance(index, dict) else {}


def figure(name: str, folder: str | os.PathLike = FIGURES_DIR) -> Figure | None:
    """Figure `name` of `folder`'s figures.json, or None when the index, its entry or the file
    it names is missing (the figures are not made yet)."""
    folder = Path(folder)
    entry = _index(folder).get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return None
    path = folder / entry["file"]
    if not path.is_file():
        return None
    return Figure(name=name, path=path, caption=str(entry.get("caption", "")))


def rollout_figure(task: str, folder: str | os.PathLike = FIGURES_DIR) -> Figure | None:
    """The precomputed rollout of the shipped model of `task` planning one of its tasks."""
    return figure(f"{ROLLOUT_PREFIX}{task}", folder)


def model_card(folder: str | os.PathLike) -> str | None:
    """The Markdown of a model folder's card (MODEL_CARD.md) without the YAML metadata block the
    Hugging Face Hub reads; None when the folder has no card."""
    try:
        text = (Path(folder) / CARD_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return FRONT_MATTER.sub("", text, count=1).lstrip("\n")
