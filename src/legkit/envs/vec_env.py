"""LegkitVecEnv: Stable-Baselines3's VecEnv over a LeggedBatch, with auto-reset.

Shapes: observations (num_envs, obs_dim) float32, actions (num_envs, action_dim) in [-1, 1],
rewards (num_envs,) float32, dones (num_envs,) bool. On a done step the returned observation
is the first of the new episode; the last one is in infos[i]["terminal_observation"], and
infos[i]["TimeLimit.truncated"] is True when the episode hit the time limit rather than a fall,
so that PPO bootstraps it. infos[i]["episode"] = {"r", "l", "t"} as SB3's Monitor does.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from legkit.envs.core import LeggedBatch
from legkit.tasks.config import TaskConfig


class LegkitVecEnv(VecEnv):
    """N robots of one task as one SB3 VecEnv. `batch` exposes the underlying LeggedBatch."""

    def __init__(self, task: TaskConfig, num_envs: int, seed: int = 0, nthread: int | None = None,
                 randomize_episode_start: bool = False):
        self.batch = LeggedBatch(task, num_envs, seed, nthread)
        obs_space = gym.spaces.Box(-np.inf, np.inf, (self.batch.obs_dim,), np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, (self.batch.action_dim,), np.float32)
        self.render_mode = None
        super().__init__(num_envs, obs_space, act_space)
        self._actions: np.ndarray | None = None
        self._t0 = time.time()
        self.completed: list[dict[str, Any]] = []
        """Finished episodes since the last drain: return, length, termination and per-term sums."""
        self.randomize_episode_start = randomize_episode_start
        """Whether `reset` spreads the first episodes' time limits (see LeggedBatch.spread_episode_starts)."""

    def reset(self) -> np.ndarray:
        """Start every robot anew (PPO.learn calls this first). The episodes this cuts short are not
        outcomes: they do not reach the curriculum, episodes.csv or the logged statistics."""
        self.batch.reset(record=False)
        if self.randomize_episode_start:
            self.batch.spread_episode_starts()
        return self.batch.observe().copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        b = self.batch
        reward, terminated, truncated = b.step(self._actions)
        obs = b.observe().copy()
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_ids = np.flatnonzero(dones)
        if len(done_ids):
            stats = b.episode_stats(done_ids)
            lengths, returns = stats["length"], stats["return"]
            terminal = np.nan_to_num(obs[done_ids], nan=0.0, posinf=0.0, neginf=0.0)
            elapsed = round(time.time() - self._t0, 6)
            sums = b.reset(done_ids)
            obs[done_ids] = b.observe(done_ids)[done_ids]
            for k, i in enumerate(done_ids):
                infos[i]["terminal_observation"] = terminal[k]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i])
                infos[i]["episode"] = {"r": float(returns[k]), "l": int(lengths[k]), "t": elapsed}
                self.completed.append({
                    "return": float(returns[k]), "length": int(lengths[k]), "time": elapsed,
                    "terminated": bool(terminated[i]), "terms": {n: float(v[k]) for n, v in sums.items()},
                    "mean_height": float(stats["mean_height"][k]), "mean_action": float(stats["mean_action"][k]),
                    "stage": int(stats["stage"][k]),
                })
        return obs, reward.astype(np.float32), dones, infos

    def drain_completed(self) -> list[dict[str, Any]]:
        """Return and forget the episodes finished since the last call."""
        out, self.completed = self.completed, []
        return out

    def close(self) -> None:
        self.batch.close()

    # SB3 plumbing: one batch is one "environment" for attribute access.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs)]

    def env_is_wrapped(self, wrapper_class: type, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self.batch.rng = np.random.default_rng(seed)
        return [None] * self.num_envs

    def _get_indices(self, indices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices
