"""How far a model's own rollout drifts: multi-step prediction error relative to copying.

    python research/rollout_error.py --data data/pusht.h5 --checkpoints runs/a runs/b ... [--json]
        [--split all]   (every clip of a file no model trained on, e.g. planner episodes)

Planning rolls the predictor out autoregressively from the current frame; training (the
published loss) only scores one step from true latents. For each checkpoint this encodes the
validation episodes' clips of 1 + K frames (K = --steps, default 5 blocks: the planning
horizon), rolls the model out K steps from the first frame with the data's actions, and prints
per step k

    ratio_k = mean ||rollout_k - z_k||^2 / mean ||z_0 - z_k||^2

the rollout's squared error over that of copying the start latent (scale-free, so models whose
latents are scaled differently compare). ratio < 1: the rollout beats standing still. The same
ratio per kind of clip, by the env's `goal_kind` of the clip's first and last states (on
Push-T "push" where the T moves out of the success tolerances, "agent" where only the agent
does), and the mean copy error of each kind (how far its latents travel). The validation split
is each model's own (`LoadedModel.split`; 0.1 and seed 0 for every shipped model),
clips drawn with a fixed seed. The last stdout line with --json is one JSON object: {"steps": K,
"checkpoints": [{"checkpoint", "ratio": [K], "clips", "kinds": {kind: {"clips", "ratio": [K],
"copy": [K]}}}]}.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from lewm_core.data.dataset import ClipDataset, open_dataset
from lewm_core.envs import make
from lewm_core.world_model.checkpoint import load_model


@torch.no_grad()
def rollout_ratio(
    checkpoint: str,
    data: str,
    steps: int,
    clips: int,
    seed: int = 0,
    batch: int = 256,
    split: str = "val",
) -> dict:
    """Per-step rollout error over copy error (K,) on `clips` validation clips of `data`,
    overall and per kind of clip (the env's goal kind from its first to its last state).
    `split` "all": clips of every episode (a file no model was trained on, such as held-out
    planner episodes from `lewm collect-planned`)."""
    loaded = load_model(checkpoint)
    model, cfg = loaded.model, loaded.model.cfg
    val_fraction, split_seed = loaded.split
    val = ClipDataset(
        data,
        split,
        history=cfg.history,
        frameskip=cfg.frameskip,
        val_fraction=val_fraction,
        split_seed=split_seed,
        action_stats=loaded.action_stats,
        clip_frames=1 + steps,
    )
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(val), min(clips, len(val)), replace=False))
    env = make(val.env_name, resolution=val.resolution).unwrapped
    with open_dataset(data) as f:
        sims = f["sim_state"]
        kinds = np.array(
            [env.goal_kind(sims[int(r[0])], sims[int(r[-1])]) for r in map(val.clip_rows, idx)]
        )
    err, copy = torch.zeros(len(idx), steps), torch.zeros(len(idx), steps)
    for i in range(0, len(idx), batch):
        b = val.batch(idx[i : i + batch])
        z = model.encode(b["pixels"]).float()  # (B, 1 + K, D)
        roll = model.rollout(z[:, :1], b["actions"][:, :steps]).float()  # (B, K, D)
        err[i : i + len(z)] = ((roll - z[:, 1:]) ** 2).sum(-1)
        copy[i : i + len(z)] = ((z[:, :1] - z[:, 1:]) ** 2).sum(-1)

    def ratio(mask: np.ndarray) -> list[float]:
        m = torch.as_tensor(mask)
        return [round(float(r), 4) for r in err[m].sum(0) / copy[m].sum(0)]

    by_kind = {
        k: {
            "clips": int((kinds == k).sum()),
            "ratio": ratio(kinds == k),
            "copy": [round(float(c), 3) for c in copy[torch.as_tensor(kinds == k)].mean(0)],
        }
        for k in sorted(set(kinds))
    }
    return {
        "checkpoint": checkpoint,
        "ratio": ratio(np.ones(len(idx), bool)),
        "clips": len(idx),
        "kinds": by_kind,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--steps", type=int, default=5, help="rollout length in blocks (default 5)")
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="clips of the held-out episodes (val, default) or of all (a file not trained on)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 1 or args.clips < 1:
        p.error("--steps and --clips must be at least 1")
    torch.manual_seed(0)
    rows = [
        rollout_ratio(c, args.data, args.steps, args.clips, split=args.split)
        for c in args.checkpoints
    ]
    print("rollout error / copy error, per block from one frame:")
    for r in rows:
        print(f"  {r['checkpoint']}: " + " ".join(f"{x:.3f}" for x in r["ratio"]))
        for kind, g in r["kinds"].items():
            steps = " ".join(f"{x:.3f}" for x in g["ratio"])
            print(f"    {kind:6s} {g['clips']:5d} clips: {steps} (copy error {g['copy'][-1]:.1f})")
    if args.json:
        print(json.dumps({"steps": args.steps, "checkpoints": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
