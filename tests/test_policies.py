"""Asymmetric actor-critic: the actor reads only ppo.actor_observations, the critic everything; plain PPO.load."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.envs.vec_env import LegkitVecEnv
from legkit.train.config import build_config
from legkit.train.policies import AsymmetricActorCriticPolicy, observation_indices
from legkit.train.trainer import _build_model

MEASURED = ["base_ang_vel", "projected_gravity", "command", "joint_pos", "joint_vel", "last_action"]
"""go2-walk's observation terms without base_lin_vel: what a real Go2 measures."""
SMALL = ["run.num_envs=8", "ppo.n_steps=64", "ppo.batch_size=512", "ppo.n_epochs=1"]


def _model(actor: list[str] | None):
    """A go2-walk PPO (quiet logger, via the trainer) and its VecNormalize env; `actor` None: symmetric."""
    sets = SMALL + ([f"ppo.actor_observations=[{', '.join(actor)}]"] if actor else [])
    cfg = build_config("go2-walk", sets=sets)
    env = VecNormalize(LegkitVecEnv(cfg.task, cfg.run.num_envs, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    return _build_model(cfg, env), env


@pytest.fixture
def built():
    made = []

    def _make(actor: list[str] | None):
        model, env = _model(actor)
        made.append(env)
        return model, env

    yield _make
    for env in made:
        env.close()


def _lin_vel_changed(model, obs: np.ndarray) -> np.ndarray:
    """`obs` with its base_lin_vel entries moved by 3 (normalized units)."""
    (start, size), = [(s, k) for n, s, k in model.get_env().unwrapped.batch.obs_layout if n == "base_lin_vel"]
    other = obs.copy()
    other[:, start:start + size] += 3.0
    return other


def _values(model, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.policy.predict_values(torch.as_tensor(obs)).numpy()


def test_actor_cannot_see_privileged_inputs(built):
    model, env = built(MEASURED)
    assert isinstance(model.policy, AsymmetricActorCriticPolicy)
    obs = env.reset()
    other = _lin_vel_changed(model, obs)
    act, _ = model.predict(obs, deterministic=True)
    act_other, _ = model.predict(other, deterministic=True)
    np.testing.assert_array_equal(act, act_other)
    assert not np.allclose(_values(model, obs), _values(model, other))
    # evaluate_actions (PPO's loss) agrees: same log-probabilities, other values
    actions = torch.as_tensor(act)
    with torch.no_grad():
        v, logp, _ = model.policy.evaluate_actions(torch.as_tensor(obs), actions)
        v2, logp2, _ = model.policy.evaluate_actions(torch.as_tensor(other), actions)
    assert torch.equal(logp, logp2) and not torch.allclose(v, v2)


def test_symmetric_actor_sees_everything(built):
    model, env = built(None)
    obs = env.reset()
    act, _ = model.predict(obs, deterministic=True)
    act_other, _ = model.predict(_lin_vel_changed(model, obs), deterministic=True)
    assert not np.allclose(act, act_other)


def test_actor_indices_follow_the_layout(built):
    model, _ = built(["command", "base_ang_vel"])  # config order does not matter: observation order does
    assert model.policy.actor_indices == [3, 4, 5, 9, 10, 11]
    assert model.policy.mlp_extractor.policy_net[0].in_features == 6
    assert model.policy.mlp_extractor.value_net[0].in_features == 48
    layout = [("a", 0, 2), ("b", 2, 1)]
    assert observation_indices(layout, ["b"]) == [2]
    with pytest.raises(LegkitError, match="'c'.*valid: a, b"):
        observation_indices(layout, ["c"])


def test_saves_and_loads_with_plain_ppo_load(built, tmp_path):
    model, env = built(MEASURED)
    obs = env.reset()
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = PPO.load(path, device="cpu")
    assert type(loaded.policy) is AsymmetricActorCriticPolicy
    assert loaded.policy.actor_indices == model.policy.actor_indices
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(_values(loaded, obs), _values(model, obs))
    # A fresh process that never imported legkit.train.policies: cloudpickle's class reference imports it.
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "act.npy", model.predict(obs, deterministic=True)[0])
    code = ("import sys, numpy as np; from stable_baselines3 import PPO; "
            f"d = {str(tmp_path)!r}; m = PPO.load(d + '/model.zip', device='cpu'); "
            "a = m.predict(np.load(d + '/obs.npy'), deterministic=True)[0]; "
            "assert type(m.policy).__module__ == 'legkit.train.policies', type(m.policy); "
            "assert np.array_equal(a, np.load(d + '/act.npy')); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_short_learn_keeps_the_actor_blind(built):
    model, env = built(MEASURED)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(8 * 64)
    assert model.num_timesteps == 8 * 64
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  model.predict(_lin_vel_changed(model, obs), deterministic=True)[0])


def test_unknown_actor_observation_is_named():
    with pytest.raises(LegkitError, match="'nope'.*valid: base_lin_vel, base_ang_vel"):
        build_config("go2-walk", sets=["ppo.actor_observations=[nope]"])
    with pytest.raises(LegkitError, match="each term once"):
        build_config("go2-walk", sets=["ppo.actor_observations=[command, command]"])


def test_empty_actor_observations_keep_mlp_policy(built):
    assert build_config("go2-walk").ppo.actor_observations == ()
    model, _ = built(None)
    assert type(model.policy) is ActorCriticPolicy
    assert "actor_indices" not in model.policy_kwargs
