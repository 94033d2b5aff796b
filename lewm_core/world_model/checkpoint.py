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

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from lewm_core.atomic import write_bytes, write_json
from lewm_core.data.dataset import ActionStats
from lewm_core.errors import UserError
from lewm_core.folders import CONFIG_FILE, MODEL_FILE
from lewm_core.knobs import knobs_of, same_knob
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.model import LeWM


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Atomically save a flat dict of tensors as safetensors (written and fsync'ed here).

    Not through `safetensors.torch.save_file`: it writes its own temporary `.tmpXXXXXX` beside
    the target, which a process killed mid-save leaves behind where nothing would clean it up.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_bytes(path, save(tensors, metadata=metadata))


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


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a safetensors file, from its header alone (no data
    is read); UserError if missing or damaged."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; train a model first with `lewm train`")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"{path} is not a valid safetensors file ({str(e).splitlines()[0][:80]}); "
            "retrain or copy the run folder again"
        ) from None


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state dict of `LeWM(cfg)`, built on the meta device: no memory is
    allocated, so a config that asks for an absurdly large model costs nothing to check."""
    try:
        with torch.device("meta"):
            return {k: tuple(v.shape) for k, v in LeWM(cfg).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError) as e:  # sizes no tensor can have
        raise UserError(f"the model config describes no buildable model ({e})") from None


def check_weights_match(path: Path, found: dict, expected: dict, what: str) -> None:
    """UserError if the tensors `found` in file `path` are not those `expected` by its config."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise UserError(
            f"{path} does not match its {what} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} mis-shaped tensors, e.g. '{example}'); the weights "
            "belong to another model: retrain"
        )


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

    @property
    def split(self) -> tuple[float, int]:
        """(val_fraction, split_seed) of the episode split this model was trained with
        (`split_episodes`): its held-out episodes are the val ones."""
        data = self.meta.get("data", {})
        return float(data.get("val_fraction", 0.1)), int(data.get("split_seed", 0))

    @property
    def planning(self) -> PlanningDefaults:
        """How this model plans unless told otherwise: the `planning` entry of its config.json
        (written by `lewm ship`), else the published planner from one frame."""
        return planning_defaults(self.meta)


@dataclass(frozen=True)
class PlanningDefaults:
    """A model's default CEM settings, as recorded by `lewm ship` (`lewm eval`, the lab and
    the demo start on them): the action sampling, the observed frames a plan starts from, the
    objective and the blocks executed before replanning. Each field is `CEMConfig`'s, with its
    default, help and limits."""

    sampling: str = same_knob(CEMConfig, "sampling")
    context: int = same_knob(CEMConfig, "context")
    objective: str = same_knob(CEMConfig, "objective")
    receding_horizon: int = same_knob(CEMConfig, "receding_horizon")

    def cem_config(self, **overrides) -> CEMConfig:
        """A `CEMConfig` with these defaults, where `overrides` (any CEMConfig field; None
        keeps the default) do not say otherwise; the receding horizon is capped at the
        horizon."""
        given = {k: v for k, v in overrides.items() if v is not None}
        cfg = CEMConfig(**{**self.__dict__, **given})
        cfg.receding_horizon = min(cfg.receding_horizon, cfg.horizon)
        return cfg


def planning_defaults(meta: dict) -> PlanningDefaults:
    """The default CEM settings a config.json records (`{"planning": {"sampling": ...,
    "context": ..., "objective": ..., "receding_horizon": ...}}`, each optional), checked
    against `CEMConfig`'s limits, and across fields: the context at most the model's history
    (`meta["model"]["history"]`), the receding horizon at most the default CEM horizon."""
    planning = meta.get("planning", {})
    if not isinstance(planning, dict):
        raise UserError("config.json's 'planning' entry is not an object; remove it or fix it")
    fix = " (or remove the 'planning' entry)"
    known = knobs_of(PlanningDefaults)
    unknown = sorted(set(planning) - set(known))
    if unknown:
        raise UserError(
            f"config.json's 'planning' entry has unknown keys {unknown}; remove them (known: "
            f"{', '.join(known)})"
        )
    history = meta.get("model", {}).get("history", 1)
    context = planning.get("context", PlanningDefaults.context)
    check_context(context, history, "config.json names the planning context", fix)
    receding = planning.get("receding_horizon", PlanningDefaults.receding_horizon)
    most = CEMConfig.horizon
    check_whole(receding, 1, most, "config.json names the receding horizon", fix)
    for key, value in planning.items():
        try:
            known[key].check(value, f"config.json's planning {key}")
        except UserError as e:
            raise UserError(f"{e}{fix}") from None
    return PlanningDefaults(**planning)


def check_whole(value: object, lo: int, hi: int, source: str, fix: str = "") -> int:
    """Return `value` when it is a whole number from `lo` to `hi`; else raise a UserError that
    starts with `source` (where the value came from: a flag, a config entry) and ends with
    `fix`."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(f"{source} {value!r}; use a whole number between {lo} and {hi}{fix}")
    return value


def check_context(context: object, history: int, source: str, fix: str = "") -> int:
    """Return `context` (observed frames a plan starts from) when it is a whole number from 1
    to the model's `history`; else raise a UserError naming `source` and `fix` (see
    `check_whole`). The one check of a planning context for `lewm eval`, `lewm ship` and a
    shipped config.json."""
    return check_whole(context, 1, history, source, f" (the model's history){fix}")


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
    good_stats = all(
        v.shape == (cfg.action_dim,) and np.isfinite(v).all() for v in (stats.mean, stats.std)
    )
    if not good_stats or not (stats.std > 0).all():
        raise UserError(
            f"{run_dir}/{CONFIG_FILE} has invalid action statistics (need {cfg.action_dim} finite "
            "means and positive stds); retrain or restore the run folder"
        )
    # Names and shapes first, from the file's header and a meta-device model: a config.json
    # that describes another (or an absurdly large) model fails here, before any allocation.
    path = run_dir / MODEL_FILE
    check_weights_match(path, tensor_shapes(path), expected_shapes(cfg), CONFIG_FILE)
    model = LeWM(cfg)
    state = load_tensors(path)
    expected = model.state_dict()
    for k, v in state.items():
        if v.dtype == torch.bool or v.is_complex():
            raise UserError(f"{path} holds '{k}' as {v.dtype}, not numbers; retrain")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise UserError(f"{path} holds NaN/Inf in '{k}'; retrain")
        if v.dtype != expected[k].dtype:
            state[k] = v.to(expected[k].dtype)
    model.load_state_dict(state)
    model.to(device).eval()
    planning_defaults(config)  # a bad recorded default fails at load, not at the first plan
    return LoadedModel(model, cfg, stats, config, run_dir)
