"""LeWM Lab: the Streamlit router. Run with ``make lab``, or from the repository root
``python -m streamlit run app/Home.py`` (``app``, ``lewm_core`` and ``decoder`` import as packages).

Pages live in ``app/views/``; they are registered in ``app/lab_pages.py`` (one line each).
"""

import os

# Must be set before anything imports mujoco (Reacher renders offscreen through EGL).
os.environ.setdefault("MUJOCO_GL", "egl")

import streamlit as st  # noqa: E402

from app import lab_public  # noqa: E402
from app.lab_pages import PAGES  # noqa: E402

st.set_page_config(page_title="LeWM Lab", layout="wide")
page = st.navigation([p.page() for p in PAGES])
lab_public.setup()  # LEWM_PUBLIC=1: a scratch folder per session, no developer toolbar
page.run()
