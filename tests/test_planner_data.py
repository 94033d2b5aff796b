"""Training on the planner's own episodes: recorded MPC episodes, their dataset, the clip mix."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch
from lewm_testing import ROOT

from lewm_core.cli.main import main
from lewm_core.data.collect import CollectSpec, collect
from lewm_core.data.dataset import ClipDataset, ClipMix, open_dataset, split_episodes
from lewm_core.errors import UserError
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.mpc import run_mpc
from lewm_core.planning.planner_data import collect_planner_episodes
from lewm_core.training.config import TrainConfig
from lewm_core.training.trainer import Trainer
from lewm_core.world_model.checkpoint import load_model

RUN = dict(
    cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "egl"}
)

CEM = CEMConfig(samples=16, elites=4, iterations=2, receding_horizon=2)


def test_mpc_records_each_step_as_a_dataset_row(tiny_run):
    """Without stop_at_goal the episode runs the whole budget even once the goal holds; row t
    (state, simulator state, frame) is the observation before action t, so restoring row t and
    taking action t reaches row t + 1."""
    from lewm_core.envs import make

    loaded = load_model(tiny_run["run"])
    planner = Planner(loaded.model, loaded.action_stats, CEM, dtype="float32")
    env = make("tworoom", resolution=64)
    env.reset(seed=0)
    start = env.unwrapped.get_state()
    frame = env.unwrapped.render()
    res = run_mpc(env, planner, start, start, frame, 12, torch.Generator(), stop_at_goal=False)
    assert res.success and res.steps == 12  # met at the start, yet all 12 steps were run
    assert res.actions.shape == (12, 2) and res.sim_states.shape == (12, len(start))
    assert res.states.shape[0] == 12 and res.frames.shape[0] == 13
    base = env.unwrapped
    for t in (0, 5, 11):
        base.set_state(res.sim_states[t])
        np.testing.assert_array_equal(base.render(), res.frames[t])
        np.testing.assert_allclose(base.state_vector, res.states[t], rtol=1e-6)
        env.step(res.actions[t])
        np.testing.assert_array_equal(base.render(), res.frames[t + 1])
        if t + 1 < 12:
            np.testing.assert_allclose(base.get_state(), res.sim_states[t + 1], atol=1e-9)
    stopped = run_mpc(env, planner, start, start, frame, 12, torch.Generator())
    assert stopped.steps == 0 and stopped.actions.shape == (0, 2)


def test_planner_episodes_come_from_training_episodes_only(tiny_run, tmp_path):
    """Every episode starts at a row of a *training* episode of the model's dataset (the
    held-out ones stay unseen), has `budget` rows, and the file is a dataset `lewm train`
    reads; its attributes name the planner and the source."""
    loaded = load_model(tiny_run["run"])
    out = tmp_path / "planned.h5"
    summary = collect_planner_episodes(
        loaded, tiny_run["h5"], out, episodes=4, seed=3, budget=20, cem=CEM, dtype="float32"
    )
    assert summary["episodes"] == 4 and summary["steps"] == 80
    assert 0.0 <= summary["reached_goal"] <= 1.0
    with open_dataset(out) as f:
        assert list(f["ep_len"][:]) == [20] * 4
        starts = f["sim_state"][:][f["ep_offset"][:]]
        assert f.attrs["source_split"] == "train" and "CEM planner" in f.attrs["policy"]
        assert json.loads(f.attrs["cem"])["samples"] == 16
    from lewm_core.shipping import _extra_data_info  # what a model card says of the file

    info = _extra_data_info(out)
    assert info["cem"] == "16x2" and info["num_episodes"] == 4 and info["goal_kinds"] == []
    with h5py.File(tiny_run["h5"]) as src:
        off, ln, sims = src["ep_offset"][:], src["ep_len"][:], src["sim_state"][:]
    train, val = split_episodes(len(off), *loaded.split)
    episode_of_row = np.repeat(np.arange(len(off)), ln)
    for s in starts:
        rows = np.flatnonzero(np.all(np.isclose(sims, s), axis=1))
        assert len(rows) and set(episode_of_row[rows]) <= set(train)
        assert not set(episode_of_row[rows]) & set(val)
    clips = ClipDataset(out, "all", history=3, frameskip=5)
    assert len(clips) == 4 * (20 - 20 + 1)  # one 4-frame clip (20 raw steps) per episode
    with pytest.raises(UserError, match="goal kind"):
        collect_planner_episodes(loaded, tiny_run["h5"], tmp_path / "x.h5", 1, goal_kinds=["push"])
    with pytest.raises(UserError, match="already exists"):
        collect_planner_episodes(loaded, tiny_run["h5"], out, 1)


def test_collect_planned_cli_keeps_to_the_goal_kind(tiny_run, tmp_path, capsys):
    """`lewm collect-planned --goal-kind move` draws only tasks of that kind ("move": the goal
    does not hold at the start), plans with the CEM settings given (a run folder has no shipped
    ones, CEM budget included), records them in the file and reports what it wrote; a bad flag is
    refused by name before anything is written."""
    out = tmp_path / "cli.h5"
    argv = ["collect-planned", "--checkpoint", str(tiny_run["run"]), "--data", str(tiny_run["h5"])]
    argv += ["--episodes", "2", "--budget", "10", "--goal-kind", "move", "--out", str(out)]
    cem = ["--objective", "min", "--receding-horizon", "1", "--sampling", "independent"]
    cem += ["--samples", "16", "--iterations", "2", "--elites", "4"]
    assert main([*argv, *cem, "--quiet", "--json", "--dtype", "float32"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["steps"] == 20
    with open_dataset(out) as f:
        assert json.loads(f.attrs["goal_kinds"]) == ["move"] and f["pixels"].shape[0] == 20
        recorded = json.loads(f.attrs["cem"])
    assert recorded["objective"] == "min" and recorded["receding_horizon"] == 1
    assert recorded["sampling"] == "independent"
    assert (recorded["samples"], recorded["iterations"], recorded["elites"]) == (16, 2, 4)
    assert main([*argv[:-2], "--out", str(tmp_path / "y.h5"), "--budget", "1", "--quiet"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main([*argv[:-2], "--out", str(tmp_path / "z.h5"), "--elites", "400", "--quiet"]) == 2
    assert "--elites must be between 1 and 300" in capsys.readouterr().err
    assert not (tmp_path / "y.h5").exists() and not (tmp_path / "z.h5").exists()


@pytest.fixture(scope="module")
def two_files(tmp_path_factory) -> tuple[str, str]:
    base = tmp_path_factory.mktemp("mix")
    a, b = base / "a.h5", base / "b.h5"
    collect(CollectSpec("tworoom", episodes=6, steps=30, resolution=64, seed=1), a)
    collect(CollectSpec("tworoom", episodes=3, steps=25, resolution=64, seed=2), b)
    return str(a), str(b)


def test_clip_mix_appends_the_extra_clips_repeated(two_files):
    """Indices past the first dataset cycle through the extra clips `repeat` times; a batch
    holds exactly the parts' clips in the order asked for."""
    a, b = two_files
    first = ClipDataset(a, "train")
    extra = ClipDataset(b, "all", action_stats=first.action_stats)
    mix = ClipMix(first, [extra], repeat=3)
    n = len(first)
    assert len(extra) == 3 * (25 - 20 + 1) and len(mix) == n + 3 * len(extra)
    idx = np.array([n + 1, 0, n + len(extra) + 1, len(mix) - 1, 2])
    got = mix.batch(idx)
    want = [first.batch([0]), first.batch([2]), extra.batch([1]), extra.batch([len(extra) - 1])]
    order = [2, 0, 2, 3, 1]
    for row, w in zip(range(5), order, strict=True):
        torch.testing.assert_close(got["pixels"][row], want[w]["pixels"][0])
        torch.testing.assert_close(got["actions"][row], want[w]["actions"][0])
    torch.testing.assert_close(mix[n]["actions"], extra[0]["actions"])
    with pytest.raises(IndexError):
        mix.batch([len(mix)])


