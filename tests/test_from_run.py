"""finetune.from_run: a new run that starts from another run's model ("walk first, then look").

On the real PiDog env and real PPO models: a policy trained blind to its camera, started from in a run that sees
it, acts and values exactly as it did (the camera enters through weights of 0), its camera statistics are measured
afresh, and training then grows those weights; a source that does not fit is a one-line error that leaves no run
folder; the start is recorded in meta.json and cannot change on resume.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit.cli import main
from legkit.envs.vec_env import LegkitVecEnv
from legkit.train.config import build_config
from legkit.train.from_run import first_layers, prepare
from legkit.train.trainer import CLIP_OBS, _build_model, read_normalization

TINY = ["--envs", "8", "--no-progress", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64",
        "--set", "ppo.net_arch=[16]", "--set", "task.episode_seconds=1", "--set", "run.eval_episodes=0",
        "--set", "run.best_every=0", "--set", "run.video_every=0", "--set", "run.torch_threads=1"]


def _cols(layout, name: str) -> np.ndarray:
    start, size = next((int(s), int(k)) for n, s, k in layout if n == name)
    return np.arange(start, start + size)


@pytest.fixture(scope="module")
def blind_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("from_run") / "runs"
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(runs), "--name", "blind", *TINY,
                 "--set", "task.observation_blind=[camera]"]) == 0
    (run,) = list(runs.iterdir())
    return run


def test_a_blind_policy_started_from_with_the_camera_acts_as_it_did(blind_run):
    cfg = build_config("pidog-run", sets=[f"finetune.from_run={blind_run}", "ppo.net_arch=[16]",
                                                "ppo.n_steps=16", "ppo.batch_size=64"])
    start = prepare(cfg)
    assert start.source.unblinded == ("camera",) and start.source.blinded == ()
    env = LegkitVecEnv(cfg.task, 8, seed=3)
    try:
        vecnorm = VecNormalize(env, norm_obs=True, norm_reward=cfg.ppo.normalize_reward, clip_obs=CLIP_OBS)
        model = _build_model(cfg, vecnorm)
        start.apply(model, vecnorm)
        cam = _cols(env.batch.obs_layout, "camera")
        for weight in first_layers(model.policy):
            assert torch.count_nonzero(weight[:, cam]) == 0
            assert torch.count_nonzero(weight) > 0  # the other inputs' weights are the source's

        source, source_norm = PPO.load(blind_run / "model.zip", device="cpu"), read_normalization(
            blind_run / "vecnormalize.pkl")
        assert float(source_norm.obs_rms.var[cam].max()) < 1e-6  # it only ever saw zeros there
        var = vecnorm.obs_rms.var[cam]
        assert float(var.min()) >= cfg.finetune.min_obs_std ** 2 and float(var.max()) > 0.01  # measured afresh
        assert 0.05 < float(vecnorm.obs_rms.mean[cam].mean()) < cfg.task.sensors.camera.max_depth

        obs = env.reset()
        for _ in range(3):
            obs, _, _, _ = env.step(np.random.default_rng(0).uniform(-0.3, 0.3, (8, env.batch.action_dim)))
        assert (obs[:, cam] > 0).any()  # this run's env really sees
        blind = obs.copy()
        blind[:, cam] = 0.0
        ours = vecnorm.normalize_obs(obs)
        theirs = source_norm.normalize_obs(blind)
        a, _ = model.predict(ours, deterministic=True)
        b, _ = source.predict(theirs, deterministic=True)
        np.testing.assert_allclose(a, b, atol=1e-5)
        with torch.no_grad():
            v_ours = model.policy.predict_values(torch.as_tensor(ours)).numpy()
            v_theirs = source.policy.predict_values(torch.as_tensor(theirs)).numpy()
        np.testing.assert_allclose(v_ours, v_theirs, atol=1e-5)
        np.testing.assert_array_equal(model.policy.log_std.detach().numpy(), source.policy.log_std.detach().numpy())
    finally:
        env.close()


def test_training_from_a_blind_run_records_the_start_and_learns_to_use_the_camera(blind_run, tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(runs), "--name", "sees", *TINY,
                 "--set", f"finetune.from_run={blind_run}"]) == 0
    (run,) = list(runs.iterdir())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["started_from"]["run"] == str(blind_run.resolve())
    assert meta["started_from"]["unblinded"] == ["camera"] and meta["started_from"]["checkpoint"] == "final"
    model = PPO.load(run / "model.zip", device="cpu")
    cam = _cols(meta["obs_layout"], "camera")
    assert torch.count_nonzero(model.policy.mlp_extractor.policy_net[0].weight[:, cam]) > 0  # grown by training

    # a resume cannot change where the network started, and keeps the record
    assert main(["train", "--resume", str(run), "--steps", "512", "--set", "finetune.from_run=null"]) == 2
    assert json.loads((run / "meta.json").read_text())["started_from"]["unblinded"] == ["camera"]


def test_max_action_std_caps_the_copied_std_and_needs_a_start(blind_run, tmp_path, capfd):
    """finetune.max_action_std: each action's std copied from the source is capped (the rest is the source's), the
    mean action unchanged; without a start from another run's model the setting is an error, not ignored."""
    source = PPO.load(blind_run / "model.zip", device="cpu")
    theirs = source.policy.log_std.detach().numpy().copy()
    theirs[::2] -= 1.0  # stds on both sides of the cap, as a trained policy has
    with torch.no_grad():
        source.policy.log_std.copy_(torch.as_tensor(theirs))
    src = tmp_path / "src"
    src.mkdir()
    source.save(src / "model.zip")
    for name in ("config.yaml", "vecnormalize.pkl", "meta.json"):
        (src / name).write_bytes((blind_run / name).read_bytes())
    cap = float(np.exp(np.median(theirs)))
    sets = [f"finetune.from_run={src}", f"finetune.max_action_std={cap}", "ppo.net_arch=[16]", "ppo.n_steps=16",
            "ppo.batch_size=64", "task.observation_blind=[camera]"]
    cfg = build_config("pidog-run", sets=sets)
    env = LegkitVecEnv(cfg.task, 8, seed=3)
    try:
        vecnorm = VecNormalize(env, norm_obs=True, norm_reward=cfg.ppo.normalize_reward, clip_obs=CLIP_OBS)
        model = _build_model(cfg, vecnorm)
        prepare(cfg).apply(model, vecnorm)
        ours = model.policy.log_std.detach().numpy()
        np.testing.assert_allclose(ours, np.minimum(theirs, np.log(cap)), rtol=1e-6)
        assert (ours < theirs).any() and (ours == theirs).any()
        obs = vecnorm.normalize_obs(env.reset())
        a, _ = model.predict(obs, deterministic=True)
        b, _ = source.predict(obs, deterministic=True)
        np.testing.assert_allclose(a, b, atol=1e-6)
    finally:
        env.close()
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "r"),
                 "--set", "finetune.max_action_std=0.1"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finetune.max_action_std = 0.1" in err[0] and "finetune.from_run" in err[0], err
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "r"), "--set",
                 f"finetune.from_run={src}", "--set", "finetune.max_action_std=0.1", "--set", "ppo.use_sde=true"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppo.use_sde is true" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("sets, message", [
    (["ppo.net_arch=[32]"], "was trained with ppo.net_arch = [16] but this run has [32]"),
    (["ppo.net_arch=[16]", "ppo.algorithm=recurrent_ppo"], "is a ppo model but this run's ppo.algorithm is "
                                                           "recurrent_ppo"),
    (["ppo.net_arch=[16]", "task.observations=[imu,camera]"], "does not take this run's observations"),
    (["ppo.net_arch=[16]", "finetune.from_checkpoint=77"], "has no checkpoint '77'"),
])
def test_a_source_that_does_not_fit_is_one_line_and_leaves_no_folder(blind_run, tmp_path, capfd, sets, message):
    runs = tmp_path / "runs"
    args = [a for s in [f"finetune.from_run={blind_run}", *sets] for a in ("--set", s)]
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(runs), "--no-progress", *args]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not runs.exists() or not any(runs.iterdir())


