"""Model cards as Hugging Face model cards: the YAML metadata the Hub reads, the sections in the
Hub's order, the limitations computed from the probes and the paper's figure, the citation, and
a "How to get started" snippet that runs on the shipped models as printed.

Cards are written from the real shipped folders (copied where a card is written) or from their
config.json with probe and evaluation results built here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml  # PyYAML, installed with gradio
from lewm_testing import ROOT

from lewm_core import paper
from lewm_core.model_card import (
    LOW_PROBE_R,
    card_metadata,
    get_started_code,
    low_probe_quantities,
    model_card,
    write_card,
)
from lewm_core.world_model.checkpoint import load_model

ASSETS = ROOT / "assets" / "models"
ENVS = ("tworoom", "pusht", "reacher", "cube")
SECTIONS = (  # the Hub's template order
    "## Model details",
    "## Uses",
    "## Limitations",
    "## How to get started",
    "## Training details",
    "## Evaluation",
    "## Citation",
)
TINY_CEM = "cem_config(samples=8, elites=2, iterations=2)"


def front_matter(card: str) -> dict:
    """The card's YAML metadata block, parsed; fails unless the card starts with one."""
    m = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert m, card[:200]
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict)
    return meta


def section(card: str, heading: str) -> str:
    """The text of a `## ` section, up to the next `## ` heading."""
    start = card.index(heading + "\n")
    end = card.find("\n## ", start + len(heading))
    return card[start : end if end >= 0 else len(card)]


def shipped_config(env: str = "tworoom") -> dict:
    return json.loads((ASSETS / env / "config.json").read_text())


def evaluation(sampling: str, success: float, ci: tuple[float, float], **cem) -> dict:
    """A `lewm eval --json` result's fields that a card reads."""
    return {
        "sampling": sampling,
        "episodes": 50,
        "success_rate": success,
        "success_ci95": list(ci),
        "random_success_rate": 0.1,
        "plan_ms_median": 1500.0,
        "cem": {"samples": 300, "iterations": 30, **cem},
    }


