"""Ship a trained run as a small model folder with a model card (`assets/models/<env>/`).

The shipped folder holds what loading and planning need, nothing for resuming:
`config.json` (model config, action statistics, data and training info), `model.safetensors`,
`eval.json` (the planning evaluation, if given), `probe.json` and `surprise.json` (the last JSON
lines of `lewm probe --json` and `lewm surprise --json`, if given), a held-out sample of the task's
frames (`sample.h5`, `sample.json`: `lewm_core.data.samples`, made with `lewm sample`) and
`MODEL_CARD.md`, written from those files by `write_card` (so it can be written again where the
training run and its dataset are gone). config.json records the dataset's collection recipe
(`data.recipe`) for the card. Results that describe other weights (a decoder, probes, surprise)
are removed when different weights are shipped over them; a sample describes the task, not the
weights, and stays while the task and resolution do.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

from lewm_core.atomic import atomic_path, write_bytes, write_json
from lewm_core.data.dataset import dataset_info
from lewm_core.data.samples import (
    collect_sample,
    read_sample_info,
    sample_card_lines,
)
from lewm_core.errors import UserError
from lewm_core.folders import (
    CARD_FILE,
    CONFIG_FILE,
    DECODER_CONFIG,
    DECODER_FILES,
    EVAL_FILE,
    MODEL_FILE,
    PROBE_FILE,
    SAMPLE_FILE,
    SAMPLE_FILES,
    SUMMARY_FILE,
    SURPRISE_FILE,
)
from lewm_core.world_model.checkpoint import (
    PlanningDefaults,
    check_context,
    check_whole,
    load_model,
    planning_defaults,
    read_config,
)
from lewm_core.world_model.model import parameter_counts

# How the model card says what a candidate's cost is, per CEM objective.
OBJECTIVE_WORDS = {
    "last": "its last predicted latent's distance to the goal (as published)",
    "min": "its predicted latent closest to the goal over the horizon",
}
LINEAGE_KEY = "lineage"  # config.json entry: the training stages of shipped weights, oldest first
PERTURBATION_NAMES = {"teleport": "teleported", "color": "colour change"}
# What config.json's `data.recipe` keeps of `dataset_info` (the card's `lewm collect` line).
RECIPE_KEYS = ("env", "num_episodes", "steps", "resolution", "seed", "num_steps", "policy")


def _analysis_lines(probe: dict | None, surprise: dict | None) -> list[str]:
    """The card's "Probing and surprise" section from `lewm probe` / `lewm surprise` JSON."""
    if not probe and not surprise:
        return []
    lines = ["", "## Probing and surprise", ""]
    if probe:
        untrained = probe.get("untrained", {}).get("linear", {})
        rest = probe.get("state_floor", {}).get("linear", {})
        mlp = probe.get("mlp", {})
        lines += [
            f"Probes from single-frame latents to the env's state, Pearson r on held-out "
            f"episodes ({probe.get('train_frames')} training / {probe.get('test_frames')} test "
            "frames; angles probed as cos, sin; the last column probes the true values of the "
            "env's other quantities instead of the latent, the floor of a latent that knows a "
            "quantity only through them):",
            "",
            "| quantity | linear | MLP | linear, untrained encoder | linear, rest of the state |",
            "|---|---|---|---|---|",
        ]
        for name, m in probe.get("linear", {}).items():
            cells = [
                m.get("r"),
                mlp.get(name, {}).get("r"),
                untrained.get(name, {}).get("r"),
                rest.get(name, {}).get("r"),
            ]
            lines.append(
                f"| {name} | " + " | ".join("-" if r is None else f"{r:.3f}" for r in cells) + " |"
            )
        lines += [
            "",
            f"`lewm probe --checkpoint <this folder> --data {probe.get('data')} "
            f"--train-frames {probe.get('train_frames')} --seed {probe.get('seed')} --json`.",
        ]
    if surprise:
        if probe:
            lines.append("")
        parts = []
        for key, label in PERTURBATION_NAMES.items():
            r = surprise.get(key)
            if r:
                parts.append(
                    f"{label}: jump {r['jump']:.2f} (x{r.get('ratio', float('nan')):.1f}), paired "
                    f"t-test p = {r['p_value']:.2g}, surprise maximum at the perturbation in "
                    f"{r.get('argmax_rate', float('nan')):.0%} of episodes (unperturbed copy: "
                    f"{r.get('argmax_rate_unperturbed', float('nan')):.0%})"
                )
        lines += [
            f"Surprise, {surprise.get('episodes')} episodes, perturbation at model step "
            f"{surprise.get('perturb_step')}: " + "; ".join(parts) + ".",
            "",
            f"`lewm surprise --checkpoint <this folder> --episodes {surprise.get('episodes')} "
            f"--steps {surprise.get('steps')} --seed {surprise.get('seed')} --json`.",
        ]
    return lines


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


