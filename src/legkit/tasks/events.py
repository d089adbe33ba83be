"""Event terms: things that happen to robots, at reset or during episodes.

Each term is a small class built from its config section and the env it acts on. The env calls
`reset(env_ids)` for robots starting an episode (after their state, command and curriculum stage are
set) and `step()` before every control step's physics; a term leaves out what it does not need.
Terms are built in `EVENTS` order, and each draws from the env's generator only when it is switched
on, so adding a term never changes the runs of tasks that do not use it.

    pushes            horizontal force on the base every `interval_s` (the task's, or its curriculum stage's)
    physics           a pool of randomized models (friction, masses, payload, COM, motor strength,
                      damping, armature); each robot draws one at every reset
    latency           the applied joint targets lag the policy by a per-robot number of physics steps
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from legkit.sim.randomize import ModelPool, PhysicsRandomization

if TYPE_CHECKING:  # the env is the room below; only its type is named here
    from legkit.envs.core import LeggedBatch


@dataclass(frozen=True)
class PushConfig:
    """Horizontal pushes on the base during episodes; `force` 0 turns them off."""

    force: float = 0.0
    """Push force (N), in a random horizontal direction."""
    interval_s: float = 3.0
    """Time between the starts of two pushes on one robot (s); each robot has its own random phase."""
    duration_s: float = 0.1
    """How long each push lasts (s)."""
    random_magnitude: bool = False
    """Draw each push's force from U(0, force) instead of using `force` itself (for training)."""


@dataclass(frozen=True)
class LatencyConfig:
    """Actuation latency: the joint targets of a control step take effect this late (s), drawn per robot
    and episode from U(lo, hi) and rounded to whole physics steps; (0, 0) is none. At most one control
    period: until then the previous step's targets are held."""

    range_s: tuple[float, float] = (0.0, 0.0)


class Event:
    """An event term: `reset(env_ids)` for robots starting an episode, `step()` before each control
    step's physics. Both do nothing unless a term overrides them."""

    def reset(self, ids: np.ndarray) -> None:
        pass

    def step(self) -> None:
        pass


class Pushes(Event):
    """A push of the episode's force in a random horizontal direction, held for `duration_s`, every
    `interval_s`, each robot at its own random phase; curriculum stages may set the force."""

    def __init__(self, env: "LeggedBatch", cfg: PushConfig):
        self.env, self.cfg = env, cfg
        self.every = max(1, int(round(cfg.interval_s / env.dt)))
        self.length = max(1, int(round(cfg.duration_s / env.dt)))
        n = env.num_envs
        self.phase = np.zeros(n, dtype=np.int64)
        self.force = np.zeros((n, 3))
        """Current push (N, world frame) on each robot; zero between pushes."""
        self.max_force = np.full(n, cfg.force)
        """Push force (N) of each robot's episode: the task's, or its curriculum stage's."""

    @staticmethod
    def wanted(env: "LeggedBatch") -> bool:
        task = env.task
        return task.pushes.force > 0 or any(st.push_force > 0 for st in task.curriculum.stages)

    def reset(self, ids: np.ndarray) -> None:
        env = self.env
        self.phase[ids] = env.rng.integers(0, self.every, len(ids))
        self.force[ids] = 0.0
        if env.curriculum is not None:
            self.max_force[ids] = env.curriculum.push_force or self.cfg.force

    def step(self) -> None:
        env = self.env
        since = (env.state.episode_step + self.phase) % self.every
        start = np.flatnonzero(since == 0)
        if len(start):
            angle = env.rng.uniform(0.0, 2.0 * np.pi, len(start))
            magnitude = self.max_force[start]
            if self.cfg.random_magnitude:
                magnitude = magnitude * env.rng.uniform(0.0, 1.0, len(start))
            self.force[start, 0] = magnitude * np.cos(angle)
            self.force[start, 1] = magnitude * np.sin(angle)
        # Free-joint translational dofs: a world-frame force on the base.
        np.multiply(self.force, (since < self.length)[:, None], out=env.state.push_force)
        env.sim.qfrc_applied[:, :3] = env.state.push_force


class RandomizePhysics(Event):
    """Every robot steps one of `pool_size` randomized models, drawn anew at each of its resets."""

    def __init__(self, env: "LeggedBatch", cfg: PhysicsRandomization, pool_size: int):
        self.env = env
        base = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, env.robot.base_body)
        self.pool = ModelPool(env.model, base, cfg, rng=env.rng, size=pool_size)
        env.sim.set_model_pool(self.pool, self.pool.sample_indices(env.rng, env.num_envs))
        self._record(np.arange(env.num_envs))

    @staticmethod
    def wanted(env: "LeggedBatch") -> bool:
        return env.task.randomization != PhysicsRandomization()

    def reset(self, ids: np.ndarray) -> None:
        self.env.sim.assign_models(ids, self.pool.sample_indices(self.env.rng, len(ids)))
        self._record(ids)

    def _record(self, ids: np.ndarray) -> None:
        """Write what robots `ids` were given into the state's privileged fields."""
        s, v = self.env.state, self.pool.values(self.env.sim.model_index[ids])
        s.ground_friction[ids], s.payload[ids], s.motor_strength[ids] = v["friction"], v["payload"], v["kp_scale"]

    def values(self) -> dict[str, np.ndarray]:
        """What each robot's current model was given (friction, payload, ...), (num_envs, ...) arrays."""
        return self.pool.values(self.env.sim.model_index)


class ActionLatency(Event):
    """The first `delay` physics steps of each control step keep the previous targets (BatchSim.ctrl_delay)."""

    def __init__(self, env: "LeggedBatch", cfg: LatencyConfig):
        self.env = env
        self.lo, self.hi = (s / env.task.physics.timestep for s in cfg.range_s)

    @staticmethod
    def wanted(env: "LeggedBatch") -> bool:
        return env.task.latency.range_s[1] > 0

    def reset(self, ids: np.ndarray) -> None:
        steps = np.rint(self.env.rng.uniform(self.lo, self.hi, len(ids))).astype(np.int64)
        self.env.sim.ctrl_delay[ids] = np.minimum(steps, self.env.sim.decimation)


EVENTS = {
    "pushes": (Pushes, lambda env: (env.task.pushes,)),
    "physics": (RandomizePhysics, lambda env: (env.task.randomization, env.task.randomization_pool)),
    "latency": (ActionLatency, lambda env: (env.task.latency,)),
}
"""Event terms by name: (class, its config from the task). Built when `cls.wanted(env)`."""


def build_events(env: "LeggedBatch") -> dict[str, Event]:
    """The event terms the env's task switches on, in EVENTS order."""
    return {name: cls(env, *args(env)) for name, (cls, args) in EVENTS.items() if cls.wanted(env)}
