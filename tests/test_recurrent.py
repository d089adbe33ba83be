"""ppo.algorithm=recurrent_ppo: sb3-contrib RecurrentPPO trained, evaluated, rendered and resumed through the CLI, and
the LSTM state carried per robot and restarted for the robots whose episode ended (legkit.train.policies.PolicyActor).

Real MuJoCo, SB3 and sb3-contrib; tiny runs (one torch thread: the test machine is a shared 2-core CPU)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

from legkit import LegkitError
from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.media.render import CameraConfig
from legkit.media.video import Runner, policy_actor
from legkit.train.policies import PolicyActor
from legkit.train.runs import find_policy
from legkit.train.trainer import load_model

RECURRENT = ["--set", "ppo.algorithm=recurrent_ppo", "--set", "ppo.lstm_hidden=16", "--set", "ppo.net_arch=[16]"]
SMALL = ["--envs", "8", "--set", "ppo.n_steps=64", "--set", "ppo.batch_size=256", "--set", "run.torch_threads=1",
         "--set", "task.episode_seconds=2", "--no-progress"]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("legkit: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def recurrent_run(tmp_path_factory):
    """go2-walk with RecurrentPPO: 2048 steps, checkpoints, a best model, a training clip and a final evaluation."""
    runs = tmp_path_factory.mktemp("recurrent-runs")
    assert main(["train", "go2-walk", "--steps", "2048", *SMALL, *RECURRENT, "--set", "run.checkpoint_every=1024",
                 "--set", "run.best_every=1024", "--set", "run.best_episodes=2", "--set", "run.eval_episodes=2",
                 "--set", "run.video_every=2048", "--set", "run.video_seconds=0.3", "--set", "run.video_width=64",
                 "--set", "run.video_height=48", "--set", "run.video_tensorboard=false", "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    return run


def test_recurrent_run_trains_an_lstm_policy_that_loads_with_recurrent_ppo(recurrent_run):
    meta = json.loads((recurrent_run / "meta.json").read_text())
    assert meta["algorithm"] == "recurrent_ppo" and meta["step"] == 2048 and meta["finished"]
    model = RecurrentPPO.load(recurrent_run / "model.zip", device="cpu")  # plain sb3-contrib, no legkit wrapper
    policy = model.policy
    assert isinstance(policy, RecurrentActorCriticPolicy)
    assert (policy.lstm_actor.hidden_size, policy.lstm_actor.num_layers) == (16, 1)
    assert policy.lstm_critic is not None and policy.mlp_extractor.policy_net[0].out_features == 16
    for folder in ("best", "checkpoints/step_000001024"):
        assert type(load_model(recurrent_run / folder / "model.zip", algorithm="recurrent_ppo")) is RecurrentPPO
    with pytest.raises(LegkitError, match="names the wrong algorithm|corrupt or unreadable"):
        load_model(recurrent_run / "model.zip", algorithm="ppo")
    assert (recurrent_run / "videos" / "step_000002048.mp4").stat().st_size > 0  # a clip of the training policy
    ev = json.loads((recurrent_run / "eval.json").read_text())
    assert ev["metrics"]["episodes"] == 2 and np.isfinite(ev["metrics"]["mean_return"])


def test_recurrent_run_evaluates_and_renders(recurrent_run, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(recurrent_run), "--episodes", "3", "--json", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["episodes"] == 3 and np.isfinite(m["mean_return"])
    video = tmp_path / "clip.mp4"
    assert main(["video", str(recurrent_run), "--seconds", "0.4", "--fps", "10", "--width", "64", "--height", "48",
                 "--out", str(video)]) == 0
    import imageio.v2 as imageio

    with imageio.get_reader(video) as reader:
        frames = np.stack([frame for frame in reader])  # not list(reader): its length is inf
    assert frames.shape == (4, 48, 64, 3) and frames.std() > 1.0  # a picture, not a blank frame


def test_recurrent_run_resumes(recurrent_run, tmp_path, capfd):
    run = shutil.copytree(recurrent_run, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--steps", "3072", "--no-progress"]) == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == 3072 and meta["algorithm"] == "recurrent_ppo"
    assert meta["resumes"][-1]["from_checkpoint"] == "step_000002048"
    assert RecurrentPPO.load(run / "model.zip", device="cpu").num_timesteps == 3072
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4096", "--set", "ppo.algorithm=ppo"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "ppo.algorithm cannot change on resume" in line


def test_the_lstm_state_restarts_for_exactly_the_robots_whose_episode_ended(recurrent_run):
    """Robots with different time limits (spread episode starts) run side by side and are reset as they end, as a
    training batch and legkit's evaluation and video runners do; the action of a robot that starts a new episode
    must come from a zero LSTM state, and every other robot's from the state it carried."""
    policy = find_policy(recurrent_run)
    model, norm = load_policy(policy)
    task = replace(load_run_config(policy).task, episode_seconds=0.3)  # 15 control steps
    batch = LeggedBatch(task, 6, seed=3, nthread=1)
    batch.spread_episode_starts()
    act = PolicyActor(model, norm)
    restarted = carried = 0
    try:
        obs = batch.observe()
        for t in range(40):
            state = None if act.state is None else (act.state[0].copy(), act.state[1].copy())
            start = None if act.episode_start is None else act.episode_start.copy()
            action = act(obs)
            for i in range(6) if t > 0 else ():
                x = norm.normalize_obs(obs[i:i + 1])
                own = (state[0][:, i:i + 1], state[1][:, i:i + 1])
                fresh, _ = model.predict(x, None, np.ones(1, dtype=bool), deterministic=True)
                kept, _ = model.predict(x, own, np.zeros(1, dtype=bool), deterministic=True)
                assert np.abs(fresh - kept).max() > 1e-4  # the state matters: the test can tell them apart
                np.testing.assert_allclose(action[i], (fresh if start[i] else kept)[0], atol=1e-6)
                restarted, carried = restarted + bool(start[i]), carried + (not start[i])
            _, term, trunc = batch.step(action)
            done = term | trunc
            act.ended(done)
            if done.any():
                batch.reset(np.flatnonzero(done), record=False)
            obs = batch.observe()
    finally:
        batch.close()
    assert restarted >= 6 and carried >= 100


