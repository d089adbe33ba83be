"""Demonstrations from scripted gaits: the collect stage of the PiDog pipeline (the seed project's first stage).

Each behaviour is a scripted gait of legkit.gaits run open loop in the task's own scene (its sensors, its
obstacles); every control step records the observation the policy would see, with sensor noise on the joint
readings (the seed: 0.01 rad on positions, 0.1 rad/s on velocities), and the action that reproduces the gait's
joint targets: (target - home) / action_scale. Episodes that fall are dropped and counted: a fall is nothing
to imitate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from legkit import LegkitError
from legkit.config import to_dict
from legkit.envs.core import LeggedBatch
from legkit.gaits import default_gait
from legkit.imitate.demos import save_demos


@dataclass(frozen=True)
class Behaviour:
    """One demonstrated behaviour: a gait type of the robot's defaults with some parameters changed."""

    gait: str
    """Gait type (legkit.gaits.GAIT_TYPES)."""
    params: dict = field(default_factory=dict)
    """GaitParams fields set over the robot's default of that type, e.g. {"step_length": -0.04}."""


PIDOG_BEHAVIOURS: dict[str, Behaviour] = {
    "walk_forward": Behaviour("walk"),
    "walk_backward": Behaviour("walk", {"step_length": -0.04}),
    "trot_forward": Behaviour("trot"),
    "turn_left": Behaviour("trot", {"step_length": 0.0, "turning": 0.15}),
    "turn_right": Behaviour("trot", {"step_length": 0.0, "turning": -0.15}),
    "stand": Behaviour("stand"),
    "sit": Behaviour("sit"),
}
"""The seed project's demonstrations (walk_forward, walk_backward, trot_forward, stand, sit) and turning."""


@dataclass(frozen=True)
class CollectConfig:
    """How much to demonstrate and how noisy the recorded joint readings are."""

    seconds: float = 120.0
    """Demonstrated time per behaviour (s): the seed's 2 minutes each."""
    episode_seconds: float = 10.0
    """Length of each demonstration episode (s); robots run side by side."""
    joint_pos_noise: float = 0.01
    """Gaussian noise std on the recorded joint positions (rad)."""
    joint_vel_noise: float = 0.1
    """Gaussian noise std on the recorded joint velocities (rad/s)."""
    action_noise: float = 0.0
    """Gaussian noise std (rad) on the joint targets the demonstrator executes, while the recorded label stays the
    gait's own target (DART): the demonstrations then show how to get back to the gait from off it."""
    seed: int = 0


def behaviour_task(task, robot: str, name: str, behaviour: Behaviour, episode_seconds: float):
    """`task` running behaviour `name` as a scripted gait, asking for it through the `behaviour` term."""
    gait = replace(default_gait(robot, behaviour.gait), **behaviour.params)
    return replace(task, gait=gait, behaviour=name, episode_seconds=episode_seconds, clock_period=gait.cycle_time)


def collect(task_name: str, task, behaviours: dict[str, Behaviour], cfg: CollectConfig, out: Path,
            progress=None) -> dict:
    """Run every behaviour of `behaviours` (names must be in task.behaviours) and write `out` (demos.npz).
    Returns the summary: per behaviour its kept and fallen episodes, samples and mean forward speed (m/s)."""
    if cfg.seconds < cfg.episode_seconds or cfg.episode_seconds <= 0:
        raise LegkitError(f"collect: seconds ({cfg.seconds}) must be at least episode_seconds ({cfg.episode_seconds}) "
                          "and both > 0")
    missing = [b for b in behaviours if b not in task.behaviours]
    if missing:
        raise LegkitError(f"behaviours {', '.join(missing)} are not in task.behaviours ({', '.join(task.behaviours)})")
    rng = np.random.default_rng(cfg.seed)
    obs_all, act_all, gait_all, ep_all, summary = [], [], [], [], {}
    episode = 0
    n = int(round(cfg.seconds / cfg.episode_seconds))
    for gid, (name, behaviour) in enumerate(behaviours.items()):
        if progress is not None:
            progress(name)
        btask = behaviour_task(task, task.robot, name, behaviour, cfg.episode_seconds)
        batch = LeggedBatch(btask, n, seed=cfg.seed + gid)
        try:
            obs, act, fell, vx = _rollout(batch, cfg, rng)
            layout = batch.obs_layout
        finally:
            batch.close()
        kept = np.flatnonzero(~fell)
        for i in kept:
            obs_all.append(obs[:, i])
            act_all.append(act[:, i])
            gait_all.append(np.full(len(obs), gid, dtype=np.int16))
            ep_all.append(np.full(len(obs), episode, dtype=np.int32))
            episode += 1
        summary[name] = {"episodes": int(len(kept)), "fallen": int(fell.sum()), "samples": int(len(kept) * len(obs)),
                         "mean_forward_velocity": float(vx[:, kept].mean()) if len(kept) else None}
    if not obs_all:
        raise LegkitError("every demonstration episode fell: no demonstrations to save (check the gaits with legkit gait)")
    meta = {"gaits": list(behaviours), "obs_layout": [[str(a), int(b), int(c)] for a, b, c in layout],
            "action_scale": float(task.action_scale), "control_dt": float(task.control_dt), "task": task_name,
            "noise": {"joint_pos": cfg.joint_pos_noise, "joint_vel": cfg.joint_vel_noise,
                      "executed_action": cfg.action_noise},
            "behaviours": {k: to_dict(v) for k, v in behaviours.items()}, "summary": summary}
    save_demos(out, np.concatenate(obs_all), np.concatenate(act_all), np.concatenate(gait_all),
               np.concatenate(ep_all), meta)
    return summary


def _rollout(batch: LeggedBatch, cfg: CollectConfig, rng: np.random.Generator):
    """(obs (T, n, d), action (T, n, a), fell (n,), forward velocity (T, n)) of one batch of demonstrations."""
    s, home, scale = batch.state, batch.home, batch.task.action_scale
    pos = next(slice(a, a + k) for name, a, k in batch.obs_layout if name == "joint_pos")
    vel = next(slice(a, a + k) for name, a, k in batch.obs_layout if name == "joint_vel")
    obs, act, vx = [], [], []
    fell = np.zeros(batch.num_envs, dtype=bool)
    zero = np.zeros((batch.num_envs, batch.action_dim))
    legs = np.zeros(batch.action_dim, dtype=bool)
    legs[batch.gait.kin.joint_index.reshape(-1)] = True  # the head and tail hold still
    for _ in range(batch.max_steps):
        o = batch.observe().copy()
        o[:, pos] += rng.normal(0.0, cfg.joint_pos_noise, o[:, pos].shape)
        o[:, vel] += rng.normal(0.0, cfg.joint_vel_noise, o[:, vel].shape)
        # The policy's action that gives the gait's joint targets (the robot's home + action_scale * action)
        target = batch.gait.joint_targets()
        obs.append(o)
        act.append(np.clip((target - home) / scale, -1.0, 1.0))
        # zero residual: the gait alone (the residual is in action units: action_scale rad each)
        push = zero if cfg.action_noise <= 0 else rng.normal(0.0, cfg.action_noise / scale, zero.shape) * legs
        _, term, _ = batch.step(push)
        # `last_action` is what the env applied: the gait's, as the imitating policy will have applied it
        s.action[:] = act[-1]
        vx.append(s.base_lin_vel[:, 0].copy())
        fell |= term
    return np.asarray(obs, np.float32), np.asarray(act, np.float32), fell, np.asarray(vx)
