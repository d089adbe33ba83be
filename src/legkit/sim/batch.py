"""N robots of one model stepped together in MuJoCo's native thread pool (GIL released).

The whole batch's physics state lives in one array `state` of shape (num_envs, nstate),
laid out as MuJoCo's mjSTATE_FULLPHYSICS. One `step` call advances every robot by
`decimation` physics steps through `mujoco.batch.Batch`, which runs the robots on its own
threads while Python waits.

The Batch keeps each robot's mjSTATE_INTEGRATION row, so the constraint solver's warm start
(qacc_warmstart) carries from one control step to the next as in a plain `mj_step` loop
(the MuJoCo loop on a robot, and `legkit sim2sim`); it is zeroed when a robot's state is set,
as mj_resetData does. Per-robot physics: `set_model_pool` installs a `ModelPool`
(sim/randomize.py) and `assign_models` gives robots its models; all copies have the base
model's sizes, so the Batch's per-thread datas serve every pool model.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
from mujoco import batch as mjbatch

from legkit import LegkitError
from legkit.sim.randomize import ModelPool, PhysicsRandomization, ground_geoms

_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Components of mjSTATE_FULLPHYSICS in the order MuJoCo packs them (ascending bit order).
_COMPONENTS = [bit for bit in (1 << i for i in range(16)) if _SPEC & bit]
_MOCAP = int(mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)


def state_slices(model: mujoco.MjModel, spec: int) -> dict[int, slice]:
    """Where each component (a mjtState bit) of the packed state `spec` lies: MuJoCo packs them in ascending bit
    order, each mj_stateSize(model, bit) long."""
    out, start = {}, 0
    for bit in (1 << i for i in range(int(mujoco.mjtState.mjNSTATE))):
        if spec & bit:
            size = mujoco.mj_stateSize(model, bit)
            out[bit] = slice(start, start + size)
            start += size
    return out


class BatchSim:
    """Physics of `num_envs` robots sharing one MjModel, or each stepping a model of an installed ModelPool."""

    def __init__(self, model: mujoco.MjModel, num_envs: int, decimation: int, nthread: int | None = None,
                 external_forces: bool = False):
        self.model = model
        self.num_envs = num_envs
        self.decimation = decimation
        self.nthread = (os.cpu_count() or 1) if nthread is None else nthread
        self.nstate = mujoco.mj_stateSize(model, _SPEC)
        self._pool = mjbatch.Batch(model, num_envs, nthread=max(1, self.nthread))
        self._models = [model] * num_envs  # one model per robot once a pool is installed
        self.model_pool: ModelPool | None = None
        """The installed pool of per-robot models, or None: every robot steps `model`."""
        self.model_index = np.full(num_envs, -1, dtype=np.int64)
        """(num_envs,) pool index of each robot's model; -1 while no pool is installed (the base model)."""

        offsets, start = {}, 0
        for bit in _COMPONENTS:
            size = mujoco.mj_stateSize(model, bit)
            offsets[bit] = slice(start, start + size)
            start += size
        self._qpos_slice = offsets[int(mujoco.mjtState.mjSTATE_QPOS)]
        self._qvel_slice = offsets[int(mujoco.mjtState.mjSTATE_QVEL)]
        self._time_slice = offsets[int(mujoco.mjtState.mjSTATE_TIME)]

        integration = state_slices(model, int(mujoco.mjtState.mjSTATE_INTEGRATION))
        self._row_cols = np.concatenate([np.arange(integration[bit].start, integration[bit].stop)
                                         for bit in _COMPONENTS])
        """Columns of the Batch's integration rows that hold the mjSTATE_FULLPHYSICS state, in its order."""
        if len(self._row_cols) and (np.diff(self._row_cols) == 1).all():  # one run (no plugin state): a slice,
            self._row_cols = slice(int(self._row_cols[0]), int(self._row_cols[-1]) + 1)  # a view, no gather per step
        self._warm_cols = integration[int(mujoco.mjtState.mjSTATE_WARMSTART)]

        # The reference state: the model's qpos0 at rest.
        data = mujoco.MjData(model)
        mujoco.mj_resetData(model, data)
        self.state0 = np.empty(self.nstate)
        mujoco.mj_getState(model, data, self.state0, _SPEC)

        # Preallocated buffers: nothing on the hot path allocates.
        self.state = np.tile(self.state0, (num_envs, 1))
        # Controls per physics step: ctrl, plus qfrc_applied (generalized forces) when pushes are wanted.
        self._spec = int(mujoco.mjtState.mjSTATE_CTRL)
        if external_forces:
            self._spec |= int(mujoco.mjtState.mjSTATE_QFRC_APPLIED)
        self.qfrc_applied = np.zeros((num_envs, model.nv)) if external_forces else None
        """External generalized forces held during the next step, (num_envs, nv); None if disabled."""
        self.mocap: np.ndarray | None = None
        """Mocap body poses per robot, (num_envs, nmocap * 7): positions then quaternions, as MuJoCo packs
        mjSTATE_MOCAP_POS | MOCAP_QUAT; None for a model without mocap bodies. mjSTATE_FULLPHYSICS does not hold
        them, and a rollout puts them back to the model's pose unless each step's controls carry them."""
        if model.nmocap:
            self._spec |= _MOCAP
            row = np.empty(mujoco.mj_stateSize(model, _MOCAP))
            mujoco.mj_getState(model, data, row, _MOCAP)
            self.mocap = np.tile(row, (num_envs, 1))
        slices = state_slices(model, self._spec)
        self._qfrc_cols = slices.get(int(mujoco.mjtState.mjSTATE_QFRC_APPLIED))
        self._mocap_cols = slice(slices[int(mujoco.mjtState.mjSTATE_MOCAP_POS)].start,
                                 slices[int(mujoco.mjtState.mjSTATE_MOCAP_QUAT)].stop) if model.nmocap else None
        self._ctrl = np.zeros((num_envs, decimation, mujoco.mj_stateSize(model, self._spec)))
        self._out_state = np.zeros((num_envs, decimation, self.nstate))
        self._out_sensor = np.zeros((num_envs, decimation, model.nsensordata))
        self._record = (int(_SPEC), "sensordata")
        self._out = {int(_SPEC): self._out_state, "sensordata": self._out_sensor}
        self.sensordata = np.zeros((num_envs, model.nsensordata))
        self._in_qvel = np.zeros((num_envs, model.nv))
        """qvel of the state the last `step` started from."""
        self.ctrl_delay = np.zeros(num_envs, dtype=np.int64)
        """Actuation latency per robot, in physics steps (0 .. decimation): the first `ctrl_delay[i]` physics
        steps of a `step` still apply robot i's previous controls."""
        self._last_ctrl = np.zeros((num_envs, model.nu))
        self._fresh = np.ones(num_envs, dtype=bool)
        """Robots whose state was just set: no previous control to hold."""
        self.servo_speed: np.ndarray | None = None
        """Rated speed (rad/s) of each actuator's servo, (nu,), or None: position targets apply at once. With it, a
        servo's own setpoint moves toward the commanded target at most this fast, physics step by physics step,
        as a hobby servo (and the PiDog maker's software) moves: a servo cannot outrun its rated speed."""
        self._setpoint = np.zeros((num_envs, model.nu))
        """The servos' own setpoints (rad) at the end of the last step (with `servo_speed`)."""
        trn = model.actuator_trnid[:, 0]
        self._act_qpos = model.jnt_qposadr[trn].astype(np.int64)
        """qpos address of each actuator's joint (the setpoint starts there at a reset)."""

    # Views into the batch state, shape (num_envs, n).
    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, self._qpos_slice]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, self._qvel_slice]

    @property
    def warmstart(self) -> np.ndarray:
        """The constraint solver's warm start (qacc_warmstart) each robot's next step starts from, (num_envs, nv):
        a view of the Batch's rows, zeroed by `set_state`."""
        return self._pool.state[:, self._warm_cols]

    @property
    def substep_sensordata(self) -> np.ndarray:
        """Sensor data of every physics step of the last `step`, (num_envs, decimation, nsensordata), read-only.

        Entry [:, k] holds the sensors MuJoCo computed in physics step k, of the state that step started
        from (time t0 + k * timestep), so successive control steps cover every physics instant once;
        `sensordata` is entry [:, -1]. A read-only view of a buffer that the next `step` overwrites: copy
        what must outlive it. Zeroing `sensordata` (reset, a parked robot) does not touch it.
        """
        view = self._out_sensor.view()
        view.flags.writeable = False
        return view

    @property
    def substep_qvel(self) -> np.ndarray:
        """qvel before and after every physics step of the last `step`, (num_envs, decimation + 1, nv), a copy.

        Entry [:, 0] is the state the step started from, [:, k + 1] the state physics step k ended in, so physics
        step k runs from [:, k] to [:, k + 1] (and its sensors, `substep_sensordata[:, k]`, read [:, k]).
        """
        return np.concatenate([self._in_qvel[:, None], self._out_state[:, :, self._qvel_slice]], axis=1)

    def set_state(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Overwrite the state of the robots `env_ids` with `qpos` (k, nq) and `qvel` (k, nv), time 0."""
        self.state[env_ids] = self.state0
        self._fresh[env_ids] = True
        self._pool.state[env_ids, self._warm_cols] = 0.0  # the solver starts cold, as after mj_resetData
        self.state[env_ids, self._qpos_slice] = qpos
        self.state[env_ids, self._qvel_slice] = qvel
        self.sensordata[env_ids] = 0.0
        if self.servo_speed is not None:  # the servos' setpoints start where their joints are
            self._setpoint[env_ids] = qpos[:, self._act_qpos]

    def set_servo_speed(self, speed) -> None:
        """Limit every actuator's setpoint speed to `speed` (rad/s, (nu,)); None removes the limit."""
        if speed is None:
            self.servo_speed = None
            return
        speed = np.asarray(speed, dtype=np.float64).reshape(-1)
        if speed.shape != (self.model.nu,) or not (speed > 0).all():
            raise LegkitError(f"servo speeds must be {self.model.nu} positive values (rad/s), got {speed.tolist()}")
        if (self.model.actuator_trntype != int(mujoco.mjtTrn.mjTRN_JOINT)).any():
            raise LegkitError("a servo speed limit needs every actuator to drive a joint")
        self.servo_speed = speed
        self._setpoint[:] = self.qpos[:, self._act_qpos]

    def step(self, ctrl: np.ndarray) -> None:
        """Advance every robot `decimation` physics steps holding `ctrl` (num_envs, nu), after its
        `ctrl_delay` physics steps of the previous controls."""
        nu = self.model.nu
        self._ctrl[:, :, :nu] = ctrl[:, None, :]
        if self.ctrl_delay.any():
            held = (np.arange(self.decimation)[None, :] < self.ctrl_delay[:, None]) & ~self._fresh[:, None]
            self._ctrl[:, :, :nu] = np.where(held[:, :, None], self._last_ctrl[:, None, :], self._ctrl[:, :, :nu])
        np.copyto(self._last_ctrl, ctrl)
        self._fresh[:] = False
        if self.servo_speed is not None:  # each servo's setpoint slews toward its target at the rated speed
            most = self.servo_speed * self.model.opt.timestep
            for k in range(self.decimation):
                self._setpoint += np.clip(self._ctrl[:, k, :nu] - self._setpoint, -most, most)
                self._ctrl[:, k, :nu] = self._setpoint
        if self.qfrc_applied is not None:
            self._ctrl[:, :, self._qfrc_cols] = self.qfrc_applied[:, None, :]
        if self.mocap is not None:
            self._ctrl[:, :, self._mocap_cols] = self.mocap[:, None, :]
        np.copyto(self._in_qvel, self.qvel)
        self._pool.state[:, self._row_cols] = self.state  # the caller may have edited any robot's state
        self._pool.rollout(self.decimation, self._ctrl, control_spec=self._spec, record=self._record,
                           out=self._out)
        np.copyto(self.state, self._out_state[:, -1])
        np.copyto(self.sensordata, self._out_sensor[:, -1])

    def set_model_pool(self, pool: ModelPool, pool_indices: np.ndarray | None = None) -> None:
        """Step robot i under `pool.models[pool_indices[i]]` (num_envs,); default i mod len(pool)."""
        m, p = self.model, pool.models[0]
        sizes = ("nq", "nv", "nu", "na", "nbody", "njnt", "ngeom", "nsensordata", "neq", "nmocap")
        wrong = [n for n in sizes if getattr(p, n) != getattr(m, n)]
        if wrong:
            raise LegkitError(f"the model pool was built from another model: {', '.join(wrong)} differ; "
                              "build it from this simulator's model")
        self.model_pool = pool
        idx = np.arange(self.num_envs) % len(pool) if pool_indices is None else pool_indices
        self.assign_models(np.arange(self.num_envs), idx)

    def assign_models(self, env_ids: np.ndarray, pool_indices: np.ndarray) -> None:
        """Give robots `env_ids` (k,) the pool models `pool_indices` (k,), from their next step on."""
        if self.model_pool is None:
            raise LegkitError("assign_models needs a model pool; install one with set_model_pool first")
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        idx = np.asarray(pool_indices, dtype=np.int64).reshape(-1)
        if ids.shape != idx.shape:
            raise LegkitError(f"assign_models got {ids.size} robots but {idx.size} pool indices")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.model_pool)):
            raise LegkitError(f"pool indices must lie in 0 .. {len(self.model_pool) - 1}, "
                              f"got {idx.min()} .. {idx.max()}")
        self.model_index[ids] = idx
        models = self.model_pool.models
        for i, k in zip(ids.tolist(), idx.tolist()):  # k list entries at a reset, not the hot path
            self._models[i] = models[k]
        self._pool.set_models(self._models)

    def randomize(self, rng: np.random.Generator, mass_range: float, friction_range: float) -> None:
        """Give every robot its own model: each body's mass and inertia x U(1 +- mass_range), the ground
        friction x U(1 +- friction_range) of nominal (the ground's friction is every foot contact's)."""
        ground, friction = ground_geoms(self.model), None
        if friction_range:
            if not len(ground):
                raise LegkitError("friction randomization needs a ground geom (a plane or hfield of the world body)")
            f0 = float(self.model.geom_friction[ground[0], 0])
            friction = (f0 * (1 - friction_range), f0 * (1 + friction_range))
        spec = PhysicsRandomization(friction=friction, body_mass_scale=(1 - mass_range, 1 + mass_range))
        free = np.flatnonzero(self.model.jnt_type == int(mujoco.mjtJoint.mjJNT_FREE))
        base = int(self.model.jnt_bodyid[free[0]]) if len(free) else 1  # unused: no payload, no COM shift
        self.set_model_pool(ModelPool(self.model, base, spec, rng=rng, size=self.num_envs))

    def close(self) -> None:
        self._pool = None  # the Batch's threads end with it
