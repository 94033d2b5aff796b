"""Violation of expectation: a teleport surprises the trained world model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lewm_testing import run_cli  # noqa: E402

from lewm_core.analysis.surprise import (
    contrast_color,
    perturbation_stats,
    record_episode,
    replay_episode,
    surprise_curves,
    surprise_experiment,
)
from lewm_core.envs import make, make_policy
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import load_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_model(trained_run["path"])


def test_teleport_exceeds_unperturbed(loaded):
    res = surprise_experiment(loaded, episodes=10, seed=0, steps=10, perturbations=("teleport",))
    t = res["teleport"]
    assert res["perturb_step"] == 5 and "color" not in res
    assert t["mean_perturbed"] > t["mean_unperturbed"] and t["jump"] > 0 and t["ratio"] > 1
    assert t["p_value"] < 0.05
    curves = res["curves"]
    assert curves["unperturbed"].shape == (10, 10) and curves["teleport"].shape == (10, 10)
    assert np.isnan(curves["teleport"][:, 0]).all()
    # Same episode, same actions: identical surprise before the perturbation.
    assert np.allclose(curves["teleport"][:, 1:5], curves["unperturbed"][:, 1:5])


def test_color_perturbation_runs(loaded):
    res = surprise_experiment(loaded, episodes=3, seed=1, steps=6, perturbations=("color",))
    assert res["color_part"] == "agent" and res["color_rgb"] == list(contrast_color((220, 40, 40)))
    assert 0.0 <= res["color"]["p_value"] <= 1.0 and 0.0 <= res["color"]["argmax_rate"] <= 1.0


def test_replay_reproduces_the_episode():
    env = make("tworoom", resolution=64)
    rec = record_episode(env, make_policy("tworoom", env, seed=5), steps=6, frameskip=5, seed=5)
    assert rec["frames"].shape == (6, 64, 64, 3) and rec["actions"].shape == (25, 2)
    again = replay_episode(env, 5, rec["start_state"], rec["actions"], 5)
    assert np.array_equal(again, rec["frames"])
    moved = replay_episode(
        env, 5, rec["start_state"], rec["actions"], 5, 3, lambda b: b.set_color("agent", (0, 0, 0))
    )
    assert np.array_equal(moved[:3], rec["frames"][:3]) and not np.array_equal(
        moved[3], rec["frames"][3]
    )


def test_surprise_curves_zero_for_own_predictions(loaded):
    model = loaded.model
    z0 = torch.randn(2, 1, loaded.config.latent_dim)
    act = torch.randn(2, 4, loaded.config.action_block_dim)
    with torch.no_grad():
        rolled = model.rollout(z0, act)
    latents = torch.cat([z0, rolled], dim=1)  # a trajectory the model predicts exactly
    s = surprise_curves(model, latents, act)
    assert s.shape == (2, 5) and np.isnan(s[:, 0]).all()
    assert np.allclose(s[:, 1:], 0.0, atol=1e-6)


def test_perturbation_stats_synthetic():
    clean = np.array([[np.nan, 1.0, 1.0, 1.0], [np.nan, 2.0, 1.0, 2.0], [np.nan, 1.0, 1.5, 1.0]])
    pert = clean.copy()
    pert[:, 2] += [4.0, 5.0, 6.0]
    s = perturbation_stats(pert, clean, 2)
    assert s["jump"] == pytest.approx(5.0) and s["argmax_rate"] == 1.0
    assert s["ratio"] == pytest.approx((3.5 / 3 + 5) / (3.5 / 3)) and s["p_value"] < 0.01
    same = perturbation_stats(clean, clean, 2)
    assert same["jump"] == 0.0 and same["p_value"] == 1.0
    # A warm-up spike at step 1 (prediction from one frame) hides the perturbation at step 3
    # unless the peak is taken over the steps with a full history (here 2).
    warm = np.array([[np.nan, 9.0, 1.0, 1.0, 1.0]] * 2 + [[np.nan, 9.0, 1.0, 1.0, 2.0]])
    pert = warm.copy()
    pert[:, 3] += 4.0
    assert perturbation_stats(pert, warm, 3)["argmax_rate"] == 0.0
    assert perturbation_stats(pert, warm, 3, first_step=2)["argmax_rate"] == 1.0
    assert perturbation_stats(pert, warm, 3, first_step=2)["argmax_rate_unperturbed"] == 0.0
    assert perturbation_stats(pert, warm, 3, first_step=5)["argmax_rate"] == 1.0  # lo = step


def test_bad_input(loaded, capsys, trained_run):
    with pytest.raises(UserError, match="at least 2"):
        surprise_experiment(loaded, episodes=1)
    with pytest.raises(UserError, match="perturb-step"):
        surprise_experiment(loaded, episodes=2, steps=5, perturb_step=5)
    with pytest.raises(UserError, match="unknown perturbation"):
        surprise_experiment(loaded, episodes=2, perturbations=("gravity",))
    argv = ["surprise", "--checkpoint", trained_run["path"], "--episodes", "2", "--steps", "4"]
    rc, out, _ = run_cli([*argv, "--json", "--quiet"], capsys)
    assert rc == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert {"p_value", "jump", "argmax_rate"} <= set(res["teleport"])
    assert "color" in res and len(res["mean_curves"]["unperturbed"]) == 4
