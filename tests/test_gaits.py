"""Scripted gaits: leg kinematics against MuJoCo, closed-form IK round trips and clipping, foot trajectories,
gait parameters and the batched GaitController (real MuJoCo models, no mocks)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.config import from_dict
from legkit.gaits import (GAIT_TYPES, GaitController, GaitParams, LegKinematics, PlanarLeg2, default_gait,
                          foot_targets, leg_kinematics, leg_phases, stroke)
from legkit.robots import get_robot

CTRL_DT = 0.02  # the Go2's control period (s)


@pytest.fixture(scope="module")
def spec():
    return get_robot("go2")


@pytest.fixture(scope="module")
def model(spec) -> mujoco.MjModel:
    """The bare Go2 MJCF, compiled (no floor: the kinematics need only the robot)."""
    return mujoco.MjModel.from_xml_path(str(spec.xml()))


@pytest.fixture(scope="module")
def kin(model, spec) -> LegKinematics:
    return leg_kinematics(model, spec)


def _edited_go2(spec) -> mujoco.MjModel:
    """The Go2 with other link lengths and offsets and one knee axis flipped: kinematics must follow the model."""
    s = mujoco.MjSpec.from_file(str(spec.xml()))
    s.body("FL_calf").pos = [0.01, 0.0, -0.25]
    s.body("RR_thigh").pos = [0.0, -0.08, 0.0]
    s.geom("RL_foot").pos = [0.02, 0.01, -0.2]
    s.body("FR_hip").pos = [0.21, -0.05, 0.01]
    knee = s.joint("FL_calf_joint")
    knee.axis = [0.0, -1.0, 0.0]
    knee.range = [0.838, 2.723]
    return s.compile()


def _sample_q(kin, n: int, seed: int = 0) -> np.ndarray:
    """n joint configurations per leg, uniform within the joint ranges, plus every corner of the ranges."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(kin.lower, kin.upper, size=(n, *kin.lower.shape))
    corners = np.array(np.meshgrid(*[[0, 1]] * kin.dof, indexing="ij")).reshape(kin.dof, -1).T
    q_corners = np.where(corners[:, None, :] == 0, kin.lower, kin.upper)
    return np.concatenate([q, q_corners])


def _feet_in_base(model, spec, q: np.ndarray, base_pos, base_quat) -> np.ndarray:
    """MuJoCo's foot geom centres (legs, 3) in the base frame for joint angles q (in spec.joints order)."""
    data = mujoco.MjData(model)
    data.qpos[:3], data.qpos[3:7] = base_pos, base_quat
    for name, angle in zip(spec.joints, q):
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = angle
    mujoco.mj_kinematics(model, data)
    base = model.body(spec.base_body).id
    feet = np.array([data.geom(f).xpos for f in spec.feet])
    return (feet - data.xpos[base]) @ data.xmat[base].reshape(3, 3)


# -- forward kinematics against MuJoCo --------------------------------------------------------------------

@pytest.mark.parametrize("edited", [False, True], ids=["go2", "edited-go2"])
def test_fk_agrees_with_mujoco(spec, model, edited):
    m = _edited_go2(spec) if edited else model
    kin = leg_kinematics(m, spec)
    rng = np.random.default_rng(1)
    q = _sample_q(kin, 20, seed=1)
    ours = kin.fk(q)
    for i in range(len(q)):
        quat = rng.normal(size=4)
        theirs = _feet_in_base(m, spec, kin.to_joints(q[i:i + 1], spec.home)[0], rng.normal(size=3),
                               quat / np.linalg.norm(quat))
        np.testing.assert_allclose(ours[i], theirs, atol=1e-9, rtol=0)


def test_kinematics_are_read_from_the_model(spec, model, kin):
    edited = leg_kinematics(_edited_go2(spec), spec)
    np.testing.assert_allclose(kin.hip_pos[0], [0.1934, 0.0465, 0.0])
    np.testing.assert_allclose(kin.lateral, [0.0955, -0.0955, 0.0955, -0.0955])
    np.testing.assert_allclose(kin.lower[0], [-1.047, -1.571, -2.723])
    np.testing.assert_allclose(kin.lower[2], [-1.047, -0.524, -2.723])
    np.testing.assert_allclose(kin.foot_radius, 0.022)
    np.testing.assert_allclose(edited.hip_pos[1], [0.21, -0.05, 0.01])
    np.testing.assert_allclose(edited.lateral, [0.0955, -0.0955, 0.1055, -0.08])
    np.testing.assert_allclose(edited.axis_sign[0], [1.0, 1.0, -1.0])
    np.testing.assert_allclose(edited.lower[0, 2], 0.838)


