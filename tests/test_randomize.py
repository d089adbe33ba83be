"""Physics randomization: each ModelPool term changes what it names, and BatchSim steps each robot's own model."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.robots import get_robot
from legkit.sim.batch import BatchSim
from legkit.sim.randomize import ModelPool, PhysicsRandomization, ground_geoms
from legkit.sim.scene import PhysicsConfig, build_model

GO2 = get_robot("go2")
PUSH = 30.0
"""Horizontal force (N) on the base, about 0.2 x the Go2's weight: it slides the feet at friction 0.1
(about 0.55 m in 1 s) and barely creeps them at 1.2 (about 2 cm)."""


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return build_model(GO2, PhysicsConfig())


def _id(m: mujoco.MjModel, obj: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(m, obj, name)
    assert i >= 0, name
    return i


def base_id(m: mujoco.MjModel) -> int:
    return _id(m, mujoco.mjtObj.mjOBJ_BODY, GO2.base_body)


def home_qpos(m: mujoco.MjModel) -> np.ndarray:
    q = m.qpos0.copy()
    q[2] = GO2.reset_height
    q[[m.jnt_qposadr[_id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in GO2.joints]] = GO2.home
    return q


def pool(m: mujoco.MjModel, seed: int = 0, size: int = 4, **fields) -> ModelPool:
    return ModelPool(m, base_id(m), PhysicsRandomization(**fields), rng=np.random.default_rng(seed), size=size)


def foot_slip(m: mujoco.MjModel, model_pool: ModelPool | None = None) -> np.ndarray:
    """Horizontal displacement (m) of each foot over 1 s of a PUSH on a Go2 held at home by its PD servos."""
    sim = BatchSim(m, 1, 4, nthread=1, external_forces=True)
    if model_pool is not None:
        sim.set_model_pool(model_pool)
    sim.set_state(np.array([0]), home_qpos(m)[None], np.zeros((1, m.nv)))
    ctrl = GO2.home[None]
    for _ in range(25):  # settle onto the feet, 0.5 s
        sim.step(ctrl)
    data, feet = mujoco.MjData(m), [_id(m, mujoco.mjtObj.mjOBJ_GEOM, f) for f in GO2.feet]

    def feet_xy() -> np.ndarray:
        data.qpos[:] = sim.qpos[0]
        mujoco.mj_kinematics(m, data)
        return data.geom_xpos[feet, :2].copy()

    before = feet_xy()
    sim.qfrc_applied[:, 0] = PUSH  # world x force on the free joint
    for _ in range(50):  # 1 s
        sim.step(ctrl)
    sim.close()
    return np.linalg.norm(feet_xy() - before, axis=1)


def test_ground_outranks_robot_geoms():
    for name in ("go2", "humanoid"):  # legkit's floor, and a floor that the MJCF brings
        m = build_model(get_robot(name), PhysicsConfig())
        ground = ground_geoms(m)
        others = np.setdiff1d(np.arange(m.ngeom), ground)
        assert len(ground) == 1 and m.geom_priority[ground].min() > m.geom_priority[others].max(), name


def test_low_floor_friction_knob_makes_feet_slip():
    slippery = foot_slip(build_model(GO2, PhysicsConfig(floor_friction=0.1)))
    grippy = foot_slip(build_model(GO2, PhysicsConfig(floor_friction=1.2)))
    assert slippery.min() > 0.3, slippery
    assert grippy.max() < 0.05, grippy


def test_low_pool_friction_makes_feet_slip(model):
    low, high = pool(model, size=1, friction=(0.1, 0.1)), pool(model, size=1, friction=(1.2, 1.2))
    assert low.models[0].geom_friction[ground_geoms(model), 0] == pytest.approx(0.1)
    slippery, grippy = foot_slip(model, low), foot_slip(model, high)
    assert slippery.min() > 0.3, slippery
    assert grippy.max() < 0.05, grippy
    assert np.array_equal(model.geom_friction[ground_geoms(model), 0], [0.8])  # the base model is untouched


def test_payload_adds_exactly_its_mass_and_set_const_ran(model):
    p = pool(model, payload=(1.0, 3.0))
    base, total = base_id(model), model.body_subtreemass[0]
    for k, m in enumerate(p.models):
        assert 1.0 <= p.payload[k] <= 3.0
        assert m.body_mass.sum() == pytest.approx(total + p.payload[k], abs=1e-9)
        # body_subtreemass is derived by mj_setConst: stale (nominal) without it.
        assert m.body_subtreemass[0] == pytest.approx(total + p.payload[k], abs=1e-9)
        assert m.body_subtreemass[base] == pytest.approx(model.body_subtreemass[base] + p.payload[k], abs=1e-9)
        np.testing.assert_array_equal(m.body_inertia, model.body_inertia)  # a point mass at the COM


def test_mass_scale_scales_total_mass_and_inertia(model):
    p = pool(model, mass_scale=(0.8, 1.2))
    assert len(set(p.mass_scale)) == len(p)
    for k, m in enumerate(p.models):
        s = p.mass_scale[k]
        assert m.body_subtreemass[0] == pytest.approx(s * model.body_subtreemass[0], rel=1e-12)
        np.testing.assert_allclose(m.body_mass, s * model.body_mass, rtol=1e-12)
        np.testing.assert_allclose(m.body_inertia, s * model.body_inertia, rtol=1e-12)


def _actuator_force(m: mujoco.MjModel, joint: str, push: float) -> float:
    """Force (N*m) of `joint`'s servo with its target `push` rad away from the joint, at home and at rest."""
    d = mujoco.MjData(m)
    d.qpos[:] = home_qpos(m)
    d.ctrl[:] = GO2.home
    a = GO2.joints.index(joint)
    d.ctrl[a] += push
    mujoco.mj_forward(m, d)
    return float(d.actuator_force[a])


