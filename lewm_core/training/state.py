"""The training state file (`trainer_state.safetensors`) and what a resume repairs.

One atomic safetensors file holds everything an exact resume needs:

    model.<name>             the model's state dict (weights and BatchNorm buffers)
    opt.<i>.<name>           AdamW's state of parameter i (exp_avg, exp_avg_sq, step)
    rng.torch[.rank<r>]      the torch CPU RNG of rank r (rank 0 without suffix)
    rng.cuda[.rank<r>]       the CUDA RNG of rank r, on a GPU run
    metadata "trainer"       JSON {"step": s, "config": the TrainConfig as a dict}

The data order needs no state: it is a function of the seed and the step
(`batches.step_batch_indices`). On resume the metrics file is cut back to the checkpoint's step
(a row cut short by a kill is dropped too), and a model file one checkpoint older than the state
is rewritten (`repair_model_files` in the trainer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lewm_core.atomic import atomic_path
from lewm_core.errors import UserError
from lewm_core.folders import CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE
from lewm_core.training.config import TrainConfig


def resume_config(out: str | os.PathLike) -> TrainConfig:
    """The training config of the run in folder `out`, as its last checkpoint saved it.

    Read from `trainer_state.safetensors`, the file `--resume` continues from (its metadata
    holds the config), not from `config.json`: a run killed while writing its first checkpoint
    may have the one without the other. `out` is set to the folder given, so a run folder that
    was moved or copied resumes where it is, not in the folder it was first trained in.
    """
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise UserError(f"nothing to resume in {out} (no {STATE_FILE}); drop --resume")
    try:
        saved = read_meta(path)["config"]
        cfg = TrainConfig.from_dict(saved)
        cfg.validate()
    except Exception as e:  # noqa: BLE001 - any damage means the same thing to the user
        raise UserError(f"{path} is damaged ({str(e)[:120]}); start a new run") from None
    cfg.out = str(out)
    return cfg


def read_meta(path: Path) -> dict:
    """The "trainer" metadata of a state file: {"step": ..., "config": {...}}."""
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["trainer"])


def saved_step(out: Path) -> int:
    """The step of the state file in run folder `out` (0 if there is none)."""
    path = out / STATE_FILE
    if not path.exists():
        return 0
    return int(read_meta(path)["step"])


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a state file; UserError if it does not read."""
    try:
        meta = read_meta(path)
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any damage means the same thing to the user
        raise UserError(f"{path} is damaged ({e}); start a new run") from None
    return tensors, meta


def state_tensors(
    model: torch.nn.Module, opt: torch.optim.Optimizer, rng: dict[str, list[torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """The tensors of a state file. `rng[key]` holds every rank's state in rank order."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    for key, states in rng.items():  # rank 0 under `key`, rank r under `key.rank<r>`
        for r, state in enumerate(states):
            tensors[key if r == 0 else f"{key}.rank{r}"] = state
    return tensors


def state_metadata(step: int, config: dict) -> dict[str, str]:
    """The safetensors metadata of a state file at `step`."""
    return {"trainer": json.dumps({"step": step, "config": config})}


def restore(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    rank: int,
    device: torch.device,
    rank_seed: int,
) -> int:
    """Load model, optimiser and this rank's RNG from a state file's tensors; returns the step.

    A rank the saving run did not have (resumed on more processes) seeds its RNG with
    `rank_seed + step`. Raises RuntimeError, ValueError, KeyError, TypeError or IndexError when
    the tensors do not fit the model and optimiser.
    """
    step = int(meta["step"])
    if step < 0:
        raise ValueError(f"negative step {step}")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state)  # strict: names and shapes must match
    params = [p for g in opt.param_groups for p in g["params"]]
    opt_state = opt.state_dict()
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            p = params[int(i)]
            if name in ("exp_avg", "exp_avg_sq") and v.shape != p.shape:
                raise ValueError(f"'{key}' has shape {tuple(v.shape)}, not {tuple(p.shape)}")
            opt_state["state"].setdefault(int(i), {})[name] = v.to(device)
    opt.load_state_dict(opt_state)
    suffix = f".rank{rank}" if rank else ""
    if f"rng.torch{suffix}" in tensors:
        torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    else:  # a rank the saving run did not have
        torch.manual_seed(rank_seed + step)
    if device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], device)
    return step


def _metrics_step(line: str) -> int | None:
    """The step of one metrics.jsonl line, or None if the line is not a complete JSON row."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, int) else None


def trim_metrics(out: Path, step: int) -> list[str]:
    """Cut `metrics.jsonl` back to the rows of steps up to `step` (atomically); returns them.

    The resumed run logs the later steps again. A line that does not parse (a write cut short:
    disk full, power loss) is dropped too.
    """
    path = out / METRICS_FILE
    rows = path.read_text(errors="replace").splitlines() if path.exists() else []
    kept = [r for r in rows if (s := _metrics_step(r)) is not None and s <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(r + "\n" for r in kept))
    return kept


def logged_eval(rows: list[str], step: int) -> dict | None:
    """The validation row logged at `step` among metrics `rows`, without step and epoch."""
    found = None
    for r in rows:
        row = json.loads(r)
        if row.get("step") == step and "val_pred_loss" in row:
            found = {k: v for k, v in row.items() if k not in ("step", "epoch")}
    return found


def model_files_step(out: Path) -> int | None:
    """The step recorded in config.json beside a model.safetensors (None if either is missing
    or unreadable)."""
    if not (out / MODEL_FILE).is_file():
        return None
    try:
        step = json.loads((out / CONFIG_FILE).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def saved_eval(out: Path, step: int) -> dict | None:
    """The evaluation config.json holds, if it is that of `step` (config.json may be one
    checkpoint older than the state, if a kill fell between the two files)."""
    try:
        saved = json.loads((out / CONFIG_FILE).read_text())
        if saved.get("step") == step and isinstance(saved.get("eval"), dict):
            return saved["eval"]
    except (OSError, ValueError, AttributeError):
        pass
    return None
