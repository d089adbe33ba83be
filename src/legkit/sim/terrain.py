"""Terrain: a MuJoCo height field made of tiles in difficulty rows, or loaded from a heightmap file.

World frame (m): the field is centred on the world origin, x along the tile columns, y along the
difficulty rows (row 0, the easiest, at -y). `heights[j, i]` is the ground at the vertex
x = -half_x + i * cell, y = -half_y + j * cell: row j along y, column i along x, as MuJoCo stores an
hfield (its data row 0 at -y). MuJoCo splits every cell into two triangles along the diagonal from
the cell's (-x, -y) corner to its (+x, +y) corner; `Terrain.height_at` interpolates on the same
triangles, so it is the height of the collision surface (up to the hfield's float32 rounding).
Outside the field `height_at` reports 0, the border height, although MuJoCo has no ground there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from legkit import LegkitError

Range = tuple[float, float]
KINDS = ("plane", "tiles", "file")
TILE_KINDS = ("flat", "rough", "fractal", "slope_up", "slope_down", "stairs_up", "stairs_down", "blocks")
BASE_DEPTH = 1.0
"""Thickness (m) of the hfield's solid base below its lowest point."""


def _default_kinds() -> dict[str, float]:
    return {"rough": 2.0, "fractal": 2.0, "slope_up": 1.0, "slope_down": 1.0,
            "stairs_up": 2.0, "stairs_down": 2.0, "blocks": 2.0}


