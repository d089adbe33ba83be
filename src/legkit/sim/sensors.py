"""Batched sensor models: ultrasonic range, ray-cast depth camera, IMU, named MuJoCo sensors, sample-and-hold.

Every reading is computed from what `BatchSim` keeps: the state rows `state` (N, nstate), laid out as
mjSTATE_FULLPHYSICS, and the sensor rows `sensordata` (N, nsensordata).

Ray sensors (`Ultrasonic`, `DepthCamera`) need geometry poses, which the batch does not keep. A `RayScene`
owns one scratch MjData; for each robot it loads the state row (`mj_setState`) and runs `mj_kinematics`,
then casts all of that sensor's rays in one `mujoco.mj_multiRay` call (rays from one point). The loop over
robots is in Python; with `nthread` > 1 a call that casts enough rays (RayScene.MIN_SHARE_RAYS per thread) splits
the robots into contiguous shares, each cast on its own thread into its own scratch MjData (MuJoCo's functions
release the GIL, so the threads run at once; every robot's rays are cast exactly as on one thread, so the
readings do not depend on the thread count). On the 2-core VM the PiDog arena's supersampled camera gains 1.29x in
env steps; smaller calls (its 17-ray sonar, the open-ground camera) lost up to 7% when split, and are not
(docs/performance.md, "Ray sensors on threads"). Measured on a 13-body, 41-geom PiDog-sized scene: about 3.5 us
per robot to load a state and run kinematics, about 5 us of other per-robot Python, and per mj_multiRay call about
10 us of set-up (bounding angles of every geom in reach) plus 0.23 us per ray; a loop of mj_ray calls
costs about 2 us per ray, so one multiRay call per robot is several times faster. The rays dominate: a
16 x 12 camera costs about 70-100 us per robot and frame, a 17-ray sonar 25-35 us. `measure_rate` measures
it on any scene (no timing in tests: speed belongs to `legkit bench`).

Frames. A ray sensor sits on a site: the site's +x is the beam (optical) axis, +y points left and +z up,
the same for the sonar and the camera. Image rows run top to bottom (+z to -z), columns left to right
(+y to -y), as a picture is seen from behind the camera.

The robot does not see itself: the RayScene's private copy of the model moves every geom of the robot's
kinematic tree (the subtree of its root body, not only the root body that mj_ray's `bodyexclude` would
skip) into geom group 5, and rays skip group 5. Other geoms that were in group 5 move to group 4, and
fully transparent geoms that collide (rgba alpha 0: invisible to MuJoCo's ray functions) are made visible
to rays: a sensor sees what the robot can bump into. The caller's model is never changed. Geometry must be
the same in every model of a ModelPool (legkit's randomization changes none).
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mujoco
import numpy as np

from legkit import LegkitError

FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS
MOCAP = int(mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
"""The packed mocap poses (positions, then quaternions) of a robot's obstacles."""
STANDARD_GRAVITY = 9.80665
"""m/s^2: 1 g."""
NO_ECHO = -1.0
"""What the PiDog's ultrasonic driver reports when no echo came back before its timeout."""
ROBOT_GROUP = 5
"""Geom group that a RayScene's model copy puts the robot's geoms in; rays skip it."""
DEPTH_MODES = ("range", "planar", "height")


def _key(sensor: str, field: str) -> str:
    return f"task.sensors.{sensor}.{field}"


def _check_rate(sensor: str, rate_hz: float) -> None:
    if not rate_hz > 0:
        raise LegkitError(f"invalid {_key(sensor, 'rate_hz')} = {rate_hz}: must be > 0 (Hz)")


def _site_id(model: mujoco.MjModel, name: str, key: str) -> int:
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name)
    if sid < 0:
        names = [model.site(i).name for i in range(model.nsite)]
        raise LegkitError(f"invalid {key} = '{name}': no such site in the model; sites: {', '.join(names) or 'none'}")
    return sid


# -- ray casting scene ---------------------------------------------------------------------------

