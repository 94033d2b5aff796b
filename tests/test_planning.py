"""CEM finds good action sequences; the eval protocol runs, repeats and reports its numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lewm_testing import ROOT

from lewm_core.data.dataset import ActionStats
from lewm_core.errors import UserError
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.evaluate import wilson_interval
from lewm_core.world_model.checkpoint import PlanningDefaults
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.cpu_kernels import (
    BF16_SCREEN,
    Bf16Probe,
    bf16_probe,
    bf16_request_check,
    forced_plain,
    kernel_mode_from,
)
from lewm_core.world_model.model import LeWM


def _random_action_model(seed: int = 0) -> LeWM:
    """A lab model whose AdaLN weights are randomised so that actions matter (eval mode)."""
    torch.manual_seed(seed)
    model = LeWM(ModelConfig.preset("lab", dropout=0.0)).eval()
    with torch.no_grad():
        for name, p in model.predictor.named_parameters():
            if "adaln" in name:
                p.normal_(0, 0.05)
    return model


STATS = ActionStats(np.zeros(2, np.float32), np.ones(2, np.float32))


@pytest.mark.parametrize("sampling", ["block", "independent"])
def test_cem_beats_random_search_by_far(sampling):
    model = _random_action_model()
    planner = Planner(
        model, STATS, CEMConfig(samples=128, elites=16, iterations=12, sampling=sampling)
    )
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(model.cfg.latent_dim, generator=gen)
    # The goal is reachable by the scheme searched: held actions for block sampling.
    steps = 1 if sampling == "block" else 5
    true_blocks = (torch.rand(1, 5, steps, 2, generator=gen) * 2 - 1).expand(1, 5, 5, 2)
    true_blocks = true_blocks.reshape(1, 5, 10)
    with torch.inference_mode():
        z_goal = model.rollout(z0.view(1, 1, -1), true_blocks)[0, -1]
        random_blocks = torch.rand(256, 5, 10, generator=gen) * 2 - 1
        random_costs, _ = planner.cost(z0, z_goal, random_blocks)
    result = planner.plan(z0, z_goal, generator=gen)
    assert result.cost < 0.2 * float(random_costs.median())
    assert result.actions.shape == (25, 2) and np.abs(result.actions).max() <= 1.0
    assert len(result.history) == 12
    first, last = result.history[0], result.history[-1]
    assert last["best_cost"] <= first["best_cost"]
    assert last["best_latents"].shape == (5, model.cfg.latent_dim)
    assert last["elite_costs"].shape == (16,)
    if sampling == "block":  # one action held for the whole block
        assert np.allclose(result.actions.reshape(5, 5, 2), result.actions[::5][:, None])


def test_plan_is_seeded():
    model = _random_action_model(1)
    planner = Planner(model, STATS, CEMConfig(samples=32, elites=4, iterations=3))
    z0, zg = torch.randn(192), torch.randn(192)
    a = planner.plan(z0, zg, generator=torch.Generator().manual_seed(5)).actions
    b = planner.plan(z0, zg, generator=torch.Generator().manual_seed(5)).actions
    np.testing.assert_array_equal(a, b)


def test_actions_respect_the_valid_range_after_unscaling():
    stats = ActionStats(np.array([0.5, -0.2], np.float32), np.array([0.1, 0.3], np.float32))
    planner = Planner(
        _random_action_model(), stats, CEMConfig(samples=16, elites=4, iterations=2, init_std=50.0)
    )
    res = planner.plan(torch.randn(192), torch.randn(192), generator=torch.Generator())
    assert np.abs(res.actions).max() <= 1.0


def test_cost_rolls_out_from_the_observed_context():
    """A context of k latents and the k - 1 blocks between them is prepended to each candidate."""
    model = _random_action_model(2)
    planner = Planner(model, STATS, CEMConfig(context=3), dtype="float32")
    gen = torch.Generator().manual_seed(0)
    z_ctx, z_goal = torch.randn(3, 192, generator=gen), torch.randn(192, generator=gen)
    past, blocks = torch.randn(2, 10, generator=gen), torch.randn(8, 5, 10, generator=gen)
    costs, pred = planner.cost(z_ctx, z_goal, blocks, past)
    with torch.inference_mode():
        want = model.rollout(z_ctx[None], torch.cat([past.expand(8, -1, -1), blocks], 1))
    torch.testing.assert_close(pred, want)
    torch.testing.assert_close(costs, ((want[:, -1] - z_goal) ** 2).sum(-1))
    one_frame, _ = planner.cost(z_ctx[-1], z_goal, blocks)
    assert not torch.allclose(costs, one_frame)  # the history changes the predictions


def test_min_objective_scores_the_closest_predicted_latent():
    """objective "min": a candidate costs its smallest distance to the goal over the horizon;
    CEM with it finds a goal reached after 2 of 5 blocks, where what follows is free."""
    model = _random_action_model(3)
    gen = torch.Generator().manual_seed(0)
    z0, z_goal = torch.randn(192, generator=gen), torch.randn(192, generator=gen)
    blocks = torch.randn(8, 5, 10, generator=gen)
    last = Planner(model, STATS, CEMConfig(), dtype="float32")
    closest = Planner(model, STATS, CEMConfig(objective="min"), dtype="float32")
    per_block, pred = last.step_costs(z0, z_goal, blocks)
    torch.testing.assert_close(per_block, ((pred - z_goal) ** 2).sum(-1))
    torch.testing.assert_close(last.cost(z0, z_goal, blocks)[0], per_block[:, -1])
    torch.testing.assert_close(closest.cost(z0, z_goal, blocks)[0], per_block.min(1).values)
    assert (per_block.min(1).values < per_block[:, -1]).any()
    held = (torch.rand(1, 2, 1, 2, generator=gen) * 2 - 1).expand(1, 2, 5, 2).reshape(1, 2, 10)
    with torch.inference_mode():
        z_early = model.rollout(z0.view(1, 1, -1), held)[0, -1]  # the latent after 2 blocks
    cem = CEMConfig(samples=128, elites=16, iterations=12, objective="min")
    planner = Planner(model, STATS, cem, dtype="float32")
    random_costs, _ = planner.cost(z0, z_early, torch.rand(256, 5, 10, generator=gen) * 2 - 1)
    result = planner.plan(z0, z_early, generator=gen)
    assert result.cost < 0.2 * float(random_costs.median())
    with pytest.raises(UserError, match="CEM objective must be one of last, min \\(got .mean.\\)"):
        CEMConfig(objective="mean").validate()


def test_run_mpc_plans_from_the_last_observed_blocks():
    """context 3: the second plan starts from the frames at steps 0, 5, 10 and the two executed
    blocks between them (normalised); the first, with one frame observed, from that frame."""
    from lewm_core.envs import make
    from lewm_core.planning.mpc import run_mpc

    class Recording(Planner):
        def plan(self, z_start, z_goal, generator=None, keep_history=True, context_blocks=None):
            result = super().plan(z_start, z_goal, generator, keep_history, context_blocks)
            calls.append((z_start.clone(), context_blocks, result.actions))
            return result

    calls: list = []
    stats = ActionStats(np.array([0.1, -0.1], np.float32), np.array([0.5, 0.8], np.float32))
    model = _random_action_model(3)
    cem = CEMConfig(samples=16, elites=4, iterations=2, receding_horizon=2, context=3)
    planner = Recording(model, stats, cem, dtype="float32")
    env = make("tworoom", resolution=64)
    env.reset(seed=0)
    start = env.unwrapped.get_state()
    goal = start.copy()
    goal[:2] += 40.0  # far enough not to be met in 12 steps by chance
    frame = env.unwrapped.render()
    res = run_mpc(env, planner, start, goal, frame, budget=12, generator=torch.Generator())
    assert res.steps == 12 and len(calls) == 2
    assert calls[0][0].shape == (192,) and calls[0][1] is None
    z, past, _ = calls[1]
    torch.testing.assert_close(z, planner.encode(res.frames[[0, 5, 10]]))
    executed = calls[0][2][:10]  # the first plan's two executed blocks, raw
    np.testing.assert_allclose(past.numpy(), stats.normalize(executed).reshape(2, 10), rtol=1e-5)


def test_bad_cem_settings():
    with pytest.raises(UserError, match="elites"):
        CEMConfig(samples=10, elites=20).validate()
    with pytest.raises(UserError, match="sampling"):
        CEMConfig(sampling="gaussian").validate()


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(40, 50)
    assert lo == pytest.approx(0.6696, abs=1e-3) and hi == pytest.approx(0.8876, abs=1e-3)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0


def test_reaches_goal_counts_the_start_and_stops_where_told():
    """The success test holds at the start, after some action, or never; with
    `stop_at_goal` the later actions are not drawn, without it the env ends after the last."""
    from lewm_core.envs import make
    from lewm_core.planning.evaluate import EvalTask, random_policy_success, reaches_goal

    env = make("tworoom", resolution=32)
    env.reset(seed=0)
    start = np.array([40.0, 150.0])
    right = [np.array([1.0, 0.0])] * 10  # 5 px per step
    task = EvalTask(start, start + [30.0, 0.0], np.zeros((32, 32, 3), np.uint8))
    assert reaches_goal(env, EvalTask(start, start, task.goal_frame), [])
    assert not reaches_goal(env, task, [])
    assert not reaches_goal(env, task, right[:2])  # 10 px short of 30: 20 px away
    drawn = []
    lazy = (drawn.append(a) or a for a in right)
    assert reaches_goal(env, task, lazy)
    assert len(drawn) == 3, "stops at the first step within 16 px (15 px moved, 15 px left)"
    assert reaches_goal(env, task, right, stop_at_goal=False)
    np.testing.assert_allclose(env.unwrapped.get_state(), start + [50.0, 0.0])
    rng = np.random.default_rng(0)
    assert not random_policy_success(env, EvalTask(start, [180.0, 30.0], task.goal_frame), 5, rng)


def test_eval_cli_on_trained_model_is_repeatable(trained_run, tworoom_h5, tmp_path):
    args = [
        sys.executable,
        "-m",
        "lewm_core",
        "eval",
        "--checkpoint",
        trained_run["path"],
        "--data",
        tworoom_h5,
        "--episodes",
        "4",
        "--samples",
        "64",
        "--iterations",
        "6",
        "--videos",
        "1",
        "--video-dir",
        str(tmp_path / "v"),
        "--quiet",
        "--json",
    ]
    env = {**os.environ, "MUJOCO_GL": "egl"}
    outs = []
    for _ in range(2):
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for key in ("success_rate", "random_success_rate", "episodes", "plan_ms_median"):
        assert key in outs[0]
    assert outs[0]["episodes"] == 4
    for key in ("success_rate", "random_success_rate", "mean_steps", "plans", "goal_errors"):
        assert outs[0][key] == outs[1][key]
    episodes, errors = outs[0]["episode_results"], outs[0]["goal_errors"]
    assert len(episodes) == 4 and errors["tolerance"] == {"agent_dist": 16.0}
    for ep in episodes:  # the final error agrees with the episode's success
        assert (ep["final_errors"]["agent_dist"] < 16.0) == ep["success"]
    failed = [ep["final_errors"]["agent_dist"] for ep in episodes if not ep["success"]]
    if failed:
        assert errors["failed_final_median"]["agent_dist"] == pytest.approx(np.median(failed))
    kinds = outs[0]["goal_kinds"]  # Two-Room's kinds; the counts are the episodes'
    assert set(kinds) <= {"met", "move"} and outs[0]["goal_kinds"] == outs[1]["goal_kinds"]
    for kind, counts in kinds.items():
        mine = [ep for ep in episodes if ep["kind"] == kind]
        assert counts["episodes"] == len(mine) > 0
        assert counts["successes"] == sum(ep["success"] for ep in mine)
        assert 0 <= counts["random_successes"] <= counts["episodes"]
    assert sum(k["episodes"] for k in kinds.values()) == 4
    if "met" in kinds:  # a goal that holds at the start is met at step 0
        assert all(ep["success"] and ep["steps"] == 0 for ep in episodes if ep["kind"] == "met")
    # the recipes' one log line of an output file (recipes/recipes.sh `eval_summary`), and the
    # successes they compare
    out_file = tmp_path / "eval.json"
    out_file.write_text(proc.stdout)
    check = "source recipes/recipes.sh && eval_summary $0 && eval_successes $0"
    shell = subprocess.run(
        ["bash", "-c", check, str(out_file)], cwd=ROOT, capture_output=True, text=True
    )
    met = sum(ep["success"] for ep in episodes)
    rate = outs[0]["success_rate"]
    assert shell.returncode == 0, shell.stderr
    summary, successes = shell.stdout.splitlines()
    assert summary.startswith(f"{out_file}: {met} of 4 met ({rate:.0%}, 95% CI")
    assert successes == str(met)
    videos = list((tmp_path / "v").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_ship_writes_loadable_model_with_card(trained_run, tmp_path):
    from lewm_core.shipping import ship
    from lewm_core.world_model.checkpoint import load_model

    evals = {
        "block": {
            "sampling": "block",
            "episodes": 4,
            "success_rate": 0.5,
            "success_ci95": [0.15, 0.85],
            "random_success_rate": 0.0,
            "plan_ms_median": 123.0,
            "cem": {"samples": 64, "iterations": 6},
        }
    }
    out = ship(trained_run["path"], tmp_path / "tworoom", evals)
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md",
        "config.json",
        "eval.json",
        "model.safetensors",
        "train_summary.json",
    ]
    card = (out / "MODEL_CARD.md").read_text()
    assert "50%" in card and "tworoom" in card and "300 steps" in card
    loaded = load_model(out)
    assert loaded.env_name == "tworoom"


def test_ship_drops_a_decoder_of_replaced_weights(trained_run, tmp_path):
    """Re-shipping the same weights keeps the decoder trained beside them; shipping other
    weights over them removes it (it would decode another encoder's latents)."""
    from lewm_core.shipping import ship

    out = ship(trained_run["path"], tmp_path / "m")
    (out / "decoder.json").write_text("{}")
    (out / "decoder.safetensors").write_bytes(b"weights of a decoder")
    ship(trained_run["path"], out)
    assert (out / "decoder.json").exists() and (out / "decoder.safetensors").exists()
    (out / "model.safetensors").write_bytes(b"other weights shipped earlier")
    ship(trained_run["path"], out)
    assert not (out / "decoder.json").exists() and not (out / "decoder.safetensors").exists()
    assert (out / "model.safetensors").read_bytes() == (
        Path(trained_run["path"]) / "model.safetensors"
    ).read_bytes()


def test_ship_summarises_probe_and_surprise_in_the_card(trained_run, tmp_path, capsys):
    """`lewm ship --probe --surprise` keeps the real outputs of `lewm probe` / `lewm surprise`
    beside the weights and writes their section of the card; re-shipping the same weights keeps
    them, shipping other weights drops them; results of another env are refused."""
    from lewm_core.cli.main import main

    run = trained_run["path"]
    probe, surprise = tmp_path / "probe.out", tmp_path / "surprise.out"
    argv = ["probe", "--checkpoint", run, "--train-frames", "300", "--test-frames", "100"]
    assert main([*argv, "--no-mlp", "--json", "--quiet"]) == 0
    probe.write_text(capsys.readouterr().out)
    argv = ["surprise", "--checkpoint", run, "--episodes", "2", "--steps", "4", "--json"]
    assert main([*argv, "--quiet"]) == 0
    surprise.write_text(capsys.readouterr().out)
    out = tmp_path / "m"
    ship_argv = ["ship", "--run", run, "--out", str(out)]
    assert main([*ship_argv, "--probe", str(probe), "--surprise", str(surprise)]) == 0
    result = json.loads(probe.read_text().splitlines()[-1])
    r = result["linear"]["agent_pos"]["r"]
    floor = result["untrained"]["linear"]["agent_pos"]["r"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Probing and surprise" in card
    assert f"| agent_pos | {r:.3f} | - | {floor:.3f} | - |" in card  # no other quantity
    p = json.loads(surprise.read_text().splitlines()[-1])["teleport"]["p_value"]
    assert "teleported: jump" in card and f"p = {p:.2g}" in card
    assert json.loads((out / "probe.json").read_text()) == result
    assert main(ship_argv) == 0  # same weights: the results stay
    assert "## Probing and surprise" in (out / "MODEL_CARD.md").read_text()
    (out / "model.safetensors").write_bytes(b"other weights shipped earlier")
    assert main(ship_argv) == 0
    assert not (out / "probe.json").exists() and not (out / "surprise.json").exists()
    assert "Probing" not in (out / "MODEL_CARD.md").read_text()
    other = tmp_path / "other.out"
    other.write_text(json.dumps({**result, "env": "pusht"}) + "\n")
    assert main([*ship_argv, "--probe", str(other)]) == 2
    err = capsys.readouterr().err
    assert "'pusht'" in err and "lewm probe --checkpoint" in err
    other.write_text("table only, no JSON\n")
    assert main([*ship_argv, "--surprise", str(other)]) == 2
    assert "lewm surprise --json" in capsys.readouterr().err


def test_shipped_sampling_and_context_are_the_defaults_of_eval(
    trained_run, tworoom_h5, tmp_path, capsys
):
    """`lewm ship --sampling --context` records the model's CEM sampling and planning context;
    `lewm eval` plans with them unless told otherwise; a config naming an unknown sampling or a
    context beyond the model's history fails at load with the fix."""
    from lewm_core.cli.main import main
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(trained_run["path"])
    assert loaded.planning == PlanningDefaults("block", 1, "last", 5)  # nothing recorded
    history = loaded.model.cfg.history
    assert history >= 2
    out = tmp_path / "m"
    ship = ["ship", "--run", trained_run["path"], "--out", str(out), "--sampling", "independent"]
    capsys.readouterr()
    for flag, bad, message in (
        ("--context", history + 1, f"between 1 and {history} (the model's history)"),
        ("--receding-horizon", 6, "receding horizon 6; use a whole number between 1 and 5"),
    ):
        assert main([*ship, flag, str(bad)]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists(), "a refused ship writes nothing"
    chosen = ["--context", "2", "--objective", "min", "--receding-horizon", "2"]
    assert main([*ship, *chosen]) == 0
    loaded = load_model(out)
    assert loaded.planning == PlanningDefaults("independent", 2, "min", 2)
    assert (
        "Default CEM sampling (`lewm eval`, the lab, the demo): **independent**; each plan "
        "starts from the last **2** observed frames, scores a candidate by **its predicted "
        "latent closest to the goal over the horizon** and executes **2** of its blocks"
        in (out / "MODEL_CARD.md").read_text()
    )
    small = [
        "--data",
        tworoom_h5,
        "--episodes",
        "1",
        "--samples",
        "16",
        "--elites",
        "4",
        "--iterations",
        "2",
    ]
    evals = []
    published = ["--sampling", "block", "--context", "1", "--objective", "last"]
    for flags, expected in (
        ([], ("independent", 2, "min", 2)),
        ([*published, "--receding-horizon", "5"], ("block", 1, "last", 5)),
    ):
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(out), *small, *flags, "--quiet", "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        cem = result["cem"]
        got = (result["sampling"], cem["context"], cem["objective"], cem["receding_horizon"])
        assert got == expected
        evals.append(tmp_path / f"eval{len(evals)}.json")
        evals[-1].write_text(json.dumps(result) + "\n")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), *small, "--context", str(history + 1)]) == 2
    assert f"--context got {history + 1}; use a whole number between 1" in capsys.readouterr().err
    assert main([*ship, *(a for e in evals for a in ("--eval", str(e)))]) == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert (
        "| independent | 2 | min | 2 | 16x2 |" in card and "| block | 1 | last | 5 | 16x2 |" in card
    )
    kept = load_model(out).planning
    assert kept == PlanningDefaults("independent", 2, "min", 2), "shipping again keeps them"
    config = json.loads((out / "config.json").read_text())
    for key, bad, message in (
        ("sampling", "gaussian", "sampling must be one of block, independent \\(got 'gaussian'"),
        ("context", history + 1, f"context {history + 1}.*between 1 and {history} \\(the model"),
        ("objective", "mean", "objective must be one of last, min \\(got 'mean'"),
        ("receding_horizon", 0, "receding horizon 0.*between 1 and 5"),
        ("horizon", 3, r"unknown keys \['horizon'\]"),
    ):
        broken = {**config, "planning": {**config["planning"], key: bad}}
        (out / "config.json").write_text(json.dumps(broken))
        with pytest.raises(UserError, match=message):
            load_model(out)


