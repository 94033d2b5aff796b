"""A shipped model's card (`MODEL_CARD.md`), written from the JSON files beside its weights.

The card is a Hugging Face model card: a YAML metadata block (`card_metadata`: library_name,
license, tags; no `pipeline_tag`, as none of the Hub's tasks is goal-conditioned planning with a
world model), then the sections in the order of the Hub's template: Model details, Uses,
Limitations, How to get started, Training details, Evaluation, Citation. Every number comes from
config.json, eval.json, probe.json, surprise.json, train_summary.json, decoder.json and
sample.json, or from the paper's table (`lewm_core.paper`), so `write_card` can write it again
where the training run and its dataset are gone. `lewm_core.shipping` writes it when it ships.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lewm_core import card_results, paper
from lewm_core.atomic import write_bytes
from lewm_core.data.dataset import dataset_info
from lewm_core.data.samples import read_sample_info, sample_card_lines
from lewm_core.envs import ENV_TITLES
from lewm_core.folders import (
    CARD_FILE,
    DECODER_CONFIG,
    EVAL_FILE,
    PROBE_FILE,
    SAMPLE_FILE,
    SUMMARY_FILE,
    SURPRISE_FILE,
)
from lewm_core.world_model.checkpoint import PlanningDefaults, load_model, planning_defaults
from lewm_core.world_model.model import parameter_counts

# The measured sections' settings, importable from here as from `lewm_core.shipping`.
LINEAGE_KEY = card_results.LINEAGE_KEY
OBJECTIVE_WORDS = card_results.OBJECTIVE_WORDS
PERTURBATION_NAMES = card_results.PERTURBATION_NAMES

LICENSE = "mit"  # pyproject.toml's license, as the Hub names it
TAGS = ("world-model", "jepa", "lewm", "model-based-planning")  # and the env's name
# A quantity whose linear probe from the latent reaches a Pearson r below this on held-out
# episodes is one the card says the model does not know.
LOW_PROBE_R = 0.5
SNIPPET_FOLDER = "assets/models/{env}"  # where the card's code finds the model
# What config.json's `data.recipe` keeps of `dataset_info` (the card's `lewm collect` line).
RECIPE_KEYS = ("env", "num_episodes", "steps", "resolution", "seed", "num_steps", "policy")


def card_metadata(env: str) -> str:
    """The card's YAML metadata block, between `---` lines, as the Hugging Face Hub reads it."""
    tags = "".join(f"- {tag}\n" for tag in (*TAGS, env))
    return f"---\nlibrary_name: pytorch\nlicense: {LICENSE}\ntags:\n{tags}---\n"


def _planner_settings(e: dict) -> tuple:
    """(sampling, context, objective, receding horizon) of a `lewm eval` result (older results
    that name no context, objective or receding horizon planned with the published ones)."""
    cem = e.get("cem", {})
    return (
        e.get("sampling"),
        cem.get("context", 1),
        cem.get("objective", "last"),
        cem.get("receding_horizon", 5),
    )


def default_eval(evals: dict, defaults: PlanningDefaults) -> dict | None:
    """The evaluation of the model's default planner among `evals`, if one was run."""
    wanted = (defaults.sampling, defaults.context, defaults.objective, defaults.receding_horizon)
    return next((e for e in evals.values() if _planner_settings(e) == wanted), None)


def low_probe_quantities(probe: dict | None, threshold: float = LOW_PROBE_R) -> dict[str, dict]:
    """{quantity: {"r": linear r, "mlp": MLP r or None}} of every quantity of a `lewm probe`
    result whose linear r is below `threshold`, in the probe's order."""
    if not probe:
        return {}
    mlp = probe.get("mlp", {})
    return {
        name: {"r": m["r"], "mlp": mlp.get(name, {}).get("r")}
        for name, m in probe.get("linear", {}).items()
        if m.get("r") is not None and m["r"] < threshold
    }


