"""The LeWM paper this library implements: how to cite it and the figures ours are set beside.

Maes, Le Lidec, Scieur, LeCun, Balestriero, "LeWorldModel: Stable End-to-End Joint-Embedding
Predictive Architecture from Pixels", 2026, arXiv 2603.19312. The model cards
(`lewm_core.model_card`) link it, cite it and put each shipped model's planning success beside
the paper's for the same task.
"""

from __future__ import annotations

ARXIV_ID = "2603.19312"
ARXIV_URL = f"https://arxiv.org/abs/{ARXIV_ID}"
TITLE = "LeWorldModel: Stable End-to-End Joint-Embedding Predictive Architecture from Pixels"
AUTHORS = ("Lucas Maes", "Quentin Le Lidec", "Damien Scieur", "Yann LeCun", "Randall Balestriero")
YEAR = 2026

# The paper's planning success (%) of LeWM per task, by the name of the lab's env for it (the
# paper's table of planning results: 50 episodes per task, goal 25 steps ahead, budget 50 steps).
# Its Push-T is `pusht-v1`; the lab's v0 `pusht` is set beside the same figure, with a note.
PLANNING_SUCCESS: dict[str, int] = {
    "tworoom": 87,
    "reacher": 86,
    "pusht-v1": 96,
    "pusht": 96,
    "cube": 74,
}
# The paper's random policy on the same tasks (%), by the same env names.
RANDOM_POLICY_SUCCESS: dict[str, int] = {
    "tworoom": 0,
    "reacher": 10,
    "pusht-v1": 2,
    "pusht": 2,
    "cube": 48,
}
# What a card adds beside the figure where the paper's task is not quite the env compared.
TASK_NOTES: dict[str, tuple[str, ...]] = {
    "pusht": (
        "The paper's Push-T is the lab's `pusht-v1`; this model learned `pusht`, the lab's v0 "
        "Push-T, whose physics, pictures and data differ (docs/pusht.md).",
    ),
}


def short_authors() -> str:
    """The authors' surnames, as a card names them: "Maes, Le Lidec, ..., Balestriero"."""
    return ", ".join(name.split(" ", 1)[1] for name in AUTHORS)


def bibtex() -> str:
    """The paper's BibTeX entry (arXiv preprint)."""
    authors = " and ".join(f"{name.split(' ', 1)[1]}, {name.split(' ', 1)[0]}" for name in AUTHORS)
    return (
        "@misc{maes2026leworldmodel,\n"
        f"  title = {{{TITLE}}},\n"
        f"  author = {{{authors}}},\n"
        f"  year = {{{YEAR}}},\n"
        f"  eprint = {{{ARXIV_ID}}},\n"
        "  archivePrefix = {arXiv},\n"
        f"  url = {{{ARXIV_URL}}}\n"
        "}"
    )
