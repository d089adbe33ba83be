"""Obstacle arena: a square of flat ground with boundary walls and obstacles placed anew for each episode.

World frame (m): the arena is centred on the world origin, where robots spawn facing +x; the ground is z = 0.
Its walls' inner faces stand at x, y = +-size / 2.

Obstacles are mocap bodies, so that every robot of a batch can have its own layout: a mocap body's pose is
per-MjData input, not model data. The pool: for each kind (box, low, narrow) the model holds `pool` times the
placed count of bodies, each with ONE box geom of a fixed size (geom sizes are model data and cannot change per
episode); sizes span the kind's ranges (stratified, one fixed draw per config). Each episode of each robot
picks the placed count of every kind from its pool at random and gives them positions and yaws; the rest are
parked at `PARK`, below the ground and outside any arena, where no ray, camera or robot meets them.

Where the poses live: MuJoCo 4.0's mjSTATE_FULLPHYSICS (time, qpos, qvel, act, history, plugin, plasticity) does
NOT hold mocap poses: they are the user inputs mjSTATE_MOCAP_POS and mjSTATE_MOCAP_QUAT, and a batched rollout
(mujoco.rollout) resets every mocap body to the model's pose (parked) unless its control_spec holds them. A batch steps
per-robot layouts by adding MOCAP_SPEC to its rollout control_spec and passing each robot's row, packed as
`Arena.write` packs them; a single MjData takes a row with `mj_setState(model, data, row, MOCAP_SPEC)`.

Obstacle contact: with `robot_body` given, `add_to_spec` adds one MuJoCo contact sensor per obstacle body and
per wall (subtree of the robot against that body or wall geom, data "found": the number of contacts), so each
robot's sensordata says every physics step whether and where it touches the arena; `Arena.contacts` sums them.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.sim.batch import state_slices

Range = tuple[float, float]
KINDS = ("box", "low", "narrow")
"""Obstacle kinds, in the order of their count fields boxes, low, narrow."""
COUNT_FIELD = {"box": "boxes", "low": "low", "narrow": "narrow"}
WALL_SIDES = ("px", "nx", "py", "ny")
"""Walls at +x, -x, +y, -y."""
WALL_THICKNESS = 0.05
"""Thickness (m) of a boundary wall, outside the arena's side."""
PARK = (50.0, 50.0, -10.0)
"""Where unused obstacles wait (m): below the ground and outside any arena."""
MOCAP_SPEC = int(mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
"""The packed state spec of the obstacle poses: all mocap positions (nmocap * 3), then quaternions (nmocap * 4)."""
COLOURS = {"box": (0.85, 0.45, 0.20, 1.0), "low": (0.95, 0.80, 0.15, 1.0), "narrow": (0.80, 0.15, 0.15, 1.0),
           "wall": (0.55, 0.56, 0.60, 1.0)}
_TRIES, _CANDIDATES = 20, 64
"""Placement: rounds of rejection sampling, candidate positions per round and robot."""


@dataclass(frozen=True)
class ArenaConfig:
    """An obstacle arena for a small robot (`task.arena.*`); defaults fit the SunFounder PiDog (0.24 m long,
    0.14 m tall, sonar 0.08-0.12 m above the ground). Ranges are (min, max) in m."""

    enabled: bool = False
    """Build the arena into the scene and place obstacles at every reset."""
    size: float = 4.0
    """Side (m) of the square arena, centred on the spawn point."""
    walls: bool = True
    """Static boundary walls around the arena (inner faces at +-size / 2)."""
    wall_height: float = 0.3
    """Height (m) of the boundary walls."""
    boxes: int = 6
    """Ordinary boxes placed per episode: tall enough for the sonar to see."""
    low: int = 3
    """Low obstacles placed per episode: curbs under the sonar's axis, to step over or go around; a camera sees
    them. (A 15-degree cone from 0.08 m dips to their height within about 0.2 m, so only its axis misses them.)"""
    narrow: int = 3
    """Thin posts placed per episode: a cone sampled by a few rays can miss them at range."""
    pool: int = 3
    """Bodies built per placed obstacle of a kind (each of its own fixed size); each episode picks from them."""
    box_side: Range = (0.1, 0.25)
    """Side lengths (m) of boxes, x and y each drawn from this range."""
    box_height: Range = (0.1, 0.3)
    """Heights (m) of boxes."""
    low_side: Range = (0.1, 0.5)
    """Side lengths (m) of low obstacles."""
    low_height: Range = (0.03, 0.05)
    """Heights (m) of low obstacles."""
    narrow_side: Range = (0.02, 0.03)
    """Side lengths (m) of thin posts."""
    narrow_height: Range = (0.3, 0.5)
    """Heights (m) of thin posts."""
    spacing: float = 0.3
    """Smallest free gap (m) between two obstacles' footprint circles (the circle around each footprint box)."""
    clear_radius: float = 0.5
    """No obstacle footprint comes within this distance (m) of the spawn point, the origin."""
    map_x: Range = (-0.15, 0.6)
    """The `obstacle_map` observation term's grid along the body's heading (m from the base's centre, behind to
    ahead)."""
    map_half_width: float = 0.25
    """Half the `obstacle_map` grid's width (m): it spans -w..w to the body's left, symmetric."""
    map_spacing: float = 0.05
    """Spacing (m) of the `obstacle_map` grid's points: half the smallest curb side finds every curb."""

    def __post_init__(self) -> None:
        def fail(key: str, rule: str) -> None:
            raise LegkitError(f"invalid task.arena.{key} = {getattr(self, key)!r}: {rule}")

        for key in ("enabled", "walls"):
            if not isinstance(getattr(self, key), bool):
                fail(key, "must be true or false")
        for key in ("size", "wall_height"):
            if not getattr(self, key) > 0:
                fail(key, "must be > 0")
        for key in ("boxes", "low", "narrow", "pool"):
            value, least = getattr(self, key), 1 if key == "pool" else 0
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                fail(key, f"must be a whole number >= {least}")
        for key in ("spacing", "clear_radius", "map_half_width"):
            if not getattr(self, key) >= 0:
                fail(key, "must be >= 0")
        if not self.map_spacing > 0:
            fail("map_spacing", "must be > 0")
        if not self.map_x[0] <= self.map_x[1]:
            fail("map_x", "must satisfy min <= max")
        for kind in KINDS:
            for part in ("side", "height"):
                key = f"{kind}_{part}"
                lo, hi = getattr(self, key)
                if not 0 < lo <= hi:
                    fail(key, "must satisfy 0 < min <= max")
        half = self.size / 2
        for kind in KINDS:
            r = self.max_radius(kind)  # the farthest a centre can get from the origin: a corner, (half - r) * sqrt 2
            if self.count(kind) and not (half - r) * np.sqrt(2) > self.clear_radius + r:
                fail("size", f"leaves no room for a {kind} obstacle outside clear_radius = {self.clear_radius} m")
        # Random sequential placement jams near 55 % of the plane covered by the disks of radius
        # r + spacing / 2 (footprint circle plus half a gap); 40 % keeps rejection sampling quick.
        covered = sum(self.count(k) * np.pi * (self.max_radius(k) + self.spacing / 2) ** 2 for k in KINDS)
        free = self.size ** 2 - np.pi * self.clear_radius ** 2
        if covered > 0.4 * free:
            fail("size", f"is too crowded: the obstacles with their spacing cover up to {covered:.2f} m^2 of "
                         f"{free:.2f} m^2 of free ground (at most 40 %); raise size or lower boxes, low, narrow, "
                         "spacing, clear_radius or the obstacle sides")

    def count(self, kind: str) -> int:
        """Obstacles of `kind` placed per episode."""
        return int(getattr(self, COUNT_FIELD[kind]))

    def map_shape(self) -> tuple[int, int]:
        """(rows along x, columns along y) of the `obstacle_map` grid."""
        return (int(round((self.map_x[1] - self.map_x[0]) / self.map_spacing)) + 1,
                2 * int(round(self.map_half_width / self.map_spacing)) + 1)

    def map_grid(self) -> np.ndarray:
        """Body-frame (x, y) offsets (K, 2) in m of the `obstacle_map` points: x outer (behind to ahead), y inner
        (right to left), `map_spacing` apart, y symmetric about the centre line."""
        nx, ny = self.map_shape()
        x = np.linspace(self.map_x[0], self.map_x[1], nx)
        y = np.linspace(-self.map_half_width, self.map_half_width, ny)
        gx, gy = np.meshgrid(x, y, indexing="ij")
        return np.stack([gx.ravel(), gy.ravel()], axis=-1)

    def max_radius(self, kind: str) -> float:
        """Largest footprint circle radius (m) of a `kind` obstacle: half the diagonal of its largest footprint."""
        return float(getattr(self, f"{kind}_side")[1] / np.sqrt(2))


def body_name(kind: str, i: int) -> str:
    """Name of pool body `i` of `kind`, e.g. obstacle_box_0 (its geom and touch sensor add _geom, _touch)."""
    return f"obstacle_{kind}_{i}"


def pool_sizes(cfg: ArenaConfig, kind: str) -> np.ndarray:
    """Full sizes (x side, y side, height) in m of the pool bodies of `kind`, (count * pool, 3): each column
    stratified over its range (one value per equal slice, in shuffled order) with a generator fixed per kind,
    so a config always builds the same model."""
    n = cfg.count(kind) * cfg.pool
    rng = np.random.default_rng([0, KINDS.index(kind)])
    out = np.empty((n, 3))
    for col, (lo, hi) in enumerate((getattr(cfg, f"{kind}_side"),) * 2 + (getattr(cfg, f"{kind}_height"),)):
        out[:, col] = lo + (hi - lo) * (rng.permutation(n) + rng.uniform(0, 1, n)) / max(n, 1)
    return out


def add_to_spec(spec: mujoco.MjSpec, cfg: ArenaConfig, robot_body: str | None = None) -> list[str]:
    """Add the arena to `spec`: the obstacle pool as parked mocap bodies, the walls, and with `robot_body` (the
    robot's root body) one contact sensor per obstacle and wall. Returns the obstacle body names; a disabled
    config adds nothing.

    Obstacles and walls collide like the ground (contype 1, conaffinity 2): with robot geoms (contype 2,
    conaffinity 1), never with each other or the ground. Each kind has its own material.
    """
    if not cfg.enabled:
        return []
    for kind, rgba in COLOURS.items():
        spec.add_material(name=f"arena_{kind}", rgba=list(rgba))
    names = []
    for kind in KINDS:
        for i, (sx, sy, h) in enumerate(pool_sizes(cfg, kind)):
            name = body_name(kind, i)
            body = spec.worldbody.add_body(name=name, mocap=True, pos=list(PARK))
            body.add_geom(name=f"{name}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx / 2, sy / 2, h / 2],
                          material=f"arena_{kind}", contype=1, conaffinity=2)
            names.append(name)
    if cfg.walls:
        half, t, h = cfg.size / 2, WALL_THICKNESS, cfg.wall_height
        along = half + t  # walls overlap at the corners
        for side in WALL_SIDES:
            sign = 1.0 if side[0] == "p" else -1.0
            pos, size = ([sign * (half + t / 2), 0, h / 2], [t / 2, along, h / 2]) if side[1] == "x" else \
                ([0, sign * (half + t / 2), h / 2], [along, t / 2, h / 2])
            spec.worldbody.add_geom(name=f"arena_wall_{side}", type=mujoco.mjtGeom.mjGEOM_BOX, pos=pos, size=size,
                                    material="arena_wall", contype=1, conaffinity=2)
    if robot_body is not None:
        if spec.body(robot_body) is None:
            raise LegkitError(f"the arena's contact sensors need the robot's root body '{robot_body}', which the "
                              "scene does not have")
        found = int(mujoco.mjtConDataField.mjCONDATA_FOUND)
        targets = [(f"{n}_touch", mujoco.mjtObj.mjOBJ_BODY, n) for n in names]
        if cfg.walls:
            targets += [(f"arena_wall_{s}_touch", mujoco.mjtObj.mjOBJ_GEOM, f"arena_wall_{s}") for s in WALL_SIDES]
        for name, reftype, refname in targets:
            # intprm: (data fields as bits, reduction, num): "found" alone, no reduction, one slot.
            spec.add_sensor(name=name, type=mujoco.mjtSensor.mjSENS_CONTACT, objtype=mujoco.mjtObj.mjOBJ_XBODY,
                            objname=robot_body, reftype=reftype, refname=refname, intprm=[1 << found, 0, 1])
    return names


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) of turns by `yaw` (rad) about +z, (..., 4)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zero = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), zero, zero, np.sin(yaw / 2)], axis=-1)