def test_from_checkpoint_needs_from_run_and_bc_policy_excludes_it(tmp_path, capfd):
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path),
                 "--set", "finetune.from_checkpoint=best"]) == 2
    assert "finetune.from_checkpoint names a checkpoint of finetune.from_run" in capfd.readouterr().err
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path), "--set", "finetune.from_run=x",
                 "--set", "finetune.bc_policy=y.pt"]) == 2
    assert "finetune.from_run and finetune.bc_policy" in capfd.readouterr().err


def test_a_missing_source_names_the_key_and_train_without_its_start_refuses(tmp_path, capfd):
    """A missing from_run folder is named with its key; the library's train() given a from_run config but no
    start refuses instead of training a fresh network that ignores the setting (what legkit tune once did)."""
    from legkit import LegkitError
    from legkit.train.trainer import train

    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(tmp_path / "r"),
                 "--set", f"finetune.from_run={tmp_path / 'gone'}"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("legkit: error: finetune.from_run: run folder") and "gone" in err, err
    cfg = build_config("pidog-run", sets=[f"finetune.from_run={tmp_path / 'gone'}"])
    run = tmp_path / "run"
    run.mkdir()  # train() trains a folder the caller made (legkit.train.runs.new_run_dir)
    with pytest.raises(LegkitError, match="finetune.from_run = .* no model start was given"):
        train(cfg, run)
    assert {p.name for p in run.iterdir()} <= {"train.lock"}  # nothing trained, nothing written
