"""The SB3 VecEnv contract of LegkitVecEnv: shapes, auto-reset, truncation vs termination, bad inputs, seeding."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecEnv

import legkit  # noqa: F401 - registers legkit/Go2Walk-v0

OBS_TERMS = {"base_lin_vel": 3, "base_ang_vel": 3, "projected_gravity": 3, "command": 3,
             "joint_pos": 12, "joint_vel": 12, "last_action": 12}
OBS_DIM = sum(OBS_TERMS.values())


def zeros(env) -> np.ndarray:
    return np.zeros((env.num_envs, 12), dtype=np.float32)


def block(env, obs: np.ndarray, name: str) -> np.ndarray:
    """The `name` block of observations `obs` (..., obs_dim), by the env's saved layout."""
    (start, size), = [(st, sz) for n, st, sz in env.batch.obs_layout if n == name]
    return obs[..., start:start + size]


def test_spaces_and_layout(make_env):
    env = make_env(num_envs=3)
    assert isinstance(env, VecEnv)
    assert env.num_envs == 3
    assert env.observation_space.shape == (OBS_DIM,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (12,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    assert [n for n, _, _ in env.batch.obs_layout] == list(OBS_TERMS)
    start = 0
    for name, st, size in env.batch.obs_layout:  # contiguous, in order
        assert (st, size) == (start, OBS_TERMS[name])
        start += size
    assert env.batch.obs_dim == start == OBS_DIM


def test_reset_and_step_shapes_and_dtypes(make_env):
    env = make_env(num_envs=5)
    obs = env.reset()
    assert obs.shape == (5, OBS_DIM) and obs.dtype == np.float32
    assert np.isfinite(obs).all()
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 12)).astype(np.float32)
    for _ in range(5):
        obs, rewards, dones, infos = env.step(actions)
        assert obs.shape == (5, OBS_DIM) and obs.dtype == np.float32
        assert rewards.shape == (5,) and rewards.dtype == np.float32
        assert dones.shape == (5,) and dones.dtype == np.bool_
        assert isinstance(infos, list) and len(infos) == 5 and all(isinstance(i, dict) for i in infos)
        assert np.isfinite(obs).all() and np.isfinite(rewards).all()
    # The observation reports what happened: the clipped action just applied and the robot's command.
    np.testing.assert_allclose(block(env, obs, "last_action"), actions, atol=1e-6)
    np.testing.assert_allclose(block(env, obs, "command"), env.batch.state.command, atol=1e-6)
    np.testing.assert_array_equal(env.batch.state.episode_step, 5)


def test_actions_are_clipped(make_env):
    env = make_env(num_envs=2)
    env.reset()
    obs, *_ = env.step(np.full((2, 12), 5.0, dtype=np.float32))
    np.testing.assert_array_equal(block(env, obs, "last_action"), 1.0)


def test_time_limit_truncation_autoresets(make_env):
    env = make_env(num_envs=3, episode_seconds=0.2)  # 10 control steps at 50 Hz
    limit = env.batch.max_steps
    assert limit == 10
    env.reset()
    action = np.full((3, 12), 0.3, dtype=np.float32)
    for step in range(1, limit):
        obs, _, dones, infos = env.step(action)
        assert not dones.any(), f"done before the time limit at step {step}"
        assert all("terminal_observation" not in i for i in infos)
        np.testing.assert_array_equal(env.batch.state.episode_step, step)

    obs, rewards, dones, infos = env.step(action)
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        term = info["terminal_observation"]
        assert term.shape == (OBS_DIM,) and np.isfinite(term).all()
        # The terminal observation is the last one of the old episode, the returned one the first of the new.
        np.testing.assert_allclose(block(env, term, "last_action"), 0.3, atol=1e-6)
        np.testing.assert_array_equal(block(env, obs[i], "last_action"), 0.0)
        assert info["episode"]["l"] == limit
        assert info["episode"]["r"] == pytest.approx(float(env.completed[i]["return"]))
    np.testing.assert_array_equal(env.batch.state.episode_step, 0)
    np.testing.assert_allclose(obs, env.batch.observe())
    assert [ep["terminated"] for ep in env.completed] == [False] * 3

    # The new episode runs its full length again.
    obs, _, dones, infos = env.step(action)
    assert not dones.any()
    np.testing.assert_array_equal(env.batch.state.episode_step, 1)


def test_fall_terminates_without_truncation(make_env):
    env = make_env(num_envs=2, termination={"min_base_height": 10.0, "grace_steps": 0})
    env.reset()
    obs, rewards, dones, infos = env.step(zeros(env))
    assert dones.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is False
        assert info["terminal_observation"].shape == (OBS_DIM,)
        assert info["episode"]["l"] == 1
    np.testing.assert_array_equal(env.batch.state.episode_step, 0)
    assert [ep["terminated"] for ep in env.completed] == [True, True]
    # go2-walk penalizes the fall: termination weight -50 per second of control period.
    assert all(ep["terms"]["termination"] == pytest.approx(-50.0 * env.batch.dt) for ep in env.completed)