# --------------------------------------------------------------------------- the shipped cards
@pytest.mark.parametrize("env", ENVS)
def test_shipped_card_has_the_hubs_metadata_and_sections(env: str):
    card = (ASSETS / env / "MODEL_CARD.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "pytorch" and meta["license"] == "mit"
    assert {"world-model", "jepa", "lewm", "model-based-planning", env} <= set(meta["tags"])
    assert "pipeline_tag" not in meta
    positions = [card.index(f"\n{heading}\n") for heading in SECTIONS]
    assert positions == sorted(positions), "sections out of the Hub's order"
    assert paper.ARXIV_URL in section(card, "## Model details")
    # the paper's figure for the task beside ours, in every row of the planning table
    rows = [line for line in section(card, "## Evaluation").splitlines() if "| 300x30 |" in line]
    assert rows and all(f"| {paper.PLANNING_SUCCESS[env]}% |" in row for row in rows)


def test_license_is_pyprojects():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert front_matter(card_metadata("tworoom"))["license"] == project["license"]["text"].lower()


@pytest.mark.parametrize("env", ENVS)
def test_shipped_limitations_name_every_low_probe(env: str):
    """Each shipped card's Limitations name exactly the quantities of its probe.json whose linear
    r is below the threshold (Push-T's block angle among them), and no other."""
    card = (ASSETS / env / "MODEL_CARD.md").read_text()
    limits = section(card, "## Limitations")
    probe = json.loads((ASSETS / env / "probe.json").read_text())
    low = low_probe_quantities(probe)
    for name, m in probe["linear"].items():
        assert (f"**{name}**" in limits) == (m["r"] < LOW_PROBE_R), name
    if env == "pusht":
        assert (
            "block_angle" in low and f"**block_angle** (r {low['block_angle']['r']:.2f}" in limits
        )


# --------------------------------------------------------------------------- built results
def test_limitations_list_low_probes_not_high_ones():
    config = shipped_config()
    probe = {
        "linear": {
            "block_pos": {"r": 0.998},
            "block_angle": {"r": 0.22},
            "agent_vel": {"r": 0.13},
            "edge": {"r": LOW_PROBE_R},  # at the threshold: known
            "under": {"r": LOW_PROBE_R - 0.01},
        },
        "mlp": {"block_angle": {"r": 0.21}},
    }
    limits = section(model_card(config, {}, {}, 10, probe=probe), "## Limitations")
    assert "**block_angle** (r 0.22; MLP 0.21)" in limits
    assert "**agent_vel** (r 0.13; MLP -)" in limits and "**under**" in limits
    assert "block_pos" not in limits and "**edge**" not in limits
    assert f"below {LOW_PROBE_R}" in limits and "no velocity" in limits
    known = {"linear": {"agent_pos": {"r": 0.99}}}
    limits = section(model_card(config, {}, {}, 10, probe=known), "## Limitations")
    assert "Every probed quantity (agent_pos)" in limits and "does not know" not in limits
    limits = section(model_card(config, {}, {}, 10), "## Limitations")
    assert "has not been measured yet" in limits and "not been evaluated yet" in limits


def test_limitations_and_table_set_planning_beside_the_papers_figure():
    config = shipped_config()  # Two-Room: the paper reports 87%
    figure = paper.PLANNING_SUCCESS["tworoom"]
    assert figure == 87
    evals = {
        "block, min objective, execute 2": evaluation(
            "block", 0.88, (0.76, 0.94), context=1, objective="min", receding_horizon=2
        ),
        "block": evaluation("block", 0.78, (0.65, 0.87)),
        "independent": evaluation("independent", 0.42, (0.29, 0.56)),
    }
    card = model_card(config, {}, evals, 10)
    limits = section(card, "## Limitations")
    assert "below the paper's 87% for LeWM on Two-Room" in limits
    assert "78% with planner `block` (95% CI 65%-87%)" in limits
    assert "42% with planner `independent` (95% CI 29%-56%, below the figure)" in limits
    assert "88%" not in limits, "a planner at or above the figure is no limitation"
    assert "A plan takes 1.5 s (median of the default planner" in limits
    table = section(card, "## Evaluation")
    assert "| 95% CI | paper's LeWM | random policy |" in table
    assert "| 88% | 76%-94% | 87% | 10% |" in table
    # an env the paper has no figure for: no column, no comparison
    assert paper.PLANNING_SUCCESS["pusht-v1"] == paper.PLANNING_SUCCESS["pusht"] == 96
    other = {**config, "data": {**config["data"], "env": "elsewhere"}}
    card = model_card(other, {}, evals, 10)
    assert "paper's LeWM" not in card and "below the paper's" not in card


def test_citation_is_the_papers_bibtex():
    card = (ASSETS / "tworoom" / "MODEL_CARD.md").read_text()
    block = re.search(r"```bibtex\n(.*?)\n```", section(card, "## Citation"), re.S)
    assert block and block.group(1) == paper.bibtex()
    entry = block.group(1)
    assert entry.count("{") == entry.count("}")
    assert f"eprint = {{{paper.ARXIV_ID}}}" in entry and "year = {2026}" in entry
    assert "Maes, Lucas and Le Lidec, Quentin and Scieur, Damien and LeCun, Yann and " in entry


# --------------------------------------------------------------------------- the snippet runs
def run_snippet(card: str, capsys: pytest.CaptureFixture) -> str:
    """Run the card's "How to get started" Python with a tiny CEM budget; its printed line."""
    code = re.search(r"```python\n(.*?)```", section(card, "## How to get started"), re.S)
    assert code, "no python block"
    text = code.group(1)
    assert text.count("cem_config()") == 1
    capsys.readouterr()
    exec(compile(text.replace("cem_config()", TINY_CEM), "MODEL_CARD.md", "exec"), {})
    return capsys.readouterr().out.strip()


@pytest.mark.parametrize("env", ENVS)
def test_get_started_snippet_plans_on_the_shipped_model(env, tmp_path, monkeypatch, capsys):
    """The snippet of a card written from the shipped folder loads the model and plans from a
    start image of its sample to a goal image 25 steps later."""
    copy = tmp_path / env
    shutil.copytree(ASSETS / env, copy)
    monkeypatch.chdir(tmp_path)  # the card is written where the model's dataset is not
    card = write_card(copy).read_text()
    assert f'load_model("assets/models/{env}")' in card and "sample.h5" in card
    monkeypatch.chdir(ROOT)  # the snippet runs from the repository's root
    printed = run_snippet(card, capsys)
    cfg = load_model(ASSETS / env).config
    shape, cost = re.fullmatch(r"(\(\d+, \d+\)) (\S+)", printed).groups()
    assert shape == str((5 * cfg.frameskip, cfg.action_dim))  # CEM's horizon of 5 blocks
    assert math.isfinite(float(cost))


def test_get_started_snippet_without_a_sample_plans_between_env_frames(
    tmp_path: Path, monkeypatch, capsys
):
    """A model folder without a sample: the snippet takes its two frames from the env."""
    copy = tmp_path / "tworoom"
    shutil.copytree(ASSETS / "tworoom", copy, ignore=shutil.ignore_patterns("sample.*"))
    monkeypatch.chdir(tmp_path)
    card = write_card(copy).read_text()
    assert "sample.h5" not in card and get_started_code("tworoom", False, 64) in card
    monkeypatch.chdir(ROOT)
    printed = run_snippet(card, capsys)
    assert printed.startswith("(25, 2) ")


def test_training_details_name_the_machine_of_the_summary():
    config = shipped_config()
    summary = {"steps": 3, "wall_s": 1.5, "machine": "Some CPU; x86_64; 2 cores"}
    details = section(model_card(config, summary, {}, 10), "## Training details")
    assert "wall time 1.5 s on Some CPU; x86_64; 2 cores." in details
    unknown = section(
        model_card(config, {"steps": 3, "wall_s": 1.5}, {}, 10), "## Training details"
    )
    assert "on the machine that trained it." in unknown and "this machine" not in unknown


def test_evaluations_of_one_planner_on_other_tasks_get_their_own_rows():
    from lewm_core.shipping import eval_label

    base = {"sampling": "independent", "cem": {}, "source": "dataset", "split": "all"}
    train = {**base, "data": "data/pusht-v1.h5", "goal_at_start": "not-counted"}
    test = {**base, "data": "data/pusht-v1-test.h5", "goal_at_start": "not-counted"}
    held_out = {"sampling": "independent", "cem": {}, "source": "dataset", "split": "val"}
    labels = {eval_label(e, "x") for e in (train, test, held_out)}
    assert len(labels) == 3 and "independent" in labels
    assert "independent, all of pusht-v1-test.h5, start not counted" in labels
