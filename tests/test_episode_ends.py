"""Episodes that end when the data policy is done (pusht-v1's expert ends at success), and the
evaluation rule that does not count a goal that holds at the start: real physics, real files."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch

from lewm_core.data.collect import CollectSpec, collect, episode_seed, run_episode
from lewm_core.data.dataset import ClipDataset, dataset_info, episode_lengths
from lewm_core.envs import ends_episodes, make, make_policy
from lewm_core.envs.pusht_v1_policies import block_at_goal
from lewm_core.planning.evaluate import EvalTask, reaches_goal, tasks_from_dataset

MAX_STEPS = 300


@pytest.fixture(scope="module")
def expert_h5(tmp_path_factory) -> str:
    """4 pusht-v1 expert episodes of at most 300 steps at 32 px, seed 5."""
    out = tmp_path_factory.mktemp("ends") / "expert.h5"
    spec = CollectSpec("pusht-v1", 4, MAX_STEPS, resolution=32, seed=5, policy="expert")
    collect(spec, out)
    return str(out)


def test_only_pusht_v1s_expert_ends_its_episodes():
    assert ends_episodes("pusht-v1", "expert")
    for env, policy in [("pusht-v1", "default"), ("pusht", "expert"), ("tworoom", "default")]:
        assert not ends_episodes(env, policy)


def test_expert_episodes_end_at_the_first_row_with_the_t_at_the_goal(expert_h5):
    """Each episode ends with the first row whose T is at the goal (no row before it is), its
    rows are what `run_episode` gives for its seed, and the layout adds up."""
    lengths = episode_lengths(expert_h5)
    assert len(set(lengths.tolist())) > 1 and lengths.max() < MAX_STEPS
    env = make("pusht-v1", resolution=32)
    with h5py.File(expert_h5, "r") as f:
        off, sims = f["ep_offset"][:], f["sim_state"][:]
        np.testing.assert_array_equal(off, np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        assert f["pixels"].shape[0] == lengths.sum() == dataset_info(expert_h5)["num_steps"]
        for o, n in zip(off, lengths, strict=True):
            at_goal = [block_at_goal(s) for s in sims[o : o + n]]
            assert at_goal[-1] and not any(at_goal[:-1])
        k = 2
        ep = run_episode(
            env,
            make_policy("pusht-v1", env, seed=episode_seed(5, k), policy="expert"),
            MAX_STEPS,
            episode_seed(5, k),
        )
        rows = slice(int(off[k]), int(off[k] + lengths[k]))
        for key in ("pixels", "action", "state", "sim_state"):
            np.testing.assert_array_equal(f[key][rows], ep[key], err_msg=key)


def test_clips_never_cross_episodes_and_skip_short_ones(expert_h5):
    """Every clip's frames and actions lie in one episode; an episode shorter than a clip
    gives none, a longer one every start that fits."""
    lengths = episode_lengths(expert_h5)
    frameskip = 5
    frames = int(lengths.min()) // frameskip + 1  # longer than the shortest episode
    span = frames * frameskip
    assert span <= lengths.max()
    ds = ClipDataset(expert_h5, split="all", frameskip=frameskip, clip_frames=frames)
    ends = np.cumsum(lengths)
    episode_of = np.searchsorted(ends, ds.starts, side="right")
    last_row = ds.starts + span - 1  # the last raw action of the clip's last block
    np.testing.assert_array_equal(episode_of, np.searchsorted(ends, last_row, side="right"))
    assert len(ds) == int(np.maximum(lengths - span + 1, 0).sum())
    assert int(np.argmin(lengths)) not in set(episode_of.tolist())
    clip = ds[len(ds) - 1]
    assert clip["pixels"].shape == (frames, 32, 32, 3)


def _content_hash(path: str) -> str:
    """sha256 of a dataset's arrays and attributes, all but the lewm_version attribute."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for k in ("pixels", "action", "state", "sim_state", "ep_offset", "ep_len"):
            a = f[k][:]
            h.update(f"{k}{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        for k in sorted(f.attrs):
            if k != "lewm_version":
                h.update(f"{k}={f.attrs[k]}".encode())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("spec", "digest"),
    [
        (
            CollectSpec("tworoom", 3, 12, resolution=32, seed=7),
            "f4dbc64a8e02c271f437d711da17b87561e560488bddf60b583a2456a53a065c",
        ),
        (
            CollectSpec("pusht", 2, 12, resolution=32, seed=7, policy="expert"),
            "333524465b27450c4f709c3e302102def5fe3caba17ba4918d9d856a69652f28",
        ),
    ],
)
def test_fixed_length_collections_are_unchanged(spec, digest, tmp_path):
    """A policy that never ends its episodes writes what it wrote before episodes could end
    (digests of files collected before), in the fixed layout (arrays not resizable)."""
    out = tmp_path / "data.h5"
    collect(spec, out)
    assert _content_hash(str(out)) == digest
    with h5py.File(out, "r") as f:
        assert f["pixels"].maxshape == f["pixels"].shape
        assert f["ep_len"][:].tolist() == [spec.steps] * spec.episodes


