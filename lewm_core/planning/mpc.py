"""Model-predictive control: plan, execute the first blocks of the plan, observe, replan.

`run_mpc` drives any planner with the `MPCPlanner` interface (the world model's CEM `Planner`,
`research/oracle_plan.py`'s simulator planner): it encodes observations and the goal and
calls `plan()`, executes `cfg.receding_horizon` blocks of the plan in the env, and stops at
the goal or when the step budget is spent. `episode_generator` seeds CEM the same way for
every caller, so one seed gives the same plans everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from lewm_core.data.dataset import ActionStats
from lewm_core.planning.cem_config import CEMConfig


class MPCPlanner(Protocol):
    """What `run_mpc` needs of a planner (`CEMPlanner` has it all): its settings, the action
    statistics and block size, the encodings of observations and goal, and one `plan()`."""

    cfg: CEMConfig
    stats: ActionStats
    frameskip: int
    device: torch.device

    def encode_observation(self, env: Any, frames: np.ndarray) -> torch.Tensor:
        """Latents (k, D) of the last k observations (k, H, W, 3), newest last."""
        ...

    def encode_goal(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        """The goal's latent (D,) from its image (H, W, 3) and simulator state."""
        ...

    def plan(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        generator: torch.Generator | None = None,
        keep_history: bool = True,
        context_blocks: torch.Tensor | None = None,
    ) -> Any:
        """One search from `z_start` toward `z_goal`: a result with raw `actions`
        (horizon * frameskip, A), `cost` and `seconds` (`cem.PlanResult`)."""
        ...


@dataclass
class EpisodeResult:
    """One MPC episode: success, steps taken, frames (T+1, H, W, 3), plan times (s), and the
    env's `goal_errors` at the last step (how close a failed episode ended). Per step t < T, as
    a dataset records it (the observation *before* action t): `actions` (T, A) raw,
    `states` (T, S) the env's named quantities concatenated, `sim_states` (T, Q)."""

    success: bool
    steps: int
    frames: np.ndarray
    plan_seconds: list[float]
    final_cost: float
    final_errors: dict[str, float] = field(default_factory=dict)
    actions: np.ndarray | None = None
    states: np.ndarray | None = None
    sim_states: np.ndarray | None = None


def episode_generator(
    seed: int, episode: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """CEM's random generator for `episode` of a task set drawn with `seed`. Everything that plans
    a task set (`lewm eval`, `lewm collect-planned`, the demo, research/oracle_plan.py) seeds it
    this way, so one seed gives the same plans everywhere."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + episode)


def met_at_start(env, goal_state: np.ndarray, count_start: bool = True) -> bool:
    """Whether a task counts as reached before any step, with `env` in its start state: its
    goal holds there and `count_start`. The one rule of `run_mpc` and `evaluate.reaches_goal`:
    without `count_start` (`GOAL_AT_START` "not-counted", the paper's evaluation, which checks
    only the states after steps) a goal that holds at the start counts only if it holds again
    after a step."""
    return count_start and bool(env.unwrapped.is_success(goal_state))


def run_mpc(
    env,
    planner: MPCPlanner,
    start_state: np.ndarray,
    goal_state: np.ndarray,
    goal_frame: np.ndarray,
    budget: int = 50,
    generator: torch.Generator | None = None,
    stop_at_goal: bool = True,
    count_start: bool = True,
) -> EpisodeResult:
    """Model-predictive control: plan, execute `receding_horizon` blocks, re-encode, replan.

    Success is the env's `is_success(goal_state)` at the start (unless not `count_start`: see
    `met_at_start`; the episode then plans even if the goal holds there) or after any step
    within `budget` raw steps.
    With `planner.cfg.context` k > 1, each plan starts from the last k observations one block
    apart (fewer at the start of the episode) and the blocks executed between them. Without
    `stop_at_goal` the episode runs all `budget` steps (the planner keeps aiming at the goal
    after reaching it), so that every episode has the same length.
    """
    base = env.unwrapped
    base.set_state(start_state)
    obs = base.render()
    frames = [obs]
    z_goal = planner.encode_goal(goal_frame, goal_state)
    plan_seconds, steps, cost = [], 0, float("nan")
    success = met_at_start(env, goal_state, count_start)
    n_exec = planner.cfg.receding_horizon * planner.frameskip
    k_max, fs = planner.cfg.context, planner.frameskip
    block_frames, executed = [obs], []  # observations at block boundaries; raw blocks (F, A)
    actions, states, sims = [], [], []
    while not (success and stop_at_goal) and steps < budget:
        k = min(k_max, len(block_frames))
        z = planner.encode_observation(base, np.stack(block_frames[-k:]))
        past = None
        if k > 1:
            raw = np.concatenate(executed[-(k - 1) :])  # ((k - 1) * F, A)
            normed = planner.stats.normalize(raw).reshape(k - 1, -1)
            past = torch.as_tensor(normed, dtype=torch.float32, device=planner.device)
        result = planner.plan(
            z if k > 1 else z[-1], z_goal, generator, keep_history=False, context_blocks=past
        )
        plan_seconds.append(result.seconds)
        cost = result.cost
        for i, action in enumerate(result.actions[:n_exec]):
            states.append(base.state_vector)
            sims.append(base.get_state().copy())
            actions.append(np.asarray(action, np.float32))
            obs, *_ = env.step(action)
            frames.append(obs)
            steps += 1
            if (i + 1) % fs == 0:
                block_frames.append(obs)
                executed.append(result.actions[i + 1 - fs : i + 1])
            if base.is_success(goal_state):
                success = True
                if stop_at_goal:
                    break
            if steps >= budget:
                break
    errors = base.goal_errors(goal_state)
    a_dim, q_dim, s_dim = base.action_space.shape[0], len(base.get_state()), len(base.state_vector)
    return EpisodeResult(
        success,
        steps,
        np.stack(frames),
        plan_seconds,
        cost,
        errors,
        np.asarray(actions, np.float32).reshape(steps, a_dim),
        np.asarray(states, np.float32).reshape(steps, s_dim),
        np.asarray(sims, np.float64).reshape(steps, q_dim),
    )
