"""`make figures` at the quick budget (`python -m recipes.figures --quick`): every figure is
written, opens as an image of a sensible size and is listed in figures.json with its caption;
the bars of the paper-vs-ours figure are the numbers of the models' eval.json files and move
when those numbers do; a figure made again is the same file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lewm_core.paper import PLANNING_SUCCESS
from recipes.figures.__main__ import main
from recipes.figures.common import INDEX_FILE, MODELS

ENVS = ("tworoom", "reacher", "pusht-v1", "cube")  # the paper's order of tasks (its Push-T)
EXPECTED = {
    "rollouts",
    *(f"rollout_{env}" for env in ENVS),
    # every other shipped model gets its rollout too (the demo shows one per task)
    *(f"rollout_{p.name}" for p in MODELS.iterdir() if (p / "model.safetensors").is_file()),
    "architecture",
    "paper_vs_ours",
    "cem_budget",
    "collapse",
    "surprise",
    "tsne",
    "failed_push",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("figures")
    main(["--out", str(out), "--quick"])
    return out, json.loads((out / INDEX_FILE).read_text())


def test_every_figure_is_an_image_listed_with_its_caption(made) -> None:
    out, index = made
    assert set(index) == EXPECTED
    on_disk = sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".gif"))
    assert sorted(e["file"] for e in index.values()) == on_disk
    for name, entry in index.items():
        path = out / entry["file"]
        assert path.stat().st_size < 500_000, name
        with Image.open(path) as image:
            assert 150 <= image.width <= 2000 and 150 <= image.height <= 1200, name
            if path.suffix == ".gif":
                assert image.n_frames > 1, name
        assert len(entry["caption"]) > 80 and "\n" not in entry["caption"], name
    assert "CEM 8 samples x 2 iterations" in index["rollouts"]["caption"]  # the budget is said


def _planner(row: dict) -> tuple:
    """An eval.json row's planner: sampling, context, objective, blocks executed (the values
    `lewm eval` used where an older row leaves them out)."""
    cem = row["cem"]
    return (
        row["sampling"],
        cem.get("context", 1),
        cem.get("objective", "last"),
        cem.get("receding_horizon", cem["horizon"]),
    )


def _rows_on_training_file(folder: Path) -> list[dict]:
    """The eval.json rows of tasks from the model's own dataset (the paper's protocol); a row
    that names no file is one. pusht-v1 also has rows of a held-out file."""
    config = json.loads((folder / "config.json").read_text())
    own = Path(config["data"]["path"]).name
    rows = json.loads((folder / "eval.json").read_text()).values()
    return [r for r in rows if Path(r.get("data", own)).name == own]


def _shipped_success(folder: Path) -> float:
    """The success (%) of the model's shipped planner, from its eval.json and config.json."""
    p = json.loads((folder / "config.json").read_text())["planning"]
    want = (p["sampling"], p.get("context", 1), p["objective"], p["receding_horizon"])
    (row,) = [r for r in _rows_on_training_file(folder) if _planner(r) == want]
    return 100 * row["success_rate"]


def test_the_bars_are_the_numbers_of_eval_json_and_the_paper(made) -> None:
    _, index = made
    drawn = index["paper_vs_ours"]["data"]["drawn"]
    assert drawn["paper"] == [PLANNING_SUCCESS[env] for env in ENVS]
    assert drawn["shipped"] == pytest.approx([_shipped_success(MODELS / env) for env in ENVS])
    independent = []
    for env in ENVS:
        rows = _rows_on_training_file(MODELS / env)
        (row,) = [r for r in rows if _planner(r) == ("independent", 1, "last", 5)]
        independent.append(100 * row["success_rate"])
    assert drawn["published_independent"] == pytest.approx(independent)


def test_a_bar_moves_with_its_eval_json_and_a_figure_made_again_is_the_same(
    made, tmp_path: Path
) -> None:
    out, index = made
    push = tmp_path / "pusht-v1"
    push.mkdir()
    for f in (MODELS / "pusht-v1").iterdir():  # the weights and frames linked, the rest copied
        if f.suffix in (".safetensors", ".h5"):
            (push / f.name).symlink_to(f)
        else:
            shutil.copy(f, push / f.name)
    evals = json.loads((push / "eval.json").read_text())
    config = json.loads((push / "config.json").read_text())
    own = Path(config["data"]["path"]).name
    p = config["planning"]
    held_out = 0
    for row in evals.values():
        if _planner(row) == (p["sampling"], 1, p["objective"], p["receding_horizon"]):
            # the training file's row is drawn; the same planner's held-out row is not
            on_own = Path(row["data"]).name == own
            held_out += not on_own
            row["success_rate"] = 0.3 if on_own else 0.1
            del row["success_ci95"]  # the figure computes the Wilson interval of the counts
    assert held_out == 1
    (push / "eval.json").write_text(json.dumps(evals))
    again = tmp_path / "again"
    shutil.copytree(out, again)
    main(["--out", str(again), "--only", "paper_vs_ours", "--only", "architecture"])
    main(["--out", str(again), "--only", "paper_vs_ours", "--push-model", str(push), "--quick"])
    new = json.loads((again / INDEX_FILE).read_text())
    assert set(new) == EXPECTED  # the other figures' entries stay
    assert new["paper_vs_ours"]["data"]["drawn"]["shipped"][ENVS.index("pusht-v1")] == 30.0
    others = [i for i, env in enumerate(ENVS) if env != "pusht-v1"]
    old_bars, new_bars = (d["paper_vs_ours"]["data"]["drawn"]["shipped"] for d in (index, new))
    assert [new_bars[i] for i in others] == [old_bars[i] for i in others]
    assert (again / "architecture.png").read_bytes() == (out / "architecture.png").read_bytes()


def test_rows_of_one_file_match_by_name_whatever_path_recorded_them() -> None:
    """`row_of` and `other_files` tell files apart by one rule: a row recorded as
    `../data/x.h5` is the training file `data/x.h5`, the held-out `data/x-test.h5` is not."""
    from recipes.figures.results import other_files, row_of, row_settings

    def row(data: str, rate: float, episodes: int = 50) -> dict:
        cem = {"context": 1, "objective": "last", "receding_horizon": 5, "horizon": 5}
        return {"data": data, "success_rate": rate, "episodes": episodes, "sampling": "block",
                "cem": cem}  # fmt: skip

    evals = {
        "a": row("/runs/elsewhere/../data/x.h5", 0.7),
        "b": row("data/x-test.h5", 0.5, episodes=200),
        "c": row("data/x.h5", 0.6, episodes=20),
    }
    settings = row_settings(evals["a"])
    drawn = row_of(evals, settings, data="data/x.h5")
    assert drawn is evals["a"]  # its own file first, then the most episodes
    assert other_files(evals, settings, drawn) == [evals["b"]]
    assert row_of(evals, settings, data="x-test.h5") is evals["b"]
