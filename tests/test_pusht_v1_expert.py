"""Push-T v1's expert policy (lewm_core.envs.pusht_v1_policies) and the paper's evaluation
protocol on its data: real physics, real collections, no mocks."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.envs import POLICIES, make, make_policy
from lewm_core.envs.pusht_v1 import GOAL_POSE
from lewm_core.envs.pusht_v1_policies import block_at_goal
from lewm_core.planning.evaluate import EvalTask, random_policy_success, tasks_from_dataset


def _run_expert(seed: int, steps: int) -> tuple[int | None, np.ndarray]:
    """Simulate (no frames) one expert episode; (first step with the T at the goal, actions)."""
    env = make("pusht-v1", 32)
    env.reset(seed=seed)
    pol = make_policy("pusht-v1", env, seed=seed, policy="expert")
    pol.reset()
    base, first, actions = env.unwrapped, None, []
    for t in range(steps):
        a = pol.act()
        actions.append(a)
        base.simulate(a)
        if first is None and block_at_goal(base.get_state()):
            first = t + 1
    return first, np.array(actions)


def test_expert_pushes_the_t_to_the_goal_pose_from_random_starts():
    """From the env's random resets (none starting at the goal), the expert gets the T to the
    fixed goal pose within 250 steps in at least 7 of 8 episodes, in range [-1, 1]."""
    env = make("pusht-v1", 32)
    reached = 0
    for seed in range(8):
        env.reset(seed=seed)
        assert not block_at_goal(env.unwrapped.get_state())
        first, actions = _run_expert(seed, 250)
        reached += first is not None
        assert actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
    assert reached >= 7, f"{reached} of 8 episodes got the T to the goal"


def test_expert_is_registered_and_its_actions_are_the_datas_size():
    """ "expert" is one of pusht-v1's policies; its actions have a std near DINO-WM's 0.2 per
    component (0.12 to 0.3 here) and are deterministic given the seed."""
    assert POLICIES["pusht-v1"] == ("default", "expert")
    _, a = _run_expert(3, 150)
    _, b = _run_expert(3, 150)
    np.testing.assert_array_equal(a, b)
    std = a.std(axis=0)
    assert np.all((std > 0.12) & (std < 0.3)), std


def test_block_at_goal_is_the_success_tests_block_part():
    goal = np.array([100.0, 100.0, *GOAL_POSE, 0.0, 0.0])
    assert block_at_goal(goal)
    assert not block_at_goal(goal + [0, 0, 20.5, 0, 0, 0, 0])
    assert not block_at_goal(goal + [0, 0, 0, 0, math.pi / 9 + 0.01, 0, 0])
    assert block_at_goal(goal + [0, 0, 0, 0, 2 * math.pi - 0.3, 0, 0])  # the angle wraps


@pytest.fixture(scope="module")
def expert_h5(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("expert") / "pusht-v1-expert.h5"
    collect(CollectSpec("pusht-v1", episodes=4, steps=60, resolution=32, policy="expert"), out)
    return str(out)


def test_protocol_goals_are_25_rows_after_their_starts(expert_h5):
    """`tasks_from_dataset` (split "all", the paper's draw from the whole file) takes each
    goal 25 rows after its start, in the same episode."""
    env = make("pusht-v1", 32)
    tasks = tasks_from_dataset(expert_h5, env, 12, seed=42, goal_offset=25, split="all")
    with h5py.File(expert_h5, "r") as f:
        sims, off, ln = f["sim_state"][:], f["ep_offset"][:], f["ep_len"][:]
    episodes = set()
    for t in tasks:
        e = int(np.searchsorted(off, t.dataset_row, side="right") - 1)
        episodes.add(e)
        assert t.dataset_row + 25 < off[e] + ln[e]
        np.testing.assert_array_equal(t.start_state, sims[t.dataset_row])
        np.testing.assert_array_equal(t.goal_state, sims[t.dataset_row + 25])
    assert len(episodes) > 1  # "all" draws across the file, not from one split's episode


def test_random_policy_is_low_where_only_the_angle_is_off(expert_h5):
    """Tasks whose goal is the start with the T turned 0.6 rad (agent and T origin in place):
    a random policy of 50 steps, the start not counted, meets almost none by the env's success
    test; a test blind to the angle (as a broken one would be) passes most of them."""
    env = make("pusht-v1", 32)
    base = env.unwrapped
    with h5py.File(expert_h5, "r") as f:
        sims = f["sim_state"][::12]
    tasks = []
    for s in sims[:16]:
        goal = s.copy()
        goal[4] = (goal[4] + 0.6) % (2 * math.pi)
        goal[5:] = 0.0
        tasks.append(EvalTask(s, goal, np.zeros((32, 32, 3), np.uint8)))

    def wins() -> int:
        return sum(
            random_policy_success(env, t, 50, np.random.default_rng([42, 3, i]), False)
            for i, t in enumerate(tasks)
        )

    honest = wins()
    base.success_tolerances = {"pos_dist": base.success_tolerances["pos_dist"]}
    blind = wins()
    assert honest <= 2, f"{honest} of 16 angle-only tasks met by random actions"
    assert blind >= 8, f"the angle-blind test met only {blind} of 16"
