"""Why latents miss a quantity (Push-T's block angle first): probes per checkpoint, and a
supervised ceiling.

    python research/angle_probe.py --data data/pusht.h5 --checkpoints runs/a runs/b ... [--json]
    python research/angle_probe.py --data data/pusht.h5 --supervised-steps 600 [--json]
    python research/angle_probe.py --data data/cube.h5 --quantity gripper_opening ...

For each checkpoint: Pearson r of linear (ridge) and MLP probes of the target quantity (an
angle as its cos and sin; default: Push-T's block angle; with --minus B, the quantity minus
quantity B), read from the 192-d latent, from the encoder output before the projector and from
the latent together with the true values of the env's other quantities, and the linear r of
the env's other quantities, on held-out frames (8,000 train / 3,000 test frames from disjoint
episodes, `lewm_core.analysis.probing`). Once per run: the same probes from the other quantities
alone ("state_floor"), the floor of a latent that holds the target only through them; a latent that
holds it on its own lifts "latent_and_rest" above that floor.
With --supervised-steps N, the `lab` encoder (and projector) is trained from scratch with a
linear head to regress the target on the same train frames (AdamW, lr 1e-3, batch 64, seed 0)
and scored on the test frames: the ceiling that says whether the pixels and the architecture
carry it. The last stdout line with --json is one JSON object: {"quantity": name, "minus":
name or null, "state_floor": {"linear", "mlp"}, "checkpoints": [{...}], "supervised": {...}
or null}; the target's keys are named "target_*".
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from lewm_core.analysis import frames, probing
from lewm_core.data.dataset import open_dataset
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import load_model
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.model import LeWM

TRAIN_FRAMES, TEST_FRAMES = 8000, 3000


def load_frames(data: str) -> tuple[np.ndarray, dict[str, np.ndarray], int, list[str]]:
    """Frames (N, H, W, 3) uint8, named state columns {name: (N, k)}, the number of train frames
    and the names of the angle quantities."""
    with open_dataset(data) as f:
        train, test = frames.sample_split_rows(f, TRAIN_FRAMES, TEST_FRAMES, 0, 0.1, 0)
        rows = np.concatenate([train, test])
        pixels = frames.read_rows(f["pixels"], rows)
        state = frames.read_rows(f["state"], rows)
        quantities, angles = frames.dataset_quantities(f)
    cols = {name: state[:, s : s + n] for name, (s, n) in quantities.items()}
    return pixels, cols, len(train), list(angles)


def targets(
    cols: dict[str, np.ndarray], quantity: str, angles: list[str], minus: str | None = None
) -> np.ndarray:
    """(N, k) regression targets of `quantity`: (cos, sin) of an angle, else its columns; with
    `minus`, the quantity relative to another of the same width (Cube: cube_pos - ee_pos)."""
    for name in (quantity, minus):
        if name is not None and name not in cols:
            raise UserError(f"the data has no quantity '{name}'; choose one of {sorted(cols)}")
    if quantity in angles:
        if minus is not None:
            raise UserError("--minus takes a position-like quantity, not an angle")
        theta = cols[quantity][:, 0]
        return np.stack([np.cos(theta), np.sin(theta)], 1)
    if minus is None:
        return cols[quantity]
    if minus in angles or cols[minus].shape[1] != cols[quantity].shape[1]:
        raise UserError(f"--minus {minus} must be a quantity of the same width as {quantity}")
    return cols[quantity] - cols[minus]


def rest_of_state(cols: dict[str, np.ndarray], quantity: str, angles: list[str]) -> np.ndarray:
    """(N, F) the true values of every quantity but `quantity` (angles as cos, sin)."""
    rest = probing.rest_of_state({q: targets(cols, q, angles) for q in cols}, quantity)
    if rest is None:
        raise UserError(f"the data has no quantity besides '{quantity}' to compare with")
    return rest


def probe_r(kind: str, z: np.ndarray, y: np.ndarray, n_train: int) -> float:
    """Pearson r (mean over parts) of a `kind` probe from features z (N, F) to targets y (N, k)."""
    y_train, y_test = probing.standardise(y[:n_train], y[n_train:])
    return round(probing.fit_probe(kind, z[:n_train], y_train, z[n_train:], y_test)["r"], 3)


def features(model: LeWM, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The latent (N, D) from `frames.encode_frames` and, caught on the way by a hook on the
    projector, the encoder output before it (N, enc_width)."""
    pre: list[np.ndarray] = []
    hook = model.projector.register_forward_hook(
        lambda _module, inputs, _output: pre.append(inputs[0].float().cpu().numpy())
    )
    try:
        latent = frames.encode_frames(model, pixels)
    finally:
        hook.remove()
    return {"latent": latent, "pre_projector": np.concatenate(pre)}


