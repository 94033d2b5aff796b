"""What the latents know: the teleport surprise curve and the t-SNE map of the latents.

Surprise: `surprise.surprise_experiment` on the analysis model with its shipped protocol
(surprise.json's steps and perturbation step), fewer episodes, the teleport perturbation; the
shipped mean curves (surprise.json, its own episodes) are drawn beside as a reference.
t-SNE: `tsne.tsne_latents` on the model's held-out sample, trained and untrained encoder,
coloured by the first state quantity the model's data records.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from lewm_core.analysis.surprise import surprise_experiment
from lewm_core.analysis.tsne import tsne_latents
from lewm_core.folders import SAMPLE_FILE, SURPRISE_FILE
from recipes.figures.common import Run, config_of, save_png, shown, title
from recipes.figures.results import read_json

PERTURBATION = "teleport"
COLOURS = {"unperturbed": "#1f77b4", PERTURBATION: "#d62728"}


def surprise(run: Run) -> None:
    """Surprise per model step, teleported vs unperturbed copies, the perturbation marked."""
    folder = run.analysis_model
    loaded = run.model(folder)
    shipped = read_json(folder / SURPRISE_FILE)
    steps = shipped.get("steps", 20)
    p_step = shipped.get("perturb_step", steps // 2)
    episodes = run.budget.surprise_episodes
    result = surprise_experiment(
        loaded, episodes, run.seed, steps, p_step, perturbations=(PERTURBATION,)
    )
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    t = np.arange(steps)
    means = {}
    for kind in ("unperturbed", PERTURBATION):
        curves = result["curves"][kind]
        for c in curves:
            ax.plot(t, c, color=COLOURS[kind], alpha=0.25, lw=0.8)
        means[kind] = np.concatenate([[np.nan], curves[:, 1:].mean(0)])  # none at step 0
        ax.plot(t, means[kind], color=COLOURS[kind], lw=2, label=f"{kind}, mean of {episodes}")
        ref = shipped.get("mean_curves", {}).get(kind)
        if ref:
            ref = np.array([np.nan if v is None else v for v in ref], float)
            label = f"{kind}, surprise.json ({shipped['episodes']} episodes)"
            ax.plot(t, ref, color=COLOURS[kind], lw=1.2, ls="--", label=label)
    ax.axvline(p_step, color="0.3", ls=":", lw=1)
    ax.text(p_step + 0.2, 0.98, "teleport", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("model step (one block of actions apart)")
    ax.set_ylabel("surprise $\\|\\hat z_t - z_t\\|^2$")
    ax.set_title(f"{title(loaded)}: surprise when the agent is teleported", fontsize=10)
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    path = save_png(fig, run.out / "surprise.png")
    plt.close(fig)
    stats = result[PERTURBATION]
    caption = (
        f"{title(loaded)} ({shown(folder)}): surprise (squared distance between the predicted "
        f"and the observed latent) per model step over {episodes} episodes of the data policy, "
        f"seed {run.seed}; the perturbed copy is teleported before step {p_step}. Measured "
        f"here: jump {stats['jump']:.1f} (x{stats['ratio']:.0f}), paired t-test "
        f"p = {stats['p_value']:.1e}; dashed: the shipped surprise.json means."
    )
    data = {
        "perturb_step": p_step,
        "jump": stats["jump"],
        "ratio": stats["ratio"],
        "p_value": stats["p_value"],
        "mean_at_perturbation": {k: float(v[p_step]) for k, v in means.items()},
    }
    run.record("surprise", path, caption, data)


def tsne_map(run: Run) -> None:
    """t-SNE of trained and untrained latents of the held-out sample, side by side."""
    folder = run.analysis_model
    loaded = run.model(folder)
    quantity = next(iter(config_of(folder)["data"]["state_quantities"]))
    points = run.budget.tsne_points
    res = tsne_latents(loaded, folder / SAMPLE_FILE, points, run.seed, quantity, untrained=True)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
    maps = (
        ("trained encoder", res["coords"], res["trustworthiness"]),
        ("untrained encoder", res["untrained_coords"], res["untrained_trustworthiness"]),
    )
    for ax, (name, xy, trust) in zip(axes, maps, strict=True):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=res["color"], s=5, cmap="viridis", lw=0)
        ax.set_title(f"{name} (trustworthiness {trust:.3f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, label=res["color_name"], shrink=0.85)
    fig.suptitle(f"{title(loaded)}: t-SNE of single-frame latents", fontsize=10)
    path = save_png(fig, run.out / "tsne.png")
    plt.close(fig)
    caption = (
        f"t-SNE (openTSNE, seed {run.seed}, perplexity {res['perplexity']:g}) of the latents of "
        f"{res['points']} frames of the {title(loaded)} model's held-out sample "
        f"({shown(folder / SAMPLE_FILE)}), trained encoder beside the same architecture "
        f"untrained, coloured by {res['color_name']}; trustworthiness "
        f"{res['trustworthiness']:.3f} against {res['untrained_trustworthiness']:.3f}."
    )
    data = {
        "points": res["points"],
        "color": res["color_name"],
        "trustworthiness": res["trustworthiness"],
        "untrained_trustworthiness": res["untrained_trustworthiness"],
    }
    run.record("tsne", path, caption, data)
