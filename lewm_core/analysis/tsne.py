"""t-SNE of single-frame latents, coloured by a state quantity, with a trustworthiness score.

N frames are sampled (seeded) from the whole dataset, encoded to latents (N, D) and embedded in
2-D with openTSNE (`random_state=seed`, `n_jobs=1`, PCA initialisation: the same seed gives the
same map). `trustworthiness` (sklearn, `n_neighbors` 10) in [0, 1] measures how well the map
keeps each point's latent-space neighbours; 1 = every 2-D neighbour is a latent neighbour.
The colour of a point is a state quantity: a scalar, one component of a vector (`agent_pos[0]`
or `component=0`), or the vector's Euclidean norm (`component="norm"`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lewm_core.analysis.frames import (
    check_dataset_matches,
    dataset_quantities,
    encode_frames,
    read_rows,
    untrained_model,
)
from lewm_core.atomic import atomic_path
from lewm_core.data.dataset import open_dataset
from lewm_core.data.samples import resolve_frames
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel


def parse_color(
    color: str, component: int | str | None, quantities: dict[str, list[int]]
) -> tuple[str, int | str]:
    """Resolve a colouring spec to (quantity name, component index or "norm").

    `color` is a quantity name, optionally with an index (`agent_pos[1]`); `component` (an int,
    a digit string or "norm") overrides the default component 0. UserError names the choices.
    """
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*(\d+)\s*\])?\s*", color or "")
    name = m.group(1) if m else color
    if not m or name not in quantities:
        raise UserError(
            f"unknown quantity '{color}' for --color; choose one of {', '.join(quantities)} "
            "(optionally with an index, e.g. agent_pos[1])"
        )
    size = quantities[name][1]
    comp: int | str = 0
    if m.group(2) is not None:
        comp = int(m.group(2))
    if component is not None:
        if isinstance(component, str) and component.strip().lower() == "norm":
            comp = "norm"
        else:
            try:
                comp = int(component)
            except (TypeError, ValueError):
                raise UserError(
                    f"--component must be an index or 'norm', got '{component}'"
                ) from None
    if isinstance(comp, int) and not 0 <= comp < size:
        raise UserError(
            f"{name} has {size} component(s); choose an index in 0..{size - 1} or 'norm'"
        )
    return name, comp


def color_values(
    state: np.ndarray, quantities: dict[str, list[int]], name: str, component: int | str
) -> np.ndarray:
    """Colour values (N,) from state rows (N, S): one component of `name` or its norm."""
    start, size = quantities[name]
    v = state[:, start : start + size].astype(np.float64)
    if component == "norm":
        return np.linalg.norm(v, axis=1)
    return v[:, int(component)]


def run_tsne(
    latents: np.ndarray, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1
) -> np.ndarray:
    """openTSNE map of latents (N, D) -> coordinates (N, 2) float64 (repeatable for a seed)."""
    from openTSNE import TSNE

    n = len(latents)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        initialization="pca",
        random_state=seed,
        n_jobs=n_jobs,
        verbose=False,
    )
    return np.asarray(tsne.fit(np.asarray(latents, np.float64)), dtype=np.float64)


def trust(latents: np.ndarray, coords: np.ndarray, n_neighbors: int = 10) -> float:
    """sklearn trustworthiness of a 2-D map (N, 2) of latents (N, D), in [0, 1]."""
    from sklearn.manifold import trustworthiness

    k = int(min(n_neighbors, max(1, len(latents) // 2 - 1)))
    return float(trustworthiness(latents, coords, n_neighbors=k))


def tsne_latents(
    loaded: LoadedModel,
    data: str | os.PathLike | None = None,
    points: int = 2000,
    seed: int = 0,
    color: str = "agent_pos",
    component: int | str | None = None,
    perplexity: float = 30.0,
    n_neighbors: int = 10,
    untrained: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """t-SNE of `points` sampled frames' latents.

    Returns {"coords": (N, 2), "rows": (N,) dataset row indices, "color": (N,) values,
    "color_name": e.g. "agent_pos[0]", "trustworthiness": float, "points", "seed", "perplexity",
    "n_neighbors", "data", "data_source", "frames_note" (`samples.Frames`), and with
    `untrained` also "untrained_coords" (N, 2) and "untrained_trustworthiness"}.
    """
    if points < 10:
        raise UserError(f"--points must be at least 10 (got {points})")
    if perplexity <= 0:
        raise UserError("--perplexity must be positive")
    if n_neighbors < 1:
        raise UserError(f"--neighbors must be at least 1 (got {n_neighbors})")
    say = progress or (lambda _msg: None)
    frames = resolve_frames(loaded, data)
    path = frames.path
    with open_dataset(path) as f:
        check_dataset_matches(loaded, f, path)
        quantities, _ = dataset_quantities(f)
        name, comp = parse_color(color, component, quantities)
        n_rows = int(f["pixels"].shape[0])
        rng = np.random.default_rng([seed, 23])
        rows = np.sort(rng.choice(n_rows, size=min(points, n_rows), replace=False))
        say(f"reading {len(rows)} frames")
        pixels = read_rows(f["pixels"], rows)
        state = read_rows(f["state"], rows)
    say("encoding")
    z = encode_frames(loaded.model, pixels)
    say("t-SNE")
    coords = run_tsne(z, seed, perplexity)
    label = name if quantities[name][1] == 1 and comp == 0 else f"{name}[{comp}]"
    if comp == "norm":
        label = f"|{name}|"
    result = {
        "coords": coords,
        "rows": rows,
        "color": color_values(state, quantities, name, comp),
        "color_name": label,
        "trustworthiness": trust(z, coords, n_neighbors),
        "points": int(len(rows)),
        "seed": seed,
        "perplexity": perplexity,
        "n_neighbors": n_neighbors,
        "data": str(path),
        "data_source": frames.source,
        "frames_note": frames.note(len(rows)),
    }
    if untrained:
        say("untrained encoder")
        zu = encode_frames(untrained_model(loaded, seed), pixels)
        cu = run_tsne(zu, seed, perplexity)
        result["untrained_coords"] = cu
        result["untrained_trustworthiness"] = trust(zu, cu, n_neighbors)
    return result


def write_tsne(result: dict, out: str | os.PathLike) -> Path:
    """Write a `tsne_latents` result as .csv (row,x,y,color) or .npz (all arrays), atomically."""
    out = Path(out)
    if out.suffix not in (".csv", ".npz"):
        raise UserError(f"--out {out} must end in .csv or .npz")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    with atomic_path(out) as tmp:
        if out.suffix == ".npz":
            arrays = {
                k: np.asarray(result[k])
                for k in ("coords", "rows", "color", "untrained_coords")
                if k in result
            }
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays, color_name=np.asarray(result["color_name"]))
        else:
            data = np.column_stack(
                [result["rows"], result["coords"][:, 0], result["coords"][:, 1], result["color"]]
            )
            header = f"row,x,y,{result['color_name']}"
            np.savetxt(
                tmp,
                data,
                delimiter=",",
                header=header,
                comments="",
                fmt=["%d", "%.6g", "%.6g", "%.6g"],
            )
    return out
