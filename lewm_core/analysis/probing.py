"""Probing: how much of the physical state can be read off one frame's latent?

For every named quantity of the environment (the dataset's `state_quantities`, e.g. Two-Room
`agent_pos`; Push-T `agent_pos`, `agent_vel`, `block_pos`, `block_angle`) a probe is fitted from
single-frame latents z (N, D) to the quantity's values (N, k):

    linear  sklearn Ridge (alpha 1.0 by default: tiny next to N) on z-scored latents
    mlp     sklearn MLPRegressor, one hidden layer of 256, early stopping, fixed seed

Train and test frames come from disjoint episodes: the world model's own train/validation split
(`split_episodes` with the run's `val_fraction` and `split_seed`), so test frames were never
trained on. Targets are z-scored with the train frames' statistics; angles are probed as
(cos, sin). Reported per quantity: `mse` (on the standardised targets, mean over parts) and `r`
(Pearson correlation of prediction and truth, mean over parts). An *untrained* encoder of the
same architecture (fixed seed) gives the floor.

The frames come from `lewm_core.data.samples.resolve_frames`: `--data`, the model's dataset, or
(where that is not on disk) the model's held-out sample, whose episodes divide into probe-fitting
and probe-testing ones by `SAMPLE_SPLIT` (none of them was trained on).

Reading the frames and encoding them is `lewm_core.analysis.frames`, shared with t-SNE,
straightness, surprise and the decoder.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable

import numpy as np

from lewm_core.analysis.frames import (
    check_dataset_matches,
    dataset_quantities,
    encode_frames,
    read_rows,
    sample_split_rows,
    untrained_model,
)
from lewm_core.data.dataset import open_dataset
from lewm_core.data.samples import resolve_frames
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel


def pearson_r(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-column Pearson correlation of (N, k) predictions and targets: (k,).

    A column with zero variance in either array gets r = 0 (no linear relation measurable).
    """
    p = pred - pred.mean(0)
    t = true - true.mean(0)
    den = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * t).sum(0) / den
    return np.where(den > 0, r, 0.0)


# --------------------------------------------------------------------------- targets


