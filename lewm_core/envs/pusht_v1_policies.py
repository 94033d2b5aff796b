"""The expert data policy of Push-T v1 (`lewm_core.envs.pusht_v1`): "expert" of "pusht-v1".

The LeWM paper trains its Push-T model on DINO-WM's expert dataset: episodes that push the T
from random starts to ONE fixed goal pose, the green T of every picture (block origin at
(256, 256), angle pi/4), with noise in the actions. `PushTV1ExpertPolicy` makes such
episodes in v1: from the env's reset (gym-pusht's ranges) it pushes the T to `GOAL_POSE`, then
steps the agent back off the T and hovers there, pushing again if the T is knocked out of
place. Its episodes end (`done`) at the first row with the T at the goal by the success test's
block part, as DINO-WM's demonstrations end at success: a collection records no row of the T
resting at the goal, and its episodes are of varying length. docs/pusht.md measures how often
it gets there and how its data compares with the published statistics of DINO-WM's dataset.

It is v0's goal-directed pusher (`lewm_core.envs.pusht_policies.PushTExpertPolicy`: each push
picked by how well its quasi-static twist agrees with the pose error; see there) reading v1's
T through v0's block frame, with v1's mass properties in the twist model, a fixed goal,
slower moves and the hover at the goal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pusht import BLOCK_COG as V0_CENTRE
from .pusht import distance_to_block
from .pusht_policies import PushTExpertPolicy, PushTV1Policy
from .pusht_v1 import (
    AGENT_RADIUS,
    BLOCK_COG,
    BLOCK_MASS,
    BLOCK_MOMENT,
    GOAL_POSE,
    SUCCESS_ANGLE,
    SUCCESS_POS,
    angle_difference,
)

# Action noise: N(0, NOISE_STD^2) on each action component (units of the action, 100 px of
# target offset per unit), on every step. DINO-WM's expert data replays demonstrations with
# noise added so that it covers states near the expert's path, not only the path itself; 0.1
# (10 px of target per step) is v0's data noise and keeps the expert's success high (see
# docs/pusht.md) while moving the agent visibly off its path.
NOISE_STD = 0.1
# v0's expert moves at 0.5-1 (approach) and 0.3-0.8 (push) of the action range per step; DINO-WM's
# actions have a std of about 0.2 per component. SPEED_SCALE slows both so that the data's
# actions are of that size.
SPEED_SCALE = 0.5
# The expert's own goal test, tighter than the success test (20 px, pi/9) so that the T rests
# well inside it: block origin within GOAL_POS_TOL px and angle within GOAL_ANGLE_TOL rad.
GOAL_POS_TOL = 8.0
GOAL_ANGLE_TOL = 0.1
# While hovering at the goal the agent keeps HOVER_CLEARANCE px between its rim and the T.
HOVER_CLEARANCE = 40.0

__all__ = ["PushTV1ExpertPolicy", "PushTV1Policy", "block_at_goal"]  # "default" and "expert"


def block_at_goal(state: np.ndarray) -> bool:
    """Whether a v1 state (7,) has the T at `GOAL_POSE` by the env's success test with the
    agent left out (the fixed goal names no agent place): block origin within 20 px of
    (256, 256) and angle within pi/9 of pi/4."""
    s = np.asarray(state, dtype=np.float64)
    return bool(
        math.hypot(s[2] - GOAL_POSE[0], s[3] - GOAL_POSE[1]) < SUCCESS_POS
        and angle_difference(float(s[4]), GOAL_POSE[2]) < SUCCESS_ANGLE
    )


class _CentredBlock:
    """v1's T body as v0's policies read a block: `position` is the point 40.71 px down the
    stem from v1's origin (v0's block centre), `angle` the body's angle."""

    def __init__(self, env: Any) -> None:
        self._env = env

    @property
    def angle(self) -> float:
        return float(self._env.block.angle)

    @property
    def position(self) -> tuple[float, float]:
        b = self._env.block
        c, s = math.cos(b.angle), math.sin(b.angle)
        ox, oy = b.position
        return (ox - s * V0_CENTRE[1], oy + c * V0_CENTRE[1])


