"""The imitation stage: demos.npz, behaviour cloning (MLP and LSTM), warm starts of PPO / RecurrentPPO, and
the decaying BC term for fine-tuning. Tiny synthetic demonstrations: one action is a function of the current
observation, the other (cos of a phase whose sin is observed) needs the observation history."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from legkit import LegkitError
from legkit.imitate import (BCCallback, BCRegularizer, Demos, PPOWithBC, bc_action, load_bc, load_demos,
                            load_into_ppo, load_into_recurrent_ppo, save_demos, set_obs_statistics, split_episodes,
                            summary, train_bc)
from legkit.imitate.bc import first_layer_weight
from legkit.train.trainer import quiet_logger

OBS_DIM, ACT_DIM = 4, 2
META = {"gaits": ["trot", "walk"], "obs_layout": [["phase", 0, 1], ["x", 1, 2], ["gait", 3, 1]],
        "action_scale": 0.25, "control_dt": 0.02, "task": "pidog-walk", "noise": {"obs": 0.0}}
MLP_ARCH = (32, 32)


def synthetic(episodes: int = 24, steps: int = 60, seed: int = 0) -> dict:
    """Arrays for save_demos. obs = [sin(phase), x0, x1 (offset per episode), gait]; action = [tanh of x,
    0.8 cos(phase)]: the second is only inferable from past observations (the phase's direction)."""
    rng = np.random.default_rng(seed)
    obs, action, gait, episode = [], [], [], []
    for e in range(episodes):
        g = e % 2
        phase = 0.35 * np.arange(steps) + rng.uniform(0, 2 * np.pi)
        x = rng.normal(size=(steps, 2))
        x[:, 1] += 3.0 + 0.5 * e  # episodes differ, so statistics of some episodes differ from those of all
        obs.append(np.column_stack([np.sin(phase), x[:, 0], x[:, 1], np.full(steps, g)]))
        action.append(np.column_stack([np.tanh(0.8 * x[:, 0] - 0.2 * (x[:, 1] - 9.0)), 0.8 * np.cos(phase)]))
        gait.append(np.full(steps, g))
        episode.append(np.full(steps, e))
    return {"obs": np.concatenate(obs), "action": np.concatenate(action), "gait": np.concatenate(gait),
            "episode": np.concatenate(episode), "meta": META}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Demos:
    path = tmp_path_factory.mktemp("demos") / "demos.npz"
    save_demos(path, **synthetic())
    return load_demos(path)


@pytest.fixture(scope="module")
def mlp_bc(demos, tmp_path_factory):
    return train_bc(demos, "mlp", out=tmp_path_factory.mktemp("mlp"), epochs=40, batch_size=128, lr=3e-3,
                    net_arch=MLP_ARCH, patience=0)


@pytest.fixture(scope="module")
def lstm_bc(demos, tmp_path_factory):
    return train_bc(demos, "lstm", out=tmp_path_factory.mktemp("lstm"), epochs=60, batch_size=128, seq_len=16,
                    lr=1e-2, patience=0)


class TinyEnv(gym.Env):
    """Random observations of the demos' size, zero reward, 20-step episodes."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 20, {}

    def _obs(self):
        return (self.np_random.normal(size=OBS_DIM) + [0, 0, 8, 0.5]).astype(np.float32)


def quiet(model):
    """`model` with a logger that writes nothing (SB3's default makes an SB3-* folder in the temp dir)."""
    model.set_logger(quiet_logger())
    return model


def tiny_venv(n: int = 2) -> VecNormalize:
    return VecNormalize(DummyVecEnv([TinyEnv] * n), norm_obs=True, norm_reward=False, clip_obs=10.0)


# ---- demos.npz ----

def test_demos_round_trip(tmp_path):
    data = synthetic(episodes=4, steps=10)
    path = save_demos(tmp_path / "d.npz", **data)
    demos = load_demos(path)
    assert demos.obs.dtype == np.float32 and demos.action.dtype == np.float32
    assert demos.gait.dtype == np.int16 and demos.episode.dtype == np.int32
    np.testing.assert_array_equal(demos.obs, data["obs"].astype(np.float32))
    np.testing.assert_array_equal(demos.episode, data["episode"])
    assert demos.meta == META
    with np.load(path, allow_pickle=False) as raw:  # plain arrays: readable without legkit
        assert json.loads(str(raw["meta"]))["gaits"] == ["trot", "walk"]
    s = summary(demos)
    assert (s["samples"], s["episodes"], s["obs_dim"], s["act_dim"]) == (40, 4, OBS_DIM, ACT_DIM)
    assert s["gaits"] == {"trot": {"samples": 20, "episodes": 2}, "walk": {"samples": 20, "episodes": 2}}


def _broken(kind: str, tmp_path):
    """A demos file (or arrays) broken in one way."""
    d = synthetic(episodes=3, steps=5)
    if kind == "action range":
        d["action"][4, 1] = 1.5
    elif kind == "episode order":
        d["episode"] = np.array([0] * 5 + [1] * 5 + [0] * 5)
    elif kind == "gait id":
        d["gait"][0] = 2
    elif kind == "layout":
        d["meta"] = {**META, "obs_layout": [["phase", 0, 1], ["x", 1, 2]]}
    elif kind == "meta key":
        d["meta"] = {k: v for k, v in META.items() if k != "control_dt"}
    elif kind == "rows":
        d["gait"] = d["gait"][:-1]
    elif kind == "nan":
        d["obs"][3, 0] = np.nan
    return d


@pytest.mark.parametrize("kind,message", [
    ("action range", r"\[-1, 1\].*row 4"), ("episode order", "episode 0 has rows in two separate blocks"),
    ("gait id", r"gait ids must be in \[0, 2\)"), ("layout", "covers 3 observation entries but obs has 4"),
    ("meta key", "meta has no 'control_dt'"), ("rows", "'gait' has 14 rows but obs has 15"),
    ("nan", "'obs' has non-finite values"),
])
def test_bad_demos_are_refused_on_save(kind, message, tmp_path):
    with pytest.raises(LegkitError, match=message):
        save_demos(tmp_path / "d.npz", **_broken(kind, tmp_path))
    assert not (tmp_path / "d.npz").exists()


def test_bad_demo_files_are_refused_on_load(tmp_path):
    with pytest.raises(LegkitError, match="does not exist"):
        load_demos(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LegkitError, match="not a readable .npz"):
        load_demos(tmp_path / "junk.npz")
    d = synthetic(episodes=2, steps=5)
    np.savez(tmp_path / "noact.npz", obs=d["obs"].astype(np.float32), gait=d["gait"].astype(np.int16),
             episode=d["episode"].astype(np.int32), meta=np.array(json.dumps(META)))
    with pytest.raises(LegkitError, match="has no action array"):
        load_demos(tmp_path / "noact.npz")
    arrays = {"obs": d["obs"].astype(np.float32), "action": d["action"].astype(np.float32),
              "gait": d["gait"].astype(np.int16), "episode": d["episode"].astype(np.int32)}
    np.savez(tmp_path / "f64.npz", **{**arrays, "obs": d["obs"]}, meta=np.array(json.dumps(META)))
    with pytest.raises(LegkitError, match="'obs' must be float32"):
        load_demos(tmp_path / "f64.npz")
    np.savez(tmp_path / "pickled.npz", **arrays, meta=np.array([META], dtype=object))
    with pytest.raises(LegkitError, match="'meta' is not a plain array"):
        load_demos(tmp_path / "pickled.npz")
    np.savez(tmp_path / "badjson.npz", **arrays, meta=np.array("{gaits: trot"))
    with pytest.raises(LegkitError, match="not valid JSON"):
        load_demos(tmp_path / "badjson.npz")
    whole = (tmp_path / "f64.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])  # a file cut short
    with pytest.raises(LegkitError, match="not a readable .npz"):
        load_demos(tmp_path / "cut.npz")


# ---- behaviour cloning ----

def test_split_is_by_whole_episodes_and_stratified(demos):
    train, val = split_episodes(demos, 0.25, seed=3)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(np.unique(demos.episode).tolist())
    assert len(val) == 6  # 25% of 12 episodes of each gait
    gaits = demos.episode_gaits()
    assert {gaits[e] for e in val} == {0, 1}
    assert split_episodes(demos, 0.25, seed=3) == (train, val)
    with pytest.raises(LegkitError, match="at least 2"):
        split_episodes(demos.select([0]), 0.2)


def test_mlp_clones_and_writes_its_run_folder(mlp_bc, demos):
    r = mlp_bc
    assert not set(r.train_episodes) & set(r.val_episodes)
    assert r.train_losses[-1] < 0.85 * r.train_losses[0] and r.val_losses[-1] < r.val_losses[0]
    val = demos.select(r.val_episodes)
    error = np.square(bc_action(r.policy, val.obs, clip=False)[0] - val.action).mean(axis=0)
    assert error[0] < 0.03 * np.square(val.action[:, 0]).mean()  # a function of the current observation: learnt
    assert error[1] > 0.5 * np.square(val.action[:, 1]).mean()  # cos(phase) from sin(phase) alone: not learnable
    for name in ("best.pt", "final.pt", "losses.csv", "losses.png"):
        assert (r.out / name).is_file()
    with open(r.out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r.train_losses) == 40 and not r.stopped_early
    assert float(rows[r.best_epoch - 1]["val_loss"]) == pytest.approx(r.best_val_loss, rel=1e-6)
    assert r.best_val_loss == min(r.val_losses)


def test_normalizer_comes_from_training_episodes(mlp_bc, demos):
    norm = mlp_bc.policy.normalizer
    train_obs = demos.select(mlp_bc.train_episodes).obs.astype(np.float64)
    np.testing.assert_allclose(norm.mean, train_obs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.var, np.maximum(train_obs.var(axis=0), 1e-4), rtol=1e-12)
    assert norm.count == len(train_obs) and norm.clip == 10.0
    assert abs(norm.mean[2] - demos.obs[:, 2].mean()) > 1e-3  # not the statistics of every episode
    # the same numbers as SB3's VecNormalize with these statistics, to the bit
    venv = set_obs_statistics(tiny_venv(), norm)
    obs = demos.obs[:50] * 3.0
    np.testing.assert_array_equal(venv.normalize_obs(obs), norm(obs))
    with pytest.raises(LegkitError, match="clips at 5.0"):
        set_obs_statistics(VecNormalize(DummyVecEnv([TinyEnv]), clip_obs=5.0), norm)


def test_lstm_clones_what_needs_memory(lstm_bc, mlp_bc):
    assert lstm_bc.train_episodes == mlp_bc.train_episodes  # same seed, same split
    assert lstm_bc.val_losses[-1] < 0.4 * lstm_bc.val_losses[0]
    # the MLP cannot know the sign of cos(phase) from sin(phase); the LSTM reads it from the history
    assert lstm_bc.best_val_loss < 0.5 * mlp_bc.best_val_loss


def test_early_stopping_stops(tmp_path):
    d = synthetic(episodes=8, steps=30)
    d["action"] = np.random.default_rng(1).uniform(-1, 1, d["action"].shape)  # nothing to learn: it overfits
    save_demos(tmp_path / "d.npz", **d)
    r = train_bc(load_demos(tmp_path / "d.npz"), "mlp", out=tmp_path / "bc", epochs=300, batch_size=32, lr=1e-2,
                 net_arch=(64, 64), patience=4)
    assert r.stopped_early and len(r.val_losses) == r.best_epoch + 4 < 300
    assert load_bc(tmp_path / "bc" / "final.pt").info["epoch"] == len(r.val_losses)


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_best_pt_reloads_with_the_same_actions(kind, mlp_bc, lstm_bc, demos):
    r = mlp_bc if kind == "mlp" else lstm_bc
    loaded = load_bc(r.out / "best.pt")
    assert loaded.arch == r.policy.arch and loaded.info["epoch"] == r.best_epoch
    assert loaded.meta == demos.meta
    obs = demos.obs.reshape(-1, 60, OBS_DIM)[:5]  # 5 episodes side by side
    state_a = state_b = None
    for t in range(10):
        a, state_a = bc_action(r.policy, obs[:, t], state_a, np.full(5, t == 0))
        b, state_b = bc_action(loaded, obs[:, t], state_b, np.full(5, t == 0))
        np.testing.assert_array_equal(a, b)


def test_bc_files_and_arguments_are_checked(tmp_path, demos):
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(LegkitError, match="corrupt or unreadable"):
        load_bc(tmp_path / "x.pt")
    torch.save({"state_dict": {}}, tmp_path / "y.pt")
    with pytest.raises(LegkitError, match="not a legkit BC policy"):
        load_bc(tmp_path / "y.pt")
    with pytest.raises(LegkitError, match="kind = 'gru' is invalid; it must be one of mlp, lstm"):
        train_bc(demos, "gru", out=tmp_path)
    with pytest.raises(LegkitError, match="val_fraction must be in"):
        train_bc(demos, "mlp", out=tmp_path, val_fraction=0.0)


# ---- warm starts ----

def test_load_into_ppo_reproduces_the_clone(mlp_bc, demos):
    venv = set_obs_statistics(tiny_venv(), mlp_bc.policy.normalizer)
    model = PPO("MlpPolicy", venv, seed=0, device="cpu",
                policy_kwargs={"net_arch": {"pi": list(MLP_ARCH), "vf": [16]}, "activation_fn": nn.ELU})
    load_into_ppo(mlp_bc.policy, model, log_std=-2.5)
    obs = demos.obs[::7]
    ppo_action, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    bc, _ = bc_action(mlp_bc.policy, obs)
    np.testing.assert_allclose(ppo_action, bc, atol=1e-5)
    assert torch.all(model.policy.log_std == -2.5)


def test_load_into_ppo_names_a_mismatch(mlp_bc, lstm_bc):
    venv = tiny_venv(1)
    wide = PPO("MlpPolicy", venv, device="cpu", policy_kwargs={"net_arch": [64], "activation_fn": nn.ELU})
    with pytest.raises(LegkitError, match="mlp_extractor.policy_net is Linear.*out_features=64"):
        load_into_ppo(mlp_bc.policy, wide)
    tanh = PPO("MlpPolicy", venv, device="cpu", policy_kwargs={"net_arch": list(MLP_ARCH)})
    with pytest.raises(LegkitError, match=r"Tanh\(\).*activation_fn=nn.ELU"):
        load_into_ppo(mlp_bc.policy, tanh)
    with pytest.raises(LegkitError, match="load_into_recurrent_ppo"):
        load_into_ppo(lstm_bc.policy, tanh)


def test_load_into_recurrent_ppo_reproduces_the_clone(lstm_bc, demos):
    venv = set_obs_statistics(tiny_venv(3), lstm_bc.policy.normalizer)
    model = RecurrentPPO("MlpLstmPolicy", venv, seed=0, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 64, "net_arch": {"pi": [32], "vf": [32]},
                                        "activation_fn": nn.ELU})
    load_into_recurrent_ppo(lstm_bc.policy, model)
    assert torch.all(model.policy.log_std == -2.0)
    episodes = demos.obs.reshape(-1, 60, OBS_DIM)
    ppo_state = bc_state = None
    for t in range(30):
        obs = episodes[:3, t].copy()
        start = np.array([t == 0, t in (0, 12), t == 0])
        if t >= 12:  # robot 1 started a new episode at t = 12
            obs[1] = episodes[3, t - 12]
        ppo_action, ppo_state = model.predict(venv.normalize_obs(obs), ppo_state, start, deterministic=True)
        bc, bc_state = bc_action(lstm_bc.policy, obs, bc_state, start)
        np.testing.assert_allclose(ppo_action, bc, atol=1e-5)
        np.testing.assert_allclose(ppo_state[0], bc_state[0], atol=1e-5)
    small = RecurrentPPO("MlpLstmPolicy", venv, device="cpu", policy_kwargs={"lstm_hidden_size": 32})
    with pytest.raises(LegkitError, match="lstm_actor is LSTM\\(4, 32\\).*lstm_hidden_size=64"):
        load_into_recurrent_ppo(lstm_bc.policy, small)


# ---- the decaying BC term ----

def _bc_loss(regularizer: BCRegularizer, model, recurrent: bool = False) -> float:
    """The BC loss on a fixed demo sample, as the regularizer computes it."""
    rng, regularizer.rng = regularizer.rng, np.random.default_rng(123)
    obs, action = regularizer.sample(recurrent)
    regularizer.rng = rng
    with torch.no_grad():
        return regularizer.loss(model.policy, obs, action, model.get_vec_normalize_env().normalize_obs).item()


def test_coefficient_decays_linearly_to_zero(demos):
    reg = BCRegularizer(demos, coef=0.5, decay_steps=1000)
    reg.begin(200)
    reg.begin(900)  # the decay starts once
    assert [reg.coefficient(t) for t in (200, 700, 1200, 5000)] == [0.5, 0.25, 0.0, 0.0]


@pytest.mark.parametrize("bc_on", [True, False])
def test_ppo_with_bc_pulls_the_policy_to_the_demos(bc_on, demos, mlp_bc, tmp_path):
    venv = set_obs_statistics(tiny_venv(), mlp_bc.policy.normalizer)
    reg = BCRegularizer(demos, coef=1.0 if bc_on else 0.0, decay_steps=10_000, steps=40, batch_size=128, lr=3e-3)
    model = quiet(PPOWithBC("MlpPolicy", venv, bc=reg, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu",
                            policy_kwargs={"net_arch": [32, 32], "activation_fn": nn.ELU}))
    before = _bc_loss(reg, model)
    model.learn(128)  # 2 PPO updates, each followed by 40 BC steps
    after = _bc_loss(reg, model)
    if bc_on:
        assert after < 0.6 * before  # the floor is ~0.16: an MLP cannot learn cos(phase)
        assert reg.start_step == 0 and model.logger.name_to_value.get("train/bc_loss", 0) > 0
    else:
        assert after > 0.8 * before
    model.save(tmp_path / "model.zip")  # a plain PPO model.zip, without the demos
    assert type(PPO.load(tmp_path / "model.zip", device="cpu")) is PPO


def test_bc_callback_on_recurrent_ppo(demos, lstm_bc):
    venv = set_obs_statistics(tiny_venv(), lstm_bc.policy.normalizer)
    model = quiet(RecurrentPPO("MlpLstmPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu",
                               policy_kwargs={"lstm_hidden_size": 16, "net_arch": [16]}))
    reg = BCRegularizer(demos, coef=1.0, decay_steps=10_000, steps=30, batch_size=128, seq_len=16, lr=1e-2)
    before = _bc_loss(reg, model, recurrent=True)
    model.learn(128, callback=BCCallback(reg))
    after = _bc_loss(reg, model, recurrent=True)
    assert after < 0.6 * before
    critic = [p for n, p in model.policy.named_parameters() if "critic" in n or "value" in n]
    trained = {id(p) for p in reg._opt.param_groups[0]["params"]}  # the BC steps move the actor only
    assert critic and not any(id(p) in trained for p in critic) and id(model.policy.log_std) not in trained


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_a_clone_restricted_to_some_inputs_never_reads_the_others(kind, demos, tmp_path):
    """inputs=("phase", "gait"): the first layer's weights from x stay exactly zero through training, so the
    clone's action does not move when x does (the scripted PiDog gaits act on behaviour and clock alone); it
    still learns what it can from the phase, and its file keeps the restriction."""
    result = train_bc(demos, kind, out=tmp_path / kind, epochs=15, batch_size=128, seq_len=16, lr=3e-3,
                      net_arch=MLP_ARCH, patience=0, inputs=("phase", "gait"))
    assert result.train_losses[-1] < result.train_losses[0]
    bc = load_bc(tmp_path / kind / "best.pt")
    assert bc.arch.inputs == ("phase", "gait")
    weight = first_layer_weight(bc.net).detach().numpy()
    assert not weight[:, 1:3].any() and weight[:, [0, 3]].any()  # x is obs entries 1-2
    obs = demos.obs[:50].astype(np.float32)
    other = obs.copy()
    other[:, 1:3] += np.random.default_rng(1).normal(0.0, 5.0, (50, 2))
    a, _ = bc_action(bc, obs)  # 50 robots, one step each (an LSTM from a fresh state)
    b, _ = bc_action(bc, other)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(LegkitError, match="inputs speed are not observation terms of the demos; valid: phase, x, gait"):
        train_bc(demos, kind, out=tmp_path / "bad", epochs=1, inputs=("speed",))
