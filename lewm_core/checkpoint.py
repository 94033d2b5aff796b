"""Run folders: a trained world model as `config.json` + `model.safetensors` (never a pickle).

    runs/<name>/config.json        model config, training config, action statistics, data info
    runs/<name>/model.safetensors  model weights and BatchNorm statistics
    runs/<name>/optimizer.safetensors + trainer_state.json   optional, for exact resume
    runs/<name>/metrics.jsonl      one JSON object per logged step / evaluation

Every file is written atomically (temp file, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lewm_core.atomic import atomic_path, write_json
from lewm_core.config import ModelConfig
from lewm_core.data import ActionStats
from lewm_core.errors import UserError
from lewm_core.model import LeWM

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically save a flat dict of tensors as safetensors."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file; raise UserError if missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; train a model first with `lewm train`")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"{path} is not a valid safetensors file ({str(e).splitlines()[0][:80]}); "
            "retrain or copy the run folder again"
        ) from None


@dataclass
class LoadedModel:
    """A world model loaded from a run folder, in eval mode."""

    model: LeWM
    config: ModelConfig
    action_stats: ActionStats
    meta: dict
    path: Path

    @property
    def env_name(self) -> str:
        return self.meta.get("data", {}).get("env", "")


def save_model(
    run_dir: str | os.PathLike, model: LeWM, action_stats: ActionStats, meta: dict
) -> None:
    """Write `config.json` and `model.safetensors` into `run_dir` (atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(run_dir / MODEL_FILE, model.state_dict())
    config = dict(meta)
    config["model"] = model.cfg.to_dict()
    config["action_stats"] = action_stats.to_dict()
    write_json(run_dir / CONFIG_FILE, config)


def read_config(run_dir: str | os.PathLike) -> dict:
    """The parsed `config.json` of a run folder; UserError if missing or malformed."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a run folder (no {CONFIG_FILE}); train with `lewm train`"
        )
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict) or "model" not in config or "action_stats" not in config:
            raise ValueError("missing 'model' or 'action_stats'")
        return config
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is malformed ({e}); retrain or restore the run folder") from None


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a run folder's model (eval mode) with its config and action statistics."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        cfg = ModelConfig.from_dict(config["model"])
        stats = ActionStats.from_dict(config["action_stats"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run_dir}/{CONFIG_FILE} has an invalid model config ({e})") from None
    model = LeWM(cfg)
    state = load_tensors(run_dir / MODEL_FILE)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = (missing or unexpected or wrong)[0]
        raise UserError(
            f"{run_dir}/{MODEL_FILE} does not match its config.json "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped "
            f"tensors, e.g. '{what}'); the weights belong to another model: retrain"
        )
    for k, v in state.items():
        if not torch.isfinite(v.float()).all():
            raise UserError(f"{run_dir}/{MODEL_FILE} holds NaN/Inf in '{k}'; retrain")
        if v.dtype != expected[k].dtype:
            state[k] = v.to(expected[k].dtype)
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model, cfg, stats, config, run_dir)