# -- inverse kinematics --------------------------------------------------------------------------------------

@pytest.mark.parametrize("edited", [False, True], ids=["go2", "edited-go2"])
def test_ik_round_trip_over_the_reachable_workspace(spec, model, edited):
    kin = leg_kinematics(_edited_go2(spec) if edited else model, spec)
    p = kin.fk(_sample_q(kin, 20000))
    q, clipped = kin.ik(p)
    assert q.shape == p.shape and clipped.shape == p.shape[:-1]
    assert not clipped.any()
    assert np.all(q >= kin.lower) and np.all(q <= kin.upper)
    assert np.abs(kin.fk(q) - p).max() < 1e-6


def test_ik_of_the_home_feet_is_the_home_pose(spec, kin):
    home = spec.home.reshape(1, 4, 3)
    q, clipped = kin.ik(kin.fk(home))
    assert not clipped.any()
    np.testing.assert_allclose(q, home, atol=1e-9)  # knee backward (negative), as the Go2 stands


def test_out_of_reach_targets_go_to_the_nearest_reachable_point(spec, kin):
    hip, lateral = kin.hip_pos[0], kin.lateral[0]
    offsets = np.array([[0.0, 0.0955, -1.0],    # too far below
                        [0.5, 0.1, -0.5],       # too far ahead
                        [0.0, 0.6, -0.2],       # too far outward
                        [0.02, 0.09, -0.05],    # too close to the hip
                        [0.0, 0.0, 0.0]])       # at the hip itself
    home = spec.home.reshape(1, 4, 3)
    targets = np.tile(kin.fk(home), (len(offsets), 1, 1))  # other legs: reachable
    targets[:, 0] = hip + offsets
    q, clipped = kin.ik(targets)
    assert np.isfinite(q).all()
    np.testing.assert_array_equal(clipped[:, 0], True)
    assert not clipped[:, 1:].any()
    assert int(clipped.sum()) == len(offsets)
    assert np.all(q >= kin.lower) and np.all(q <= kin.upper)
    reached = kin.fk(q)[:, 0]
    # the reachable set lies in a shell about the abduction joint: the radial projection is the nearest point
    r_in = np.hypot(kin._planar.rmin[0], lateral)
    r_out = np.hypot(kin._planar.rmax[0], lateral)
    for off, got in zip(offsets[:4], reached[:4]):
        n = np.linalg.norm(off)
        np.testing.assert_allclose(got, hip + off / n * np.clip(n, r_in, r_out), atol=1e-9)
    # and no reachable foot position (dense samples and a grid with the range ends) is nearer to the target
    grid = np.stack(np.meshgrid(*[np.linspace(kin.lower[0, j], kin.upper[0, j], 41) for j in range(3)],
                                indexing="ij"), axis=-1).reshape(-1, 3)
    samples = np.concatenate([grid, np.random.default_rng(2).uniform(kin.lower[0], kin.upper[0], (100000, 3))])
    q_all = np.zeros((len(samples), 4, 3))
    q_all[:, 0] = samples
    cloud = kin.fk(q_all)[:, 0]
    for target, got in zip(targets[:, 0], reached):
        nearest = np.linalg.norm(cloud - target, axis=-1).min()
        assert np.linalg.norm(got - target) <= nearest + 1e-9
        assert np.linalg.norm(got - target) > nearest - 0.01  # the samples are dense enough to mean something


def test_targets_beyond_a_joint_limit_stop_at_the_limit(spec, kin):
    # a rear foot far forward at hip level is within reach but needs the thigh below its limit (-0.524)
    targets = kin.fk(spec.home.reshape(1, 4, 3))
    targets[0, 2] = kin.hip_pos[2] + [0.3, kin.lateral[2], 0.0]
    q, clipped = kin.ik(targets)
    assert clipped[0].tolist() == [False, False, True, False]
    assert np.isfinite(q).all()
    assert q[0, 2, 1] == pytest.approx(kin.lower[2, 1])


