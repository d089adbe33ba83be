"""Mechanical power (sim/power.py): the torque each physics step applied, checked against MuJoCo's own dynamics."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.sim.batch import BatchSim
from legkit.sim.power import AppliedTorque, joint_power
from legkit.sim.scene import PhysicsConfig, build_model


def test_joint_power_is_the_sum_of_absolute_joint_powers():
    torque = np.array([[2.0, -1.0, 0.0], [0.0, 3.0, -2.0]])
    qvel = np.array([[1.0, 2.0, 7.0], [5.0, -1.0, -0.5]])
    np.testing.assert_allclose(joint_power(torque, qvel), [2.0 + 2.0 + 0.0, 0.0 + 3.0 + 1.0])


def _airborne_step(go2, integrator: str) -> tuple[mujoco.MjModel, dict]:
    """One physics step of a Go2 held in the air without gravity or joint friction, its joints moving fast
    towards targets some of which saturate the motors: the force readings, velocities and mass matrix."""
    m = build_model(go2, replace(PhysicsConfig(), integrator=integrator))
    m.opt.gravity[:] = 0.0
    m.dof_frictionloss[:] = 0.0
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    d.qpos[2] = 2.0
    d.qpos[7:] = go2.home + rng.uniform(-0.3, 0.3, 12)
    d.qvel[6:] = rng.uniform(-5.0, 5.0, 12)
    d.ctrl[:] = go2.home + rng.uniform(-0.8, 0.8, 12)
    mujoco.mj_forward(m, d)
    M = np.zeros((m.nv, m.nv))
    mujoco.mj_fullM(m, d, M)
    before = {"force": d.actuator_force.copy(), "v0": d.qvel.copy(), "M": M, "bias": d.qfrc_bias.copy(),
              "passive": d.qfrc_passive.copy(), "constraint": d.qfrc_constraint.copy()}
    mujoco.mj_step(m, d)
    return m, {**before, "v1": d.qvel.copy()}


def test_applied_torque_is_what_the_implicit_step_applied(go2):
    """M (v1 - v0) / dt = applied forces: the actuators' share is the reading with kv acting on v1, except where
    the force is held at its limit; the raw reading is off by kv * (v1 - v0)."""
    m, s = _airborne_step(go2, "implicitfast")
    dv, dt = s["v1"] - s["v0"], m.opt.timestep
    passive = s["passive"] - m.dof_damping * dv  # joint damping is implicit too
    actuators = (s["M"] @ dv / dt + s["bias"] - passive - s["constraint"])[6:]
    applied = AppliedTorque(m, np.arange(m.nu))(s["force"], s["v0"][6:], s["v1"][6:])
    limit = m.actuator_forcerange[:, 1]
    clamped = np.abs(s["force"]) >= limit
    assert clamped.any() and not clamped.all()  # the state exercises both cases
    np.testing.assert_allclose(applied, actuators, atol=1e-6)
    assert np.max(np.abs(s["force"] - actuators)) > 1.0  # the reading alone is not the applied torque


def test_explicit_integrator_applies_the_reading(go2):
    m, s = _airborne_step(go2, "euler")
    applied = AppliedTorque(m, np.arange(m.nu))
    assert not applied.dforce_dvel.any()
    np.testing.assert_array_equal(applied(s["force"], s["v0"][6:], s["v1"][6:]), s["force"])


def test_substep_qvel_spans_the_step(go2, go2_model):
    m = go2_model
    sim = BatchSim(m, 2, 4, nthread=1)
    try:
        qpos = np.tile(m.qpos0, (2, 1))
        qpos[:, 2], qpos[:, 7:] = 0.4, go2.home
        sim.set_state(np.arange(2), qpos, np.zeros((2, m.nv)))
        for _ in range(3):
            start = sim.qvel.copy()
            sim.step(np.tile(go2.home + 0.3, (2, 1)))
            v = sim.substep_qvel
            assert v.shape == (2, 5, m.nv)
            np.testing.assert_array_equal(v[:, 0], start)
            np.testing.assert_array_equal(v[:, -1], sim.qvel)
    finally:
        sim.close()


def test_unmeasured_actuators_are_named(go2):
    spec = mujoco.MjSpec.from_file(str(go2.xml()))
    spec.actuators[0].gaintype = mujoco.mjtGain.mjGAIN_AFFINE
    m = spec.compile()
    with pytest.raises(LegkitError, match="actuators FL_hip are not joint motors"):
        AppliedTorque(m, np.arange(m.nu))
