"""SB3 callbacks: per-term logging + episodes.csv, atomic checkpoints, and schedules."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from legkit.envs.vec_env import LegkitVecEnv
from legkit.train.runs import save_policy


def current_rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class EpisodeLogger(BaseCallback):
    """After each rollout: every reward term's episode sum as reward/<term>, fall rate, steps/s,
    bad-action and bad-physics counters to TensorBoard; one row per episode to episodes.csv."""

    def __init__(self, env: LegkitVecEnv, csv_path: Path):
        super().__init__()
        self.env = env
        self.csv_path = csv_path
        self._file = None
        self._writer = None
        self._t_last = 0.0
        self._steps_last = 0

    def _on_training_start(self) -> None:
        names = self.env.batch.rewards.names
        new = not self.csv_path.exists()
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(["step", "reward", "length", "time", "terminated", "mean_height", "mean_action",
                                   "curriculum_stage", *names])
        self._t_last, self._steps_last = time.perf_counter(), self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        episodes = self.env.drain_completed()
        names = self.env.batch.rewards.names
        staged = self.env.batch.curriculum is not None
        for ep in episodes:  # the stage each episode started in
            self._writer.writerow([self.num_timesteps, f"{ep['return']:.4f}", ep["length"], ep["time"],
                                   int(ep["terminated"]), f"{ep['mean_height']:.4f}", f"{ep['mean_action']:.4f}",
                                   ep["stage"] if staged else "", *(f"{ep['terms'][n]:.4f}" for n in names)])
        self._file.flush()
        cur = self.env.batch.curriculum
        if cur is not None:
            for name, value in cur.scalars().items():
                self.logger.record(f"curriculum/{name}", value)
        if episodes:
            self.logger.record("episode/mean_height", float(np.mean([ep["mean_height"] for ep in episodes])))
            self.logger.record("episode/mean_action", float(np.mean([ep["mean_action"] for ep in episodes])))
            for n in names:
                self.logger.record(f"reward/{n}", float(np.mean([ep["terms"][n] for ep in episodes])))
            self.logger.record("episode/fall_rate", float(np.mean([ep["terminated"] for ep in episodes])))
            self.logger.record("episode/length_s", float(np.mean([ep["length"] for ep in episodes])) * self.env.batch.dt)
        now = time.perf_counter()
        self.logger.record("perf/steps_per_second", (self.num_timesteps - self._steps_last) / max(now - self._t_last, 1e-9))
        self._t_last, self._steps_last = now, self.num_timesteps
        self.logger.record("perf/rss_mb", current_rss_mb())
        self.logger.record("stats/bad_actions", self.env.batch.bad_action_count)
        self.logger.record("stats/bad_physics", self.env.batch.bad_physics_count)
        for name, n in self.env.batch.termination_counts.items():  # cumulative, as the two above
            self.logger.record(f"termination/{name}", n)
        self.logger.record("train/policy_std", float(np.exp(self.model.policy.log_std.detach().cpu().numpy()).mean()))

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class NaNGuard(BaseCallback):
    """Stop training at the first non-finite observation, reward, loss or network weight.

    Checked every step (observations and rewards) and after every update (losses and weights).
    When tripped, training stops at once, `reason` says what and where, and the Checkpointer
    and the trainer write nothing more: the last good checkpoint stays the latest.
    """

    LOSSES = ("train/loss", "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss", "train/approx_kl")

    def __init__(self):
        super().__init__()
        self.reason: str | None = None

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def _trip(self, what: str) -> bool:
        if self.reason is None:
            self.reason = f"non-finite {what} at step {self.num_timesteps}"
        return False

    def _on_step(self) -> bool:
        if self.tripped:
            return False
        obs, rewards = self.locals.get("new_obs"), self.locals.get("rewards")
        if obs is not None and not np.isfinite(obs).all():
            return self._trip(f"observation (robots {np.flatnonzero(~np.isfinite(obs).all(axis=1))[:5].tolist()})")
        if rewards is not None and not np.isfinite(rewards).all():
            return self._trip(f"reward (robots {np.flatnonzero(~np.isfinite(rewards))[:5].tolist()})")
        return True

    def _on_rollout_start(self) -> None:
        # Runs after each update: the losses just logged and the weights they produced.
        values = self.model.logger.name_to_value
        for key in self.LOSSES:
            if key in values and not np.isfinite(values[key]):
                self._trip(f"training loss {key} = {values[key]}")
                return
        self.check_weights()

    def check_weights(self) -> bool:
        """True when every network weight is finite; trips the guard otherwise."""
        for name, param in self.model.policy.named_parameters():
            if not torch.isfinite(param).all():
                self._trip(f"network weight {name}")
                return False
        return True


class Checkpointer(BaseCallback):
    """Every `every` steps, save model + VecNormalize + step count atomically under checkpoints/."""

    def __init__(self, folder: Path, every: int, meta: Callable[[], dict], guard: NaNGuard | None = None):
        super().__init__()
        self.folder = folder
        self.every = every
        self.meta = meta
        self.guard = guard
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.guard is not None and self.guard.tripped:
            return False  # never write a poisoned checkpoint
        if self.num_timesteps >= self._next:
            if self.guard is not None and not self.guard.check_weights():
                return False
            step = self.num_timesteps
            save_policy(self.folder / f"step_{step:09d}", self.model, self.model.get_vec_normalize_env(),
                        {**self.meta(), "step": step})
            self._next = (step // self.every + 1) * self.every
        return True


class TorchThreads(BaseCallback):
    """One torch thread while collecting (MuJoCo's threads own the cores then), `update` threads
    for the gradient updates, when the physics is idle."""

    def __init__(self, update: int):
        super().__init__()
        self.update = update

    def _on_rollout_start(self) -> None:
        torch.set_num_threads(1)

    def _on_rollout_end(self) -> None:
        torch.set_num_threads(self.update)

    def _on_training_end(self) -> None:
        torch.set_num_threads(self.update)

    def _on_step(self) -> bool:
        return True


class LinearSchedule(BaseCallback):
    """Move a model attribute (e.g. ent_coef) linearly from `start` to `end` over `total` steps."""

    def __init__(self, attr: str, start: float, end: float, total: int):
        super().__init__()
        self.attr, self.start, self.end, self.total = attr, start, end, total

    def _on_rollout_start(self) -> None:
        frac = min(1.0, self.num_timesteps / max(1, self.total))
        value = self.start + frac * (self.end - self.start)
        setattr(self.model, self.attr, value)
        self.logger.record(f"schedule/{self.attr}", value)

    def _on_step(self) -> bool:
        return True