@dataclass(frozen=True)
class TerrainConfig:
    """The ground of a task (`task.terrain.*`). Difficulty ranges are (row 0, last row) pairs, linear in the row."""

    kind: str = "plane"
    """plane: flat ground plane, no height field; tiles: generated tile grid; file: heightmap from `file`."""
    rows: int = 6
    """Difficulty rows along y; row 0 easiest, row rows-1 hardest (with one row: the easiest values)."""
    cols: int = 6
    """Tiles per row along x; each column holds one tile kind."""
    tile_size: float = 4.0
    """Side (m) of a square tile; a whole number of cells."""
    cell: float = 0.1
    """Horizontal resolution (m) of the height field; coarse against the 0.022 m Go2 foot keeps contacts few."""
    border: float = 2.0
    """Flat border (m, at height 0, rounded to whole cells) around the tile grid."""
    kinds: dict[str, float] = field(default_factory=_default_kinds)
    """Weights of the tile kinds across columns (normalized by their sum; largest-remainder rounding to whole
    columns, ties to the first listed). Names: flat, rough, fractal, slope_up, slope_down, stairs_up,
    stairs_down, blocks. The default gives 6 columns rough, fractal, slope_up, stairs_up, stairs_down, blocks."""
    rough_amplitude: Range = (0.01, 0.06)
    """rough: peak-to-peak (m) of uniform random noise at every vertex, heights in [-a/2, a/2]."""
    fractal_amplitude: Range = (0.02, 0.10)
    """fractal: peak-to-peak (m) of smooth multi-octave value noise, heights in [-a/2, a/2]."""
    fractal_wavelength: float = 2.0
    """fractal: wavelength (m) of the coarsest octave; each next octave halves it at half the amplitude."""
    fractal_octaves: int = 4
    """fractal: number of octaves."""
    slope: Range = (0.0, 0.35)
    """slope_up / slope_down: gradient (rise over run, dimensionless; 0.35 is about 19 degrees) of a pyramid
    rising to (slope_up) or sinking to (slope_down) the tile centre from height 0 at the tile edge."""
    step_height: Range = (0.03, 0.15)
    """stairs_up / stairs_down: height (m) of each step of pyramid stairs rising to / sinking to the centre."""
    step_width: float = 0.35
    """stairs: tread depth (m); step edges fall on cell vertices, and a cell edge is a one-cell ramp."""
    block_height: Range = (0.02, 0.12)
    """blocks: height h (m) of random rectangles; each is raised by one of -h, -h/2, h/2, h."""
    block_size: Range = (0.4, 1.0)
    """blocks: side lengths (m) of each rectangle, drawn uniformly in this range (not by row)."""
    block_count: int = 20
    """blocks: rectangles per tile."""
    platform: float = 1.0
    """Side (m) of the flat square at every tile centre where robots spawn."""
    file: str = ""
    """kind file: a .png (grey or RGB, 8 or 16 bit; image top at +y) or .npy (metres, row 0 at -y) heightmap."""
    file_cell: float = 0.1
    """kind file: metres per pixel (or per array entry)."""
    file_height: float = 0.1
    """kind file, PNG only: height (m) of the full grey range (255 or 65535); black is 0."""
    seed: int = 0
    """Generator seed (>= 0); the same config always builds the same terrain."""

    def __post_init__(self) -> None:
        def fail(key: str, rule: str) -> None:
            raise LegkitError(f"invalid task.terrain.{key} = {getattr(self, key)!r}: {rule}")

        if self.kind not in KINDS:
            fail("kind", f"valid: {', '.join(KINDS)}")
        for key in ("rows", "cols", "fractal_octaves"):
            if getattr(self, key) < 1:
                fail(key, "must be >= 1")
        for key in ("cell", "step_width", "file_cell", "file_height", "fractal_wavelength"):
            if not getattr(self, key) > 0:
                fail(key, "must be > 0")
        if not self.tile_size > self.cell or abs(self.tile_size / self.cell - round(self.tile_size / self.cell)) > 1e-6:
            fail("tile_size", f"must be a whole number (>= 2) of cells of {self.cell} m")
        for key in ("border", "block_count", "seed"):
            if getattr(self, key) < 0:
                fail(key, "must be >= 0")
        if not 0 <= self.platform < self.tile_size:
            fail("platform", f"must be in [0, tile_size = {self.tile_size}) m")
        bad = [k for k in self.kinds if k not in TILE_KINDS]
        if bad:
            raise LegkitError(f"unknown tile kind task.terrain.kinds.{bad[0]}; valid: {', '.join(TILE_KINDS)}")
        if any(w < 0 for w in self.kinds.values()) or not sum(self.kinds.values()) > 0:
            fail("kinds", "weights must be >= 0 with a positive sum")
        for key in ("rough_amplitude", "fractal_amplitude", "slope", "step_height", "block_height", "block_size"):
            lo, hi = getattr(self, key)
            if not 0 <= lo <= hi or (key == "block_size" and lo <= 0):
                fail(key, f"must satisfy {'0 <' if key == 'block_size' else '0 <='} easiest <= hardest")
        if self.kind == "file" and not self.file:
            fail("file", "kind 'file' needs a .png or .npy heightmap path")


