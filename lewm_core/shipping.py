"""Ship a trained run as a small model folder with a model card (`assets/models/<env>/`).

The shipped folder holds what loading and planning need, nothing for resuming:
`config.json` (model config, action statistics, data and training info), `model.safetensors`,
`eval.json` (the planning evaluation, if given), `probe.json` and `surprise.json` (the last JSON
lines of `lewm probe --json` and `lewm surprise --json`, if given), a held-out sample of the task's
frames (`sample.h5`, `sample.json`: `lewm_core.data.samples`, made with `lewm sample`) and
`MODEL_CARD.md`, written from those files by `lewm_core.model_card.write_card` (so it can be
written again where the training run and its dataset are gone). config.json records the
dataset's collection recipe (`data.recipe`) for the card. Results that describe other weights
(a decoder, probes, surprise) are removed when different weights are shipped over them; a sample
describes the task, not the weights, and stays while the task and resolution do.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

from lewm_core.atomic import atomic_path, write_json
from lewm_core.card_results import eval_tasks
from lewm_core.data.dataset import dataset_info
from lewm_core.data.samples import collect_sample, read_sample_info
from lewm_core.errors import UserError
from lewm_core.folders import (
    CARD_FILE,
    CONFIG_FILE,
    DECODER_FILES,
    EVAL_FILE,
    MODEL_FILE,
    PROBE_FILE,
    SAMPLE_FILES,
    SUMMARY_FILE,
    SURPRISE_FILE,
)

# The card's writer, its settings and the recipe reader, also importable from here.
from lewm_core.model_card import (
    LINEAGE_KEY,
    OBJECTIVE_WORDS,
    PERTURBATION_NAMES,
    RECIPE_KEYS,
    data_recipe,
    model_card,
    write_card,
)
from lewm_core.world_model.checkpoint import (
    PlanningDefaults,
    check_context,
    check_whole,
    load_model,
    planning_defaults,
    read_config,
)

__all__ = [
    "LINEAGE_KEY",
    "OBJECTIVE_WORDS",
    "PERTURBATION_NAMES",
    "RECIPE_KEYS",
    "add_sample",
    "data_recipe",
    "eval_label",
    "model_card",
    "ship",
    "training_lineage",
    "write_card",
]


def _extra_data_info(path: str) -> dict:
    """What a card says about one `--extra-data` file: its policy and size, if it is here, and
    for a planner's episodes the goal kinds and the CEM budget (samples x iterations)."""
    if not Path(path).is_file():
        return {"path": path}
    info = dataset_info(path)
    keep = ("policy", "num_episodes", "num_steps", "seed", "source_split")
    out = {"path": path, **{k: info[k] for k in keep if k in info}}
    if "goal_kinds" in info:  # stored as a JSON list
        out["goal_kinds"] = json.loads(info["goal_kinds"])
    if "cem" in info:  # a JSON object (`lewm collect-planned`)
        cem = json.loads(info["cem"])
        out["cem"] = f"{cem['samples']}x{cem['iterations']}"
    return out


def training_lineage(run_dir: str | os.PathLike) -> list[dict]:
    """The training stages that made a run's weights, oldest first: each stage's run, the
    weights it started from (`lewm train --init-from`), steps, wall time, data and extra data.

    Follows `train.init_from` back through the run folders it names; a folder that carries a
    lineage already (shipped weights) ends the walk with its recorded stages, so a shipped
    model keeps its history after the runs are gone. A start that no longer exists is
    recorded by name with `"missing": true`."""
    stages: list[dict] = []
    current: Path | None = Path(run_dir)
    seen: set[Path] = set()
    while current is not None:
        if current.resolve() in seen:
            raise UserError(f"{current} starts from itself (init_from cycle); fix its config.json")
        seen.add(current.resolve())
        if not (current / CONFIG_FILE).is_file():
            stages.append({"run": str(current), "missing": True})
            break
        config = read_config(current)
        if config.get(LINEAGE_KEY):
            # A run shipped over the folder it started from, shipped again: that folder's
            # history already ends with the run, so it is cut before it, not repeated.
            recorded = config[LINEAGE_KEY]
            walked = {st["run"] for st in stages}
            cut = next((i for i, st in enumerate(recorded) if st.get("run") in walked), None)
            stages.extend(reversed(recorded[:cut]))
            break
        train = config.get("train", {})
        summary_path = current / SUMMARY_FILE
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        init_from = train.get("init_from")
        stages.append(
            {
                "run": train.get("out") or str(current),
                "init_from": init_from,
                "steps": summary.get("total_steps", summary.get("steps")),
                "wall_s": summary.get("total_wall_s", summary.get("wall_s")),
                "data": config.get("data", {}).get("path"),
                "extra_data": [_extra_data_info(x) for x in train.get("extra_data") or []],
                "extra_repeat": train.get("extra_repeat"),
            }
        )
        current = Path(init_from) if init_from else None
    return stages[::-1]


def add_sample(
    folder: str | os.PathLike,
    episodes: int,
    steps: int,
    policy: str = "default",
    overwrite: bool = False,
    progress=None,
) -> dict:
    """`samples.collect_sample` into a model folder, then its model card written again (a
    folder with a card: a shipped model) so that it describes the sample."""
    info = collect_sample(folder, episodes, steps, policy, overwrite, progress)
    if (Path(folder) / CARD_FILE).is_file():
        write_card(folder)
    return info