def is_placed(mocap_pos: np.ndarray) -> np.ndarray:
    """Which obstacles stand in the arena rather than parked, (...) bool from positions (..., 3)."""
    return np.asarray(mocap_pos)[..., 2] > PARK[2] / 2


def nearest_obstacle_distance(pos_xy: np.ndarray, mocap_pos: np.ndarray, mocap_quat: np.ndarray,
                              half_sizes: np.ndarray) -> np.ndarray:
    """Distance (m) in the ground plane from each robot centre to its nearest placed obstacle's footprint box.

    pos_xy (n, 2); mocap_pos (n, m, 3) and mocap_quat (n, m, 4) the obstacles' poses (yaw-only quaternions);
    half_sizes (m, 2 or 3) their half extents (m). Returns (n,): negative inside a footprint, inf with no
    obstacle placed. Heights are ignored: a low curb counts as much as a post.
    """
    pos_xy, mocap_pos, q = (np.asarray(a, dtype=np.float64) for a in (pos_xy, mocap_pos, mocap_quat))
    d = pos_xy[:, None, :] - mocap_pos[..., :2]  # (n, m, 2) world offset from each obstacle centre
    w, z = q[..., 0], q[..., 3]
    c, s = w * w - z * z, 2 * w * z  # cos and sin of the yaw of q = (cos(yaw/2), 0, 0, sin(yaw/2))
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)  # R(-yaw) d
    excess = np.abs(local) - np.asarray(half_sizes, dtype=np.float64)[:, :2]  # > 0 outside along that axis
    outside = np.linalg.norm(np.maximum(excess, 0.0), axis=-1)
    dist = outside + np.minimum(excess.max(axis=-1), 0.0)  # signed distance to a box: negative inside
    return np.where(is_placed(mocap_pos), dist, np.inf).min(axis=-1, initial=np.inf)