def test_left_and_right_legs_are_mirrored(spec, model, kin):
    index, sign = spec.joint_mirror()
    ctrl = GaitController(spec, model, default_gait("go2", "stand"), 1, CTRL_DT)
    ctrl.time[:] = 10.0
    stand = ctrl.joint_targets()[0]
    np.testing.assert_allclose(stand, sign * stand[index], atol=1e-12)
    # an off-centre target (non-zero abduction) and its reflection y -> -y
    p = kin.fk(spec.home.reshape(1, 4, 3))
    p[0, 0] = kin.hip_pos[0] + [0.05, 0.15, -0.22]
    p[0, 1] = p[0, 0] * [1.0, -1.0, 1.0]
    q, clipped = kin.ik(p)
    assert not clipped.any()
    assert abs(q[0, 0, 0]) > 0.1
    np.testing.assert_allclose(q[0, 1], q[0, 0] * [-1.0, 1.0, 1.0], atol=1e-12)


# -- 2-DOF planar legs ---------------------------------------------------------------------------------------

def test_planar_leg_round_trip_on_arbitrary_link_lengths():
    rng = np.random.default_rng(3)
    for upper_length, lower_length in [(0.042, 0.076), (0.2, 0.1), (0.1, 0.1), *rng.uniform(0.02, 0.3, (5, 2))]:
        hips = rng.uniform(-0.1, 0.1, (4, 3))
        legs = PlanarLeg2.from_lengths(hips, upper_length, lower_length, lower=np.tile([-1.57, -2.9], (4, 1)),
                                       upper=np.tile([1.57, -0.2], (4, 1)))
        p = legs.fk(_sample_q(legs, 5000, seed=4))
        q, clipped = legs.ik(p)
        assert not clipped.any()
        assert np.abs(legs.fk(q) - p).max() < 1e-6


def test_planar_leg_clips_off_plane_and_out_of_reach_targets():
    legs = PlanarLeg2.from_lengths(np.zeros((4, 3)), 0.042, 0.076, lower=np.tile([-1.57, -3.1], (4, 1)),
                                   upper=np.tile([1.57, -0.0], (4, 1)))
    p = np.array([[[0.0, 0.03, -0.08], [0.0, 0.0, -0.5], [0.0, 0.0, 0.01], [0.02, 0.0, -0.1]]])
    q, clipped = legs.ik(p)
    assert clipped[0].tolist() == [True, True, True, False]
    reached = legs.fk(q)[0]
    np.testing.assert_allclose(reached[0], [0.0, 0.0, -0.08], atol=1e-9)          # onto the leg plane
    np.testing.assert_allclose(reached[1], [0.0, 0.0, -0.118], atol=1e-9)         # full reach, straight down
    folded = np.sqrt(0.042**2 + 0.076**2 + 2 * 0.042 * 0.076 * np.cos(3.1))  # knee at its -3.1 limit
    np.testing.assert_allclose(reached[2], [0.0, 0.0, folded], atol=1e-9)  # l2 > l1: the foot folds above the hip


