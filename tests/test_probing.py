"""Probing (and latent straightness): the trained encoder's latents hold the agent's position."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from lewm_testing import run_cli  # noqa: E402

from lewm_core.analysis.frames import encode_frames, read_rows, untrained_model
from lewm_core.analysis.probing import (
    fit_probe,
    pearson_r,
    probe,
    quantity_targets,
    state_floor,
)
from lewm_core.analysis.straightness import consecutive_cosines, straightness
from lewm_core.data.samples import resolve_frames
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import load_model

torch.set_num_threads(1)


def test_probe_beats_untrained_floor(trained_run, tworoom_h5):
    loaded = load_model(trained_run["path"])
    res = probe(loaded, max_train=1500, max_test=400, seed=0, mlp=True)
    lin, mlp, floor = res["linear"], res["mlp"], res["untrained"]["linear"]
    assert set(lin) == {"agent_pos"} and set(mlp) == {"agent_pos"}
    assert lin["agent_pos"]["r"] > floor["agent_pos"]["r"]
    assert lin["agent_pos"]["mse"] < floor["agent_pos"]["mse"]
    assert lin["agent_pos"]["r"] > 0.8 and mlp["agent_pos"]["r"] > 0.8
    assert res["state_floor"] == {"linear": {}, "mlp": {}}  # Two-Room has one quantity
    assert res["data"] == tworoom_h5  # defaults to the run's training dataset
    assert res["train_frames"] == 1500 and 0 < res["test_frames"] <= 400
    json.dumps(res)  # JSON-ready


def test_probe_cli_json(trained_run, capsys):
    argv = ["probe", "--checkpoint", trained_run["path"], "--train-frames", "300"]
    rc, out, _ = run_cli([*argv, "--test-frames", "100", "--no-mlp", "--json", "--quiet"], capsys)
    assert rc == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert set(res["linear"]["agent_pos"]) == {"mse", "r"} and "mlp" not in res
    assert "agent_pos" in res["untrained"]["linear"]
    assert "agent_pos" in out and "untrained linear" in out  # the table


def test_fit_probe_recovers_linear_map():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 8))
    y = z @ rng.normal(size=(8, 2))
    y = (y - y.mean(0)) / y.std(0)
    res = fit_probe("linear", z[:500], y[:500], z[500:], y[500:], alpha=1e-3)
    assert res["r"] > 0.999 and res["mse"] < 1e-3
    with pytest.raises(ValueError):
        fit_probe("cubic", z, y, z, y)


def test_state_floor_reads_a_quantity_only_through_the_others():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, size=(1200, 2))
    tied = np.stack([pos[:, 0] + 0.5 * pos[:, 1]], 1)  # a function of pos
    free = rng.normal(size=(1200, 1))  # independent of everything else
    floor = state_floor({"pos": pos, "tied": tied, "free": free}, 1000, ("linear", "mlp"))
    assert set(floor) == {"linear", "mlp"} and set(floor["linear"]) == {"pos", "tied", "free"}
    assert floor["linear"]["tied"]["r"] > 0.99
    assert abs(floor["linear"]["free"]["r"]) < 0.15
    assert floor["linear"]["free"]["mse"] > 50 * floor["linear"]["tied"]["mse"]
    assert state_floor({"only": pos}, 1000) == {"linear": {}}  # nothing to read it from


def test_pearson_and_angle_targets():
    x = np.arange(10.0)
    r = pearson_r(np.stack([x, -x, np.ones(10)], 1), np.stack([2 * x + 1, x, x], 1))
    assert np.allclose(r, [1.0, -1.0, 0.0])  # constant column -> 0, not NaN
    state = np.array([[1.0, 2.0, np.pi / 2]], np.float32)
    t = quantity_targets(state, {"pos": [0, 2], "ang": [2, 1]}, ("ang",))
    assert t["pos"].shape == (1, 2) and t["ang"].shape == (1, 2)
    assert np.allclose(t["ang"], [[0.0, 1.0]], atol=1e-6)  # (cos, sin)


def test_read_rows_any_order(tworoom_h5):
    rows = np.array([900, 3, 17, 3, 2500, 16])
    with h5py.File(tworoom_h5, "r") as f:
        got = read_rows(f["pixels"], rows, window=64)
        want = np.stack([f["pixels"][r] for r in rows])
    assert np.array_equal(got, want)


def test_untrained_model_is_seeded_and_differs(trained_run):
    loaded = load_model(trained_run["path"])
    a, b = untrained_model(loaded, 3), untrained_model(loaded, 3)
    pix = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    za, zb, zt = encode_frames(a, pix), encode_frames(b, pix), encode_frames(loaded.model, pix)
    assert za.shape == (4, loaded.config.latent_dim)
    assert np.allclose(za, zb) and not np.allclose(za, zt)


def test_bad_paths_are_user_errors(trained_run, tmp_path, capsys):
    with pytest.raises(UserError, match="not a run folder"):
        load_model(tmp_path / "missing")
    loaded = load_model(trained_run["path"])
    with pytest.raises(UserError, match="--data"):
        resolve_frames(loaded, tmp_path / "nope.h5")
    rc, _, err = run_cli(["probe", "--checkpoint", str(tmp_path / "missing")], capsys)
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- straightness


def test_consecutive_cosines():
    line = np.outer(np.arange(6.0), [1.0, 2.0, 0.5])
    assert np.allclose(consecutive_cosines(line), 1.0)
    zigzag = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert np.allclose(consecutive_cosines(zigzag), -1.0)
    still = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert len(consecutive_cosines(still)) == 0  # zero velocity has no direction
    assert len(consecutive_cosines(line[:2])) == 0


def test_straightness_trained_and_untrained(trained_run, capsys):
    loaded = load_model(trained_run["path"])
    res = straightness(loaded, episodes=6, seed=0)
    for k in ("trained", "untrained", "pixels"):
        assert -1.0 <= res[k]["mean"] <= 1.0 and res[k]["pairs"] > 0
    assert res["episodes"] == 6 and res["frames_per_episode"] == 12  # 60 steps / frameskip 5
    rc, out, _ = run_cli(
        ["straightness", "--checkpoint", trained_run["path"], "--episodes", "3", "--json"], capsys
    )
    assert rc == 0 and "trained" in json.loads(out.strip().splitlines()[-1])