class Terrain:
    """A height field in the world frame (see the module docstring) with its tiles' spawn origins.

    Robots spawn at `origins[level, col]` (vectorized over robots with a TerrainCurriculum's arrays).
    """

    def __init__(self, cfg: TerrainConfig) -> None:
        """Build the terrain `cfg` asks for: kind tiles generates the tile grid, kind file loads `cfg.file` as
        one tile centred on the origin (kind plane has no height field: the scene adds its ground plane)."""
        if cfg.kind == "tiles":
            heights, centres, kinds = generate_tiles(cfg)
            cell, tile_size = cfg.cell, round(cfg.tile_size / cfg.cell) * cfg.cell
        elif cfg.kind == "file":
            heights, cell = read_heightmap(cfg.file, cfg.file_height), cfg.file_cell
            centres, kinds = np.zeros((1, 1, 2)), np.array([["file"]])
            tile_size = (min(heights.shape) - 1) * cell
        else:
            raise LegkitError(f"task.terrain.kind '{cfg.kind}' has no height field; valid here: tiles, file")
        self.cfg = cfg
        """The config it was built from."""
        self.heights = heights
        """Ground height (m) at the vertices, (ny, nx): row j along y, column i along x (module docstring)."""
        self.cell = float(cell)
        """Vertex spacing (m)."""
        self.tile_size = float(tile_size)
        """Side (m) of a tile (of a file's field: its shorter side); the curriculum promotes at half of it."""
        ny, nx = heights.shape
        self.half_size = ((nx - 1) * self.cell / 2, (ny - 1) * self.cell / 2)
        """Half extent (m) of the field along x and y."""
        self.tile_kinds = kinds
        """Tile kind name of each (row, col), (rows, cols)."""
        self.rows, self.cols = kinds.shape
        z = self.height_at(centres[..., 0], centres[..., 1])
        self.origins = np.concatenate([centres, z[..., None]], axis=-1)
        """Spawn origin (x, y, ground z) of each tile centre, (rows, cols, 3) m."""

    def tile_origin(self, row: int, col: int) -> tuple[float, float, float]:
        """Centre (x, y, ground z) in m of tile (row, col)."""
        return tuple(float(v) for v in self.origins[row, col])

    def level_of(self, row: int | np.ndarray) -> float | np.ndarray:
        """Difficulty in [0, 1] of a row: 0 for row 0, 1 for the last row (0 with a single row)."""
        level = np.asarray(row) / max(self.rows - 1, 1)
        return float(level) if level.ndim == 0 else level

    def height_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height (m) of the hfield's collision surface at world (x, y); 0 outside the field."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        h = self.heights
        ny, nx = h.shape
        gx = (x + self.half_size[0]) / self.cell
        gy = (y + self.half_size[1]) / self.cell
        inside = (gx >= 0) & (gx <= nx - 1) & (gy >= 0) & (gy <= ny - 1)
        i = np.clip(np.floor(np.where(inside, gx, 0)).astype(np.intp), 0, nx - 2)
        j = np.clip(np.floor(np.where(inside, gy, 0)).astype(np.intp), 0, ny - 2)
        fx, fy = np.clip(gx - i, 0, 1), np.clip(gy - j, 0, 1)
        h00, h10, h01, h11 = h[j, i], h[j, i + 1], h[j + 1, i], h[j + 1, i + 1]
        # Triangle (00, 10, 11) below the diagonal 00-11 (fx >= fy), triangle (00, 01, 11) above it.
        z = np.where(fx >= fy, h00 + fx * (h10 - h00) + fy * (h11 - h10), h00 + fy * (h01 - h00) + fx * (h11 - h01))
        return np.where(inside, z, 0.0)

    def sample_heights(self, points_xy: np.ndarray) -> np.ndarray:
        """`height_at` for points (..., 2) m; returns (...)."""
        points_xy = np.asarray(points_xy, dtype=np.float64)
        return self.height_at(points_xy[..., 0], points_xy[..., 1])

    def height_scan(self, pos: np.ndarray, yaw: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Base height above the ground (m) at body-frame offsets `grid` (K, 2) turned by each robot's yaw (rad).

        pos (N, 3) base positions, yaw (N,); returns (N, K): pos z minus the ground height at each point.
        """
        pos, yaw, grid = np.asarray(pos, float), np.asarray(yaw, float), np.asarray(grid, float)
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        x = pos[:, :1] + c * grid[:, 0] - s * grid[:, 1]
        y = pos[:, 1:2] + s * grid[:, 0] + c * grid[:, 1]
        return pos[:, 2:3] - self.height_at(x, y)

    def add_to_spec(self, spec: mujoco.MjSpec, friction: float, name: str = "terrain") -> mujoco.MjsGeom:
        """Add the hfield asset and a world geom for it (ground collision class, checker material) to `spec`.

        MuJoCo scales data in [0, 1] by the elevation size[2] above the geom; the geom sits at the lowest
        height, so the surface's world z equals `heights` (negative heights included).
        """
        lo, hi = float(self.heights.min()), float(self.heights.max())
        span = hi - lo
        data = (self.heights - lo) / span if span > 0 else np.zeros_like(self.heights)
        ny, nx = self.heights.shape
        spec.add_hfield(name=name, size=[*self.half_size, span if span > 0 else 1.0, BASE_DEPTH],
                        nrow=ny, ncol=nx, userdata=data.ravel().tolist())
        tex = spec.add_texture(
            name=f"{name}_grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
            rgb1=[0.22, 0.26, 0.30], rgb2=[0.30, 0.34, 0.38], width=512, height=512,
        )
        mat = spec.add_material(name=f"{name}_grid", texrepeat=[2 * self.half_size[0], 2 * self.half_size[1]],
                                reflectance=0.05)
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
        return spec.worldbody.add_geom(
            name=name, type=mujoco.mjtGeom.mjGEOM_HFIELD, hfieldname=name, pos=[0, 0, lo], material=mat.name,
            contype=1, conaffinity=2, friction=[friction, 0.02, 0.01],
        )


def scan_grid(length: float = 1.6, width: float = 1.0, spacing: float = 0.1) -> np.ndarray:
    """Body-frame (x, y) offsets (K, 2) m of a height scan centred on the base, x outer and y inner:
    the default is legged_gym's 17 x 11 = 187 measured points."""
    x = np.linspace(-length / 2, length / 2, int(round(length / spacing)) + 1)
    y = np.linspace(-width / 2, width / 2, int(round(width / spacing)) + 1)
    gx, gy = np.meshgrid(x, y, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=-1)


def column_kinds(kinds: dict[str, float], cols: int) -> list[str]:
    """Tile kind of each column: whole columns in proportion to the weights (largest remainder)."""
    names = [k for k, w in kinds.items() if w > 0]
    quota = np.array([kinds[k] for k in names]) * cols / sum(kinds[k] for k in names)
    count = np.floor(quota).astype(int)
    extra = np.argsort(-(quota - count), kind="stable")[: cols - count.sum()]
    count[extra] += 1
    return [k for k, n in zip(names, count) for _ in range(n)]


def generate_tiles(cfg: TerrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows x cols tile grid with its flat border: heights (ny, nx) m, tile centres (rows, cols, 2) m and
    tile kinds (rows, cols). Tile (r, c) has its own generator seeded by (seed, r, c)."""
    n = int(round(cfg.tile_size / cfg.cell))
    pad = int(round(cfg.border / cfg.cell))
    heights = np.zeros((cfg.rows * n + 2 * pad + 1, cfg.cols * n + 2 * pad + 1))
    kinds = column_kinds(cfg.kinds, cfg.cols)
    u = np.arange(n) * cfg.cell  # tile-local vertex coordinates (m); the vertex at tile_size is the next tile's
    x, y = np.meshgrid(u, u)  # (n, n), y along axis 0 as in `heights`
    for r in range(cfg.rows):
        t = r / max(cfg.rows - 1, 1)
        for c, kind in enumerate(kinds):
            rng = np.random.default_rng([cfg.seed, r, c])
            tile = _TILES[kind](cfg, x, y, t, rng)
            heights[pad + r * n: pad + (r + 1) * n, pad + c * n: pad + (c + 1) * n] = tile
    rows_c = (np.arange(cfg.rows) - (cfg.rows - 1) / 2) * n * cfg.cell
    cols_c = (np.arange(cfg.cols) - (cfg.cols - 1) / 2) * n * cfg.cell
    centres = np.stack(np.meshgrid(cols_c, rows_c), axis=-1)  # (rows, cols, 2): x from col, y from row
    return heights, centres, np.array([kinds] * cfg.rows)


def read_heightmap(path: str, height: float) -> np.ndarray:
    """Heights (ny, nx) m, row 0 at -y, from a PNG (grey level / full range * `height`; the image's top row is
    +y; RGB counts by luminance, alpha is ignored) or a .npy of metres (row 0 at -y)."""
    file = Path(path).expanduser()
    if file.suffix.lower() not in (".png", ".npy"):
        raise LegkitError(f"invalid task.terrain.file '{path}': must be a .png or .npy heightmap")
    if not file.is_file():
        raise LegkitError(f"invalid task.terrain.file '{path}': no such file")
    if file.suffix.lower() == ".npy":
        heights = np.load(file).astype(np.float64)
    else:
        import imageio.v3 as iio

        img = np.asarray(iio.imread(file))
        full = float(np.iinfo(img.dtype).max) if img.dtype.kind == "u" else 1.0
        grey = img.astype(np.float64)
        if grey.ndim == 3:  # RGB(A): drop alpha, ITU-R 601 luminance
            grey = grey[..., :3] @ np.array([0.299, 0.587, 0.114]) if grey.shape[-1] >= 3 else grey[..., 0]
        heights = (grey / full * height)[::-1]  # image row 0 is the top edge, +y
    if heights.ndim != 2 or min(heights.shape) < 2 or not np.isfinite(heights).all():
        raise LegkitError(f"invalid task.terrain.file '{path}': a heightmap must be a finite 2-D array of at "
                          f"least 2 x 2, got shape {heights.shape}")
    return np.ascontiguousarray(heights)


# Tile generators: (cfg, x, y (n, n) tile-local m, difficulty t in [0, 1], rng) -> heights (n, n) m.

def _lerp(r: Range, t: float) -> float:
    return r[0] + (r[1] - r[0]) * t


def _ring(cfg: TerrainConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance (m) outward from the platform's edge, square (Chebyshev) rings; <= 0 on the platform."""
    half = cfg.tile_size / 2
    return np.maximum(np.abs(x - half), np.abs(y - half)) - cfg.platform / 2


def _flat(cfg, x, y, t, rng) -> np.ndarray:
    return np.zeros_like(x)


def _rough(cfg, x, y, t, rng) -> np.ndarray:
    a = _lerp(cfg.rough_amplitude, t)
    return rng.uniform(-a / 2, a / 2, x.shape) * (_ring(cfg, x, y) > 1e-9)


def _fractal(cfg, x, y, t, rng) -> np.ndarray:
    noise = np.zeros_like(x)
    for k in range(cfg.fractal_octaves):
        wave = cfg.fractal_wavelength / 2 ** k
        gx, gy = x / wave, y / wave
        lattice = rng.uniform(-1, 1, (int(gy.max()) + 2, int(gx.max()) + 2))
        i, j = gx.astype(int), gy.astype(int)
        sx, sy = gx - i, gy - j
        sx, sy = sx * sx * (3 - 2 * sx), sy * sy * (3 - 2 * sy)  # smoothstep: C1 across lattice cells
        top = lattice[j, i] * (1 - sx) + lattice[j, i + 1] * sx
        bottom = lattice[j + 1, i] * (1 - sx) + lattice[j + 1, i + 1] * sx
        noise += (top * (1 - sy) + bottom * sy) / 2 ** k
    a = _lerp(cfg.fractal_amplitude, t)
    span = np.ptp(noise)
    noise = (noise - noise.min()) / span * a - a / 2 if span > 0 else noise * 0
    return noise * np.clip(_ring(cfg, x, y) / 0.5, 0, 1)  # fades to 0 over 0.5 m around the platform


def _slope(sign: float):
    def tile(cfg, x, y, t, rng) -> np.ndarray:
        ring = np.clip(_ring(cfg, x, y), 0, None)
        return sign * _lerp(cfg.slope, t) * (cfg.tile_size / 2 - cfg.platform / 2 - ring)
    return tile


def _stairs(sign: float):
    def tile(cfg, x, y, t, rng) -> np.ndarray:
        inward = cfg.tile_size / 2 - (_ring(cfg, x, y) + cfg.platform / 2)  # from the tile edge (m)
        steps = np.floor((cfg.tile_size - cfg.platform) / 2 / cfg.step_width + 1e-9)
        level = np.minimum(np.floor(inward / cfg.step_width + 1e-9), steps)  # the platform is the top step
        return sign * _lerp(cfg.step_height, t) * level
    return tile


def _blocks(cfg, x, y, t, rng) -> np.ndarray:
    h = _lerp(cfg.block_height, t)
    out = np.zeros_like(x)
    for _ in range(cfg.block_count):
        w, d = rng.uniform(*cfg.block_size, 2)
        x0, y0 = rng.uniform(0, cfg.tile_size - w), rng.uniform(0, cfg.tile_size - d)
        inside = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + d)
        out[inside] = h * rng.choice([-1.0, -0.5, 0.5, 1.0])
    return out * (_ring(cfg, x, y) > 1e-9)


_TILES = {"flat": _flat, "rough": _rough, "fractal": _fractal, "slope_up": _slope(1.0), "slope_down": _slope(-1.0),
          "stairs_up": _stairs(1.0), "stairs_down": _stairs(-1.0), "blocks": _blocks}


class TerrainCurriculum:
    """Per-robot terrain level (row) and column, moved by legged_gym's rule at each robot's reset."""

    def __init__(self, num_envs: int, rows: int, cols: int, rng: np.random.Generator, max_init_level: int = 0,
                 promote_distance: float = 2.0, demote_fraction: float = 0.5) -> None:
        """Robots start at random columns and random levels in [0, max_init_level] (clipped to the rows).

        promote_distance (m): walked distance that moves a robot one row harder, usually tile_size / 2
        (it has left its tile's centre for the next one). demote_fraction: a robot that walked less than
        this fraction of its commanded distance moves one row easier.
        """
        if rows < 1 or cols < 1 or max_init_level < 0:
            raise LegkitError(f"invalid terrain curriculum: rows {rows}, cols {cols} must be >= 1 and "
                              f"max_init_level {max_init_level} >= 0")
        self.rows, self.cols, self.rng = rows, cols, rng
        self.promote_distance, self.demote_fraction = promote_distance, demote_fraction
        self.level = rng.integers(0, min(max_init_level, rows - 1) + 1, num_envs)
        """Row (difficulty level) of each robot, (num_envs,) int."""
        self.col = rng.integers(0, cols, num_envs)
        """Column (tile kind) of each robot, (num_envs,) int."""

    def update(self, env_ids: np.ndarray, distance: np.ndarray, commanded_distance: np.ndarray,
               fell: np.ndarray) -> None:
        """Move the robots `env_ids` that are being reset, from their finished episodes (arrays like env_ids).

        - up one row: walked `distance` (m, in the plane, from the episode start) > promote_distance,
          without falling;
        - down one row: walked less than demote_fraction * commanded_distance (m, the command's speed
          times the episode time), or fell, and not promoted;
        - levels clip at row 0; a robot promoted from the hardest row goes to a random row, so the hardest
          row does not hoard the robots that solve it;
        - every reset robot gets a new random column.
        """
        env_ids = np.asarray(env_ids, dtype=np.intp)
        fell = np.asarray(fell, dtype=bool)
        up = (np.asarray(distance) > self.promote_distance) & ~fell
        down = ((np.asarray(distance) < self.demote_fraction * np.asarray(commanded_distance)) | fell) & ~up
        level = self.level[env_ids] + up.astype(int) - down.astype(int)
        solved = level >= self.rows
        level[solved] = self.rng.integers(0, self.rows, int(solved.sum()))
        self.level[env_ids] = np.clip(level, 0, self.rows - 1)
        self.col[env_ids] = self.rng.integers(0, self.cols, env_ids.size)

    def mean_level(self) -> float:
        """Mean row over all robots (for logging)."""
        return float(self.level.mean())
