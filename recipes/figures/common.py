"""What every figure shares: the budgets, the run (models, output folder, captions) and the
writers of GIF and PNG files.

A figure function takes the `Run` and records each file it writes with `Run.record(name, file,
caption, data)`; `figures.json` (`Run.write_index`) maps the name to the file, its one-line
caption (the alt text, with the settings the figure was made with) and `data`, the numbers the
figure draws, read back from what was drawn where it can be, so that a test can hold them
against their source.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from lewm_core.atomic import atomic_path, write_json  # noqa: E402
from lewm_core.envs import ENV_TITLES  # noqa: E402
from lewm_core.folders import CONFIG_FILE  # noqa: E402
from lewm_core.planning.cem_config import CEMConfig  # noqa: E402
from lewm_core.planning.evaluate import evaluate  # noqa: E402
from lewm_core.world_model.checkpoint import LoadedModel, load_model  # noqa: E402
from recipes.workshop import WorkshopSettings  # noqa: E402

INDEX_FILE = "figures.json"
ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "assets" / "models"
# The shipped model folder of each of the paper's tasks, in its order (Push-T: the reference
# task's model; the lab's v0 Push-T model is shown beside them only as a rollout).
PUSH_MODEL = "pusht-v1"
TASK_MODELS: tuple[str, ...] = ("tworoom", "reacher", PUSH_MODEL, "cube")
# The planning protocol's step budget and goal distance: `lewm eval`'s own defaults.
PROTOCOL: dict[str, int] = {
    k: inspect.signature(evaluate).parameters[k].default for k in ("budget", "goal_offset")
}
DPI = 100
GIF_SCALE = 3  # 64 px frames drawn 192 px wide
HERO_SCALE = 2  # four tasks in a row: 128 px each
GIF_FPS = 8


@dataclass(frozen=True)
class Budget:
    """How much work each measured figure does. The defaults make the committed figures in
    minutes on two CPU cores; `QUICK` is the test's (tiny CEM budgets, few episodes)."""

    # CEM of the rollouts and the failed push: the workshop's plan (published: 300 x 30)
    plan_samples: int = WorkshopSettings.samples
    plan_iterations: int = WorkshopSettings.iterations
    tries: int = 4  # tasks planned per model until one reaches its goal (the GIFs)
    failure_tries: int = 6  # Push-T tasks planned until one misses its goal
    sweep: tuple[tuple[int, int], ...] = ((10, 3), (30, 5), (100, 10), (300, 10))  # (N, iter.)
    sweep_episodes: int = 6  # tasks per CEM budget of the sweep
    collapse_episodes: int = 40  # Two-Room episodes of the collapse demo's dataset
    collapse_steps: int = 100  # training steps per run of the collapse demo
    collapse_batch: int = 16  # clips per training step
    collapse_every: int = 10  # a validation row (embedding std, rank) every this many steps
    surprise_episodes: int = 8
    tsne_points: int = 1000


QUICK = Budget(
    plan_samples=8,
    plan_iterations=2,
    tries=1,
    failure_tries=2,
    sweep=((4, 1), (8, 2)),
    sweep_episodes=1,
    collapse_episodes=6,
    collapse_steps=4,
    collapse_batch=8,
    collapse_every=2,
    surprise_episodes=2,
    tsne_points=60,
)


def cem_budget(samples: int, iterations: int) -> dict[str, int]:
    """CEM samples, iterations and elites for a reduced budget: the elites keep the published
    fraction of the samples (30 of 300), at least 2."""
    ratio = CEMConfig.elites / CEMConfig.samples
    elites = min(samples, max(2, round(samples * ratio)))
    return {"samples": samples, "iterations": iterations, "elites": elites}


def budget_words(samples: int, iterations: int) -> str:
    """ "CEM 100 samples x 10 iterations (10 elites)"."""
    elites = cem_budget(samples, iterations)["elites"]
    return f"CEM {samples} samples x {iterations} iterations ({elites} elites)"


def published_budget_words() -> str:
    """The published CEM budget in words, from `CEMConfig`'s defaults."""
    return f"{CEMConfig.samples} x {CEMConfig.iterations}"


