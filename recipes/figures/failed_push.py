"""A Push-T episode the planner lost: what happened beside what the model predicted.

The first task of the Push-T model's held-out sample its shipped planner does not solve
(`planning.TaskPlanner`, the rollouts' budget), at model-frame spacing: the real frames; the
decoder's pictures (`decoder.rollout.decode_rollout`) of the latents the model predicted from
the frame each plan started from through the blocks that plan executed (what the planner
expected when it chose them); and the same predicted open loop from the first frame through
every executed block. The goal image and the decoder's picture of its latent end the rows.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from decoder.rollout import decode_rollout
from decoder.train import decode_images, finite_mean, load_decoder
from recipes.figures.common import DPI, Run, hstack, save_png, shown, title, vstack
from recipes.figures.planning import task_planner

SCALE = 1.5  # each 64 px frame drawn 96 px wide


def mean_db(psnr: np.ndarray) -> float:
    """Mean PSNR (dB) over the frames; inf where every frame is exact."""
    mean = finite_mean(psnr)
    return float("inf") if mean is None else mean


def failed_push(run: Run) -> None:
    """The failed episode's three rows of frames (PNG)."""
    b = run.budget
    folder = run.push_model
    tp = task_planner(run, folder, b.plan_samples, b.plan_iterations)
    p, tried = tp.first(solved=False, tries=b.failure_tries)
    loaded = tp.loaded
    decoder = load_decoder(folder)
    fs, every = loaded.config.frameskip, tp.cfg.receding_horizon
    n = p.result.steps // fs  # whole blocks executed
    frames = p.result.frames[: n * fs + 1 : fs]
    blocks = loaded.action_stats.normalize(p.result.actions[: n * fs]).reshape(n, -1)
    blocks = blocks.astype(np.float32)
    open_loop = decode_rollout(loaded, decoder, frames, blocks)
    per_plan = open_loop["autoencoded"].copy()  # frame 0: the decoded first latent
    for s in range(0, n, every):  # a plan starts at every `every`-th block
        e = min(n, s + every)
        seg = decode_rollout(loaded, decoder, frames[s : e + 1], blocks[s:e])
        per_plan[s + 1 : e + 1] = seg["predicted"][1:]
    goal = p.task.goal_frame
    with torch.no_grad():
        z_goal = loaded.model.encode(torch.from_numpy(goal[None]))
    goal_decoded = decode_images(decoder, z_goal.float())[0]

    rows = (
        ("real frames", frames, goal),
        ("decoded, no prediction", open_loop["autoencoded"], goal_decoded),
        ("predicted at each plan", per_plan, goal_decoded),
        ("predicted open loop", open_loop["predicted"], goal_decoded),
    )
    white = np.full((goal.shape[0], 10, 3), 255, np.uint8)
    mosaic = vstack([hstack([*row, white, g], gap=2) for _, row, g in rows], gap=6)
    h, w = mosaic.shape[:2]
    img_w, img_h = SCALE * w / DPI, SCALE * h / DPI  # inches
    left, top, bottom = 1.45, 0.6, 0.08
    fig_w, fig_h = img_w + left + 0.1, img_h + top + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    size = goal.shape[0]
    for i, (label, _, _) in enumerate(rows):
        ax.text(-8, i * (size + 6) + size / 2, label, ha="right", va="center", fontsize=8)
    for k in range(len(frames)):
        ax.text(k * (size + 2) + size / 2, -4, f"{k * fs}", ha="center", va="bottom", fontsize=7)
    ax.text(w - size / 2, -4, "goal", ha="center", va="bottom", fontsize=7)
    name = title(loaded)
    errors = ", ".join(f"{k} {v:.1f}" for k, v in p.result.final_errors.items())
    tolerance = ", ".join(f"{k} {v:.2g}" for k, v in tp.env.unwrapped.success_tolerances.items())
    fig.suptitle(
        f"{name} task {p.index}: {'missed' if not p.result.success else 'reached'} "
        f"(final error {errors}; tolerance {tolerance}); raw step above each frame",
        fontsize=9,
    )
    path = save_png(fig, run.out / "failed_push.png")
    plt.close(fig)
    auto_db = mean_db(open_loop["psnr_autoencoded"])
    open_db = mean_db(open_loop["psnr_predicted"][1:]) if n else auto_db
    which = tp.chosen_words(p, tried, solved=False)
    caption = (
        f"{name} ({shown(folder)}), task {p.index} of its held-out sample ({which}); "
        f"{tp.settings_words()}, seed {run.seed}. Rows: the real frames every {fs} steps; the "
        f"decoder's pictures of each real frame's own latent (the most the decoder shows: "
        f"{auto_db:.1f} dB PSNR here); of the latents the model predicted from the frame each "
        f"plan started from through the {every} blocks it executed; and of the same predicted "
        f"open loop from the first frame ({open_db:.1f} dB). The last column is the goal and "
        f"the decoder's picture of its latent. Final error {errors} (tolerance {tolerance})."
    )
    data = {
        "task": p.index,
        "tried": tried,
        "kind": tp.kind,
        "success": bool(p.result.success),
        "final_errors": p.result.final_errors,
        "psnr_decoded_db": auto_db,
        "psnr_open_loop_db": open_db,
    }
    run.record("failed_push", path, caption, data)
