"""Push-T: a round agent pushes a T-shaped block on a table (pymunk physics, OpenCV drawing).

World: 512 x 512 px (y grows downwards, like image rows) with static walls along the border
(their inner faces 7 px inside the edges, as the classic segments 5 px in with radius 2; here
each wall is a solid box 200 px thick beyond its face, so that contact resolution always pushes
a penetrating block back into the arena). The agent is a disk of radius 15 driven by a PD
controller: a dynamic body of mass 10 (the block's 10x) with infinite moment, whose velocity
is set by the controller and not damped. The classic env makes the agent kinematic (infinite
mass); a data policy that pushes in all directions then squeezes the T through thin walls and
out of the arena, out of sight. With a finite-mass agent the wall wins
(``tests/test_envs.py::test_pusht_block_stays_in_the_arena`` pushes the T into walls and
corners with the policy and with random actions). The block is a dynamic T of mass 1 made of
two boxes: a 120 x 30 bar and a 30 x 90 stem below its middle (unit = world px). In design
coordinates (origin at the midpoint of the bar's outer edge, as in the classic Push-T) the bar
spans x in [-60, 60], y in [0, 30] and the stem x in [-15, 15], y in [30, 120]; the uniform
T's centre of mass is at (0, 40.71).
The pymunk body origin is placed at this centre of mass, so ``block_pos`` (and the state) is
the block's CENTRE OF MASS (not the classic bar-edge origin, which lies 40.71 px from it
towards the bar); keeping body origin = centre of mass makes ``set_state`` bit-exact.

Control: the action a in [-1, 1]^2 is relative: target = agent position + 100 * a (clipped to
the reachable area). Each env step (10 Hz) runs 10 physics substeps of dt = 0.01 s; before each
the agent velocity is changed by ``(kp * (target - pos) - kv * vel) * dt`` with kp = 100,
kv = 20. Floor friction is modelled as in the classic Push-T by ``space.damping = 0``: the block
keeps no momentum between substeps (quasi-static pushing), contacts have friction 1.

Simulator state (``get_state``, 10 values): agent pos (2), agent vel (2), block pos (2),
block angle (1, raw radians), block vel (2, of the centre of mass), block angular vel (1).
Before every env step the contact cache is cleared and the shapes re-inserted in a fixed
order, so an env step is a pure function of (state, action) and ``set_state`` is exact.

The scripted data policies that act in this env are in ``lewm_core.envs.pusht_policies``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import cv2
import numpy as np
import pymunk
from pymunk._chipmunk_cffi import lib as _cp  # shape-id counter (no public API for it)

from .base import GOAL_MET, LewmEnv, wrap_angle

WORLD = 512.0
AGENT_RADIUS = 15.0
WALL_INSET, WALL_RADIUS = 5.0, 2.0
WALL_THICKNESS = 200.0  # solid wall boxes beyond the inner face at WALL_INSET + WALL_RADIUS
AGENT_MASS = 10.0
KP, KV = 100.0, 20.0
DT = 0.01
SUBSTEPS = 10
ACTION_SCALE = 100.0
TARGET_LO = WALL_INSET + WALL_RADIUS + AGENT_RADIUS  # 22: agent stays off the walls
TARGET_HI = WORLD - TARGET_LO

# T design coordinates (bar top-middle at the origin); the body frame is shifted to the COM.
BAR_DESIGN = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0))
STEM_DESIGN = ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0))
# The T outline, clockwise on screen (y down), used for drawing and for the policy.
T_OUTLINE_DESIGN = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)],
    dtype=np.float64,
)
BLOCK_MASS = 1.0

SUCCESS_POS = 20.0
SUCCESS_ANGLE = math.pi / 9

FLOOR_RGB = (255, 255, 255)
WALL_RGB = (60, 60, 70)
AGENT_RGB = (65, 105, 225)
BLOCK_RGB = (119, 136, 153)

_SHIFT = 4
_ONE = 1 << _SHIFT


def _box_inertia(
    box: tuple[tuple[float, float], ...], mass: float, about: tuple[float, float]
) -> float:
    """Moment of inertia of a solid axis-aligned box of ``mass`` about point ``about``."""
    (x0, y0), (x1, y1) = box[0], box[2]
    w, h = abs(x1 - x0), abs(y1 - y0)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    return mass * (w * w + h * h) / 12.0 + mass * ((cx - about[0]) ** 2 + (cy - about[1]) ** 2)


def _block_mass_props() -> tuple[tuple[float, float], float]:
    """(centre of mass in the block frame, moment of inertia about it) for a uniform T."""
    a_bar, a_stem = 120.0 * 30.0, 30.0 * 90.0
    cy = (a_bar * 15.0 + a_stem * 75.0) / (a_bar + a_stem)
    cog = (0.0, cy)
    m_bar = BLOCK_MASS * a_bar / (a_bar + a_stem)
    m_stem = BLOCK_MASS - m_bar
    moment = _box_inertia(BAR_DESIGN, m_bar, cog) + _box_inertia(STEM_DESIGN, m_stem, cog)
    return cog, moment


BLOCK_COG, BLOCK_MOMENT = _block_mass_props()


def _centred(points) -> list[tuple[float, float]]:
    """Shift T-design coordinates so that the centre of mass is the origin."""
    return [(float(x) - BLOCK_COG[0], float(y) - BLOCK_COG[1]) for x, y in points]


BAR = tuple(_centred(BAR_DESIGN))  # body-frame boxes (centre of mass at the origin)
STEM = tuple(_centred(STEM_DESIGN))
T_OUTLINE = np.array(_centred(T_OUTLINE_DESIGN))  # (8, 2) outline in the body frame


def distance_to_block(rel: np.ndarray, angle: float) -> float:
    """Distance from a point (world offset from the block origin) to the T rotated by `angle`;
    0 if inside."""
    c, s = math.cos(angle), math.sin(angle)
    lx, ly = c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1]  # into the block frame
    d = math.inf
    for (x0, y0), (x1, y1) in (BAR[::2], STEM[::2]):
        dx = max(x0 - lx, 0.0, lx - x1)
        dy = max(y0 - ly, 0.0, ly - y1)
        d = min(d, math.hypot(dx, dy))
    return d


def _keep_velocity(body: pymunk.Body, gravity, damping: float, dt: float) -> None:
    """Velocity update of the agent: none (the PD controller sets its velocity each substep)."""


@functools.lru_cache(maxsize=16)
def _background(resolution: int) -> np.ndarray:
    """Floor with the border walls at ``resolution``, (r, r, 3) uint8, read-only."""
    img = np.empty((resolution, resolution, 3), np.uint8)
    img[:] = FLOOR_RGB
    s = resolution / WORLD * _ONE
    inner = WALL_INSET + WALL_RADIUS  # wall face
    lo, hi = int(inner * s), int((WORLD - inner) * s)
    full = int(WORLD * s)
    for p0, p1 in (
        ((0, 0), (full, lo)),
        ((0, hi), (full, full)),
        ((0, 0), (lo, full)),
        ((hi, 0), (full, full)),
    ):
        pts = np.array([[p0[0], p0[1]], [p1[0], p0[1]], [p1[0], p1[1]], [p0[0], p1[1]]], np.int32)
        pts -= _ONE // 2
        cv2.fillPoly(img, [pts], WALL_RGB, cv2.LINE_AA, _SHIFT)
    img.setflags(write=False)
    return img


class PushTEnv(LewmEnv):
    """Push-T; obs ``(r, r, 3)`` uint8, action ``(2,)`` in [-1, 1] (relative agent target)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    action_dim: ClassVar[int] = 2
    state_dim: ClassVar[int] = 10
    state_spec: ClassVar[dict[str, int]] = {
        "agent_pos": 2,
        "agent_vel": 2,
        "block_pos": 2,
        "block_angle": 1,
    }
    angle_quantities: ClassVar[tuple[str, ...]] = ("block_angle",)
    success_tolerances: ClassVar[dict[str, float]] = {
        "pos_dist": SUCCESS_POS,
        "angle_error": SUCCESS_ANGLE,
    }
    color_parts: ClassVar[tuple[str, ...]] = ("agent", "block")
    default_colors: ClassVar[dict[str, tuple[int, int, int]]] = {
        "agent": AGENT_RGB,
        "block": BLOCK_RGB,
    }
    goal_kinds: ClassVar[dict[str, str]] = {
        **GOAL_MET,
        "agent": "the T already lies within tolerance of its goal pose: moving the agent will do",
        "push": "the T must be pushed to its goal pose",
    }

    def __init__(
        self, resolution: int = 64, render_mode: str | None = "rgb_array", damping: float = 0.0
    ) -> None:
        super().__init__(resolution, render_mode)
        self._bg = _background(self.resolution)
        self._scale = self.resolution / WORLD
        self._pix = self._scale * _ONE  # world -> fixed-point pixel factor
        self._agent_radius_fp = round(AGENT_RADIUS * self._pix)
        self._build_space(damping)
        self._set_bodies((256.0, 400.0), (0.0, 0.0), (256.0, 200.0), 0.0, (0.0, 0.0), 0.0)

    # ----------------------------------------------------------------- physics
    def _build_space(self, damping: float) -> None:
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = damping
        f, far, t = WALL_INSET + WALL_RADIUS, WORLD - WALL_INSET - WALL_RADIUS, WALL_THICKNESS
        for x0, y0, x1, y1 in (
            (f - t, -t, f, WORLD + t),  # left
            (far, -t, far + t, WORLD + t),  # right
            (-t, f - t, WORLD + t, f),  # top
            (-t, far, WORLD + t, far + t),  # bottom
        ):
            box = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            wall = pymunk.Poly(space.static_body, box)
            wall.friction = 1.0
            space.add(wall)
        agent = pymunk.Body(AGENT_MASS, float("inf"))
        agent.velocity_func = _keep_velocity  # the PD controller sets it; no floor damping
        agent_shape = pymunk.Circle(agent, AGENT_RADIUS)
        agent_shape.friction = 1.0
        block = pymunk.Body(BLOCK_MASS, BLOCK_MOMENT)  # body origin = centre of mass
        block_shapes = [pymunk.Poly(block, box) for box in (BAR, STEM)]
        for sh in block_shapes:
            sh.friction = 1.0
        space.add(agent, block)
        self.space, self.agent, self.block = space, agent, block
        self._dynamic_shapes = [agent_shape, *block_shapes]
        self.block_shapes = block_shapes
        space.add(*self._dynamic_shapes)
        self._canonical_counter = self._shape_id_counter()

    def _shape_id_counter(self) -> int:
        return int(_cp.cpSpaceGetShapeIDCounter(self.space._space))

    def _canonicalize(self) -> None:
        """Make the next env step a pure function of the state vector.

        Drops the contact cache (warm-start impulses), rebuilds the broadphase in a fixed order
        with fixed shape ids, and clears the bodies' pending position-correction velocities
        (chipmunk's ``v_bias``/``w_bias``; a zero-length position update consumes them).
        """
        pymunk.Body.update_position(self.block, 0.0)
        pymunk.Body.update_position(self.agent, 0.0)
        self.space.remove(*self._dynamic_shapes)
        _cp.cpSpaceSetShapeIDCounter(self.space._space, self._canonical_counter)
        self.space.add(*self._dynamic_shapes)

    def _set_bodies(self, agent_pos, agent_vel, block_pos, block_angle, block_vel, block_w):
        agent, block = self.agent, self.block
        agent.position = (float(agent_pos[0]), float(agent_pos[1]))
        agent.velocity = (float(agent_vel[0]), float(agent_vel[1]))
        block.angle = float(block_angle)
        block.position = (float(block_pos[0]), float(block_pos[1]))
        block.velocity = (float(block_vel[0]), float(block_vel[1]))
        block.angular_velocity = float(block_w)
        self.space.reindex_shapes_for_body(agent)
        self.space.reindex_shapes_for_body(block)

    def _sample_layout(self, rng: np.random.Generator) -> tuple:
        """Random agent pos, block pos and angle with the agent clear of block and walls."""
        while True:
            agent_pos = rng.uniform(60.0, 452.0, 2)
            block_pos = rng.uniform(120.0, 392.0, 2)
            angle = float(rng.uniform(-math.pi, math.pi))
            c, s = math.cos(angle), math.sin(angle)
            pts = T_OUTLINE @ np.array([[c, s], [-s, c]]) + block_pos
            if pts.min() < 40.0 or pts.max() > WORLD - 40.0:
                continue
            if distance_to_block(agent_pos - block_pos, angle) > AGENT_RADIUS + 30.0:
                return agent_pos, block_pos, angle

    def _reset_sim(self) -> None:
        agent_pos, block_pos, angle = self._sample_layout(self.np_random)
        self._set_bodies(agent_pos, (0, 0), block_pos, angle, (0, 0), 0.0)

    def _teleport(self, rng: np.random.Generator) -> None:
        agent_pos, block_pos, angle = self._sample_layout(rng)
        self._set_bodies(agent_pos, (0, 0), block_pos, angle, (0, 0), 0.0)

    def _step_sim(self, action: np.ndarray) -> None:
        self._canonicalize()
        agent, space = self.agent, self.space
        px, py = agent.position
        tx = min(max(px + ACTION_SCALE * float(action[0]), TARGET_LO), TARGET_HI)
        ty = min(max(py + ACTION_SCALE * float(action[1]), TARGET_LO), TARGET_HI)
        for _ in range(SUBSTEPS):
            px, py = agent.position
            vx, vy = agent.velocity
            agent.velocity = (
                vx + (KP * (tx - px) - KV * vx) * DT,
                vy + (KP * (ty - py) - KV * vy) * DT,
            )
            space.step(DT)

    # ----------------------------------------------------------------- state
    def _state_dict(self) -> dict[str, np.ndarray]:
        a, b = self.agent, self.block
        return {
            "agent_pos": np.array(a.position),
            "agent_vel": np.array(a.velocity),
            "block_pos": np.array(b.position),
            "block_angle": np.array([b.angle]),
        }

    def get_state(self) -> np.ndarray:
        """``[agent xy, agent vel xy, block xy, block angle, block vel xy, block ang vel]``."""
        a, b = self.agent, self.block
        return np.array([*a.position, *a.velocity, *b.position, b.angle, *b.velocity,
                         b.angular_velocity])  # fmt: skip

    def _set_sim_state(self, state: np.ndarray) -> None:
        s = state
        self._set_bodies(s[0:2], s[2:4], s[4:6], s[6], s[7:9], s[9])

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """``pos_dist``: L2 distance over (agent xy, block xy) to the goal state's, world px
        (success: < 20); ``angle_error``: wrapped block angle difference, rad (< pi/9)."""
        g = np.asarray(goal_state, dtype=np.float64)
        s = self.get_state()
        return {
            "pos_dist": math.sqrt(float(np.sum((s[[0, 1, 4, 5]] - g[[0, 1, 4, 5]]) ** 2))),
            "angle_error": abs(float(wrap_angle(s[6] - g[6]))),
        }

    def _move_kind(self, start_state: np.ndarray, goal_state: np.ndarray) -> str:
        # "agent" when the success test would hold with the agent where the goal wants it (the
        # goal's agent placed at the start's): the T is already within its tolerances
        agent_there = np.array(goal_state, dtype=np.float64)
        agent_there[0:2] = start_state[0:2]
        return "agent" if self.is_success(agent_there) else "push"

    # ----------------------------------------------------------------- drawing
    def _render_frame(self) -> np.ndarray:
        img = self._bg.copy()
        b = self.block
        c, s = math.cos(b.angle), math.sin(b.angle)
        bx, by = b.position
        p = self._pix
        # world = R @ local + pos, then to fixed-point pixel coordinates (pixel centres at +0.5)
        rot = np.array([[c * p, s * p], [-s * p, c * p]])
        off = np.array([bx * p - 0.5 * _ONE, by * p - 0.5 * _ONE])
        pts = (T_OUTLINE @ rot + off).astype(np.int32)
        cv2.fillPoly(img, [pts], self.colors["block"], cv2.LINE_AA, _SHIFT)
        ax, ay = self.agent.position
        centre = (int(ax * p - 0.5 * _ONE), int(ay * p - 0.5 * _ONE))
        cv2.circle(img, centre, self._agent_radius_fp, self.colors["agent"], -1, cv2.LINE_AA,
                   _SHIFT)  # fmt: skip
        return img
