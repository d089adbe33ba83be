"""Mechanical power of joint torques over MuJoCo's physics steps: what `legkit eval` and `legkit sim2sim` report.

A physics step holds each joint torque tau constant and moves the joint by dq = qdot' * dt (MuJoCo's
integrators advance the position with the velocity the step ends with), so the step's work is tau * dq and
its mean power tau * qdot'. Summed as |tau * qdot'| over joints, this is the power that motors draw
without recovering what they absorb; averaged over every physics step, it is the honest energy.

MuJoCo's reading of an actuator's force (actuator_force, the actuatorfrc sensor) is not always the torque the
step applied: the implicit integrators (implicitfast, implicit) fold a position actuator's damping kv into the
velocity update, so the step applies -kv * qdot' where the reading says -kv * qdot. `AppliedTorque` turns the
reading into the applied torque; an explicit loop (sim2sim's own PD) applies what it computes.
"""

from __future__ import annotations

import mujoco
import numpy as np

from legkit import LegkitError

IMPLICIT = (int(mujoco.mjtIntegrator.mjINT_IMPLICIT), int(mujoco.mjtIntegrator.mjINT_IMPLICITFAST))
"""Integrators that treat an actuator's velocity derivative implicitly."""
BIASES = (int(mujoco.mjtBias.mjBIAS_NONE), int(mujoco.mjtBias.mjBIAS_AFFINE))
"""Bias types measured: none (a motor) and affine (a position or velocity servo)."""


def joint_power(torque: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Mechanical power sum |tau * qdot| (W) over the last axis: joint torques (N*m) held over a physics step
    times the joint velocities (rad/s) the step ended with."""
    return np.sum(np.abs(torque * qvel), axis=-1)


class AppliedTorque:
    """The joint torques that a model's joint actuators applied over a physics step, from their force readings."""

    def __init__(self, model: mujoco.MjModel, actuators: np.ndarray):
        acts = np.asarray(actuators, dtype=np.int64)
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, int(i)) or str(i) for i in acts]
        bad = [n for n, i in zip(names, acts)
               if int(model.actuator_trntype[i]) != int(mujoco.mjtTrn.mjTRN_JOINT)
               or int(model.actuator_gaintype[i]) != int(mujoco.mjtGain.mjGAIN_FIXED)
               or int(model.actuator_biastype[i]) not in BIASES]
        if bad:
            raise LegkitError(f"actuators {', '.join(bad)} are not joint motors or position/velocity servos (joint "
                              "transmission, fixed gain, no or affine bias); their mechanical power is not measured")
        self.gear = model.actuator_gear[acts, 0].copy()
        """Joint torque per unit of actuator force."""
        affine = model.actuator_biastype[acts] == int(mujoco.mjtBias.mjBIAS_AFFINE)
        implicit = int(model.opt.integrator) in IMPLICIT
        self.dforce_dvel = np.where(affine & implicit, model.actuator_biasprm[acts, 2], 0.0)
        """d force / d actuator velocity (-kv) that the integrator applies implicitly; 0 where it is explicit."""
        limited = model.actuator_forcelimited[acts].astype(bool)
        self.low = np.where(limited, model.actuator_forcerange[acts, 0], -np.inf)
        self.high = np.where(limited, model.actuator_forcerange[acts, 1], np.inf)

    def __call__(self, force: np.ndarray, qvel_before: np.ndarray, qvel_after: np.ndarray) -> np.ndarray:
        """Joint torques (N*m) applied over a step from the actuator force readings of the state it started from
        and the joint velocities (rad/s) before and after it; arrays (..., actuators)."""
        # A force held at its limit has no velocity derivative: MuJoCo applies the clamped force as it is.
        free = (force > self.low) & (force < self.high)
        applied = force + np.where(free, self.dforce_dvel, 0.0) * self.gear * (qvel_after - qvel_before)
        return self.gear * applied