def test_upside_down_robot_falls_others_continue(make_env):
    env = make_env(num_envs=3, termination={"grace_steps": 0})
    env.reset()
    sim = env.batch.sim
    qpos = sim.qpos[[0]].copy()
    qpos[0, 2] = 0.25  # above min_base_height: it has to actually fall
    qpos[0, 3:7] = [0.0, 1.0, 0.0, 0.0]  # rolled over by 180 degrees, legs up
    sim.set_state(np.array([0]), qpos, np.zeros((1, env.batch.model.nv)))
    for step in range(1, 51):
        _, _, dones, infos = env.step(zeros(env))
        assert not dones[1:].any(), "robots standing on their feet must not terminate"
        if dones[0]:
            break
    assert dones[0], "a robot dropped on its back must terminate"
    assert step > 1
    assert infos[0]["TimeLimit.truncated"] is False
    assert block(env, infos[0]["terminal_observation"], "projected_gravity")[2] > 0.9  # gravity points body-up
    assert env.completed[0]["terminated"] is True and env.completed[0]["length"] == step
    np.testing.assert_array_equal(env.batch.state.episode_step, [0, step, step])
    assert env.batch.state.base_pos[0, 2] == pytest.approx(env.batch.robot.reset_height)  # back on its feet


def test_grace_period_delays_termination(make_env):
    grace = 5
    env = make_env(num_envs=2, termination={"min_base_height": 10.0, "grace_steps": grace})
    env.reset()
    for step in range(1, grace + 1):
        _, _, dones, _ = env.step(zeros(env))
        assert not dones.any(), f"terminated at step {step}, inside the grace period of {grace} steps"
    _, _, dones, infos = env.step(zeros(env))
    assert dones.all()
    assert all(i["TimeLimit.truncated"] is False for i in infos)
    assert all(i["episode"]["l"] == grace + 1 for i in infos)


def test_nan_action_resets_only_that_robot(make_env):
    env = make_env(num_envs=4)
    env.reset()
    for _ in range(3):
        env.step(zeros(env))
    actions = zeros(env)
    actions[1, 4] = np.nan
    obs, rewards, dones, infos = env.step(actions)
    assert env.batch.bad_action_count == 1
    np.testing.assert_array_equal(dones, [False, True, False, False])
    assert infos[1]["TimeLimit.truncated"] is False
    assert np.isfinite(infos[1]["terminal_observation"]).all()
    assert rewards[1] == 0.0
    assert np.isfinite(obs).all() and np.isfinite(rewards).all()
    np.testing.assert_array_equal(env.batch.state.episode_step, [4, 0, 4, 4])
    assert env.batch.bad_physics_count == 0

    # Inf counts too, and the others keep counting.
    actions = zeros(env)
    actions[3, 0] = np.inf
    _, _, dones, _ = env.step(actions)
    np.testing.assert_array_equal(dones, [False, False, False, True])
    assert env.batch.bad_action_count == 2
    np.testing.assert_array_equal(env.batch.state.episode_step, [5, 1, 5, 0])