def eval_label(result: dict, fallback: str) -> str:
    """A short name for a `lewm eval --json` result by its planner settings, e.g. "block" or
    "block, context 3, min objective, execute 2" (published values left out); `fallback`
    where it names no sampling."""
    cem = result.get("cem", {})
    parts = [result.get("sampling", fallback)]
    if cem.get("context", 1) != 1:
        parts.append(f"context {cem['context']}")
    if cem.get("objective", "last") != "last":
        parts.append(f"{cem['objective']} objective")
    if cem.get("receding_horizon", 5) != cem.get("horizon", 5):
        parts.append(f"execute {cem['receding_horizon']}")
    tasks = eval_tasks(result)
    if tasks != "held-out episodes":
        parts.append(tasks)
    return ", ".join(parts)


def ship(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    evals: dict[str, dict] | None = None,
    planning: dict | None = None,
    probe: dict | None = None,
    surprise: dict | None = None,
) -> Path:
    """Copy a run's config and weights to `out_dir` and write its model card; return out_dir.

    A decoder trained on the run comes along; one left in `out_dir` beside other weights is
    removed (it decodes another encoder's latents), and so are evaluation, probe and surprise
    results.
    `planning`: the default CEM settings to record in the shipped config.json (any of the
    `PlanningDefaults` fields: sampling, context, objective, receding_horizon), which
    `lewm eval`, the lab and the demo start on; shipping the same weights again keeps the ones
    recorded before unless given anew.
    `probe` / `surprise`: results of `lewm probe --json` /
    `lewm surprise --json` on these weights, kept beside them and summarised in the card."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    loaded = load_model(run_dir)  # validates the run before anything is written
    config = read_config(run_dir)
    chosen = {k: v for k, v in (planning or {}).items() if v is not None}
    if "context" in chosen:
        check_context(chosen["context"], loaded.model.cfg.history, "lewm ship got the context")
    if "receding_horizon" in chosen:
        most = PlanningDefaults.receding_horizon
        check_whole(chosen["receding_horizon"], 1, most, "lewm ship got the receding horizon")
    shipped = out_dir / MODEL_FILE
    same_weights = shipped.exists() and filecmp.cmp(run_dir / MODEL_FILE, shipped, shallow=False)
    kept = {}  # shipping the same weights again (say, with new evals) keeps their defaults
    if same_weights and (out_dir / CONFIG_FILE).is_file():
        kept = read_config(out_dir).get("planning") or {}
    if chosen or kept:
        config["planning"] = {**config.get("planning", {}), **kept, **chosen}
        planning_defaults(config)  # validates before anything is written
    env = config.get("data", {}).get("env")
    for what, result in (("probe", probe), ("surprise", surprise)):
        if result is not None and result.get("env") != env:
            raise UserError(
                f"the {what} results are for env '{result.get('env')}' but the run is a {env} "
                f"model; run `lewm {what} --checkpoint {run_dir}` and pass its output"
            )
    lineage = training_lineage(run_dir)  # read before out_dir (maybe a stage) is overwritten
    if len(lineage) > 1:
        config[LINEAGE_KEY] = lineage
    before = read_config(out_dir) if (out_dir / CONFIG_FILE).is_file() else {}
    recipe = data_recipe(config)
    data = config.setdefault("data", {})
    if recipe is None and before.get("data", {}).get("path") == data.get("path"):
        recipe = before["data"].get("recipe")  # the same dataset, recorded when it was here
    if recipe is not None:
        data["recipe"] = recipe
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    replaced = shipped.exists() and not same_weights
    with atomic_path(shipped) as tmp:
        shutil.copyfile(run_dir / MODEL_FILE, tmp)
    if replaced:
        for name in (*DECODER_FILES, EVAL_FILE, PROBE_FILE, SURPRISE_FILE, SUMMARY_FILE):
            (out_dir / name).unlink(missing_ok=True)
    for files in (DECODER_FILES, SAMPLE_FILES):  # a decoder trained, a sample made on the run
        if (
            all((run_dir / name).is_file() for name in files)
            and run_dir.resolve() != out_dir.resolve()
        ):
            for name in files:
                with atomic_path(out_dir / name) as tmp:
                    shutil.copyfile(run_dir / name, tmp)
    sample = read_sample_info(out_dir)
    task = (data.get("env"), loaded.config.image_size)
    if sample is not None and (sample.get("env"), sample.get("resolution")) != task:
        for name in SAMPLE_FILES:  # frames of another task or size than the shipped model's
            (out_dir / name).unlink(missing_ok=True)
    write_json(out_dir / CONFIG_FILE, config)
    evals = evals or {}
    if evals:
        write_json(out_dir / EVAL_FILE, evals)
    if summary:
        write_json(out_dir / SUMMARY_FILE, summary)
    for name, result in ((PROBE_FILE, probe), (SURPRISE_FILE, surprise)):
        if result is not None:
            write_json(out_dir / name, result)
    # The card reads what lies beside the weights: the results trained or measured on the run,
    # or on these same weights shipped here before.
    write_card(out_dir)
    if not (out_dir / MODEL_FILE).stat().st_size < 20e6:
        raise UserError(f"{out_dir / MODEL_FILE} is over 20 MB; ship a smaller preset")
    return out_dir