def obstacle_tops(points_xy: np.ndarray, mocap_pos: np.ndarray, mocap_quat: np.ndarray,
                  half_sizes: np.ndarray) -> np.ndarray:
    """Height (m) of the tallest obstacle standing on each ground point, 0 where none does.

    points_xy (n, K, 2) world points; mocap_pos (n, k, 3), mocap_quat (n, k, 4) the poses of k obstacles per robot
    (yaw-only quaternions; parked ones stand nowhere in the arena); half_sizes (n, k, 3) their half extents (m).
    Returns (n, K). An obstacle stands on the ground: its top is twice its half height."""
    d = points_xy[:, :, None, :] - mocap_pos[:, None, :, :2]  # (n, K, k, 2)
    w, z = mocap_quat[:, None, :, 0], mocap_quat[:, None, :, 3]
    c, s = w * w - z * z, 2 * w * z
    hx, hy = half_sizes[:, None, :, 0], half_sizes[:, None, :, 1]
    inside = (np.abs(c * d[..., 0] + s * d[..., 1]) <= hx) & (np.abs(-s * d[..., 0] + c * d[..., 1]) <= hy)
    tops = np.where(inside, 2 * half_sizes[:, None, :, 2], 0.0)
    return tops[..., 0] if tops.shape[-1] == 1 else tops.max(axis=-1, initial=0.0)