class RayScene:
    """Scratch MjData on a private model copy, to cast rays from any robot's state row.

    `robot_body` (name or id) names a body of the robot; the whole kinematic tree it belongs to is the
    robot, excluded from every ray. Default: the tree of the first body with a free joint. `nthread`: threads
    that cast a batch's rays, each into its own MjData (`data` is the first; see `shares`).
    """

    MIN_SHARE_RAYS = 20_000
    """Fewest rays a thread is given: below it a thread's hand-over costs more than its rays save."""

    def __init__(self, model: mujoco.MjModel, robot_body: int | str | None = None, nthread: int = 1):
        if not isinstance(nthread, (int, np.integer)) or isinstance(nthread, bool) or nthread < 1:
            raise LegkitError(f"a ray scene needs nthread >= 1 threads, got {nthread!r}")
        self.source_model = model
        self.model = copy.copy(model)  # geom groups below must not leak into the caller's model
        self.nstate = mujoco.mj_stateSize(model, FULLPHYSICS)
        root = self._robot_root(model, robot_body)
        self.robot_bodies = np.flatnonzero(model.body_rootid == root)
        """Ids of the robot's bodies: the subtree of its root body."""
        self.robot_geoms = np.flatnonzero(np.isin(model.geom_bodyid, self.robot_bodies))
        """Ids of the geoms that rays skip."""
        m = self.model
        others = np.setdiff1d(np.arange(m.ngeom), self.robot_geoms)
        m.geom_group[others[m.geom_group[others] >= ROBOT_GROUP]] = ROBOT_GROUP - 1
        m.geom_group[self.robot_geoms] = ROBOT_GROUP
        alpha = m.geom_rgba[:, 3].copy()
        textured = m.geom_matid >= 0
        alpha[textured] = m.mat_rgba[m.geom_matid[textured], 3]
        collides = (m.geom_contype != 0) | (m.geom_conaffinity != 0)
        hidden = others[(alpha[others] == 0) & collides[others]]
        m.geom_matid[hidden] = -1
        m.geom_rgba[hidden, 3] = 1.0
        self.geomgroup = np.ones(6, dtype=np.uint8)
        self.geomgroup[ROBOT_GROUP] = 0
        self.datas = [mujoco.MjData(m) for _ in range(int(nthread))]
        """One scratch MjData per thread."""
        self.data = self.datas[0]
        for d in self.datas:
            mujoco.mj_kinematics(m, d)
        self._pool: ThreadPoolExecutor | None = None
        self.thread_name = f"legkit-rays-{id(self):x}"
        """Name prefix of this scene's worker threads."""

    def shares(self, n: int, rays: int) -> list[tuple[int, int]]:
        """Contiguous [start, stop) ranges of `n` robots casting `rays` rays each, one per thread used (at least
        MIN_SHARE_RAYS rays each)."""
        k = max(1, min(len(self.datas), n * rays // self.MIN_SHARE_RAYS))
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def run(self, work: Callable[[mujoco.MjData, int, int], None], n: int, rays: int) -> None:
        """Call `work(data, start, stop)` for every share of `n` robots casting `rays` rays each: the first on this
        thread, the others at once on the scene's worker threads, each with its own MjData; returns when all are
        done."""
        shares = self.shares(n, rays)
        if len(shares) == 1:
            work(self.data, 0, n)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.datas) - 1, thread_name_prefix=self.thread_name)
        futures = [self._pool.submit(work, d, lo, hi) for d, (lo, hi) in zip(self.datas[1:], shares[1:])]
        work(self.data, *shares[0])
        for f in futures:
            f.result()

    def close(self) -> None:
        """End the worker threads (a later call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    @staticmethod
    def _robot_root(model: mujoco.MjModel, robot_body: int | str | None) -> int:
        if robot_body is None:
            free = np.flatnonzero(model.jnt_type == int(mujoco.mjtJoint.mjJNT_FREE))
            if len(free) == 0:
                raise LegkitError("the model has no free joint: name the robot's body (robot_body) for the ray sensors")
            return int(model.body_rootid[model.jnt_bodyid[free[0]]])
        body = robot_body if isinstance(robot_body, int) else mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY,
                                                                                robot_body)
        if not 0 < body < model.nbody:
            raise LegkitError(f"robot body '{robot_body}' is not a body of the model (other than the world)")
        return int(model.body_rootid[body])

    def check_states(self, states: np.ndarray) -> np.ndarray:
        """`states` as a float64 (N, nstate) array; a LegkitError if it is not mjSTATE_FULLPHYSICS rows."""
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != self.nstate:
            raise LegkitError(f"ray sensors read mjSTATE_FULLPHYSICS rows of shape (N, {self.nstate}), "
                              f"got {states.shape}")
        return states

    def load(self, state_row: np.ndarray) -> None:
        """Make one robot's state row (nstate,) current: its geom and site poses."""
        mujoco.mj_setState(self.model, self.data, state_row, FULLPHYSICS)
        mujoco.mj_kinematics(self.model, self.data)

    def cast(self, origin: np.ndarray, directions: np.ndarray, dist: np.ndarray, geom: np.ndarray,
             normal: np.ndarray | None = None, cutoff: float = mujoco.mjMAXVAL) -> None:
        """Cast unit `directions` (n, 3) from `origin` (3,) in the loaded state, skipping the robot.

        Fills `dist` (n,) with metres to the first hit (-1: none), `geom` (n,) int32 with the geom hit (-1:
        none) and, if given, `normal` (n, 3) with the unit surface normal there (world frame). Every array
        must be C-contiguous (views of rows of preallocated buffers are). Geoms wholly beyond `cutoff` (m)
        are skipped early; hits beyond it can still be returned (mj_multiRay's culling, not a clip).
        """
        n = len(dist)
        mujoco.mj_multiRay(self.model, self.data, origin, directions.reshape(-1), self.geomgroup, 1, -1,
                           geom, dist, None if normal is None else normal.reshape(-1), n, cutoff)


