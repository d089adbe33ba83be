"""Obstacle arena: pool of mocap obstacles, per-robot placement, packed poses, contact sensors, rays, distances."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest
from mujoco import rollout

from legkit import LegkitError
from legkit.sim.arena import (KINDS, MOCAP_SPEC, PARK, WALL_SIDES, Arena, ArenaConfig, add_to_spec, is_placed,
                              nearest_obstacle_distance, obstacle_tops, yaw_quat)

CFG = ArenaConfig(enabled=True)
SONAR_HEIGHT = 0.08
"""The lowest the PiDog's sonar sits above the ground (m)."""
ROBOT_HALF = (0.1, 0.05, 0.05)
"""Half extents (m) of the test's box robot."""
CTRL_MOCAP = int(mujoco.mjtState.mjSTATE_CTRL) | MOCAP_SPEC
"""A rollout control spec that carries the obstacle poses after the controls."""


def scene(cfg: ArenaConfig = CFG, sensors: bool = True) -> mujoco.MjModel:
    """A slippery floor, a slippery box robot with a free joint and one motor resting on it at the origin, the arena."""
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], contype=1,
                            conaffinity=2, friction=[0.01, 0.0, 0.0])
    robot = spec.worldbody.add_body(name="robot", pos=[0, 0, ROBOT_HALF[2]])
    robot.add_freejoint(name="root")
    robot.add_geom(name="robot_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(ROBOT_HALF), mass=1.0,
                   contype=2, conaffinity=1, friction=[0.01, 0.0, 0.0])
    spec.add_actuator(name="push", target="root", trntype=mujoco.mjtTrn.mjTRN_JOINT)
    add_to_spec(spec, cfg, robot_body="robot" if sensors else None)
    return spec.compile()