def test_bfloat16_planning_finds_the_goal_and_leaves_the_model_alone():
    probe = bf16_probe()
    if not probe.runs or probe.speedup < BF16_SCREEN:
        pytest.skip(
            "bfloat16 matmuls are emulated here (not native) or do not run, so a bfloat16 plan "
            f"takes minutes: {probe}; tests/test_model.py covers the bfloat16 rollout"
        )
    model = _random_action_model()
    planner = Planner(
        model, STATS, CEMConfig(samples=128, elites=16, iterations=12), dtype="bfloat16"
    )
    assert next(model.parameters()).dtype == torch.float32, "the caller's model is not cast"
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(model.cfg.latent_dim, generator=gen)
    held = (torch.rand(1, 5, 1, 2, generator=gen) * 2 - 1).expand(1, 5, 5, 2).reshape(1, 5, 10)
    with torch.inference_mode():
        z_goal = model.rollout(z0.view(1, 1, -1), held)[0, -1]
        random_costs, _ = planner.cost(z0, z_goal, torch.rand(256, 5, 10, generator=gen) * 2 - 1)
    result = planner.plan(z0, z_goal, generator=gen)
    assert result.cost < 0.2 * float(random_costs.median())
    with pytest.raises(UserError, match="dtype"):
        Planner(model, STATS, dtype="float16")


