"""The ground under each robot: where it spawns, how high the ground is under it, what its height scan reads,
and the terrain curriculum that moves it between difficulty rows.

On a plane (task.terrain.kind = plane, every task's default) robots spawn at the origin and the ground is
at z = 0. On a terrain (sim/terrain.py) each robot has its own tile: during training the terrain curriculum
(legged_gym's, per robot) moves robots that walked far to a harder row and those that fell or stalled to an
easier one. In evaluation (`task.terrain_curriculum.enabled` off, as `undisturbed` sets it) every robot starts
on row `eval_row` at its first column, heading +x along the row: every policy compared walks over the same
tiles of one difficulty, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from legkit import LegkitError
from legkit.sim.terrain import Terrain, TerrainConfig, TerrainCurriculum, scan_grid
from legkit.tasks.state import quat_yaw


@dataclass(frozen=True)
class TerrainCurriculumConfig:
    """Per-robot terrain levels (used only on a tiled terrain)."""

    enabled: bool = True
    """Move robots between rows by how they walked (training). Off: every robot on `eval_row`."""
    max_init_level: int = 0
    """Robots start on random rows in [0, max_init_level]."""
    promote_distance: float = 0.0
    """A robot that walked farther than this (m) in its episode moves one row harder (0: half a tile)."""
    demote_fraction: float = 0.5
    """A robot that fell, or walked less than this fraction of its commanded distance, moves one row easier."""
    eval_row: int = -1
    """The row of evaluation, comparison and videos (-1: the hardest)."""
    spawn_jitter: float = 0.25
    """Uniform xy offset (m) of the spawn point around the tile centre, within the flat platform."""


@dataclass(frozen=True)
class HeightScanConfig:
    """The `height_scan` observation term: base height above the ground at a grid of points around the base
    (legged_gym's measured heights), in the base's heading frame."""

    length: float = 1.2
    """Extent of the grid along the heading (m), centred on the base."""
    width: float = 0.8
    """Extent across (m)."""
    spacing: float = 0.2
    """Grid spacing (m)."""


class Ground:
    """Spawn points, ground height under each base, height scans and the terrain curriculum of one batch."""

    def __init__(self, terrain_cfg: TerrainConfig, curriculum: TerrainCurriculumConfig, scan: HeightScanConfig,
                 num_envs: int, rng: np.random.Generator):
        self.terrain: Terrain | None = None if terrain_cfg.kind == "plane" else Terrain(terrain_cfg)
        self.cfg = curriculum
        self.num_envs = num_envs
        self.rng = rng
        self.grid = scan_grid(scan.length, scan.width, scan.spacing)
        """(K, 2) body-frame offsets of the height scan."""
        self.origin = np.zeros((num_envs, 3))
        """Where each robot's current episode started: its tile centre (x, y, ground z)."""
        self.commanded_distance = np.zeros(num_envs)
        """Distance the commands asked for since each robot's reset (m): |command xy| x time."""
        self.curriculum: TerrainCurriculum | None = None
        t = self.terrain
        if t is None:
            return
        rows, cols = t.origins.shape[:2]
        self.eval_row = rows - 1 if curriculum.eval_row == -1 else curriculum.eval_row
        if not 0 <= self.eval_row < rows:
            raise LegkitError(f"invalid task.terrain_curriculum.eval_row = {curriculum.eval_row}: the terrain has "
                              f"{rows} rows; valid: 0..{rows - 1}, or -1 for the hardest")
        if not 0 <= curriculum.max_init_level < rows:
            raise LegkitError(f"invalid task.terrain_curriculum.max_init_level = {curriculum.max_init_level}: "
                              f"valid: 0..{rows - 1}")
        if curriculum.enabled and rows > 1:
            promote = curriculum.promote_distance or t.cfg.tile_size / 2
            self.curriculum = TerrainCurriculum(num_envs, rows, cols, rng, curriculum.max_init_level,
                                                promote_distance=promote, demote_fraction=curriculum.demote_fraction)

    def spawn(self, ids: np.ndarray, xy: np.ndarray, judged: np.ndarray, fell: np.ndarray) -> np.ndarray:
        """New origins (k, 3) for robots `ids`, whose ending episodes ended at base position `xy` (k, 2);
        `judged` of them really ended (a fall or the time limit) and move on the curriculum, `fell` fell."""
        if self.terrain is None:
            self.origin[ids] = 0.0
            self.commanded_distance[ids] = 0.0
            return self.origin[ids]
        t = self.terrain
        rows, cols = t.origins.shape[:2]
        if self.curriculum is not None:
            if judged.any():
                done = ids[judged]
                walked = np.linalg.norm(xy[judged] - self.origin[done, :2], axis=1)
                self.curriculum.update(done, walked, self.commanded_distance[done], fell[judged])
            row, col = self.curriculum.level[ids], self.curriculum.col[ids]
        else:
            row, col = np.full(len(ids), self.eval_row), np.zeros(len(ids), dtype=np.int64)
        centre = t.origins[row, col]
        jitter = self.rng.uniform(-self.cfg.spawn_jitter, self.cfg.spawn_jitter, (len(ids), 2))
        self.origin[ids, :2] = centre[:, :2] + jitter
        self.origin[ids, 2] = t.height_at(self.origin[ids, 0], self.origin[ids, 1])
        self.commanded_distance[ids] = 0.0
        return self.origin[ids]

    @property
    def fixed_heading(self) -> bool:
        """Whether robots start heading +x (evaluation on a terrain row) instead of the task's random yaw."""
        return self.terrain is not None and self.curriculum is None and self.terrain.cols > 1

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height (m) at world (x, y)."""
        return np.zeros(np.shape(x)) if self.terrain is None else self.terrain.height_at(x, y)

    def scan(self, pos: np.ndarray, yaw: np.ndarray) -> np.ndarray:
        """Base height above the ground at each scan point, (N, K)."""
        if self.terrain is None:
            return np.repeat(pos[:, 2:3], len(self.grid), axis=1)
        return self.terrain.height_scan(pos, yaw, self.grid)

    def update(self, s, qpos: np.ndarray) -> None:
        """Before the kinematics of a new state `qpos` (N, nq): the ground under each base (heights are measured
        from it), and the height scan when the task observes it."""
        if self.terrain is not None:
            s.ground_height[:] = self.terrain.height_at(qpos[:, 0], qpos[:, 1])
        if s.height_scan.shape[1]:
            s.height_scan[:] = self.scan(qpos[:, :3], quat_yaw(qpos[:, 3:7]))

    def step(self, command: np.ndarray, dt: float) -> None:
        """Count the distance the commands ask for (the terrain curriculum's demotion rule)."""
        if self.curriculum is not None:
            self.commanded_distance += np.hypot(command[:, 0], command[:, 1]) * dt

    def off_edge(self, xy: np.ndarray, margin: float = 1.0) -> np.ndarray:
        """Robots within `margin` (m) of the field's edge, (N,) bool: MuJoCo has no ground beyond it, so their
        episodes end there (a truncation, as at the time limit: walking far is no failure)."""
        if self.terrain is None:
            return np.zeros(len(xy), dtype=bool)
        hx, hy = self.terrain.half_size
        return (np.abs(xy[:, 0]) > hx - margin) | (np.abs(xy[:, 1]) > hy - margin)

    def levels(self, ids: np.ndarray) -> np.ndarray:
        """Terrain row of each robot's current episode (the evaluation row without a curriculum; 0 on a plane)."""
        if self.curriculum is not None:
            return self.curriculum.level[ids].copy()
        return np.full(len(ids), self.eval_row if self.terrain is not None else 0)

    def restore_levels(self, levels: list[int]) -> bool:
        """Put robots back on the terrain rows a checkpoint saved (a resume); False when there is no curriculum.
        A batch of another size takes the saved levels in turn."""
        if self.curriculum is None or not levels:
            return False
        rows = self.terrain.origins.shape[0]
        saved = np.clip(np.asarray(levels, dtype=np.int64), 0, rows - 1)
        self.curriculum.level[:] = np.resize(saved, self.num_envs)
        return True

    def scalars(self) -> dict[str, float]:
        """What TensorBoard shows: the mean terrain level."""
        return {} if self.curriculum is None else {"terrain_level": float(self.curriculum.mean_level())}