def empty_layout(arena: Arena, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every obstacle parked, for n robots."""
    m = len(arena.names)
    return np.tile(np.array(PARK), (n, m, 1)), np.tile([1.0, 0.0, 0.0, 0.0], (n, m, 1))


def stand(arena: Arena, pos: np.ndarray, row: int, j: int, x: float, y: float = 0.0) -> None:
    """Put obstacle j of robot `row`'s layout on the ground at (x, y), unturned."""
    pos[row, j] = (x, y, arena.half_sizes[j, 2])


def posed(model: mujoco.MjModel, arena: Arena, pos: np.ndarray, quat: np.ndarray,
          qpos: np.ndarray | None = None) -> mujoco.MjData:
    """An MjData with one layout (m, 3), (m, 4) set through a packed row, and forwarded."""
    row = np.zeros((1, mujoco.mj_stateSize(model, MOCAP_SPEC)))
    arena.write(row, pos[None], quat[None])
    data = mujoco.MjData(model)
    if qpos is not None:
        data.qpos[:] = qpos
    mujoco.mj_setState(model, data, row[0], MOCAP_SPEC)
    mujoco.mj_forward(model, data)
    return data


def robot_obstacle_contacts(model: mujoco.MjModel, data: mujoco.MjData, arena: Arena) -> int:
    """Contacts in data.contact between the robot's geom and an obstacle's, counted geom pair by geom pair."""
    robot = model.geom("robot_geom").id
    pairs = data.contact.geom[: data.ncon]
    return int(sum((robot in p) and bool(np.isin(p, arena.geom_ids).any()) for p in pairs))


def test_pool_geoms_materials_walls_and_collision_classes():
    model = scene()
    arena = Arena(model, CFG)
    assert model.nmocap == len(arena.names) == CFG.pool * (CFG.boxes + CFG.low + CFG.narrow)
    np.testing.assert_array_equal(arena.mocap_ids, np.arange(model.nmocap))
    for kind in KINDS:
        half = arena.half_sizes[arena.kinds == kind]
        side, height = getattr(CFG, f"{kind}_side"), getattr(CFG, f"{kind}_height")
        assert len(half) == CFG.pool * CFG.count(kind)
        assert (2 * half[:, :2] >= side[0]).all() and (2 * half[:, :2] <= side[1]).all()
        assert (2 * half[:, 2] >= height[0]).all() and (2 * half[:, 2] <= height[1]).all()
        assert np.ptp(half[:, 2]) > 0.3 * (height[1] - height[0])  # the pool spans the range: sizes vary
    rgba = {kind: tuple(model.mat_rgba[model.geom_matid[arena.geom_ids[arena.kinds == kind][0]]]) for kind in KINDS}
    assert len(set(rgba.values())) == len(KINDS)
    assert (model.geom_contype[arena.geom_ids] == 1).all() and (model.geom_conaffinity[arena.geom_ids] == 2).all()
    assert (model.body_pos[arena.body_ids] == PARK).all()  # the model's own layout: everything parked
    half = CFG.size / 2
    for side in WALL_SIDES:
        g = model.geom(f"arena_wall_{side}")
        axis = 0 if side[1] == "x" else 1
        inner = abs(g.pos[axis]) - g.size[axis]
        assert inner == pytest.approx(half) and g.contype[0] == 1 and g.conaffinity[0] == 2
    assert len(arena.touch_adr) == model.nmocap + len(WALL_SIDES)
    no_walls = ArenaConfig(enabled=True, walls=False)
    assert mujoco.mj_name2id(scene(no_walls), mujoco.mjtObj.mjOBJ_GEOM, "arena_wall_px") == -1


def test_placement_respects_clear_radius_spacing_and_bounds():
    model = scene()
    arena = Arena(model, CFG)
    n = 300
    pos, quat = arena.place(np.random.default_rng(0), n)
    placed = is_placed(pos)
    for kind in KINDS:
        assert (placed[:, arena.kinds == kind].sum(axis=1) == CFG.count(kind)).all()
    assert not placed.all(axis=0).any() and placed.any(axis=0).all()  # each body sometimes placed, sometimes not
    np.testing.assert_allclose(pos[placed][:, 2], np.broadcast_to(arena.half_sizes[:, 2], placed.shape)[placed])
    r = np.broadcast_to(arena.radius, placed.shape)[placed]
    xy = pos[placed][:, :2]
    half = CFG.size / 2
    to_edge = half - np.abs(xy).max(axis=1) - r
    to_clear = np.linalg.norm(xy, axis=1) - r - CFG.clear_radius
    assert to_edge.min() >= -1e-12 and to_clear.min() >= -1e-12
    gaps = []
    for i in range(n):
        c, ri = pos[i, placed[i], :2], arena.radius[placed[i]]
        d = np.linalg.norm(c[:, None] - c[None], axis=-1) - ri[:, None] - ri[None]
        gaps.append(d[np.triu_indices(len(c), 1)])
    gaps = np.concatenate(gaps) - CFG.spacing
    assert gaps.min() >= -1e-12
    # The rules bind: some obstacles come close to each bound, so a placement ignoring one would break it.
    assert to_edge.min() < 0.02 and to_clear.min() < 0.02 and gaps.min() < 0.02
    # Uniform yaw about z, unit quaternions; parked obstacles unturned.
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0)
    assert (quat[..., 1:3] == 0).all()
    yaw = 2 * np.arctan2(quat[placed][:, 3], quat[placed][:, 0]) % (2 * np.pi)
    assert np.histogram(yaw, bins=4, range=(0, 2 * np.pi))[0].min() > 0.2 * yaw.size
    assert (quat[~placed] == [1, 0, 0, 0]).all()


