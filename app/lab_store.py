"""Where the lab keeps things, without Streamlit: folders, user-typed names, model discovery.

Shared by the Streamlit lab (``models.py`` re-exports all of it and adds the cached loaders) and
the Gradio demo (``gradio_app.py``), so both honour the same environment variables:
    LEWM_ASSETS_DIR  shipped models, <dir>/<env>/{config.json, model.safetensors, MODEL_CARD.md}
    LEWM_RUNS_DIR    the user's training runs, <dir>/<name>/
    LEWM_DATA_DIR    datasets, <dir>/<name>.h5
    LEWM_APP_THREADS torch threads for the app's own model work (default: half the cores)
    LEWM_PUBLIC      1: public mode, for a server shared by visitors (app/lab_public.py): the runs
                     and data folders are a scratch folder per browser session (see `set_scratch`)
    LEWM_PUBLIC_JOBS training jobs at once across every visitor in public mode (default 1, 0-4)
A name typed by the user becomes a path only through `run_path` / `dataset_path`, which accept a
plain name (letters, digits, `.`, `_`, `-`) and check the result lies inside its folder.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from decoder import DECODER_FILES
from lewm_core.envs import ENV_TITLES
from lewm_core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


PUBLIC_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
PUBLIC_JOBS_DEFAULT, PUBLIC_JOBS_MAX = 1, 4


def public_mode() -> bool:
    """Is LEWM_PUBLIC on (1, true, yes; off: 0, false, no or unset)? UserError otherwise."""
    value = os.environ.get("LEWM_PUBLIC", "").strip().lower()
    if value and value not in PUBLIC_VALUES:
        raise UserError(f"LEWM_PUBLIC={value[:20]!r} is neither 1 (public mode) nor 0; set one")
    return PUBLIC_VALUES.get(value, False)


def public_job_limit() -> int:
    """LEWM_PUBLIC_JOBS: training jobs at once across all visitors in public mode (0 = none)."""
    value = os.environ.get("LEWM_PUBLIC_JOBS", "").strip()
    if not value:
        return PUBLIC_JOBS_DEFAULT
    if not value.isdigit() or int(value) > PUBLIC_JOBS_MAX:
        raise UserError(
            f"LEWM_PUBLIC_JOBS={value[:20]!r}: give the number of training jobs at once, "
            f"0 to {PUBLIC_JOBS_MAX} (default {PUBLIC_JOBS_DEFAULT})"
        )
    return int(value)


_scratch: Callable[[], Path] | None = None
_process_scratch: Path | None = None


def set_scratch(provider: Callable[[], Path] | None) -> None:
    """In public mode, `provider()` names the current visitor's scratch folder: runs and data
    live in its runs/ and data/. Without a provider (the Gradio demo, a script) they live in one
    temporary folder of this process, deleted at exit; never in the shared folders."""
    global _scratch
    _scratch = provider


def _public_folder(sub: str) -> Path:
    global _process_scratch
    if _scratch is not None:
        base = _scratch()
    else:
        if _process_scratch is None:
            _process_scratch = Path(tempfile.mkdtemp(prefix="lewm-public-"))
            atexit.register(shutil.rmtree, _process_scratch, ignore_errors=True)
        base = _process_scratch
    path = base / sub
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _folder(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value).resolve() if value else (ROOT / default).resolve()


def assets_dir() -> Path:
    """The shipped models (read only, also in public mode)."""
    return _folder("LEWM_ASSETS_DIR", "assets/models")


def runs_dir() -> Path:
    """The user's runs: LEWM_RUNS_DIR or runs/; in public mode the visitor's scratch runs/."""
    return _public_folder("runs") if public_mode() else _folder("LEWM_RUNS_DIR", "runs")


def data_dir() -> Path:
    """Datasets: LEWM_DATA_DIR or data/; in public mode the visitor's scratch data/."""
    return _public_folder("data") if public_mode() else _folder("LEWM_DATA_DIR", "data")


def env_title(name: str) -> str:
    return ENV_TITLES.get(name, name)