def _details_lines(config: dict, params: int, title: str) -> list[str]:
    """The card's "Model details": what the model is, its architecture and size, the paper."""
    m = config["model"]
    if m["encoder"] == "cnn":
        channels = m["cnn_channels"]
        encoder = (
            f"a CNN of {len(channels)} stride-2 convolutions ({channels[0]} to {channels[-1]} "
            "channels)"
        )
    else:
        encoder = (
            f"a ViT (patch {m['patch_size']}, width {m['enc_width']}, depth {m['enc_depth']}, "
            f"{m['enc_heads']} heads)"
        )
    return [
        "## Model details",
        "",
        f"A LeWorldModel (LeWM) of the {title} task: a JEPA world model trained end to end from "
        "pixels with two losses, next-embedding prediction and SIGReg (which keeps the "
        f"embeddings near an isotropic Gaussian, so they cannot collapse). {encoder[0].upper()}"
        f"{encoder[1:]} and a projector map one {m['image_size']} px RGB frame to a "
        f"{m['latent_dim']}-d latent; a causal transformer predictor (depth {m['pred_depth']}, "
        f"width {m['pred_width']}, {m['pred_heads']} heads) predicts the next latent from the "
        f"last {m['history']} latents and the action blocks between them ({m['frameskip']} raw "
        f"actions of {m['action_dim']} values each).",
        "",
        f"- Parameters: {params:,}; latent dim {m['latent_dim']}; input {m['image_size']} px; "
        f"encoder {m['encoder']}.",
        f"- Paper: {paper.short_authors()}, *{paper.TITLE}*, {paper.YEAR}, {paper.ARXIV_URL}.",
        f"- License: {LICENSE.upper()}; library: PyTorch (`lewm_core`), weights in safetensors.",
    ]


def _uses_lines(env: str, title: str, resolution: int) -> list[str]:
    """The card's "Uses": what the model is for and what is out of its scope."""
    return [
        "",
        "## Uses",
        "",
        f'- Planning from pixels in the {title} simulator (`lewm_core.envs.make("{env}")`): '
        "encode a start image and a goal image, search an action sequence with the "
        "cross-entropy method (CEM) through the predictor, act, replan (`lewm eval`, the lab's "
        "Plan page, the Gradio demo).",
        "- Looking inside a world model in the lab (`make lab`): linear and MLP probes of what "
        "the latent holds (`lewm probe`), surprise at impossible events (`lewm surprise`), the "
        "latent space (`lewm tsne`, `lewm straightness`) and latents decoded back to images "
        "(`lewm decoder-train`).",
        f"- Out of scope: frames of other tasks, of real cameras or of another size than "
        f"{resolution} px (it has seen only {title} frames at {resolution} px, Training "
        "details); rewards (it plans toward a goal image and has none); measuring pixels (the "
        "decoder is for looking); any control where a failure costs something: it is a "
        "research model of a simulator.",
    ]


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _probe_limit(probe: dict | None, history: int) -> str:
    """The limitation bullet on what the latent holds: the quantities of `low_probe_quantities`."""
    if not probe:
        return "- What the latent holds has not been measured yet (`lewm probe`)."
    low = low_probe_quantities(probe)
    if not low:
        names = ", ".join(probe.get("linear", {}))
        return (
            f"- Every probed quantity ({names}) has a linear probe r of {LOW_PROBE_R} or more on "
            "held-out episodes."
        )
    named = ", ".join(
        f"**{name}** (r {_ratio(q['r'])}; MLP {_ratio(q['mlp'])})" for name, q in low.items()
    )
    text = (
        f"- The model does not know {named}: every quantity of the env's state whose linear "
        f"probe from a single-frame latent reaches a Pearson r below {LOW_PROBE_R} on held-out "
        "episodes (Evaluation, probe table). Goals that differ only in these look alike to it."
    )
    if any("vel" in name for name in low):
        text += (
            f" A single frame shows no velocity (the predictor reads the last {history} latents)."
        )
    return text


def _planning_limit(env: str, title: str, evals: dict) -> str | None:
    """The limitation bullet on planning: every evaluated planner whose success is below the
    paper's figure for the task (None where none is, or the paper has no figure for it)."""
    if not evals:
        return "- Planning has not been evaluated yet (`lewm eval`)."
    figure = paper.PLANNING_SUCCESS.get(env)
    if figure is None:
        return None
    short = []
    for label, e in evals.items():
        if e["success_rate"] >= figure / 100:
            continue
        lo, hi = e["success_ci95"]
        below = ", below the figure" if hi < figure / 100 else ""
        short.append(
            f"{e['success_rate']:.0%} with planner `{label}` (95% CI {lo:.0%}-{hi:.0%}{below})"
        )
    if not short:
        return None
    return f"- Planning success below the paper's {figure}% for LeWM on {title}: " + (
        "; ".join(short) + "."
    )


