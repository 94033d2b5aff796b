"""Shared interface of the LeWM environments (pixels in, relative actions out).

Every environment is a :class:`gymnasium.Env` whose observation is the rendered RGB frame
(``uint8``, shape ``(resolution, resolution, 3)``) and whose action is a ``float32`` vector in
``[-1, 1]^action_dim``. There is no reward and no termination: the environments are used
goal-conditioned (planning towards a goal frame), so ``step`` always returns ``0.0, False, False``.

Besides the gymnasium API each environment offers what data collection, planning and probing need:

- ``info["state"]``: a dict of named physical quantities (float64 arrays, stable order), described
  by ``state_spec`` (name -> size) and ``angle_quantities`` (names that hold angles in radians).
- ``get_state() / set_state(s)``: the full simulator state as a 1-D float64 array of length
  ``state_dim``; restoring it reproduces the frame and the future exactly (``exact_restore``;
  an env whose ``set_state`` follows a reference's, Push-T v1, says what it does instead).
- ``is_success(goal_state)``: the paper's success test against a goal simulator state; its
  errors, named, from ``goal_errors(goal_state)``, and their tolerances in ``success_tolerances``;
  ``goal_kind(start, goal)``: what a task asks (one of ``goal_kinds``, e.g. Push-T's "push").
- ``teleport(rng)``: jump the controllable parts to a random valid configuration.
- ``set_color(part, rgb)``: recolour a named part (``color_parts``) until the next reset.
- ``Policy``: the scripted data-collection policy of an environment (see ``make_policy``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

# The goal kind every env shares (see LewmEnv.goal_kind); each env adds its kinds of move.
GOAL_MET: dict[str, str] = {"met": "the goal already holds at the start"}

MIN_RESOLUTION = 32
MAX_RESOLUTION = 224


def check_resolution(resolution: int) -> int:
    """Validate an image side length and return it as an int (ValueError if out of range)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer):
        raise ValueError(
            f"resolution must be an integer, got {resolution!r}; "
            f"pass an int in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]"
        )
    if not MIN_RESOLUTION <= int(resolution) <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution {resolution} is out of range; "
            f"choose a value in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]"
        )
    return int(resolution)


def wrap_angle(x: Any) -> Any:
    """Wrap angle(s) in radians to ``[-pi, pi)``; works on floats and arrays of any shape."""
    return (x + math.pi) % (2.0 * math.pi) - math.pi


def check_rgb(rgb: Any) -> tuple[int, int, int]:
    """Validate an RGB triple of ints in [0, 255] and return it as a tuple."""
    try:
        r, g, b = (int(c) for c in rgb)
    except (TypeError, ValueError) as e:
        raise ValueError(f"colour must be three ints in [0, 255], got {rgb!r}") from e
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(f"colour must be three ints in [0, 255], got {rgb!r}")
    return r, g, b