def test_parked_obstacles_are_out_of_the_arena_and_out_of_reach_of_rays():
    model = scene()
    arena = Arena(model, CFG)
    pos, quat = arena.place(np.random.default_rng(1), 50)
    parked = pos[~is_placed(pos)]
    assert len(parked) == 50 * (len(arena.names) - CFG.boxes - CFG.low - CFG.narrow)
    assert (np.abs(parked[:, :2]).min(axis=1) > CFG.size / 2 + 1).all()
    assert (parked[:, 2] + arena.half_sizes[:, 2].max() < 0).all()  # the top of the tallest is below the ground
    p, q = empty_layout(arena, 1)
    data = posed(model, arena, p[0], q[0])
    geom = np.zeros(1, np.int32)
    walls = {model.geom(f"arena_wall_{s}").id for s in WALL_SIDES}
    robot = model.body("robot").id
    for a in np.linspace(0, 2 * np.pi, 24, endpoint=False):  # a sonar's sweep meets only the walls
        mujoco.mj_ray(model, data, np.array([0, 0, SONAR_HEIGHT]), np.array([np.cos(a), np.sin(a), 0]), None, 1,
                      robot, geom)
        assert geom[0] in walls
    dist = mujoco.mj_ray(model, data, np.array([PARK[0], PARK[1], 1.0]), np.array([0, 0, -1.0]), None, 1, -1, geom)
    assert geom[0] == model.geom("floor").id and dist == pytest.approx(1.0)


def test_layouts_differ_per_robot_and_packed_rows_put_obstacles_where_mujoco_shows_them():
    model = scene()
    arena = Arena(model, CFG)
    pos, quat = arena.place(np.random.default_rng(2), 2)
    assert (is_placed(pos[0]) != is_placed(pos[1])).any() or np.abs(pos[0] - pos[1]).max() > 0.1
    both = is_placed(pos[0]) & is_placed(pos[1])
    assert np.linalg.norm(pos[0, both, :2] - pos[1, both, :2], axis=-1).min(initial=np.inf) > 1e-6

    rows = np.full((2, mujoco.mj_stateSize(model, CTRL_MOCAP)), 7.0)  # controls first, then the mocap poses
    arena.write(rows, pos, quat, spec=CTRL_MOCAP)
    assert (rows[:, : model.nu] == 7.0).all()  # the controls are untouched
    back = arena.read(rows, spec=CTRL_MOCAP)
    np.testing.assert_array_equal(back[0], pos)
    np.testing.assert_array_equal(back[1], quat)
    data = mujoco.MjData(model)
    for i in range(2):
        mujoco.mj_setState(model, data, rows[i], CTRL_MOCAP)
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(data.xpos[arena.body_ids], pos[i], atol=1e-12)
        np.testing.assert_allclose(data.xquat[arena.body_ids], quat[i], atol=1e-12)
        assert data.ctrl[0] == 7.0

    # Only the rows asked for are written; a (num_envs, nstep, nc) rollout control buffer gets every step.
    buffer = np.zeros((3, 4, rows.shape[1]))
    arena.write(buffer, pos, quat, spec=CTRL_MOCAP, env_ids=np.array([2, 0]))
    for t in range(4):
        np.testing.assert_array_equal(buffer[2, t], np.r_[0.0, rows[0, model.nu:]])
        np.testing.assert_array_equal(buffer[0, t], np.r_[0.0, rows[1, model.nu:]])
    assert (buffer[1] == 0).all()

    # MuJoCo 4.0's full physics state holds no mocap poses: writing obstacles there is an error.
    full = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
    assert full & MOCAP_SPEC == 0
    with pytest.raises(LegkitError, match="FULLPHYSICS"):
        arena.write(np.zeros((2, mujoco.mj_stateSize(model, full))), pos, quat, spec=full)


