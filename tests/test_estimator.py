"""A blind actor's state estimator (ppo.estimator): inside the actor, trained by regression only, exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.envs.vec_env import LegkitVecEnv
from legkit.train.callbacks import EstimatorTraining
from legkit.train.config import build_config
from legkit.train.trainer import _build_model

BLIND = "[base_ang_vel, projected_gravity, command, joint_pos, joint_vel, last_action, history]"
SMALL = ["run.num_envs=8", "ppo.n_steps=32", "ppo.batch_size=128", "ppo.n_epochs=1"]


@pytest.fixture
def blind():
    cfg = build_config("go2-joystick", sets=SMALL + [f"ppo.actor_observations={BLIND}", "ppo.estimator=[base_lin_vel]",
                                                    "ppo.symmetry=false"])  # the estimator alone
    env = VecNormalize(LegkitVecEnv(cfg.task, cfg.run.num_envs, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    yield _build_model(cfg, env), env
    env.close()


def _layout_block(env, name: str) -> slice:
    (start, size), = [(s, k) for n, s, k in env.unwrapped.batch.obs_layout if n == name]
    return slice(start, start + size)


def test_estimator_is_part_of_the_actor_and_outside_ppos_optimizer(blind):
    model, env = blind
    policy = model.policy
    est = policy.estimator_parameters()
    assert est and policy.pi_features_extractor.features_dim == len(policy.actor_indices) + 3
    in_optimizer = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in est}
    assert {id(p) for p in policy.parameters()} - {id(p) for p in est} == in_optimizer
    # PPO's loss does not reach the estimator: its output is detached
    obs = torch.as_tensor(env.reset())
    _, logp, _ = policy.evaluate_actions(obs, torch.zeros((len(obs), 12)))
    logp.sum().backward()
    assert all(p.grad is None for p in est)


def test_the_actor_reads_the_estimate_not_the_true_velocity(blind):
    model, env = blind
    obs = env.reset()
    other = obs.copy()
    other[:, _layout_block(env, "base_lin_vel")] += 3.0
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  model.predict(other, deterministic=True)[0])
    # ... while the estimate does move the action: the estimator's output is an input of the policy net
    policy = model.policy
    x = torch.as_tensor(obs[:, policy.actor_indices])
    feats = policy.pi_features_extractor.features(x)
    moved = feats.clone()
    moved[:, -3:] += 3.0
    with torch.no_grad():
        a = policy.action_net(policy.mlp_extractor.forward_actor(feats))
        b = policy.action_net(policy.mlp_extractor.forward_actor(moved))
    assert not torch.allclose(a, b)


def test_regression_learns_the_velocity_from_the_actors_inputs(blind):
    """On observations where the target is a function of the actor's inputs, the fit error falls by far."""
    model, env = blind
    policy = model.policy
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4096, env.observation_space.shape[0])).astype(np.float32)
    x = obs[:, policy.actor_indices]
    obs[:, policy.estimate_indices] = np.tanh(x[:, :3] + 0.5 * x[:, 3:6])  # a learnable velocity
    cb = EstimatorTraining(learning_rate=3e-3, epochs=1, batch_size=256)
    cb.init_callback(model)
    cb.on_training_start(locals(), globals())
    first = cb.fit(obs)
    for _ in range(30):
        last = cb.fit(obs)
    assert last < 0.1 * first, (first, last)
    assert all(p.grad is None for p in policy.estimator_parameters())  # nothing stale for PPO's clipping


def test_training_fits_the_estimator_and_reloads_with_plain_ppo_load(blind, tmp_path):
    model, env = blind
    before = [p.detach().clone() for p in model.policy.estimator_parameters()]
    model.learn(8 * 32 * 3, callback=EstimatorTraining())
    after = model.policy.estimator_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    obs = env.reset()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert loaded.policy.estimate_indices == model.policy.estimate_indices


@pytest.mark.parametrize("sets, message", [
    (["ppo.actor_observations=[]", "ppo.estimator=[base_lin_vel]"], "needs ppo.actor_observations"),
    ([f"ppo.actor_observations={BLIND}", "ppo.estimator=[command]"], "'command'.*actor does not read"),
    ([f"ppo.actor_observations={BLIND}", "ppo.estimator=[nope]"], "'nope'"),
    ([f"ppo.actor_observations={BLIND}", "ppo.estimator_epochs=0"], "ppo.estimator_epochs"),
])
def test_bad_estimator_settings_are_named(sets, message):
    with pytest.raises(LegkitError, match=message):
        build_config("go2-joystick", sets=sets)