class LewmEnv(gymnasium.Env):
    """Base class of the pixel environments; subclasses implement the ``_``-prefixed hooks.

    Subclass contract (class attributes):
      ``action_dim``: int; ``state_dim``: length of ``get_state()``;
      ``state_spec``: ordered dict name -> size of ``info["state"]``;
      ``angle_quantities``: names in ``state_spec`` that are angles (radians);
      ``color_parts``: names accepted by ``set_color``; ``default_colors``: part -> RGB.
    Hooks: ``_reset_sim()``, ``_step_sim(action)``, ``_render_frame() -> (r, r, 3) uint8``,
    ``_state_dict()``, ``get_state``, ``_set_sim_state``, ``goal_errors``, ``_teleport``,
    ``_apply_colors()`` (called after ``self.colors`` changed).

    ``reset(options={"state": s})`` resets and then restores the simulator state ``s``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    action_dim: ClassVar[int] = 2
    state_dim: ClassVar[int] = 0
    state_spec: ClassVar[dict[str, int]] = {}
    angle_quantities: ClassVar[tuple[str, ...]] = ()
    # error name (a key of goal_errors) -> the tolerance the success test allows
    success_tolerances: ClassVar[dict[str, float]] = {}
    # whether set_state(get_state()) gives back the same frame and future (see set_state)
    exact_restore: ClassVar[bool] = True
    color_parts: ClassVar[tuple[str, ...]] = ()
    default_colors: ClassVar[dict[str, tuple[int, int, int]]] = {}
    # what a start -> goal task asks (see goal_kind), in reporting order: kind -> what it means
    goal_kinds: ClassVar[dict[str, str]] = {**GOAL_MET, "move": "the goal must be reached"}

    def __init__(self, resolution: int = 64, render_mode: str | None = "rgb_array") -> None:
        super().__init__()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array'")
        self.resolution = check_resolution(resolution)
        self.render_mode = "rgb_array"
        r = self.resolution
        self.observation_space = spaces.Box(0, 255, (r, r, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.colors: dict[str, tuple[int, int, int]] = dict(self.default_colors)
        self._frame: np.ndarray | None = None

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at a random state; returns ``(obs (r, r, 3) uint8, info)``."""
        super().reset(seed=seed)
        self.colors = dict(self.default_colors)
        self._apply_colors()
        self._reset_sim()
        if options and options.get("state") is not None:
            self._set_sim_state(np.asarray(options["state"], dtype=np.float64))
        self._frame = self._render_frame()
        return self._frame, {"state": self._state_dict()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one control step with ``action`` (clipped to [-1, 1]^action_dim)."""
        self.simulate(action)
        self._frame = self._render_frame()
        return self._frame, 0.0, False, False, {"state": self._state_dict()}

    def render(self) -> np.ndarray:
        """The current frame, ``(resolution, resolution, 3)`` uint8 (same as the observation)."""
        if self._frame is None:
            self._frame = self._render_frame()
        return self._frame

    # ----------------------------------------------------------------- extras
    @property
    def state(self) -> dict[str, np.ndarray]:
        """Named physical quantities of the current state (same as ``info["state"]``)."""
        return self._state_dict()

    @property
    def state_vector(self) -> np.ndarray:
        """The named quantities of ``state`` concatenated in their order: (S,), the row a
        dataset's ``state`` array records."""
        return np.concatenate([np.ravel(v) for v in self._state_dict().values()])

    def get_state(self) -> np.ndarray:
        """Full simulator state, 1-D float64 array of length ``state_dim``."""
        raise NotImplementedError

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state returned by ``get_state``: exactly (same frame, same future) when
        ``exact_restore``; otherwise as the env's docstring says."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape != (self.state_dim,):
            raise ValueError(
                f"state has {state.shape[0]} values, expected state_dim={self.state_dim}; "
                "pass an array from get_state()"
            )
        self._set_sim_state(state)
        self._frame = None

    def simulate(self, action: Any) -> None:
        """Advance the physics one control step with ``action`` (clipped to [-1, 1]^action_dim)
        without rendering: the env as a simulator (``set_state``, ``simulate``, ``goal_errors``).
        ``step`` is this plus the frame."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_dim), -1.0, 1.0)
        self._step_sim(a)
        self._frame = None

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """How far the current state is from a goal simulator state, per quantity that the
        success test checks (names and units as in ``success_tolerances``)."""
        raise NotImplementedError

    def is_success(self, goal_state: np.ndarray) -> bool:
        """The paper's success test of the current state against a goal simulator state:
        every error of ``goal_errors`` below its tolerance in ``success_tolerances``."""
        errors = self.goal_errors(goal_state)
        return all(errors[name] < tol for name, tol in self.success_tolerances.items())

    def goal_kind(self, start_state: np.ndarray, goal_state: np.ndarray) -> str:
        """What reaching ``goal_state`` from ``start_state`` asks, one of ``goal_kinds``: "met"
        if the success test already holds at the start, else the env's kind of the move
        (``_move_kind``; "move" unless an env tells its tasks apart). Leaves the env in
        ``start_state``."""
        self.set_state(start_state)
        if self.is_success(goal_state):
            return "met"
        return self._move_kind(np.asarray(start_state, np.float64), goal_state)

    def _move_kind(self, start_state: np.ndarray, goal_state: np.ndarray) -> str:
        """The kind of a task whose goal does not hold at the start (a name in ``goal_kinds``);
        called with the env in ``start_state``."""
        return "move"

    def teleport(self, rng: np.random.Generator) -> None:
        """Move the controllable parts to a random valid place instantly (zero velocities)."""
        self._teleport(rng)
        self._frame = None

    def set_color(self, part: str, rgb: tuple[int, int, int]) -> None:
        """Recolour ``part`` (one of ``color_parts``) with ``rgb`` until the next reset."""
        if part not in self.color_parts:
            raise ValueError(
                f"unknown colour part {part!r}; choose one of {', '.join(self.color_parts)}"
            )
        self.colors[part] = check_rgb(rgb)
        self._apply_colors()
        self._frame = None

    # ----------------------------------------------------------------- hooks
    def _reset_sim(self) -> None:
        raise NotImplementedError

    def _step_sim(self, action: np.ndarray) -> None:
        raise NotImplementedError

    def _render_frame(self) -> np.ndarray:
        raise NotImplementedError

    def _state_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_sim_state(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def _teleport(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _apply_colors(self) -> None:
        """Push ``self.colors`` into the renderer (default: colours are read at draw time)."""


class Policy:
    """A scripted data-collection policy: ``reset()`` after each ``env.reset``, then ``act()``.

    ``act()`` returns a float32 action of shape ``(action_dim,)`` in [-1, 1]; it reads privileged
    state from ``env.unwrapped``. The policy is deterministic given its seed. ``done()`` says
    when the policy's episode is over (by default never: collection runs the steps asked for).
    """

    def __init__(self, env: gymnasium.Env, seed: int) -> None:
        self.env: Any = env.unwrapped
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        """Forget the previous episode's plan (called right after ``env.reset``)."""

    def act(self) -> np.ndarray:
        """The next action, float32 array of shape ``(action_dim,)`` in [-1, 1]."""
        raise NotImplementedError

    def done(self) -> bool:
        """Whether the episode ends with the current state: collection (``run_episode``) asks
        after recording each row and its action, and records no row after one that is done.
        A policy that overrides it writes episodes of varying length (at most the steps asked
        for); the default never ends an episode early."""
        return False