def test_default_dtype_and_its_override(monkeypatch):
    from lewm_core.planning.precision import default_dtype

    monkeypatch.delenv("LEWM_PLAN_DTYPE", raising=False)
    assert default_dtype("cpu") in ("float32", "bfloat16")
    monkeypatch.setenv("LEWM_PLAN_DTYPE", "float32")
    assert Planner(_random_action_model(), STATS).dtype == torch.float32
    monkeypatch.setenv("LEWM_PLAN_DTYPE", "bfloat16")
    assert Planner(_random_action_model(), STATS).dtype == torch.bfloat16
    monkeypatch.setenv("LEWM_PLAN_DTYPE", "half")
    with pytest.raises(UserError, match="LEWM_PLAN_DTYPE"):
        default_dtype("cpu")


def test_bf16_probe_measures_and_never_raises():
    """The bfloat16 probe runs a real matmul and times it against float32; `choose_dtype` picks
    bfloat16 on the CPU exactly where it measured at least BF16_MIN_SPEEDUP times faster."""
    from lewm_core.planning.precision import BF16_MIN_SPEEDUP, bf16_matmul_speedup, choose_dtype

    probe = bf16_probe()
    assert bf16_matmul_speedup() == probe.speedup
    if probe.runs:
        assert math.isfinite(probe.speedup) and probe.speedup > 0 and probe.n in (512, 1024)
        assert probe.bf16_gflops > 0 and probe.fp32_gflops > 0
    else:
        assert probe.speedup == 0.0 and probe.reason
    if os.environ.get("LEWM_PLAN_DTYPE") or forced_plain():
        return
    dtype, why = choose_dtype("cpu")
    pays = probe.runs and probe.speedup >= BF16_MIN_SPEEDUP
    assert dtype == ("bfloat16" if pays else "float32") and why


