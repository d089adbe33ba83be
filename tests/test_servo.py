"""The servo speed limit (BatchSim.set_servo_speed): a hobby servo's setpoint never outruns its rated speed."""

from __future__ import annotations

import copy

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.robots import get_robot
from legkit.sim.batch import BatchSim


def _weightless(model: mujoco.MjModel) -> mujoco.MjModel:
    """A copy without gravity: the Go2 floats above the ground and its joints move freely."""
    m = copy.deepcopy(model)
    m.opt.gravity[:] = 0.0
    return m


def _held_up(model: mujoco.MjModel) -> np.ndarray:
    """A Go2 state floating above the ground in its home pose."""
    qpos = model.qpos0.copy()
    qpos[2] = 1.0
    qpos[7:] = get_robot("go2").home
    return qpos


@pytest.mark.parametrize("speed", [2.0, 6.0])
def test_a_joint_never_moves_faster_than_its_servo(go2_model, speed):
    m = _weightless(go2_model)
    sim = BatchSim(m, 2, 4, nthread=1)
    try:
        sim.set_state(np.arange(2), np.tile(_held_up(m), (2, 1)), np.zeros((2, m.nv)))
        sim.set_servo_speed(np.full(m.nu, speed))
        target = get_robot("go2").home.copy()
        target[1::3] += 1.2  # every thigh 1.2 rad away: without the limit the PD snaps there at once
        free = BatchSim(m, 1, 4, nthread=1)
        free.set_state(np.arange(1), _held_up(m)[None], np.zeros((1, m.nv)))
        top, top_free, start = 0.0, 0.0, sim.qpos[0, 7 + 1]
        setpoint = np.full(2, start)
        for _ in range(50):  # 1 s
            sim.step(np.tile(target, (2, 1)))
            free.step(target[None])
            ctrl = np.concatenate([setpoint[None], sim._ctrl[:, :, 1].T])  # the thigh's setpoint, substep by substep
            assert np.abs(np.diff(ctrl, axis=0)).max() <= speed * m.opt.timestep + 1e-12
            setpoint = ctrl[-1]
            top = max(top, np.abs(sim.substep_qvel[0, :, 6 + 1]).max())
            top_free = max(top_free, np.abs(free.substep_qvel[0, :, 6 + 1]).max())
        free.close()
        # The setpoint never outruns the servo; the joint follows it through the PD, overshooting a little.
        assert top <= speed * 1.25, f"thigh reached {top:.2f} rad/s under a {speed} rad/s servo"
        assert top_free > 1.5 * top  # the limit is what held it back
        moved = sim.qpos[0, 7 + 1] - start
        assert moved == pytest.approx(1.2, abs=0.15)  # it still gets there (1.2 rad in 0.2-0.6 s)
    finally:
        sim.close()


def test_bad_servo_speeds_are_refused(go2_model):
    sim = BatchSim(go2_model, 1, 4, nthread=1)
    try:
        with pytest.raises(LegkitError, match="positive"):
            sim.set_servo_speed(np.zeros(go2_model.nu))
        with pytest.raises(LegkitError, match="12 positive"):
            sim.set_servo_speed([1.0, 2.0])
    finally:
        sim.close()
