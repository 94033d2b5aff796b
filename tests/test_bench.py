"""Smoke tests: the benchmark scripts run for real with a tiny budget and print their JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lewm_testing import CHROMIUM, ROOT


def run_script(*args: str) -> dict:
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_envs_smoke():
    out = run_script("bench/envs.py", "--seconds", "0.2", "--collect-episodes", "4", "--json")
    for name in ("tworoom", "pusht", "reacher", "cube"):
        assert out[f"{name}_steps_s"] > 0
    assert out["pusht_collect_episodes"] == 4 and out["pusht_collect_s"] > 0


def test_bench_angle_probe_smoke(tmp_path):
    """The shipped Push-T model's angle probes and a tiny supervised ceiling, on fresh episodes."""
    data = tmp_path / "pusht.h5"
    collect = [sys.executable, "-m", "lewm_core", "collect", "--env", "pusht", "--episodes", "20"]
    collect += ["--steps", "40", "--seed", "3", "--out", str(data), "--quiet"]
    subprocess.run(collect, cwd=ROOT, check=True, capture_output=True, timeout=300)
    out = run_script(
        "bench/angle_probe.py", "--data", str(data), "--checkpoints", "assets/models/pusht",
        "--supervised-steps", "3", "--json",
    )  # fmt: skip
    (row,) = out["checkpoints"]
    assert row["agent_pos_linear"] > 0.8  # the agent moves within the 2 held-out episodes
    assert out["quantity"] == "block_angle"
    keys = ("target_linear_latent", "target_mlp_pre_projector", "target_linear_latent_and_rest")
    for key in (*keys, "block_pos_linear"):
        assert -1.0 <= row[key] <= 1.0
    assert set(out["state_floor"]) == {"linear", "mlp"} and out["minus"] is None
    assert out["supervised"]["steps"] == 3 and -1.0 <= out["supervised"]["r_test"] <= 1.0


def test_bench_fixed_goal_floor_pushes_to_the_one_goal():
    """The expert pushes every episode to the one goal pose; both floors are correlations."""
    out = run_script("bench/fixed_goal_floor.py", "--episodes", "12", "--json")
    assert out["fixed_goal"]["episodes_met"] >= 9
    assert out["random_goals"]["frames"] == 12 * 200 and out["random_goals"]["episodes_met"] == 0
    for part in ("fixed_goal", "random_goals"):
        assert all(-1.0 <= out[part][kind] <= 1.0 for kind in ("linear", "mlp"))


def test_bench_oracle_plan_reaches_two_room_goals(tworoom_h5):
    """CEM through the true simulator plans the held-out Two-Room episodes: the protocol's
    ceiling is near 100% there (98% over 50 episodes); a broken cost or state replay is not."""
    out = run_script(
        "bench/oracle_plan.py", "--env", "tworoom", "--data", tworoom_h5, "--episodes", "5",
        "--samples", "100", "--iterations", "10", "--receding-horizon", "2", "--json",
    )  # fmt: skip
    assert out["planner"] == "simulator" and out["episodes"] == 5
    assert out["receding_horizon"] == 2
    assert out["success_rate"] >= 0.8, out
    kinds = out["goal_kinds"]  # every episode counted once, under Two-Room's kinds
    assert set(kinds) <= {"met", "move"} and sum(k["episodes"] for k in kinds.values()) == 5
    assert sum(k["successes"] for k in kinds.values()) == sum(out["episode_success"])


def test_bench_expert_cost_replays_the_data_to_its_goals(trained_run, tworoom_h5):
    """The model's cost of the data's own actions next to CEM's, from a two-frame context: each
    task's data actions, replayed from its start state, reach its goal (its row is right)."""
    out = run_script(
        "bench/expert_cost.py", "--checkpoint", trained_run["path"], "--data", tworoom_h5,
        "--episodes", "3", "--samples", "32", "--iterations", "3", "--context", "2",
        "--objective", "min", "--json",
    )  # fmt: skip
    assert out["cem"]["objective"] == "min"  # the flag, not the run folder's default (last)
    assert len(out["tasks"]) == 3 and sum(g["tasks"] for g in out["groups"].values()) == 3
    assert set(out["groups"]) <= {"met", "move"}
    for task in out["tasks"]:
        assert task["expert_reached"], task
        assert 1 <= task["context"] <= 2  # one frame only at an episode's first block
        assert 0.0 <= task["expert_cost"] < float("inf") and 0.0 <= task["cem_cost"] < float("inf")
        assert task["cem_rollout_error"] >= 0.0
    # the frames at the block boundaries line up with the predictions: the trained model's
    # rollout of the data's actions errs far less than copying the start latent would
    errors = sum(t["expert_rollout_error"] for t in out["tasks"])
    assert errors < 0.5 * sum(t["copy_error"] for t in out["tasks"]), out["tasks"]


