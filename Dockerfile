# The Streamlit lab (app/Home.py) in a container on port 7860, in public mode: a Hugging Face Space
# with `sdk: docker` (`make space OUT=dir SDK=docker`, docs/deploy.md) or any container host.
#   docker build -t lewm-lab . && docker run --rm -p 7860:7860 lewm-lab
# Public mode (LEWM_PUBLIC=1): each visitor works in a scratch folder of their own, deleted when
# they leave; at most LEWM_PUBLIC_JOBS training jobs at once (the rest queue); no developer
# toolbar. `docker run -e LEWM_PUBLIC=0 ...` gives the private lab (data/ and runs/ shared).
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

# Spaces run the container as uid 1000; in public mode the lab writes only to a temporary folder
# (with LEWM_PUBLIC=0: data/ and runs/ under its folder).
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# Dependencies first: this layer is rebuilt only when requirements.txt changes. torch comes
# first from PyTorch's CPU index (a 192 MB wheel against several GB of CUDA wheels from PyPI); its
# version 2.13.0+cpu satisfies requirements.txt's torch==2.13.0 (a Space tree's requirements.txt
# pins torch==2.13.0+cpu itself), so the second install keeps it.
COPY requirements.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -E '^torch==' requirements.txt)" \
    && pip install -r requirements.txt

COPY --chown=user:user . .
USER user
# lewm_core and decoder import from the source tree (background jobs run `python -m lewm_core`).
ENV HOME=/home/user \
    PYTHONPATH=/home/user/app \
    LEWM_PUBLIC=1

EXPOSE 7860
CMD ["streamlit", "run", "app/Home.py", "--server.port", "7860", "--server.address", "0.0.0.0", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false"]
