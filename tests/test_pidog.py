"""The SunFounder PiDog model: its numbers against the fact sheet, the left-right mirror, standing, the IMU at rest,
the leg kinematics against MuJoCo, and the scripted gaits moving the right way (real MuJoCo, no mocks)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from legkit.gaits import GaitController, PlanarLeg2, default_gait, leg_kinematics
from legkit.robots import get_robot
from legkit.sim.scene import PhysicsConfig, build_model

CTRL_DT = 0.02  # 50 Hz control, as the env runs it
LEGS = ("FL", "FR", "RL", "RR")
HIPS = {"FL": (0.0585, 0.049), "FR": (0.0585, -0.049), "RL": (-0.0585, 0.049), "RR": (-0.0585, -0.049)}


@pytest.fixture(scope="module")
def pidog():
    return get_robot("pidog")


@pytest.fixture(scope="module")
def model(pidog) -> mujoco.MjModel:
    """The PiDog in legkit's scene (robot + floor). Tests must not modify it."""
    return build_model(pidog, PhysicsConfig())


def _qpos_index(model, robot) -> np.ndarray:
    return np.array([model.jnt_qposadr[model.joint(j).id] for j in robot.joints])


def _in_base(model, data, robot, points: np.ndarray) -> np.ndarray:
    """World points (n, 3) in the base frame."""
    base = model.body(robot.base_body).id
    return (points - data.xpos[base]) @ data.xmat[base].reshape(3, 3)


def _pose(model, robot, q: np.ndarray) -> mujoco.MjData:
    """Kinematics only: the base at 0.1 m, level, joints at q (in robot.joints order)."""
    data = mujoco.MjData(model)
    data.qpos[2] = 0.1
    data.qpos[_qpos_index(model, robot)] = q
    mujoco.mj_kinematics(model, data)
    return data


def _feet(model, data, robot) -> np.ndarray:
    return _in_base(model, data, robot, np.array([data.geom(f).xpos for f in robot.feet]))


def _upright(data) -> float:
    """z component of the base's up axis in the world (1: level)."""
    w, x, y, z = data.qpos[3:7]
    return 1.0 - 2.0 * (x * x + y * y)


def _simulate(model, robot, targets, seconds: float, start: mujoco.MjData | None = None):
    """Hold joint targets targets(step) (robot.joints order) for each 50 Hz control step; returns the data and
    the lowest upright value seen."""
    data = start
    if data is None:
        data = mujoco.MjData(model)
        data.qpos[2] = robot.reset_height
        data.qpos[_qpos_index(model, robot)] = robot.home
    act = np.array([model.actuator(a).id for a in robot.actuators])
    substeps = round(CTRL_DT / model.opt.timestep)
    lowest = 1.0
    for k in range(round(seconds / CTRL_DT)):
        data.ctrl[act] = targets(k)
        for _ in range(substeps):
            mujoco.mj_step(model, data)
        lowest = min(lowest, _upright(data))
    return data, lowest


@pytest.fixture(scope="module")
def standing(model, pidog):
    """The PiDog after 5 s in its home pose on flat ground: (data, base heights of the last 2 s, lowest upright)."""
    data = mujoco.MjData(model)
    data.qpos[2] = pidog.reset_height
    data.qpos[_qpos_index(model, pidog)] = pidog.home
    heights = []

    def hold(k):
        heights.append(data.qpos[2])
        return pidog.home

    data, lowest = _simulate(model, pidog, hold, 5.0, start=data)
    return data, np.array(heights[-100:]), lowest


# -- the numbers of the fact sheet ------------------------------------------------------------------------------

def test_total_mass_is_about_095_kg(model, pidog):
    mass = model.body_subtreemass[model.body(pidog.base_body).id]
    assert mass == pytest.approx(0.95, rel=0.10)
    head = model.body_subtreemass[model.body("head").id]
    assert head == pytest.approx(0.10, rel=0.2)


def test_leg_geometry_from_the_compiled_model(model, pidog):
    base = model.body(pidog.base_body).id
    for leg in LEGS:
        upper, lower = model.body(f"{leg}_upper"), model.body(f"{leg}_lower")
        assert upper.parentid[0] == base
        np.testing.assert_allclose(upper.pos, [*HIPS[leg], 0.0], atol=1e-9)  # hip pitch joint at the body origin
        assert np.linalg.norm(lower.pos) == pytest.approx(0.042, abs=1e-9)  # upper segment: hip to knee
        foot = model.geom(f"{leg}_foot")
        assert foot.bodyid[0] == lower.id
        assert np.linalg.norm(foot.pos) == pytest.approx(0.076, abs=1e-9)  # lower segment: knee to foot centre
        assert foot.size[0] == pytest.approx(0.008)
        for part in ("hip", "knee"):
            joint = model.joint(f"{leg}_{part}_joint")
            np.testing.assert_allclose(joint.axis, [0.0, 1.0, 0.0])
            np.testing.assert_allclose(joint.range, [-1.57, 1.57])


