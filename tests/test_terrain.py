"""Terrain: generated tiles and heightmap files as MuJoCo hfields, height queries, height scans, curriculum."""

from __future__ import annotations

import dataclasses

import imageio.v3 as iio
import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.robots import get_robot
from legkit.sim.scene import PhysicsConfig
from legkit.sim.terrain import TILE_KINDS, Terrain, TerrainConfig, TerrainCurriculum, column_kinds, scan_grid

ALL_KINDS = TerrainConfig(kind="tiles", rows=3, cols=8, tile_size=2.0, border=0.5, platform=0.6,
                          kinds={k: 1.0 for k in TILE_KINDS}, step_width=0.3)
"""A small field with one column of every tile kind, negative heights (stairs and slope down) included."""


def compiled(terrain: Terrain) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """A model of just the terrain, forwarded."""
    spec = mujoco.MjSpec()
    terrain.add_to_spec(spec, friction=0.8)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def ray_heights(model: mujoco.MjModel, data: mujoco.MjData, xy: np.ndarray) -> np.ndarray:
    """Ground height under each (x, y) by a ray cast straight down from z = 10 m."""
    geom = np.zeros(1, np.int32)
    down = np.array([0.0, 0.0, -1.0])
    dist = [mujoco.mj_ray(model, data, np.array([x, y, 10.0]), down, None, 1, -1, geom) for x, y in xy]
    return 10.0 - np.array(dist)


def test_height_at_matches_vertices_and_mujoco_rays():
    terrain = Terrain(ALL_KINDS)
    assert list(terrain.tile_kinds[0]) == list(TILE_KINDS)
    assert terrain.heights.min() < -0.1 and terrain.heights.max() > 0.1
    ny, nx = terrain.heights.shape
    x = -terrain.half_size[0] + np.arange(nx) * terrain.cell
    y = -terrain.half_size[1] + np.arange(ny) * terrain.cell
    gx, gy = np.meshgrid(x, y)
    np.testing.assert_allclose(terrain.height_at(gx, gy), terrain.heights, atol=1e-12)

    model, data = compiled(terrain)
    rng = np.random.default_rng(1)
    xy = rng.uniform(-1, 1, (3000, 2)) * terrain.half_size
    xy[:500] = (np.floor(xy[:500] / terrain.cell) + rng.uniform(0, 1, (500, 1))) * terrain.cell  # on diagonals
    np.testing.assert_allclose(terrain.sample_heights(xy), ray_heights(model, data, xy), atol=1e-6)
    assert terrain.height_at(terrain.half_size[0] + 1.0, 0.0) == 0.0  # outside the field: border height


def test_png_import_16_bit_grey_and_8_bit_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (7, 9), dtype=np.uint16)
    iio.imwrite(tmp_path / "grey.png", grey)
    cfg = TerrainConfig(kind="file", file=str(tmp_path / "grey.png"), file_cell=0.25, file_height=0.4)
    terrain = Terrain(cfg)
    # Image row 0 is the top edge (+y): heights row 0 (-y) is the image's last row.
    np.testing.assert_allclose(terrain.heights, grey[::-1] * 0.4 / 65535, atol=1e-12)
    assert terrain.half_size == pytest.approx((8 * 0.25 / 2, 6 * 0.25 / 2))
    assert terrain.height_at(-1.0, 0.75) == pytest.approx(grey[0, 0] * 0.4 / 65535)  # image top-left corner
    assert terrain.height_at(-0.75, 0.75) == pytest.approx(grey[0, 1] * 0.4 / 65535)  # one pixel (0.25 m) right
    assert terrain.tile_kinds.shape == (1, 1) and terrain.origins[0, 0, :2] == pytest.approx([0, 0])
    assert terrain.origins[0, 0, 2] == pytest.approx(grey[3, 4] * 0.4 / 65535)

    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299 of full grey
    rgb[0, 0] = 255
    iio.imwrite(tmp_path / "rgb.png", rgb)
    terrain = Terrain(dataclasses.replace(cfg, file=str(tmp_path / "rgb.png"), file_height=1.0))
    assert terrain.heights[-1, 0] == pytest.approx(1.0)
    assert terrain.heights[0, 0] == pytest.approx(0.299)