def test_video_runner_restarts_the_lstm_state_at_each_new_episode(recurrent_run):
    policy = find_policy(recurrent_run)
    model, norm = load_policy(policy)
    actor = policy_actor(model, norm)
    assert isinstance(actor, PolicyActor)
    task = replace(load_run_config(policy).task, episode_seconds=0.1)  # 5 control steps
    runner = Runner(task, actor, seed=0, camera=CameraConfig())
    starts = []
    try:
        for _ in range(12):
            runner.step()
            starts.append(bool(actor.episode_start[0]))
    finally:
        runner.close()
    assert runner.episodes == 3
    assert starts == [False, False, False, False, True] * 2 + [False, False]


@pytest.mark.parametrize("sets, words", [
    (["ppo.algorithm=sac"], ["ppo.algorithm", "ppo, recurrent_ppo"]),
    (["ppo.algorithm=recurrent_ppo", "ppo.lstm_hidden=0"], ["ppo.lstm_hidden", ">= 1"]),
    (["ppo.algorithm=recurrent_ppo", "ppo.shared_lstm=true"], ["ppo.critic_lstm", "shared_lstm"]),
    (["ppo.algorithm=recurrent_ppo", "ppo.actor_observations=[joint_pos]"],
     ["recurrent_ppo cannot be combined with ppo.actor_observations"]),
])
def test_bad_recurrent_settings_are_one_line(sets, words, tmp_path, capfd):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", "--runs", str(runs),
                 *[a for s in sets for a in ("--set", s)]]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert all(w in line for w in words), line
    assert not runs.exists() or not any(runs.iterdir())