def test_robot_pushed_into_an_obstacle_collides_and_the_contact_sensors_report_it():
    model = scene()
    arena = Arena(model, CFG)
    j = int(np.flatnonzero(arena.kinds == "box")[np.argmax(arena.half_sizes[arena.kinds == "box", 2])])
    face = 0.5 - arena.half_sizes[j, 0]  # the obstacle's near face at x (m)

    # Static: overlapping the obstacle by 5 mm, and resting in open space (on the floor: floor contacts only).
    pos, quat = empty_layout(arena, 1)
    stand(arena, pos, 0, j, 0.5)
    qpos = model.qpos0.copy()
    qpos[0] = face - ROBOT_HALF[0] + 0.005
    data = posed(model, arena, pos[0], quat[0], qpos)
    assert robot_obstacle_contacts(model, data, arena) > 0
    assert arena.contacts(data.sensordata) == robot_obstacle_contacts(model, data, arena)
    by_kind = dict(zip(arena.contact_kinds, arena.contacts_by_kind(data.sensordata)))
    assert by_kind["box"] == arena.contacts(data.sensordata) and by_kind["low"] == by_kind["wall"] == 0
    data = posed(model, arena, pos[0], quat[0])
    assert data.ncon > 0 and robot_obstacle_contacts(model, data, arena) == 0 and arena.contacts(data.sensordata) == 0

    # Dynamic, two robots in one rollout, each with its own layout: robot 0 slides at 1 m/s into the obstacle
    # and stops at its face; robot 1's layout has it parked, so the same slide goes on.
    pos, quat = empty_layout(arena, 2)
    stand(arena, pos, 0, j, 0.5)
    data = mujoco.MjData(model)
    data.qpos[0], data.qvel[0] = 0.2, 1.0
    start = np.zeros(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
    mujoco.mj_getState(model, data, start, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    nstep = round(0.5 / model.opt.timestep)  # 0.5 s: 0.5 m of free slide
    ctrl = np.zeros((2, nstep, mujoco.mj_stateSize(model, CTRL_MOCAP)))
    arena.write(ctrl, pos, quat, spec=CTRL_MOCAP)
    state, sensordata = rollout.rollout([model, model], [mujoco.MjData(model)], np.tile(start, (2, 1)), ctrl,
                                        control_spec=CTRL_MOCAP, nstep=nstep)
    x = state[:, -1, 1]  # qpos[0] after the time in the packed state
    assert x[0] < face - ROBOT_HALF[0] + 0.01 and x[1] > 0.6
    touching = arena.contacts(sensordata)  # (2, nstep)
    assert touching[0].max() > 0 and touching[1].max() == 0

    # Without the poses in the control spec, rollout resets every mocap body to the model's (parked) pose.
    state, sensordata = rollout.rollout([model], [mujoco.MjData(model)], start[None], np.zeros((1, nstep, 1)),
                                        control_spec=int(mujoco.mjtState.mjSTATE_CTRL), nstep=nstep)
    assert state[0, -1, 1] > 0.6 and arena.contacts(sensordata).max() == 0


def test_wall_contacts_count_only_with_walls():
    model = scene()
    arena = Arena(model, CFG)
    qpos = model.qpos0.copy()
    qpos[0] = CFG.size / 2 - ROBOT_HALF[0] + 0.005  # 5 mm into the +x wall
    p, q = empty_layout(arena, 1)
    data = posed(model, arena, p[0], q[0], qpos)
    assert arena.contacts(data.sensordata) > 0 and arena.contacts(data.sensordata, walls=False) == 0
    assert arena.contact_kinds == ("box", "low", "narrow", "wall")
    np.testing.assert_array_equal(arena.contacts_by_kind(data.sensordata), [0, 0, 0, arena.contacts(data.sensordata)])


def test_low_obstacles_pass_under_the_sonar_axis_and_block_a_ray_near_the_ground():
    model = scene()
    arena = Arena(model, CFG)
    box, low, narrow = (arena.kinds == k for k in KINDS)
    assert (2 * arena.half_sizes[low, 2] < SONAR_HEIGHT).all()
    assert (2 * arena.half_sizes[narrow, 2] > 0.12).all() and (2 * arena.half_sizes[narrow, :2] <= 0.03).all()
    geom = np.zeros(1, np.int32)
    robot = model.body("robot").id
    forward = np.array([1.0, 0.0, 0.0])
    for j in (int(np.flatnonzero(low)[0]), int(np.flatnonzero(box)[np.argmax(arena.half_sizes[box, 2])])):
        pos, quat = empty_layout(arena, 1)
        stand(arena, pos, 0, j, 1.0)
        data = posed(model, arena, pos[0], quat[0])
        at_sonar = mujoco.mj_ray(model, data, np.array([0, 0, SONAR_HEIGHT]), forward, None, 1, robot, geom)
        sonar_hit = geom[0]
        near_ground = mujoco.mj_ray(model, data, np.array([0, 0, 0.02]), forward, None, 1, robot, geom)
        assert geom[0] == arena.geom_ids[j] and near_ground == pytest.approx(1.0 - arena.half_sizes[j, 0])
        if arena.kinds[j] == "low":
            assert sonar_hit == model.geom("arena_wall_px").id and at_sonar == pytest.approx(CFG.size / 2)
        else:  # a box is as tall as the sonar: it sees it
            assert sonar_hit == arena.geom_ids[j] and at_sonar == pytest.approx(near_ground)


def test_nearest_obstacle_distance_by_hand():
    half = np.array([[0.2, 0.05, 0.1], [0.1, 0.1, 0.1]])
    pos = np.array([[1.0, 0.0, 0.1], PARK])  # obstacle 0 turned 90 degrees: 0.1 m along x, 0.4 m along y
    quat = np.stack([yaw_quat(np.pi / 2), [1.0, 0, 0, 0]])
    robots = np.array([[0.0, 0.0], [1.0, 0.5], [1.0, 0.0], [1.5, 0.6]])
    n = len(robots)
    got = nearest_obstacle_distance(robots, np.tile(pos, (n, 1, 1)), np.tile(quat, (n, 1, 1)), half)
    np.testing.assert_allclose(got, [0.95, 0.3, -0.05, np.hypot(0.45, 0.4)], atol=1e-12)
    # Turned 30 degrees: 0.3 m out along its long axis is 0.1 m beyond its end (turned the wrong way: 0.21 m).
    robot = np.array([[1.0 + 0.3 * np.cos(np.pi / 6), 0.3 * np.sin(np.pi / 6)]])
    turned = np.stack([yaw_quat(np.pi / 6), [1.0, 0, 0, 0]])[None]
    assert nearest_obstacle_distance(robot, pos[None], turned, half)[0] == pytest.approx(0.1, abs=1e-12)
    parked = np.tile(np.array(PARK), (1, 2, 1))
    assert nearest_obstacle_distance(robots[:1], parked, quat[None], half)[0] == np.inf

    model = scene()
    arena = Arena(model, CFG)
    p, q = empty_layout(arena, 2)
    stand(arena, p, 0, 0, 1.0)
    got = arena.clearance(np.array([[0.0, 0.0], [1.9, 0.0]]), p, q)
    np.testing.assert_allclose(got, [1.0 - arena.half_sizes[0, 0], 0.1], atol=1e-12)


def test_the_obstacle_map_holds_each_obstacles_height_where_it_stands_around_the_robot():
    """Hand-placed layouts, robots at the origin: obstacle 0 (unturned) 0.4 m ahead of robot 0, which faces +x, and
    0.4 m ahead of robot 1, which faces +y; robot 2's obstacles are all parked."""
    model = scene()
    arena = Arena(model, CFG)
    grid, (rows, cols) = CFG.map_grid(), CFG.map_shape()
    assert len(grid) == rows * cols and np.allclose(grid[:cols, 1], -grid[:cols, 1][::-1])  # y symmetric
    p, q = empty_layout(arena, 3)
    hx, hy, hz = arena.half_sizes[0]
    stand(arena, p, 0, 0, 0.4 + hx)  # near face 0.4 m ahead of robot 0's centre
    stand(arena, p, 1, 0, 0.0, 0.4 + hy)  # and of robot 1's, which faces +y
    got = arena.height_map(np.zeros((3, 2)), np.array([0.0, np.pi / 2, 0.0]), p, q)
    e = 1e-9
    for robot, (ax, ay) in enumerate([(hx, hy), (hy, hx)]):  # the box's half extents along the robot's x and y
        inside = (grid[:, 0] >= 0.4 + e) & (grid[:, 0] <= 0.4 + 2 * ax - e) & (np.abs(grid[:, 1]) <= ay - e)
        outside = (grid[:, 0] < 0.4 - e) | (grid[:, 0] > 0.4 + 2 * ax + e) | (np.abs(grid[:, 1]) > ay + e)
        assert inside.any() and np.allclose(got[robot, inside], 2 * hz) and np.all(got[robot, outside] == 0.0)
    assert np.all(got[2] == 0.0)  # every obstacle parked, the walls 2 m away
    # Near a wall: the points beyond its inner face read the wall's height.
    edge = arena.height_map(np.array([[CFG.size / 2 - 0.3, 0.0]]), np.zeros(1), p[2:], q[2:])[0]
    np.testing.assert_array_equal(edge, np.where(grid[:, 0] >= 0.3 - 1e-9, CFG.wall_height, 0.0))


def test_the_obstacle_map_tests_only_nearby_obstacles_and_misses_none():
    """height_map skips (robot, obstacle) pairs out of reach; on placed layouts and random robot poses it equals
    testing every obstacle at every grid point."""
    model = scene()
    arena = Arena(model, CFG)
    rng = np.random.default_rng(4)
    pos, quat = arena.place(rng, 200)
    xy, yaw = rng.uniform(-CFG.size / 2, CFG.size / 2, (200, 2)), rng.uniform(-np.pi, np.pi, 200)
    fast = arena.height_map(xy, yaw, pos, quat)
    g = CFG.map_grid()
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    pts = np.stack([xy[:, :1] + c * g[:, 0] - s * g[:, 1], xy[:, 1:] + s * g[:, 0] + c * g[:, 1]], axis=-1)
    slow = obstacle_tops(pts, pos, quat, np.broadcast_to(arena.half_sizes, (200, *arena.half_sizes.shape)))
    slow = np.where(np.abs(pts).max(axis=-1) >= CFG.size / 2, np.maximum(slow, CFG.wall_height), slow)
    assert 0.02 < (fast > 0).mean() < 0.5  # the poses meet obstacles and walls
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("key, value", [
    ("size", 0.0), ("wall_height", -0.1), ("boxes", -1), ("low", 1.5), ("narrow", True), ("pool", 0),
    ("box_side", (0.3, 0.1)), ("low_height", (0.0, 0.05)), ("narrow_side", (-0.02, 0.02)), ("spacing", -0.1),
    ("clear_radius", -1.0), ("walls", "yes"), ("enabled", 1), ("map_spacing", 0.0), ("map_x", (0.5, 0.1)),
    ("map_half_width", -0.1),
])
def test_bad_config_names_the_key(key, value):
    with pytest.raises(LegkitError, match=rf"task\.arena\.{key} "):
        dataclasses.replace(CFG, **{key: value})


def test_config_that_cannot_fit_names_size_and_unbuilt_arena_fails_loudly():
    with pytest.raises(LegkitError, match=r"task\.arena\.size .*crowded"):
        ArenaConfig(enabled=True, boxes=60)
    with pytest.raises(LegkitError, match=r"task\.arena\.size .*no room"):
        ArenaConfig(enabled=True, size=1.0, clear_radius=0.6, boxes=1, low=0, narrow=0)
    with pytest.raises(LegkitError, match="enabled is false"):
        Arena(scene(), ArenaConfig())
    with pytest.raises(LegkitError, match="obstacle_box_18"):  # a model built for fewer boxes
        Arena(scene(), dataclasses.replace(CFG, boxes=CFG.boxes + 1))
    with pytest.raises(LegkitError, match="no contact sensors"):
        Arena(scene(sensors=False), CFG).contacts(np.zeros(1))
    assert add_to_spec(mujoco.MjSpec(), ArenaConfig()) == []


def test_an_arena_of_walls_alone_resets_and_steps():
    """No obstacles (so no mocap bodies, nothing to place): episodes still reset and step, touching nothing."""
    from dataclasses import replace

    from legkit.envs.core import LeggedBatch
    from legkit.tasks import get_task

    task = get_task("pidog-run")
    task = replace(task, arena=replace(task.arena, boxes=0, low=0, narrow=0))
    batch = LeggedBatch(task, 2, seed=0, nthread=1)
    try:
        assert batch.sim.mocap is None
        for _ in range(3):
            batch.step(np.zeros((2, batch.action_dim)))
        assert np.isfinite(batch.sim.qpos).all() and not batch.state.obstacle_contacts.any()
    finally:
        batch.close()