def checkpoint_row(
    path: str, pixels, cols, n_train: int, quantity: str, angles, y: np.ndarray, rest: np.ndarray
) -> dict:
    """Probes of one checkpoint: targets y (N, k) from its features, and from its latent beside
    `rest` (N, F), the true values of the other quantities."""
    feats = features(load_model(path).model, pixels)
    row: dict = {"checkpoint": path}
    for where, z in feats.items():
        for kind in ("linear", "mlp"):
            row[f"target_{kind}_{where}"] = probe_r(kind, z, y, n_train)
    both = np.concatenate([feats["latent"], rest], 1)
    for kind in ("linear", "mlp"):  # what the latent adds to the rest of the true state
        row[f"target_{kind}_latent_and_rest"] = probe_r(kind, both, y, n_train)
    for name in cols:
        if name != quantity:
            y_other = targets(cols, name, angles)
            row[f"{name}_linear"] = probe_r("linear", feats["latent"], y_other, n_train)
    return row


def supervised_ceiling(pixels, y: np.ndarray, n_train: int, steps: int) -> dict:
    """Train the lab encoder + projector + a linear head on the targets y (N, k); r on the
    test frames."""
    torch.manual_seed(0)
    model = LeWM(ModelConfig.preset("lab"))
    head = torch.nn.Linear(model.cfg.latent_dim, y.shape[1])
    params = [*model.encoder.parameters(), *model.projector.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    y = torch.tensor(y, dtype=torch.float32)
    x = torch.from_numpy(pixels)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (64,), generator=gen)
        loss = ((head(model.encode(x[idx])) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = frames.encode_frames(model, pixels[n_train:])
    with torch.no_grad():
        pred = head(torch.from_numpy(z)).numpy()
    r = float(probing.pearson_r(pred, y[n_train:].numpy()).mean())
    return {"steps": steps, "r_test": round(r, 3), "final_train_mse": round(loss.item(), 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoints", nargs="*", default=[])
    p.add_argument("--quantity", default="block_angle", help="the state quantity to probe")
    p.add_argument("--minus", help="probe the quantity relative to this one (Cube: --minus ee_pos)")
    p.add_argument("--supervised-steps", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.checkpoints and args.supervised_steps <= 0:
        p.error("give --checkpoints and/or --supervised-steps N (N > 0)")
    try:
        pixels, cols, n_train, angles = load_frames(args.data)
        y = targets(cols, args.quantity, angles, args.minus)
        rest = rest_of_state(cols, args.quantity, angles)
        floor = {kind: probe_r(kind, rest, y, n_train) for kind in ("linear", "mlp")}
        print(f"from the rest of the true state: {json.dumps(floor)}", flush=True)
        rows = []
        for path in args.checkpoints:
            rows.append(checkpoint_row(path, pixels, cols, n_train, args.quantity, angles, y, rest))
            print(json.dumps(rows[-1]), flush=True)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sup = None
    if args.supervised_steps > 0:
        sup = supervised_ceiling(pixels, y, n_train, args.supervised_steps)
        print(f"supervised lab encoder, {sup['steps']} steps: {args.quantity} r {sup['r_test']}")
    if args.json:
        out = {"quantity": args.quantity, "minus": args.minus, "state_floor": floor}
        print(json.dumps({**out, "checkpoints": rows, "supervised": sup}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