@pytest.mark.parametrize("where", ["qpos", "qvel", "whole state"])
def test_physics_blowup_resets_only_that_robot(make_env, where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its instability warnings to ./MUJOCO_LOG.TXT
    env = make_env(num_envs=4)
    env.reset()
    for _ in range(3):
        env.step(zeros(env))
    sim = env.batch.sim
    if where == "qpos":
        sim.qpos[2, 2] = np.nan  # sim.qpos is a view into sim.state
    elif where == "qvel":
        sim.qvel[2, 8] = 1e12
    else:
        sim.state[2, :] = np.nan
    assert not np.isfinite(sim.state[2]).all() or np.abs(sim.qvel[2]).max() > 1e3

    obs, rewards, dones, infos = env.step(zeros(env))
    assert env.batch.bad_physics_count == 1
    assert env.batch.bad_action_count == 0
    np.testing.assert_array_equal(dones, [False, False, True, False])
    assert infos[2]["TimeLimit.truncated"] is False
    assert np.isfinite(infos[2]["terminal_observation"]).all()
    assert rewards[2] == 0.0
    np.testing.assert_array_equal(env.batch.state.episode_step, [4, 4, 0, 4])
    assert np.isfinite(sim.state).all() and np.isfinite(obs).all()
    assert sim.qpos[2, 2] == pytest.approx(env.batch.robot.reset_height)

    # The batch carries on normally afterwards.
    for _ in range(3):
        obs, rewards, dones, _ = env.step(zeros(env))
    assert np.isfinite(obs).all() and not dones.any()
    assert env.batch.bad_physics_count == 1


def rollout(env, steps: int, action_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(action_seed)
    obs = [env.reset()]
    rewards, dones = [], []
    for _ in range(steps):
        o, r, d, _ = env.step(rng.uniform(-1, 1, (env.num_envs, 12)).astype(np.float32))
        obs.append(o)
        rewards.append(r)
        dones.append(d)
    return np.array(obs), np.array(rewards), np.array(dones)


def test_same_seed_same_trajectories(make_env):
    # Default physics threads: the result must not depend on which thread steps which robot.
    a = rollout(make_env(num_envs=4, seed=7, nthread=None), 100, action_seed=11)
    b = rollout(make_env(num_envs=4, seed=7, nthread=None), 100, action_seed=11)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert np.isfinite(a[0]).all()


def test_different_seed_differs(make_env):
    a_obs, a_rew, _ = rollout(make_env(num_envs=4, seed=7), 20, action_seed=11)
    b_obs, b_rew, _ = rollout(make_env(num_envs=4, seed=8), 20, action_seed=11)
    assert not np.array_equal(a_obs[0], b_obs[0])  # different initial states and commands
    assert not np.array_equal(a_rew, b_rew)


def test_seed_method_reseeds_resets(make_env):
    env = make_env(num_envs=2, seed=0)
    env.seed(3)
    first = env.reset()
    env.seed(3)
    np.testing.assert_array_equal(env.reset(), first)


# The observation space is unbounded on purpose (VecNormalize scales it); the checker says so.
@pytest.mark.filterwarnings("ignore:.*A Box observation space (minimum|maximum) value is:UserWarning")
def test_gymnasium_env_passes_checker():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("legkit/Go2Walk-v0")
    try:
        raw = env.unwrapped
        check_env(raw, skip_render_check=True)
        obs, _ = raw.reset(seed=0)
        assert obs.shape == (OBS_DIM,) and obs.dtype == np.float32
        obs, reward, terminated, truncated, info = raw.step(raw.action_space.sample())
        assert obs.shape == (OBS_DIM,) and np.isfinite(obs).all()
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    finally:
        env.close()


def test_pushes_follow_their_schedule_and_move_the_base():
    """Training-time pushes: a world-frame force on the base for `duration` steps every `interval` steps."""
    from dataclasses import replace

    from legkit.envs.core import LeggedBatch
    from legkit.tasks import get_task
    from legkit.tasks.config import PushConfig

    task = get_task("go2-walk")
    pushed = LeggedBatch(replace(task, pushes=PushConfig(force=300.0, interval_s=0.2, duration_s=0.04)), 4, seed=3,
                         nthread=0)
    calm = LeggedBatch(task, 4, seed=3, nthread=0)
    try:
        every, length = 10, 2  # 0.2 s and 0.04 s at 50 Hz
        zero = np.zeros((4, 12))
        start_xy = pushed.state.base_pos[:, :2].copy()
        for _ in range(30):
            step = pushed.state.episode_step.copy()
            pushed.step(zero)
            calm.step(zero)
            active = (step + pushed.events["pushes"].phase) % every < length
            force = np.linalg.norm(pushed.sim.qfrc_applied[:, :3], axis=1)
            np.testing.assert_allclose(force, np.where(active, 300.0, 0.0), atol=1e-9)
            assert np.all(pushed.sim.qfrc_applied[:, 2] == 0.0)  # horizontal pushes only
        assert calm.sim.qfrc_applied is None
        drift_pushed = np.linalg.norm(pushed.state.base_pos[:, :2] - start_xy, axis=1)
        drift_calm = np.linalg.norm(calm.state.base_pos[:, :2] - start_xy, axis=1)
        # random directions can partly cancel for one robot; every robot still moves more, and far more on average
        assert np.all(drift_pushed > drift_calm) and drift_pushed.mean() > 2 * drift_calm.mean()
    finally:
        pushed.close()
        calm.close()


def test_push_magnitude_can_be_random():
    from dataclasses import replace

    from legkit.envs.core import LeggedBatch
    from legkit.tasks import get_task
    from legkit.tasks.config import PushConfig

    cfg = PushConfig(force=100.0, interval_s=0.02, duration_s=0.02, random_magnitude=True)
    batch = LeggedBatch(replace(get_task("go2-walk"), pushes=cfg), 64, seed=0, nthread=0)
    try:
        batch.step(np.zeros((64, 12)))  # every robot is pushed on every step (interval = duration = 1 step)
        force = np.linalg.norm(batch.sim.qfrc_applied[:, :3], axis=1)
        assert np.all((force >= 0.0) & (force <= 100.0)) and force.std() > 10.0
    finally:
        batch.close()
