"""A single-robot gymnasium environment over the same LeggedBatch, for users of other libraries."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.tasks import get_task
from legkit.tasks.config import TaskConfig


class LegkitGymEnv(gym.Env):
    """One robot of a legkit task: observation (obs_dim,) float32, action (action_dim,) in [-1, 1]."""

    metadata = {"render_modes": []}

    def __init__(self, task: str = "go2-walk", config: TaskConfig | None = None):
        """`task`: a task name; `config`: that task's config in place of its registered one (e.g. with --set
        overrides applied)."""
        self.task_name = task
        self.task = get_task(task) if config is None else config
        self.batch = LeggedBatch(self.task, num_envs=1, seed=0, nthread=0)
        self._seeded = False
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.batch.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.batch.action_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            # gymnasium's own generator: seeded when asked, from fresh entropy otherwise, so that envs made
            # without a seed do not all run the same episodes.
            self.batch.rng = np.random.default_rng(self.np_random.integers(2**63))
            self._seeded = True
        self.batch.reset()
        return self.batch.observe()[0].copy(), {}

    def step(self, action: np.ndarray):
        reward, terminated, truncated = self.batch.step(np.asarray(action)[None, :])
        obs = self.batch.observe()[0].copy()
        info = {"base_height": float(self.batch.state.base_height[0])}
        return obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self) -> None:
        self.batch.close()
