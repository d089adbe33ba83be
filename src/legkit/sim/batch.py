"""N robots of one model stepped together in MuJoCo's native thread pool (GIL released).

The whole batch's physics state lives in one array `state` of shape (num_envs, nstate),
laid out as MuJoCo's mjSTATE_FULLPHYSICS. One `step` call advances every robot by
`decimation` physics steps under a held control, through `mujoco.rollout`, which runs
the robots on its own threads while Python waits.
"""

from __future__ import annotations

import copy
import os

import mujoco
import numpy as np
from mujoco import rollout

_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Components of mjSTATE_FULLPHYSICS in the order MuJoCo packs them (ascending bit order).
_COMPONENTS = [bit for bit in (1 << i for i in range(16)) if _SPEC & bit]


class BatchSim:
    """Physics of `num_envs` robots sharing one MjModel."""

    def __init__(self, model: mujoco.MjModel, num_envs: int, decimation: int, nthread: int | None = None,
                 external_forces: bool = False):
        self.model = model
        self.num_envs = num_envs
        self.decimation = decimation
        self.nthread = (os.cpu_count() or 1) if nthread is None else nthread
        self.nstate = mujoco.mj_stateSize(model, _SPEC)
        self._datas = [mujoco.MjData(model) for _ in range(max(1, self.nthread))]
        self._pool = rollout.Rollout(nthread=self.nthread)
        self._models = [model] * num_envs  # the native call takes one model per robot
        self._chunk = max(1, num_envs // (4 * max(1, self.nthread)))

        offsets, start = {}, 0
        for bit in _COMPONENTS:
            size = mujoco.mj_stateSize(model, bit)
            offsets[bit] = slice(start, start + size)
            start += size
        self._qpos_slice = offsets[int(mujoco.mjtState.mjSTATE_QPOS)]
        self._qvel_slice = offsets[int(mujoco.mjtState.mjSTATE_QVEL)]
        self._time_slice = offsets[int(mujoco.mjtState.mjSTATE_TIME)]

        # The reference state: the model's qpos0 at rest.
        data = self._datas[0]
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
        self._ctrl = np.zeros((num_envs, decimation, mujoco.mj_stateSize(model, self._spec)))
        self._out_state = np.zeros((num_envs, decimation, self.nstate))
        self._out_sensor = np.zeros((num_envs, decimation, model.nsensordata))
        self.sensordata = np.zeros((num_envs, model.nsensordata))

    # Views into the batch state, shape (num_envs, n).
    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, self._qpos_slice]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, self._qvel_slice]

    def set_state(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Overwrite the state of the robots `env_ids` with `qpos` (k, nq) and `qvel` (k, nv), time 0."""
        self.state[env_ids] = self.state0
        self.state[env_ids, self._qpos_slice] = qpos
        self.state[env_ids, self._qvel_slice] = qvel
        self.sensordata[env_ids] = 0.0

    def step(self, ctrl: np.ndarray) -> None:
        """Advance every robot `decimation` physics steps holding `ctrl` (num_envs, nu)."""
        nu = self.model.nu
        self._ctrl[:, :, :nu] = ctrl[:, None, :]
        if self.qfrc_applied is not None:
            self._ctrl[:, :, nu:] = self.qfrc_applied[:, None, :]
        self._pool.rollout(
            self._models, self._datas, self.state, self._ctrl,
            skip_checks=True, nstep=self.decimation, state=self._out_state,
            sensordata=self._out_sensor, control_spec=self._spec,
            initial_warmstart=None, chunk_size=self._chunk,
        )
        np.copyto(self.state, self._out_state[:, -1])
        np.copyto(self.sensordata, self._out_sensor[:, -1])

    def randomize(self, rng: np.random.Generator, mass_range: float, friction_range: float) -> None:
        """Give every robot its own model: body masses x U(1 +- mass_range), friction x U(1 +- friction_range)."""
        models = []
        for _ in range(self.num_envs):
            m = copy.deepcopy(self.model)
            scale = rng.uniform(1 - mass_range, 1 + mass_range, m.nbody)
            m.body_mass[:] *= scale
            m.body_inertia[:] *= scale[:, None]  # same shape, scaled density
            m.geom_friction[:, 0] *= rng.uniform(1 - friction_range, 1 + friction_range)
            models.append(m)
        self._models = models

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
