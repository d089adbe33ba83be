"""Offscreen rendering: a headless OpenGL backend, a camera that follows a robot, and frames.

MuJoCo picks its OpenGL backend from MUJOCO_GL when `mujoco` is first imported, long before
legkit knows it will render. So legkit chooses the backend itself, the first time it renders:
a user-set MUJOCO_GL is used as given; otherwise EGL, then OSMesa (both headless, both work on
Mesa's software rasterizer on a CPU). Each candidate is tried in a short child process, because
a backend that fails half-way (EGL with no usable driver) leaves PyOpenGL bound to it for the
rest of the process. The winner's GL context class is then loaded here, and MUJOCO_GL is set to
it so that child processes agree.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

import mujoco
import numpy as np

from legkit import LegkitError

HEADLESS_BACKENDS = ("egl", "osmesa")
"""Tried in this order on Linux when MUJOCO_GL is not set."""
INSTALL_HINT = ("install Mesa's headless OpenGL: on Debian/Ubuntu run (as root) 'apt-get install libegl1 "
                "libegl-mesa0 libgl1-mesa-dri libosmesa6', or 'make setup' in a legkit checkout; "
                "or set MUJOCO_GL=egl|osmesa|glfw to the backend you have")

# A child process that creates a GL context with `backend` and renders one tiny frame.
_PROBE = """
import os, sys
os.environ["MUJOCO_GL"] = sys.argv[1]
import mujoco
from legkit.media.render import _context_class
ctx = _context_class(sys.argv[1])(32, 32)
ctx.make_current()
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)
con.free()
ctx.free()
"""


def _context_class(backend: str) -> type:
    """MuJoCo's GLContext class for `backend` (egl, osmesa, glfw, cgl, wgl)."""
    if backend in ("glfw", "", "enable", "enabled", "on", "true", "1"):
        backend = "glfw"
    return importlib.import_module(f"mujoco.{backend}").GLContext


