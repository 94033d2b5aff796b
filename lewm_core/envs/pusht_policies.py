"""The scripted data policies of Push-T (`lewm_core.envs.pusht`), chosen by `make_policy`.

- `PushTPolicy` ("default", the policy that collected the shipped Push-T model's data): pushes
  the T from random contacts in random directions, so that the data covers pushes of every kind.
- `PushTExpertPolicy` ("expert", `lewm collect --policy expert`): picks each push to move the T
  towards a goal pose, closer to the paper's expert demonstrations.
- `PushTV1Policy` (the "default" of "pusht-v1", `lewm_core.envs.pusht_v1`): `PushTPolicy`'s
  pushes in the reference task.

Both read the privileged simulator state (the agent's and the block's pymunk bodies) and act in
the env's action space: a relative target `agent position + ACTION_SCALE * a`, a in [-1, 1]^2.
Each draws from its own generator, seeded by `make_policy`, so a dataset is a function of the
collection's seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Policy, wrap_angle
from .pusht import (
    ACTION_SCALE,
    AGENT_RADIUS,
    BLOCK_COG,
    BLOCK_MASS,
    BLOCK_MOMENT,
    T_OUTLINE,
    TARGET_HI,
    TARGET_LO,
    WALL_INSET,
    WALL_RADIUS,
    WORLD,
    distance_to_block,
)


def _outline_edges() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the T outline: start points (8, 2), edge vectors (8, 2), outward normals (8, 2)."""
    start = T_OUTLINE
    vec = np.roll(T_OUTLINE, -1, axis=0) - T_OUTLINE
    length = np.linalg.norm(vec, axis=1, keepdims=True)
    # outline runs clockwise on screen (y down) -> outward normal is (dy, -dx) / |v|
    normal = np.stack([vec[:, 1], -vec[:, 0]], axis=1) / length
    return start, vec, normal


_EDGE_START, _EDGE_VEC, _EDGE_NORMAL = _outline_edges()
_EDGE_LEN = np.linalg.norm(_EDGE_VEC, axis=1)


def _random_contact(rng: np.random.Generator, max_turn: float) -> tuple[np.ndarray, np.ndarray]:
    """A random contact point on the T outline (block frame; edges weighted by length, 10-90%
    along the edge) and a push direction into the T there: the inward normal turned by up to
    `max_turn` rad either way. Returns (contact (2,), direction (2,))."""
    e = int(rng.choice(len(_EDGE_LEN), p=_EDGE_LEN / _EDGE_LEN.sum()))
    contact = _EDGE_START[e] + rng.uniform(0.1, 0.9) * _EDGE_VEC[e]
    turn = rng.uniform(-max_turn, max_turn)
    n = _EDGE_NORMAL[e]
    c, s = math.cos(turn), math.sin(turn)
    return contact, -np.array([c * n[0] - s * n[1], s * n[0] + c * n[1]])