@pytest.mark.slow
def test_bench_rollout_error_trained_model_beats_copying(trained_run, tworoom_h5):
    """The trained model's own rollout, scored against the encoded frames, beats copying the
    start latent at every block (a broken rollout or misaligned actions would not)."""
    out = run_script(
        "bench/rollout_error.py", "--data", tworoom_h5, "--checkpoints", trained_run["path"],
        "--steps", "3", "--clips", "64", "--json",
    )  # fmt: skip
    (row,) = out["checkpoints"]
    assert out["steps"] == 3 and len(row["ratio"]) == 3 and row["clips"] > 0
    assert all(0.0 < r < 0.8 for r in row["ratio"]), row
    args = ["--data", tworoom_h5, "--checkpoints", trained_run["path"], "--steps", "3"]
    val = run_script("bench/rollout_error.py", *args, "--clips", "400", "--json")
    every = run_script(
        "bench/rollout_error.py", *args, "--clips", "400", "--split", "all", "--json"
    )
    # 6 held-out episodes hold 246 clips of 4 frames; all 60 episodes ten times as many
    assert val["checkpoints"][0]["clips"] == 246 and every["checkpoints"][0]["clips"] == 400


def test_bench_ensemble_plan_runs_the_eval_protocol(trained_run, tworoom_h5):
    """`evaluate()` with an EnsemblePlanner of two models: the same protocol and JSON."""
    out = run_script(
        "bench/ensemble_plan.py", "--checkpoints", trained_run["path"], trained_run["path"],
        "--data", tworoom_h5, "--episodes", "3", "--samples", "32", "--iterations", "3",
        "--json",
    )  # fmt: skip
    assert out["episodes"] == 3 and len(out["checkpoints"]) == 2 and out["plans"] >= 1
    assert sum(g["episodes"] for g in out["goal_kinds"].values()) == 3
    assert 0.0 <= out["success_rate"] <= 1.0 and out["plan_ms_median"] > 0


def test_bench_plan_lab_smoke():
    """Two CEM iterations per plan: the chosen kernels are named with their reasons, and fast,
    naive and the FLOP bound are reported for this machine."""
    out = run_script(
        "bench/plan.py", "--preset", "lab", "--repeats", "1", "--iterations", "2", "--json"
    )
    assert out["fast_s"] > 0 and out["naive_s"] > 0 and out["flops_fast"] < out["flops_naive"]
    assert out["fast_mode"] in ("eager", "compiled") and out["fast_s"] <= out["fast_eager_s"]
    assert out["fast_context3_s"] > 0 and out["context3_over_eager"] > 0
    assert out["bound_s"] > 0 and out["cem"] == "300x2, horizon 5" and out["meets_target"] is None
    assert out["fast_dtype"] in ("float32", "bfloat16") and out["fast_dtype_reason"]
    assert out["linear_gelu"] in ("fused", "plain") and out["linear_gelu_reason"]
    assert out["fast_mode_reason"].startswith(out["fast_mode"])