def test_bf16_asked_for_by_name_warns_or_is_refused():
    """Named bfloat16 on a CPU where it does not run: refused, naming --dtype float32; where it
    runs slower than float32: one warning line naming it; where it is faster: nothing."""
    broken = Bf16Probe(False, reason="a bfloat16 matmul does not run here (RuntimeError: x)")
    with pytest.raises(UserError, match="cannot plan on this CPU.*--dtype float32"):
        bf16_request_check(broken)
    emulated = Bf16Probe(True, speedup=0.006, bf16_gflops=1.1, fp32_gflops=180.0, n=512)
    line = bf16_request_check(emulated)
    assert "0.006x" in line and "--dtype float32" in line and "\n" not in line
    assert bf16_request_check(Bf16Probe(True, 2.0, 200.0, 100.0, 1024)) is None
    # the machine's own probe decides for a real planner: plans, at worst with that warning
    if bf16_probe().runs:
        planner = Planner(_random_action_model(), STATS, dtype="bfloat16")
        assert planner.dtype == torch.bfloat16


def test_kernel_mode_values():
    assert kernel_mode_from(None) == kernel_mode_from("") == "auto"
    assert kernel_mode_from("plain") == kernel_mode_from(" Plain ") == "plain"
    with pytest.raises(UserError, match="LEWM_CPU_KERNELS='fast'.*auto or plain"):
        kernel_mode_from("fast")


