"""Ship a trained run as a small model folder with a model card (`assets/models/<env>/`).

The shipped folder holds what loading and planning need, nothing for resuming:
`config.json` (model config, action statistics, data and training info), `model.safetensors`,
`eval.json` (the planning evaluation, if given) and `MODEL_CARD.md` written from those files.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

from lewm_core.atomic import atomic_path, write_bytes, write_json
from lewm_core.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    load_model,
    planning_sampling,
    read_config,
)
from lewm_core.data import dataset_info
from lewm_core.errors import UserError
from lewm_core.model import parameter_counts


def model_card(
    config: dict,
    train_summary: dict,
    evals: dict,
    params: int,
    data_info: dict | None = None,
    decoder: dict | None = None,
) -> str:
    """The markdown model card of a shipped model.

    `data_info`: `dataset_info` of its data; `decoder`: the parsed `decoder.json` beside it.
    """
    data, train = config.get("data", {}), config.get("train", {})
    lines = [
        f"# LeWM `{train.get('preset', '?')}` model for {data.get('env', '?')}",
        "",
        f"- Parameters: {params:,}; latent dim {config['model']['latent_dim']}; "
        f"input {config['model']['image_size']} px; encoder {config['model']['encoder']}.",
        f"- Data: `{data.get('path')}` ({data.get('env')}, {data.get('resolution')} px), "
        f"split by episode (validation fraction {data.get('val_fraction')}, seed "
        f"{data.get('split_seed')}).",
        f"- Training: {train_summary.get('steps')} steps, batch {train.get('batch_size')}, "
        f"AdamW lr {train.get('lr')}, weight decay {train.get('weight_decay')}, SIGReg lambda "
        f"{train.get('sigreg_weight')}, seed {train.get('seed')}; wall time "
        f"{train_summary.get('total_wall_s', train_summary.get('wall_s'))} s on this machine.",
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
            "| sampling | CEM | episodes | success | 95% CI | random policy | plan ms (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, e in evals.items():
            cem = e.get("cem", {})
            lo, hi = e["success_ci95"]
            lines.append(
                f"| {e.get('sampling', name)} | {cem.get('samples')}x{cem.get('iterations')} | "
                f"{e['episodes']} | {e['success_rate']:.0%} | {lo:.0%}-{hi:.0%} | "
                f"{e['random_success_rate']:.0%} | {e['plan_ms_median']:.0f} |"
            )
        lines += [
            "",
            "Each row: `lewm eval --checkpoint <this folder> --data <dataset> "
            "--episodes 50 --seed 0 --sampling <sampling>`.",
        ]
    else:
        lines.append("Not evaluated yet.")
    lines += [
        "",
        f"Default CEM sampling (`lewm eval`, the lab, the demo): **{planning_sampling(config)}**.",
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
    return "\n".join(lines) + "\n"


def ship(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    evals: dict[str, dict] | None = None,
    sampling: str | None = None,
) -> Path:
    """Copy a run's config and weights to `out_dir` and write its model card; return out_dir.

    A decoder trained on the run comes along; one left in `out_dir` beside other weights is
    removed (it decodes another encoder's latents). `sampling`, when given, is recorded in the
    shipped config.json as the CEM sampling the model plans with by default."""
    from decoder.train import DECODER_CONFIG, DECODER_WEIGHTS

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    loaded = load_model(run_dir)  # validates the run before anything is written
    config = read_config(run_dir)
    if sampling is not None:
        config["planning"] = {**config.get("planning", {}), "sampling": sampling}
        planning_sampling(config)  # validates before anything is written
    summary_path = run_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = out_dir / MODEL_FILE
    replaced = shipped.exists() and not filecmp.cmp(run_dir / MODEL_FILE, shipped, shallow=False)
    with atomic_path(shipped) as tmp:
        shutil.copyfile(run_dir / MODEL_FILE, tmp)
    decoder_files = (DECODER_CONFIG, DECODER_WEIGHTS)
    if replaced:
        for name in decoder_files:
            (out_dir / name).unlink(missing_ok=True)
    if all((run_dir / name).is_file() for name in decoder_files):  # trained on this run
        for name in decoder_files:
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(run_dir / name, tmp)
    write_json(out_dir / CONFIG_FILE, config)
    evals = evals or {}
    if evals:
        write_json(out_dir / "eval.json", evals)
    if summary:
        write_json(out_dir / "train_summary.json", summary)
    data_path = Path(config.get("data", {}).get("path", ""))
    data_info = dataset_info(data_path) if data_path.is_file() else None
    params = parameter_counts(loaded.model)["params_total"]
    decoder_json = out_dir / DECODER_CONFIG  # trained on the run, or on these same weights here
    decoder = json.loads(decoder_json.read_text()) if decoder_json.exists() else None
    card = model_card(config, summary, evals, params, data_info, decoder)
    write_bytes(out_dir / "MODEL_CARD.md", card.encode())
    if not (out_dir / MODEL_FILE).stat().st_size < 20e6:
        raise UserError(f"{out_dir / MODEL_FILE} is over 20 MB; ship a smaller preset")
    return out_dir