class _SiteRays:
    """Rays fixed in a site frame, cast for a batch of robots; shared by the sonar and the camera."""

    def __init__(self, scene: RayScene, site: str, key: str, local: np.ndarray, normals: bool, cutoff: float):
        self.scene = scene
        self.site_id = _site_id(scene.model, site, key)
        if not np.isin(scene.model.site_bodyid[self.site_id], scene.robot_bodies):
            raise LegkitError(f"invalid {key} = '{site}': the site is not on the robot (the tree of body "
                              f"'{scene.model.body(int(scene.robot_bodies[0])).name}')")
        self.local = np.ascontiguousarray(local.reshape(-1, 3), dtype=np.float64)
        self.num_rays = len(self.local)
        self._normals = normals
        self.cutoff = cutoff

    def cast(self, states: np.ndarray, mocap: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """Hits of every robot: dist (N, n) m (-1: none), normals (N, n, 3) or None, ray directions (N, n, 3), and
        the rays' origin, the site's world position (N, 3). `mocap` (N, nmocap * 7): each robot's mocap body poses
        (obstacles; not in mjSTATE_FULLPHYSICS)."""
        states = self.scene.check_states(states)
        n, k = len(states), self.num_rays
        dist = np.empty((n, k))
        geom = np.empty((n, k), dtype=np.int32)
        normal = np.empty((n, k, 3)) if self._normals else None
        world = np.empty((n, k, 3))
        origins = np.empty((n, 3))
        model, site = self.scene.model, self.site_id
        flat_world, flat_normal = world.reshape(n, -1), None if normal is None else normal.reshape(n, -1)
        group, cutoff, local = self.scene.geomgroup, self.cutoff, self.local

        def share(data: mujoco.MjData, start: int, stop: int) -> None:
            # Views into this thread's scratch MjData, made once: the loop below is the per-robot overhead
            origin, rot_t = data.site_xpos[site], data.site_xmat[site].reshape(3, 3).T
            for i in range(start, stop):
                mujoco.mj_setState(model, data, states[i], FULLPHYSICS)
                if mocap is not None:
                    mujoco.mj_setState(model, data, mocap[i], MOCAP)
                mujoco.mj_kinematics(model, data)
                np.matmul(local, rot_t, out=world[i])  # world direction = R_site @ local, row-wise: local @ R^T
                origins[i] = origin
                mujoco.mj_multiRay(model, data, origin, flat_world[i], group, 1, -1, geom[i], dist[i],
                                   None if flat_normal is None else flat_normal[i], k, cutoff)

        self.scene.run(share, n, k)
        return dist, normal, world, origins


# -- ultrasonic ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UltrasonicConfig:
    """An HC-SR04 class ultrasonic range finder as the PiDog's driver reports it (task.sensors.ultrasonic)."""

    site: str = "sonar"
    """Site the sound leaves from; its +x is the beam axis."""
    half_angle_deg: float = 15.0
    """Half-angle (degrees) of the beam cone: about 15 for HC-SR04 class sensors."""
    rings: int = 2
    """Rings of rays around the centre ray, at half_angle * k / rings for k = 1 .. rings (0: one ray)."""
    rays_per_ring: int = 8
    """Rays in each ring, evenly spaced around the axis starting at +y (left). Objects narrower than the gap
    between rays, 2 pi r sin(half_angle) / rays_per_ring at range r, can slip through."""
    min_range: float = 0.02
    """Shortest distance reported (m); nearer echoes read as this."""
    max_range: float = 2.9
    """Driver timeout (m): farther echoes, or none, read NO_ECHO (-1). The datasheet says 4 m, but the maker's
    driver gives up at about 2.9 m."""
    max_incidence_deg: float = 45.0
    """A hit echoes only if the ray meets the surface within this angle (degrees) of its normal: smooth
    surfaces reflect sound away, so the floor under a level sonar is not heard. A modelling choice, not a
    datasheet value (a strictly specular model would use half_angle_deg); 90 hears every surface."""
    noise_std: float = 0.01
    """Standard deviation (m) of gaussian noise on valid readings."""
    rate_hz: float = 100.0
    """Reads per second: the maker's software reads the sonar every 10 ms (see SampleAndHold)."""

    def __post_init__(self) -> None:
        s = "ultrasonic"
        if not 0 < self.half_angle_deg < 90:
            raise LegkitError(f"invalid {_key(s, 'half_angle_deg')} = {self.half_angle_deg}: "
                              "must be in (0, 90) degrees")
        if self.rings < 0:
            raise LegkitError(f"invalid {_key(s, 'rings')} = {self.rings}: must be >= 0")
        if self.rings > 0 and self.rays_per_ring < 3:
            raise LegkitError(f"invalid {_key(s, 'rays_per_ring')} = {self.rays_per_ring}: must be >= 3 when rings > 0")
        if not 0 < self.min_range < self.max_range:
            raise LegkitError(f"invalid {_key(s, 'min_range')} = {self.min_range}, {_key(s, 'max_range')} = "
                              f"{self.max_range}: must satisfy 0 < min_range < max_range (m)")
        if not 0 < self.max_incidence_deg <= 90:
            raise LegkitError(f"invalid {_key(s, 'max_incidence_deg')} = {self.max_incidence_deg}: "
                              "must be in (0, 90] degrees")
        if self.noise_std < 0:
            raise LegkitError(f"invalid {_key(s, 'noise_std')} = {self.noise_std}: must be >= 0 (m)")
        _check_rate(s, self.rate_hz)


def cone_directions(half_angle_deg: float, rings: int, rays_per_ring: int) -> np.ndarray:
    """Unit ray directions (1 + rings * rays_per_ring, 3) of a cone about +x: the axis first, then ring by ring."""
    dirs = [np.array([1.0, 0.0, 0.0])]
    az = 2 * np.pi * np.arange(rays_per_ring) / max(rays_per_ring, 1)
    for k in range(1, rings + 1):
        off = math.radians(half_angle_deg) * k / rings
        ring = np.stack([np.full_like(az, math.cos(off)), math.sin(off) * np.cos(az), math.sin(off) * np.sin(az)], 1)
        dirs.extend(ring)
    return np.array(dirs)


class Ultrasonic:
    """The ultrasonic range of N robots: the nearest echo in a cone of rays, as the maker's driver reports it."""

    def __init__(self, scene: RayScene, config: UltrasonicConfig = UltrasonicConfig()):
        self.config = config
        local = cone_directions(config.half_angle_deg, config.rings, config.rays_per_ring)
        self._rays = _SiteRays(scene, config.site, _key("ultrasonic", "site"), local, normals=True,
                               cutoff=config.max_range)
        self.num_rays = self._rays.num_rays
        self._cos_incidence = math.cos(math.radians(config.max_incidence_deg))

    def distance(self, states: np.ndarray, mocap: np.ndarray | None = None) -> np.ndarray:
        """Distance (m) to the nearest echoing surface in the cone, (N,), noise-free; inf where none."""
        dist, normal, world, _ = self._rays.cast(states, mocap)
        # cos(incidence) = -ray . normal; a back face (ray from inside a geom) is negative: no echo
        facing = -np.einsum("nkj,nkj->nk", world, normal)
        echo = (dist >= 0) & (facing >= self._cos_incidence - 1e-12)
        return np.where(echo, dist, np.inf).min(axis=1)

    def driver(self, distance: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """What the driver reports for true distances (N,) m: NO_ECHO (-1) beyond max_range or with no echo,
        else the distance plus noise, clipped to [min_range, max_range]."""
        c = self.config
        valid = distance <= c.max_range
        reading = np.where(valid, distance, NO_ECHO)
        if c.noise_std > 0:
            if rng is None:
                raise LegkitError("the ultrasonic noise needs a random generator: pass rng")
            reading = np.where(valid, reading + rng.normal(0.0, c.noise_std, size=reading.shape), NO_ECHO)
        return np.where(valid, np.clip(reading, c.min_range, c.max_range), NO_ECHO)

    def read(self, states: np.ndarray, rng: np.random.Generator | None = None,
             mocap: np.ndarray | None = None) -> np.ndarray:
        """Driver readings (N,) in metres, NO_ECHO (-1) for none, of the robots whose state rows are `states`."""
        return self.driver(self.distance(states, mocap), rng)

    def features(self, reading: np.ndarray) -> np.ndarray:
        """An observation without the -1 jump: (N, 2) float32 [echo flag (1/0), distance in m (max_range when no
        echo)]. "Nothing heard" then sits next to "far", and the flag tells the two apart."""
        valid = reading >= 0
        return np.stack([valid, np.where(valid, reading, self.config.max_range)], axis=1).astype(np.float32)


# -- depth camera --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraConfig:
    """A low-resolution depth image, ray cast from a site (task.sensors.camera); no OpenGL needed."""

    site: str = "camera"
    """Site of the camera's optical centre; +x is the optical axis, +y left, +z up."""
    hfov_deg: float = 65.0
    """Horizontal field of view (degrees): 65 for the PiDog's OV5647. The vertical one follows from the
    pixel aspect (square pixels): 2 atan(tan(hfov / 2) * height / width)."""
    width: int = 16
    """Image columns."""
    height: int = 12
    """Image rows."""
    max_depth: float = 3.0
    """Farthest depth (m); farther surfaces, or none, read max_depth."""
    depth: str = "range"
    """"range": distance along each pixel's ray (a wall at distance d reads d / cos(angle off the axis));
    "planar": distance along the optical axis, as a z-buffer (a wall square to the axis reads d everywhere);
    "height": the height (m) above the floor (the world's z = 0 plane) of the point each pixel's ray meets, 0 where
    it meets nothing within max_depth: the depth image with the camera's pose applied, which a robot computes from
    its depth estimate, its IMU's attitude and its legs' kinematics. The floor reads 0 however the body pitches and
    bobs, a 4 cm curb 0.04, so what stands up from the floor stands out (a local elevation map in perspective)."""
    normalize: bool = False
    """Divide depths by max_depth, so that pixels lie in [0, 1]; otherwise metres (not with depth "height")."""
    noise_std: float = 0.0
    """Standard deviation (m) of gaussian noise on pixels that hit something (on the height, with depth "height")."""
    rate_hz: float = 10.0
    """Frames per second (see SampleAndHold)."""
    supersample: int = 1
    """Rays per pixel along each axis: each pixel reads the nearest of supersample x supersample rays spread over
    its footprint (a depth image of the full sensor, min-pooled to this size), so a post thinner than the gap
    between pixel centres is seen farther away; 1: one ray through the pixel's centre, which can miss a 2.5 cm post
    beyond about 0.3 m at 16 columns over 65 degrees (centre rays 8 cm apart 1 m ahead; 2.7 cm with 3 x 3)."""

    def __post_init__(self) -> None:
        s = "camera"
        if not 0 < self.hfov_deg < 180:
            raise LegkitError(f"invalid {_key(s, 'hfov_deg')} = {self.hfov_deg}: must be in (0, 180) degrees")
        for name, value in (("width", self.width), ("height", self.height)):
            if value < 1:
                raise LegkitError(f"invalid {_key(s, name)} = {value}: must be >= 1 (pixels)")
        if not self.max_depth > 0:
            raise LegkitError(f"invalid {_key(s, 'max_depth')} = {self.max_depth}: must be > 0 (m)")
        if self.depth not in DEPTH_MODES:
            raise LegkitError(f"invalid {_key(s, 'depth')} = '{self.depth}'; valid: {', '.join(DEPTH_MODES)}")
        if self.depth == "height" and self.normalize:
            raise LegkitError(f"invalid {_key(s, 'normalize')} = true with {_key(s, 'depth')} = 'height': heights "
                              "are metres above the floor, not fractions of max_depth; set normalize to false")
        if not 1 <= self.supersample <= 8:
            raise LegkitError(f"invalid {_key(s, 'supersample')} = {self.supersample}: must be in 1..8 (rays per "
                              "pixel along each axis)")
        if self.noise_std < 0:
            raise LegkitError(f"invalid {_key(s, 'noise_std')} = {self.noise_std}: must be >= 0 (m)")
        _check_rate(s, self.rate_hz)

    @property
    def focal_px(self) -> float:
        """Focal length in pixels."""
        return 0.5 * self.width / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view (degrees)."""
        return math.degrees(2 * math.atan(0.5 * self.height / self.focal_px))


def pixel_directions(config: CameraConfig, supersample: int = 1) -> np.ndarray:
    """Unit ray directions (height, width, 3) through the pixel centres, in the site frame (+x optical axis); with
    `supersample` k, (height * k, width * k, 3) through the centres of k x k equal parts of every pixel (rows
    [r*k, (r+1)*k) and columns [c*k, (c+1)*k) are pixel (r, c)'s)."""
    f, k = config.focal_px, supersample
    u = (np.arange(config.width * k) + 0.5) / k - 0.5 * config.width   # right of the centre, pixels
    v = (np.arange(config.height * k) + 0.5) / k - 0.5 * config.height  # below the centre, pixels
    d = np.stack(np.broadcast_arrays(f, -u[None, :], -v[:, None]), axis=-1).astype(np.float64)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


class DepthCamera:
    """Depth images (N, height, width) float32 of N robots, one mj_multiRay call per robot."""

    def __init__(self, scene: RayScene, config: CameraConfig = CameraConfig()):
        self.config = config
        self.directions = pixel_directions(config, config.supersample)
        """(height * k, width * k, 3) unit rays in the site frame, k = config.supersample (k = 1: one per pixel)."""
        # planar depth = range * cos(angle off the axis) = range * x component of the unit ray
        self._planar = self.directions[..., 0].reshape(-1)
        cutoff = config.max_depth / (self._planar.min() if config.depth == "planar" else 1.0)
        self._rays = _SiteRays(scene, config.site, _key("camera", "site"), self.directions, normals=False,
                               cutoff=cutoff)
        self.num_rays = self._rays.num_rays

    def read(self, states: np.ndarray, rng: np.random.Generator | None = None,
             mocap: np.ndarray | None = None) -> np.ndarray:
        """Depth images (N, height, width) float32 of the robots whose state rows are `states`: metres
        (or fractions of max_depth if normalized), max_depth where nothing is hit within it."""
        c, k = self.config, self.config.supersample
        dist, _, world, origins = self._rays.cast(states, mocap)
        if c.depth == "height":
            return self._heights(dist, world, origins, rng)
        if c.depth == "planar":
            dist = np.where(dist >= 0, dist * self._planar, dist)
        if k > 1:  # each pixel: the nearest of its k x k rays (a miss is farther than any hit)
            near = np.where(dist >= 0, dist, np.inf).reshape(len(dist), c.height, k, c.width, k).min(axis=(2, 4))
            dist = np.where(np.isfinite(near), near, -1.0).reshape(len(dist), -1)
        hit = dist >= 0
        if c.noise_std > 0:
            if rng is None:
                raise LegkitError("the camera noise needs a random generator: pass rng")
            dist = dist + rng.normal(0.0, c.noise_std, size=dist.shape) * hit
        depth = np.where(hit, np.clip(dist, 0.0, c.max_depth), c.max_depth)
        if c.normalize:
            depth = depth / c.max_depth
        return depth.reshape(len(depth), c.height, c.width).astype(np.float32)

    def _heights(self, dist: np.ndarray, world: np.ndarray, origins: np.ndarray,
                 rng: np.random.Generator | None) -> np.ndarray:
        """Depth "height": (N, height, width) float32, the height above z = 0 of each pixel's hit (the highest of
        its k x k rays': a thin post's top is seen), 0 where no ray hits within max_depth."""
        c, k = self.config, self.config.supersample
        hit = (dist >= 0) & (dist <= c.max_depth)
        z = np.where(hit, origins[:, 2:3] + dist * world[..., 2], -np.inf)
        if k > 1:
            z = z.reshape(len(z), c.height, k, c.width, k).max(axis=(2, 4)).reshape(len(z), -1)
        hit = np.isfinite(z)
        if c.noise_std > 0:
            if rng is None:
                raise LegkitError("the camera noise needs a random generator: pass rng")
            z = z + rng.normal(0.0, c.noise_std, size=z.shape) * hit
        return np.where(hit, z, 0.0).reshape(len(z), c.height, c.width).astype(np.float32)


def render_depth_gl(camera: DepthCamera, state_row: np.ndarray, backend: str) -> np.ndarray:
    """The same depth image (height, width) float32 rendered with OpenGL for ONE robot, to cross-check the
    ray caster. `backend`: a MuJoCo GL backend that works here ("egl", "osmesa", "glfw"), e.g. the one
    legkit.media.render.gl_backend() chose. Robot geoms are hidden as for the rays (geom group 5). One sample per
    pixel centre: the ray caster's image with supersample 1."""
    c = camera.config
    if c.depth == "height":
        raise LegkitError("render_depth_gl renders depth: task.sensors.camera.depth 'range' or 'planar', not 'height'")
    scene = camera._rays.scene
    model = copy.copy(scene.model)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, c.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, c.height)
    model.vis.quality.offsamples = 0  # one sample per pixel centre, as the rays
    data = mujoco.MjData(model)
    mujoco.mj_setState(model, data, np.asarray(state_row, dtype=np.float64), FULLPHYSICS)
    mujoco.mj_forward(model, data)
    gl = importlib.import_module(f"mujoco.{backend}").GLContext(c.width, c.height)
    gl.make_current()
    try:
        con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)
        vscene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        option = mujoco.MjvOption()
        option.geomgroup[:] = 1
        option.geomgroup[ROBOT_GROUP] = 0
        option.sitegroup[:] = 0  # site markers sit at the camera itself
        mujoco.mjv_updateScene(model, data, option, mujoco.MjvPerturb(), mujoco.MjvCamera(),
                               mujoco.mjtCatBit.mjCAT_ALL, vscene)
        flags = mujoco.mjtRndFlag
        for flag in (flags.mjRND_SKYBOX, flags.mjRND_REFLECTION, flags.mjRND_SHADOW):
            vscene.flags[flag] = 0
        near = model.vis.map.znear * model.stat.extent
        far = model.vis.map.zfar * model.stat.extent
        sid = camera._rays.site_id
        xmat = data.site_xmat[sid].reshape(3, 3)
        half_h = near * 0.5 * c.height / c.focal_px
        for eye in range(2):  # both eyes of the (mono) GL camera
            cam = vscene.camera[eye]
            cam.pos[:] = data.site_xpos[sid]
            cam.forward[:] = xmat[:, 0]
            cam.up[:] = xmat[:, 2]
            cam.orthographic = 0
            cam.frustum_center, cam.frustum_width = 0.0, 0.0  # width 0: from the viewport's aspect
            cam.frustum_bottom, cam.frustum_top = -half_h, half_h
            cam.frustum_near, cam.frustum_far = near, far
        rect = mujoco.MjrRect(0, 0, c.width, c.height)
        mujoco.mjr_render(rect, vscene, con)
        z = np.empty((c.height, c.width), dtype=np.float32)
        mujoco.mjr_readPixels(None, z, rect, con)
        reversed_z = con.readDepthMap == int(mujoco.mjtDepthMap.mjDEPTH_ZEROFAR)
        con.free()
    finally:
        gl.free()
    z = np.flipud(z).astype(np.float64)  # OpenGL's rows run bottom-up
    # window depth in [0, 1] back to distance along the axis (the inverse of glFrustum's projection)
    if reversed_z:  # 1 at the near plane, 0 at the far one
        planar = near * far / (near + z * (far - near))
    else:  # 0 at the near plane, 1 at the far one
        planar = near * far / (far - z * (far - near))
    depth = planar if c.depth == "planar" else planar / pixel_directions(c)[..., 0]
    depth = np.where(np.isfinite(depth) & (depth > 0), np.minimum(depth, c.max_depth), c.max_depth)
    if c.normalize:
        depth = depth / c.max_depth
    return depth.astype(np.float32)


# -- cost ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RayCost:
    """What one ray sensor costs on a scene (one thread)."""

    robots_per_s: float
    """Robots read per second (frames per second for a camera)."""
    rays_per_s: float
    """Rays cast per second, the per-robot overhead included."""
    load_us: float
    """Per-robot overhead (us): state load, kinematics and the Python loop, without any ray."""


def measure_rate(sensor: Ultrasonic | DepthCamera, states: np.ndarray, seconds: float = 1.0) -> RayCost:
    """Time `sensor.read` on the robots `states` (N, nstate) for about `seconds`."""
    scene = sensor._rays.scene
    states = scene.check_states(states)
    reads, start = 0, time.perf_counter()
    while True:
        sensor.read(states, np.random.default_rng(0))
        reads += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    loads, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(seconds, 0.2):
        for row in states:
            scene.load(row)
        loads += len(states)
    load_us = (time.perf_counter() - start) / loads * 1e6
    robots = reads * len(states) / elapsed
    return RayCost(robots_per_s=robots, rays_per_s=robots * sensor.num_rays, load_us=load_us)


def camera_rate(model: mujoco.MjModel, n_robots: int, seconds: float = 1.0, config: CameraConfig = CameraConfig(),
                robot_body: int | str | None = None, states: np.ndarray | None = None) -> RayCost:
    """Cost of the depth camera on `model` for `n_robots` (default states: the model's reset state)."""
    scene = RayScene(model, robot_body)
    if states is None:
        data = mujoco.MjData(model)
        row = np.empty(scene.nstate)
        mujoco.mj_getState(model, data, row, FULLPHYSICS)
        states = np.tile(row, (n_robots, 1))
    return measure_rate(DepthCamera(scene, config), states, seconds)


# -- IMU and named MuJoCo sensors ----------------------------------------------------------------

def read_sensors(model: mujoco.MjModel, names: list[str] | tuple[str, ...],
                 key: str = "task.sensors") -> tuple[np.ndarray, int]:
    """Columns of sensordata holding the named sensors, every component of each, in order, and their count.

    `sensordata[:, index]` is then (N, dim): e.g. 12 jointpos encoders give 12 columns, a touch sensor 1, an
    accelerometer 3. `key` names the config entry in errors.
    """
    cols = []
    for name in names:
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        if sid < 0:
            valid = [model.sensor(i).name for i in range(model.nsensor)]
            raise LegkitError(f"invalid {key}: no sensor named '{name}' in the model; sensors: "
                              f"{', '.join(valid) or 'none'}")
        adr, dim = int(model.sensor_adr[sid]), int(model.sensor_dim[sid])
        cols.append(np.arange(adr, adr + dim))
    index = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return index.astype(np.int64), len(index)


@dataclass(frozen=True)
class ImuConfig:
    """A 6-axis IMU (the PiDog's SH3001) read from MuJoCo accelerometer and gyro sensors (task.sensors.imu).

    Noise and bias defaults are assumed consumer-MEMS magnitudes, not SH3001 datasheet values."""

    accelerometer: str = "imu_acc"
    """Name of the MuJoCo accelerometer sensor (3 components, m/s^2, in its site frame; +9.81 up at rest)."""
    gyro: str = "imu_gyro"
    """Name of the MuJoCo gyro sensor (3 components, rad/s, in its site frame)."""
    acc_range: float = 2 * STANDARD_GRAVITY
    """Full scale (m/s^2): readings clip to +-acc_range. +-2 g on the PiDog."""
    gyro_range: float = math.radians(2000.0)
    """Full scale (rad/s): readings clip to +-gyro_range. +-2000 deg/s (34.9 rad/s) on the PiDog."""
    acc_noise_std: float = 0.05
    """Standard deviation (m/s^2) of white noise per reading and axis."""
    gyro_noise_std: float = 0.005
    """Standard deviation (rad/s) of white noise per reading and axis."""
    acc_bias_std: float = 0.1
    """Standard deviation (m/s^2) of a constant bias per robot and axis, drawn at reset."""
    gyro_bias_std: float = 0.01
    """Standard deviation (rad/s) of a constant bias per robot and axis, drawn at reset."""
    bits: int | None = None
    """Quantize each axis to 2^bits levels over its full scale (16 for a 16-bit part); None: no quantization."""
    rate_hz: float = 20.0
    """Reads per second: the maker's software reads the IMU at about 20 Hz (see SampleAndHold)."""
    attitude_gain: float = 0.02
    """The `attitude` term's complementary filter (legkit.runtime.attitude_step): the accelerometer's weight at each
    control step, the gyroscope carrying the rest (0.02 at 50 Hz: the accelerometer's pull acts over about 1 s)."""

    def __post_init__(self) -> None:
        s = "imu"
        for name in ("acc_range", "gyro_range"):
            if not getattr(self, name) > 0:
                raise LegkitError(f"invalid {_key(s, name)} = {getattr(self, name)}: must be > 0")
        for name in ("acc_noise_std", "gyro_noise_std", "acc_bias_std", "gyro_bias_std"):
            if getattr(self, name) < 0:
                raise LegkitError(f"invalid {_key(s, name)} = {getattr(self, name)}: must be >= 0")
        if self.bits is not None and not 2 <= self.bits <= 32:
            raise LegkitError(f"invalid {_key(s, 'bits')} = {self.bits}: must be null or in 2 .. 32")
        _check_rate(s, self.rate_hz)
        if not 0.0 < self.attitude_gain <= 1.0:
            raise LegkitError(f"invalid {_key(s, 'attitude_gain')} = {self.attitude_gain}: must be in (0, 1]")


class Imu:
    """Accelerometer + gyro of N robots: (N, 6) [acc xyz m/s^2, gyro xyz rad/s], with per-robot bias."""

    def __init__(self, model: mujoco.MjModel, num_envs: int, config: ImuConfig = ImuConfig()):
        self.config = c = config
        kinds = ((c.accelerometer, "accelerometer", mujoco.mjtSensor.mjSENS_ACCELEROMETER),
                 (c.gyro, "gyro", mujoco.mjtSensor.mjSENS_GYRO))
        for name, field, kind in kinds:
            read_sensors(model, [name], key=_key("imu", field))
            sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
            if model.sensor_type[sid] != int(kind):
                raise LegkitError(f"invalid {_key('imu', field)} = '{name}': that sensor is a "
                                  f"{mujoco.mjtSensor(model.sensor_type[sid]).name}, not {kind.name}")
        self.index, _ = read_sensors(model, [c.accelerometer, c.gyro])
        """(6,) sensordata columns: accelerometer xyz, then gyro xyz."""
        self.full_scale = np.repeat([c.acc_range, c.gyro_range], 3)
        self.noise_std = np.repeat([c.acc_noise_std, c.gyro_noise_std], 3)
        self.bias_std = np.repeat([c.acc_bias_std, c.gyro_bias_std], 3)
        self.bias = np.zeros((num_envs, 6))
        """(num_envs, 6) constant offsets of each robot, drawn by `reset`."""

    def reset(self, env_ids: np.ndarray, rng: np.random.Generator) -> None:
        """Draw new biases for the robots `env_ids`."""
        self.bias[env_ids] = rng.normal(0.0, 1.0, size=(len(np.atleast_1d(env_ids)), 6)) * self.bias_std

    def read(self, sensordata: np.ndarray, rng: np.random.Generator | None = None,
             env_ids: np.ndarray | None = None) -> np.ndarray:
        """Readings (k, 6) from sensor rows (k, nsensordata) of the robots `env_ids` (default: all, in order)."""
        true = sensordata[:, self.index]
        bias = self.bias if env_ids is None else self.bias[env_ids]
        if len(bias) != len(true):
            raise LegkitError(f"IMU read of {len(true)} sensor rows for {len(bias)} robots: pass env_ids")
        out = true + bias
        if self.noise_std.any():
            if rng is None:
                raise LegkitError("the IMU noise needs a random generator: pass rng")
            out = out + rng.normal(0.0, 1.0, size=out.shape) * self.noise_std
        out = np.clip(out, -self.full_scale, self.full_scale)
        if self.config.bits is not None:
            lsb = 2 * self.full_scale / 2 ** self.config.bits  # one step of the converter
            out = np.clip(np.round(out / lsb) * lsb, -self.full_scale, self.full_scale)
        return out


# -- rates ---------------------------------------------------------------------------------------

class SampleAndHold:
    """Per-robot values read at a lower rate than the control loop, held between reads.

    `period` is in control steps and may be fractional (2.5: reads alternate 3 and 2 steps apart, 2.5 on
    average). Each `step` calls `read` only for the robots due, so an expensive sensor costs its rate.
    """

    def __init__(self, num_envs: int, shape: tuple[int, ...], period: float, dtype: type = np.float64,
                 rng: np.random.Generator | None = None):
        if not period >= 1:
            raise LegkitError(f"a sample-and-hold period must be >= 1 control step, got {period}")
        self.period = float(period)
        self.value = np.zeros((num_envs, *shape), dtype=dtype)
        """(num_envs, *shape) the values last read."""
        # Control steps until each robot's next read; staggered start phases spread a camera's cost
        self._until = np.zeros(num_envs) if rng is None else rng.uniform(0.0, self.period, num_envs)
        self._until[:] = np.floor(self._until)

    @classmethod
    def at_rate(cls, num_envs: int, shape: tuple[int, ...], rate_hz: float, control_dt: float,
                dtype: type = np.float64, rng: np.random.Generator | None = None) -> SampleAndHold:
        """Read at `rate_hz` under a control loop of `control_dt` s; every step if the sensor is faster."""
        if not rate_hz > 0 or not control_dt > 0:
            raise LegkitError(f"a sensor rate ({rate_hz} Hz) and control period ({control_dt} s) must be > 0")
        return cls(num_envs, shape, max(1.0, 1.0 / (rate_hz * control_dt)), dtype, rng)

    def due(self) -> np.ndarray:
        """Ids of the robots that read at the coming step."""
        return np.flatnonzero(self._until <= 1e-9)

    def step(self, read: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Advance one control step: `read(env_ids)` returns (k, *shape) fresh values for the robots due.
        Returns `value`, (num_envs, *shape)."""
        ids = self.due()
        if len(ids):
            self.value[ids] = read(ids)
            self._until[ids] += self.period
        self._until -= 1.0
        return self.value

    def reset(self, env_ids: np.ndarray) -> None:
        """Make the robots `env_ids` read at their next step (nothing held over from a previous episode)."""
        self._until[env_ids] = 0.0

    def refresh(self, env_ids: np.ndarray, read: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Read now for the robots `env_ids` only (k,), as `step` would have at this step, without advancing the
        others: a reset's fresh reading. Returns `value`."""
        if len(env_ids):
            self.value[env_ids] = read(env_ids)
            self._until[env_ids] = self.period - 1.0
        return self.value