class PushTPolicy(Policy):
    """Scripted noisy pusher that reaches the block and pushes it in varied directions.

    Each push: pick a random contact point on the T outline (block frame, edges weighted by
    length) and a push direction into the block (inward normal turned by up to +-35 deg).
    Phase 1 drives the agent to an approach point 50 px behind the contact along the push
    direction, orbiting around the block (radius ~110 px about its centre of mass) when the
    straight path would cross it; phase 2 moves to just behind the contact; phase 3 pushes along
    the direction for 6-18 steps. Then a new push is chosen (also on a phase timeout). Actions
    are relative targets (pos + 100 a), limited to per-push speeds (approach 0.5-1, push
    0.3-0.8), plus N(0, 0.1^2) noise.
    """

    NOISE_STD = 0.1
    ORBIT_RADIUS = 110.0
    CLEAR_RADIUS = 95.0

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env, seed)
        self.phase = "new"
        self.steps = 0

    def reset(self) -> None:
        self.phase = "new"
        self.steps = 0

    def _block_pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.env.block
        c, s = math.cos(b.angle), math.sin(b.angle)
        rot = np.array([[c, -s], [s, c]])  # block -> world
        pos = np.array(b.position)
        return rot, pos, pos

    def _new_push(self) -> None:
        rng = self.rng
        rot, pos, _ = self._block_pose()
        for _ in range(20):
            contact, d_local = _random_contact(rng, 0.6)
            self.contact = contact
            self.dir_local = d_local
            d = rot @ d_local
            cw = rot @ contact + pos
            far = cw - d * (AGENT_RADIUS + 50.0)
            if TARGET_LO + 10 < far.min() and far.max() < TARGET_HI - 10:
                break
        self.phase = "approach"
        self.steps = 0
        self.approach_speed = float(rng.uniform(0.5, 1.0))
        self.push_speed = float(rng.uniform(0.3, 0.8))
        self.push_steps = int(rng.integers(6, 19))

    def _goal_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rot, pos, cog = self._block_pose()
        d = rot @ self.dir_local
        cw = rot @ self.contact + pos
        return cw - d * (AGENT_RADIUS + 50.0), cw - d * (AGENT_RADIUS + 2.0), d

    def act(self) -> np.ndarray:
        agent = np.array(self.env.agent.position)
        if self.phase == "new":
            self._new_push()
        self.steps += 1
        far, near, d = self._goal_points()
        if self.phase == "approach":
            target = self._route(agent, far)
            if np.linalg.norm(agent - far) < 12.0:
                self.phase, self.steps = "align", 0
            elif self.steps > 40:
                self.phase = "new"
        elif self.phase == "align":
            target = near
            if np.linalg.norm(agent - near) < 6.0 or self.steps > 12:
                self.phase, self.steps = "push", 0
                self.push_dir = d
        else:
            target = self._push_target(agent, near, d)
            if self.steps >= self.push_steps:
                self.phase = "new"
        speed = self.push_speed if self.phase == "push" else self.approach_speed
        delta = (target - agent) / ACTION_SCALE
        norm = float(np.linalg.norm(delta))
        if norm > speed:
            delta *= speed / norm
        a = delta + self.NOISE_STD * self.rng.standard_normal(2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def _push_target(self, agent: np.ndarray, near: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Where the agent heads while pushing: along the direction fixed at contact time."""
        return agent + self.push_dir * 100.0

    def _route(self, agent: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Next waypoint towards ``goal`` that avoids the block's clearance circle."""
        _, _, cog = self._block_pose()
        seg = goal - agent
        t = np.clip(np.dot(cog - agent, seg) / max(np.dot(seg, seg), 1e-9), 0.0, 1.0)
        if np.linalg.norm(agent + t * seg - cog) >= self.CLEAR_RADIUS:
            return goal
        rel_a, rel_g = agent - cog, goal - cog
        ang_a = math.atan2(rel_a[1], rel_a[0])
        diff = wrap_angle(math.atan2(rel_g[1], rel_g[0]) - ang_a)
        step = math.copysign(min(abs(diff), 0.8), diff)
        ang = ang_a + step
        wp = cog + self.ORBIT_RADIUS * np.array([math.cos(ang), math.sin(ang)])
        return np.clip(wp, TARGET_LO, TARGET_HI)


WALL_FACE = WALL_INSET + WALL_RADIUS  # the walls' inner faces, px from the edges (v0 and v1)
BLOCK_GYRATION2 = BLOCK_MOMENT / BLOCK_MASS  # squared radius of gyration of the T, px^2


class PushTExpertPolicy(PushTPolicy):
    """Goal-directed pusher: pushes the T to a goal pose, then to the next one.

    Closer to the paper's expert Push-T data (demonstrations that push the T into a goal pose)
    than `PushTPolicy`'s pushes in random directions: here every push is chosen to move the T
    towards a goal pose (position and angle), so the block turns on purpose and the angle
    matters to what the actions do. Goal poses are drawn uniformly (the T at least 60 px from
    the walls, any angle); one is replaced when the T lies within 15 px and 0.15 rad of it or
    after 120 steps.

    Choosing a push: a quasi-static point push with unit force f (world) at r (world offset of
    the contact from the centre of mass) moves the T about as the twist (f, (r x f) / k^2), k^2
    the T's squared radius of gyration (the ellipsoidal limit-surface approximation). Of 48
    random contacts (edges weighted by length, inward normal turned by up to +-17 deg) whose
    approach point (65 px behind the contact) the agent can reach from outside the T, the
    policy takes the one whose twist (v, L * w) points closest, by cosine, to the pose error
    (dx, dy, L * dtheta), L = 60 px per rad, less 0.15 per 100 px the agent must travel to it.
    The agent goes straight to the approach point when its disk clears the T by 8 px, else
    backs off along its last push and goes around the T on a 110-px circle; then it aligns
    behind the contact and pushes through it, following the contact as the T turns, for 8-30
    steps, until the pose error no longer agrees with the push (cosine < 0.3) or the goal is
    met. Same speeds and N(0, 0.1^2) action noise as `PushTPolicy`. tests/test_envs.py holds
    that it meets a goal drawn anywhere within 150 steps in most episodes.
    """

    TURN_LENGTH = 60.0
    TRAVEL_COST = 0.15
    CANDIDATES = 48
    GOAL_POS_TOL, GOAL_ANGLE_TOL = 15.0, 0.15
    GOAL_STEPS = 120

    def reset(self) -> None:
        super().reset()
        self.goal: tuple[np.ndarray, float] | None = None
        self.goal_steps = 0
        self.back_dir = np.zeros(2)  # world direction of the last push
        self.back_steps = 0  # steps left to back off along it

    def _new_goal(self) -> None:
        rng = self.rng
        while True:
            pos = rng.uniform(120.0, 392.0, 2)
            angle = float(rng.uniform(-math.pi, math.pi))
            c, s = math.cos(angle), math.sin(angle)
            pts = T_OUTLINE @ np.array([[c, s], [-s, c]]) + pos
            if pts.min() >= 60.0 and pts.max() <= WORLD - 60.0:
                break
        self.goal, self.goal_steps = (pos, angle), 0

    def pose_error(self) -> np.ndarray:
        """(dx, dy, L * dtheta) from the T's pose to the goal pose."""
        b = self.env.block
        pos, angle = self.goal
        d = pos - np.array(b.position)
        return np.array([d[0], d[1], self.TURN_LENGTH * wrap_angle(angle - b.angle)])

    def goal_met(self) -> bool:
        """Whether the T lies within 15 px and 0.15 rad of the goal pose."""
        error = self.pose_error()
        return bool(
            np.linalg.norm(error[:2]) < self.GOAL_POS_TOL
            and abs(error[2]) < self.TURN_LENGTH * self.GOAL_ANGLE_TOL
        )

    def _agreement(self, contact: np.ndarray, dir_local: np.ndarray, error: np.ndarray) -> float:
        """Cosine between the twist of pushing at `contact` along `dir_local` (block frame) and
        the pose error."""
        rot, _, _ = self._block_pose()
        r, f = rot @ contact, rot @ dir_local
        turn = (r[0] * f[1] - r[1] * f[0]) / BLOCK_GYRATION2
        twist = np.array([f[0], f[1], self.TURN_LENGTH * turn])
        return float(twist @ error / (np.linalg.norm(twist) * np.linalg.norm(error) + 1e-9))

    def _new_push(self) -> None:
        rng = self.rng
        rot, pos, _ = self._block_pose()
        error = self.pose_error()
        agent = np.array(self.env.agent.position)
        best, best_score = None, -math.inf
        for _ in range(self.CANDIDATES):
            contact, d_local = _random_contact(rng, 0.3)
            cw, d = rot @ contact + pos, rot @ d_local
            far, near = cw - d * (AGENT_RADIUS + 50.0), cw - d * (AGENT_RADIUS + 2.0)
            if not (TARGET_LO + 10 < far.min() and far.max() < TARGET_HI - 10):
                continue
            # both waypoints must leave room for the agent's disk (not in the T's elbows)
            out = far - pos
            rim = pos + self.ORBIT_RADIUS * out / (np.linalg.norm(out) + 1e-9)
            if distance_to_block(
                near - pos, self.env.block.angle
            ) < AGENT_RADIUS or not self._clear(rim, far, 8.0):
                continue
            travel = float(np.linalg.norm(far - agent)) / 100.0
            score = self._agreement(contact, d_local, error) - self.TRAVEL_COST * travel
            if score > best_score:
                best, best_score = (contact, d_local), score
        if best is None:  # the T against a wall everywhere: fall back to a random push
            super()._new_push()
            return
        self.contact, self.dir_local = best
        self.phase, self.steps = "approach", 0
        self.approach_speed = float(rng.uniform(0.5, 1.0))
        self.push_speed = float(rng.uniform(0.3, 0.8))
        self.push_steps = int(rng.integers(8, 31))

    def act(self) -> np.ndarray:
        if self.goal is None:
            self._new_goal()
        self.goal_steps += 1
        if self.goal_met() or self.goal_steps > self.GOAL_STEPS:
            self._new_goal()
            self.phase = "new"
        elif (
            self.phase == "push"
            and self._agreement(self.contact, self.dir_local, self.pose_error()) < 0.3
        ):
            self.phase = "new"
        return super().act()

    def _push_target(self, agent: np.ndarray, near: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Through the contact point as the T turns (and remember the way back out)."""
        self.back_dir, self.back_steps = d, 4
        return near + d * 100.0

    def _clear(self, a: np.ndarray, b: np.ndarray, margin: float) -> bool:
        """Whether the agent's disk moving straight from a to b keeps `margin` px off the T."""
        blk = self.env.block
        pos = np.array(blk.position)
        return all(
            distance_to_block(a + t * (b - a) - pos, blk.angle) >= AGENT_RADIUS + margin
            for t in np.linspace(0.0, 1.0, 25)
        )

    def _route(self, agent: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Next waypoint to ``goal``: straight when the way is clear, else around the T.

        Around: back off along the last push while still at the T, out to the orbit circle
        (radius 110 about the centre of mass, clear of the T), along it towards the goal's side
        in steps of up to 0.5 rad, and in to the goal once on its side (the candidate filter
        keeps goals reachable that way).
        """
        pos = np.array(self.env.block.position)
        if self._clear(agent, goal, 8.0):
            return goal
        if self.back_steps > 0:
            self.back_steps -= 1
            return agent - 40.0 * self.back_dir
        rel_a, rel_g = agent - pos, goal - pos
        r_a = float(np.linalg.norm(rel_a))
        ang_a = math.atan2(rel_a[1], rel_a[0])
        diff = wrap_angle(math.atan2(rel_g[1], rel_g[0]) - ang_a)
        if abs(diff) < 0.3 and r_a >= np.linalg.norm(rel_g):
            return goal
        if r_a < self.ORBIT_RADIUS - 15.0:
            wp = pos + self.ORBIT_RADIUS * rel_a / (r_a + 1e-9)
        else:
            ang = ang_a + math.copysign(min(abs(diff), 0.5), diff)
            wp = pos + self.ORBIT_RADIUS * np.array([math.cos(ang), math.sin(ang)])
        return np.clip(wp, TARGET_LO, TARGET_HI)


class PushTV1Policy(PushTPolicy):
    """`PushTPolicy` acting in Push-T v1 (`lewm_core.envs.pusht_v1`): same pushes, same action
    form (relative target, 100 px per unit), same noise, kept off the walls.

    The policy works in v0's block frame, centred on the uniform T's centre of mass, 40.71 px
    down the stem from the midpoint of the bar's outer edge; v1's block origin is that midpoint
    (its centre of gravity, (0, 45), is the reference's). So the pose the policy reads is v1's
    origin moved 40.71 px down the stem. v1's agent and walls have the same sizes as v0's.

    v1's agent is kinematic and its walls thin, so pushes that drive the T into a wall would
    squeeze it out of the arena (as in the reference). The policy therefore takes only pushes
    that would leave the T `WALL_MARGIN` px inside the walls after moving `PUSH_REACH` px along
    the push (of up to 20 draws; else the last), and ends a push when the T comes within
    `STOP_MARGIN` px of a wall. tests/test_pusht_v1.py counts how often the T still leaves.
    """

    PUSH_REACH = 60.0
    WALL_MARGIN = 30.0
    STOP_MARGIN = 12.0
    DRAWS = 20

    def _block_pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.env.block
        c, s = math.cos(b.angle), math.sin(b.angle)
        rot = np.array([[c, -s], [s, c]])  # block -> world
        pos = np.array(b.position) + rot @ np.array(BLOCK_COG)
        return rot, pos, pos

    def _outline(self, shift: np.ndarray | None = None) -> np.ndarray:
        """The T's outline in the world (8, 2), moved by `shift` (2,) if given."""
        rot, pos, _ = self._block_pose()
        pts = T_OUTLINE @ rot.T + pos
        return pts if shift is None else pts + shift

    @staticmethod
    def _inside(points: np.ndarray, margin: float) -> bool:
        return bool(
            points.min() >= WALL_FACE + margin and points.max() <= WORLD - WALL_FACE - margin
        )

    def _new_push(self) -> None:
        for _ in range(self.DRAWS):
            super()._new_push()
            rot, _, _ = self._block_pose()
            push = rot @ self.dir_local * self.PUSH_REACH
            if self._inside(self._outline(push), self.WALL_MARGIN):
                return

    def act(self) -> np.ndarray:
        if self.phase == "push" and not self._inside(self._outline(), self.STOP_MARGIN):
            self.phase = "new"
        return super().act()
