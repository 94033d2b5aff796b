"""The collapse demo: the same training with SIGReg off (lambda 0) and on, side by side.

The workshop's Exercise 2 (`recipes/workshop.py`, docs/workshop.md) at a smaller size: a Two-Room
dataset by the analysis model's own data recipe (its env, steps per episode, resolution and
seed; fewer episodes), the `lab` preset trained with the workshop's threads, lambda 0 against
the analysis model's lambda, validation rows (`Trainer.save_checkpoint`) every few steps. Every
curve is read from the runs' metrics.jsonl, as the lab's Train page reads it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.folders import METRICS_FILE
from lewm_core.training.config import TrainConfig
from lewm_core.training.trainer import Trainer
from recipes.figures.common import Run, config_of, save_png
from recipes.workshop import WorkshopSettings

PRESET = "lab"  # the workshop's preset
COLOURS = ("#d62728", "#1f77b4")  # lambda 0, lambda > 0


def train_curves(data: Path, out: Path, lam: float, run: Run) -> dict[str, list]:
    """Train one run; its training prediction losses and validation rows, by step."""
    b = run.budget
    cfg = TrainConfig.from_preset(
        PRESET,
        str(data),
        str(out),
        max_steps=b.collapse_steps,
        batch_size=b.collapse_batch,
        checkpoint_every=b.collapse_every,
        log_every=1,
        val_batches=2,
        bn_recalib_batches=4,
        threads=WorkshopSettings.threads,
        sigreg_weight=lam,
        seed=run.seed,
        device="cpu",
    )
    Trainer(cfg).run()
    rows = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    train = [r for r in rows if "pred_loss" in r]
    val = [r for r in rows if "emb_std_mean" in r]
    return {
        "step": [r["step"] for r in train],
        "pred_loss": [r["pred_loss"] for r in train],
        "val_step": [r["step"] for r in val],
        "emb_std_mean": [r["emb_std_mean"] for r in val],
        "effective_rank": [r["effective_rank"] for r in val],
        "val_pred_loss": [r["val_pred_loss"] for r in val],
    }


def collapse(run: Run) -> None:
    """Train lambda 0 and the analysis model's lambda; plot loss, embedding std and rank."""
    b = run.budget
    config = config_of(run.analysis_model)
    recipe = config["data"]["recipe"]
    lams = (0.0, float(config["train"]["sigreg_weight"]))
    curves = {}
    with tempfile.TemporaryDirectory(prefix="lewm-collapse-") as tmp:
        data = Path(tmp) / "data.h5"
        spec = CollectSpec(
            recipe["env"],
            episodes=b.collapse_episodes,
            steps=recipe["steps"],
            resolution=recipe["resolution"],
            seed=recipe["seed"],
        )
        collect(spec, data)
        for lam in lams:
            curves[lam] = train_curves(data, Path(tmp) / f"lambda-{lam:g}", lam, run)

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.2))
    panels = (
        ("step", "pred_loss", "training prediction loss", True),
        ("val_step", "emb_std_mean", "embedding std (held-out)", False),
        ("val_step", "effective_rank", "effective rank (held-out)", False),
    )
    for ax, (xs, ys, label, log) in zip(axes, panels, strict=True):
        for colour, lam in zip(COLOURS, lams, strict=True):
            c = curves[lam]
            ax.plot(c[xs], c[ys], color=colour, marker="." if xs == "val_step" else None)
            ax.plot([], [], color=colour, label=f"SIGReg lambda {lam:g}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("training step")
        if log:
            ax.set_yscale("log")
    axes[1].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = save_png(fig, run.out / "collapse.png")
    plt.close(fig)
    final = {
        f"{lam:g}": {k: curves[lam][k][-1] for k in ("emb_std_mean", "effective_rank")}
        for lam in lams
    }
    lo, hi = (final[f"{lam:g}"] for lam in lams)
    caption = (
        f"The collapse demo (the workshop's Exercise 2, smaller): a {PRESET}-preset model "
        f"trained {b.collapse_steps} steps (batch {b.collapse_batch}, "
        f"{WorkshopSettings.threads} threads, seed {run.seed}) on {b.collapse_episodes} "
        f"{recipe['env']} episodes of {recipe['steps']} steps (the shipped model's data "
        f"recipe, seed {recipe['seed']}) with SIGReg lambda 0 and {lams[1]:g}; validation "
        f"every {b.collapse_every} steps. At the last step the embedding std is "
        f"{lo['emb_std_mean']:.3f} without SIGReg and {hi['emb_std_mean']:.3f} with it, the "
        f"effective rank {lo['effective_rank']:.1f} and {hi['effective_rank']:.1f} (a "
        "collapsed cloud can keep a high rank: docs/workshop.md reads the rank only where the "
        "std has not collapsed)."
    )
    run.record("collapse", path, caption, {"final": final, "lambdas": list(lams)})
