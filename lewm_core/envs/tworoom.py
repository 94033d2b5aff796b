"""Two-Room: a dot agent in two rooms joined by one door (pure numpy + OpenCV).

World (pixel units, y grows downwards as image rows): a 224 x 224 square whose outer 14 px are
walls; a vertical wall of thickness 10 at x = 112 (x in [107, 117]) splits it into a left and a
right room; the only passage is a door in that wall, an opening centred at y = 49 with
half-height 14 (y in [35, 63]). The agent is a disk of radius 7 that moves ``5 * action`` px per
step (action clipped to [-1, 1]^2). A disk never overlaps a wall: its centre is confined to
x, y in [21, 203] and, while it overlaps the wall's x-range (100 < x < 124), to the door band
y in [42, 56]; a move that would break this is clamped at the wall (sliding along it).

The simulator state is the agent centre ``(x, y)``; ``info["state"] = {"agent_pos": (2,)}``.
Frames are drawn directly at the requested resolution (world scaled by ``resolution / 224``): a
cached anti-aliased background plus an anti-aliased disk with sub-pixel position.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import LewmEnv, Policy

WORLD = 224.0
BORDER = 14.0
WALL_X0, WALL_X1 = 107.0, 117.0
DOOR_Y, DOOR_HALF = 49.0, 14.0
AGENT_RADIUS = 7.0
SPEED = 5.0
SUCCESS_DIST = 16.0

# Admissible agent centres (the agent disk must not overlap any wall).
LO, HI = BORDER + AGENT_RADIUS, WORLD - BORDER - AGENT_RADIUS  # 21, 203
ZONE_X0, ZONE_X1 = WALL_X0 - AGENT_RADIUS, WALL_X1 + AGENT_RADIUS  # 100, 124 (open interval)
BAND_Y0, BAND_Y1 = DOOR_Y - DOOR_HALF + AGENT_RADIUS, DOOR_Y + DOOR_HALF - AGENT_RADIUS  # 42, 56

FLOOR_RGB = (235, 235, 228)
WALL_RGB = (70, 70, 80)
AGENT_RGB = (220, 40, 40)

_SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT


@functools.lru_cache(maxsize=16)
def _background(resolution: int) -> np.ndarray:
    """Static walls and floor at ``resolution``, (r, r, 3) uint8, area-averaged (read-only)."""
    ss = 4 * int(WORLD)  # supersampled canvas, 4 samples per world px
    c = (np.arange(ss) + 0.5) * (WORLD / ss)
    x, y = c[None, :], c[:, None]
    outer = (x < BORDER) | (x > WORLD - BORDER) | (y < BORDER) | (y > WORLD - BORDER)
    middle = (x >= WALL_X0) & (x <= WALL_X1) & ((y < DOOR_Y - DOOR_HALF) | (y > DOOR_Y + DOOR_HALF))
    wall = (outer | middle).astype(np.float32)[..., None]
    img = (1.0 - wall) * np.array(FLOOR_RGB, np.float32) + wall * np.array(WALL_RGB, np.float32)
    img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def is_free(x: float, y: float) -> bool:
    """Whether an agent centred at ``(x, y)`` overlaps no wall."""
    if not (LO <= x <= HI and LO <= y <= HI):
        return False
    return not (ZONE_X0 < x < ZONE_X1 and not BAND_Y0 <= y <= BAND_Y1)


def room_of(x: float) -> int:
    """0 for the left room (x <= 112), 1 for the right room."""
    return 0 if x <= 0.5 * (WALL_X0 + WALL_X1) else 1


def sample_free(rng: np.random.Generator, room: int | None = None) -> tuple[float, float]:
    """A uniformly random admissible agent centre inside a room (random room if None)."""
    if room is None:
        room = int(rng.integers(2))
    x0, x1 = (LO, ZONE_X0) if room == 0 else (ZONE_X1, HI)
    return float(rng.uniform(x0, x1)), float(rng.uniform(LO, HI))


class TwoRoomEnv(LewmEnv):
    """Two-Room navigation; obs ``(r, r, 3)`` uint8, action ``(2,)`` in [-1, 1] (x, y velocity)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    action_dim: ClassVar[int] = 2
    state_dim: ClassVar[int] = 2
    state_spec: ClassVar[dict[str, int]] = {"agent_pos": 2}
    angle_quantities: ClassVar[tuple[str, ...]] = ()
    success_tolerances: ClassVar[dict[str, float]] = {"agent_dist": SUCCESS_DIST}
    color_parts: ClassVar[tuple[str, ...]] = ("agent",)
    default_colors: ClassVar[dict[str, tuple[int, int, int]]] = {"agent": AGENT_RGB}

    def __init__(self, resolution: int = 64, render_mode: str | None = "rgb_array") -> None:
        super().__init__(resolution, render_mode)
        self._bg = _background(self.resolution)
        self._scale = self.resolution / WORLD
        self._radius_fp = round(AGENT_RADIUS * self._scale * _ONE)
        self.x, self.y = sample_free(np.random.default_rng(0))

    @property
    def agent_pos(self) -> np.ndarray:
        """Agent centre in world px, (2,) float64."""
        return np.array([self.x, self.y])

    # ----------------------------------------------------------------- hooks
    def _reset_sim(self) -> None:
        self.x, self.y = sample_free(self.np_random)

    def _step_sim(self, action: np.ndarray) -> None:
        x, y = self.x, self.y
        nx = min(max(x + SPEED * float(action[0]), LO), HI)
        ny = min(max(y + SPEED * float(action[1]), LO), HI)
        if ZONE_X0 < nx < ZONE_X1 and not BAND_Y0 <= ny <= BAND_Y1:
            if ZONE_X0 < x < ZONE_X1:  # inside the doorway: stop at the door frame
                ny = min(max(ny, BAND_Y0), BAND_Y1)
            else:  # hitting the wall from a room: stop at its face, keep sliding in y
                nx = ZONE_X0 if x <= ZONE_X0 else ZONE_X1
        self.x, self.y = nx, ny

    def _render_frame(self) -> np.ndarray:
        img = self._bg.copy()
        s = self._scale * _ONE
        centre = (int(self.x * s - 0.5 * _ONE), int(self.y * s - 0.5 * _ONE))
        cv2.circle(img, centre, self._radius_fp, self.colors["agent"], -1, cv2.LINE_AA, _SHIFT)
        return img

    def _state_dict(self) -> dict[str, np.ndarray]:
        return {"agent_pos": np.array([self.x, self.y])}

    def get_state(self) -> np.ndarray:
        """``[x, y]`` of the agent centre, (2,) float64."""
        return np.array([self.x, self.y])

    def _set_sim_state(self, state: np.ndarray) -> None:
        self.x, self.y = float(state[0]), float(state[1])

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """``agent_dist``: world px from the goal state's agent position (success: < 16)."""
        g = np.asarray(goal_state, dtype=np.float64)
        return {"agent_dist": math.hypot(self.x - g[0], self.y - g[1])}

    def _teleport(self, rng: np.random.Generator) -> None:
        self.x, self.y = sample_free(rng)


