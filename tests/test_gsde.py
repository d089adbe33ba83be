"""ppo.use_sde: SB3's generalized state-dependent exploration, for PPO and RecurrentPPO, from scratch or from a clone.

Checked with real MuJoCo and SB3 on pidog-run: the model is built with gSDE and its settings; a fine-tuning from a
cloned LSTM keeps the clone's mean action (the deterministic action is the clone's) with gSDE's log std set to
finetune.log_std; combinations legkit's asymmetric policy cannot draw are a one-line error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.imitate import bc_action, load_bc, load_demos, train_bc
from legkit.imitate.collect import PIDOG_BEHAVIOURS, CollectConfig, collect
from legkit.tasks import get_task
from legkit.train.trainer import load_model, read_normalization

TINY = ["--envs", "8", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "task.episode_seconds=1",
        "--set", "run.torch_threads=1", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
        "--set", "run.video_every=0", "--no-progress"]


@pytest.fixture(scope="module")
def lstm_clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsde")
    collect("pidog-run", get_task("pidog-run"), {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]},
            CollectConfig(seconds=4.0, episode_seconds=2.0), root / "demos.npz")
    train_bc(load_demos(root / "demos.npz"), "lstm", out=root / "lstm", epochs=1, batch_size=128, seq_len=16,
             lstm_hidden=8, net_arch=(8,), patience=0)
    return root / "lstm" / "best.pt"


def test_finetuning_a_clone_with_gsde_keeps_its_mean_action(lstm_clone, tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "pidog-run", "--steps", "256", *TINY, "--runs", str(runs),
                 "--set", "ppo.algorithm=recurrent_ppo", "--set", "ppo.net_arch=[8]", "--set", "ppo.lstm_hidden=8",
                 "--set", "ppo.use_sde=true", "--set", "ppo.sde_sample_freq=4",
                 "--set", f"finetune.bc_policy={lstm_clone}", "--set", "finetune.log_std=-4",
                 "--set", "finetune.eval_episodes=2", "--set", "finetune.critic_warmup_rollouts=2"]) == 0
    (run,) = list(runs.iterdir())
    model = load_model(run / "model.zip", algorithm="recurrent_ppo")
    assert model.use_sde and model.sde_sample_freq == 4
    np.testing.assert_array_equal(model.policy.log_std.detach().numpy(), -4.0)  # the warm-up froze the actor
    norm = read_normalization(run / "vecnormalize.pkl")
    bc = load_bc(lstm_clone)
    batch = LeggedBatch(get_task("pidog-run"), 3, seed=2, nthread=1)
    try:
        state, bc_state = None, None
        starts = np.ones(3, bool)
        for _ in range(10):
            obs = batch.observe().copy()
            with torch.no_grad():
                action, state = model.predict(norm.normalize_obs(obs), state=state, episode_start=starts,
                                              deterministic=True)
            expected, bc_state = bc_action(bc, obs, bc_state, starts)
            np.testing.assert_allclose(action, expected, atol=1e-5)
            assert np.abs(expected).max() > 0.05  # a gait, not a zero action that anything would match
            batch.step(action)
            starts[:] = False
    finally:
        batch.close()


def test_gsde_with_the_asymmetric_policy_is_one_line(tmp_path, capfd):
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "runs"),
                 "--set", "ppo.use_sde=true", "--set", "ppo.actor_observations=[imu,joint_pos]"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppo.use_sde cannot be combined with ppo.actor_observations" in err[0]


def test_a_zero_sample_frequency_is_one_line(tmp_path, capfd):
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "runs"),
                 "--set", "ppo.sde_sample_freq=0"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppo.sde_sample_freq" in err[0] and "-1" in err[0]