def test_tasks_draw_uniform_valid_rows_where_lengths_vary(expert_h5):
    """On episodes of varying length each goal is 25 rows after its start in one episode, and
    starts fall in episodes about as often as their valid rows (a short episode is not drawn
    as often as a long one)."""
    env = make("pusht-v1", resolution=32)
    lengths = episode_lengths(expert_h5)
    tasks = tasks_from_dataset(expert_h5, env, 200, seed=1, goal_offset=25, split="all")
    ends = np.cumsum(lengths)
    rows = np.array([t.dataset_row for t in tasks])
    episode = np.searchsorted(ends, rows, side="right")
    np.testing.assert_array_equal(episode, np.searchsorted(ends, rows + 25, side="right"))
    valid = np.maximum(lengths - 25, 0)
    counts = np.bincount(episode, minlength=len(lengths))
    expected = 200 * valid / valid.sum()
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected) + 1), (counts, expected)


def test_tasks_keep_the_old_draw_on_fixed_length_data(tmp_path):
    """Equal lengths: a uniform episode, then a uniform start row (the draw of every figure so
    far), from the generator (seed, 1)."""
    out = tmp_path / "tworoom.h5"
    collect(CollectSpec("tworoom", 6, 40, resolution=32, seed=2), out)
    env = make("tworoom", resolution=32)
    tasks = tasks_from_dataset(out, env, 10, seed=3, goal_offset=25, split="all")
    rng = np.random.default_rng([3, 1])
    old = []
    for _ in range(10):
        e = int(rng.integers(6))
        old.append(e * 40 + int(rng.integers(0, 40 - 25)))
    assert [t.dataset_row for t in tasks] == old


def test_a_goal_met_at_the_start_counts_only_after_a_step_when_the_start_is_not_counted():
    """Two-Room, success within 16 px: a goal 15 px to the right of the start holds there.
    Counted, it is reached with no step; not counted, only if it holds after a step (moving
    right: yes; moving left, 20 px away after a step: never)."""
    env = make("tworoom", resolution=32)
    env.reset(seed=0)
    start = np.array([40.0, 150.0])
    task = EvalTask(start, start + [15.0, 0.0], np.zeros((32, 32, 3), np.uint8))
    left, right = [np.array([-1.0, 0.0])] * 3, [np.array([1.0, 0.0])] * 3
    assert reaches_goal(env, task, left) and reaches_goal(env, task, [])
    assert not reaches_goal(env, task, left, count_start=False)
    assert not reaches_goal(env, task, [], count_start=False)
    assert reaches_goal(env, task, right, count_start=False)


def test_run_mpc_plans_a_task_met_at_the_start_when_the_start_is_not_counted():
    """Counted: reached at step 0, nothing planned. Not counted: it plans and acts, and its
    success is whether the goal holds after one of its steps."""
    from lewm_core.data.dataset import ActionStats
    from lewm_core.planning.cem import Planner
    from lewm_core.planning.cem_config import CEMConfig
    from lewm_core.planning.mpc import run_mpc
    from lewm_core.world_model.config import ModelConfig
    from lewm_core.world_model.model import LeWM

    torch.manual_seed(0)
    model = LeWM(ModelConfig.preset("lab", dropout=0.0)).eval()
    stats = ActionStats(np.zeros(2, np.float32), np.ones(2, np.float32))
    planner = Planner(model, stats, CEMConfig(samples=8, elites=2, iterations=1), dtype="float32")
    env = make("tworoom", resolution=64)
    env.reset(seed=0)
    base = env.unwrapped
    start = base.get_state().copy()
    goal = start.copy()
    goal[0] += 15.0
    frame = base.render()
    counted = run_mpc(env, planner, start, goal, frame, budget=10, generator=torch.Generator())
    assert counted.success and counted.steps == 0 and counted.plan_seconds == []
    res = run_mpc(
        env, planner, start, goal, frame, budget=10, generator=torch.Generator(), count_start=False
    )
    assert res.steps >= 1 and len(res.plan_seconds) >= 1
    after = [*res.sim_states[1:], base.get_state().copy()]  # the states after each step
    held = []
    for s in after:
        base.set_state(s)
        held.append(bool(base.is_success(goal)))
    assert res.success == any(held)
    assert res.success == held[-1]  # it stops at the first step where the goal holds
