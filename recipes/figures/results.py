"""The paper's planning success beside ours, per task, with 95% intervals.

Ours is read from each model's eval.json (`lewm eval --json` results, one per planner setting):
the row of the published planner (independent sampling, one frame of context, the last
predicted latent scored, every planned block executed) and the row of the model's shipped
planner (config.json's `planning`). A row names its settings in `cem`; settings an older row
leaves out are the ones `lewm eval` used then: context 1, the last latent, the whole horizon
executed (as `lewm_core.shipping.eval_label` reads them). The paper's figures are
`lewm_core.paper.PLANNING_SUCCESS`, with its notes where the paper's task is not quite the env
compared (`TASK_NOTES`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lewm_core.folders import EVAL_FILE
from lewm_core.paper import ARXIV_ID, PLANNING_SUCCESS, TASK_NOTES
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import wilson_interval
from lewm_core.world_model.checkpoint import PlanningDefaults
from recipes.figures.common import Run, config_of, save_png, title

# The planner of the paper: CEMConfig's published values (one observed frame, the last predicted
# latent scored, every planned block executed), its sampling "independent" (the lab's default
# sampling, "block", is not the paper's). REPRODUCTION.md sets the paper's figure beside this
# planner with each model's own sampling, and with independent sampling too.
PUBLISHED = PlanningDefaults(
    sampling="independent",
    context=CEMConfig.context,
    objective=CEMConfig.objective,
    receding_horizon=CEMConfig.receding_horizon,
)
KINDS = ("paper", "published", "published_independent", "shipped")
LABELS = {
    "paper": "paper (LeWM)",
    "published": "ours, published planner, the model's sampling",
    "published_independent": "ours, published planner, independent sampling",
    "shipped": "ours, shipped planner",
}
COLOURS = {
    "paper": "0.65",
    "published": "#4c78a8",
    "published_independent": "#9ecae9",
    "shipped": "#f58518",
}


def read_json(path: Path) -> dict:
    """A JSON file's object ({} when the file is absent)."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def row_settings(row: dict) -> PlanningDefaults:
    """The planner settings an eval.json row was evaluated with."""
    cem = row.get("cem", {})
    return PlanningDefaults(
        sampling=row.get("sampling", CEMConfig.sampling),
        context=cem.get("context", CEMConfig.context),
        objective=cem.get("objective", CEMConfig.objective),
        receding_horizon=cem.get("receding_horizon", cem.get("horizon", CEMConfig.horizon)),
    )


def row_of(evals: dict, settings: PlanningDefaults, data: str | None = None) -> dict | None:
    """The eval.json row of the planner `settings`, or None. Where several rows have them (one
    planner on two files), the row of the model's training file `data` (the paper's protocol:
    tasks from its dataset; a row that names no file is one) wins, then the most episodes."""
    rows = [r for r in evals.values() if row_settings(r) == settings]

    def rank(row: dict) -> tuple[bool, int]:
        named = row.get("data")
        own = named is None or data is None or same_file(named, data)
        return own, row.get("episodes", 0)

    return max(rows, key=rank) if rows else None


def same_file(a: str, b: str) -> bool:
    """Whether two recorded data paths name one file: eval rows and configs record the path
    the command was given (`data/pusht-v1.h5`, `../data/pusht-v1.h5`), so the file's name
    tells them apart."""
    return Path(a).name == Path(b).name


def training_file(config: dict) -> str | None:
    """The dataset a model was trained on, as its config.json records it (the data's path;
    `train.data` is the file's name where the run was trained, which may differ)."""
    return (config.get("data") or {}).get("path") or (config.get("train") or {}).get("data")


def other_files(evals: dict, settings: PlanningDefaults, drawn: dict | None) -> list[dict]:
    """Rows of the planner `settings` on files other than the drawn row's (a held-out file)."""
    if drawn is None:
        return []
    return [
        r
        for r in evals.values()
        if row_settings(r) == settings
        and r.get("data")
        and not (drawn.get("data") and same_file(r["data"], drawn["data"]))
    ]


def interval(row: dict) -> list[float]:
    """A row's 95% interval (its own, else the Wilson interval of its counts), in %."""
    if "success_ci95" in row:
        return [100 * v for v in row["success_ci95"]]
    n = row["episodes"]
    return [100 * v for v in wilson_interval(round(row["success_rate"] * n), n)]