def test_kp_and_torque_scale_change_gains_limits_and_torque(model):
    p = pool(model, kp_scale=(0.5, 1.5), torque_scale=(0.5, 1.5))
    nominal_small = _actuator_force(model, "FL_hip_joint", 0.1)   # 50 x 0.1 = 5 N*m, unsaturated
    nominal_big = _actuator_force(model, "FL_hip_joint", 1.0)     # 50 x 1 > 23.7: at the limit
    assert nominal_small == pytest.approx(5.0) and nominal_big == pytest.approx(23.7)
    for k, m in enumerate(p.models):
        kp, tq = p.kp_scale[k], p.torque_scale[k]
        np.testing.assert_allclose(m.actuator_gainprm[:, 0], kp * model.actuator_gainprm[:, 0])
        np.testing.assert_allclose(m.actuator_biasprm[:, 1], kp * model.actuator_biasprm[:, 1])
        np.testing.assert_array_equal(m.actuator_biasprm[:, 2], model.actuator_biasprm[:, 2])  # kv kept
        np.testing.assert_allclose(m.actuator_forcerange, tq * model.actuator_forcerange)
        assert _actuator_force(m, "FL_hip_joint", 0.1) == pytest.approx(kp * nominal_small)
        assert _actuator_force(m, "FL_hip_joint", 1.0) == pytest.approx(tq * nominal_big)


def test_damping_and_armature_scale_leg_joints_only(model):
    p = pool(model, damping_scale=(0.5, 2.0), armature_scale=(0.5, 2.0))
    free = model.jnt_dofadr[0] + np.arange(6)
    legs = np.setdiff1d(np.arange(model.nv), free)
    for k, m in enumerate(p.models):
        np.testing.assert_allclose(m.dof_damping[legs], p.damping_scale[k] * model.dof_damping[legs])
        np.testing.assert_allclose(m.dof_armature[legs], p.armature_scale[k] * model.dof_armature[legs])
        np.testing.assert_array_equal(m.dof_damping[free], model.dof_damping[free])
        np.testing.assert_array_equal(m.dof_armature[free], model.dof_armature[free])
        assert not np.allclose(m.dof_invweight0[legs], model.dof_invweight0[legs])  # mj_setConst saw the armature


def test_com_offset_moves_base_com_only(model):
    p = pool(model, com_offset=0.03)
    base = base_id(model)
    others = np.setdiff1d(np.arange(model.nbody), [base])
    for k, m in enumerate(p.models):
        shift = m.body_ipos[base] - model.body_ipos[base]
        np.testing.assert_allclose(shift, p.com_offset[k], atol=1e-15)
        assert np.all(np.abs(shift) <= 0.03) and np.all(shift != 0)
        np.testing.assert_array_equal(m.body_ipos[others], model.body_ipos[others])


FULL = dict(friction=(0.3, 1.2), mass_scale=(0.9, 1.1), payload=(0.0, 3.0), com_offset=0.02, kp_scale=(0.7, 1.3),
            torque_scale=(0.7, 1.3), damping_scale=(0.5, 2.0), armature_scale=(0.5, 2.0))