class _V0View:
    """The env as v0's policies read it: `agent` the agent body, `block` a `_CentredBlock`.
    Read at each access: v1 builds new bodies whenever a state is set."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.block = _CentredBlock(env)

    @property
    def agent(self) -> Any:
        return self._env.agent


def _v0_centre_pose(origin: tuple[float, float], angle: float) -> np.ndarray:
    """v0's block centre (2,) of a v1 T whose origin is at `origin` turned by `angle`."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([origin[0] - s * V0_CENTRE[1], origin[1] + c * V0_CENTRE[1]])


class PushTV1ExpertPolicy(PushTExpertPolicy):
    """Pushes v1's T to the fixed goal pose (256, 256, pi/4), then hovers off it.

    v0's expert with: the goal fixed (never replaced); v1's twist model (frictionless contact
    at r from v1's centre of gravity (0, 45), squared radius of gyration 3000 px^2); moves at
    `SPEED_SCALE` of v0's speeds; `NOISE_STD` action noise; and, once the T lies within
    `GOAL_POS_TOL` px and `GOAL_ANGLE_TOL` rad of the goal, a hover: the agent heads for a
    point `HOVER_CLEARANCE` px off the T (away from it, from where it is) until the T leaves
    the success test's tolerances (20 px, pi/9), when it pushes again. Actions in [-1, 1]^2.
    """

    NOISE_STD = NOISE_STD
    GOAL_STEPS = 10**9  # the goal is never replaced

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env, seed)
        self.v1 = self.env  # the v1 env itself; the inherited code reads v0's view of it
        self.env = _V0View(self.v1)

    def reset(self) -> None:
        super().reset()
        self.hovering = False

    def _new_goal(self) -> None:
        origin, angle = GOAL_POSE[:2], GOAL_POSE[2]
        self.goal, self.goal_steps = (_v0_centre_pose(origin, angle), angle), 0

    def goal_met(self) -> bool:
        """Whether the T lies within `GOAL_POS_TOL` px (origin) and `GOAL_ANGLE_TOL` rad of
        the goal pose."""
        b = self.v1.block
        ox, oy = b.position
        return bool(
            math.hypot(ox - GOAL_POSE[0], oy - GOAL_POSE[1]) < GOAL_POS_TOL
            and angle_difference(float(b.angle), GOAL_POSE[2]) < GOAL_ANGLE_TOL
        )

    def _agreement(self, contact: np.ndarray, dir_local: np.ndarray, error: np.ndarray) -> float:
        """Cosine between the twist of pushing at `contact` (v0's block frame) along
        `dir_local` and the pose error, with v1's centre of gravity and moment."""
        rot, _, _ = self._block_pose()
        r = rot @ (contact + np.array(V0_CENTRE) - np.array(BLOCK_COG))
        f = rot @ dir_local
        turn = (r[0] * f[1] - r[1] * f[0]) / (BLOCK_MOMENT / BLOCK_MASS)
        twist = np.array([f[0], f[1], self.TURN_LENGTH * turn])
        return float(twist @ error / (np.linalg.norm(twist) * np.linalg.norm(error) + 1e-9))

    def _new_push(self) -> None:
        super()._new_push()
        self.approach_speed *= SPEED_SCALE
        self.push_speed *= SPEED_SCALE

    def _hover(self) -> np.ndarray:
        """An action (2,) towards the point `HOVER_CLEARANCE` px off the T, straight out from
        the T's centre through the agent, plus the noise."""
        agent = np.array(self.v1.agent.position)
        centre = np.array(self.env.block.position)
        out = agent - centre
        out /= np.linalg.norm(out) + 1e-9
        gap = distance_to_block(agent - centre, self.env.block.angle) - AGENT_RADIUS
        target = agent + out * max(0.0, HOVER_CLEARANCE - gap)
        delta = (target - agent) / 100.0
        norm = float(np.linalg.norm(delta))
        if norm > 0.3:
            delta *= 0.3 / norm
        return np.clip(delta + self.NOISE_STD * self.rng.standard_normal(2), -1.0, 1.0)

    def done(self) -> bool:
        """The episode is over once the T is at the goal by the success test's block part
        (`block_at_goal`): the row that first has it is the episode's last."""
        return block_at_goal(self.v1.get_state())

    def act(self) -> np.ndarray:
        if self.hovering and not block_at_goal(self.v1.get_state()):
            self.hovering, self.phase = False, "new"
        if not self.hovering and self.goal is not None and self.goal_met():
            self.hovering = True
        if self.hovering:
            return self._hover().astype(np.float32)
        return super().act()
