"""The architecture and the CEM planning loop as one diagram, sizes read from a model's config.

Above: a frame through the encoder to its latent, the action-conditioned predictor to the next
latent, the prediction loss against the next frame's latent and SIGReg on the latents. Below:
CEM sampling action sequences, rolling them out through the predictor, scoring the distance to
the goal's latent, refitting on the cheapest and executing the first blocks. Every size is
the model's (config.json, its parameter counts) or the planner's (`CEMConfig`'s published
budget, the model's shipped planning settings); the two frames are from its held-out sample.
"""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from lewm_core.folders import SAMPLE_FILE
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.world_model.model import parameter_counts
from recipes.figures.common import Run, config_of, save_png, shown, title

MODEL_COLOUR, PLAN_COLOUR, LOSS_COLOUR = "#dbe8f6", "#fde3c8", "#e4f2dc"


def box(ax, x: float, y: float, w: float, h: float, text: str, colour: str, size: int = 8):
    """A rounded box centred at (x, y) holding `text`."""
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor="0.3",
            linewidth=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, start, end, text: str = "", dashed: bool = False, bend: str = "arc3,rad=0"):
    """An arrow from `start` to `end` (`bend`: matplotlib's connection style), `text` to the
    right of its middle."""
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops={
            "arrowstyle": "-|>",
            "color": "0.25",
            "lw": 1.0,
            "linestyle": "--" if dashed else "-",
            "connectionstyle": bend,
            "shrinkA": 2,
            "shrinkB": 2,
        },
    )
    if text:
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(mid[0] + 0.08, mid[1], text, ha="left", va="center", fontsize=7, color="0.2")


def thumbnail(ax, image, x: float, y: float, size: float, label: str) -> None:
    """`image` drawn centred at (x, y), `size` wide, `label` under it."""
    ax.imshow(
        image,
        extent=(x - size / 2, x + size / 2, y - size / 2, y + size / 2),
        interpolation="nearest",
        zorder=3,
    )
    ax.text(x, y - size / 2 - 0.08, label, ha="center", va="top", fontsize=7)


def encoder_words(model: dict) -> str:
    """The encoder's kind and sizes."""
    if model["encoder"] == "cnn":
        channels = "-".join(str(c) for c in model["cnn_channels"])
        return f"CNN, {channels} channels"
    return f"ViT, {model['enc_depth']} layers, width {model['enc_width']}"


