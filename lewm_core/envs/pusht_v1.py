"""Push-T v1: the reference Push-T task (physics, state, success test, pictures).

The task of the LeWM paper's Push-T evaluation, as the authors' environment library
stable-worldmodel 0.1.1 (``stable_worldmodel/envs/pusht/env.py``) defines it on top of the
physics of gym-pusht 0.1.8 (``gym_pusht/envs/pusht.py``). ``lewm_core.envs.pusht`` (v0) is an
earlier, different task kept for the shipped model; docs/pusht.md lists how the two differ
and measures it. ``tests/test_pusht_v1.py`` replays trajectories recorded from gym-pusht.

World (pymunk, 512 x 512 px, y down, gravity 0, damping 0, pymunk's default solver):

- Agent: a KINEMATIC circle of radius 15. Each env step (10 Hz) fixes a target and runs 10
  substeps of dt = 0.01 s; before each, the agent velocity becomes
  ``v + (kp * (target - p) - kv * v) * dt`` with kp = 100, kv = 20. Being kinematic it has
  infinite mass: no contact slows it, and it passes through the walls.
- Block: a T of scale 30 (a 120 x 30 bar and a 30 x 90 stem below its middle) on one body of
  mass 1 and moment 3000 (the reference's value: its code takes the bar's moment about the
  body origin twice), centre of gravity (0, 45) in the body frame. The body ORIGIN is the
  midpoint of the bar's outer edge; ``block_pos`` is that point, as in both references.
- Walls: 4 static segments of radius 2 through (5, 5), (506, 5), (506, 506), (5, 506).
- Every shape has friction 0 and elasticity 0: all contacts are frictionless.
- Thin walls: the kinematic agent can push the T into and through a wall. The reference has
  the same walls and the same agent, so this env keeps them;
  ``tests/test_pusht_v1.py::test_kinematic_agent_pushes_the_t_through_a_wall`` shows it.

Action: relative, as stable-worldmodel's ``step``: target = agent position + 100 * a. Neither
the action nor the target is clipped (the reference declares ``Box(-1, 1)`` but its ``step``
does not enforce it); data policies and planners stay within [-1, 1].

State (``get_state``, 7 values, stable-worldmodel's ``state``): agent x, y; block origin x,
y; block angle mod 2 pi; agent vx, vy. ``set_state`` does what the authors' ``_set_state``
does on their fresh space at reset: a new pymunk space, then agent velocity, agent position,
block angle, block position (so the origin lands on the given point), then one 0.01 s
physics step. That step moves the agent by v * 0.01 and resolves any overlap, so unlike v0's
``set_state`` it is not an exact restore when the agent moves (``exact_restore`` is False):
it is the reference's meaning of "start from this state". Within an episode, steps keep
pymunk's contact cache, as the reference does.

Success (stable-worldmodel's ``eval_state``): one Euclidean norm over (agent x, y, block
origin x, y) against the goal's < 20 px, AND the angle difference d of the angles mod 2 pi,
``min(d, 2 pi - d)``, < pi/9.

Pictures (gym-pusht's drawing, re-implemented with OpenCV): a 512 px canvas, white; the fixed
goal T at (256, 256, pi/4) filled light green; each T box filled (143, 163, 184) then
outlined 4 px in (119, 136, 153), so a seam crosses the T where stem meets bar; the agent a
RoyalBlue ring around a (78, 126, 255) disc; the walls as 4 px light-gray lines, drawn last
(chipmunk draws static shapes after the moving ones). Not drawn: the reference's red contact
marks (a few pixels while touching). The canvas is resized to 224 px with
``cv2.INTER_LINEAR`` (the authors' frames), then, for any other ``resolution`` (e.g. 64 px),
with ``cv2.INTER_AREA``: that last step is this project's, the references fix no 64 px frame.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import cv2
import numpy as np
import pymunk

from .base import GOAL_MET, LewmEnv

WORLD = 512  # canvas side, px (world units = canvas pixels)
REFERENCE_RESOLUTION = 224  # the authors' frames: 512 -> 224 with INTER_LINEAR
DT = 0.01
SUBSTEPS = 10
KP, KV = 100.0, 20.0
ACTION_SCALE = 100.0
AGENT_RADIUS = 15.0
WALL_RADIUS = 2.0
# (a, b) of each wall segment, in the reference's order and direction
WALLS = (
    ((5.0, 506.0), (5.0, 5.0)),
    ((5.0, 5.0), (506.0, 5.0)),
    ((506.0, 5.0), (506.0, 506.0)),
    ((5.0, 506.0), (506.0, 506.0)),
)
INNER_LO, INNER_HI = 5.0 + WALL_RADIUS, 506.0 - WALL_RADIUS  # the walls' inner faces
BLOCK_MASS = 1.0
BLOCK_MOMENT = 3000.0
BLOCK_COG = (0.0, 45.0)  # centre of gravity in the body frame (mean of the box centroids)
# body frame: origin at the midpoint of the bar's outer edge, stem along +y
BAR = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0))
STEM = ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0))
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # the green T of every picture
# the bodies' places when a space is built (the reference's), before a state is set
AGENT_HOME, BLOCK_HOME = (256.0, 400.0), (256.0, 300.0)

SUCCESS_POS = 20.0  # px, over (agent xy, block origin xy)
SUCCESS_ANGLE = math.pi / 9

BACKGROUND_RGB = (255, 255, 255)
GOAL_RGB = (144, 238, 144)  # LightGreen
WALL_RGB = (211, 211, 211)  # LightGray
AGENT_RGB = (65, 105, 225)  # RoyalBlue: the ring; the disc is lighter (see fill_color)
BLOCK_RGB = (119, 136, 153)  # LightSlateGray: the outline; the boxes are lighter
LINE_WIDTH = 4  # px at 512: outlines, walls, the agent's ring

_SHIFT = 4  # OpenCV fixed-point bits: drawing at 1/16 px
_ONE = 1 << _SHIFT


def fill_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The fill of a shape outlined in ``rgb``: 1.2 x each channel, rounded, at most 255
    (gym-pusht's drawing: LightSlateGray -> (143, 163, 184), RoyalBlue -> (78, 126, 255))."""
    return tuple(min(255, int(c * 1.2 + 0.5)) for c in rgb)  # type: ignore[return-value]


