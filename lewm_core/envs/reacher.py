"""Reacher: DeepMind Control's two-link planar reacher rendered from its top-down camera.

Physics: the model of ``dm_control.suite.reacher`` (as loaded by ``suite.load("reacher",
"easy")``), stepped directly with MuJoCo: one env step = one control step of the suite (0.02 s,
``n_substeps`` physics steps), action = the two joint motor commands in [-1, 1]. The target is
hidden (alpha 0) since goals are given as images. MuJoCo's solver warm start is disabled so that
a step is a pure function of (qpos, qvel, action) and ``set_state`` is exact.

Simulator state (``get_state``, 4 values): qpos (shoulder, wrist angle) and qvel.
``info["state"]``: ``joint_angles`` (2, wrapped to [-pi, pi)), ``joint_vel`` (2),
``fingertip_pos`` (2, x/y in metres).

Rendering: the suite's top-down camera through :mod:`lewm_core.envs.mujoco_render` (offscreen
EGL, shadows and multisampling off, any thread, lazy; its notes on worker processes apply).
Colour parts: ``arm`` (arm and hand) and ``fingertip``; in their default colours they keep the
suite's own materials.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import math  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from .base import Policy, wrap_angle  # noqa: E402
from .mujoco_render import MujocoEnv, prepare_model  # noqa: E402

SUCCESS_ANGLE = 0.05
CONTROL_TIMESTEP = 0.02  # dm_control.suite.reacher default
ARM_RGB = (178, 127, 76)  # the suite's "self" material (0.7, 0.5, 0.3)
FINGER_RGB = (178, 102, 51)  # the suite's "effector" material (0.7, 0.4, 0.2)


def _load_model() -> mujoco.MjModel:
    """A fresh MjModel of dm_control's reacher (the suite's XML and assets)."""
    from dm_control.suite import reacher as dmc_reacher

    xml, assets = dmc_reacher.get_model_and_assets()
    return mujoco.MjModel.from_xml_string(xml.decode() if isinstance(xml, bytes) else xml, assets)


class ReacherEnv(MujocoEnv):
    """Reacher; obs ``(r, r, 3)`` uint8, action ``(2,)`` in [-1, 1] (shoulder, wrist torque)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}
    action_dim: ClassVar[int] = 2
    state_dim: ClassVar[int] = 4
    state_spec: ClassVar[dict[str, int]] = {"joint_angles": 2, "joint_vel": 2, "fingertip_pos": 2}
    angle_quantities: ClassVar[tuple[str, ...]] = ("joint_angles",)
    success_tolerances: ClassVar[dict[str, float]] = {"joint_error": SUCCESS_ANGLE}
    color_parts: ClassVar[tuple[str, ...]] = ("arm", "fingertip")
    default_colors: ClassVar[dict[str, tuple[int, int, int]]] = {
        "arm": ARM_RGB,
        "fingertip": FINGER_RGB,
    }
    defaults_keep_materials: ClassVar[bool] = True
    _PART_GEOMS: ClassVar[dict[str, tuple[str, ...]]] = {
        "arm": ("arm", "hand"),
        "fingertip": ("finger",),
    }

    def __init__(self, resolution: int = 64, render_mode: str | None = "rgb_array") -> None:
        super().__init__(resolution, render_mode)
        m = _load_model()
        prepare_model(m, self.resolution)
        m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_WARMSTART)

        def gid(name: str) -> int:
            return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)

        m.geom_rgba[gid("target"), 3] = 0.0  # hide the target
        self.model, self.data = m, mujoco.MjData(m)
        self._finger = gid("finger")
        self.n_substeps = max(1, round(CONTROL_TIMESTEP / m.opt.timestep))
        self.wrist_range = tuple(m.jnt_range[1])  # shoulder is unlimited
        parts = {part: [gid(g) for g in gs] for part, gs in self._PART_GEOMS.items()}
        # the suite's top-down "fixed" camera (0)
        self._init_rendering(camera=0, part_geoms=parts, name="Reacher")
        mujoco.mj_forward(m, self.data)

    # ----------------------------------------------------------------- hooks
    def _random_qpos(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(-math.pi, math.pi), rng.uniform(*self.wrist_range)])

    def _reset_sim(self) -> None:
        self._set_qpos_qvel(self._random_qpos(self.np_random), np.zeros(2))

    def _teleport(self, rng: np.random.Generator) -> None:
        self._set_qpos_qvel(self._random_qpos(rng), np.zeros(2))

    def _set_qpos_qvel(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        d = self.data
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        d.ctrl[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, d)

    def _step_sim(self, action: np.ndarray) -> None:
        d = self.data
        d.ctrl[:] = action
        mujoco.mj_step(self.model, d, self.n_substeps)
        mujoco.mj_forward(self.model, d)  # positions of bodies/camera for rendering and state

    def _state_dict(self) -> dict[str, np.ndarray]:
        d = self.data
        return {
            "joint_angles": wrap_angle(d.qpos.copy()),
            "joint_vel": d.qvel.copy(),
            "fingertip_pos": d.geom_xpos[self._finger, :2].copy(),
        }

    def get_state(self) -> np.ndarray:
        """``[qpos (2), qvel (2)]`` as a (4,) float64 array (raw, unwrapped angles)."""
        return np.concatenate([self.data.qpos, self.data.qvel])

    def _set_sim_state(self, state: np.ndarray) -> None:
        self._set_qpos_qvel(state[:2], state[2:4])

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """``joint_error``: the larger wrapped joint-angle difference to the goal state, rad
        (success: both joints within 0.05 rad)."""
        g = np.asarray(goal_state, dtype=np.float64)
        return {"joint_error": float(np.max(np.abs(wrap_angle(self.data.qpos - g[:2]))))}


class ReacherPolicy(Policy):
    """Noisy PD controller that sweeps the joint space.

    Every 20-40 steps a new random target configuration is drawn (shoulder uniform on the
    circle, wrist uniform in its range); the action is
    ``clip(kp * (q* - q) - kd * qdot + ou, -1, 1)`` (shoulder error wrapped) with per-target
    gains and Ornstein-Uhlenbeck noise ``ou`` (theta 0.15, sigma 0.3).
    """

    THETA, SIGMA = 0.15, 0.3

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env, seed)
        self.ou = np.zeros(2)
        self.left = 0
        self.target = np.zeros(2)
        self.kp, self.kd = 2.0, 0.2

    def reset(self) -> None:
        self.ou = np.zeros(2)
        self.left = 0

    def act(self) -> np.ndarray:
        env, rng = self.env, self.rng
        if self.left <= 0:
            self.target = env._random_qpos(rng)
            self.left = int(rng.integers(20, 41))
            self.kp = float(rng.uniform(1.0, 4.0))
            self.kd = float(rng.uniform(0.1, 0.4))
        self.left -= 1
        self.ou += -self.THETA * self.ou + self.SIGMA * rng.standard_normal(2)
        q, qd = env.data.qpos, env.data.qvel
        err = np.array([wrap_angle(self.target[0] - q[0]), self.target[1] - q[1]])  # wrist limited
        a = self.kp * err - self.kd * qd + self.ou
        return np.clip(a, -1.0, 1.0).astype(np.float32)