def test_twelve_actuators_in_joint_order(model, pidog):
    assert model.nu == pidog.num_joints == 12
    assert [model.actuator(i).name for i in range(model.nu)] == list(pidog.actuators)
    driven = [model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu)]
    assert driven == list(pidog.joints)
    assert pidog.joints[8:] == ("head_yaw_joint", "head_roll_joint", "head_pitch_joint", "tail_joint")
    np.testing.assert_allclose(model.actuator_forcerange, np.tile([-0.22, 0.22], (12, 1)))
    np.testing.assert_allclose(model.actuator_forcerange[:, 1], pidog.torque_limits)
    speed = pidog.extra["max_joint_speed"]
    assert len(speed) == 12 and speed[:8] == (7.47,) * 8 and speed[8:11] == (5.24,) * 3 and speed[11] == 8.73


def test_every_named_sensor_and_site_exists(model, pidog):
    sensors = (pidog.foot_touch_sensors + pidog.base_touch_sensors + pidog.undesired_touch_sensors
               + pidog.torque_sensors + pidog.foot_pos_sensors + pidog.foot_vel_sensors
               + (pidog.extra["accelerometer"], pidog.extra["gyro"], pidog.extra["head_touch"]))
    for name in sensors:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name) >= 0, name
    for key in ("imu_site", "sonar_site", "camera_site"):
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, pidog.extra[key]) >= 0, key
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, pidog.extra["camera"]) >= 0


# -- forward, left and right -------------------------------------------------------------------------------------

def test_mirrored_joint_angles_give_mirrored_feet_and_head(model, pidog):
    index, sign = pidog.joint_mirror()
    mirror_leg = {"FL": 1, "FR": 0, "RL": 3, "RR": 2}  # feet order FL, FR, RL, RR
    reflect = np.array([1.0, -1.0, 1.0])
    head_sites = ("sonar", "camera", "head_touch")
    rng = np.random.default_rng(0)
    lo, hi = model.jnt_range[[model.joint(j).id for j in pidog.joints]].T
    for q in [pidog.home, *rng.uniform(lo, hi, size=(20, pidog.num_joints))]:
        a, b = _pose(model, pidog, q), _pose(model, pidog, sign * q[index])
        feet_a, feet_b = _feet(model, a, pidog), _feet(model, b, pidog)
        for i, leg in enumerate(LEGS):
            np.testing.assert_allclose(feet_b[i], reflect * feet_a[mirror_leg[leg]], atol=1e-9)
        sites_a = _in_base(model, a, pidog, np.array([a.site(s).xpos for s in head_sites]))
        sites_b = _in_base(model, b, pidog, np.array([b.site(s).xpos for s in head_sites]))
        np.testing.assert_allclose(sites_b, sites_a * reflect, atol=1e-9)
    # the stand pose is its own mirror image: left feet at +y, right feet at -y, the same x and z
    np.testing.assert_allclose(sign * pidog.home[index], pidog.home)
    feet = _feet(model, _pose(model, pidog, pidog.home), pidog)
    assert (feet[[0, 2], 1] > 0).all() and (feet[[1, 3], 1] < 0).all()


def test_stand_pose_is_the_makers_with_the_knees_behind(model, pidog):
    data = _pose(model, pidog, pidog.home)
    feet = _feet(model, data, pidog)
    knees = _in_base(model, data, pidog, np.array([data.xpos[model.body(f"{leg}_lower").id] for leg in LEGS]))
    hips_x = np.array([HIPS[leg][0] for leg in LEGS])
    # the maker's stand: feet 0.015 ahead of the front hips, 0.005 behind the rear hips, hips 0.090 up
    np.testing.assert_allclose(feet[:, 0] - hips_x, [0.015, 0.015, -0.005, -0.005], atol=1e-3)
    np.testing.assert_allclose(feet[:, 2], -(0.090 - 0.008), atol=1e-3)
    assert (knees[:, 0] < hips_x).all()  # every knee points backward
    np.testing.assert_allclose(pidog.home[8:], 0.0)  # head and tail straight