def test_clip_mix_repeats_each_extra_file_its_own_number_of_times(two_files):
    """One repeat per extra file: extra k's block holds repeat[k] cycles of its clips, in the
    files' order; a count of repeats that matches neither one nor the files is refused."""
    a, b = two_files
    first = ClipDataset(a, "train")
    one = ClipDataset(b, "all", action_stats=first.action_stats)
    two = ClipDataset(a, "val", action_stats=first.action_stats)  # a different clip count
    mix = ClipMix(first, [one, two], repeat=[2, 3])
    n, m1, m2 = len(first), len(one), len(two)
    assert m1 != m2 and len(mix) == n + 2 * m1 + 3 * m2
    part, local = mix.locate(np.array([n, n + m1 + 1, n + 2 * m1, n + 2 * m1 + 2 * m2 + 1]))
    np.testing.assert_array_equal(part, [1, 1, 2, 2])
    np.testing.assert_array_equal(local, [0, 1, 0, 1])
    assert mix.locate(np.array([len(mix) - 1]))[1][0] == m2 - 1
    with pytest.raises(UserError, match="one per file"):
        ClipMix(first, [one, two], repeat=[2, 3, 4])


def test_trainer_adds_extra_data_to_training_only(two_files, tmp_path):
    """--extra-data: its clips join the training split (repeated), the held-out split and the
    action statistics stay the --data file's; the run records the files; the --data file itself
    or another env's file is refused with the fix."""

    def cfg(out: str, **kw) -> TrainConfig:
        return TrainConfig.from_preset(
            "lab", two_files[0], str(tmp_path / out), batch_size=8, max_steps=2, **kw
        )

    plain = Trainer(cfg("plain"))
    mixed = Trainer(cfg("mixed", extra_data=[two_files[1]], extra_repeat=2))
    assert len(mixed.train_set) == len(plain.train_set) + 2 * 18
    assert len(mixed.val_set) == len(plain.val_set)
    np.testing.assert_array_equal(
        mixed.val_set.action_stats.mean, plain.train_set.action_stats.mean
    )
    mixed.run()
    meta = json.loads((tmp_path / "mixed" / "config.json").read_text())
    assert meta["train"]["extra_data"] == [two_files[1]] and meta["data"]["path"] == two_files[0]
    with pytest.raises(UserError, match="held-out episodes"):
        Trainer(cfg("self", extra_data=[two_files[0]]))
    other = tmp_path / "reacher.h5"
    collect(CollectSpec("reacher", episodes=2, steps=25, resolution=64, seed=0), other)
    with pytest.raises(UserError, match="same env"):
        Trainer(cfg("other", extra_data=[str(other)]))
    with pytest.raises(UserError, match="one per file"):
        Trainer(cfg("counts", extra_data=[two_files[1]], extra_repeat=[2, 3]))
    per_file = Trainer(
        cfg("per-file", extra_data=[two_files[1], two_files[1]], extra_repeat=[1, 4])
    )
    assert len(per_file.train_set) == len(plain.train_set) + 5 * 18
    argv = ["train", "--data", two_files[0], "--extra-data", two_files[1], "--extra-data"]
    argv += [two_files[1], "--extra-repeat", "1", "4", "--out", str(tmp_path / "cli")]
    assert main([*argv, "--max-steps", "1", "--batch-size", "8", "--quiet"]) == 0
    recorded = json.loads((tmp_path / "cli" / "config.json").read_text())["train"]
    assert recorded["extra_repeat"] == [1, 4]
