"""ppo.algorithm=recurrent_ppo: sb3-contrib RecurrentPPO trained, evaluated, rendered and resumed through the CLI, and
the LSTM state carried per robot and restarted for the robots whose episode ended (legkit.train.policies.PolicyActor).

Real MuJoCo, SB3 and sb3-contrib; tiny runs (one torch thread: the test machine is a shared 2-core CPU)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.envs.vec_env import LegkitVecEnv
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.export.policy import PARITY_TOLERANCE
from legkit.media.render import CameraConfig
from legkit.media.video import Runner, policy_actor
from legkit.train.config import build_config
from legkit.train.policies import AsymmetricRecurrentPolicy, PolicyActor, observation_indices
from legkit.train.runs import find_policy
from legkit.train.trainer import _build_model, load_model

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
    (["ppo.algorithm=recurrent_ppo", "ppo.symmetry=true"], ["recurrent_ppo cannot be combined with ppo.symmetry"]),
    (["ppo.algorithm=recurrent_ppo", "ppo.actor_observations=[joint_pos]", "ppo.shared_lstm=true",
      "ppo.critic_lstm=false"], ["ppo.shared_lstm", "ppo.actor_observations", "shared_lstm=false"]),
])
def test_bad_recurrent_settings_are_one_line(sets, words, tmp_path, capfd):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", "--runs", str(runs),
                 *[a for s in sets for a in ("--set", s)]]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert all(w in line for w in words), line
    assert not runs.exists() or not any(runs.iterdir())


# -- an asymmetric recurrent policy: the actor's LSTM reads the measured terms, the critic everything ---------------

MEASURED = ["base_ang_vel", "projected_gravity", "command", "joint_pos", "joint_vel", "last_action"]
"""go2-walk's observation terms without base_lin_vel (privileged: a real Go2 does not measure it)."""


def _lin_vel_changed(layout: list, obs: np.ndarray) -> np.ndarray:
    (start, size), = [(s, k) for n, s, k in layout if n == "base_lin_vel"]
    other = obs.copy()
    other[..., start:start + size] += 3.0
    return other


def test_asymmetric_recurrent_actor_cannot_see_privileged_inputs():
    cfg = build_config("go2-walk", sets=["ppo.algorithm=recurrent_ppo", "ppo.lstm_hidden=16", "ppo.net_arch=[16]",
                                         f"ppo.actor_observations=[{', '.join(MEASURED)}]", "ppo.n_steps=8",
                                         "ppo.batch_size=64"])
    env = VecNormalize(LegkitVecEnv(cfg.task, 8, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    try:
        model = _build_model(cfg, env)
        policy, layout = model.policy, env.unwrapped.batch.obs_layout
        assert isinstance(policy, AsymmetricRecurrentPolicy)
        obs_dim = int(env.observation_space.shape[0])
        assert policy.lstm_actor.input_size == obs_dim - 3 and policy.lstm_critic.input_size == obs_dim
        optimized = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
        assert {id(p) for p in policy.parameters()} == optimized  # the resized LSTM is trained too
        # Five steps of a real rollout, and the same with base_lin_vel moved: the actor, carrying its LSTM state,
        # acts the same; the critic values them otherwise.
        seq = [env.reset()]
        for _ in range(4):
            seq.append(env.step(model.predict(seq[-1], deterministic=True)[0])[0])
        state = other_state = None
        starts = np.ones(8, dtype=bool)
        for obs in seq:
            act, state = model.predict(obs, state, starts, deterministic=True)
            act_other, other_state = model.predict(_lin_vel_changed(layout, obs), other_state, starts,
                                                   deterministic=True)
            np.testing.assert_array_equal(act, act_other)
            np.testing.assert_array_equal(state[0], other_state[0])
            starts = np.zeros(8, dtype=bool)
        # evaluate_actions (the PPO loss) over the sequence: the same log-probabilities, other values
        obs = torch.as_tensor(np.stack(seq, axis=1).reshape(8 * 5, -1), dtype=torch.float32)  # sequence by sequence
        zeros = (torch.zeros(1, 8, 16), torch.zeros(1, 8, 16))
        states, first = RNNStates(zeros, zeros), torch.tensor([1.0, 0, 0, 0, 0] * 8)
        actions = torch.as_tensor(np.zeros((40, 12), dtype=np.float32))
        with torch.no_grad():
            v, logp, _ = policy.evaluate_actions(obs, actions, states, first)
            v2, logp2, _ = policy.evaluate_actions(torch.as_tensor(_lin_vel_changed(layout, obs.numpy())), actions,
                                                   states, first)
        assert torch.equal(logp, logp2) and not torch.allclose(v, v2)
    finally:
        env.close()


def test_asymmetric_recurrent_run_trains_loads_evaluates_and_exports(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", *SMALL, *RECURRENT, "--runs", str(runs), "--set",
                 f"ppo.actor_observations=[{', '.join(MEASURED)}]", "--set", "run.eval_episodes=2"]) == 0
    (run,) = list(runs.iterdir())
    model = RecurrentPPO.load(run / "model.zip", device="cpu")  # plain sb3-contrib
    assert type(model.policy) is AsymmetricRecurrentPolicy
    layout = LeggedBatch(load_run_config(find_policy(run)).task, 1, nthread=1)
    try:
        names = [n for n, _, _ in layout.obs_layout]
        assert model.policy.actor_indices == observation_indices(layout.obs_layout, MEASURED)
    finally:
        layout.close()
    assert main(["eval", str(run), "--episodes", "2", "--json", str(tmp_path / "eval.json")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    spec = json.loads((tmp_path / "export" / "policy.json").read_text())
    assert [t["name"] for t in spec["observation"]["terms"]] == [n for n in names if n in MEASURED]
    assert spec["recurrent"]["hidden_size"] == 16 and spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
