"""The NaN guard: a non-finite value stops training cleanly and leaves the last good checkpoint intact."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from legkit import LegkitError
from legkit.train.config import build_config
from legkit.train.runs import checkpoints
from legkit.train.trainer import train

SMALL = ["run.num_envs=8", "ppo.n_steps=128", "ppo.batch_size=256", "run.checkpoint_every=1024",
         "run.eval_episodes=0", "run.torch_threads=1", "run.total_steps=8192"]


class PoisonWeights(BaseCallback):
    """Fault injection: set one policy weight to NaN once `at` steps have been collected."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at
        self.done = False

    def _on_step(self) -> bool:
        if not self.done and self.num_timesteps >= self.at:
            with torch.no_grad():
                next(self.model.policy.parameters()).view(-1)[0] = float("nan")
            self.done = True
        return True


class PoisonReward(BaseCallback):
    """Fault injection: write NaN into one robot's reward of the step just taken."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at:
            self.locals["rewards"][3] = np.nan
        return True


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("poison, where", [(PoisonWeights(2500), "network weight"), (PoisonReward(2500), "reward")])
def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, poison, where):
    cfg = build_config("go2-walk", sets=SMALL)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(LegkitError) as err:
        # Extra callbacks run before the guard on every step, so it checks what the poison wrote.
        train(cfg, run, progress_bar=False, extra_callbacks=(poison,))
    msg = str(err.value)
    assert "NaN guard stopped training" in msg and where in msg and "at step" in msg
    kept = checkpoints(run)
    assert kept, "the checkpoints written before the NaN must remain"
    steps = [int(c.name.split("_")[1]) for c in kept]
    assert max(steps) <= 2500 + 8, f"a checkpoint was written after the poison: {steps}"
    assert str(kept[-1]) in msg
    assert not (run / "model.zip").exists(), "no final model may be written after a NaN"
    before = {p.name: _digest(p) for p in kept[-1].iterdir()}
    model = PPO.load(kept[-1] / "model.zip", device="cpu")
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    assert {p.name: _digest(p) for p in kept[-1].iterdir()} == before
