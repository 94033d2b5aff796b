"""The research scripts (research/): each runs for real with a tiny budget and prints its JSON
line; the ensemble planner and the planner-episode filter they hold, tested as library code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from lewm_testing import ROOT, load_script, run_script
from test_planner_data import CEM, RUN
from test_planning import STATS, _random_action_model

from lewm_core.data.dataset import ActionStats, open_dataset
from lewm_core.errors import UserError
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.planner_data import collect_planner_episodes
from lewm_core.world_model.checkpoint import load_model

ENSEMBLE = load_script("research/ensemble_plan.py")
REACHED = load_script("research/planner_reached.py")
episodes_reached, write_reached = REACHED.episodes_reached, REACHED.write_reached


def test_angle_probe_smoke(tmp_path):
    """The shipped Push-T model's angle probes and a tiny supervised ceiling, on fresh episodes."""
    data = tmp_path / "pusht.h5"
    collect = [sys.executable, "-m", "lewm_core", "collect", "--env", "pusht", "--episodes", "20"]
    collect += ["--steps", "40", "--seed", "3", "--out", str(data), "--quiet"]
    subprocess.run(collect, cwd=ROOT, check=True, capture_output=True, timeout=300)
    out = run_script(
        "research/angle_probe.py", "--data", str(data), "--checkpoints", "assets/models/pusht",
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


def test_fixed_goal_floor_pushes_to_the_one_goal():
    """The expert pushes every episode to the one goal pose; both floors are correlations."""
    out = run_script("research/fixed_goal_floor.py", "--episodes", "12", "--json")
    assert out["fixed_goal"]["episodes_met"] >= 9
    assert out["random_goals"]["frames"] == 12 * 200 and out["random_goals"]["episodes_met"] == 0
    for part in ("fixed_goal", "random_goals"):
        assert all(-1.0 <= out[part][kind] <= 1.0 for kind in ("linear", "mlp"))


def test_oracle_plan_reaches_two_room_goals(tworoom_h5):
    """CEM through the true simulator plans the held-out Two-Room episodes: the protocol's
    ceiling is near 100% there (98% over 50 episodes); a broken cost or state replay is not."""
    out = run_script(
        "research/oracle_plan.py", "--env", "tworoom", "--data", tworoom_h5, "--episodes", "5",
        "--samples", "100", "--iterations", "10", "--receding-horizon", "2", "--json",
        "--split", "all", "--goal-at-start", "not-counted",  # the paper's protocol, as lewm eval's
        "--goal-offset", "20",
    )  # fmt: skip
    assert out["planner"] == "simulator" and out["episodes"] == 5 and out["goal_offset"] == 20
    assert (out["split"], out["goal_at_start"]) == ("all", "not-counted")
    assert out["receding_horizon"] == 2
    assert out["success_rate"] >= 0.8, out
    kinds = out["goal_kinds"]  # every episode counted once, under Two-Room's kinds
    assert set(kinds) <= {"met", "move"} and sum(k["episodes"] for k in kinds.values()) == 5
    assert sum(k["successes"] for k in kinds.values()) == sum(out["episode_success"])


def test_expert_cost_replays_the_data_to_its_goals(trained_run, tworoom_h5):
    """The model's cost of the data's own actions next to CEM's, from a two-frame context: each
    task's data actions, replayed from its start state, reach its goal (its row is right)."""
    out = run_script(
        "research/expert_cost.py", "--checkpoint", trained_run["path"], "--data", tworoom_h5,
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
def test_rollout_error_trained_model_beats_copying(trained_run, tworoom_h5):
    """The trained model's own rollout, scored against the encoded frames, beats copying the
    start latent at every block (a broken rollout or misaligned actions would not)."""
    out = run_script(
        "research/rollout_error.py", "--data", tworoom_h5, "--checkpoints", trained_run["path"],
        "--steps", "3", "--clips", "64", "--json",
    )  # fmt: skip
    (row,) = out["checkpoints"]
    assert out["steps"] == 3 and len(row["ratio"]) == 3 and row["clips"] > 0
    assert all(0.0 < r < 0.8 for r in row["ratio"]), row
    args = ["--data", tworoom_h5, "--checkpoints", trained_run["path"], "--steps", "3"]
    val = run_script("research/rollout_error.py", *args, "--clips", "400", "--json")
    every = run_script(
        "research/rollout_error.py", *args, "--clips", "400", "--split", "all", "--json"
    )
    # 6 held-out episodes hold 246 clips of 4 frames; all 60 episodes ten times as many
    assert val["checkpoints"][0]["clips"] == 246 and every["checkpoints"][0]["clips"] == 400


def test_ensemble_plan_runs_the_eval_protocol(trained_run, tworoom_h5):
    """`evaluate()` with an EnsemblePlanner of two models: the same protocol and JSON."""
    out = run_script(
        "research/ensemble_plan.py", "--checkpoints", trained_run["path"], trained_run["path"],
        "--data", tworoom_h5, "--episodes", "3", "--samples", "32", "--iterations", "3",
        "--json",
    )  # fmt: skip
    assert out["episodes"] == 3 and len(out["checkpoints"]) == 2 and out["plans"] >= 1
    assert sum(g["episodes"] for g in out["goal_kinds"].values()) == 3
    assert 0.0 <= out["success_rate"] <= 1.0 and out["plan_ms_median"] > 0


def test_paired_eval_pairs_the_same_tasks(trained_run, tworoom_h5, tmp_path):
    """Two `lewm eval --json` runs on the same seed pair up task by task (one with a far weaker
    search); a run on another seed is refused; the sign test's p-values are the exact ones."""
    sign_test = load_script("research/paired_eval.py").sign_test

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
        "research/paired_eval.py", "--a", str(files["strong"]), "--b", str(files["weak"]), "--json"
    )
    strong = json.loads(files["strong"].read_text().strip().splitlines()[-1])
    weak = json.loads(files["weak"].read_text().strip().splitlines()[-1])
    assert out["episodes"] == 6 and out["a"] == round(6 * strong["success_rate"])
    assert out["b"] == round(6 * weak["success_rate"])
    assert out["a"] - out["b"] == out["only_a"] - out["only_b"]
    proc = subprocess.run(
        [sys.executable, "research/paired_eval.py", "--a", str(files["strong"]), "--b",
         str(files["other"])],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "not the same tasks" in proc.stderr


def test_ensemble_cost_is_the_mean_of_its_members_costs():
    """EnsemblePlanner: latents are the members' latents side by side; a candidate's cost
    after each block is the mean of its cost through each model, in each model's own latent
    space; one model twice plans as that model alone; members of other data are refused."""
    a, b = _random_action_model(4), _random_action_model(5)
    cem = CEMConfig(objective="min")
    pa, pb = (Planner(m, STATS, cem, dtype="float32") for m in (a, b))
    ens = ENSEMBLE.EnsemblePlanner([pa, pb])
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 64, 64, 3), generator=gen, dtype=torch.uint8).numpy()
    z0 = ens.encode_observation(None, frames)[-1]
    z_goal = ens.encode_goal(frames[0] // 2, np.zeros(1))
    assert z0.shape == z_goal.shape == (2 * 192,)
    torch.testing.assert_close(z0[:192], pa.encode(frames)[-1])
    blocks = torch.randn(8, 5, 10, generator=gen)
    per_block, pred = ens.step_costs(z0, z_goal, blocks)
    ca, za = pa.step_costs(z0[:192], z_goal[:192], blocks)
    cb, zb = pb.step_costs(z0[192:], z_goal[192:], blocks)
    torch.testing.assert_close(per_block, (ca + cb) / 2)
    torch.testing.assert_close(pred, torch.cat([za, zb], -1))
    assert not torch.allclose(ca, cb)  # the two models disagree
    torch.testing.assert_close(ens.cost(z0, z_goal, blocks)[0], per_block.min(1).values)
    twice = ENSEMBLE.EnsemblePlanner([pa, Planner(a, STATS, cem, dtype="float32")])
    alone = pa.plan(z0[:192], z_goal[:192], torch.Generator().manual_seed(1), keep_history=False)
    both = twice.plan(z0[:192].repeat(2), z_goal[:192].repeat(2), torch.Generator().manual_seed(1))
    np.testing.assert_allclose(both.actions, alone.actions, rtol=1e-5, atol=1e-6)
    other = ActionStats(np.ones(2, np.float32), np.ones(2, np.float32))
    with pytest.raises(UserError, match="trained on the same dataset"):
        ENSEMBLE.EnsemblePlanner([pa, Planner(b, other, cem, dtype="float32")])


def test_reached_episodes_are_found_by_replay_and_kept(tiny_run, tmp_path):
    """`episodes_reached` draws the file's tasks again and replays each episode's actions: it
    finds the episodes the planner reported as meeting their goal; `write_reached` keeps exactly
    those; a file whose tasks cannot be drawn again (another seed) is refused."""
    import shutil

    loaded = load_model(tiny_run["run"])
    out = tmp_path / "planned.h5"
    summary = collect_planner_episodes(
        loaded, tiny_run["h5"], out, 8, seed=4, budget=10, goal_offset=5, cem=CEM, dtype="float32"
    )  # goals 5 steps ahead: 2 of 8 hold at the start, the tiny model meets few others
    reached = episodes_reached(out)
    assert reached.shape == (8,) and reached.mean() == summary["reached_goal"]
    assert 0 < reached.sum() < 8, reached  # this seed draws both kinds of episode
    kept = tmp_path / "kept.h5"
    assert write_reached(out, kept) == {"out": str(kept), "episodes": int(reached.sum()), "of": 8}
    with open_dataset(out) as f, open_dataset(kept) as g:
        rows = np.concatenate([np.arange(10) + 10 * k for k in np.flatnonzero(reached)])
        np.testing.assert_array_equal(g["pixels"][:], f["pixels"][:][rows])
        np.testing.assert_array_equal(g["action"][:], f["action"][:][rows])
        assert "met their goal" in g.attrs["filtered_from"] and g.attrs["seed"] == 4
    with pytest.raises(UserError, match="subset"):  # its tasks cannot be drawn again
        episodes_reached(kept)
    # research/planner_reached.py, the command that does the same: its JSON line, its refusals
    script = [sys.executable, "research/planner_reached.py", "--planned", str(out), "--out"]
    proc = subprocess.run([*script, str(kept), "--overwrite", "--json"], **RUN)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "out": str(kept), "episodes": int(reached.sum()), "of": 8,
    }  # fmt: skip
    proc = subprocess.run([*script, str(kept)], **RUN)  # without --overwrite
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = subprocess.run([sys.executable, "research/planner_reached.py", "--planned", str(kept),
                           "--out", str(tmp_path / "again.h5")], **RUN)  # fmt: skip
    assert proc.returncode == 2 and "subset" in proc.stderr
    assert not (tmp_path / "again.h5").exists()
    wrong = tmp_path / "wrong.h5"
    shutil.copy(out, wrong)
    with h5py.File(wrong, "a") as f:
        f.attrs["seed"] = 5
    with pytest.raises(UserError, match="does not replay"):
        episodes_reached(wrong)