class Arena:
    """The arena's obstacles in a compiled model: ids found by name once, per-episode placement, contact counts.

    Obstacle arrays (pos, quat, half_sizes, ...) run over the m pool bodies in mocap id order: with no other
    mocap bodies in the model (the usual case) index j is mocap id j, so they are the model's mocap arrays.
    """

    def __init__(self, model: mujoco.MjModel, cfg: ArenaConfig) -> None:
        if not cfg.enabled:
            raise LegkitError("task.arena.enabled is false: there is no arena to place")
        names, kinds = [], []
        for kind in KINDS:
            for i in range(cfg.count(kind) * cfg.pool):
                names.append(body_name(kind, i))
                kinds.append(kind)
        body_ids = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in names], dtype=np.intp)
        missing = [n for n, b in zip(names, body_ids) if b < 0 or model.body_mocapid[b] < 0]
        if missing:
            raise LegkitError(f"the model has no mocap body '{missing[0]}' ({len(missing)} of {len(names)} arena "
                              "obstacles missing): build the scene with sim.arena.add_to_spec and this task.arena")
        order = np.argsort(model.body_mocapid[body_ids], kind="stable")
        self.cfg = cfg
        """The config the arena was built from."""
        self.names = [names[j] for j in order]
        """Obstacle body names, (m,)."""
        self.kinds = np.array([kinds[j] for j in order])
        """Kind of each obstacle (box, low, narrow), (m,)."""
        self.body_ids = body_ids[order]
        """Body ids, (m,)."""
        self.mocap_ids = model.body_mocapid[self.body_ids].astype(np.intp)
        """Mocap ids, (m,) ascending."""
        self.geom_ids = np.array([model.body_geomadr[b] for b in self.body_ids], dtype=np.intp)
        """Each obstacle's box geom, (m,)."""
        self.half_sizes = model.geom_size[self.geom_ids].copy()
        """Half extents (x, y, z) in m of each obstacle's box, (m, 3)."""
        self.radius = np.linalg.norm(self.half_sizes[:, :2], axis=1)
        """Footprint circle radius (m): half the diagonal of the footprint box, (m,)."""
        self.nmocap = model.nmocap
        """Mocap bodies in the model (the arena's and any others)."""
        self.map_grid = cfg.map_grid()
        """The `obstacle_map` points (K, 2) in the body frame (m)."""
        self._map_reach = float(np.linalg.norm(self.map_grid, axis=1).max(initial=0.0))  # farthest point (m)
        self._model = model
        sensors = [f"{n}_touch" for n in self.names]
        if cfg.walls:
            sensors += [f"arena_wall_{s}_touch" for s in WALL_SIDES]
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, n) for n in sensors]
        self.touch_adr = np.array([model.sensor_adr[i] for i in ids], dtype=np.intp) if min(ids, default=-1) >= 0 \
            else None
        """sensordata index of each obstacle's, then each wall's contact sensor; None when the scene was built
        without `robot_body`."""

    def place(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """New layouts for `n` robots: positions (n, m, 3) m and quaternions (n, m, 4).

        For each robot: per kind, `count` pool bodies chosen at random; each stands on the ground (z = half its
        height) at a uniform position with its footprint circle inside the arena, outside clear_radius of the
        origin and `spacing` clear of the others' circles (placed largest first), with a uniform yaw. The
        others are parked at PARK. Vectorized over robots: one loop over obstacles.
        """
        m, half = len(self.names), self.cfg.size / 2
        pos = np.tile(np.array(PARK), (n, m, 1))
        quat = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (n, m, 1))
        chosen = []
        for kind in KINDS:
            members = np.flatnonzero(self.kinds == kind)
            pick = np.argsort(rng.random((n, members.size)), axis=1)[:, : self.cfg.count(kind)]
            chosen.append(members[pick])
        slots = np.concatenate(chosen, axis=1)  # (n, k) obstacle indices to place
        if slots.shape[1] == 0:
            return pos, quat
        slots = np.take_along_axis(slots, np.argsort(-self.radius[slots], axis=1, kind="stable"), axis=1)
        rows = np.arange(n)
        centres = np.full((n, slots.shape[1], 2), np.inf)  # placed so far; inf: none yet
        for j in range(slots.shape[1]):
            r = self.radius[slots[:, j]]  # (n,)
            gap = self.radius[slots[:, :j]] + r[:, None] + self.cfg.spacing  # (n, j) centre distances needed
            todo = rows
            for _ in range(_TRIES):
                lim = (half - r[todo])[:, None, None]
                cand = rng.uniform(-1.0, 1.0, (todo.size, _CANDIDATES, 2)) * lim  # (t, C, 2)
                ok = np.linalg.norm(cand, axis=-1) >= self.cfg.clear_radius + r[todo, None]
                if j:
                    dist = np.linalg.norm(cand[:, :, None, :] - centres[todo, None, :j, :], axis=-1)  # (t, C, j)
                    ok &= (dist >= gap[todo, None, :]).all(axis=-1)
                hit = ok.any(axis=1)
                first = ok.argmax(axis=1)
                centres[todo[hit], j] = cand[hit, first[hit]]
                todo = todo[~hit]
                if todo.size == 0:
                    break
            if todo.size:
                raise LegkitError(f"could not place {slots.shape[1]} obstacles in task.arena.size = {self.cfg.size} "
                                  f"m with task.arena.spacing = {self.cfg.spacing} m after "
                                  f"{_TRIES * _CANDIDATES} tries; raise size or lower the counts or spacing")
        z = self.half_sizes[slots, 2]
        pos[rows[:, None], slots] = np.concatenate([centres, z[..., None]], axis=-1)
        quat[rows[:, None], slots] = yaw_quat(rng.uniform(0.0, 2 * np.pi, slots.shape))
        return pos, quat

    def _columns(self, spec: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns of the obstacles' positions (m, 3) and quaternions (m, 4) in a row packed under `spec`."""
        pos_bit, quat_bit = int(mujoco.mjtState.mjSTATE_MOCAP_POS), int(mujoco.mjtState.mjSTATE_MOCAP_QUAT)
        if spec & MOCAP_SPEC != MOCAP_SPEC:
            raise LegkitError(f"the packed state spec {spec} holds no mocap poses: the obstacles need "
                              "mjSTATE_MOCAP_POS and mjSTATE_MOCAP_QUAT (MOCAP_SPEC); mjSTATE_FULLPHYSICS has neither")
        where = state_slices(self._model, spec)
        ids = self.mocap_ids[:, None]
        return where[pos_bit].start + 3 * ids + np.arange(3), where[quat_bit].start + 4 * ids + np.arange(4)

    def write(self, rows: np.ndarray, pos: np.ndarray, quat: np.ndarray, spec: int = MOCAP_SPEC,
              env_ids: np.ndarray | None = None) -> None:
        """Write obstacle poses pos (k, m, 3), quat (k, m, 4) in place into `rows` packed under `spec`.

        rows: (N, ..., size of spec), e.g. (num_envs, nmocap * 7) under MOCAP_SPEC or a rollout control buffer
        (num_envs, nstep, nc) whose control_spec holds MOCAP_SPEC (every step gets the same pose); rows
        `env_ids` (k,) are written, all N when None. Other mocap bodies' columns stay as they are.
        """
        pos_cols, quat_cols = self._columns(spec)
        env_ids = np.arange(rows.shape[0]) if env_ids is None else np.asarray(env_ids, dtype=np.intp)
        mid = [np.arange(s) for s in rows.shape[1:-1]]
        k, pad = env_ids.size, (1,) * len(mid)
        for cols, value in ((pos_cols, pos), (quat_cols, quat)):
            rows[np.ix_(env_ids, *mid, cols.ravel())] = np.asarray(value).reshape(k, *pad, -1)

    def read(self, rows: np.ndarray, spec: int = MOCAP_SPEC) -> tuple[np.ndarray, np.ndarray]:
        """Obstacle poses from rows (N, size of spec) packed under `spec`: pos (N, m, 3), quat (N, m, 4), copies."""
        pos_cols, quat_cols = self._columns(spec)
        return rows[:, pos_cols], rows[:, quat_cols]

    def contacts(self, sensordata: np.ndarray, walls: bool = True) -> np.ndarray:
        """Robot-obstacle contacts (with `walls`, robot-wall contacts too) counted by the arena's contact
        sensors, from sensordata (..., nsensordata); returns (...) contact counts (0: not touching)."""
        if self.touch_adr is None:
            raise LegkitError("the arena has no contact sensors: build the scene with "
                              "sim.arena.add_to_spec(spec, cfg, robot_body=<the robot's root body>)")
        adr = self.touch_adr if walls else self.touch_adr[: len(self.names)]
        return np.asarray(sensordata)[..., adr].sum(axis=-1)

    @property
    def contact_kinds(self) -> tuple[str, ...]:
        """What `contacts_by_kind` tells apart: each obstacle kind placed (box, low, narrow), then "wall"."""
        placed = tuple(k for k in KINDS if self.cfg.count(k) > 0)
        return placed + (("wall",) if self.cfg.walls else ())

    def contacts_by_kind(self, sensordata: np.ndarray) -> np.ndarray:
        """Robot-obstacle contact counts per `contact_kinds` entry from sensordata (..., nsensordata): (..., kinds)."""
        if self.touch_adr is None:
            self.contacts(sensordata)  # raises: no contact sensors
        data, m = np.asarray(sensordata), len(self.names)
        out = np.empty(data.shape[:-1] + (len(self.contact_kinds),), dtype=data.dtype)
        for j, kind in enumerate(self.contact_kinds):
            adr = self.touch_adr[m:] if kind == "wall" else self.touch_adr[:m][self.kinds == kind]
            out[..., j] = data[..., adr].sum(axis=-1)
        return out

    def wall_distance(self, pos_xy: np.ndarray) -> np.ndarray:
        """Distance (m) from robot centres pos_xy (n, 2) to the nearest wall's inner face, (n,); inf without walls."""
        if not self.cfg.walls:
            return np.full(len(pos_xy), np.inf)
        return self.cfg.size / 2 - np.abs(np.asarray(pos_xy, dtype=np.float64)).max(axis=-1)

    def height_map(self, base_xy: np.ndarray, yaw: np.ndarray, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """The `obstacle_map` observation term: what stands on the ground around each robot, (n, K) m.

        base_xy (n, 2) the robots' centres, yaw (n,) their headings (rad); pos (n, m, 3), quat (n, m, 4) the
        obstacle poses (`read`). At each point of `map_grid` turned by the robot's yaw: the height of the
        tallest obstacle there, the wall height beyond a wall's inner face, else 0. Only the (robot, obstacle)
        pairs whose footprint circle reaches the grid are tested: a few per robot, whatever the pool's size."""
        base_xy, yaw = np.asarray(base_xy, dtype=np.float64), np.asarray(yaw, dtype=np.float64)
        grid = self.map_grid
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        px, py = base_xy[:, :1] + c * grid[:, 0] - s * grid[:, 1], base_xy[:, 1:] + s * grid[:, 0] + c * grid[:, 1]
        centre = np.linalg.norm(pos[..., :2] - base_xy[:, None, :], axis=-1)  # (n, m); parked ones are far off
        robot, obstacle = np.nonzero(centre <= self._map_reach + self.radius[None, :])  # robot ascending
        tops = np.zeros(px.shape)
        if robot.size:
            pair = obstacle_tops(np.stack([px[robot], py[robot]], axis=-1), pos[robot, obstacle][:, None],
                                 quat[robot, obstacle][:, None], self.half_sizes[obstacle][:, None])  # (pairs, K)
            first = np.flatnonzero(np.r_[True, robot[1:] != robot[:-1]])  # each robot's first pair
            tops[robot[first]] = np.maximum.reduceat(pair, first, axis=0)
        if self.cfg.walls:
            beyond = np.maximum(np.abs(px), np.abs(py)) >= self.cfg.size / 2
            np.maximum(tops, np.where(beyond, self.cfg.wall_height, 0.0), out=tops)
        return tops

    def clearance(self, pos_xy: np.ndarray, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Distance (m) from robot centres (n, 2) to the nearest obstacle footprint or wall, (n,)."""
        return np.minimum(nearest_obstacle_distance(pos_xy, pos, quat, self.half_sizes), self.wall_distance(pos_xy))
