"""task.observation_blind: a term that keeps its place in the observation but reads 0 (the camera ablation).

Checked on the real PiDog env: the blind term reads 0 and every other term is what it would be; a name that is not
an observation term is a one-line error; a fine-tuning from a clone zeroes the term's normalizer mean and its
demonstration columns, so the network sees exactly 0 there; and such a policy is refused by export.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.imitate import load_demos, train_bc
from legkit.imitate.collect import PIDOG_BEHAVIOURS, CollectConfig, collect
from legkit.imitate.start import blind_columns, prepare
from legkit.tasks import get_task
from legkit.train.config import build_config
from legkit.train.trainer import read_normalization


def _block(layout, name: str) -> slice:
    start, size = next((int(s), int(k)) for n, s, k in layout if n == name)
    return slice(start, start + size)


def test_a_blind_term_reads_zero_and_the_others_are_unchanged():
    task = get_task("pidog-run")
    seeing, blind = LeggedBatch(task, 3, seed=4, nthread=1), LeggedBatch(
        replace(task, observation_blind=("camera",)), 3, seed=4, nthread=1)
    try:
        cam = _block(seeing.obs_layout, "camera")
        rest = np.ones(seeing.obs_layout[-1][1] + seeing.obs_layout[-1][2], bool)
        rest[cam] = False
        action = np.zeros((3, seeing.action_dim))
        for _ in range(5):
            a, b = seeing.observe().copy(), blind.observe().copy()
            assert (a[:, cam] > 0).any()  # the camera sees the floor and obstacles
            np.testing.assert_array_equal(b[:, cam], 0.0)
            np.testing.assert_array_equal(b[:, rest], a[:, rest])
            seeing.step(action)
            blind.step(action)
    finally:
        seeing.close()
        blind.close()


def test_a_blind_term_that_is_not_observed_is_one_line(tmp_path, capfd):
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "runs"),
                 "--set", "task.observation_blind=[lidar]"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "task.observation_blind: 'lidar' is not one of the task's observation terms" in err[0]
    assert "camera" in err[0]  # it names what is valid


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("blind")
    collect("pidog-run", get_task("pidog-run"), {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]},
            CollectConfig(seconds=4.0, episode_seconds=2.0), root / "demos.npz")
    train_bc(load_demos(root / "demos.npz"), "mlp", out=root / "mlp", epochs=1, batch_size=128, net_arch=(16,),
             patience=0)
    return root


def test_finetuning_blind_zeroes_the_term_in_the_normalizer_and_the_demonstrations(clone, tmp_path, capfd):
    sets = ["finetune.bc_policy=" + str(clone / "mlp" / "best.pt"), "finetune.demos=" + str(clone / "demos.npz"),
            "ppo.net_arch=[16]", "task.observation_blind=[camera]"]
    cfg = build_config("pidog-run", sets=sets)
    start = prepare(cfg)
    layout = [(n, s, k) for n, s, k in load_demos(clone / "demos.npz").meta["obs_layout"]]
    cols = blind_columns(layout, ("camera",))
    assert len(cols) == 16 * 12
    np.testing.assert_array_equal(start.demos.obs[:, cols], 0.0)
    assert (load_demos(clone / "demos.npz").obs[:, cols] > 0).any()  # the file itself is untouched

    runs = tmp_path / "runs"
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", "pidog-run", "--steps", "256", "--envs", "8", "--runs", str(runs), "--no-progress",
                 "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "task.episode_seconds=1",
                 "--set", "run.eval_episodes=0", "--set", "run.best_every=0", "--set", "run.video_every=0",
                 "--set", "run.torch_threads=1", "--set", "finetune.eval_episodes=0",
                 "--set", "finetune.critic_warmup_rollouts=1", *args]) == 0
    (run,) = list(runs.iterdir())
    norm = read_normalization(run / "vecnormalize.pkl")
    np.testing.assert_array_equal(norm.obs_rms.mean[cols], 0.0)
    raw = np.full((1, len(norm.obs_rms.mean)), 0.0, dtype=np.float32)
    np.testing.assert_array_equal(norm.normalize_obs(raw)[0, cols], 0.0)  # the network gets exactly 0 there

    capfd.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 2
    err = capfd.readouterr().err
    assert "trained blind to camera" in err and len(err.strip().splitlines()) == 1
