"""Deterministic evaluation rollouts of a saved policy: every episode runs as one robot of a batch."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.config import apply_sets, from_dict, load_yaml, to_dict
from legkit.envs.core import LeggedBatch
from legkit.tasks.config import PushConfig, undisturbed
from legkit.tasks.rewards import energy
from legkit.train.config import Config, validate
from legkit.train.runs import Policy
from legkit.train.trainer import load_model


@dataclass
class Trace:
    """Per-step records of an evaluation, arrays of shape (steps, episodes) unless noted."""

    alive: np.ndarray
    """True while the episode has not ended (the step that ends it counts as alive)."""
    vel: np.ndarray
    """Measured (vx, vy, yaw rate) in the body frame, (steps, episodes, 3)."""
    command: np.ndarray
    """Commanded (vx, vy, yaw rate), (steps, episodes, 3)."""
    height: np.ndarray
    action_abs: np.ndarray
    """Mean |action| over joints."""
    power: np.ndarray
    """Mechanical power sum |tau * qdot| (W)."""
    reward: np.ndarray
    """The task's reward (the training reward, before any normalization)."""
    terminated: np.ndarray
    """(episodes,) whether each episode ended in a fall."""
    length: np.ndarray
    """(episodes,) control steps of each episode."""
    dt: float
    max_steps: int


def load_run_config(policy: Policy, sets: list[str] | None = None) -> Config:
    """The run's saved config with `--set` overrides applied (e.g. task.commands.lin_vel_x=[1,1])."""
    tree = apply_sets(load_yaml(str(policy.config)), list(sets or []))
    return validate(from_dict(Config, tree))


def load_normalizer(policy: Policy) -> VecNormalize:
    """The saved VecNormalize statistics (frozen), read without an environment."""
    try:
        with open(policy.norm, "rb") as f:
            norm = pickle.load(f)
    except Exception as exc:
        raise LegkitError(f"normalization file '{policy.norm}' is corrupt or unreadable ({type(exc).__name__})") from None
    if not isinstance(norm, VecNormalize):
        raise LegkitError(f"'{policy.norm}' does not hold VecNormalize statistics")
    norm.training = False
    return norm


def rollout(policy: Policy, episodes: int, cfg: Config, seed: int = 12345, max_steps: int | None = None,
            deterministic: bool = True, pushes: PushConfig | None = None,
            randomize: tuple[float, float] | None = None) -> Trace:
    """Run `episodes` episodes of a saved policy in parallel; each robot stops counting at its first end.

    `randomize` = (mass_range, friction_range) gives every robot its own scaled model. `pushes` are the
    scenario's pushes; the training's own pushes are never applied here.
    """
    return rollout_model(load_model(policy.model), load_normalizer(policy), episodes, cfg, seed, max_steps,
                         deterministic, pushes, randomize)


def rollout_model(model: PPO, norm: VecNormalize, episodes: int, cfg: Config, seed: int = 12345,
                  max_steps: int | None = None, deterministic: bool = True, pushes: PushConfig | None = None,
                  randomize: tuple[float, float] | None = None) -> Trace:
    """`rollout` of a policy in memory (e.g. during training); `norm` only normalizes, it is not updated."""
    task = cfg.task
    if max_steps is not None:
        task = replace(task, episode_seconds=max_steps * task.control_dt)
    task = undisturbed(task, pushes)  # the training's pushes are off unless the scenario pushes
    batch = LeggedBatch(task, episodes, seed=seed)
    if randomize is not None:
        batch.sim.randomize(batch.rng, *randomize)
    if batch.curriculum is not None:  # evaluate at the final target
        batch.curriculum.set_stage(batch.curriculum.last_stage)
        batch.reset()
    if model.observation_space.shape != (batch.obs_dim,):
        batch.close()
        raise LegkitError(f"model observation size {model.observation_space.shape} does not match the task's "
                          f"({batch.obs_dim},); was the task config changed?")
    n, T = episodes, batch.max_steps
    alive_now = np.ones(n, dtype=bool)
    rec = {k: [] for k in ("alive", "vel", "command", "height", "action_abs", "power", "reward")}
    terminated = np.zeros(n, dtype=bool)
    length = np.zeros(n, dtype=np.int64)
    s = batch.state
    obs = batch.observe()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: extra torch threads only compete with the physics threads
    try:
        for _ in range(T):
            action, _ = model.predict(norm.normalize_obs(obs), deterministic=deterministic)
            reward, term, trunc = batch.step(action)
            obs = batch.observe()
            rec["alive"].append(alive_now.copy())
            rec["reward"].append(reward.copy())
            rec["vel"].append(np.column_stack([s.base_lin_vel[:, :2], s.base_ang_vel[:, 2]]))
            rec["command"].append(s.command.copy())
            rec["height"].append(s.base_pos[:, 2].copy())
            rec["action_abs"].append(np.abs(s.action).mean(axis=1))
            rec["power"].append(energy(s))
            ended = alive_now & (term | trunc)
            terminated |= ended & term
            length[ended] = s.episode_step[ended]
            alive_now &= ~ended
            if not alive_now.any():
                break
    finally:
        torch.set_num_threads(threads)
        batch.close()
    length[alive_now] = T
    return Trace(alive=np.array(rec["alive"]), vel=np.array(rec["vel"]), command=np.array(rec["command"]),
                 height=np.array(rec["height"]), action_abs=np.array(rec["action_abs"]), power=np.array(rec["power"]),
                 reward=np.array(rec["reward"]),
                 terminated=terminated, length=length, dt=batch.dt, max_steps=T)


__all__ = ["Trace", "load_normalizer", "load_run_config", "rollout", "rollout_model", "to_dict"]
