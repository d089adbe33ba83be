"""pidog-run's env: its sensors as observation terms, obstacles placed per episode, contacts, servo speeds, falls."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.sim.arena import PARK
from legkit.tasks import get_task
from legkit.tasks.rewards import obstacle_proximity
from legkit.tasks.sensing import SensorsConfig


@pytest.fixture
def pidog():
    b = LeggedBatch(get_task("pidog-run"), 4, seed=0)
    yield b
    b.close()


def _block(batch, name):
    _, start, size = next(x for x in batch.obs_layout if x[0] == name)
    return slice(start, start + size)


def _clear_and_put(batch, robot: int, x: float | None):
    """Park every obstacle of `robot`; with `x`, stand the first box `x` m ahead of its base, across its path."""
    a, sim = batch.arena, batch.sim
    m = len(a.mocap_ids)
    pos = np.tile(np.asarray(PARK, dtype=float), (1, m, 1))
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (1, m, 1))
    if x is not None:
        box = int(np.flatnonzero(a.kinds == "box")[-1])
        base, q = batch.state.base_pos[robot], batch.state.base_quat[robot]
        yaw = np.arctan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
        ahead = x + a.half_sizes[box, 0]  # the box's near face `x` ahead of the base, square to its heading
        pos[0, box] = [base[0] + ahead * np.cos(yaw), base[1] + ahead * np.sin(yaw), a.half_sizes[box, 2]]
        quat[0, box] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    a.write(sim.mocap, pos, quat, env_ids=np.array([robot]))


def test_the_sensed_observation_is_finite_and_laid_out_by_term(pidog):
    names = [n for n, _, _ in pidog.obs_layout]
    assert names[:4] == ["imu", "ultrasonic", "camera", "touch"]
    for _ in range(20):
        pidog.step(np.zeros((4, 12)))
    obs = pidog.observe()
    assert np.isfinite(obs).all()
    imu = obs[:, _block(pidog, "imu")]
    assert np.allclose(imu[:, 2], 9.81, atol=0.6)  # standing: the accelerometer reads gravity up
    assert pidog.sim.servo_speed is not None and pidog.sim.servo_speed.max() == pytest.approx(8.73)


def test_the_ultrasonic_and_the_camera_see_an_obstacle_placed_ahead(pidog):
    s = pidog.state
    for _ in range(5):
        pidog.step(np.zeros((4, 12)))
    _clear_and_put(pidog, 0, None)
    _clear_and_put(pidog, 1, 0.5)
    for _ in range(10):  # the camera reads at 10 Hz: every 5 control steps
        pidog.step(np.zeros((4, 12)))
    echo, dist = s.ultrasonic[:, 0], s.ultrasonic[:, 1]
    assert echo[1] == 1.0 and 0.3 < dist[1] < 0.5  # the box's face, measured from the head ahead of the base
    assert dist[0] > dist[1] + 0.5 or echo[0] == 0.0  # nothing near robot 0 (the arena's walls are 2 m away)
    depth = s.camera.reshape(4, pidog.task.sensors.camera.height, -1)
    assert depth[1].min() < 0.6 and depth[1].mean() < depth[0].mean() - 0.3


def test_obstacle_clearance_is_the_true_distance_to_the_nearest_footprint_or_wall(pidog):
    """The privileged clearance behind the obstacle_proximity reward: a box square ahead at 0.5 m from the base's
    centre reads 0.5; with every obstacle parked, the nearest wall does; the term is 0 beyond its distance."""
    s = pidog.state
    pidog.step(np.zeros((4, 12)))
    _clear_and_put(pidog, 0, None)
    _clear_and_put(pidog, 1, 0.5)
    pidog.step(np.zeros((4, 12)))
    xy = s.base_pos[:2, :2]
    walls = pidog.task.arena.size / 2 - np.abs(xy).max(axis=1)
    assert s.obstacle_clearance[0] == pytest.approx(walls[0], abs=1e-9)
    assert s.obstacle_clearance[1] == pytest.approx(0.5, abs=0.02)  # the robot moved a little in one step
    near = obstacle_proximity(s, distance=0.6)
    assert near[1] == pytest.approx((0.6 - s.obstacle_clearance[1]) / 0.6) and near[0] == 0.0


def test_the_obstacle_map_term_shows_a_box_ahead_and_nothing_without_the_arena():
    """The privileged obstacle_map observation: with a box 0.3 m ahead, the map's points ahead of it on the centre
    line read its height, those between robot and box read 0; with every obstacle parked it is all 0, and without
    an arena (a policy with a map-reading critic evaluated on open ground) it keeps its size and reads 0."""
    task = get_task("pidog-run")
    task = replace(task, observations=(*task.observations, "obstacle_map"))
    b = LeggedBatch(task, 2, seed=0)
    try:
        b.step(np.zeros((2, 12)))
        _clear_and_put(b, 0, None)
        _clear_and_put(b, 1, 0.3)
        b.step(np.zeros((2, 12)))
        grid = task.arena.map_grid()
        obs = b.observe()[:, _block(b, "obstacle_map")]
        assert obs.shape[1] == len(grid)
        box = int(np.flatnonzero(b.arena.kinds == "box")[-1])
        line = np.abs(grid[:, 1]) < 1e-9
        ahead = line & (grid[:, 0] > 0.35) & (grid[:, 0] < 0.3 + 2 * b.arena.half_sizes[box, 0] - 0.05)
        between = line & (grid[:, 0] > 0.0) & (grid[:, 0] < 0.25)
        assert ahead.any() and np.allclose(obs[1, ahead], 2 * b.arena.half_sizes[box, 2], atol=1e-6)
        assert np.all(obs[1, between] == 0.0) and np.all(obs[0] == 0.0)
    finally:
        b.close()
    open_ground = LeggedBatch(replace(task, arena=replace(task.arena, enabled=False)), 2, seed=0)
    try:
        open_ground.step(np.zeros((2, 12)))
        flat = open_ground.observe()[:, _block(open_ground, "obstacle_map")]
        assert flat.shape == (2, len(grid)) and np.all(flat == 0.0)
    finally:
        open_ground.close()


def test_touching_an_obstacle_counts_as_a_contact_not_a_fall(pidog):
    for _ in range(5):
        pidog.step(np.zeros((4, 12)))
    _clear_and_put(pidog, 2, 0.06)
    for k in range(30):  # walk it into the box: push the base forward
        pidog.sim.qvel[2, 0] = 0.4
        _, term, _ = pidog.step(np.zeros((4, 12)))
        assert not term[2]
        if pidog.state.obstacle_contacts[2] > 0:
            break
    assert pidog.state.obstacle_contacts[2] > 0 and pidog.state.obstacle_contacts[3] == 0


def test_a_tipped_pidog_falls(pidog):
    s = pidog.state
    for _ in range(25):
        pidog.step(np.zeros((4, 12)))
    q = pidog.sim.qpos
    q[3, 3:7] = [np.cos(0.7), np.sin(0.7), 0.0, 0.0]  # rolled 1.4 rad onto its side
    _, term, _ = pidog.step(np.zeros((4, 12)))
    assert term[3] and not term[:3].any() and s.projected_gravity[3, 2] > -np.cos(1.0)


def test_a_new_episode_gets_a_new_layout(pidog):
    before = pidog.sim.mocap.copy()
    pidog.reset(np.array([0]))
    after = pidog.sim.mocap
    assert not np.allclose(before[0], after[0]) and np.allclose(before[1:], after[1:])


def test_a_sensor_term_without_its_sensor_is_an_error():
    task = replace(get_task("pidog-run"), sensors=SensorsConfig())
    with pytest.raises(LegkitError, match="task.sensors.imu"):
        LeggedBatch(task, 1)
    no_imu = replace(get_task("pidog-run"), observations=("attitude", "joint_pos"),
                     sensors=replace(get_task("pidog-run").sensors, imu=None))
    with pytest.raises(LegkitError, match=r"'attitude' reads a sensor .*: set task\.sensors\.imu "):
        LeggedBatch(no_imu, 1)


def test_the_clock_ticks_at_its_period_from_every_reset(pidog):
    period, dt = pidog.task.clock_period, pidog.dt
    for _ in range(7):
        pidog.step(np.zeros((4, 12)))
    angle = 2 * np.pi * 7 * dt / period
    np.testing.assert_allclose(pidog.observe()[:, _block(pidog, "clock")], [[np.sin(angle), np.cos(angle)]] * 4,
                               atol=1e-6)
    pidog.reset(np.array([1]))
    np.testing.assert_allclose(pidog.observe()[1, _block(pidog, "clock")], [0.0, 1.0], atol=1e-6)
    assert period == pytest.approx(0.6)  # the PiDog trot's cycle


def test_attitude_reads_level_at_rest_and_follows_a_roll(pidog):
    """The `attitude` term, filtered from the IMU's readings (noise and bias included), agrees with the true gravity
    direction: level at rest, and turning with the body when it rolls."""
    s = pidog.state
    for _ in range(25):
        pidog.step(np.zeros((4, 12)))
    assert np.allclose(s.attitude, s.projected_gravity, atol=0.05)
    tilt = []
    for _ in range(15):  # roll robot 3 over at 4 rad/s: the gyro carries the estimate
        pidog.sim.qvel[3, 3] = 4.0
        pidog.step(np.zeros((4, 12)))
        tilt.append(s.projected_gravity[3, 1])
        assert np.allclose(s.attitude[3], s.projected_gravity[3], atol=0.1)
    assert min(tilt) < -0.3 and np.allclose(s.attitude[:3], s.projected_gravity[:3], atol=0.05)


def test_a_reset_reads_the_reset_robots_sensors_and_leaves_the_others(pidog):
    """A robot reset in the middle of a step reads its sensors afresh; the others' sensors keep their schedule."""
    sensors = pidog.sensors
    for _ in range(3):
        pidog.step(np.zeros((4, 12)))
    holds = [h for h in (sensors._imu_hold, sensors._sonar_hold, sensors._camera_hold) if h is not None]
    before = [(h._until.copy(), h.value.copy()) for h in holds]
    pidog.reset(np.array([1]))
    for h, (until, value) in zip(holds, before):
        keep = np.array([0, 2, 3])
        np.testing.assert_array_equal(h._until[keep], until[keep])
        np.testing.assert_array_equal(h.value[keep], value[keep])
        assert h._until[1] == pytest.approx(h.period - 1.0)
