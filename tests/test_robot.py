"""The Go2 model against its published specifications (listed in legkit/robots/go2.py): mass, standing height, joint ranges, torque limits, names."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

LEGS = ("FL", "FR", "RL", "RR")

# The published numbers, written out here (not read from the model) so that a wrong MJCF fails.
ABDUCTION_RANGE = (-1.047, 1.047)
FRONT_THIGH_RANGE = (-1.571, 3.491)
REAR_THIGH_RANGE = (-0.524, 4.538)
KNEE_RANGE = (-2.723, -0.838)
HIP_THIGH_TORQUE = 23.7
KNEE_TORQUE = 45.4


def _id(model: mujoco.MjModel, obj: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    assert i >= 0, f"model has no {obj.name} named {name!r}"
    return i


def expected_range(joint: str) -> tuple[float, float]:
    leg, part = joint.split("_")[:2]
    if part == "hip":
        return ABDUCTION_RANGE
    if part == "thigh":
        return FRONT_THIGH_RANGE if leg.startswith("F") else REAR_THIGH_RANGE
    assert part == "calf"
    return KNEE_RANGE


def expected_torque(joint: str) -> float:
    return KNEE_TORQUE if "_calf_" in joint else HIP_THIGH_TORQUE


def test_total_mass_matches_facts(go2_model):
    assert go2_model.body_mass.sum() == pytest.approx(15.2, abs=0.3)


def test_base_and_leg_masses_match_facts(go2_model):
    base = _id(go2_model, mujoco.mjtObj.mjOBJ_BODY, "base")
    assert go2_model.body_mass[base] == pytest.approx(6.921, abs=1e-3)
    for leg in LEGS:
        hip = _id(go2_model, mujoco.mjtObj.mjOBJ_BODY, f"{leg}_hip")
        # hip 0.678 + thigh 1.152 + calf 0.241 (foot included)
        assert go2_model.body_subtreemass[hip] == pytest.approx(2.071, abs=1e-3), leg


def test_holds_home_pose_at_standing_height(go2, go2_model):
    """PD position actuators holding ctrl = home keep the base at 0.27 +- 0.02 m for 5 s after 0.1 s settling."""
    m = go2_model
    d = mujoco.MjData(m)
    joint_qpos = [m.jnt_qposadr[_id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in go2.joints]
    d.qpos[2] = go2.reset_height
    d.qpos[joint_qpos] = go2.home
    d.ctrl[:] = go2.home
    mujoco.mj_forward(m, d)

    settle, hold = 0.1, 5.0
    heights = []
    for _ in range(int(round((settle + hold) / m.opt.timestep))):
        mujoco.mj_step(m, d)
        if d.time > settle + 1e-9:
            heights.append(d.qpos[2])
    heights = np.array(heights)
    assert len(heights) == pytest.approx(hold / m.opt.timestep, abs=1)
    assert np.isfinite(heights).all()
    assert heights.min() >= 0.27 - 0.02, f"base sank to {heights.min():.4f} m"
    assert heights.max() <= 0.27 + 0.02, f"base rose to {heights.max():.4f} m"
    # Still upright at the end: the body z axis points up.
    up = np.zeros(9)
    mujoco.mju_quat2Mat(up, d.qpos[3:7])
    assert up.reshape(3, 3)[2, 2] > 0.99


def test_joint_ranges_match_facts(go2, go2_model):
    assert len(go2.joints) == 12
    for joint in go2.joints:
        j = _id(go2_model, mujoco.mjtObj.mjOBJ_JOINT, joint)
        assert go2_model.jnt_limited[j], joint
        np.testing.assert_allclose(go2_model.jnt_range[j], expected_range(joint), atol=1e-6, err_msg=joint)


def test_actuators_drive_their_joints_within_facts_limits(go2, go2_model):
    m = go2_model
    assert m.nu == len(go2.actuators) == len(go2.joints)
    for i, (act, joint) in enumerate(zip(go2.actuators, go2.joints)):
        a = _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, act)
        assert a == i, "actuators must be declared in joint order"
        assert m.actuator_trnid[a, 0] == _id(m, mujoco.mjtObj.mjOBJ_JOINT, joint), act
        limit = expected_torque(joint)
        assert m.actuator_forcelimited[a], act
        np.testing.assert_allclose(m.actuator_forcerange[a], (-limit, limit), atol=1e-6, err_msg=act)
        assert go2.torque_limits[i] == pytest.approx(limit), act
        # Position targets cannot ask for more than the joint can reach.
        np.testing.assert_allclose(m.actuator_ctrlrange[a], expected_range(joint), atol=1e-6, err_msg=act)


def test_pd_gains_match_spec(go2, go2_model):
    m = go2_model
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], go2.kp)
    np.testing.assert_allclose(m.actuator_biasprm[:, 1], -go2.kp)
    np.testing.assert_allclose(m.actuator_biasprm[:, 2], -go2.kd)


def test_home_pose_is_within_joint_ranges(go2):
    assert go2.home.shape == (12,)
    for joint, q in zip(go2.joints, go2.home):
        lo, hi = expected_range(joint)
        assert lo <= q <= hi, joint
    np.testing.assert_allclose(go2.home, [0.0, 0.9, -1.8] * 4)


def test_spec_names_exist_in_model(go2, go2_model):
    m = go2_model
    _id(m, mujoco.mjtObj.mjOBJ_BODY, go2.base_body)
    for name in go2.joints:
        _id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
    for name in go2.actuators:
        _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
    for name in go2.feet:
        g = _id(m, mujoco.mjtObj.mjOBJ_GEOM, name)
        assert m.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE
        assert m.geom_size[g, 0] == pytest.approx(0.022)
    sensors = (go2.foot_touch_sensors + go2.base_touch_sensors + go2.undesired_touch_sensors
               + go2.torque_sensors)
    for name in sensors:
        _id(m, mujoco.mjtObj.mjOBJ_SENSOR, name)
    assert len(go2.feet) == len(go2.foot_touch_sensors) == 4
    assert len(go2.torque_sensors) == len(go2.joints)
    for name in go2.foot_touch_sensors + go2.base_touch_sensors + go2.undesired_touch_sensors:
        assert m.sensor_type[_id(m, mujoco.mjtObj.mjOBJ_SENSOR, name)] == mujoco.mjtSensor.mjSENS_TOUCH, name
    for name, act in zip(go2.torque_sensors, go2.actuators):
        s = _id(m, mujoco.mjtObj.mjOBJ_SENSOR, name)
        assert m.sensor_type[s] == mujoco.mjtSensor.mjSENS_ACTUATORFRC, name
        assert m.sensor_objid[s] == _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, act), name


def test_free_base_and_reset_height(go2, go2_model):
    m = go2_model
    assert m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
    assert m.jnt_bodyid[0] == _id(m, mujoco.mjtObj.mjOBJ_BODY, go2.base_body)
    assert (m.nq, m.nv) == (7 + 12, 6 + 12)
    assert go2.reset_height == pytest.approx(0.30)
    assert go2.standing_height == pytest.approx(0.27)