def test_fixed_command_scales_survive_training_and_load_with_plain_vecnormalize(tmp_path):
    from legkit.train.normalization import PinnedRunningMeanStd, command_statistics

    cfg = build_config("go2-joystick", sets=SMALL + ["ppo.fixed_scales=[command]"])
    from legkit.train.normalization import pinned_statistics

    env = VecNormalize(LegkitVecEnv(cfg.task, cfg.run.num_envs, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    try:
        env.obs_rms = pinned_statistics(env.unwrapped.batch.obs_layout, cfg.task, cfg.ppo.fixed_scales)
        model = _build_model(cfg, env)
        model.learn(8 * 32 * 2)
        block = _layout_block(env, "command")
        # the final ranges vx -1..2, vy -0.8..0.8, yaw -1.5..1.5: U(lo, hi) has mean (lo + hi) / 2, var (hi - lo)^2 / 12
        np.testing.assert_allclose(env.obs_rms.mean[block], [0.5, 0.0, 0.0])
        np.testing.assert_allclose(env.obs_rms.var[block], np.square([3.0, 1.6, 3.0]) / 12)
        np.testing.assert_allclose(command_statistics(cfg.task)[0], [0.5, 0.0, 0.0])
        assert not np.allclose(env.obs_rms.var[_layout_block(env, "joint_vel")], 1.0)  # the rest still runs
        env.save(str(tmp_path / "vn.pkl"))
    finally:
        env.close()
    loaded = VecNormalize.load(str(tmp_path / "vn.pkl"), LegkitVecEnv(cfg.task, 2, seed=0, nthread=1))
    try:
        assert isinstance(loaded.obs_rms, PinnedRunningMeanStd)
        loaded.obs_rms.update(np.full((5, loaded.observation_space.shape[0]), 7.0))
        np.testing.assert_allclose(loaded.obs_rms.mean[block], [0.5, 0.0, 0.0])
    finally:
        loaded.close()
    with pytest.raises(LegkitError, match="fixed_scales: 'joint_vel'.*valid: command"):
        build_config("go2-joystick", sets=["ppo.fixed_scales=[joint_vel]"])


def test_a_camera_is_scaled_by_what_it_can_read():
    """ppo.fixed_scales=[camera]: depth pixels as a uniform draw over the camera's range (in metres, or in [0, 1]
    normalized); height pixels around the floor (0) with a 5 cm std, whatever the rollouts saw."""
    from legkit.train.normalization import camera_statistics, pinned_statistics

    for sets, (mean, var) in (([], (1.5, 0.75)), (["task.sensors.camera.normalize=true"], (0.5, 1 / 12)),
                              (["task.sensors.camera.depth=height"], (0.0, 0.05 ** 2))):
        cfg = build_config("pidog-run", sets=["task.sensors.camera.max_depth=3.0", *sets])
        assert camera_statistics(cfg.task) == pytest.approx((mean, var))
    cfg = build_config("pidog-run", sets=["ppo.fixed_scales=[camera]", "task.sensors.camera.depth=height"])
    env = LegkitVecEnv(cfg.task, 2, seed=0, nthread=1)
    try:
        layout = env.batch.obs_layout
        rms = pinned_statistics(layout, cfg.task, cfg.ppo.fixed_scales)
        (start, size), = [(int(s), int(k)) for n, s, k in layout if n == "camera"]
        rms.update(np.full((4, rms.mean.size), 3.0))
        assert rms.pinned.tolist() == list(range(start, start + size))
        np.testing.assert_allclose(rms.mean[start:start + size], 0.0)
        np.testing.assert_allclose(rms.var[start:start + size], 0.05 ** 2)
        assert rms.mean[0] != 0.0  # the other entries run
    finally:
        env.close()


def test_reward_stages_change_the_parameters_at_their_step():
    """task.reward_stages: the tracking kernel sharpens once training reaches the stage's step (and at once
    on a resume past it); evaluation configs score with the last stage's parameters."""
    from legkit.tasks.config import undisturbed
    from legkit.train.callbacks import RewardStages

    stage = "task.reward_stages=[{step: 512, params: {track_lin_vel: {sigma: 0.05}}}]"
    cfg = build_config("go2-joystick", sets=SMALL + [stage, "ppo.symmetry=false"])
    env = VecNormalize(LegkitVecEnv(cfg.task, cfg.run.num_envs, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    try:
        model = _build_model(cfg, env)
        batch = env.unwrapped.batch
        sigma = lambda: dict((n, p) for n, _, _, p in batch.rewards._terms)["track_lin_vel"]["sigma"]  # noqa: E731
        cb = RewardStages(env.unwrapped)
        model.learn(256, callback=cb)  # one rollout: before the stage
        assert sigma() == 0.25 and cb.in_force == 0
        model.learn(512, callback=cb, reset_num_timesteps=False)  # reaches 512 at a rollout start
        assert sigma() == 0.05 and cb.in_force == 1
        assert dict((n, p) for n, _, _, p in batch.rewards._terms)["track_lin_vel"]["slow_speed"] == 0.5  # kept
    finally:
        env.close()
    assert undisturbed(cfg.task).rewards["track_lin_vel"].params["sigma"] == 0.05
    with pytest.raises(LegkitError, match="reward term 'nope'"):
        build_config("go2-joystick", sets=["task.reward_stages=[{step: 5, params: {nope: {sigma: 0.2}}}]"])
