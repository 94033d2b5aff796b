# Two commands for a fresh machine (Python 3.11 + apt): `make lab` and `make test`.
# A second run skips what is installed: one stamp file tracks the runtime (requirements.txt,
# pyproject.toml), another the test and lint tools (requirements-dev.txt) on top of it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export MUJOCO_GL ?= egl

.PHONY: install install-dev lab test test-all lint format bench assets space docs figures

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

lab: install
	$(BIN)/python -m streamlit run app/Home.py --server.headless true

# A Hugging Face Space as a fresh git repository in OUT (docs/deploy.md says how to push it):
# `make space OUT=../lewm-space`, or SDK=docker for the Streamlit lab in public mode.
SDK ?= gradio
space: install
	$(if $(OUT),,$(error give the folder to write: make space OUT=../lewm-space))
	$(BIN)/python app/space.py $(OUT) --sdk $(SDK)

# The command-line reference, docs/cli.md, written from the parser (a test fails when it is stale).
docs: install-dev
	$(BIN)/python -m lewm_core.cli.reference --out docs/cli.md
	$(BIN)/python -m recipes.figures.results_table

# The figures in docs/figures, made from the shipped models with their captions in
# docs/figures/figures.json (python -m recipes.figures --help: --only, --quick, --push-model).
figures: install-dev
	$(BIN)/python -m recipes.figures --out docs/figures
	$(BIN)/python -m recipes.figures.screenshot --out docs/figures/lab_plan.png
	$(BIN)/python -m recipes.figures.results_table

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The test command CI runs: lint, then every test but those marked slow (the 15 slowest listed).
test: lint
	$(BIN)/python -m pytest -m "not slow" -q --durations=15

test-all: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/envs.py