def test_npy_import_keeps_metres_and_row_order(tmp_path):
    heights = np.arange(12.0).reshape(3, 4) / 10 - 0.5
    np.save(tmp_path / "map.npy", heights)
    terrain = Terrain(TerrainConfig(kind="file", file=str(tmp_path / "map.npy"), file_cell=0.5))
    np.testing.assert_array_equal(terrain.heights, heights)
    assert terrain.height_at(-0.75, -0.5) == pytest.approx(heights[0, 0])  # row 0 at -y, column 0 at -x
    assert terrain.height_at(0.75, 0.5) == pytest.approx(heights[-1, -1])
    model, data = compiled(terrain)
    xy = np.random.default_rng(2).uniform(-1, 1, (200, 2)) * terrain.half_size
    np.testing.assert_allclose(terrain.sample_heights(xy), ray_heights(model, data, xy), atol=1e-6)


def test_missing_or_unsupported_file_names_the_key(tmp_path):
    with pytest.raises(LegkitError, match="task.terrain.file.*no such file"):
        Terrain(TerrainConfig(kind="file", file=str(tmp_path / "absent.png")))
    (tmp_path / "map.txt").write_text("1 2")
    with pytest.raises(LegkitError, match="task.terrain.file.*.png or .npy"):
        Terrain(TerrainConfig(kind="file", file=str(tmp_path / "map.txt")))


def test_same_config_same_terrain_and_seed_changes_it():
    a, b = Terrain(ALL_KINDS), Terrain(ALL_KINDS)
    np.testing.assert_array_equal(a.heights, b.heights)
    np.testing.assert_array_equal(a.origins, b.origins)
    c = Terrain(dataclasses.replace(ALL_KINDS, seed=1))
    assert not np.array_equal(a.heights, c.heights)
    with pytest.raises(LegkitError, match="task.terrain.kind 'plane' has no height field"):
        Terrain(TerrainConfig())  # the scene adds its ground plane


def test_default_columns_and_difficulty_grow_with_row():
    cfg = TerrainConfig(kind="tiles")
    terrain = Terrain(cfg)
    assert list(terrain.tile_kinds[0]) == ["rough", "fractal", "slope_up", "stairs_up", "stairs_down", "blocks"]
    assert column_kinds({"stairs_up": 3.0, "flat": 1.0}, 8) == ["stairs_up"] * 6 + ["flat"] * 2
    n, pad = 40, 20
    tile = lambda r, c: terrain.heights[pad + r * n: pad + (r + 1) * n, pad + c * n: pad + (c + 1) * n]  # noqa: E731
    ptp = np.array([[np.ptp(tile(r, c)) for c in range(cfg.cols)] for r in range(cfg.rows)])
    assert (np.diff(ptp, axis=0) >= 0).all(), ptp
    assert ptp[0, 0] <= 0.01 + 1e-12 and ptp[-1, 0] > 0.05  # rough: 1 cm at row 0, about 6 cm at the top
    assert ptp[0, 2] == 0.0  # slope 0 at row 0
    assert np.abs(tile(5, 0)).max() <= 0.03 and np.abs(tile(5, 1)).max() <= 0.05 + 1e-12
    stairs = terrain.origins[:, 3, 2]  # stairs_up: 4 steps of 3 to 15 cm below the platform
    np.testing.assert_allclose(stairs, 4 * np.linspace(0.03, 0.15, 6))
    np.testing.assert_allclose(terrain.origins[:, 4, 2], -stairs)
    assert terrain.level_of(0) == 0.0 and terrain.level_of(5) == 1.0


def test_every_platform_is_flat_at_its_origin():
    for cfg in (ALL_KINDS, TerrainConfig(kind="tiles", seed=3)):
        terrain = Terrain(cfg)
        offsets = np.linspace(-cfg.platform / 2, cfg.platform / 2, 9)
        dx, dy = np.meshgrid(offsets, offsets)
        o = terrain.origins
        h = terrain.height_at(o[..., 0, None, None] + dx, o[..., 1, None, None] + dy)  # (rows, cols, 9, 9)
        np.testing.assert_allclose(h, np.broadcast_to(o[..., 2, None, None], h.shape), atol=1e-12)
        assert terrain.tile_origin(1, 2) == tuple(o[1, 2])


