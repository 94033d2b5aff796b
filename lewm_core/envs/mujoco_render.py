"""Offscreen MuJoCo rendering shared by the MuJoCo environments (Reacher, Cube), and their
base class :class:`MujocoEnv` (frames, recolouring, pickling, closing).

:class:`OffscreenRenderer` wraps ``mujoco.Renderer`` (EGL with ``MUJOCO_GL=egl``):

- created lazily on the first render, so building an env costs no GL context;
- usable from any thread: a per-renderer lock serialises renders and the EGL context is released
  after each render (an EGL context can be current in one thread only; Streamlit runs each page
  rerun in a new thread, which would otherwise fail with EGL_BAD_ACCESS);
- closed by ``close()`` (a later render creates a new one) and, for every live renderer, by an
  ``atexit`` hook that runs before MuJoCo's ``eglTerminate`` hook;
- refuses to render in a process forked after its parent rendered with EGL (that would hang):
  RuntimeError; use 'spawn' workers in that case.

Shadows and multisampling are the environments' business (``model.light_castshadow`` and
``model.vis.quality.offsamples``); :func:`prepare_model` switches both off.

Worker processes: create the env in the worker (any start method); an env pickles without its
renderer. A process forked after its parent rendered with EGL cannot render (see above).

Colours are data: an environment names its colour parts and their default RGB
(``color_parts``, ``default_colors``), gives :meth:`MujocoEnv._init_rendering` the geoms of each
part, and says with ``defaults_keep_materials`` whether a part in its default colour keeps the
model's own rgba and material (Reacher: the suite's materials) or is drawn flat in that colour
like any other (Cube). A part in any other colour is drawn flat (no material) in it.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import atexit  # noqa: E402
import threading  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Iterable, Mapping  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from .base import LewmEnv  # noqa: E402

_LIVE: weakref.WeakSet = weakref.WeakSet()
_GL_PID: int | None = None  # process that first created an EGL renderer


def release_gl_context() -> None:
    """Detach the calling thread from its current EGL context (no-op for other GL back-ends).

    ``mujoco.Renderer`` makes its context current on every render and leaves it bound; without
    this release a render from another thread fails with EGL_BAD_ACCESS.
    """
    if os.environ.get("MUJOCO_GL") != "egl":
        return
    from mujoco import egl

    if egl.EGL_DISPLAY is not None:
        e = egl.EGL
        e.eglMakeCurrent(egl.EGL_DISPLAY, e.EGL_NO_SURFACE, e.EGL_NO_SURFACE, e.EGL_NO_CONTEXT)


def _close_all() -> None:
    """Free GL contexts before interpreter teardown (avoids EGL errors in destructors).

    Registered with ``atexit`` after the first renderer exists, so that it runs before the
    ``eglTerminate`` hook MuJoCo registers when it opens the display (atexit runs LIFO).
    """
    for renderer in list(_LIVE):
        renderer.close()


def prepare_model(model: mujoco.MjModel, resolution: int) -> None:
    """Cheap offscreen rendering: no shadows, no multisampling, a framebuffer >= resolution."""
    model.light_castshadow[:] = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, resolution)
    model.vis.global_.offheight = max(model.vis.global_.offheight, resolution)


class OffscreenRenderer:
    """Square RGB frames of ``model`` seen from ``camera``; thread-safe, created lazily.

    ``scene_option`` (a ``mujoco.MjvOption``) selects e.g. the visible geom groups; ``name`` is
    the environment's name used in error messages.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        resolution: int,
        camera: int | str | mujoco.MjvCamera,
        scene_option: mujoco.MjvOption | None = None,
        name: str = "this environment",
    ) -> None:
        self.model = model
        self.resolution = int(resolution)
        self.camera = camera
        self.scene_option = scene_option
        self.name = name
        self._renderer: mujoco.Renderer | None = None
        self._lock = threading.Lock()  # one GL context, any thread, one at a time
        _LIVE.add(self)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """The frame of ``data`` as a ``(resolution, resolution, 3)`` uint8 array (any thread)."""
        with self._lock:
            if self._renderer is None:
                global _GL_PID
                if _GL_PID is not None and _GL_PID != os.getpid():
                    raise RuntimeError(
                        f"{self.name} cannot render in a process forked after its parent "
                        "rendered with EGL (it would hang); use 'spawn' workers or render only "
                        "in the workers"
                    )
                first = _GL_PID is None
                _GL_PID = os.getpid()
                r = self.resolution
                self._renderer = mujoco.Renderer(self.model, r, r)
                if first:
                    atexit.register(_close_all)
            try:
                self._renderer.update_scene(
                    data, camera=self.camera, scene_option=self.scene_option
                )
                return self._renderer.render()
            finally:
                release_gl_context()

    def close(self) -> None:
        """Release the GL context (a later render creates a new one)."""
        with self._lock:
            if self._renderer is not None:
                try:
                    self._renderer.close()
                except Exception:  # noqa: BLE001 - GL teardown errors at exit are harmless
                    pass
                self._renderer = None


class MujocoEnv(LewmEnv):
    """A LewmEnv on a MuJoCo ``self.model`` / ``self.data``, drawn by an
    :class:`OffscreenRenderer` and recoloured part by part.

    A subclass builds its model and data, then calls :meth:`_init_rendering` once its geoms look
    as they should by default. Pickles as (resolution, simulator state, colours): the MuJoCo
    model, data and GL renderer are rebuilt on unpickling (data-collection workers get a fresh
    env in the same state).
    """

    # True: a part in its default colour keeps the model's own rgba and material.
    defaults_keep_materials: ClassVar[bool] = False
    model: mujoco.MjModel
    data: mujoco.MjData
    _renderer: OffscreenRenderer

    def _init_rendering(
        self,
        camera: int | str | mujoco.MjvCamera,
        part_geoms: Mapping[str, Iterable[int]],
        scene_option: mujoco.MjvOption | None = None,
        name: str = "this environment",
    ) -> None:
        """Make the renderer, note the geoms of each colour part (one of ``color_parts`` each)
        and the model's own geom colours and materials, and apply ``self.colors``."""
        if set(part_geoms) != set(self.color_parts):
            raise ValueError(
                f"part_geoms names {sorted(part_geoms)} but the colour parts are "
                f"{sorted(self.color_parts)}"
            )
        m = self.model
        self._part_geoms = {part: tuple(int(g) for g in ids) for part, ids in part_geoms.items()}
        self._model_rgba = m.geom_rgba.copy()
        self._model_matid = m.geom_matid.copy()
        self._renderer = OffscreenRenderer(m, self.resolution, camera, scene_option, name=name)
        self._apply_colors()

    def _render_frame(self) -> np.ndarray:
        """Render from any thread: the GL context is bound for this call only."""
        return self._renderer.render(self.data)

    def _apply_colors(self) -> None:
        m = self.model
        m.geom_rgba[:] = self._model_rgba
        m.geom_matid[:] = self._model_matid
        for part, rgb in self.colors.items():
            if self.defaults_keep_materials and rgb == self.default_colors[part]:
                continue
            for g in self._part_geoms[part]:
                m.geom_matid[g] = -1
                m.geom_rgba[g] = (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, 1.0)

    def __getstate__(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "state": self.get_state(), "colors": self.colors}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__init__(d["resolution"])
        self.set_state(d["state"])
        for part, rgb in d["colors"].items():
            self.set_color(part, rgb)

    def close(self) -> None:
        """Release the offscreen GL renderer (a later render creates a new one)."""
        self._renderer.close()