class TwoRoomPolicy(Policy):
    """Noisy waypoint follower: random targets in either room, through the door when needed.

    A target is drawn uniformly in a random room (the other room with probability 0.6). When it
    lies in the other room the agent first heads to the door's near side, then its far side,
    then the target. Action = unit direction * speed (per-target speed in [0.5, 1], slowed near
    the waypoint) + N(0, 0.3^2) noise, clipped. A new target is drawn on arrival or after 120
    steps on the same one.
    """

    NOISE_STD = 0.3
    ARRIVE = 4.0
    PATIENCE = 120

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env, seed)
        self.waypoints: list[tuple[float, float]] = []
        self.speed = 1.0
        self.age = 0

    def reset(self) -> None:
        self.waypoints = []
        self.age = 0

    def _new_target(self, x: float, y: float) -> None:
        here = room_of(x)
        room = 1 - here if self.rng.random() < 0.6 else here
        target = sample_free(self.rng, room)
        self.waypoints = []
        if room != here:
            near, far = (
                (ZONE_X0 - 6.0, ZONE_X1 + 6.0) if here == 0 else (ZONE_X1 + 6.0, ZONE_X0 - 6.0)
            )
            if not ZONE_X0 < x < ZONE_X1:
                self.waypoints.append((near, DOOR_Y))
            self.waypoints.append((far, DOOR_Y))
        self.waypoints.append(target)
        self.speed = float(self.rng.uniform(0.5, 1.0))
        self.age = 0

    def act(self) -> np.ndarray:
        env = self.env
        x, y = env.x, env.y
        if not self.waypoints or self.age >= self.PATIENCE:
            self._new_target(x, y)
        while True:
            tx, ty = self.waypoints[0]
            dx, dy = tx - x, ty - y
            dist = math.hypot(dx, dy)
            if dist > self.ARRIVE or len(self.waypoints) == 1:
                break
            self.waypoints.pop(0)
        if dist <= self.ARRIVE:  # reached the final target: pick a new one next step
            self.waypoints = []
            mag = 0.0
        else:
            mag = min(self.speed, dist / SPEED)
        self.age += 1
        d = np.array([dx, dy]) / max(dist, 1e-9) * mag
        a = d + self.NOISE_STD * self.rng.standard_normal(2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)