FORCED_PLAIN_SCRIPT = """
import warnings, torch
from test_planning import STATS, _compile_test_model
from lewm_core.world_model.cpu_kernels import compile_blocked, fused_linear_gelu_status
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.precision import choose_dtype
assert choose_dtype("cpu") == ("float32", "LEWM_CPU_KERNELS=plain"), choose_dtype("cpu")
assert not fused_linear_gelu_status(torch.bfloat16).usable
model = _compile_test_model()
cfg = CEMConfig(samples=16, elites=4, iterations=2)
z0, zg = torch.randn(2, model.cfg.latent_dim, generator=torch.Generator().manual_seed(1))
eager = Planner(model, STATS, cfg).plan(z0, zg, torch.Generator().manual_seed(0))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    planners = [Planner(model, STATS, cfg, compile_rollout=True) for _ in range(2)]
    plans = [p.plan(z0, zg, torch.Generator().manual_seed(0)) for p in planners]
said = [str(w.message) for w in caught if "compilation" in str(w.message)]
assert len(said) == 1 and "LEWM_CPU_KERNELS=plain" in said[0], said
assert not any(p.compiled for p in planners)
assert all(p.cost == eager.cost for p in plans), ([p.cost for p in plans], eager.cost)
low = Planner(model, STATS, cfg, dtype="bfloat16").plan(z0, zg, torch.Generator().manual_seed(0))
assert abs(low.cost - eager.cost) <= 0.1 * max(1.0, abs(eager.cost)), (low.cost, eager.cost)
print("PLAIN", compile_blocked())
"""


