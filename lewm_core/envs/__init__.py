"""LeWM environments: Two-Room, Push-T (v0 and the reference v1), Reacher and Cube as RGB frames.

``make(name, resolution)`` builds an environment, ``make_policy(name, env, seed)`` its scripted
data-collection policy (``policy=`` picks another of the env's policies, ``POLICIES[name]``).
Importing this package also registers the gymnasium ids ``lewm/TwoRoom-v0``, ``lewm/PushT-v0``,
``lewm/PushT-v1``, ``lewm/Reacher-v0`` and ``lewm/Cube-v0`` (kwargs: ``resolution``).
"pusht-v1" is the paper's Push-T (the reference task, docs/pusht.md); "pusht" the lab's first
Push-T (v0: other physics, kept with its model as the "before").
Environment modules are imported lazily, so the MuJoCo stack of Reacher and Cube (and OGBench's
assets for Cube) is only loaded when used.

To add an environment, write a module with a :class:`~lewm_core.envs.base.LewmEnv` subclass and
a :class:`~lewm_core.envs.base.Policy` subclass and add one ``_Spec`` to ``_SPECS``; policies
that outgrow the env's module go in a module of their own beside it (Push-T's
``pusht_policies``, Push-T v1's ``pusht_v1_policies``), named by ``policy_module``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

# Must precede any import of mujoco / dm_control (offscreen rendering without a display).
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium  # noqa: E402

from .base import MAX_RESOLUTION, MIN_RESOLUTION, LewmEnv, Policy, check_resolution  # noqa: E402


@dataclass(frozen=True)
class _Spec:
    module: str  # module under lewm_core.envs
    env_class: str
    policy_class: str
    gym_id: str
    title: str  # the task's name for people (the lab, the demo, the model cards)
    other_policies: tuple[tuple[str, str], ...] = ()  # (name, class) besides "default"
    policy_module: str = ""  # module under lewm_core.envs holding the policies; "": `module`


_SPECS: dict[str, _Spec] = {
    "tworoom": _Spec("tworoom", "TwoRoomEnv", "TwoRoomPolicy", "lewm/TwoRoom-v0", "Two-Room"),
    "pusht-v1": _Spec(
        "pusht_v1",
        "PushTV1Env",
        "PushTV1Policy",
        "lewm/PushT-v1",
        "Push-T",
        (("expert", "PushTV1ExpertPolicy"),),
        "pusht_v1_policies",
    ),
    "pusht": _Spec(
        "pusht",
        "PushTEnv",
        "PushTPolicy",
        "lewm/PushT-v0",
        "Push-T v0",
        (("expert", "PushTExpertPolicy"),),
        "pusht_policies",
    ),
    "reacher": _Spec("reacher", "ReacherEnv", "ReacherPolicy", "lewm/Reacher-v0", "Reacher"),
    "cube": _Spec("cube", "CubeEnv", "CubePolicy", "lewm/Cube-v0", "Cube"),
}

ENV_NAMES: tuple[str, ...] = tuple(_SPECS)
ENV_TITLES: dict[str, str] = {name: spec.title for name, spec in _SPECS.items()}
# Data policies of each env: "default" (the one the shipped datasets use) and any others.
POLICIES: dict[str, tuple[str, ...]] = {
    name: ("default", *(other for other, _ in spec.other_policies)) for name, spec in _SPECS.items()
}

__all__ = [
    "ENV_NAMES",
    "ENV_TITLES",
    "MAX_RESOLUTION",
    "POLICIES",
    "MIN_RESOLUTION",
    "LewmEnv",
    "Policy",
    "ends_episodes",
    "env_class",
    "make",
    "make_policy",
    "policy_class",
    "register_envs",
]


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise ValueError(f"unknown env {name!r}; choose one of {', '.join(ENV_NAMES)}")
    return _SPECS[name]


def env_class(name: str) -> type[LewmEnv]:
    """The environment class registered under ``name`` (imports its module)."""
    spec = _spec(name)
    return getattr(importlib.import_module(f"{__name__}.{spec.module}"), spec.env_class)


def make(name: str, resolution: int = 64, **kwargs: Any) -> gymnasium.Env:
    """Build environment ``name`` (one of ``ENV_NAMES``) rendering ``resolution``^2 RGB frames.

    Observations are uint8 arrays of shape ``(resolution, resolution, 3)``; ``resolution`` must
    lie in [32, 224]. Extra kwargs go to the environment class.
    """
    _spec(name)
    check_resolution(resolution)
    return env_class(name)(resolution=resolution, **kwargs)


def policy_class(name: str, policy: str = "default") -> type[Policy]:
    """The class of data policy ``policy`` (one of ``POLICIES[name]``) of env ``name``."""
    spec = _spec(name)
    classes = {"default": spec.policy_class, **dict(spec.other_policies)}
    if policy not in classes:
        raise ValueError(
            f"env {name!r} has no data policy {policy!r}; choose one of {', '.join(classes)}"
        )
    module = importlib.import_module(f"{__name__}.{spec.policy_module or spec.module}")
    return getattr(module, classes[policy])


def ends_episodes(name: str, policy: str = "default") -> bool:
    """Whether data policy ``policy`` of env ``name`` ends its episodes (overrides
    ``Policy.done``), so that its collections have episodes of varying length."""
    return policy_class(name, policy).done is not Policy.done


def make_policy(name: str, env: gymnasium.Env, seed: int, policy: str = "default") -> Policy:
    """The scripted data-collection policy of env ``name`` acting in ``env`` (deterministic);
    ``policy`` names one of ``POLICIES[name]`` (Push-T: "expert", goal-directed pushes)."""
    return policy_class(name, policy)(env, seed)


def register_envs() -> None:
    """Register the gymnasium ids of all environments (idempotent)."""
    for spec in _SPECS.values():
        if spec.gym_id not in gymnasium.registry:
            gymnasium.register(
                id=spec.gym_id,
                entry_point=f"{__name__}.{spec.module}:{spec.env_class}",
                kwargs={"resolution": 64},
            )


register_envs()