def _probe(backend: str) -> str | None:
    """None if `backend` renders in a child process, else a short reason."""
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)  # each mujoco backend sets the PyOpenGL platform it needs
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, backend], env=env, capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired:
        return "timed out creating a context"
    if out.returncode == 0:
        return None
    lines = [ln.strip() for ln in out.stderr.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else f"exit code {out.returncode}"
    return reason if len(reason) <= 160 else reason[:157] + "..."


@functools.lru_cache(maxsize=None)
def gl_backend() -> str:
    """The OpenGL backend legkit renders with (cached); a LegkitError saying how to get one if none works."""
    user = os.environ.get("MUJOCO_GL", "").strip().lower()
    if user in ("disable", "disabled", "off", "false", "0"):
        raise LegkitError(f"rendering is disabled by MUJOCO_GL={user}; unset it or set MUJOCO_GL=egl or osmesa")
    if user:
        candidates = (user,)
    elif platform.system() == "Linux":
        candidates = HEADLESS_BACKENDS
    else:
        candidates = ("glfw",)  # macOS and Windows: MuJoCo's default windowing context
    failures = []
    for backend in candidates:
        reason = _probe(backend)
        if reason is None:
            os.environ["MUJOCO_GL"] = backend
            return backend
        failures.append(f"{backend}: {reason}")
    given = " (from MUJOCO_GL)" if user else ""
    raise LegkitError(f"no OpenGL for offscreen rendering{given} ({'; '.join(failures)}); {INSTALL_HINT}")


# -- camera --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraConfig:
    """Where the video camera looks from; angles are relative to the robot's heading at reset."""

    mode: str = "follow"
    """"follow": the camera glides after the robot; "fixed": it stays put, looking at the middle of the
    path that the command asks for over the video, from far enough to see all of it."""
    distance: float = 0.0
    """Metres from the point looked at (0: from the robot's size and, when fixed, the path's length)."""
    azimuth: float = 60.0
    """Degrees around the vertical from the robot's initial heading (90: from its left side)."""
    elevation: float = -28.0
    """Degrees from the horizontal; negative looks down (-28 keeps the horizon just out of view)."""
    smoothing_s: float = 0.4
    """Time constant of the follow camera (s): larger is smoother and lags more."""


def robot_extent(model: mujoco.MjModel) -> float:
    """The robot's size for framing (m): the largest side of its geoms' bounding box at qpos0.

    Unlike model.stat.extent, it leaves out geoms fixed to the world (gymnasium's humanoid bounds its
    ground at 20 m, which would put the camera tens of metres away) and mocap bodies (an arena's obstacles).
    """
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    robot = (model.geom_bodyid != 0) & (model.body_mocapid[model.geom_bodyid] < 0)
    pos, r = data.geom_xpos[robot], model.geom_rbound[robot][:, None]
    return float(np.max((pos + r).max(axis=0) - (pos - r).min(axis=0)))


CAMERA_MODES = ("follow", "fixed")
FIXED_SIDE = CameraConfig(mode="fixed", azimuth=90.0, elevation=-24.0)
"""A still camera at the robot's right, square to its initial heading: forward is left to right."""


class Camera:
    """An mjvCamera that follows (or watches) one robot, smoothed with a first-order low-pass."""

    def __init__(self, cfg: CameraConfig, extent: float):
        if cfg.mode not in CAMERA_MODES:
            raise LegkitError(f"unknown camera mode '{cfg.mode}'; valid: {', '.join(CAMERA_MODES)}")
        self.cfg = cfg
        self.cam = mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.extent = extent
        self.cam.distance = cfg.distance or 3.5 * extent
        self.cam.elevation = cfg.elevation
        self._lookat = np.zeros(3)

    def reset(self, base_pos: np.ndarray, yaw: float, travel: float = 0.0) -> None:
        """Jump to a robot just reset at `base_pos` with heading `yaw` (rad), expected to walk `travel` m
        straight ahead during the video (used by the fixed camera to frame the whole walk)."""
        self.cam.azimuth = math.degrees(yaw) + self.cfg.azimuth
        self._lookat[:] = base_pos
        if self.cfg.mode == "fixed":
            self._lookat += np.array([math.cos(yaw), math.sin(yaw), 0.0]) * travel / 2
            # 1.2 x the path fits a 4:3 frame (45 degree vertical field of view) with a margin
            self.cam.distance = self.cfg.distance or max(7.0 * self.extent, 1.2 * abs(travel))
        self.cam.lookat[:] = self._lookat

    def update(self, base_pos: np.ndarray, dt: float) -> None:
        """Move `dt` seconds towards the robot at `base_pos` (the fixed camera stays)."""
        if self.cfg.mode == "fixed":
            return
        alpha = 1.0 - math.exp(-dt / self.cfg.smoothing_s) if self.cfg.smoothing_s > 0 else 1.0
        self._lookat += alpha * (base_pos - self._lookat)
        self.cam.lookat[:] = self._lookat


# -- renderer ------------------------------------------------------------------------------------

QUALITIES = ("high", "fast")
_SUN_DIR = np.array([0.3, 0.2, -1.0]) / np.linalg.norm([0.3, 0.2, -1.0])


class Renderer:
    """Renders RGB frames of one model offscreen, on its own copy of the model's visual settings.

    `quality` "high" multisamples (4x) and draws floor reflections; "fast" (for clips during
    training) does neither and costs about a quarter as much on a CPU.
    """

    def __init__(self, model: mujoco.MjModel, width: int, height: int, quality: str = "high"):
        if quality not in QUALITIES:
            raise LegkitError(f"unknown render quality '{quality}'; valid: {', '.join(QUALITIES)}")
        ctx_cls = _context_class(gl_backend())
        self.model = copy.copy(model)  # visual settings below must not leak into the caller's model
        vis = self.model.vis
        vis.global_.offwidth = max(vis.global_.offwidth, width)
        vis.global_.offheight = max(vis.global_.offheight, height)
        vis.quality.offsamples = 4 if quality == "high" else 0
        vis.quality.shadowsize = 2048
        self.width, self.height, self.quality = width, height, quality
        self._gl = ctx_cls(width, height)
        self._gl.make_current()
        self._con = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self.scene = mujoco.MjvScene(self.model, maxgeom=2000)
        self.option = mujoco.MjvOption()
        self._pert = mujoco.MjvPerturb()
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._rgb = np.empty((height, width, 3), dtype=np.uint8)
        self.data = mujoco.MjData(self.model)
        fast = quality == "fast"
        self.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = not fast
        self.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = not fast

    def set_state(self, state: np.ndarray, mocap: np.ndarray | None = None) -> None:
        """Load one robot's mjSTATE_FULLPHYSICS row (as in BatchSim.state), and its mocap poses (BatchSim.mocap:
        obstacles) when given, and compute its kinematics."""
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        if mocap is not None:
            mujoco.mj_setState(self.model, self.data, mocap,
                               mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
        mujoco.mj_forward(self.model, self.data)

    def render(self, camera: mujoco.MjvCamera) -> np.ndarray:
        """The current `data` seen from `camera`: (height, width, 3) uint8, a new array."""
        self._gl.make_current()
        mujoco.mjv_updateScene(self.model, self.data, self.option, self._pert, camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self.scene)
        self._sun(camera)
        mujoco.mjr_render(self._rect, self.scene, self._con)
        mujoco.mjr_readPixels(self._rgb, None, self._rect, self._con)
        return np.flipud(self._rgb).copy()  # OpenGL's rows run bottom-up

    def _sun(self, camera: mujoco.MjvCamera) -> None:
        """Add a sun over the point looked at, so that a robot far from the origin is lit as well as one at
        the start (legkit's floor light is a spot over the origin; the headlight stays as it is)."""
        scn = self.scene
        if scn.nlight >= len(scn.lights):
            return
        light = scn.lights[scn.nlight]
        scn.nlight += 1
        light.pos[:] = np.asarray(camera.lookat) + np.array([0.0, 0.0, 4.0])
        light.dir[:] = _SUN_DIR
        light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
        light.headlight = 0
        light.ambient[:] = 0.15
        light.diffuse[:] = 0.6
        light.specular[:] = 0.2
        light.attenuation[:] = [1.0, 0.0, 0.0]
        light.castshadow = False  # a shadow map over a sun is slow on a CPU rasterizer and speckles
        light.intensity = 0.0

    def close(self) -> None:
        if self._gl is not None:
            self._gl.make_current()
            self._con.free()
            self._gl.free()
            self._gl = None

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