def block_points(box: tuple, x: float, y: float, angle: float) -> np.ndarray:
    """World coordinates (n, 2) of body-frame points ``box`` on a body at (x, y, angle)."""
    c, s = math.cos(angle), math.sin(angle)
    pts = np.asarray(box, dtype=np.float64)
    return pts @ np.array([[c, s], [-s, c]]) + (x, y)


def _fixed(points: np.ndarray) -> np.ndarray:
    """World points (n, 2) -> OpenCV fixed-point pixel coordinates; world x lands on pixel x's
    centre, as in gym-pusht's pygame drawing."""
    return np.rint(points * _ONE).astype(np.int32)


def _draw_box(img: np.ndarray, points: np.ndarray, fill, outline) -> None:
    """A filled polygon, then (if ``outline``) its 4 px outline, anti-aliased."""
    pts = _fixed(points)
    cv2.fillPoly(img, [pts], fill, cv2.LINE_AA, _SHIFT)
    if outline is not None:
        cv2.polylines(img, [pts], True, outline, LINE_WIDTH, cv2.LINE_AA, _SHIFT)


@functools.lru_cache(maxsize=1)
def _scene() -> np.ndarray:
    """The 512 px canvas with the fixed goal T, (512, 512, 3) uint8, read-only."""
    img = np.empty((WORLD, WORLD, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    for box in (BAR, STEM):
        _draw_box(img, block_points(box, *GOAL_POSE), GOAL_RGB, None)
    img.setflags(write=False)
    return img


def _draw_walls(img: np.ndarray) -> None:
    for a, b in WALLS:
        (ax, ay), (bx, by) = _fixed(np.array([a, b]))
        cv2.line(img, (ax, ay), (bx, by), WALL_RGB, LINE_WIDTH, cv2.LINE_AA, _SHIFT)


def resize_frame(canvas: np.ndarray, resolution: int) -> np.ndarray:
    """512 px canvas -> 224 px with INTER_LINEAR (the authors' frames) -> ``resolution`` with
    INTER_AREA (this project's step; none at 224). Returns (resolution, resolution, 3) uint8."""
    ref = REFERENCE_RESOLUTION
    img = cv2.resize(canvas, (ref, ref), interpolation=cv2.INTER_LINEAR)
    if resolution != ref:
        img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return img


def angle_difference(a: float, b: float) -> float:
    """stable-worldmodel's angle error: d = |a mod 2pi - b mod 2pi|, then min(d, 2pi - d)."""
    two_pi = 2.0 * math.pi
    d = abs(a % two_pi - b % two_pi)
    return min(d, two_pi - d)


class PushTV1Env(LewmEnv):
    """Push-T as the reference defines it; obs ``(r, r, 3)`` uint8, action ``(2,)`` (relative
    agent target, target = agent position + 100 a), state ``(7,)`` (see the module doc)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    action_dim: ClassVar[int] = 2
    state_dim: ClassVar[int] = 7
    # in get_state's order, so that state_vector == get_state() (stable-worldmodel's state)
    state_spec: ClassVar[dict[str, int]] = {
        "agent_pos": 2,
        "block_pos": 2,
        "block_angle": 1,
        "agent_vel": 2,
    }
    angle_quantities: ClassVar[tuple[str, ...]] = ("block_angle",)
    success_tolerances: ClassVar[dict[str, float]] = {
        "pos_dist": SUCCESS_POS,
        "angle_error": SUCCESS_ANGLE,
    }
    exact_restore: ClassVar[bool] = False
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

    def __init__(self, resolution: int = 64, render_mode: str | None = "rgb_array") -> None:
        super().__init__(resolution, render_mode)
        self._build_space()

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_block_origin"] = tuple(self.block.position)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        origin = d.pop("_block_origin")
        self.__dict__.update(d)
        # pymunk (7.3) unpickles a body's position before its centre of gravity, which leaves
        # the origin off by the turned centre of gravity at the next step: put it back. (Its
        # contact cache comes back only in part: a clone made while the agent touches the T
        # drifts from the original by up to ~0.1 px in a few steps; a clone without contacts
        # follows it to ~1e-13 px.)
        self.block.position = origin

    # ----------------------------------------------------------------- physics
    def _build_space(self) -> None:
        """A fresh space as the reference builds one (walls, agent, block, in that order)."""
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = 0.0
        for a, b in WALLS:
            space.add(pymunk.Segment(space.static_body, a, b, WALL_RADIUS))
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        agent.position = AGENT_HOME
        space.add(agent, pymunk.Circle(agent, AGENT_RADIUS))
        block = pymunk.Body(BLOCK_MASS, BLOCK_MOMENT)
        shapes = [pymunk.Poly(block, box) for box in (BAR, STEM)]
        block.center_of_gravity = BLOCK_COG
        block.position = BLOCK_HOME
        space.add(block, *shapes)
        self.space, self.agent, self.block = space, agent, block

    def _place(self, state: np.ndarray) -> None:
        """The authors' ``_set_state`` on a fresh space: agent velocity and position, block
        angle then position (the origin lands on state[2:4]), one 0.01 s step."""
        self._build_space()
        s = [float(v) for v in state]
        self.agent.velocity = (s[5], s[6])
        self.agent.position = (s[0], s[1])
        self.block.angle = s[4]
        self.block.position = (s[2], s[3])
        self.space.step(DT)

    def _sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random start: gym-pusht's ranges (agent 50..450, block origin 100..400, any
        angle), redrawn until the T lies 10 px inside the walls and the agent 10 px off it."""
        while True:
            agent = rng.uniform(50.0, 450.0, 2)
            origin = rng.uniform(100.0, 400.0, 2)
            angle = float(rng.uniform(-math.pi, math.pi))
            corners = np.concatenate([block_points(b, *origin, angle) for b in (BAR, STEM)])
            if corners.min() < INNER_LO + 10.0 or corners.max() > INNER_HI - 10.0:
                continue
            if distance_to_t(agent, origin, angle) > AGENT_RADIUS + 10.0:
                return np.array([*agent, *origin, angle % (2 * math.pi), 0.0, 0.0])

    def _reset_sim(self) -> None:
        self._place(self._sample_state(self.np_random))

    def _teleport(self, rng: np.random.Generator) -> None:
        self._place(self._sample_state(rng))

    def simulate(self, action: Any) -> None:
        """One control step with the relative action ``a`` (2,), NOT clipped (as the reference):
        target = agent position + 100 a, then 10 PD substeps. Raises ValueError on a
        non-finite action."""
        a = np.asarray(action, dtype=np.float64).reshape(self.action_dim)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action {a.tolist()} is not finite; pass two finite numbers")
        self._step_sim(a)
        self._frame = None

    def _step_sim(self, action: np.ndarray) -> None:
        agent, space = self.agent, self.space
        px, py = agent.position
        tx, ty = px + ACTION_SCALE * float(action[0]), py + ACTION_SCALE * float(action[1])
        for _ in range(SUBSTEPS):
            px, py = agent.position
            vx, vy = agent.velocity
            agent.velocity = (vx + (KP * (tx - px) - KV * vx) * DT,
                              vy + (KP * (ty - py) - KV * vy) * DT)  # fmt: skip
            space.step(DT)

    # ----------------------------------------------------------------- state
    def _state_dict(self) -> dict[str, np.ndarray]:
        s = self.get_state()
        return {
            "agent_pos": s[0:2],
            "block_pos": s[2:4],
            "block_angle": s[4:5],
            "agent_vel": s[5:7],
        }

    def get_state(self) -> np.ndarray:
        """``[agent x, y, block origin x, y, block angle mod 2 pi, agent vx, vy]`` (7,)."""
        a, b = self.agent, self.block
        return np.array([*a.position, *b.position, b.angle % (2 * math.pi), *a.velocity])

    def _set_sim_state(self, state: np.ndarray) -> None:
        self._place(state)

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """``pos_dist``: one L2 norm over (agent xy, block origin xy) against the goal's, px
        (success: < 20); ``angle_error``: ``angle_difference`` of the block angles, rad (< pi/9)."""
        g = np.asarray(goal_state, dtype=np.float64).reshape(-1)
        if g.shape != (self.state_dim,):
            raise ValueError(
                f"goal state has {g.shape[0]} values, expected {self.state_dim}; "
                "pass an array from get_state()"
            )
        s = self.get_state()
        return {
            "pos_dist": math.sqrt(float(np.sum((s[0:4] - g[0:4]) ** 2))),
            "angle_error": angle_difference(float(s[4]), float(g[4])),
        }

    def _move_kind(self, start_state: np.ndarray, goal_state: np.ndarray) -> str:
        # "agent" when the success test would hold with the goal's agent at the start's place
        t_there = np.array(goal_state, dtype=np.float64)
        t_there[0:2] = self.get_state()[0:2]
        return "agent" if self.is_success(t_there) else "push"

    # ----------------------------------------------------------------- drawing
    def render_canvas(self) -> np.ndarray:
        """The 512 px picture, (512, 512, 3) uint8, before any resize."""
        img = _scene().copy()
        b = self.block
        bx, by = b.position
        outline = self.colors["block"]
        for box in (BAR, STEM):
            _draw_box(img, block_points(box, bx, by, b.angle), fill_color(outline), outline)
        ax, ay = self.agent.position
        # pygame puts a circle's centre at the pixel's corner: half a pixel up and left
        centre = (round((ax - 0.5) * _ONE), round((ay - 0.5) * _ONE))
        ring = self.colors["agent"]
        for radius, rgb in ((AGENT_RADIUS, ring), (AGENT_RADIUS - LINE_WIDTH, fill_color(ring))):
            cv2.circle(img, centre, round(radius * _ONE), rgb, -1, cv2.LINE_AA, _SHIFT)
        _draw_walls(img)
        return img

    def _render_frame(self) -> np.ndarray:
        return resize_frame(self.render_canvas(), self.resolution)


def distance_to_t(point: np.ndarray, origin: np.ndarray, angle: float) -> float:
    """Distance (px) from a world point to the T whose body origin is at ``origin`` turned by
    ``angle``; 0 inside."""
    c, s = math.cos(angle), math.sin(angle)
    rx, ry = float(point[0] - origin[0]), float(point[1] - origin[1])
    lx, ly = c * rx + s * ry, -s * rx + c * ry  # into the body frame
    d = math.inf
    for (x0, y0), _, (x1, y1), _ in (BAR, STEM):
        dx = max(x0 - lx, 0.0, lx - x1)
        dy = max(y0 - ly, 0.0, ly - y1)
        d = min(d, math.hypot(dx, dy))
    return d
