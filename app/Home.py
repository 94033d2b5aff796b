"""LeWM Lab: the Streamlit router. Run with ``streamlit run app/Home.py``.

Pages live in ``app/views/``; they are registered in ``app/lab_pages.py`` (one line each).
"""

import os

# Must be set before anything imports mujoco (Reacher renders offscreen through EGL).
os.environ.setdefault("MUJOCO_GL", "egl")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import streamlit as st  # noqa: E402

# `streamlit run` puts app/ on sys.path, AppTest does not: the pages import `ui`, `lab_pages`.
# A PaaS that serves the Procfile installs requirements.txt only, so the repository root
# (lewm_core, decoder) is added too.
_APP_DIR = Path(__file__).resolve().parent
for _p in (str(_APP_DIR), str(_APP_DIR.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import lab_public  # noqa: E402
from lab_pages import PAGES  # noqa: E402

st.set_page_config(page_title="LeWM Lab", layout="wide")
page = st.navigation([p.page() for p in PAGES])
lab_public.setup()  # LEWM_PUBLIC=1: a scratch folder per session, no developer toolbar
page.run()