# --------------------------------------------------------------------------- user-typed names
def check_name(name: str, what: str = "name") -> str:
    """`name` stripped, if it is a safe file name; else UserError saying what is allowed."""
    if not isinstance(name, str):
        raise UserError(f"the {what} must be text")
    name = name.strip()
    if not name:
        raise UserError(f"the {what} is empty; type one, e.g. tworoom-small")
    if "\x00" in name or "/" in name or "\\" in name or ".." in name or not NAME_RE.match(name):
        raise UserError(
            f"'{name[:80]}' is not a valid {what}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no slashes, no '..')"
        )
    return name


def _inside(folder: Path, leaf: str) -> Path:
    path = (folder / leaf).resolve()
    if path.parent != folder.resolve():
        raise UserError(f"'{leaf}' would leave the folder {folder}; choose a plain name")
    return path


def run_path(name: str) -> Path:
    """runs/<name> for a user-typed run name (UserError if the name is unsafe)."""
    return _inside(runs_dir(), check_name(name, "run name"))


def dataset_path(name: str) -> Path:
    """data/<name>.h5 for a user-typed dataset name (with or without the .h5 suffix)."""
    name = check_name(name, "dataset name")
    if name.endswith(".h5"):
        name = check_name(name[:-3], "dataset name")
    return _inside(data_dir(), name + ".h5")


# --------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class ModelEntry:
    """A model folder the lab can load: a shipped model or a user run."""

    key: str  # "shipped:<folder>" or "run:<folder>" (stable; used in the URL)
    path: Path
    source: str  # "shipped" | "run"
    env: str  # "" when the config does not say
    step: int | None

    @property
    def label(self) -> str:
        where = "shipped" if self.source == "shipped" else "your run"
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.path.name} ({env_title(self.env) or '?'}, {where}{step})"


def _read_config(folder: Path) -> dict | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) else None


def discover_models() -> list[ModelEntry]:
    """Shipped models first, in the tasks' order (Two-Room, the clearest demo, is the default),
    then runs by name; folders with config.json + model.safetensors only."""
    from lewm_core.envs import ENV_NAMES

    found: list[ModelEntry] = []
    for source, folder in (("shipped", assets_dir()), ("run", runs_dir())):
        if not folder.is_dir():
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not (sub / "model.safetensors").is_file():
                continue
            config = _read_config(sub)
            if config is None:
                continue
            data = config.get("data") if isinstance(config.get("data"), dict) else {}
            step = config.get("step")
            found.append(
                ModelEntry(
                    key=f"{source}:{sub.name}",
                    path=sub,
                    source=source,
                    env=str(data.get("env", "")),
                    step=step if isinstance(step, int) else None,
                )
            )
    order = {name: i for i, name in enumerate(ENV_NAMES)}
    shipped = [e for e in found if e.source == "shipped"]
    shipped.sort(key=lambda e: (order.get(e.env, len(order)), e.path.name))
    return shipped + [e for e in found if e.source != "shipped"]


def list_runs() -> list[Path]:
    """Run folders under runs/ (any folder: a run being trained may have no model yet)."""
    folder = runs_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_datasets() -> list[Path]:
    """The .h5 files in data/ (not the temporaries of a collection in progress)."""
    folder = data_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.h5") if p.is_file() and not p.name.startswith("."))


# --------------------------------------------------------------------------- loading
def set_torch_threads() -> None:
    """Use half the cores for the app's own model work (a training job may hold the rest).

    Override with LEWM_APP_THREADS. Oversubscribed cores make torch many times slower.
    """
    import torch

    want = os.environ.get("LEWM_APP_THREADS")
    try:
        n = int(want) if want else max(1, (os.cpu_count() or 2) // 2)
    except ValueError:
        n = 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(max(1, n))


def load_model_readonly(path: str | os.PathLike):
    """`lewm_core.world_model.checkpoint.load_model(path)` with every parameter frozen (shared
    read-only)."""
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(path)
    for p in loaded.model.parameters():
        p.requires_grad_(False)  # shared read-only: nothing trains this object
    return loaded


# --------------------------------------------------------------------------- decoders
def has_decoder(path: str | os.PathLike) -> bool:
    """Does the model folder hold a trained visualisation decoder?"""
    return all((Path(path) / name).is_file() for name in DECODER_FILES)


def can_train_decoder(entry: ModelEntry) -> bool:
    """Only the user's runs get a decoder written into their folder (shipped models stay as is)."""
    return entry.source == "run" and entry.path.parent == runs_dir()
