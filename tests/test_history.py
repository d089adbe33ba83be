"""The history observation term and the privileged (critic-only) terms of go2-joystick."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.tasks import get_task
from legkit.tasks.observations import HistoryConfig


def _task(length=2):
    task = get_task("go2-walk")
    return replace(task, observations=task.observations + ("history",),
                   observation_history=HistoryConfig(terms=("joint_pos", "last_action"), length=length))


def _block(env, name):
    _, start, size = next(b for b in env.obs_layout if b[0] == name)
    return slice(start, start + size)


def test_history_holds_the_last_observed_frames_newest_first_and_restarts_at_reset():
    env = LeggedBatch(_task(length=2), num_envs=3, seed=0, nthread=1)
    try:
        hist, jp, la = _block(env, "history"), _block(env, "joint_pos"), _block(env, "last_action")
        assert hist.stop - hist.start == 2 * 24
        frames = []
        obs = env.observe().copy()
        frame0 = np.concatenate([obs[:, jp], obs[:, la]], axis=1)
        np.testing.assert_allclose(obs[:, hist], np.tile(frame0, (1, 2)))  # a new episode's past is its first frame
        frames.append(frame0)
        rng = np.random.default_rng(1)
        for _ in range(3):
            env.step(rng.uniform(-0.3, 0.3, (3, 12)))
            obs = env.observe().copy()
            frames.append(np.concatenate([obs[:, jp], obs[:, la]], axis=1))
        # now: history = [frame t-1, frame t-2] = frames[2], frames[1]
        np.testing.assert_allclose(obs[:, hist], np.concatenate([frames[2], frames[1]], axis=1), atol=1e-6)
        env.reset(np.array([1]))
        obs = env.observe().copy()
        now = np.concatenate([obs[1, jp], obs[1, la]])
        np.testing.assert_allclose(obs[1, hist], np.tile(now, 2))
        np.testing.assert_allclose(obs[0, hist], np.concatenate([frames[2], frames[1]], axis=1)[0], atol=1e-6)
    finally:
        env.close()


@pytest.mark.parametrize("history,match", [
    (HistoryConfig(terms=("base_lin_vel",), length=2), "must be one of the task's other observation terms"),
    (HistoryConfig(terms=("joint_pos",), length=0), "length >= 1"),
])
def test_bad_history_config_is_an_error(history, match):
    task = replace(_task(), observations=("joint_pos", "history"), observation_history=history)
    with pytest.raises(LegkitError, match=match):
        LeggedBatch(task, num_envs=1, nthread=1)


def test_privileged_terms_report_the_randomized_physics_and_the_push():
    task = get_task("go2-joystick")
    task = replace(task, randomization=replace(task.randomization, friction=(0.3, 0.3), payload=(2.0, 2.0)),
                   pushes=replace(task.pushes, force=80.0, interval_s=0.1, random_magnitude=False),
                   observation_noise={})
    env = LeggedBatch(task, num_envs=4, seed=0, nthread=1)
    try:
        obs = env.observe()
        np.testing.assert_allclose(obs[:, _block(env, "ground_friction")], 0.3, rtol=1e-6)
        np.testing.assert_allclose(obs[:, _block(env, "payload")], 2.0, rtol=1e-6)
        strength = obs[:, _block(env, "motor_strength")]
        assert ((strength >= 0.85) & (strength <= 1.15)).all()
        for _ in range(5):  # pushes every 5 control steps, each robot at its own phase: all have started
            env.step(np.zeros((4, 12)))
        force = env.observe()[:, _block(env, "push_force")] * 100.0  # per 100 N
        np.testing.assert_allclose(np.linalg.norm(force, axis=1), 80.0, rtol=1e-5)
        np.testing.assert_allclose(env.sim.qfrc_applied[:, :2], force, rtol=1e-5)
    finally:
        env.close()


def test_vecenv_history_is_what_the_policy_saw_across_auto_resets():
    """With observation noise, the history's newest frame is exactly the previous observation returned to the
    policy, also on steps where other robots fall and are reset (the env observes twice on those)."""
    from legkit.envs.vec_env import LegkitVecEnv

    task = replace(_task(length=2), observation_noise={"joint_pos": 0.05},
                   termination=replace(get_task("go2-walk").termination, grace_steps=0, min_base_height=0.26))
    env = LegkitVecEnv(task, 6, seed=0, nthread=1)
    try:
        b = env.batch
        hist, jp, la = _block(b, "history"), _block(b, "joint_pos"), _block(b, "last_action")
        obs = env.reset()
        rng = np.random.default_rng(0)
        resets = 0
        for _ in range(40):
            new, _, dones, _ = env.step(rng.uniform(-1, 1, (6, 12)).astype(np.float32))
            kept = ~dones
            resets += int(dones.sum())
            seen = np.concatenate([obs[:, jp], obs[:, la]], axis=1)
            np.testing.assert_allclose(new[kept][:, hist][:, :seen.shape[1]], seen[kept], atol=1e-6)
            fresh = new[dones]
            np.testing.assert_allclose(fresh[:, hist], np.tile(np.concatenate([fresh[:, jp], fresh[:, la]], axis=1), 2))
            obs = new
        assert resets > 0  # the low height bar makes robots fall: the twice-observed steps were exercised
    finally:
        env.close()
