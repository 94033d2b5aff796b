"""Violation of expectation: does the world model's surprise jump when physics is broken?

Surprise at model step t (t >= 1) is the squared L2 distance between the predicted latent of
frame t and the latent of the frame actually observed:

    surprise_t = || predict(z[t-h : t], a[t-h : t])[-1] - encode(frame_t) ||^2,  h = history

Protocol (one "episode" = `steps` model frames, `frameskip` raw steps apart):
1. Reset the env with the episode's seed, run its *data-collection policy* (`make_policy`) and
   record the raw actions and frames. (The paper uses an expert for Two-Room and a random policy
   biased toward the block for Push-T; here the policy that made the training data is used:
   Two-Room's noisy waypoint follower, Push-T's scripted pusher, Reacher's scripted reacher.)
2. Replay the same start state (`set_state`) and the same recorded actions in a perturbed copy.
   Just before frame `perturb_step` is observed the env is perturbed:
     teleport  `env.unwrapped.teleport(rng)`: the controllable parts jump to a random place;
     color     `set_color(part, rgb)` on the agent (Two-Room), block (Push-T) or arm (Reacher)
               with a clearly different colour (the palette colour farthest from the default).
   Frames from `perturb_step` on show the perturbed world.
3. Surprise curves (steps,) for the unperturbed and each perturbed copy.

Reported per perturbation, at the perturbation step p over episodes: `jump` = mean(perturbed -
unperturbed), `ratio` = mean(perturbed) / mean(unperturbed), a *one-sided* paired t-test
(scipy `ttest_rel`, alternative "greater": the perturbed surprise is larger) with `t` and
`p_value`, and `argmax_rate`: the fraction of episodes whose perturbed surprise curve peaks at p
(`argmax_rate_unperturbed` is the same for the unperturbed curve: the chance level). The peak is
taken over the steps predicted from a full history (t >= h, or t >= p if p < h): the first
predictions of an episode see fewer frames, and on Cube the very first one (t = 1, from the reset
frame alone) is the largest surprise of 17 in 20 episodes, which would hide every perturbation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from lewm_core.analysis.frames import encode_frames
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import LoadedModel
from lewm_core.world_model.model import LeWM

PERTURBATIONS: tuple[str, ...] = ("teleport", "color")
MAX_EPISODES, MAX_MODEL_STEPS = 10_000, 1_000  # beyond: hours of work, or memory

# The part recoloured by the "color" perturbation, per env (the paper's visual perturbation).
COLOR_PART: dict[str, str] = {
    "tworoom": "agent",
    "pusht": "block",
    "pusht-v1": "block",
    "reacher": "arm",
    "cube": "cube",
}

# Saturated colours; the one farthest from the part's default colour is used.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 90, 255),
    (0, 190, 0),
    (255, 0, 255),
    (255, 190, 0),
    (0, 210, 210),
    (230, 30, 30),
    (20, 20, 20),
)


def contrast_color(default: tuple[int, int, int]) -> tuple[int, int, int]:
    """The palette colour farthest (Euclidean RGB) from `default`."""
    d = np.asarray(default, np.float64)
    return max(PALETTE, key=lambda c: float(np.sum((np.asarray(c, np.float64) - d) ** 2)))


def surprise_seed(seed: int, episode: int) -> int:
    """31-bit env/policy seed of surprise episode `episode` (a stream apart from `collect`'s)."""
    return int(np.random.SeedSequence([seed, episode, 0x5EED]).generate_state(1)[0] & 0x7FFFFFFF)


def record_episode(env, policy, steps: int, frameskip: int, seed: int) -> dict[str, np.ndarray]:
    """Run `policy` from `env.reset(seed=seed)` for `steps` model frames.

    Returns frames (steps, H, W, 3) uint8 (frame k after k * frameskip raw steps), raw actions
    ((steps - 1) * frameskip, A) float32 and the start simulator state (Q,).
    """
    obs, _ = env.reset(seed=seed)
    policy.reset()
    base = env.unwrapped
    start = base.get_state().copy()
    frames = [obs]
    actions = []
    for _ in range(steps - 1):
        for _ in range(frameskip):
            a = np.clip(np.asarray(policy.act(), np.float32), -1.0, 1.0)
            actions.append(a)
            obs, *_ = env.step(a)
        frames.append(obs)
    return {
        "frames": np.stack(frames),
        "actions": np.asarray(actions, np.float32).reshape(-1, base.action_space.shape[0]),
        "start_state": start,
    }


def replay_episode(
    env,
    seed: int,
    start_state: np.ndarray,
    actions: np.ndarray,
    frameskip: int,
    perturb_step: int | None = None,
    perturb: Callable[[object], None] | None = None,
) -> np.ndarray:
    """Replay raw `actions` ((T-1) * frameskip, A) from `start_state`; frames (T, H, W, 3).

    `perturb(env.unwrapped)` is called right before frame `perturb_step` is observed (after the
    raw actions leading to it), so frames perturb_step.. show the perturbed world.
    """
    env.reset(seed=seed)  # also restores the default colours
    base = env.unwrapped
    base.set_state(start_state)
    steps = len(actions) // frameskip + 1
    frames = [base.render()]
    for k in range(1, steps):
        for a in actions[(k - 1) * frameskip : k * frameskip]:
            env.step(a)
        if perturb is not None and k == perturb_step:
            perturb(base)
        frames.append(base.render().copy())
    return np.stack(frames)


@torch.no_grad()
def surprise_curves(model: LeWM, latents: torch.Tensor, blocks: torch.Tensor) -> np.ndarray:
    """Per-step surprise of latent trajectories.

    latents: (B, T, D) encoded frames; blocks: (B, T-1, frameskip * A) normalised action blocks
    (block k leads from frame k to frame k + 1). Prediction of frame t uses the last
    `cfg.history` latents and their blocks. Returns (B, T) float64, NaN at t = 0.
    """
    b, t_len, _ = latents.shape
    out = np.full((b, t_len), np.nan)
    hist = model.cfg.history
    for t in range(1, t_len):
        s = max(0, t - hist)
        pred = model.predict(latents[:, s:t], blocks[:, s:t])[:, -1]
        out[:, t] = ((pred - latents[:, t]) ** 2).sum(-1).double().cpu().numpy()
    return out


def perturbation_stats(
    perturbed: np.ndarray, clean: np.ndarray, step: int, first_step: int = 1
) -> dict:
    """Statistics of perturbed vs clean surprise curves (E, T) at the perturbation `step`.

    Returns jump (mean difference), ratio, mean_perturbed, mean_unperturbed, t and p_value of a
    one-sided paired t-test (perturbed > unperturbed; p = 1 when all differences are 0),
    argmax_rate and argmax_rate_unperturbed (fraction of curves whose peak over steps
    >= min(first_step, step) is at `step`).
    """
    from scipy.stats import ttest_rel

    x, y = perturbed[:, step], clean[:, step]
    diff = x - y
    if np.allclose(diff, diff[0]) and np.allclose(diff, 0):
        t_stat, p = 0.0, 1.0
    else:
        res = ttest_rel(x, y, alternative="greater")
        t_stat, p = float(res.statistic), float(res.pvalue)
        if not math.isfinite(p):  # constant non-zero difference: certain direction
            p = 0.0 if diff.mean() > 0 else 1.0
            t_stat = math.copysign(math.inf, diff.mean()) if diff.mean() else 0.0
    base_mean = float(y.mean())
    lo = min(first_step, step)  # the peak among steps lo.. (warm-up steps excluded)

    def peak_rate(curves: np.ndarray) -> float:
        return float(np.mean(lo + np.nanargmax(curves[:, lo:], axis=1) == step))

    return {
        "jump": float(diff.mean()),
        "ratio": float(x.mean() / base_mean) if base_mean > 0 else math.inf,
        "mean_perturbed": float(x.mean()),
        "mean_unperturbed": base_mean,
        "t": t_stat,
        "p_value": p,
        "argmax_rate": peak_rate(perturbed),
        "argmax_rate_unperturbed": peak_rate(clean),
    }


def surprise_experiment(
    loaded: LoadedModel,
    episodes: int = 20,
    seed: int = 0,
    steps: int = 20,
    perturb_step: int | None = None,
    perturbations: tuple[str, ...] = PERTURBATIONS,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the violation-of-expectation protocol (module docstring) on `episodes` episodes.

    Returns {perturbation: stats (see `perturbation_stats`)} plus "episodes", "steps",
    "perturb_step", "seed", "env", "color_part", "color_rgb" and "curves": {"unperturbed": (E, T),
    perturbation: (E, T)} surprise arrays (NaN at step 0) for plots.
    """
    from lewm_core.envs import ENV_NAMES, make, make_policy

    env_name = loaded.env_name
    if env_name not in ENV_NAMES:
        raise UserError(
            f"{loaded.path} was trained on env '{env_name}', which has no simulator here; "
            f"surprise needs one of {', '.join(ENV_NAMES)}"
        )
    if episodes < 2:
        raise UserError(f"--episodes must be at least 2 for a paired t-test (got {episodes})")
    if steps < 3:
        raise UserError(f"--steps must be at least 3 model steps (got {steps})")
    if episodes > MAX_EPISODES or steps > MAX_MODEL_STEPS:
        raise UserError(
            f"--episodes at most {MAX_EPISODES} and --steps at most {MAX_MODEL_STEPS} "
            f"(got {episodes} and {steps})"
        )
    p_step = steps // 2 if perturb_step is None else perturb_step
    if not 1 <= p_step < steps:
        raise UserError(f"--perturb-step must be in 1..{steps - 1} (got {perturb_step})")
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown or not perturbations:
        raise UserError(
            f"unknown perturbation '{unknown[0] if unknown else ''}'; "
            f"choose from {', '.join(PERTURBATIONS)}"
        )
    cfg = loaded.config
    fs = cfg.frameskip
    env = make(env_name, resolution=cfg.image_size)
    base = env.unwrapped
    part = COLOR_PART.get(env_name, base.color_parts[0] if base.color_parts else None)
    if "color" in perturbations and part not in base.color_parts:
        raise UserError(f"env '{env_name}' has no colourable part for the color perturbation")
    rgb = contrast_color(base.default_colors[part]) if part else None

    frames = {k: [] for k in ("unperturbed", *perturbations)}
    blocks = []
    for e in range(episodes):
        ep_seed = surprise_seed(seed, e)
        policy = make_policy(env_name, env, seed=ep_seed)
        rec = record_episode(env, policy, steps, fs, ep_seed)
        frames["unperturbed"].append(rec["frames"])
        blocks.append(loaded.action_stats.normalize(rec["actions"]).reshape(steps - 1, -1))
        for kind in perturbations:
            if kind == "teleport":
                rng = np.random.default_rng([seed, e, 1])

                def perturb(b, rng=rng):
                    b.teleport(rng)

            else:

                def perturb(b):
                    b.set_color(part, rgb)

            frames[kind].append(
                replay_episode(
                    env, ep_seed, rec["start_state"], rec["actions"], fs, p_step, perturb
                )
            )
        if progress is not None:
            progress(e + 1, episodes)
    env.close()

    model = loaded.model
    device = model.pixel_mean.device
    act = torch.from_numpy(np.stack(blocks).astype(np.float32)).to(device)  # (E, T-1, fs*A)
    curves = {}
    for kind, fr in frames.items():
        pix = np.stack(fr)  # (E, T, H, W, 3)
        z = encode_frames(model, pix.reshape(-1, *pix.shape[2:])).reshape(episodes, steps, -1)
        curves[kind] = surprise_curves(model, torch.from_numpy(z).to(device), act)
    result: dict = {
        kind: perturbation_stats(curves[kind], curves["unperturbed"], p_step, cfg.history)
        for kind in perturbations
    }
    result.update(
        episodes=episodes,
        steps=steps,
        perturb_step=p_step,
        seed=seed,
        env=env_name,
        color_part=part,
        color_rgb=list(rgb) if rgb else None,
        curves=curves,
    )
    return result


def curve_summary(curves: dict[str, np.ndarray]) -> dict[str, list]:
    """Mean surprise per step over episodes, {name: [T values, None at step 0]} (JSON-safe)."""
    out = {}
    for name, c in curves.items():
        means = [None] + [float(c[:, t].mean()) for t in range(1, c.shape[1])]
        out[name] = means
    return out