def test_curriculum_moves_levels_by_walked_distance():
    rng = np.random.default_rng(0)
    cur = TerrainCurriculum(1000, rows=5, cols=3, rng=rng, max_init_level=2)
    assert set(np.unique(cur.level)) == {0, 1, 2} and set(np.unique(cur.col)) == {0, 1, 2}
    cur.level[:] = 2
    ids = np.arange(6)
    cur.update(ids, distance=np.array([3.0, 3.0, 0.1, 0.1, 1.5, 1.5]),
               commanded_distance=np.array([4.0, 4.0, 4.0, 0.0, 2.0, 2.0]),
               fell=np.array([False, True, False, False, False, True]))
    # far: up; far but fell: down; short of half the command: down; no command: stays; enough: stays; fell: down
    assert list(cur.level[:6]) == [3, 1, 1, 2, 2, 1]
    assert (cur.level[6:] == 2).all()

    cur.level[:] = 0
    cur.update(np.arange(1000), np.zeros(1000), np.ones(1000), np.zeros(1000, bool))
    assert (cur.level == 0).all() and cur.mean_level() == 0.0  # clipped at the easiest row
    cur.level[:] = 4
    cur.update(np.arange(1000), np.full(1000, 5.0), np.ones(1000), np.zeros(1000, bool))
    # Solvers of the hardest row are spread over all rows, not held at the top.
    assert set(np.unique(cur.level)) == {0, 1, 2, 3, 4}
    assert 1.5 < cur.mean_level() < 2.5
    assert set(np.unique(cur.col)) == {0, 1, 2}


def test_scan_grid_matches_legged_gym_points():
    grid = scan_grid()
    assert grid.shape == (187, 2)
    assert grid[0] == pytest.approx([-0.8, -0.5]) and grid[1] == pytest.approx([-0.8, -0.4])
    assert grid[-1] == pytest.approx([0.8, 0.5])


def test_height_scan_on_flat_tilted_and_stairs(tmp_path):
    flat = Terrain(dataclasses.replace(ALL_KINDS, kinds={"flat": 1.0}))
    pos = np.array([[0.3, -0.2, 0.32], [1.0, 1.0, 0.5]])
    scan = flat.height_scan(pos, np.array([0.0, 1.0]), scan_grid())
    assert scan.shape == (2, 187)
    np.testing.assert_allclose(scan, np.array([[0.32], [0.5]]) * np.ones((1, 187)))

    np.save(tmp_path / "tilted.npy", np.tile(0.2 * np.linspace(-2, 2, 41), (41, 1)))  # z = 0.2 x
    tilted = Terrain(TerrainConfig(kind="file", file=str(tmp_path / "tilted.npy"), file_cell=0.1))
    grid = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    scan = tilted.height_scan(np.array([[0.0, 0.0, 0.5]]), np.array([np.pi / 2]), grid)
    # yaw 90 deg: body x is world y, body y is world -x; (0.5, -0.5) lands at world (0.5, 0.5)
    np.testing.assert_allclose(scan, [[0.5, 0.7, 0.4]], atol=1e-12)

    cfg = TerrainConfig(kind="tiles", rows=1, cols=1, border=1.0, kinds={"stairs_up": 1.0}, step_width=0.4,
                        step_height=(0.1, 0.1))
    stairs = Terrain(cfg)
    origin = stairs.origins[0, 0]
    assert origin == pytest.approx([0.0, 0.0, 0.3])  # three 0.4 m treads up to the 1 m platform
    grid = np.array([[0.3, 0.0], [1.05, 0.0], [1.45, 0.0], [1.85, 0.0], [0.0, -1.45]])
    scan = stairs.height_scan(np.array([[0.0, 0.0, 0.8]]), np.array([np.pi / 4]), grid)
    c = np.cos(np.pi / 4)
    # yaw 45 deg: body (d, 0) lands at world (d c, d c), its Chebyshev distance from the centre d c
    ring = np.abs(grid @ np.array([[c, c], [-c, c]])).max(axis=1)  # (d c): 0.21, 0.74, 1.03, 1.31, 1.03
    expected = 0.8 - 0.1 * np.array([3, 3, 2, 1, 2])
    assert ring == pytest.approx([0.212, 0.742, 1.025, 1.308, 1.025], abs=1e-3)
    np.testing.assert_allclose(scan[0], expected, atol=1e-12)


