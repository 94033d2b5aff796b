# The Streamlit lab (app/Home.py) in a container on port 7860: a Hugging Face Space with
# `sdk: docker` (README.md says how) or any container host.
#   docker build -t lewm-lab . && docker run --rm -p 7860:7860 lewm-lab
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl

# MuJoCo (Reacher) renders offscreen through EGL with Mesa.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libegl1 libgl1-mesa-dri libegl-mesa0 \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as uid 1000; the lab writes data/ and runs/ under its folder.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# Dependencies first: this layer is rebuilt only when requirements.txt changes. torch comes
# first from PyTorch's CPU index (about 200 MB against several GB of CUDA wheels from PyPI);
# its version 2.13.0+cpu satisfies requirements.txt's torch==2.13.0, so the second install
# keeps it.
COPY requirements.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -E '^torch==' requirements.txt)" \
    && pip install -r requirements.txt

COPY --chown=user:user . .
USER user
# lewm_core and decoder import from the source tree (background jobs run `python -m lewm_core`).
ENV HOME=/home/user \
    PYTHONPATH=/home/user/app

EXPOSE 7860
CMD ["streamlit", "run", "app/Home.py", "--server.port", "7860", "--server.address", "0.0.0.0", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false"]