def test_bench_plan_runs_with_the_plain_kernels_forced():
    """LEWM_CPU_KERNELS=plain, as on a CPU where no probe passes: float32, plain, eager."""
    env = {k: v for k, v in os.environ.items() if k != "LEWM_PLAN_DTYPE"}
    env.update(MUJOCO_GL="egl", LEWM_CPU_KERNELS="plain")
    argv = ["bench/plan.py", "--preset", "lab", "--repeats", "1", "--iterations", "2", "--json"]
    proc = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kernels"] == "plain" and out["fast_dtype"] == "float32"
    assert out["linear_gelu"] == "plain" and out["fast_mode"] == "eager"
    assert "LEWM_CPU_KERNELS=plain" in out["fast_mode_reason"] and out["fast_compiled_s"] is None
    assert out["fast_s"] > 0 and out["naive_s"] > 0 and 0 < out["bound_s"]
    assert "precision: float32 (LEWM_CPU_KERNELS=plain)" in proc.stdout


@pytest.mark.slow
@pytest.mark.browser
def test_bench_app_smoke():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    out = run_script("bench/app.py", "--repeats", "1")
    assert out["target_s"] == 3.0
    assert 0 < out["first_page_s"] < 120 and 0 < out["plan_click_to_rollout_s"] < 120


def test_bench_paired_eval_pairs_the_same_tasks(trained_run, tworoom_h5, tmp_path):
    """Two `lewm eval --json` runs on the same seed pair up task by task (one with a far weaker
    search); a run on another seed is refused; the sign test's p-values are the exact ones."""
    sys.path.insert(0, str(ROOT / "bench"))
    from paired_eval import sign_test

    assert sign_test(0, 0) == 1.0 and sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(10, 18) == pytest.approx(0.1849, abs=1e-4) == sign_test(18, 10)
    files = {}
    for name, seed, samples in (("strong", "0", "64"), ("weak", "0", "4"), ("other", "1", "4")):
        argv = [sys.executable, "-m", "lewm_core", "eval", "--checkpoint", trained_run["path"]]
        argv += ["--data", tworoom_h5, "--episodes", "6", "--seed", seed, "--samples", samples]
        argv += ["--elites", "2", "--iterations", "3", "--quiet", "--json"]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(proc.stdout)
    out = run_script(
        "bench/paired_eval.py", "--a", str(files["strong"]), "--b", str(files["weak"]), "--json"
    )
    strong = json.loads(files["strong"].read_text().strip().splitlines()[-1])
    weak = json.loads(files["weak"].read_text().strip().splitlines()[-1])
    assert out["episodes"] == 6 and out["a"] == round(6 * strong["success_rate"])
    assert out["b"] == round(6 * weak["success_rate"])
    assert out["a"] - out["b"] == out["only_a"] - out["only_b"]
    proc = subprocess.run(
        [sys.executable, "bench/paired_eval.py", "--a", str(files["strong"]), "--b",
         str(files["other"])],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "not the same tasks" in proc.stderr


def test_bench_shell_scripts_parse_and_every_env_has_a_recipe():
    """Every bench/*.sh parses (`bash -n`); `recipe ENV` sets the sizes the scripts read for
    each env, with Push-T's later stages well-formed, and names the choices for an unknown env."""
    for script in sorted((ROOT / "bench").glob("*.sh")):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"
    show = 'source bench/recipes.sh && recipe "$0" && echo "$EPISODES|$STEPS|$TRAIN_STEPS|'
    show += '$ROUNDS|$MORE_DATA|$TOP_ROUND|$GOAL_KINDS|$LEWM|$MUJOCO_GL"'
    clean = {k: v for k, v in os.environ.items() if k not in ("LEWM", "MUJOCO_GL")}
    for env in ("tworoom", "pusht", "reacher", "cube"):
        proc = subprocess.run(
            ["bash", "-c", show, env], cwd=ROOT, capture_output=True, text=True, env=clean
        )
        assert proc.returncode == 0, proc.stderr
        fields = proc.stdout.strip().split("|")
        episodes, steps, train_steps, rounds, more, top, kinds, lewm, gl = fields
        assert lewm == ".venv/bin/lewm" and gl == "egl"  # what the sourcing scripts share
        assert int(episodes) > 0 and int(steps) > 0 and int(train_steps) > 0
        if env == "pusht":
            assert all(len(r.split(":")) == 3 for r in rounds.split()) and kinds == "push"
            assert len(more.split(":")) == 3 and len(top.split(":")) == 4
    proc = subprocess.run(["bash", "-c", show, "atari"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "choose tworoom, pusht, reacher or cube" in proc.stderr
