"""The page registry of LeWM Lab: adding a page to the app is one line in ``PAGES``.

``Home.py`` builds the navigation from ``PAGES`` and the Welcome page lists them, so a new page
only needs its module under ``app/views/`` and one ``LabPage`` line here.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class LabPage:
    path: str  # relative to app/ (the main script's folder)
    title: str
    icon: str
    summary: str  # one sentence for the Welcome page
    default: bool = False

    def page(self) -> st.Page:
        return st.Page(self.path, title=self.title, icon=self.icon, default=self.default)


PAGES: tuple[LabPage, ...] = (
    LabPage("views/welcome.py", "Welcome", ":material/home:", "What LeWM is.", default=True),
    LabPage(
        "views/environments.py",
        "Environments",
        ":material/sports_esports:",
        "Drive Two-Room, Push-T and Reacher by hand, set goals and test success.",
    ),
    LabPage(
        "views/data.py",
        "Data",
        ":material/database:",
        "Collect a dataset with a task's data policy and browse its episodes.",
    ),
    LabPage(
        "views/train.py",
        "Train",
        ":material/model_training:",
        "Train a world model in the background and watch its losses and collapse monitor.",
    ),
    LabPage(
        "views/plan.py",
        "Plan",
        ":material/route:",
        "Plan to a goal frame with CEM through a trained model and watch the rollout.",
    ),
    LabPage(
        "views/decode.py",
        "Decode",
        ":material/visibility:",
        "Decode latents to pixels: what the model sees and what it imagines over a rollout.",
    ),
    LabPage(
        "views/latent.py",
        "Latent space",
        ":material/scatter_plot:",
        "Map the latents with t-SNE, probe them for the physical state, measure straightness.",
    ),
    LabPage(
        "views/surprise.py",
        "Surprise",
        ":material/bolt:",
        "Break physics (teleport, colour change) and watch the model's surprise jump.",
    ),
)
