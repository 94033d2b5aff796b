"""Welcome: what LeWorldModel is, what it does (the shipped models planning, the diagram) and
which pages the lab has."""

import streamlit as st

from app import models, ui
from app.lab_pages import PAGES
from app.showcase import ARCHITECTURE, FIGURES_DIR, HERO, MAKE_FIGURES, ROOT, figure
from lewm_core.envs import ENV_NAMES

st.title("LeWM Lab")
st.markdown(
    "An interactive lab over **LeWorldModel (LeWM)**, a small world model that learns the "
    "dynamics of a task straight from pixels and then plans with it."
)

hero = figure(HERO)
if hero is not None:
    st.image(str(hero.path), caption=hero.caption)

left, right = st.columns(2)
with left:
    st.subheader("The model")
    st.markdown(
        """
- **JEPA, not a pixel predictor.** An encoder maps each frame to one 192-d embedding (a
  ViT-Tiny in the paper; a small CNN in the `lab` preset that the shipped models and the
  Train page use, so that it trains in minutes on a laptop's CPU); a predictor, conditioned
  on the actions, predicts the **next frame's embedding**.
  The loss is the squared error between predicted and actual next embeddings: no pixel
  reconstruction, no target network, no stop-gradient.
- **SIGReg keeps it from collapsing.** Predicting embeddings alone would be solved by mapping
  every frame to the same point. SIGReg (a sketched isotropic Gaussian regulariser) pushes the
  batch of embeddings, seen along many random directions, towards a standard Gaussian.
- **Planning with CEM.** To reach a goal image, the planner encodes the goal, samples action
  sequences, rolls them out *in embedding space* with the predictor, keeps the ones whose final
  embedding lands closest to the goal's, refits and repeats (cross-entropy method); it executes
  the plan, then replans (model-predictive control).
"""
    )
with right:
    st.subheader("The pages")
    for page in PAGES:
        if page.default:
            continue
        st.page_link(page.path, label=page.title, icon=page.icon)
        st.caption(page.summary)
    st.caption("Use the sidebar to move between pages.")

diagram = figure(ARCHITECTURE)
if diagram is not None:
    st.image(str(diagram.path), caption=diagram.caption)

shipped = {entry.env for entry in models.discover_models() if entry.source == "shipped"}
with_model = [models.env_title(name) for name in ENV_NAMES if name in shipped]
without_model = [models.env_title(name) for name in ENV_NAMES if name not in shipped]
figures_at = FIGURES_DIR.relative_to(ROOT)
assets = models.assets_dir().resolve()
assets_at = assets.relative_to(ROOT) if assets.is_relative_to(ROOT) else assets
ui.explainer(
    f"""
The pictures on this page are drawn from the shipped models by `{MAKE_FIGURES}` (`{figures_at}/`,
captions in `{figures_at}/figures.json`). Every number shown elsewhere in the lab is computed by
the project's `lewm_core` package (environments, model, training, planning); the app only
displays it. The tasks are **Two-Room** (a point agent passes a door to a target), **Push-T**
(push a T-shaped block onto a target pose, with the paper's physics, success test and pictures),
**Reacher** (a two-joint arm reaches a point) and **Cube** (a robot arm picks up a cube and places
it at a goal, in 3-D); **Push-T v0** is the lab's first Push-T (other physics and data), kept
with its model to compare.
Shipped models (`{assets_at}`): {", ".join(with_model) or "none"}.
"""
    + (
        f"No shipped model has learned {', '.join(without_model)}: the Train page trains one."
        if without_model
        else ""
    )
)
