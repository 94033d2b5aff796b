"""Cube: OGBench's single-cube pick-and-place (UR5e arm + Robotiq 2F-85 gripper) on MuJoCo.

Physics: the scene of ``ogbench==1.2.2``'s ``cube-single-v0`` built at runtime from the installed
package's MJCF assets by OGBench's own ``CubeEnv.build_mjcf_model`` (floor, invisible walls that
only stop the cube, UR5e with its PD position actuators and OGBench's modified gains, Robotiq
gripper with its tendon/equality linkage, a 4 cm free cube of density 1240), MuJoCo timestep
0.002 s, 25 physics steps per env step (OGBench's control timestep 0.05 s). Nothing physical is
changed: every body, joint, collision geom, actuator and option is OGBench's (and the solver warm
start is kept and saved in the state, so ``set_state`` is exact).

Action (5, in [-1, 1]), OGBench's relative end-effector control: scaled by
(0.05 m, 0.05 m, 0.05 m, 0.3 rad, 1.0) into a target pinch-site position (current + delta,
clipped to OGBench's workspace box), a target yaw (current + delta, gripper pointing down) and a
target gripper closure (current + delta, clipped to [0, 1], actuator command 255 * closure); the
target pose is turned into arm joint targets by OGBench's differential-IK controller (the
package's ``DiffIKController`` on the bare UR5e model). As in OGBench, the controller reads the
pinch-site pose computed inside the last physics substep of the previous step (2 ms older than
the final state); that reading is part of the simulator state, and the action is scaled in
float32 as OGBench does with its float32 actions, so given the same seed and float32 actions a
trajectory is bit-identical to OGBench's own ``CubeEnv(env_type="single",
mode="data_collection")`` (tested).

Reset (OGBench's 'data_collection' initialisation): the arm at a uniformly random pinch position
in x [0.25, 0.6], y [-0.35, 0.35], z [0.2, 0.35] with a random yaw (IK from the home pose),
gripper open, the cube at a uniformly random x [0.3, 0.55], y [-0.3, 0.3] on the table with a
random yaw. ``is_success``: cube centre within 0.04 m of the goal state's cube centre (OGBench's
rule). ``teleport``: the cube jumps to a random place on the table at least 0.1 m away.

Simulator state (``get_state``, 65 values): qpos (21: 6 arm joints, 8 gripper joints, cube
position xyz and quaternion wxyz), qvel (20), MuJoCo's ``qacc_warmstart`` (20) and the
controller's pinch-site reading (position 3, yaw 1).
``info["state"]``: ``ee_pos`` (3, pinch site, m), ``ee_yaw`` (1, rad), ``gripper_opening`` (1,
OGBench's name: driver joint / 0.8 in [0, 1], 0 = open, 1 = closed), ``cube_pos`` (3, m),
``cube_quat`` (4, wxyz).

Rendering (the visual side only): OGBench's 185k-triangle visual meshes and its gripper's
collision meshes are hidden; the arm is drawn with its own collision capsules and cylinders, the
gripper with one box per part (the bounding box of the part's mesh) plus its collision finger
pads, the cube in its OGBench red; no shadows, no multisampling; a fixed camera in front of the
table looking down at 70 degrees that shows the whole cube area (OGBench's ``front_pixels``
camera cuts off its corners). The goal marker is hidden (goals are given as images). Colour
parts: ``cube``, ``arm`` and ``gripper``, always drawn flat in their colours. Rendering goes
through :mod:`lewm_core.envs.mujoco_render` (any thread, lazy; its notes on worker processes
apply).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import copy  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from .base import GOAL_MET, Policy, wrap_angle  # noqa: E402
from .mujoco_render import MujocoEnv, prepare_model  # noqa: E402

SUCCESS_DIST = 0.04
PHYSICS_TIMESTEP = 0.002  # OGBench ManipSpaceEnv defaults
CONTROL_TIMESTEP = 0.05
ACTION_SCALE = np.array([0.05, 0.05, 0.05, 0.3, 1.0])
HOME_QPOS = np.array([-math.pi / 2, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])
WORKSPACE = np.array([[0.25, -0.35, 0.02], [0.6, 0.35, 0.35]])
ARM_SAMPLING = np.array([[0.25, -0.35, 0.20], [0.6, 0.35, 0.35]])
CUBE_SAMPLING = np.array([[0.3, -0.3], [0.55, 0.3]])
CUBE_Z = 0.02  # cube half size: resting on the floor
LIFTED_M = 0.01  # the cube counts as lifted (held) when its centre is this far above resting
TELEPORT_MIN_DIST = 0.1
# Fixed camera (free MuJoCo camera): from the front, looking down 70 degrees at the middle of the
# cube area; the whole cube/target area x [0.3, 0.55], y [-0.3, 0.3] and the gripper are in view.
CAMERA_LOOKAT = (0.43, 0.0, 0.06)
CAMERA_DISTANCE = 0.8
CAMERA_AZIMUTH = 180.0
CAMERA_ELEVATION = -70.0

CUBE_RGB = (245, 66, 84)  # OGBench's red (0.96, 0.26, 0.33)
ARM_RGB = (200, 200, 205)
GRIPPER_RGB = (120, 60, 170)  # OGBench's pixel tasks colour the gripper purple

_ARM = "ur5e/"
_GRIPPER = "ur5e/robotiq/"
_ARM_JOINTS = tuple(
    _ARM + j
    for j in (
        "shoulder_pan_joint",
        "shoulder_lift_joint",
        "elbow_joint",
        "wrist_1_joint",
        "wrist_2_joint",
        "wrist_3_joint",
    )
)
_ARM_ACTUATORS = tuple(
    _ARM + a for a in ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
)
_VIS_GROUP = 1  # drawn; OGBench's visual meshes (2) and collision geoms (3) are hidden

_BUILD_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


def _lie() -> Any:
    from ogbench.manipspace import lie

    return lie


def _build() -> dict[str, Any]:
    """Compile OGBench's cube-single scene (plus light visual geoms) and the IK model, once."""
    with _BUILD_LOCK:
        if _CACHE:
            return _CACHE
        from ogbench.manipspace import mjcf_utils
        from ogbench.manipspace.envs.cube_env import CubeEnv as OgbenchCubeEnv

        og = OgbenchCubeEnv(env_type="single", mode="data_collection", ob_type="states")
        root = og.build_mjcf_model()
        plain = mujoco.MjModel.from_xml_string(
            mjcf_utils.to_string(root), mjcf_utils.get_assets(root)
        )
        # One massless, non-colliding box per gripper mesh part: the mesh's bounding box.
        for g in range(plain.ngeom):
            if plain.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH or plain.geom_group[g] != 3:
                continue
            body = mujoco.mj_id2name(plain, mujoco.mjtObj.mjOBJ_BODY, plain.geom_bodyid[g])
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, plain.geom_quat[g])
            centre, half = plain.geom_aabb[g, :3], plain.geom_aabb[g, 3:]
            root.find("body", body).add(
                "geom",
                name=f"lewm_box_{body.split('/')[-1]}",
                type="box",
                pos=plain.geom_pos[g] + rot.reshape(3, 3) @ centre,
                quat=plain.geom_quat[g],
                size=half,
                mass=0,
                contype=0,
                conaffinity=0,
                group=_VIS_GROUP,
            )
        model = mujoco.MjModel.from_xml_string(
            mjcf_utils.to_string(root), mjcf_utils.get_assets(root)
        )
        _CACHE.update(model=model, ik_model=og._ik._model)
        return _CACHE


