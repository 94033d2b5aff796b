"""The sections of a model card that report measurements, from the JSON files beside the
weights: training details (with the history of weights trained in stages), the planning table
with the paper's figure for the task beside it, probing and surprise, the visualisation decoder.
`lewm_core.model_card` puts them in the card.
"""

from __future__ import annotations

from pathlib import Path

from lewm_core import paper
from lewm_core.data.samples import policy_flag
from lewm_core.world_model.checkpoint import planning_defaults
from lewm_core.world_model.config import ModelConfig

# How the model card says what a candidate's cost is, per CEM objective.
OBJECTIVE_WORDS = {
    "last": "its last predicted latent's distance to the goal (as published)",
    "min": "its predicted latent closest to the goal over the horizon",
}
LINEAGE_KEY = "lineage"  # config.json entry: the training stages of shipped weights, oldest first
PERTURBATION_NAMES = {"teleport": "teleported", "color": "colour change"}
ENCODER_NAMES = {"vit": "ViT", "cnn": "CNN"}  # `ModelConfig.encoder`, as a card writes it


def decoder_lines(decoder: dict | None) -> list[str]:
    """The "Visualisation decoder" part of the model's details, from its decoder.json."""
    if not decoder:
        return []
    m, t = decoder.get("metrics", {}), decoder.get("train", {})
    return [
        "",
        "### Visualisation decoder",
        "",
        f"`decoder.safetensors`, trained {t.get('steps')} steps (batch {t.get('batch_size')}, "
        f"lr {t.get('lr')}, seed {t.get('seed')}) on the frozen encoder: held-out PSNR "
        f"{m.get('val_psnr', float('nan')):.1f} dB (predicting the mean frame: "
        f"{m.get('val_psnr_mean_image', float('nan')):.1f} dB). "
        f"`lewm decoder-train --checkpoint <this folder> --steps {t.get('steps')}`.",
    ]


def training_lines(config: dict, train_summary: dict, data_info: dict | None) -> list[str]:
    """The card's "Training details": data, recipe, optimiser, validation."""
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
        "",
        "## Training details",
        "",
        f"- Data: `{data.get('path')}` ({data.get('env')}, {data.get('resolution')} px), "
        f"split by episode (validation fraction {data.get('val_fraction')}, seed "
        f"{data.get('split_seed')}).",
        f"- Training: {trained}, batch {train.get('batch_size')}, "
        f"AdamW lr {train.get('lr')}, weight decay {train.get('weight_decay')}, SIGReg lambda "
        f"{train.get('sigreg_weight')}, seed {train.get('seed')}; wall time "
        f"{wall_s} s on {train_summary.get('machine') or 'the machine that trained it'}.",
    ]
    if data_info:
        lines.append(
            f"- Dataset recipe: `lewm collect --env {data_info.get('env')} --episodes "
            f"{data_info.get('num_episodes')} --steps {data_info.get('steps')} --resolution "
            f"{data_info.get('resolution')} --seed {data_info.get('seed')}"
            f"{policy_flag(str(data_info.get('policy', '')))}` "
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
    return lines + lineage_lines(lineage)


def lineage_lines(lineage: list[dict]) -> list[str]:
    """The "Training history" table of weights trained in more than one stage."""
    if len(lineage) < 2:
        return []
    lines = [
        "",
        "### Training history",
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


def eval_tasks(result: dict) -> str:
    """Where a `lewm eval --json` result's tasks came from and whether a goal met at the start
    counted, in a few words: "held-out episodes" (the default), "all of pusht-v1-test.h5, start
    not counted", "policy episodes"."""
    if result.get("source") == "policy":
        where = "policy episodes"
    else:
        split = result.get("split") or "val"
        name = Path(result["data"]).name if result.get("data") else "the dataset"
        where = {
            "val": "held-out episodes",
            "train": f"training episodes of {name}",
            "all": f"all of {name}",
        }.get(split, f"{split} episodes of {name}")
    if result.get("goal_at_start") == "not-counted":
        where += ", start not counted"
    return where


def planning_lines(env: str, title: str, config: dict, evals: dict) -> list[str]:
    """The evaluation's planning table with the paper's figure for the task in a column beside
    ours, what the paper's figure was measured with, and the model's default planner."""
    figure = paper.PLANNING_SUCCESS.get(env)
    paper_head, paper_rule, paper_cell = ("", "", "")
    if figure is not None:
        paper_head, paper_rule, paper_cell = (" paper's LeWM |", "---|", f" {figure}% |")
    lines = ["", "### Planning (CEM + MPC, goal 25 steps ahead, budget 50 steps)", ""]
    if evals:
        lines += [
            "| tasks | sampling | context | objective | execute | CEM | episodes | success "
            f"| 95% CI |{paper_head} random policy | plan ms (median) | precision |",
            "|---|---|---|---|---|---|---|---|---|" + paper_rule + "---|---|---|",
        ]
        for name, e in evals.items():
            cem = e.get("cem", {})
            lo, hi = e["success_ci95"]
            lines.append(
                f"| {eval_tasks(e)} | {e.get('sampling', name)} | {cem.get('context', 1)} | "
                f"{cem.get('objective', 'last')} | {cem.get('receding_horizon', 5)} | "
                f"{cem.get('samples')}x{cem.get('iterations')} | "
                f"{e['episodes']} | {e['success_rate']:.0%} | {lo:.0%}-{hi:.0%} |{paper_cell} "
                f"{e['random_success_rate']:.0%} | {e['plan_ms_median']:.0f} | "
                f"{e.get('dtype', '-')}{', compiled' if e.get('compiled') else ''} |"
            )
        lines += [
            "",
            "Each row: `lewm eval --checkpoint <this folder> --data <dataset> "
            "--episodes 50 --seed 0 --sampling <sampling> --context <context> "
            "--objective <objective> --receding-horizon <execute>`; tasks from all of a file "
            "with the start not counted (the paper's protocol): `--split all --goal-at-start "
            "not-counted`. Plan times are those of the machine each evaluation ran on.",
        ]
    else:
        lines.append("Not evaluated yet.")
    if figure is not None:
        published = ModelConfig()  # the paper's architecture
        encoder = ENCODER_NAMES[published.encoder]
        preset = config.get("train", {}).get("preset", "?")
        text = (
            f"The paper reports {figure}% planning success for LeWM on {title} "
            f"({paper.ARXIV_URL}), with its own model (a {encoder} encoder at "
            f"{published.image_size} px) trained on its own data and its published planner "
            "(independent sampling from one frame, last-latent cost, all 5 blocks executed); "
            f"this model is the `{preset}` preset above."
        )
        lines += ["", " ".join([text, *paper.TASK_NOTES.get(env, ())])]
    d = planning_defaults(config)
    lines += [
        "",
        f"Default CEM sampling (`lewm eval`, the lab, the demo): **{d.sampling}**; each plan "
        f"starts from the last **{d.context}** observed frame{'s' if d.context > 1 else ''}, "
        f"scores a candidate by **{OBJECTIVE_WORDS[d.objective]}** and executes "
        f"**{d.receding_horizon}** of its blocks before the next plan.",
    ]
    return lines


def analysis_lines(probe: dict | None, surprise: dict | None) -> list[str]:
    """The evaluation's "Probing and surprise" from `lewm probe` / `lewm surprise` JSON."""
    if not probe and not surprise:
        return []
    lines = ["", "### Probing and surprise", ""]
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