@dataclass
class Run:
    """One `make figures`: where the files go, the models, the budget, the captions so far."""

    out: Path
    budget: Budget
    models: Sequence[Path]  # the four tasks' model folders, in the paper's order
    push_model: Path  # the Push-T model among them (the failed push)
    analysis_model: Path  # the model of the budget sweep, the surprise and the t-SNE
    seed: int = 0
    entries: dict[str, dict] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # what figures share: models, planned tasks

    def record(self, name: str, file: Path, caption: str, data: dict | None = None) -> None:
        """Add figure `name` (written to `file`) with its caption and drawn numbers."""
        self.entries[name] = {
            "file": file.relative_to(self.out).as_posix(),
            "caption": caption,
            "data": data or {},
        }

    def write_index(self) -> Path:
        """figures.json: the entries of an earlier run (other figures) updated with this run's."""
        path = self.out / INDEX_FILE
        old = json.loads(path.read_text()) if path.is_file() else {}
        write_json(path, {**old, **self.entries})
        return path

    def model(self, folder: Path) -> LoadedModel:
        """The model of `folder`, loaded once per run."""
        key = ("model", folder)
        if key not in self.cache:
            self.cache[key] = load_model(folder)
        return self.cache[key]


def title(loaded: LoadedModel) -> str:
    """The task's name for people ("Two-Room")."""
    return ENV_TITLES.get(loaded.env_name, loaded.env_name)


def title_of(folder: Path) -> str:
    """The task's name for people of a model folder, from its config.json alone."""
    env = config_of(folder)["data"]["env"]
    return ENV_TITLES.get(env, env)


def shown(path: Path) -> str:
    """`path` as a caption names it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def config_of(folder: Path) -> dict:
    """A model folder's config.json."""
    return json.loads((Path(folder) / CONFIG_FILE).read_text())


# --------------------------------------------------------------------------- image files


def save_png(fig: Figure, path: Path) -> Path:
    """Write a matplotlib figure as a PNG (atomically, no time stamp in it)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) -> (H * scale, W * scale, 3), each pixel a square."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def framed(frame: np.ndarray, colour: tuple[int, int, int] | None, width: int = 3) -> np.ndarray:
    """`frame` (H, W, 3) with a border of `colour` drawn over its edge (None: unchanged)."""
    if colour is None:
        return frame
    out = frame.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def labelled(image: np.ndarray, text: str, height: int = 18) -> np.ndarray:
    """`image` (H, W, 3) under a white strip of `height` pixels holding `text`."""
    strip = Image.new("RGB", (image.shape[1], height), "white")
    ImageDraw.Draw(strip).text((3, 2), text, fill=(30, 30, 30), font=font())
    return np.concatenate([np.asarray(strip), image], axis=0)


@functools.cache
def font() -> ImageFont.FreeTypeFont:
    """Pillow's own font at a size that reads over a 64 px frame drawn 3 times larger."""
    return ImageFont.load_default(size=12)


def hstack(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of one height side by side with white gaps."""
    h = images[0].shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts = [p for image in images for p in (image, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def vstack(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of one width one above the other with white gaps."""
    w = images[0].shape[1]
    spacer = np.full((gap, w, 3), 255, np.uint8)
    parts = [p for image in images for p in (image, spacer)][:-1]
    return np.concatenate(parts, axis=0)


def save_gif(frames: Sequence[np.ndarray], path: Path, hold_last: float = 1.5) -> Path:
    """Write frames (each (H, W, 3) uint8) as a looping GIF at `GIF_FPS`, the last one held
    `hold_last` seconds, in one shared palette of at most 128 colours (atomically)."""
    palette_frames = [*frames[:: max(1, len(frames) // 8)], frames[-1]]  # the last one's border
    mosaic = Image.fromarray(np.concatenate(palette_frames, axis=0))
    palette = mosaic.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    images = [
        Image.fromarray(np.ascontiguousarray(f)).quantize(palette=palette, dither=Image.Dither.NONE)
        for f in frames
    ]
    step_ms = round(1000 / GIF_FPS)
    durations = [step_ms] * (len(images) - 1) + [round(1000 * hold_last)]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            disposal=1,
        )
    return path