def quantity_targets(
    state: np.ndarray, quantities: dict[str, list[int]], angles: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Split state rows (N, S) into per-quantity targets {name: (N, k)}; angles -> (cos, sin).

    An angle quantity of size s becomes 2s columns: cos of each part, then sin of each part.
    """
    out = {}
    for name, (start, size) in quantities.items():
        v = state[:, start : start + size].astype(np.float64)
        if name in angles:
            v = np.concatenate([np.cos(v), np.sin(v)], axis=1)
        out[name] = v
    return out


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both arrays (N, k) with the train array's per-column mean and std: how every probe
    here scales its latents and targets (a probe fitted elsewhere scales the same way)."""
    mean = train.mean(0)
    std = train.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    return (train - mean) / std, (test - mean) / std


# --------------------------------------------------------------------------- probes


def fit_probe(
    kind: str,
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    alpha: float = 1.0,
    hidden: int = 256,
    max_iter: int = 200,
) -> dict[str, float]:
    """Fit one probe and score it on the test frames.

    z_train (N, D), y_train (N, k), z_test (M, D), y_test (M, k); targets should already be
    standardised. `kind` is "linear" (Ridge) or "mlp" (MLPRegressor). Latents are z-scored with
    the train statistics inside. Returns {"mse": mean over parts, "r": mean Pearson r over parts}.
    """
    from scipy.linalg import LinAlgWarning
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    zs_train, zs_test = standardise(z_train, z_test)
    if kind == "linear":
        reg = Ridge(alpha=alpha)
    elif kind == "mlp":
        reg = MLPRegressor(
            hidden_layer_sizes=(hidden,),
            early_stopping=True,
            random_state=seed,
            max_iter=max_iter,
            learning_rate_init=1e-3,
            batch_size=min(256, len(z_train)),
        )
    else:
        raise ValueError(f"unknown probe kind {kind!r}; choose linear or mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", LinAlgWarning)  # near-collinear untrained latents
        reg.fit(zs_train, y_train if y_train.shape[1] > 1 else y_train[:, 0])
    pred = reg.predict(zs_test).reshape(len(zs_test), -1)
    mse = float(((pred - y_test) ** 2).mean())
    r = float(pearson_r(pred, y_test).mean())
    return {"mse": mse, "r": r}


def rest_of_state(targets: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    """(N, F) the targets {Q: (N, k)} of every quantity but `name`, side by side; None when
    `name` is the only one."""
    others = [v for other, v in targets.items() if other != name]
    return np.concatenate(others, axis=1) if others else None


def state_floor(
    targets: dict[str, np.ndarray],
    n_train: int,
    kinds: tuple[str, ...] = ("linear",),
    seed: int = 0,
    alpha: float = 1.0,
    hidden: int = 256,
) -> dict[str, dict[str, dict[str, float]]]:
    """Probes of each quantity from the true values of all the other quantities: the floor a
    latent reaches by knowing only the rest of the state.

    `targets` {name: (N, k)} as from `quantity_targets`, rows [:n_train] train, the rest test.
    A latent that holds a quantity only through its correlation with the others (Push-T's
    block angle with where the pusher and the block are) probes near this floor, not above it.
    Returns {kind: {Q: {"mse", "r"}}}; a quantity with no other quantity beside it is left out.
    """
    out: dict[str, dict[str, dict[str, float]]] = {kind: {} for kind in kinds}
    for name, y in targets.items():
        x = rest_of_state(targets, name)
        if x is None:
            continue
        y_train, y_test = standardise(y[:n_train], y[n_train:])
        for kind in kinds:
            out[kind][name] = fit_probe(
                kind, x[:n_train], y_train, x[n_train:], y_test, seed, alpha, hidden
            )
    return out


def probe(
    loaded: LoadedModel,
    data: str | os.PathLike | None = None,
    max_train: int = 20000,
    max_test: int = 5000,
    seed: int = 0,
    mlp: bool = True,
    untrained_mlp: bool = False,
    alpha: float = 1.0,
    hidden: int = 256,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Linear (and MLP) probes of every state quantity, trained model vs two floors: an untrained
    encoder, and the rest of the true state (`state_floor`).

    Encodes up to `max_train` train / `max_test` test single frames (N, H, W, 3) -> (N, D)
    with the model and with an untrained twin (seed `seed`). Returns
        {"linear": {Q: {"mse", "r"}}, "mlp": {...} (if mlp),
         "untrained": {"linear": {...}, "mlp": {...} (if untrained_mlp)},
         "state_floor": {"linear": {...}, "mlp": {...} (if mlp)} (`state_floor`),
         "train_frames", "test_frames", "data" (the file read), "data_source" and "frames_note"
         (`samples.Frames`: which file, and what it is to the model), "env", "alpha", "seed"}.
    """
    if max_train < 10 or max_test < 2:
        raise UserError("--train-frames must be at least 10 and --test-frames at least 2")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise UserError("--alpha must be a finite number >= 0")
    say = progress or (lambda _msg: None)
    frames = resolve_frames(loaded, data)
    path = frames.path
    with open_dataset(path) as f:
        check_dataset_matches(loaded, f, path)
        quantities, angles = dataset_quantities(f)
        train_rows, test_rows = sample_split_rows(f, max_train, max_test, seed, *frames.split)
        say(f"reading {len(train_rows)} train + {len(test_rows)} test frames")
        rows = np.concatenate([train_rows, test_rows])
        pixels = read_rows(f["pixels"], rows)
        state = read_rows(f["state"], rows)
        env = str(f.attrs.get("env", ""))
    n_train = len(train_rows)
    if not np.isfinite(state).all():
        raise UserError(f"dataset {path} holds NaN/Inf state values (probe targets); collect again")
    targets = quantity_targets(state, quantities, angles)
    encoders = {"trained": loaded.model, "untrained": untrained_model(loaded, seed)}
    result: dict = {"linear": {}, "untrained": {"linear": {}}}
    if mlp:
        result["mlp"] = {}
    if untrained_mlp:
        result["untrained"]["mlp"] = {}
    for which, model in encoders.items():
        say(f"encoding with the {which} encoder")
        z = encode_frames(model, pixels)
        z_train, z_test = z[:n_train], z[n_train:]
        dest = result if which == "trained" else result["untrained"]
        kinds = ["linear"] + (["mlp"] if (mlp if which == "trained" else untrained_mlp) else [])
        for name, y in targets.items():
            y_train, y_test = standardise(y[:n_train], y[n_train:])
            for kind in kinds:
                say(f"{kind} probe of {name} ({which})")
                dest[kind][name] = fit_probe(
                    kind, z_train, y_train, z_test, y_test, seed=seed, alpha=alpha, hidden=hidden
                )
    say("probes from the rest of the true state")
    result["state_floor"] = state_floor(
        targets, n_train, ("linear", "mlp") if mlp else ("linear",), seed, alpha, hidden
    )
    result.update(
        train_frames=int(n_train),
        test_frames=int(len(test_rows)),
        data=str(path),
        data_source=frames.source,
        frames_note=frames.note(n_train + len(test_rows)),
        env=env,
        alpha=alpha,
        seed=seed,
    )
    return result


def format_probe_table(result: dict) -> str:
    """A paper-style table: one row per quantity, MSE and r per probe (trained, untrained, and
    from the rest of the true state where the env has more than one quantity)."""
    cols = [("linear", result["linear"])]
    if "mlp" in result:
        cols.append(("mlp", result["mlp"]))
    cols.append(("untrained linear", result["untrained"]["linear"]))
    if "mlp" in result["untrained"]:
        cols.append(("untrained mlp", result["untrained"]["mlp"]))
    floor = result.get("state_floor", {}).get("linear")
    if floor:
        cols.append(("rest of state lin", floor))
    names = list(result["linear"])
    w = max(10, *(len(n) for n in names))
    head = f"{'quantity':<{w}}" + "".join(f" | {c:>18}" for c, _ in cols)
    sub = f"{'':<{w}}" + "".join(f" | {'MSE':>8} {'r':>9}" for _ in cols)
    lines = [head, sub, "-" * len(head)]
    for n in names:
        cells = "".join(
            f" | {d[n]['mse']:8.4f} {d[n]['r']:9.4f}" if n in d else f" | {'-':>8} {'-':>9}"
            for _, d in cols
        )
        lines.append(f"{n:<{w}}{cells}")
    return "\n".join(lines)