def architecture(run: Run) -> None:
    """The diagram of `run.analysis_model` (PNG)."""
    folder = run.analysis_model
    loaded = run.model(folder)
    config = config_of(folder)
    m, train, cfg = config["model"], config["train"], loaded.config
    counts = parameter_counts(loaded.model)
    plan = loaded.planning
    published = CEMConfig()
    with h5py.File(folder / SAMPLE_FILE, "r") as f:
        start, goal = f["pixels"][0], f["pixels"][int(f["ep_len"][0]) - 1]
    d = cfg.latent_dim
    size = f"{cfg.image_size}x{cfg.image_size}x3"

    fig, ax = plt.subplots(figsize=(10.5, 5.6))
    ax.set_xlim(0, 10.5)
    ax.set_ylim(0, 5.6)
    ax.axis("off")
    ax.text(0.1, 5.45, "World model (training)", fontsize=10, weight="bold", va="top")
    # --- the model
    y = 4.35
    thumbnail(ax, start, 0.65, y, 0.9, f"frame $o_t$ ({size})")
    enc = counts["params_encoder"] + counts["params_projector"]
    box(
        ax,
        2.35,
        y,
        1.9,
        1.0,
        f"encoder\n{encoder_words(m)}\n+ projector ({m['proj_hidden']})\n{enc / 1e6:.2f}M params",
        MODEL_COLOUR,
    )
    box(ax, 4.2, y, 1.1, 0.7, f"latent $z_t$\n{d}-d", MODEL_COLOUR)
    box(
        ax,
        6.15,
        y,
        2.0,
        1.0,
        f"predictor (transformer)\n{m['pred_depth']} layers x {m['pred_heads']} heads\n"
        f"sees the last {cfg.history} latents\n{counts['params_predictor'] / 1e6:.2f}M params",
        MODEL_COLOUR,
    )
    box(
        ax,
        6.15,
        3.05,
        2.0,
        0.62,
        f"action block $a_t$\n{cfg.frameskip} steps x {cfg.action_dim} = {cfg.action_block_dim}",
        MODEL_COLOUR,
    )
    box(ax, 8.1, y, 1.1, 0.7, f"predicted\n$\\hat z_{{t+1}}$ ({d}-d)", MODEL_COLOUR)
    box(
        ax,
        9.55,
        y,
        1.5,
        1.0,
        "prediction loss\n$\\|\\hat z_{t+1} - z_{t+1}\\|^2$\n($z_{t+1}$: encoder\nof $o_{t+1}$)",
        LOSS_COLOUR,
    )
    box(
        ax,
        3.7,
        3.05,
        2.1,
        0.62,
        f"SIGReg (lambda {train['sigreg_weight']:g}): latents\n"
        f"~ N(0, I) along {train['sigreg_projections']} directions",
        LOSS_COLOUR,
    )
    arrow(ax, (1.12, y), (1.4, y))
    arrow(ax, (3.3, y), (3.65, y))
    arrow(ax, (4.75, y), (5.15, y))
    arrow(ax, (6.15, 3.36), (6.15, 3.85))
    arrow(ax, (7.15, y), (7.55, y))
    arrow(ax, (8.65, y), (8.8, y))
    arrow(ax, (4.2, 4.0), (4.2, 3.36), dashed=True)
    total = counts["params_total"] / 1e6
    ax.text(0.1, 2.55, f"{title(loaded)} model: {total:.2f}M parameters", fontsize=7)

    # --- the planning loop
    ax.text(0.1, 2.3, "Planning (CEM + MPC)", fontsize=10, weight="bold", va="top")
    y = 1.2
    thumbnail(ax, goal, 0.65, 1.7, 0.7, "goal image")
    box(ax, 0.65, 0.35, 1.1, 0.45, f"goal latent\n$z_{{goal}}$ ({d}-d)", MODEL_COLOUR, 7)
    arrow(ax, (0.65, 1.2), (0.65, 0.6), "encoder")
    horizon = published.horizon
    box(
        ax,
        2.45,
        y,
        2.0,
        0.9,
        f"sample {published.samples} action\nsequences of {horizon} blocks\n"
        f"~ N(mu, sigma), {plan.sampling} sampling",
        PLAN_COLOUR,
    )
    box(
        ax,
        4.75,
        y,
        2.0,
        0.9,
        f"roll each out through\nthe predictor from $z_t$\n({plan.context} observed frame(s))",
        PLAN_COLOUR,
    )
    objective = "smallest over the horizon" if plan.objective == "min" else "last latent"
    box(
        ax,
        7.05,
        y,
        2.0,
        0.9,
        f"score $\\|\\hat z - z_{{goal}}\\|^2$\n({objective})",
        PLAN_COLOUR,
    )
    box(
        ax,
        9.35,
        y,
        1.7,
        0.9,
        f"refit mu, sigma on\nthe {published.elites} cheapest",
        PLAN_COLOUR,
    )
    arrow(ax, (3.45, y), (3.75, y))
    arrow(ax, (5.75, y), (6.05, y))
    arrow(ax, (8.05, y), (8.5, y))
    arrow(ax, (1.2, 0.35), (7.05, 0.75), bend="angle,angleA=0,angleB=90,rad=0")
    arrow(ax, (9.35, 1.65), (2.45, 1.65), bend="arc3,rad=0.25")
    ax.text(6.0, 2.02, f"x {published.iterations} iterations", fontsize=7, ha="center")
    box(
        ax,
        9.35,
        0.25,
        1.7,
        0.42,
        f"execute {plan.receding_horizon} of {horizon} blocks,\nobserve, plan again",
        LOSS_COLOUR,
        7,
    )
    arrow(ax, (9.35, 0.75), (9.35, 0.46))
    fig.tight_layout(pad=0.3)
    path = save_png(fig, run.out / "architecture.png")
    plt.close(fig)
    caption = (
        f"The architecture of the shipped {title(loaded)} model ({shown(folder)}, {total:.2f}M "
        f"parameters: a {encoder_words(m)} encoder to a {d}-d latent, a {m['pred_depth']}-layer "
        f"predictor over the last {cfg.history} latents and {cfg.action_block_dim}-number action "
        f"blocks, SIGReg lambda {train['sigreg_weight']:g}) and the CEM planning loop at the "
        f"published budget ({published.samples} samples x {published.iterations} iterations, "
        f"{published.elites} elites, {horizon} blocks) with the model's shipped settings "
        f"({plan.sampling} sampling, {plan.objective} objective, executing "
        f"{plan.receding_horizon} blocks); sizes read from its config.json."
    )
    data = {
        "latent_dim": d,
        "history": cfg.history,
        "action_block_dim": cfg.action_block_dim,
        "params_total": counts["params_total"],
        "sigreg_weight": train["sigreg_weight"],
    }
    run.record("architecture", path, caption, data)
