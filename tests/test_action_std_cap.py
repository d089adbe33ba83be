"""ppo.action_std_cap: each action's std held under a cap that falls from `start` to `end` over the run.

On real PPO training of the Go2: the cap moves geometrically, every rollout explores under it (the saved model's
std is the cap of its last rollout when the learning rate cannot move it), and a cap that cannot apply is a one-line
error that leaves no run folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from stable_baselines3 import PPO

from legkit.cli import main
from legkit.train.callbacks import ActionStdCap

TINY = ["--envs", "8", "--no-progress", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64",
        "--set", "ppo.net_arch=[16]", "--set", "task.episode_seconds=1", "--set", "run.eval_episodes=0",
        "--set", "run.best_every=0", "--set", "run.video_every=0", "--set", "run.torch_threads=1"]


def test_the_cap_moves_geometrically_from_start_to_end():
    cap = ActionStdCap(0.2, 0.02, 1000)
    assert cap.cap(0) == pytest.approx(0.2)
    assert cap.cap(500) == pytest.approx(np.sqrt(0.2 * 0.02))
    assert cap.cap(1000) == pytest.approx(0.02)
    assert cap.cap(5000) == pytest.approx(0.02)  # a run extended past its planned steps keeps the end


def test_training_explores_under_the_cap(tmp_path):
    runs = tmp_path / "runs"
    # std 1 at the start (log_std_init 0), far above the cap; a learning rate too small to move the std after the
    # last rollout's clamp, so the saved std is the cap the last rollout explored under
    assert main(["train", "go2-walk", "--steps", "512", "--runs", str(runs), "--name", "cap", *TINY,
                 "--set", "ppo.log_std_init=0", "--set", "ppo.learning_rate=1e-9",
                 "--set", "ppo.action_std_cap=[0.5,0.05]"]) == 0
    (run,) = list(runs.iterdir())
    std = np.exp(PPO.load(run / "model.zip", device="cpu").policy.log_std.detach().numpy())
    last_rollout = 512 - 16 * 8  # rollouts of 128 samples start at 0, 128, 256, 384
    expected = ActionStdCap(0.5, 0.05, 512).cap(last_rollout)
    np.testing.assert_allclose(std, expected, rtol=1e-4)
    assert expected < 0.1  # well under where it started (1.0) and the first rollout's cap (0.5)
    assert json.loads((run / "meta.json").read_text())["step"] == 512


@pytest.mark.parametrize("sets, message", [
    (["ppo.action_std_cap=[0.2,0]"], "invalid ppo.action_std_cap"),
    (["ppo.action_std_cap=[0.2,0.05]", "ppo.use_sde=true"], "ppo.use_sde is true"),
])
def test_a_cap_that_cannot_apply_is_a_one_line_error(tmp_path, capfd, sets, message):
    args = ["train", "go2-walk", "--steps", "256", "--runs", str(tmp_path / "r")]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "ppo.action_std_cap" in err[0], err
    assert not (tmp_path / "r").exists()