def _limitations_lines(
    env: str, title: str, probe: dict | None, evals: dict, default: dict | None, history: int
) -> list[str]:
    """The card's "Limitations": the quantities the latent does not hold (linear probe r below
    `LOW_PROBE_R`), where planning falls short of the paper's figure for the task, and the time
    a plan takes."""
    lines = ["", "## Limitations", "", _probe_limit(probe, history)]
    planning = _planning_limit(env, title, evals)
    if planning:
        lines.append(planning)
    if default and default.get("plan_ms_median"):
        cem = default.get("cem", {})
        lines.append(
            f"- A plan takes {default['plan_ms_median'] / 1000:.1f} s (median of the default "
            f"planner, CEM {cem.get('samples')}x{cem.get('iterations')}) on the CPU it was "
            "measured on: a planner for experiments, not for real-time control."
        )
    return lines


def get_started_code(env: str, sample: bool, resolution: int) -> str:
    """Python that loads the shipped model and plans once from a start image to a goal image:
    two frames 25 steps apart in its held-out sample, or (without one) two of the env's starts."""
    folder = SNIPPET_FOLDER.format(env=env)
    if sample:
        head = ["import h5py", ""]
        frames = [
            f'with h5py.File("{folder}/sample.h5") as f:  # held-out episodes, uint8 frames',
            '    start, goal = f["pixels"][0], f["pixels"][25]  # a goal 25 steps ahead',
        ]
    else:
        head = ["from lewm_core.envs import make"]
        frames = [
            f'env = make("{env}", resolution={resolution})',
            "start, goal = env.reset(seed=0)[0], env.reset(seed=1)[0]  # two uint8 frames",
        ]
    return "\n".join(
        [
            *head,
            "from lewm_core.planning.cem import Planner",
            "from lewm_core.world_model.checkpoint import load_model",
            "",
            f'loaded = load_model("{folder}")  # weights, config, action statistics',
            "planner = Planner(loaded.model, loaded.action_stats, loaded.planning.cem_config())",
            *frames,
            "plan = planner.plan(planner.encode(start[None])[0], planner.encode(goal[None])[0])",
            "print(plan.actions.shape, plan.cost)  # raw actions in [-1, 1], predicted cost",
        ]
    )


def _get_started_lines(env: str, sample: bool, resolution: int) -> list[str]:
    return [
        "",
        "## How to get started",
        "",
        "From the repository's root, with the package installed (`make install`):",
        "",
        "```python",
        get_started_code(env, sample, resolution),
        "```",
        "",
        "`loaded.planning` holds the model's default planner (Evaluation); the plan starts from "
        "one frame. To plan and act in the simulator, replanning: `lewm eval --checkpoint "
        f"{SNIPPET_FOLDER.format(env=env)} --episodes 5`.",
    ]


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
    """The markdown model card of a shipped model, metadata block first.

    `data_info`: the collection recipe of its data (`RECIPE_KEYS` of `dataset_info`);
    `decoder`: the parsed `decoder.json` beside it; `probe` / `surprise`: the JSON of
    `lewm probe` / `lewm surprise` on these weights; `sample`: its sample.json.
    """
    env = config.get("data", {}).get("env", "?")
    title = ENV_TITLES.get(env, env)
    preset = config.get("train", {}).get("preset", "?")
    resolution = config["model"]["image_size"]
    default = default_eval(evals, planning_defaults(config))
    lines = [
        card_metadata(env),
        f"# LeWM `{preset}` model for {title} (`{env}`)",
        "",
        *_details_lines(config, params, title),
        *card_results.decoder_lines(decoder),
        *_uses_lines(env, title, resolution),
        *_limitations_lines(env, title, probe, evals, default, config["model"]["history"]),
        *_get_started_lines(env, sample is not None, resolution),
        *card_results.training_lines(config, train_summary, data_info),
        "",
        "## Evaluation",
        *card_results.planning_lines(env, title, config, evals),
        *card_results.analysis_lines(probe, surprise),
        *(sample_card_lines(sample, level=3) if sample else []),
        "",
        "## Citation",
        "",
        "```bibtex",
        paper.bibtex(),
        "```",
    ]
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