def test_forced_plain_kernels_plan_eagerly_in_float32():
    """LEWM_CPU_KERNELS=plain: auto picks float32, compilation is declined with one warning for
    the process and the same plan, and bfloat16 asked for by name still plans (plain path)."""
    if not bf16_probe().runs:
        pytest.skip(f"bfloat16 does not run here: {bf16_probe().reason}")
    env = {k: v for k, v in os.environ.items() if k != "LEWM_PLAN_DTYPE"}
    env.update(LEWM_CPU_KERNELS="plain", PYTHONPATH=os.path.dirname(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", FORCED_PLAIN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0 and "PLAIN LEWM_CPU_KERNELS=plain" in proc.stdout, proc.stderr


def test_cem_returns_the_same_plan_with_fast_and_naive_rollouts():
    """float32, fixed seed: the fast rollout changes nothing CEM can see."""
    model = _random_action_model(seed=2)
    gen = torch.Generator().manual_seed(5)
    z0 = torch.randn(model.cfg.latent_dim, generator=gen)
    z_goal = torch.randn(model.cfg.latent_dim, generator=gen)
    cfg = CEMConfig(samples=96, elites=12, iterations=6)
    plans = {
        mode: Planner(model, STATS, cfg, rollout_mode=mode, dtype="float32").plan(
            z0, z_goal, generator=torch.Generator().manual_seed(0)
        )
        for mode in ("fast", "naive")
    }
    np.testing.assert_allclose(plans["fast"].actions, plans["naive"].actions, rtol=0, atol=1e-5)
    assert plans["fast"].cost == pytest.approx(plans["naive"].cost, rel=1e-4)


def _compile_test_model() -> LeWM:
    """A one-block predictor (a short graph, so that compiling takes seconds) with live AdaLN."""
    torch.manual_seed(3)
    model = LeWM(ModelConfig.preset("lab", dropout=0.0, pred_depth=1)).eval()
    with torch.no_grad():
        for name, p in model.predictor.named_parameters():
            if "adaln" in name:
                p.normal_(0, 0.05)
    return model


def test_compiled_rollout_plans_like_the_eager_one():
    """float32, fixed seed: torch.compile changes how the rollout runs, not what CEM finds."""
    if forced_plain():
        pytest.skip("LEWM_CPU_KERNELS=plain: planners do not compile")
    model = _compile_test_model()
    gen = torch.Generator().manual_seed(7)
    z0, z_goal = torch.randn(2, model.cfg.latent_dim, generator=gen)
    cfg = CEMConfig(samples=64, elites=8, iterations=4)
    plans = {}
    for compiled in (False, True):
        planner = Planner(model, STATS, cfg, dtype="float32", compile_rollout=compiled)
        plans[compiled] = planner.plan(z0, z_goal, generator=torch.Generator().manual_seed(0))
        assert planner.compiled == compiled  # compiled for real, no silent fallback
    np.testing.assert_allclose(plans[True].actions, plans[False].actions, rtol=0, atol=1e-4)
    assert plans[True].cost == pytest.approx(plans[False].cost, rel=1e-4)
    # The compiled planner froze its own copy: changing the caller's weights afterwards (more
    # training) changes neither that planner's plans nor leaves the caller's model shared.
    with torch.no_grad():
        for p in model.predictor.parameters():
            p.mul_(-1.0)
    again = planner.plan(z0, z_goal, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(again.actions, plans[True].actions)
    assert again.cost == plans[True].cost


def test_recompile_limit_falls_back_with_a_warning():
    """Past dynamo's recompile limit the planner says it plans eagerly (no silent fall-back)."""
    if forced_plain():
        pytest.skip("LEWM_CPU_KERNELS=plain: planners do not compile")
    import torch._dynamo

    model = _compile_test_model()
    gen = torch.Generator().manual_seed(3)
    z0, z_goal = torch.randn(2, model.cfg.latent_dim, generator=gen)
    planner = Planner(
        model, STATS, CEMConfig(samples=16, elites=4, iterations=2), compile_rollout=True
    )
    width = model.cfg.frameskip * 2
    torch._dynamo.reset()  # graphs of other tests' planners do not count
    try:
        with torch._dynamo.config.patch(recompile_limit=1):
            planner.cost(z0, z_goal, torch.randn(16, 5, width, generator=gen))
            assert planner.compiled
            with pytest.warns(RuntimeWarning, match="planning without compilation"):
                costs, _ = planner.cost(z0, z_goal, torch.randn(8, 5, width, generator=gen))
    finally:
        torch._dynamo.reset()
    assert not planner.compiled and costs.shape == (8,)


FALLBACK_SCRIPT = """
import warnings, torch
from test_planning import STATS, _compile_test_model
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
model = _compile_test_model()
cfg = CEMConfig(samples=16, elites=4, iterations=2)
z0, zg = torch.randn(2, model.cfg.latent_dim, generator=torch.Generator().manual_seed(1))
eager = Planner(model, STATS, cfg, dtype="float32").plan(z0, zg, torch.Generator().manual_seed(0))
planner = Planner(model, STATS, cfg, dtype="float32", compile_rollout=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = planner.plan(z0, zg, torch.Generator().manual_seed(0))
assert not planner.compiled, "compiled without a C++ compiler?"
assert any("planning without compilation" in str(w.message) for w in caught), caught
assert abs(res.cost - eager.cost) <= 1e-5 * max(1.0, abs(eager.cost)), (res.cost, eager.cost)
with warnings.catch_warnings(record=True) as again:  # the process does not try, nor warn, again
    warnings.simplefilter("always")
    later = Planner(model, STATS, cfg, dtype="float32", compile_rollout=True)
    assert not later.compiled, "a later planner tried to compile again"
    assert later.plan(z0, zg, torch.Generator().manual_seed(0)).cost == res.cost
assert not again, [str(w.message) for w in again]
print("FELL BACK")
"""


def test_compile_failure_falls_back_to_eager_planning(tmp_path):
    """No working C++ compiler (CXX=/bin/false, empty inductor cache): one warning, the same
    plan, and later planners of the process plan eagerly without trying again."""
    env = {
        **os.environ,
        "CXX": "/bin/false",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "PYTHONPATH": os.path.dirname(__file__),
    }
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0 and "FELL BACK" in proc.stdout, proc.stderr[-3000:]


def test_ship_records_the_training_stages_of_fine_tuned_weights(tiny_run, tmp_path):
    """Weights fine-tuned from other weights (`--init-from`, `--extra-data`) ship with their
    training history: every stage in config.json and the card, kept when the runs are gone."""
    import shutil

    from lewm_core.data.collect import CollectSpec, collect
    from lewm_core.shipping import ship
    from lewm_core.training.config import TrainConfig
    from lewm_core.training.trainer import Trainer
    from lewm_core.world_model.checkpoint import read_config

    extra = tmp_path / "extra.h5"
    collect(CollectSpec("tworoom", episodes=3, steps=40, resolution=64, seed=5), extra)

    def fine_tune(start, out):
        cfg = TrainConfig.from_preset(
            "lab", str(tiny_run["h5"]), str(out), max_steps=4, batch_size=8, threads=1,
            checkpoint_every=10, init_from=str(start), extra_data=[str(extra)], extra_repeat=2,
        )  # fmt: skip
        Trainer(cfg).run()
        return out

    stage2 = fine_tune(tiny_run["run"], tmp_path / "ft1")
    shipped = ship(stage2, tmp_path / "shipped")
    lineage = read_config(shipped)["lineage"]
    assert [st["init_from"] for st in lineage] == [None, str(tiny_run["run"])]
    assert [st["steps"] for st in lineage] == [20, 4]
    assert lineage[1]["extra_data"][0]["num_episodes"] == 3 and lineage[1]["extra_repeat"] == 2
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "24 steps in 2 stages" in card and "## Training history" in card
    assert f"`{extra}` (3 episodes" in card
    # a further stage started from the shipped folder; the stage-2 run folder is gone by then
    stage3 = fine_tune(shipped, tmp_path / "ft2")
    shutil.rmtree(stage2)
    again = ship(stage3, tmp_path / "shipped2")
    assert [st["steps"] for st in read_config(again)["lineage"]] == [20, 4, 4]
    assert "28 steps in 3 stages" in (again / "MODEL_CARD.md").read_text()
    # stage 3 shipped over the folder it started from, then shipped again: still three stages
    ship(stage3, shipped)
    ship(stage3, shipped)
    assert [st["steps"] for st in read_config(shipped)["lineage"]] == [20, 4, 4]
    # weights trained in one stage have no history section
    plain = ship(tiny_run["run"], tmp_path / "plain")
    assert "lineage" not in read_config(plain)
    assert "Training history" not in (plain / "MODEL_CARD.md").read_text()