def _lineage_lines(lineage: list[dict]) -> list[str]:
    """The card's "Training history" section for weights trained in more than one stage."""
    if len(lineage) < 2:
        return []
    lines = [
        "",
        "## Training history",
        "",
        "| stage | run | started from | steps | extra data (times as often as a data clip) "
        "| wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, st in enumerate(lineage, 1):
        if st.get("missing"):
            lines.append(f"| {i} | `{st['run']}` (not found) | - | - | - | - |")
            continue
        files = st.get("extra_data") or []
        repeat = st.get("extra_repeat")
        repeats = repeat if isinstance(repeat, list) else [repeat] * len(files)
        extra = "; ".join(
            f"`{x['path']}` ({x.get('num_episodes', '?')} episodes, {x.get('policy', '?')}"
            + (f", goal kinds {', '.join(x['goal_kinds'])}" if x.get("goal_kinds") else "")
            + (f", CEM {x['cem']}" if x.get("cem") else "")
            + f"), x{r}"
            for x, r in zip(files, repeats, strict=False)
        )
        start = f"`{st['init_from']}`" if st.get("init_from") else "scratch"
        if i > 1 and st.get("init_from"):
            start = f"stage {i - 1} ({start})"
        lines.append(
            f"| {i} | `{st['run']}` | {start} | {st.get('steps')} | {extra or '-'} "
            f"| {st.get('wall_s')} |"
        )
    lines += [
        "",
        "Each stage: `lewm train --data <data> --init-from <started from> --extra-data <file> "
        "--extra-repeat <times>`; each extra file's policy is named beside it: the env's "
        "data policy (`lewm collect`, more episodes of the same kind) or a CEM planner "
        "(`lewm collect-planned`: the previous stage's planner on tasks from the data's "
        "training split).",
    ]
    return lines


def model_card(
    config: dict,
    train_summary: dict,
    evals: dict,
    params: int,
    data_info: dict | None = None,
    decoder: dict | None = None,
    probe: dict | None = None,
    surprise: dict | None = None,
    sample: dict | None = None,
) -> str:
    """The markdown model card of a shipped model.

    `data_info`: the collection recipe of its data (`RECIPE_KEYS` of `dataset_info`);
    `decoder`: the parsed `decoder.json` beside it; `probe` / `surprise`: the JSON of
    `lewm probe` / `lewm surprise` on these weights; `sample`: its sample.json.
    """
    data, train = config.get("data", {}), config.get("train", {})
    lineage = config.get(LINEAGE_KEY) or []
    if len(lineage) > 1:
        steps = sum(st.get("steps") or 0 for st in lineage)
        wall = sum(st.get("wall_s") or 0 for st in lineage)
        trained = f"{steps} steps in {len(lineage)} stages (training history below)"
        wall_s = round(wall, 2)
    else:
        trained = f"{train_summary.get('steps')} steps"
        wall_s = train_summary.get("total_wall_s", train_summary.get("wall_s"))
    lines = [
        f"# LeWM `{train.get('preset', '?')}` model for {data.get('env', '?')}",
        "",
        f"- Parameters: {params:,}; latent dim {config['model']['latent_dim']}; "
        f"input {config['model']['image_size']} px; encoder {config['model']['encoder']}.",
        f"- Data: `{data.get('path')}` ({data.get('env')}, {data.get('resolution')} px), "
        f"split by episode (validation fraction {data.get('val_fraction')}, seed "
        f"{data.get('split_seed')}).",
        f"- Training: {trained}, batch {train.get('batch_size')}, "
        f"AdamW lr {train.get('lr')}, weight decay {train.get('weight_decay')}, SIGReg lambda "
        f"{train.get('sigreg_weight')}, seed {train.get('seed')}; wall time "
        f"{wall_s} s on this machine.",
    ]
    if data_info:
        lines.append(
            f"- Dataset recipe: `lewm collect --env {data_info.get('env')} --episodes "
            f"{data_info.get('num_episodes')} --steps {data_info.get('steps')} --resolution "
            f"{data_info.get('resolution')} --seed {data_info.get('seed')}` "
            f"({data_info.get('num_steps'):,} frames; policy {data_info.get('policy')})."
        )
    ev = config.get("eval") or {}
    if ev:
        lines.append(
            f"- Validation: prediction loss {ev.get('val_pred_loss', float('nan')):.4f} vs "
            f"{ev.get('val_copy_loss', float('nan')):.4f} for copying the current latent; "
            f"embedding std {ev.get('emb_std_mean', float('nan')):.3f}, effective rank "
            f"{ev.get('effective_rank', float('nan')):.1f}."
        )
    lines += ["", "## Planning (CEM + MPC, goal 25 steps ahead, budget 50 steps)", ""]
    if evals:
        lines += [
            "| sampling | context | objective | execute | CEM | episodes | success | 95% CI "
            "| random policy | plan ms (median) | precision |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in evals.items():
            cem = e.get("cem", {})
            lo, hi = e["success_ci95"]
            lines.append(
                f"| {e.get('sampling', name)} | {cem.get('context', 1)} | "
                f"{cem.get('objective', 'last')} | {cem.get('receding_horizon', 5)} | "
                f"{cem.get('samples')}x{cem.get('iterations')} | "
                f"{e['episodes']} | {e['success_rate']:.0%} | {lo:.0%}-{hi:.0%} | "
                f"{e['random_success_rate']:.0%} | {e['plan_ms_median']:.0f} | "
                f"{e.get('dtype', '-')}{', compiled' if e.get('compiled') else ''} |"
            )
        lines += [
            "",
            "Each row: `lewm eval --checkpoint <this folder> --data <dataset> "
            "--episodes 50 --seed 0 --sampling <sampling> --context <context> "
            "--objective <objective> --receding-horizon <execute>`. Plan times are those of "
            "the machine each evaluation ran on.",
        ]
    else:
        lines.append("Not evaluated yet.")
    d = planning_defaults(config)
    lines += [
        "",
        f"Default CEM sampling (`lewm eval`, the lab, the demo): **{d.sampling}**; each plan "
        f"starts from the last **{d.context}** observed frame{'s' if d.context > 1 else ''}, "
        f"scores a candidate by **{OBJECTIVE_WORDS[d.objective]}** and executes "
        f"**{d.receding_horizon}** of its blocks before the next plan.",
    ]
    if decoder:
        m, t = decoder.get("metrics", {}), decoder.get("train", {})
        lines += [
            "",
            "## Visualisation decoder",
            "",
            f"`decoder.safetensors`, trained {t.get('steps')} steps (batch {t.get('batch_size')}, "
            f"lr {t.get('lr')}, seed {t.get('seed')}) on the frozen encoder: held-out PSNR "
            f"{m.get('val_psnr', float('nan')):.1f} dB (predicting the mean frame: "
            f"{m.get('val_psnr_mean_image', float('nan')):.1f} dB). "
            f"`lewm decoder-train --checkpoint <this folder> --steps {t.get('steps')}`.",
        ]
    lines += _analysis_lines(probe, surprise)
    if sample:
        lines += sample_card_lines(sample)
    lines += _lineage_lines(lineage)
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def data_recipe(config: dict) -> dict | None:
    """How a model's dataset was collected (`RECIPE_KEYS`): from the file when it is on disk,
    else as config.json's `data.recipe` records it (None when neither)."""
    data = config.get("data", {})
    path = Path(data.get("path") or "")
    if path.is_file():
        info = dataset_info(path)
        return {k: info[k] for k in RECIPE_KEYS if k in info}
    return data.get("recipe")


def write_card(folder: str | os.PathLike, data_info: dict | None = None) -> Path:
    """Write a shipped folder's MODEL_CARD.md from the files beside it (config.json,
    train_summary.json, eval.json, decoder.json, probe.json, surprise.json, sample.json);
    `data_info` defaults to `data_recipe(config)`. Returns the card's path."""
    folder = Path(folder)
    loaded = load_model(folder)
    config = loaded.meta
    evals, summary, decoder, probe, surprise = (
        _read_json(folder / name)
        for name in (EVAL_FILE, SUMMARY_FILE, DECODER_CONFIG, PROBE_FILE, SURPRISE_FILE)
    )
    params = parameter_counts(loaded.model)["params_total"]
    card = model_card(
        config,
        summary or {},
        evals or {},
        params,
        data_info or data_recipe(config),
        decoder,
        probe,
        surprise,
        read_sample_info(folder) if (folder / SAMPLE_FILE).is_file() else None,
    )
    write_bytes(folder / CARD_FILE, card.encode())
    return folder / CARD_FILE


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