def test_two_joint_legs_in_a_model_give_a_planar_leg(spec):
    # a tiny 4-legged robot with 2-joint legs, compiled by MuJoCo (the PiDog's shape)
    legs = "".join(f"""
      <body name="{leg}_upper" pos="{x} {y} 0">
        <joint name="{leg}_hip" axis="0 1 0" range="-1.57 1.57"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.042" size="0.005"/>
        <body name="{leg}_lower" pos="0 0 -0.042">
          <joint name="{leg}_knee" axis="0 1 0" range="-3 -0.2"/>
          <geom name="{leg}_foot" type="sphere" pos="0 0 -0.076" size="0.008"/>
        </body>
      </body>""" for leg, x, y in [("FL", 0.0585, 0.049), ("FR", 0.0585, -0.049), ("RL", -0.0585, 0.049),
                                   ("RR", -0.0585, -0.049)])
    xml = f"""<mujoco><compiler angle="radian"/><worldbody><body name="body"><freejoint/>
      <geom type="box" size="0.06 0.04 0.02"/>
      {legs}</body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    joints = tuple(f"{leg}_{j}" for leg in ("FL", "FR", "RL", "RR") for j in ("hip", "knee")) + ("tail",)
    robot = dataclasses.replace(spec, name="dog", base_body="body", joints=joints,
                                feet=tuple(f"{leg}_foot" for leg in ("FL", "FR", "RL", "RR")),
                                home_pose=(0.5, -1.0) * 4 + (0.3,))
    legs2 = leg_kinematics(model, robot)
    assert isinstance(legs2, PlanarLeg2)
    np.testing.assert_allclose(legs2.foot_radius, 0.008)
    q = _sample_q(legs2, 10, seed=5)
    for qi in q:
        theirs = _feet_in_base(model, robot, legs2.to_joints(qi[None], robot.home)[0][:8], [0, 0, 0.1],
                               [1, 0, 0, 0])
        np.testing.assert_allclose(legs2.fk(qi), theirs, atol=1e-9)
    q2, clipped = legs2.ik(legs2.fk(q))
    assert not clipped.any()
    np.testing.assert_allclose(legs2.fk(q2), legs2.fk(q), atol=1e-9)
    # a controller over it keeps the non-leg joint (the tail) at its home value
    ctrl = GaitController(robot, model, dataclasses.replace(default_gait("go2", "trot"), body_height=0.1,
                                                            step_height=0.02, step_length=0.04), 3, CTRL_DT)
    targets = ctrl.joint_targets()
    assert targets.shape == (3, 9)
    np.testing.assert_allclose(targets[:, 8], 0.3)
    assert ctrl.clipped_count == 0


# -- foot trajectories ------------------------------------------------------------------------------------------

def _traj(kin, params: GaitParams, phase) -> np.ndarray:
    return foot_targets(params, np.asarray(phase, dtype=np.float64), kin.anchor, kin.foot_radius)


def test_stance_feet_move_backward_at_the_stroke_speed(kin):
    params = default_gait("go2", "trot")
    T, duty, L = params.cycle_time, params.duty_factor, params.step_length
    t = np.linspace(0.0, T * duty * 0.99, 50)  # FL's stance
    p = _traj(kin, params, t / T)
    ground = -params.body_height + kin.foot_radius[0]
    np.testing.assert_allclose(p[:, 0, 2], ground, atol=1e-12)
    np.testing.assert_allclose(np.diff(p[:, 0, 0]) / np.diff(t), -L / (duty * T), rtol=1e-9)
    np.testing.assert_allclose(p[:, 0, 1], kin.anchor[0, 1], atol=1e-12)
    np.testing.assert_allclose(p[0, 0, 0], kin.anchor[0, 0] + L / 2, atol=1e-12)  # touch-down at the front
    assert params.speed[0] == pytest.approx(L / (duty * T))
    # backward: a negative stroke moves stance feet forward
    back = _traj(kin, dataclasses.replace(params, step_length=-L), t / T)
    np.testing.assert_allclose(np.diff(back[:, 0, 0]) / np.diff(t), L / (duty * T), rtol=1e-9)


def test_swing_lifts_to_step_height_and_lands_softly(kin):
    params = default_gait("go2", "trot")
    duty, h = params.duty_factor, params.step_height
    ground = -params.body_height + kin.foot_radius[0]
    swing = np.linspace(duty, 1.0, 2001)
    z = _traj(kin, params, swing)[:, 0, 2]
    assert z.max() - ground == pytest.approx(h, abs=1e-12)
    assert np.argmax(z) == 1000  # apex at mid-swing
    eps = 1e-6
    for lift_off_or_touch_down in (duty, 1.0):
        zz = _traj(kin, params, [lift_off_or_touch_down - eps, lift_off_or_touch_down, lift_off_or_touch_down + eps])
        np.testing.assert_allclose(zz[:, 0, 2], ground, atol=1e-9)  # on the ground, zero vertical speed
    # the swing brings the foot back to where stance starts
    ends = _traj(kin, params, [1.0 - 1e-9, 0.0])
    np.testing.assert_allclose(ends[0], ends[1], atol=1e-8)


def test_gait_patterns_pair_the_legs(kin):
    phase = np.linspace(0.0, 1.0, 96, endpoint=False)
    pairs = {"trot": [(0, 3), (1, 2)], "pace": [(0, 2), (1, 3)], "bound": [(0, 1), (2, 3)]}
    for gait, together in pairs.items():
        p = _traj(kin, default_gait("go2", gait), phase) - kin.anchor * [1, 1, 0]
        for a, b in together:
            np.testing.assert_allclose(p[:, a], p[:, b], atol=1e-12)
        a, b = together[0][0], together[1][0]
        assert np.abs(p[:, a] - p[:, b]).max() > 0.05  # the pairs alternate
        np.testing.assert_allclose(np.roll(p[:, a], 48, axis=0), p[:, b], atol=1e-12)  # half a cycle apart
    # walk: one foot in the air at a time, touch-downs a quarter cycle apart (RL, FL, RR, FR)
    walk = default_gait("go2", "walk")
    stance = stroke(leg_phases(phase, np.asarray(walk.offsets)), walk.duty_factor)[2]
    assert stance.sum(axis=1).min() >= 3
    touch_down = [np.flatnonzero(leg_phases(phase, np.asarray(walk.offsets))[:, leg] < 1e-9) for leg in range(4)]
    assert [int(phase[t[0]] * 4) for t in touch_down] == [0, 2, 3, 1]


def test_lateral_and_turning_strokes(kin):
    params = dataclasses.replace(default_gait("go2", "trot"), step_length=0.0, lateral=0.06)
    t = np.linspace(0.0, 0.2, 20)
    p = _traj(kin, params, t)
    np.testing.assert_allclose(np.diff(p[:, 0, 1]), np.diff(p[:, 0, 1])[0], atol=1e-12)
    assert np.diff(p[:, 0, 1]).max() < 0  # moving left, planted feet slide right
    params = dataclasses.replace(params, lateral=0.0, turning=0.2)
    p = _traj(kin, params, t)[:, 0]
    radius = np.hypot(p[:, 0], p[:, 1])
    np.testing.assert_allclose(radius, np.hypot(*kin.anchor[0, :2]), atol=1e-12)  # an arc about the base origin
    yaw = np.unwrap(np.arctan2(p[:, 1], p[:, 0]))
    np.testing.assert_allclose(np.diff(yaw) / np.diff(t * params.cycle_time), -params.speed[2], rtol=1e-9)


# -- static poses, defaults and the controller ---------------------------------------------------------------------

def test_stand_is_the_home_pose_at_the_default_height(spec, model, kin):
    home = spec.home.reshape(1, 4, 3)
    home_height = -kin.fk(home)[0, :, 2].mean() + kin.foot_radius[0]
    stand = default_gait("go2", "stand")
    assert stand.body_height == pytest.approx(home_height, abs=0.01)
    for gait in ("walk", "trot", "pace", "bound", "stand"):
        assert default_gait("go2", gait).body_height == stand.body_height
    ctrl = GaitController(spec, model, stand, 4, CTRL_DT)
    np.testing.assert_allclose(ctrl.joint_targets(), np.tile(spec.home, (4, 1)), atol=1e-12)  # starts at home
    for _ in range(int(stand.transition_time / CTRL_DT) + 1):
        ctrl.step()
    targets = ctrl.joint_targets()
    np.testing.assert_allclose(targets, np.tile(spec.home, (4, 1)), atol=0.05)
    p = kin.fk(kin.from_joints(targets))
    np.testing.assert_allclose(p[..., 2], np.broadcast_to(-stand.body_height + kin.foot_radius, (4, 4)), atol=1e-9)


def test_sit_folds_the_rear_legs_smoothly(spec, model, kin):
    sit = default_gait("go2", "sit")
    ctrl = GaitController(spec, model, sit, 2, CTRL_DT)
    ctrl.reset(np.array([1]))
    path = []
    for _ in range(int(sit.transition_time / CTRL_DT) + 5):
        path.append(ctrl.joint_targets()[0])
        ctrl.step()
    path = np.array(path)
    np.testing.assert_allclose(path[0], spec.home, atol=1e-12)
    assert np.abs(np.diff(path, axis=0)).max() < 0.05  # no jumps at 50 Hz
    final = kin.from_joints(path[-1][None])
    p = kin.fk(final)[0]
    assert ctrl.clipped_count == 0
    assert p[2:, 2].mean() > p[:2, 2].mean() + 0.1  # rear feet tucked up towards the base: nose up
    assert np.all(final[0, 2:, 2] < final[0, :2, 2] - 0.5)  # rear knees folded more than the front ones
    halfway = path[int(sit.transition_time / CTRL_DT / 2)]
    np.testing.assert_allclose(halfway, 0.5 * (spec.home + path[-1]), atol=1e-9)


def test_controller_batch(spec, model, kin):
    params = default_gait("go2", "trot")
    ctrl = GaitController(spec, model, params, 5, CTRL_DT)
    ctrl.reset(phase=np.linspace(0.0, 0.8, 5))
    targets = ctrl.joint_targets()
    assert targets.shape == (5, 12) and np.isfinite(targets).all()
    q, _ = kin.ik(_traj(kin, params, ctrl.phase))
    for leg in range(4):
        for j in range(3):
            col = spec.joints.index(kin.joint_names[leg][j])
            np.testing.assert_allclose(targets[:, col], q[:, leg, j], atol=1e-12)
    ctrl.step()
    np.testing.assert_allclose(ctrl.phase, np.mod(np.linspace(0.0, 0.8, 5) + CTRL_DT / params.cycle_time, 1.0))
    ctrl.reset(np.array([0, 3]))
    assert ctrl.phase[0] == 0.0 and ctrl.phase[3] == 0.0 and ctrl.phase[1] > 0.0
    features = ctrl.phase_features()
    assert features.shape == (5, 2)
    np.testing.assert_allclose(features[0], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(np.hypot(features[:, 0], features[:, 1]), 1.0)
    stance = ctrl.stance()
    assert stance[0].tolist() == [True, False, False, True]
    assert ctrl.clipped_count == 0
    # a stroke far beyond the legs' reach: clipped, counted, finite and within the joint ranges
    ctrl.set_params(dataclasses.replace(params, step_length=1.5))
    for _ in range(25):
        ctrl.step()
        targets = ctrl.joint_targets()
        assert np.isfinite(targets).all()
        assert np.all(kin.from_joints(targets) >= kin.lower) and np.all(kin.from_joints(targets) <= kin.upper)
    assert ctrl.clipped_count > 0
    count = ctrl.clipped_count
    ctrl.joint_targets()  # the same step again is not counted twice
    assert ctrl.clipped_count == count
    assert ctrl.last_clipped.any()


def test_joint_targets_follow_the_robot_joint_order(spec, model):
    # the same robot with its legs listed in another order: each joint still gets its own angle
    order = spec.joints[6:] + spec.joints[:6]
    shuffled = dataclasses.replace(spec, joints=order, home_pose=spec.home_pose[6:] + spec.home_pose[:6])
    params = default_gait("go2", "trot")
    a, b = GaitController(spec, model, params, 2, CTRL_DT), GaitController(shuffled, model, params, 2, CTRL_DT)
    for c in (a, b):
        c.reset(phase=np.array([0.1, 0.6]))
    ta, tb = a.joint_targets(), b.joint_targets()
    for i, name in enumerate(order):
        np.testing.assert_allclose(tb[:, i], ta[:, spec.joints.index(name)], atol=1e-12)
    assert np.abs(ta - tb).max() > 0.01


# -- parameters ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("type", "gallop"), ("duty_factor", 1.0), ("duty_factor", 0.0), ("cycle_time", 0.0), ("body_height", -0.1),
    ("step_height", -0.01), ("step_height", 0.5), ("transition_time", -1.0), ("pitch", 2.0), ("turning", 3.0),
    ("step_length", float("nan")),
])
def test_bad_gait_params_name_the_key(key, value):
    with pytest.raises(LegkitError, match=rf"task\.gait\.{key}"):
        GaitParams(**{key: value})


def test_a_walk_needs_three_feet_down():
    with pytest.raises(LegkitError, match=r"task\.gait\.duty_factor.*walk"):
        GaitParams(type="walk", duty_factor=0.6)
    assert GaitParams(type="walk", duty_factor=0.75).duty_factor == 0.75


def test_gait_params_come_from_config_and_defaults():
    params = from_dict(GaitParams, {"type": "pace", "step_length": 0.12, "cycle_time": 1}, "task.gait")
    assert params.type == "pace" and params.step_length == 0.12 and params.cycle_time == 1.0
    with pytest.raises(LegkitError, match="task.gait.stride"):
        from_dict(GaitParams, {"stride": 0.1}, "task.gait")
    for gait in GAIT_TYPES:
        assert default_gait("go2", gait).type == gait
    assert default_gait("go2") == GaitParams()
    with pytest.raises(LegkitError, match="gallop.*walk, trot"):
        default_gait("go2", "gallop")
    with pytest.raises(LegkitError, match="robots with default gaits: go2"):
        default_gait("spot", "trot")