def _yaw(xmat: np.ndarray) -> float:
    """Yaw (rad) of a rotation matrix given as 9 values, OGBench's convention."""
    return float(_lie().SO3.from_matrix(np.asarray(xmat).reshape(3, 3)).compute_yaw_radians())


class CubeEnv(MujocoEnv):
    """Cube; obs ``(r, r, 3)`` uint8, action ``(5,)`` in [-1, 1] (dx, dy, dz, dyaw, dgrip)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    action_dim: ClassVar[int] = 5
    state_dim: ClassVar[int] = 65
    state_spec: ClassVar[dict[str, int]] = {
        "ee_pos": 3,
        "ee_yaw": 1,
        "gripper_opening": 1,
        "cube_pos": 3,
        "cube_quat": 4,
    }
    angle_quantities: ClassVar[tuple[str, ...]] = ("ee_yaw",)
    success_tolerances: ClassVar[dict[str, float]] = {"cube_dist": SUCCESS_DIST}
    goal_kinds: ClassVar[dict[str, str]] = {
        **GOAL_MET,
        "carry": "the cube is in the gripper at the start and must be carried to the goal",
        "pick": "the cube rests on the floor and must be picked up or pushed to the goal",
    }
    color_parts: ClassVar[tuple[str, ...]] = ("cube", "arm", "gripper")
    default_colors: ClassVar[dict[str, tuple[int, int, int]]] = {
        "cube": CUBE_RGB,
        "arm": ARM_RGB,
        "gripper": GRIPPER_RGB,
    }

    def __init__(self, resolution: int = 64, render_mode: str | None = "rgb_array") -> None:
        super().__init__(resolution, render_mode)
        from ogbench.manipspace.controllers import DiffIKController

        built = _build()
        m = copy.deepcopy(built["model"])  # own copy: colours are per env
        m.opt.timestep = PHYSICS_TIMESTEP
        prepare_model(m, self.resolution)
        self.model, self.data = m, mujoco.MjData(m)
        self.n_substeps = round(CONTROL_TIMESTEP / PHYSICS_TIMESTEP)

        def jid(name: str) -> int:
            return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)

        def aid(name: str) -> int:
            return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, name)

        self._arm_qadr = np.array([m.jnt_qposadr[jid(j)] for j in _ARM_JOINTS])
        self._arm_act = np.array([aid(a) for a in _ARM_ACTUATORS])
        self._grip_act = aid(_GRIPPER + "fingers_actuator")
        self._driver_qadr = m.jnt_qposadr[jid(_GRIPPER + "right_driver_joint")]
        cube_joint = jid("object_joint_0")
        self._cube_qadr = m.jnt_qposadr[cube_joint]
        self._cube_vadr = m.jnt_dofadr[cube_joint]
        self._pinch = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, _GRIPPER + "pinch")
        attach = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, _ARM + "attachment_site")

        # OGBench's PD gains of the arm (ManipSpaceEnv.post_compilation).
        kp = np.array([4500, 4500, 4500, 2000, 2000, 500], dtype=np.float64)
        m.actuator_gainprm[self._arm_act, 0] = kp
        m.actuator_gainprm[self._arm_act, 2] = -kp / 10
        m.actuator_biasprm[self._arm_act, 1] = -kp

        # Visual side: draw the arm's collision primitives and the finger pads, hide the rest.
        geom_body = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in m.geom_bodyid]
        arm, grip = [], []
        for g in range(m.ngeom):
            body = geom_body[g] or ""
            primitive = m.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH
            if body.startswith(_GRIPPER):
                if m.geom_group[g] == _VIS_GROUP or (primitive and m.geom_group[g] == 3):
                    m.geom_group[g] = _VIS_GROUP
                    grip.append(g)
            elif body.startswith(_ARM) and primitive and m.geom_group[g] == 3:
                m.geom_group[g] = _VIS_GROUP
                arm.append(g)
        cube_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "object_0")
        target = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "target_object_0")
        m.geom_rgba[target, 3] = 0.0  # goals are images: hide OGBench's goal marker
        option = mujoco.MjvOption()
        option.geomgroup[:] = 0
        option.geomgroup[_VIS_GROUP] = 1
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = CAMERA_LOOKAT
        cam.distance, cam.azimuth, cam.elevation = CAMERA_DISTANCE, CAMERA_AZIMUTH, CAMERA_ELEVATION
        parts = {"cube": [cube_geom], "arm": arm, "gripper": grip}
        self._init_rendering(cam, parts, option, name="Cube")

        # Differential IK on the bare UR5e (as OGBench) and the fixed pinch -> flange transform.
        self._ik = DiffIKController(model=built["ik_model"], sites=["attachment_site"])
        lie = _lie()
        mujoco.mj_forward(m, self.data)

        def pose(site: int) -> Any:
            rot = lie.SO3.from_matrix(self.data.site_xmat[site].reshape(3, 3))
            return lie.SE3.from_rotation_and_translation(rot, self.data.site_xpos[site].copy())

        self._T_pa = pose(self._pinch).inverse() @ pose(attach)
        self._down = lie.SO3(np.array([0.0, 1.0, 0.0, 0.0]))
        self._target_ee = np.zeros(3)  # last commanded pinch position (for inspection)
        self._read_controller_input()

    # ----------------------------------------------------------------- control
    def _arm_qpos_for(self, pos: np.ndarray, yaw: float, start: np.ndarray) -> np.ndarray:
        """Arm joint angles putting the pinch site at ``pos`` with ``yaw``, gripper down (IK)."""
        lie = _lie()
        rot = lie.SO3.from_z_radians(yaw) @ self._down
        T_wa = lie.SE3.from_rotation_and_translation(rot, np.asarray(pos, float)) @ self._T_pa
        return self._ik.solve(pos=T_wa.translation(), quat=T_wa.rotation().wxyz, curr_qpos=start)

    def _set_control(self, action: np.ndarray) -> None:
        """OGBench's ManipSpaceEnv.set_control: relative end-effector targets -> joint targets."""
        d = self.data
        lie = _lie()
        # OGBench's arithmetic on a float32 action (its policies' dtype), so that trajectories
        # agree with OGBench's to the last bit
        a = 0.5 * (action.astype(np.float32) + 1) * (2.0 * ACTION_SCALE) - ACTION_SCALE
        target = np.clip(self._ctrl_ee_pos + a[:3], WORKSPACE[0], WORKSPACE[1])
        rot = lie.SO3.from_z_radians(a[3]) @ lie.SO3.from_z_radians(self._ctrl_ee_yaw)
        yaw = float(np.clip((rot @ self._down.inverse()).compute_yaw_radians(), -math.pi, math.pi))
        closure = np.clip(self._gripper_opening() + a[4], 0.0, 1.0)
        self._target_ee = target
        d.ctrl[self._arm_act] = self._arm_qpos_for(target, yaw, d.qpos[self._arm_qadr])
        d.ctrl[self._grip_act] = 255.0 * closure

    def _read_controller_input(self) -> None:
        """Latch the pinch-site pose of the current kinematics as the controller's next input."""
        self._ctrl_ee_pos = self.data.site_xpos[self._pinch].copy()
        self._ctrl_ee_yaw = _yaw(self.data.site_xmat[self._pinch])

    def _gripper_opening(self) -> float:
        return float(np.clip(self.data.qpos[self._driver_qadr] / 0.8, 0.0, 1.0))

    # ----------------------------------------------------------------- hooks
    def _random_cube_xy(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(CUBE_SAMPLING[0], CUBE_SAMPLING[1])

    def _place_cube(self, xy: np.ndarray, yaw: float) -> None:
        d = self.data
        q = self._cube_qadr
        d.qpos[q : q + 3] = (xy[0], xy[1], CUBE_Z)
        d.qpos[q + 3 : q + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        d.qvel[self._cube_vadr : self._cube_vadr + 6] = 0.0

    def _reset_sim(self) -> None:
        m, d, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(m, d)
        eff_pos = rng.uniform(ARM_SAMPLING[0], ARM_SAMPLING[1])
        yaw = rng.uniform(-math.pi, math.pi)
        d.qpos[self._arm_qadr] = self._arm_qpos_for(eff_pos, yaw, HOME_QPOS)
        self._place_cube(self._random_cube_xy(rng), rng.uniform(0.0, 2.0 * math.pi))
        mujoco.mj_forward(m, d)
        self._read_controller_input()

    def _teleport(self, rng: np.random.Generator) -> None:
        here = self.data.qpos[self._cube_qadr : self._cube_qadr + 2].copy()
        xy = self._random_cube_xy(rng)
        for _ in range(100):
            if np.linalg.norm(xy - here) >= TELEPORT_MIN_DIST:
                break
            xy = self._random_cube_xy(rng)
        self._place_cube(xy, rng.uniform(0.0, 2.0 * math.pi))
        mujoco.mj_forward(self.model, self.data)

    def _step_sim(self, action: np.ndarray) -> None:
        self._set_control(action)
        mujoco.mj_step(self.model, self.data, self.n_substeps)
        # mj_step leaves the kinematics of the last substep's start: OGBench's controller input
        self._read_controller_input()
        mujoco.mj_forward(self.model, self.data)  # current kinematics for render and state

    def _state_dict(self) -> dict[str, np.ndarray]:
        d, q = self.data, self._cube_qadr
        return {
            "ee_pos": d.site_xpos[self._pinch].copy(),
            "ee_yaw": np.array([_yaw(d.site_xmat[self._pinch])]),
            "gripper_opening": np.array([self._gripper_opening()]),
            "cube_pos": d.qpos[q : q + 3].copy(),
            "cube_quat": d.qpos[q + 3 : q + 7].copy(),
        }

    def get_state(self) -> np.ndarray:
        """``[qpos (21), qvel (20), qacc_warmstart (20), controller input (4)]``, (65,) float64."""
        d = self.data
        ctrl_in = [*self._ctrl_ee_pos, self._ctrl_ee_yaw]
        return np.concatenate([d.qpos, d.qvel, d.qacc_warmstart, ctrl_in])

    def _set_sim_state(self, state: np.ndarray) -> None:
        m, d = self.model, self.data
        d.qpos[:] = state[: m.nq]
        d.qvel[:] = state[m.nq : m.nq + m.nv]
        n = m.nq + 2 * m.nv
        d.qacc_warmstart[:] = state[m.nq + m.nv : n]
        d.ctrl[:] = 0.0
        mujoco.mj_forward(m, d)
        self._ctrl_ee_pos = state[n : n + 3].copy()
        self._ctrl_ee_yaw = float(state[n + 3])

    def cube_pos_of(self, state: np.ndarray) -> np.ndarray:
        """The cube centre (3,) stored in a simulator state from ``get_state``."""
        q = self._cube_qadr
        return np.asarray(state, dtype=np.float64)[q : q + 3]

    def goal_errors(self, goal_state: np.ndarray) -> dict[str, float]:
        """``cube_dist``: metres from the cube centre to the goal state's cube centre."""
        q = self._cube_qadr
        return {
            "cube_dist": float(
                np.linalg.norm(self.data.qpos[q : q + 3] - self.cube_pos_of(goal_state))
            )
        }

    def _move_kind(self, start_state: np.ndarray, goal_state: np.ndarray) -> str:
        return "carry" if self.cube_pos_of(start_state)[2] > CUBE_Z + LIFTED_M else "pick"

    def is_success(self, goal_state: np.ndarray) -> bool:
        """The cube centre within 0.04 m of the goal state's cube centre (OGBench's rule,
        which counts exactly 0.04 m as success)."""
        return bool(self.goal_errors(goal_state)["cube_dist"] <= SUCCESS_DIST)


class CubePolicy(Policy):
    """Scripted noisy pick-and-place, repeated until the episode ends.

    Phases (privileged state from the env): open the gripper and move above the cube while
    turning the gripper to the cube's yaw (modulo 90 degrees), descend around the cube, close,
    lift to a random carrying height, carry above a random target on the table, descend, open,
    rise, then start over with a new target. Actions are proportional to the remaining error
    (random per-episode gain) plus Gaussian noise (random per-episode scale); the target is drawn
    uniformly in OGBench's target area (x [0.3, 0.55], y [-0.3, 0.3]). If the cube slips out of
    the gripper while carrying, the policy goes back to reaching it.
    """

    REACH, DESCEND, GRASP, LIFT, CARRY, LOWER, RELEASE, RISE = range(8)

    def __init__(self, env: Any, seed: int) -> None:
        super().__init__(env, seed)
        self.reset()

    def reset(self) -> None:
        rng = self.rng
        self.phase = self.REACH
        self.timer = 0
        self.placed: list[float] = []  # cube-to-target distance at each release (m)
        self.gain = float(rng.uniform(0.8, 1.4))
        self.noise = float(rng.uniform(0.05, 0.2))
        self._new_target()

    def _new_target(self) -> None:
        rng = self.rng
        self.target = np.array([*rng.uniform(CUBE_SAMPLING[0], CUBE_SAMPLING[1]), CUBE_Z])
        self.carry_z = float(rng.uniform(0.12, 0.25))
        self.hover = float(rng.uniform(0.08, 0.14))

    def _goto(self, ee: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.clip(self.gain * (goal - ee) / ACTION_SCALE[0], -1.0, 1.0)

    def act(self) -> np.ndarray:
        env, rng = self.env, self.rng
        st = env._state_dict()
        ee, cube = st["ee_pos"], st["cube_pos"]
        ee_yaw, grip = float(st["ee_yaw"][0]), float(st["gripper_opening"][0])
        cube_yaw = _yaw_of_quat(st["cube_quat"])
        # the nearest gripper yaw aligned with the cube's faces (the cube is symmetric by 90 deg)
        yaw_err = wrap_angle(4.0 * (cube_yaw - ee_yaw)) / 4.0
        flat = np.linalg.norm(ee[:2] - cube[:2])
        held = grip > 0.3 and np.linalg.norm(ee - cube) < 0.03
        self.timer += 1
        pos = np.zeros(3)
        dyaw, dgrip = 0.0, -1.0

        if self.phase == self.REACH:
            pos = self._goto(ee, np.array([*cube[:2], cube[2] + self.hover]))
            dyaw = yaw_err
            if flat < 0.012 and abs(yaw_err) < 0.1 and abs(ee[2] - cube[2] - self.hover) < 0.03:
                self._enter(self.DESCEND)
        elif self.phase == self.DESCEND:
            pos = self._goto(ee, np.array([*cube[:2], cube[2] - 0.005]))
            dyaw = yaw_err
            if ee[2] - cube[2] < 0.01 or self.timer > 20:
                self._enter(self.GRASP if flat < 0.02 else self.REACH)
        elif self.phase == self.GRASP:
            dgrip = 1.0
            if self.timer > 6:
                self._enter(self.LIFT)
        elif self.phase == self.LIFT:
            dgrip = 1.0
            pos = self._goto(ee, np.array([*ee[:2], self.carry_z]))
            if not held and ee[2] - cube[2] > 0.03:
                self._enter(self.REACH)
            elif ee[2] > self.carry_z - 0.02:
                self._enter(self.CARRY)
        elif self.phase == self.CARRY:
            dgrip = 1.0
            pos = self._goto(ee, np.array([*self.target[:2], self.carry_z]))
            if not held:
                self._enter(self.REACH)
            elif np.linalg.norm(ee[:2] - self.target[:2]) < 0.01:
                self._enter(self.LOWER)
        elif self.phase == self.LOWER:
            dgrip = 1.0
            pos = self._goto(ee, np.array([*self.target[:2], self.target[2] + 0.002]))
            if not held:
                self._enter(self.REACH)
            elif cube[2] - self.target[2] < 0.006 or self.timer > 25:
                self._enter(self.RELEASE)
        elif self.phase == self.RELEASE:
            dgrip = -1.0
            if self.timer > 4 and grip < 0.1:
                self._enter(self.RISE)
        elif self.phase == self.RISE:
            if self.timer == 1:
                self.placed.append(float(np.linalg.norm(cube - self.target)))
            pos = self._goto(ee, np.array([*ee[:2], cube[2] + self.hover + 0.05]))
            if self.timer > 6:
                self._new_target()
                self._enter(self.REACH)

        a = np.array([*pos, np.clip(dyaw / ACTION_SCALE[3], -1.0, 1.0), dgrip])
        a[:4] += self.noise * rng.standard_normal(4)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def _enter(self, phase: int) -> None:
        self.phase = phase
        self.timer = 0


def _yaw_of_quat(wxyz: np.ndarray) -> float:
    w, x, y, z = wxyz
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