def test_angle_factors_table_reads_real_probe_outputs(tmp_path):
    """The factor study's table: a real `lewm probe --json` of the shipped Push-T model, filed
    as a finished arm, comes back as its row (linear, MLP, untrained and floor r)."""
    data = tmp_path / "v1.h5"
    collect = [sys.executable, "-m", "lewm_core", "collect", "--env", "pusht-v1", "--episodes"]
    collect += ["12", "--steps", "40", "--seed", "3", "--out", str(data), "--quiet"]
    subprocess.run(collect, cwd=ROOT, check=True, capture_output=True, timeout=300)
    run = tmp_path / "runs" / "f-v1-expert"
    run.mkdir(parents=True)
    probe = [sys.executable, "-m", "lewm_core", "probe", "--checkpoint", "assets/models/pusht-v1"]
    probe += ["--data", str(data), "--train-frames", "200", "--test-frames", "100", "--json"]
    probe += ["--quiet"]
    out = subprocess.run(probe, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    (run / "probe.out").write_text(out.stdout)
    expected = json.loads(out.stdout.strip().splitlines()[-1])
    script = [sys.executable, "research/angle_factors.py", "--table-only"]
    table = subprocess.run(
        [*script, "--runs", str(tmp_path / "runs")],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout.splitlines()  # fmt: skip
    assert table[0].startswith("| arm, probed on | agent_pos | block_pos | block_angle")
    (row,) = [line for line in table if line.startswith("| v1-expert, own data |")]
    angle = expected["linear"]["block_angle"]["r"]
    floor = expected["state_floor"]["linear"]["block_angle"]["r"]
    assert f"{angle:.3f} (" in row and row.endswith(f" | {floor:.3f} |")


def test_predictor_size_table_reads_real_run_files(trained_run, tworoom_h5, tmp_path):
    """The predictor study's table and paired line from a real run's summary, real `lewm
    model-info` counts of both arms (the paper's predictor: 6 blocks, 16 heads x 64, MLP 2048)
    and a real `lewm eval --json` (filed for both arms)."""
    paper = ("pred_depth=6", "pred_heads=16", "pred_head_dim=64", "pred_mlp=2048")
    argv = [sys.executable, "-m", "lewm_core", "eval", "--checkpoint", trained_run["path"]]
    argv += ["--data", tworoom_h5, "--episodes", "3", "--seed", "1", "--samples", "16"]
    argv += ["--elites", "2", "--iterations", "2", "--quiet", "--json"]
    evaluated = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    counts = {}
    for arm, arch in (("lab", ()), ("paper-pred", paper)):
        run = tmp_path / f"p-{arm}-7"
        run.mkdir()
        (run / "train_summary.json").write_text(
            (Path(trained_run["path"]) / "train_summary.json").read_text()
        )
        (run / "eval-seed1.json").write_text(evaluated.stdout)
        info = [sys.executable, "-m", "lewm_core", "model-info", "--preset", "lab", "--json"]
        info += [a for setting in arch for a in ("--arch", setting)]
        out = subprocess.run(info, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        (run / "model_info.json").write_text(out)
        counts[arm] = json.loads(out)["params_predictor"]
    assert counts["paper-pred"] == 10_791_360 > 2 * counts["lab"]  # the paper's predictor
    lines = run_script(
        "research/predictor_size.py", "--table-only", "--steps", "7", "--seeds", "1",
        "--runs", str(tmp_path), "--json",
    )  # fmt: skip
    met = round(summary["success_rate"] * 3)
    assert lines["paper-pred"]["seed1"]["met"] == lines["lab"]["seed1"]["met"] == met
    assert lines["paired"]["episodes"] == 3 and lines["paired"]["sign_test_p"] == 1.0
    assert lines["lab"]["params_predictor"] == counts["lab"]


def test_goal_motion_of_the_protocols_goals(tmp_path):
    """research/pusht_v1_expert.py's `goal_motion`: over every start row with `offset` rows
    after it, the block's and agent's moves and the share of goals that need a push, agreeing
    with the states themselves; an offset no episode holds is refused."""
    data = tmp_path / "expert.h5"
    collect = [sys.executable, "-m", "lewm_core", "collect", "--env", "pusht-v1", "--policy"]
    collect += ["expert", "--episodes", "4", "--steps", "80", "--resolution", "32", "--seed", "5"]
    subprocess.run([*collect, "--out", str(data), "--quiet"], cwd=ROOT, check=True)
    expert = load_script("research/pusht_v1_expert.py")
    with h5py.File(data, "r") as f:
        sims, off, ln = f["sim_state"][:], f["ep_offset"][:], f["ep_len"][:]
    near, far = expert.goal_motion(str(data), [1, 25])
    assert near["starts"] == int(np.sum(ln - 1))
    assert far["starts"] == int(np.sum(np.maximum(ln - 25, 0)))  # an episode may end sooner
    assert near["block_px_median"] <= far["block_px_median"]
    starts = np.concatenate([np.arange(o, o + n - 25) for o, n in zip(off, ln, strict=True)])
    moves = np.hypot(*(sims[starts + 25, 2:4] - sims[starts, 2:4]).T)
    assert far["block_px_median"] == pytest.approx(np.median(moves), abs=0.05)
    agent = np.hypot(*(sims[starts + 25, 0:2] - sims[starts, 0:2]).T)
    assert far["agent_px_median"] == pytest.approx(np.median(agent), abs=0.05)
    assert np.mean(moves >= 20.0) <= far["push_share"] <= 1.0
    with pytest.raises(SystemExit, match="no episode of .* has 400 rows after a start row"):
        expert.goal_motion(str(data), [400])
    out = run_script(
        "research/pusht_v1_expert.py", "--data", str(data), "--episodes", "3", "--json"
    )
    assert [m["offset"] for m in out["goal_motion"]] == [25]
    assert out["goal_motion"][0]["starts"] == far["starts"]
