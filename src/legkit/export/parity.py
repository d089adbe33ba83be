"""What an export is checked on: observations recorded from the policy's own rollouts in its task, and the SB3
policy's deterministic actions for them.

A feedforward policy is checked observation by observation; a recurrent one along whole sequences, its
state carried from step to step as on the robot, across episode starts (SB3's episode_start zeroes the
state; the exported graph's caller zeroes h and c).
"""

from __future__ import annotations

import math

import numpy as np

from legkit.envs.core import LeggedBatch

ROBOTS = 50
"""Robots recorded side by side."""


def parity_observations(model, norm, task, samples: int, seed: int = 0) -> np.ndarray:
    """`samples` raw observations (samples, obs_dim) recorded from rollouts of the policy itself in its
    task, with its training noise and disturbances off; every robot starts anew when it falls."""
    env = LeggedBatch(task, ROBOTS, seed=seed, nthread=1)
    out = []
    try:
        obs = env.observe().copy()
        while len(out) * ROBOTS < samples:
            out.append(obs.copy())
            action, _ = model.predict(norm.normalize_obs(obs), deterministic=False)
            _, term, trunc = env.step(action)
            done = np.flatnonzero(term | trunc)
            if len(done):
                env.reset(done)
            obs = env.observe().copy()
    finally:
        env.close()
    return np.concatenate(out)[:samples]


def parity_sequences(model, norm, task, samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of raw observations (steps, robots, obs_dim) of a recurrent policy's own rollouts (its state
    carried, sampled actions), about `samples` in all, and where episodes start (steps, robots) bool: at step 0,
    after every fall and at every time limit. The first episodes get random time limits (rsl_rl's
    init_at_random_ep_len), so that sequences cross episode starts even where no robot falls."""
    env = LeggedBatch(task, ROBOTS, seed=seed, nthread=1)
    env.spread_episode_starts()
    steps = math.ceil(samples / ROBOTS)
    obs_seq = np.empty((steps, ROBOTS, env.obs_dim), dtype=np.float32)
    starts = np.zeros((steps, ROBOTS), dtype=bool)
    starts[0] = True
    state = None
    try:
        obs = env.observe().copy()
        for t in range(steps):
            obs_seq[t] = obs
            action, state = model.predict(norm.normalize_obs(obs), state=state, episode_start=starts[t],
                                          deterministic=False)
            _, term, trunc = env.step(action)
            done = term | trunc
            if done.any():
                env.reset(np.flatnonzero(done))
            if t + 1 < steps:
                starts[t + 1] = done
            obs = env.observe().copy()
    finally:
        env.close()
    return obs_seq, starts


def sb3_sequence_actions(model, norm, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """SB3's deterministic actions (steps, robots, actions) along sequences `obs` (steps, robots, obs_dim):
    model.predict with its state and episode_start, step by step."""
    state, out = None, []
    for t in range(len(obs)):
        action, state = model.predict(norm.normalize_obs(obs[t]), state=state, episode_start=starts[t],
                                      deterministic=True)
        out.append(action)
    return np.stack(out)