def test_sonar_and_camera_look_forward(model, pidog):
    data = _pose(model, pidog, pidog.home)
    sonar = data.site("sonar").xmat.reshape(3, 3)
    np.testing.assert_allclose(sonar[:, 0], [1.0, 0.0, 0.0], atol=1e-9)  # the beam along the site's x
    camera = data.site("camera").xmat.reshape(3, 3)
    np.testing.assert_allclose(camera[:, 0], [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(camera[:, 2], [0.0, 0.0, 1.0], atol=1e-9)
    mujoco.mj_camlight(model, data)  # camera frames are not part of mj_kinematics
    view = data.cam(pidog.extra["camera"]).xmat.reshape(3, 3)
    np.testing.assert_allclose(-view[:, 2], [1.0, 0.0, 0.0], atol=1e-9)  # a MuJoCo camera looks along its -z
    assert data.site("sonar").xpos[0] > data.site("imu").xpos[0] + 0.1  # at the front of the head
    # head yaw turns the head left for a positive angle (axis +z)
    q = pidog.home.copy()
    q[pidog.joints.index("head_yaw_joint")] = 0.5
    turned = _pose(model, pidog, q).site("sonar").xmat.reshape(3, 3)[:, 0]
    np.testing.assert_allclose(turned, [np.cos(0.5), np.sin(0.5), 0.0], atol=1e-9)


# -- standing and the IMU --------------------------------------------------------------------------------------

def test_stands_five_seconds_in_the_home_pose(standing, pidog, model):
    data, heights, lowest = standing
    assert lowest > 0.99
    assert 0.080 <= heights[-1] <= 0.095
    assert heights[-1] == pytest.approx(pidog.standing_height, abs=0.002)
    assert np.ptp(heights) < 1e-4  # settled: the base does not creep or ring
    touch = {name: data.sensor(name).data[0] for name in pidog.foot_touch_sensors + pidog.undesired_touch_sensors}
    assert all(touch[f] > 0.5 for f in pidog.foot_touch_sensors), touch  # about 2.3 N on each foot
    assert all(touch[u] == 0.0 for u in pidog.undesired_touch_sensors), touch


def test_imu_at_rest_reads_gravity_up_and_no_rotation(standing, model):
    data = standing[0]
    acc, gyro = data.sensor("imu_acc").data, data.sensor("imu_gyro").data
    np.testing.assert_allclose(acc, [0.0, 0.0, 9.81], atol=0.1)  # an accelerometer at rest feels the floor's push
    np.testing.assert_allclose(gyro, 0.0, atol=1e-3)


# -- leg kinematics and gaits ----------------------------------------------------------------------------------

def test_planar_leg_fk_matches_mujoco_and_ik_recovers_the_home_pose(model, pidog):
    kin = leg_kinematics(model, pidog)
    assert isinstance(kin, PlanarLeg2)
    np.testing.assert_allclose(kin.foot_radius, 0.008)
    np.testing.assert_allclose(kin.anchor[:, :2], [HIPS[leg] for leg in LEGS], atol=1e-9)
    rng = np.random.default_rng(1)
    for q in rng.uniform(kin.lower, kin.upper, size=(25, *kin.lower.shape)):
        joints = kin.to_joints(q[None], pidog.home)[0]
        np.testing.assert_allclose(kin.fk(q), _feet(model, _pose(model, pidog, joints), pidog), atol=1e-9)
    home = kin.from_joints(pidog.home[None])
    q, clipped = kin.ik(kin.fk(home))
    assert not clipped.any()
    np.testing.assert_allclose(q, home, atol=1e-9)


@pytest.mark.parametrize("gait", ["trot", "walk", "pace", "bound", "stand", "sit"])
def test_default_gaits_stay_within_reach_and_range(model, pidog, gait):
    params = default_gait("pidog", gait)
    ctrl = GaitController(pidog, model, params, 4, CTRL_DT)
    ctrl.reset(phase=np.array([0.0, 0.25, 0.5, 0.75]))
    lo, hi = model.jnt_range[[model.joint(j).id for j in pidog.joints]].T
    for _ in range(round(params.cycle_time / CTRL_DT) + 1):
        targets = ctrl.joint_targets()
        assert ((targets >= lo) & (targets <= hi)).all()
        np.testing.assert_allclose(targets[:, 8:], 0.0)  # head and tail stay at home
        ctrl.step()
    assert ctrl.clipped_count == 0


def _gait_speed(model, pidog, params, seconds: float = 10.0) -> tuple[float, float]:
    """Forward speed (m/s, world x) and the lowest upright value of `params` run open loop after 1 s of standing."""
    data, _ = _simulate(model, pidog, lambda k: pidog.home, 1.0)
    ctrl = GaitController(pidog, model, params, 1, CTRL_DT)
    x0 = data.qpos[0]

    def step(k):
        targets = ctrl.joint_targets()[0]
        ctrl.step()
        return targets

    data, lowest = _simulate(model, pidog, step, seconds, start=data)
    return (data.qpos[0] - x0) / seconds, lowest


def test_scripted_trot_moves_forward_and_a_negative_stroke_backward(model, pidog):
    trot = default_gait("pidog", "trot")
    forward, upright = _gait_speed(model, pidog, trot)
    assert forward > 0.05 and upright > 0.9, (forward, upright)
    backward, upright = _gait_speed(model, pidog, dataclasses.replace(trot, step_length=-trot.step_length))
    assert backward < -0.05 and upright > 0.9, (backward, upright)


def test_scripted_walk_moves_forward(model, pidog):
    speed, upright = _gait_speed(model, pidog, default_gait("pidog", "walk"))
    assert speed > 0.02 and upright > 0.9, (speed, upright)
