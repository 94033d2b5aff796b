"""The README is a landing page: short, every picture and link it shows exists, and its
citation is the one the model cards use (`lewm_core.paper`)."""

from __future__ import annotations

import re

from lewm_testing import ROOT

from lewm_core import paper

README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target)


def test_every_relative_link_and_picture_exists():
    text = README.read_text()
    targets = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://"))]
    assert any(t.startswith("docs/figures/") for t in targets)  # it shows pictures
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []


def test_citation_is_the_papers_entry():
    block = re.search(r"```bibtex\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    assert block.group(1).strip() == paper.bibtex()


def test_it_stays_a_landing_page():
    text = README.read_text()
    assert len(text.split()) <= 1400
    assert "make lab" in text and "make test" in text  # the two commands, and CI's
    assert text.index("make lab") < text.index("## Results at a glance")


def test_results_block_is_current_and_reads_eval_json(tmp_path, monkeypatch):
    """The README's results block is what `python -m recipes.figures.results_table` writes from
    the shipped models; a changed eval.json changes its cell (and a stale README fails)."""
    import json

    from recipes.figures import results_table
    from recipes.figures.common import MODELS, TASK_MODELS

    block = results_table.results_block()
    assert block in README.read_text(), "stale: run python -m recipes.figures.results_table"
    folders = []
    for name in TASK_MODELS:
        copy = tmp_path / name
        copy.mkdir()
        for f in (MODELS / name).iterdir():
            if f.is_file():
                (copy / f.name).symlink_to(f)
        folders.append(copy)
    evals = json.loads((MODELS / "reacher" / "eval.json").read_text())
    for row in evals.values():
        row["success_rate"] = 0.3
        row.pop("success_ci95", None)
    (tmp_path / "reacher" / "eval.json").unlink()
    (tmp_path / "reacher" / "eval.json").write_text(json.dumps(evals))
    changed = results_table.results_block(folders)
    shipped_row = next(line for line in changed.splitlines() if "the shipped planner" in line)
    assert shipped_row.split(" | ")[2] == "30 (19-44)"  # Reacher's cell: 15 of 50, Wilson 95%
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text().replace(block, changed))
    assert results_table.main(["--readme", str(stale), "--check"]) == 1
    assert results_table.main(["--readme", str(README), "--check"]) == 0


def test_scale_counts_the_episodes_of_every_training_stage(tmp_path):
    """A model trained further on extra episodes (config.json lineage) counts its data file's
    and each extra file's episodes once; without a lineage, its data file's alone."""
    import json

    from recipes.figures import results_table
    from recipes.figures.common import MODELS

    config = json.loads((MODELS / "pusht-v1" / "config.json").read_text())
    own = config["data"]["recipe"]["num_episodes"]
    extra = {"path": "data/more.h5", "num_episodes": 7, "num_steps": 70, "seed": 3}
    stage = {"run": "b", "steps": 1, "wall_s": 1.0, "data": config["data"]["path"]}
    config["lineage"] = [
        {**stage, "run": "a", "extra_data": []},
        {**stage, "extra_data": [extra]},
        {**stage, "run": "c", "extra_data": [extra]},  # the same file again: counted once
    ]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert results_table._training_episodes(tmp_path) == own + 7
    config.pop("lineage")
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert results_table._training_episodes(tmp_path) == own
