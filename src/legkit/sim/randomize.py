"""Physics randomization: a bounded pool of edited MjModel copies that robots are assigned to.

`ModelPool` copies the scene's model K times, edits each copy with its own sample of a
`PhysicsRandomization` (ground friction, masses, payload, centre of mass, motor strength, joint
damping and armature), recomputes MuJoCo's derived constants with `mj_setConst`, and records what
it sampled, per model, so that a task can hand it to a critic as privileged observations.
`BatchSim.set_model_pool` / `assign_models` give each robot one of the K models. Memory is bounded
by K, whatever the number of robots.

Copies: in MuJoCo's bindings `copy.copy(model)` and `copy.deepcopy(model)` are both a full
`mj_copyModel` (no buffer shared), measured at the same cost, about 0.55 ms and 0.82 MB per Go2
copy, 0.79 MB of which is the floor texture; compiling the scene again costs about 2.4 ms. What
bounds time and memory is the pool size, not the copy method.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.sim.scene import GROUND_TYPES

Range = tuple[float, float]


@dataclass(frozen=True)
class PhysicsRandomization:
    """What to randomize, each value drawn uniformly in [lo, hi] once per pool model. Defaults: nothing."""

    friction: Range | None = None
    """Absolute sliding friction (dimensionless) of the ground geoms; None keeps the scene's. The ground
    outranks the robot in contact priority (scene.py), so this is every foot-ground contact's friction."""
    mass_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on every body's mass and inertia, one factor per model (scaled density)."""
    body_mass_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on each body's mass and inertia, drawn independently per body, on top of
    `mass_scale` (the validation suite's mass randomization)."""
    payload: Range = (0.0, 0.0)
    """Mass (kg) added to the base body, as a point mass at the base's centre of mass: it adds no
    rotational inertia about it. Negative values make the base lighter."""
    com_offset: float = 0.0
    """Half-range (m) of a uniform shift of the base body's centre of mass (body_ipos), per axis x, y, z."""
    kp_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on the proportional gain of every position actuator (gainprm[0] and
    biasprm[1] = -kp together); the damping gain kv is kept. With `torque_scale`: motor strength."""
    torque_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on the force limits (actuator_forcerange) of every force-limited actuator."""
    damping_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on dof_damping of the actuated joints (never the free joint)."""
    armature_scale: Range = (1.0, 1.0)
    """Factor (dimensionless) on dof_armature of the actuated joints (never the free joint)."""

    def __post_init__(self) -> None:
        ranges = {"mass_scale": self.mass_scale, "body_mass_scale": self.body_mass_scale,
                  "kp_scale": self.kp_scale, "torque_scale": self.torque_scale,
                  "damping_scale": self.damping_scale, "armature_scale": self.armature_scale}
        if self.friction is not None:
            ranges["friction"] = self.friction
        for name, r in ranges.items():
            lo, hi = r
            if not 0 < lo <= hi:
                raise LegkitError(f"invalid task.randomization.{name} = [{lo}, {hi}]: must satisfy 0 < lo <= hi")
        lo, hi = self.payload
        if lo > hi:
            raise LegkitError(f"invalid task.randomization.payload = [{lo}, {hi}]: must satisfy lo <= hi (kg)")
        if self.com_offset < 0:
            raise LegkitError(f"invalid task.randomization.com_offset = {self.com_offset}: must be >= 0 (m)")


def ground_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the ground geoms: planes and height fields of the world body."""
    is_ground = np.isin(model.geom_type, [int(t) for t in GROUND_TYPES]) & (model.geom_bodyid == 0)
    return np.flatnonzero(is_ground)


def position_actuators(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the position servos: fixed gain kp, affine bias with biasprm[1] = -kp."""
    kp = model.actuator_gainprm[:, 0]
    servo = ((model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_FIXED))
             & (model.actuator_biastype == int(mujoco.mjtBias.mjBIAS_AFFINE))
             & (kp > 0) & np.isclose(model.actuator_biasprm[:, 1], -kp))
    return np.flatnonzero(servo)


def actuated_dofs(model: mujoco.MjModel) -> np.ndarray:
    """Dof ids of the joints that actuators drive directly, free joints excluded."""
    by_joint = model.actuator_trntype == int(mujoco.mjtTrn.mjTRN_JOINT)
    joints = np.unique(model.actuator_trnid[by_joint, 0])
    joints = joints[model.jnt_type[joints] != int(mujoco.mjtJoint.mjJNT_FREE)]
    return np.flatnonzero(np.isin(model.dof_jntid, joints))


class ModelPool:
    """`size` copies of `model`, each edited with its own sample of `randomization`.

    Per-model samples, index k = pool model k (privileged observations):
    friction (K,) (the scene's where not randomized), mass_scale (K,), body_mass_scale (K, nbody),
    payload (K,) kg, com_offset (K, 3) m, kp_scale (K,), torque_scale (K,), damping_scale (K,), armature_scale (K,).
    """

    OBSERVABLE = ("friction", "mass_scale", "payload", "com_offset", "kp_scale", "torque_scale",
                  "damping_scale", "armature_scale")
    """Sampled quantities a task may observe, in the order of `values`."""

    def __init__(self, model: mujoco.MjModel, base_body: int, randomization: PhysicsRandomization, *,
                 rng: np.random.Generator, size: int = 64):
        if size < 1:
            raise LegkitError(f"the model pool size must be at least 1, got {size}")
        if not 0 < base_body < model.nbody:
            raise LegkitError(f"base body id {base_body} is not a body of the model (1 .. {model.nbody - 1})")
        r = self.randomization = randomization
        self.size, self.base_body = size, base_body
        ground = ground_geoms(model)
        servos, limited = position_actuators(model), np.flatnonzero(model.actuator_forcelimited)
        dofs = actuated_dofs(model)
        self._check_targets(model, r, ground, servos, limited, dofs)

        # Draw everything first, in a fixed order, from `rng` alone: the same seed gives the same pool.
        u = lambda rng_range, shape=(size,): rng.uniform(*rng_range, shape)  # noqa: E731
        nominal_friction = model.geom_friction[ground[0], 0] if len(ground) else np.nan
        self.friction = u(r.friction) if r.friction is not None else np.full(size, nominal_friction)
        self.mass_scale = u(r.mass_scale)
        self.body_mass_scale = u(r.body_mass_scale, (size, model.nbody))
        self.payload = u(r.payload)
        self.com_offset = u((-r.com_offset, r.com_offset), (size, 3))
        self.kp_scale = u(r.kp_scale)
        self.torque_scale = u(r.torque_scale)
        self.damping_scale = u(r.damping_scale)
        self.armature_scale = u(r.armature_scale)

        base_mass = model.body_mass[base_body] * self.mass_scale * self.body_mass_scale[:, base_body]
        if np.any(base_mass + self.payload <= 0):
            raise LegkitError(f"payload range {r.payload} kg leaves the base ({model.body_mass[base_body]:.3f} kg "
                              "nominal, after mass scaling) without positive mass; raise its lower bound")

        scratch = mujoco.MjData(model)  # mj_setConst's workspace; every copy has the model's sizes
        self.models: list[mujoco.MjModel] = []
        for k in range(size):
            m = copy.deepcopy(model)  # mj_copyModel: nothing shared with `model`
            scale = self.mass_scale[k] * self.body_mass_scale[k]
            m.body_mass[:] *= scale
            m.body_inertia[:] *= scale[:, None]
            m.body_mass[base_body] += self.payload[k]  # point mass at the COM: inertia about it unchanged
            m.body_ipos[base_body] += self.com_offset[k]
            if r.friction is not None:
                m.geom_friction[ground, 0] = self.friction[k]
            m.actuator_gainprm[servos, 0] *= self.kp_scale[k]
            m.actuator_biasprm[servos, 1] *= self.kp_scale[k]
            m.actuator_forcerange[limited] *= self.torque_scale[k]
            m.dof_damping[dofs] *= self.damping_scale[k]
            m.dof_armature[dofs] *= self.armature_scale[k]
            # Subtree masses, inverse weights, actuator_acc0, mean inertia...: derived from what was edited.
            mujoco.mj_setConst(m, scratch)
            self.models.append(m)

    @staticmethod
    def _check_targets(model: mujoco.MjModel, r: PhysicsRandomization, ground: np.ndarray, servos: np.ndarray,
                       limited: np.ndarray, dofs: np.ndarray) -> None:
        """Fail loudly where a requested randomization would change nothing in this model."""
        if r.friction is not None:
            if not len(ground):
                raise LegkitError("friction randomization needs a ground geom (a plane or hfield of the world "
                                  "body); the model has none")
            others = np.setdiff1d(np.arange(model.ngeom), ground)
            if len(others) and model.geom_priority[ground].min() <= model.geom_priority[others].max():
                raise LegkitError("the ground geoms' contact priority must exceed every other geom's, or the "
                                  "robot's own friction wins the contact; build the model with scene.build_model")
        if tuple(r.kp_scale) != (1.0, 1.0) and not len(servos):
            raise LegkitError("kp_scale randomization needs position actuators; the model has none")
        if tuple(r.torque_scale) != (1.0, 1.0) and not len(limited):
            raise LegkitError("torque_scale randomization needs force-limited actuators; the model has none")
        if (tuple(r.damping_scale) != (1.0, 1.0) or tuple(r.armature_scale) != (1.0, 1.0)) and not len(dofs):
            raise LegkitError("damping/armature randomization needs joint actuators; the model has none")

    def __len__(self) -> int:
        return self.size

    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` pool indices drawn uniformly (e.g. one per robot being reset), shape (n,)."""
        return rng.integers(0, self.size, n)

    def values(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The sampled quantities of pool models `indices` (n,): name -> (n,) or (n, 3) for com_offset."""
        idx = np.asarray(indices, dtype=np.int64)
        return {name: getattr(self, name)[idx] for name in self.OBSERVABLE}
