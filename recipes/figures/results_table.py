"""The README's "Results at a glance", written from the shipped models' own files.

    python -m recipes.figures.results_table            # rewrite the block in README.md
    python -m recipes.figures.results_table --check    # exit 1 when the README's block is stale

The block between `<!-- results:start -->` and `<!-- results:end -->` holds the scale of the
shipped models (parameters, input size, episodes and training minutes, from config.json,
train_summary.json and the weights) and the planning table: the paper's LeWM
(`lewm_core.paper`), ours with the paper's planner (independent sampling, `results.PUBLISHED`),
ours with each model's shipped planner (config.json's `planning`), and the random policy on the
same tasks, each from eval.json's row on the model's own dataset (`results.row_of`), with its
95% interval. `make figures` and `make docs` run it; `tests/test_readme.py` fails when it is
stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lewm_core.folders import EVAL_FILE
from lewm_core.paper import PLANNING_SUCCESS, RANDOM_POLICY_SUCCESS
from lewm_core.world_model.checkpoint import PlanningDefaults
from recipes.figures.common import MODELS, ROOT, TASK_MODELS, config_of, title_of
from recipes.figures.results import (
    PUBLISHED,
    interval,
    other_files,
    read_json,
    row_of,
    training_file,
)

START, END = "<!-- results:start -->", "<!-- results:end -->"
README = ROOT / "README.md"


def _percent(row: dict | None) -> str:
    """ "78 (65-87)": a row's success with its 95% interval, "-" without a row."""
    if row is None:
        return "-"
    lo, hi = interval(row)
    return f"{100 * row['success_rate']:.0f} ({lo:.0f}-{hi:.0f})"


def _training_minutes(folder: Path) -> float:
    """Wall minutes of the model's training, its earlier runs (config.json lineage) included."""
    lineage = config_of(folder).get("lineage") or []
    if lineage:
        return sum(step["wall_s"] for step in lineage) / 60
    return read_json(folder / "train_summary.json")["total_wall_s"] / 60


def _training_episodes(folder: Path) -> int:
    """Episodes the model was trained on: its data file's and every extra file's of its stages
    (config.json lineage), each file counted once."""
    config = config_of(folder)
    files = {config["data"]["path"]: config["data"]["recipe"]["num_episodes"]}
    for stage in config.get("lineage") or []:
        files.update({extra["path"]: extra["num_episodes"] for extra in stage["extra_data"]})
    return sum(files.values())


def _parameters(folder: Path) -> int:
    """The model's parameter count, read from its weights' shapes (BatchNorm statistics and
    other buffers excluded, as `lewm model-info` counts)."""
    from lewm_core.world_model.checkpoint import load_model
    from lewm_core.world_model.model import parameter_counts

    return parameter_counts(load_model(folder).model)["params_total"]


def scale_words(folders: list[Path]) -> str:
    """One sentence on what the shipped models are, from their files."""
    configs = [config_of(f) for f in folders]
    presets = sorted({c["train"].get("preset") or "custom" for c in configs})
    params = sorted({_parameters(f) for f in folders})
    sizes = sorted({c["model"]["image_size"] for c in configs})
    encoders = sorted({c["model"]["encoder"].upper() for c in configs})
    episodes = sorted({_training_episodes(f) for f in folders})
    minutes = [_training_minutes(f) for f in folders]

    def span(values: list, unit: str = "") -> str:
        words = list(dict.fromkeys(f"{v:,}{unit}" for v in values))  # sorted, once each
        return words[0] if len(words) == 1 else f"{words[0]} to {words[-1]}"

    return (
        f"The shipped models are the {' / '.join(f'`{p}`' for p in presets)} preset: "
        f"**{span([round(p / 1e5) / 10 for p in params], 'M')} parameters, "
        f"a {'/'.join(encoders)} at {span(sizes)} px, {span(episodes)} episodes per task, "
        f"{min(minutes):.0f} to {max(minutes):.0f} minutes of training on 2 CPU cores**."
    )


def table_lines(folders: list[Path]) -> list[str]:
    """The planning table: one column per task, one row per planner (and the random policy)."""
    header = ["", *(title_of(f) for f in folders)]
    rows = {
        "LeWM, paper": [],
        "ours, the paper's planner (independent sampling)": [],
        "ours, the shipped planner (chosen on seeds 1-2)": [],
        "random policy, ours (paper)": [],
    }
    settings, held_out = [], []
    for folder in folders:
        config = config_of(folder)
        env = config["data"]["env"]
        evals = read_json(folder / EVAL_FILE)
        data = training_file(config)
        planning = PlanningDefaults(**config.get("planning", {}))
        shipped = row_of(evals, planning, data)
        figure = PLANNING_SUCCESS.get(env)
        rows["LeWM, paper"].append("-" if figure is None else str(figure))
        rows["ours, the paper's planner (independent sampling)"].append(
            _percent(row_of(evals, PUBLISHED, data))
        )
        rows["ours, the shipped planner (chosen on seeds 1-2)"].append(_percent(shipped))
        ours = "-" if shipped is None else f"{100 * shipped['random_success_rate']:.0f}"
        theirs = RANDOM_POLICY_SUCCESS.get(env)
        rows["random policy, ours (paper)"].append(ours if theirs is None else f"{ours} ({theirs})")
        settings.append(f"{title_of(folder)}: {planner_words(planning)}")
        for other in other_files(evals, planning, shipped):
            held_out.append(
                f"{title_of(folder)} {_percent(other)} of {other['episodes']} tasks from "
                f"`{Path(other['data']).name}` (random policy "
                f"{100 * other['random_success_rate']:.0f})"
            )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows.items()]
    lines += ["", "Shipped planners: " + "; ".join(settings) + "."]
    if held_out:
        lines += [
            "",
            "The shipped planner on a file of episodes the model was not trained on: "
            + "; ".join(held_out)
            + ".",
        ]
    return lines


def planner_words(p: PlanningDefaults) -> str:
    """ "block sampling, 3 frames, min objective, 2 blocks executed" (the paper's: independent,
    1 frame, last, 5)."""
    if p == PUBLISHED:
        return "the paper's"
    frames = "1 frame" if p.context == 1 else f"{p.context} frames"
    return (
        f"{p.sampling} sampling, {frames}, {p.objective} objective, "
        f"{p.receding_horizon} blocks executed"
    )


def results_block(folders: list[Path] | None = None) -> str:
    """The README's block, markers included."""
    folders = folders or [MODELS / name for name in TASK_MODELS]
    body = [
        START,
        scale_words(folders) + " Planning success over 50 episodes (%, 95% intervals):",
        "",
        *table_lines(folders),
        END,
    ]
    return "\n".join(body)


def replace_block(text: str, block: str) -> str:
    """`text` with its results block replaced by `block` (ValueError without the markers)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} block")
    return text[:start] + block + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m recipes.figures.results_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--readme", type=Path, default=README, help="the file holding the block")
    p.add_argument("--check", action="store_true", help="exit 1 when the block is stale")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    new = replace_block(text, results_block())
    if args.check:
        if new != text:
            print(f"{args.readme} is stale: run python -m recipes.figures.results_table")
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