@pytest.mark.parametrize("change, key", [
    (dict(kind="grass"), "kind"),
    (dict(rows=0), "rows"),
    (dict(cols=-1), "cols"),
    (dict(tile_size=0.05), "tile_size"),
    (dict(tile_size=4.05, cell=0.1), "tile_size"),
    (dict(cell=0.0), "cell"),
    (dict(border=-1.0), "border"),
    (dict(platform=4.0), "platform"),
    (dict(kinds={"lava": 1.0}), "kinds.lava"),
    (dict(kinds={"rough": -1.0, "flat": 2.0}), "kinds"),
    (dict(kinds={"rough": 0.0}), "kinds"),
    (dict(rough_amplitude=(-0.01, 0.05)), "rough_amplitude"),
    (dict(step_height=(0.2, 0.1)), "step_height"),
    (dict(block_size=(0.0, 1.0)), "block_size"),
    (dict(step_width=0.0), "step_width"),
    (dict(kind="file"), "file"),
    (dict(file_height=-1.0), "file_height"),
    (dict(seed=-1), "seed"),
])
def test_bad_config_names_the_key(change, key):
    with pytest.raises(LegkitError, match=rf"task\.terrain\.{key}\b") as err:
        TerrainConfig(**change)
    if key in ("kind", "kinds.lava"):
        assert "stairs_up" in str(err.value) or "tiles" in str(err.value)  # lists the valid names


def test_go2_stands_on_rough_terrain_without_sinking():
    robot = get_robot("go2")
    cfg = TerrainConfig(kind="tiles", rows=4, cols=1, kinds={"rough": 1.0})
    terrain = Terrain(cfg)
    spec = mujoco.MjSpec.from_file(str(robot.xml()))
    terrain.add_to_spec(spec, friction=0.8)
    model = spec.compile()
    physics = PhysicsConfig()
    model.opt.timestep = physics.timestep
    model.opt.iterations, model.opt.ls_iterations = physics.iterations, physics.ls_iterations
    data = mujoco.MjData(model)
    x, y, _ = terrain.tile_origin(3, 0)
    x, y = x + 1.0, y + 0.8  # off the spawn platform, on rough ground (row 3: 4.5 cm peak to peak)
    free = model.joint(model.body(robot.base_body).jntadr[0])
    data.qpos[free.qposadr[0]: free.qposadr[0] + 7] = [x, y, terrain.height_at(x, y) + robot.init_height, 1, 0, 0, 0]
    for name, angle in zip(robot.joints, robot.home_pose):
        data.qpos[model.joint(name).qposadr[0]] = angle
    for name, angle in zip(robot.actuators, robot.home_pose):
        data.ctrl[model.actuator(name).id] = angle
    feet = [model.geom(f).id for f in robot.feet]
    radius = model.geom_size[feet, 0]
    clearance = lambda: data.geom_xpos[feet, 2] - radius - terrain.height_at(*data.geom_xpos[feet, :2].T)  # noqa: E731
    mujoco.mj_forward(model, data)
    data.qpos[free.qposadr[0] + 2] += 0.01 - clearance().min()  # drop from 1 cm above the highest ground
    mujoco.mj_forward(model, data)
    assert clearance().min() == pytest.approx(0.01)
    lowest, contacts = [], []
    for _ in range(int(1.0 / model.opt.timestep)):
        mujoco.mj_step(model, data)
        lowest.append(clearance().min())
        contacts.append(data.ncon)
    landing, settled = min(lowest[:100]), min(lowest[100:])  # first and last 0.5 s
    base_z = data.qpos[free.qposadr[0] + 2] - terrain.height_at(x, y)
    message = (f"lowest foot {landing * 1000:.1f} mm (landing), {settled * 1000:.1f} mm (standing) vs the ground; "
               f"contacts per step {np.mean(contacts[100:]):.1f} standing")
    assert settled > -0.005 and landing > -0.01, message
    assert 0.2 < base_z < 0.35, message
    assert 4 <= np.mean(contacts[100:]) <= 24, message