def test_same_seed_same_pool(model):
    a, b, c = pool(model, seed=7, **FULL), pool(model, seed=7, **FULL), pool(model, seed=8, **FULL)
    for name in ModelPool.OBSERVABLE:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name)), name
    for ma, mb in zip(a.models, b.models):
        for field in ("body_mass", "body_ipos", "geom_friction", "actuator_gainprm", "dof_damping", "body_subtreemass"):
            np.testing.assert_array_equal(getattr(ma, field), getattr(mb, field))
    values = a.values(np.array([2, 0]))
    assert values["com_offset"].shape == (2, 3) and values["payload"][1] == a.payload[0]


def _reference(m: mujoco.MjModel, state0: np.ndarray, ctrl: np.ndarray, nstep: int, decimation: int) -> np.ndarray:
    """A plain single-model MuJoCo loop (bit for bit): state set once, the solver's warm start carried."""
    d, spec = mujoco.MjData(m), mujoco.mjtState.mjSTATE_FULLPHYSICS
    mujoco.mj_setState(m, d, state0, spec)
    for _ in range(nstep):
        d.ctrl[:] = ctrl
        for _ in range(decimation):
            mujoco.mj_step(m, d)
    state = np.empty_like(state0)
    mujoco.mj_getState(m, d, state, spec)
    return state


def test_each_robot_steps_its_own_pool_model(model):
    p = pool(model, seed=3, size=3, **FULL)
    sim = BatchSim(model, 4, 4, nthread=2)
    sim.set_model_pool(p, np.array([2, 0, 1, 0]))
    assert sim.model_index.tolist() == [2, 0, 1, 0]
    sim.assign_models(np.array([3]), np.array([1]))
    assert sim.model_index.tolist() == [2, 0, 1, 1]
    q = home_qpos(model)
    sim.set_state(np.arange(4), np.tile(q, (4, 1)), np.zeros((4, model.nv)))
    state0 = sim.state[0].copy()
    ctrl = np.tile(GO2.home + 0.2, (4, 1))
    for _ in range(40):
        sim.step(ctrl)
    for i, k in enumerate(sim.model_index):
        expected = _reference(p.models[k], state0, ctrl[i], 40, 4)
        np.testing.assert_array_equal(sim.state[i], expected, err_msg=f"robot {i} (model {k})")
    np.testing.assert_array_equal(sim.state[2], sim.state[3])  # same model, same start: same trajectory
    assert not np.allclose(sim.state[0], sim.state[1])  # different models: different trajectories
    base = _reference(model, state0, ctrl[0], 40, 4)
    assert not np.allclose(sim.state[0], base)
    sim.close()


def test_pool_from_another_model_is_rejected(model):
    humanoid = build_model(get_robot("humanoid"), PhysicsConfig())
    sim = BatchSim(model, 2, 4, nthread=1)
    with pytest.raises(LegkitError, match="another model"):
        sim.set_model_pool(ModelPool(humanoid, 1, PhysicsRandomization(), rng=np.random.default_rng(0), size=1))
    with pytest.raises(LegkitError, match="pool indices"):
        sim.set_model_pool(pool(model, size=2), np.array([0, 2]))
    sim.close()


def test_randomize_scales_masses_and_friction_with_set_const(model):
    sim = BatchSim(model, 5, 4, nthread=1)
    sim.randomize(np.random.default_rng(0), mass_range=0.1, friction_range=0.2)
    assert sim.model_index.tolist() == list(range(5))
    ground = ground_geoms(model)
    frictions = set()
    for m in sim._models:
        assert m is not model
        ratio = m.body_mass[1:] / model.body_mass[1:]
        assert np.all((ratio >= 0.9) & (ratio <= 1.1)) and len(set(ratio)) == len(ratio)  # per body
        np.testing.assert_allclose(m.body_inertia[1:], ratio[:, None] * model.body_inertia[1:])
        assert m.body_subtreemass[0] == pytest.approx(m.body_mass.sum())  # mj_setConst ran
        assert m.body_subtreemass[0] != pytest.approx(model.body_subtreemass[0])
        f = m.geom_friction[ground[0], 0]
        assert 0.8 * 0.8 <= f <= 0.8 * 1.2
        frictions.add(f)
    assert len(frictions) == 5
    np.testing.assert_array_equal(model.body_mass, build_model(GO2, PhysicsConfig()).body_mass)  # untouched
    sim.close()


def test_invalid_ranges_fail_loudly(model):
    with pytest.raises(LegkitError, match="0 < lo <= hi"):
        PhysicsRandomization(friction=(0.5, 0.2))
    with pytest.raises(LegkitError, match="com_offset"):
        PhysicsRandomization(com_offset=-0.01)
    with pytest.raises(LegkitError, match="positive mass"):
        pool(model, payload=(-10.0, 0.0))