def paper_vs_ours(run: Run) -> None:
    """Grouped bars per task: the paper, ours with the published and with the shipped planner."""
    names, kinds = [], KINDS
    values = {k: [] for k in kinds}
    cis = {k: [] for k in kinds[1:]}
    floors, tasks, notes = [], {}, []
    for folder in run.models:
        loaded = run.model(folder)
        env = loaded.env_name
        evals = read_json(folder / EVAL_FILE)
        own = replace(PUBLISHED, sampling=loaded.planning.sampling)
        data = training_file(config_of(folder))
        rows = {
            "published": row_of(evals, own, data),
            "published_independent": row_of(evals, PUBLISHED, data),
            "shipped": row_of(evals, loaded.planning, data),
        }
        paper = PLANNING_SUCCESS.get(env)  # by the lab's env name; None: no figure
        star = ""
        if TASK_NOTES.get(env):  # where the paper's task is not quite this env
            star = "*"
            notes.append("*" + " ".join(TASK_NOTES[env]).replace("`", ""))
        names.append(f"{title(loaded)}{star}")
        values["paper"].append(np.nan if paper is None else float(paper))
        entry = {"env": env, "paper": paper}
        for kind, row in rows.items():
            values[kind].append(np.nan if row is None else 100 * row["success_rate"])
            cis[kind].append([np.nan, np.nan] if row is None else interval(row))
            if row is not None:
                entry[kind] = 100 * row["success_rate"]
                entry[f"{kind}_ci95"] = interval(row)
                entry[f"{kind}_episodes"] = row["episodes"]
        shipped = rows["shipped"]
        floors.append(np.nan if shipped is None else 100 * shipped["random_success_rate"])
        for other in other_files(evals, loaded.planning, shipped):
            entry.setdefault("shipped_other_files", {})[other["data"]] = 100 * other["success_rate"]
            notes.append(
                f"{title(loaded)}'s shipped planner meets {100 * other['success_rate']:.0f}% of "
                f"{other['episodes']} tasks from {Path(other['data']).name}, a file it was not "
                "trained on."
            )
        tasks[env] = entry

    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    x = np.arange(len(names))
    width = 0.2
    drawn = {}
    for j, kind in enumerate(kinds):
        pos = x + (j - 1.5) * width
        heights = np.nan_to_num(values[kind], nan=0.0)
        yerr = None
        if kind in cis:
            ci = np.array(cis[kind], dtype=float)
            yerr = np.nan_to_num(np.stack([heights - ci[:, 0], ci[:, 1] - heights]))
            yerr = np.maximum(0.0, yerr)  # an interval ending at 0 or 100%: rounding
        bars = ax.bar(
            pos,
            heights,
            width,
            yerr=yerr,
            capsize=3,
            color=COLOURS[kind],
            label=LABELS[kind],
            error_kw={"elinewidth": 1, "ecolor": "0.2"},
        )
        drawn[kind] = [float(b.get_height()) for b in bars]
        tops = heights if yerr is None else heights + yerr[1]
        for b, top in zip(bars, tops, strict=True):
            centre = b.get_x() + b.get_width() / 2
            ax.text(centre, top + 1, f"{b.get_height():.0f}", ha="center", fontsize=7)
    ax.hlines(floors, x - 2 * width, x + 2 * width, colors="black", linestyles=":", linewidth=1)
    ax.plot([], [], ":", color="black", linewidth=1, label="random policy")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 108)
    ax.set_ylabel("planning success (%)")
    ax.set_title("Planning success: the paper's LeWM and the shipped models", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", ncols=3, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    path = save_png(fig, run.out / "paper_vs_ours.png")
    plt.close(fig)
    episodes = sorted({e.get("shipped_episodes") for e in tasks.values()} - {None})
    caption = (
        f"Planning success per task: the paper's LeWM (arXiv {ARXIV_ID}, lewm_core.paper), "
        f"ours with the published planner (one observed frame, {PUBLISHED.objective} objective, "
        "every planned block executed) with each model's own CEM sampling and with the paper's "
        f"{PUBLISHED.sampling} sampling, and ours with each model's shipped planner, "
        f"read from each model's eval.json ({'/'.join(map(str, episodes))} tasks each); "
        "whiskers: 95% Wilson intervals (none is given for the paper's); dotted: a random "
        f"policy on the shipped planner's tasks. {' '.join(notes)}".strip()
    )
    run.record("paper_vs_ours", path, caption, {"tasks": tasks, "drawn": drawn})
