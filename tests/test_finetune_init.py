"""Fine-tuning from a behaviour-cloned policy (finetune.* keys, legkit.imitate.start) through `legkit train pidog-run`.

A tiny BC policy (MLP and LSTM) cloned from real scripted-trot demonstrations; PPO and RecurrentPPO runs start from
it. Checked: the model's actions are the clone's, the critic warm-up leaves the actor alone and lowers the value
loss, the returns at the start and after the warm-up are recorded (and are the clone's own return), the BC
regularizer starts after the warm-up, a resume continues, and what does not fit is a one-line error (exit 2).
Real MuJoCo, SB3 and sb3-contrib; one torch thread (the test machine is a shared 2-core CPU).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from legkit import LegkitError
from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import rollout_model
from legkit.imitate import bc_action, load_bc, load_demos, save_demos, train_bc
from legkit.imitate.collect import PIDOG_BEHAVIOURS, CollectConfig, collect
from legkit.tasks import get_task
from legkit.tasks.config import undisturbed
from legkit.train.config import build_config
from legkit.train.trainer import load_model, read_normalization, train

ALGORITHM = {"mlp": "ppo", "lstm": "recurrent_ppo"}
MODEL = {"mlp": ["--set", "ppo.net_arch=[16]"],
         "lstm": ["--set", "ppo.net_arch=[8]", "--set", "ppo.algorithm=recurrent_ppo", "--set", "ppo.lstm_hidden=8"]}
ROLLOUT = 8 * 16  # num_envs x n_steps
WARMUP = 3
TINY = ["--envs", "8", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "task.episode_seconds=1",
        "--set", "run.torch_threads=1", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
        "--set", "run.video_every=0", "--set", f"run.checkpoint_every={ROLLOUT}", "--set", "finetune.eval_episodes=2",
        "--set", f"finetune.critic_warmup_rollouts={WARMUP}", "--no-progress"]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("legkit: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def clones(tmp_path_factory) -> dict:
    """demos.npz of the PiDog's scripted trot in pidog-run (3 episodes of 2 s) and an MLP and an LSTM cloned from it."""
    root = tmp_path_factory.mktemp("clones")
    collect("pidog-run", get_task("pidog-run"), {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]},
            CollectConfig(seconds=6.0, episode_seconds=2.0), root / "demos.npz")
    demos = load_demos(root / "demos.npz")
    train_bc(demos, "mlp", out=root / "mlp", epochs=3, batch_size=128, net_arch=(16,), patience=0)
    train_bc(demos, "lstm", out=root / "lstm", epochs=2, batch_size=128, seq_len=16, lstm_hidden=8, net_arch=(8,),
             patience=0)
    return {"demos": root / "demos.npz", "mlp": root / "mlp" / "best.pt", "lstm": root / "lstm" / "best.pt"}


@pytest.fixture(scope="module")
def warmup_runs(clones, tmp_path_factory) -> dict:
    """{kind: run}: pidog-run fine-tuning runs (PPO from the MLP, RecurrentPPO from the LSTM) that are all critic
    warm-up (3 rollouts)."""
    out = {}
    for kind in ("mlp", "lstm"):
        runs = tmp_path_factory.mktemp(f"finetune-{kind}")
        assert main(["train", "pidog-run", "--steps", str(WARMUP * ROLLOUT), *TINY, *MODEL[kind],
                     "--set", f"finetune.bc_policy={clones[kind]}", "--runs", str(runs)]) == 0
        (out[kind],) = list(runs.iterdir())
    return out


def _bc_model(bc):
    """The clone behind SB3's predict interface, on raw observations (for rollout_model)."""
    class Clone:
        observation_space = gym.spaces.Box(-np.inf, np.inf, (bc.arch.obs_dim,), np.float32)

        @staticmethod
        def predict(obs, state=None, episode_start=None, deterministic=True):
            return bc_action(bc, obs, state, episode_start)

    class Raw:
        @staticmethod
        def normalize_obs(obs):
            return obs

    return Clone(), Raw()


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_the_model_acts_as_the_clone(kind, warmup_runs, clones):
    run = warmup_runs[kind]
    bc = load_bc(clones[kind])
    model = load_model(run / "model.zip", algorithm=ALGORITHM[kind])
    norm = read_normalization(run / "vecnormalize.pkl", bc.arch.obs_dim)
    assert json.loads((run / "meta.json").read_text())["algorithm"] == ALGORITHM[kind]
    # The normalizer is the clone's, frozen through the run (its observation statistics never moved).
    np.testing.assert_array_equal(norm.obs_rms.mean, bc.normalizer.mean)
    np.testing.assert_array_equal(norm.obs_rms.var, bc.normalizer.var)
    assert torch.all(model.policy.log_std == -2.0)
    task = replace(get_task("pidog-run"), episode_seconds=1.0)
    batch = LeggedBatch(task, 4, seed=7, nthread=1)
    try:
        state_m = state_b = None
        start = np.ones(4, dtype=bool)
        for _ in range(25):  # the clone's own closed loop, 0.5 s
            obs = batch.observe()
            a_model, state_m = model.predict(norm.normalize_obs(obs), state_m, start, deterministic=True)
            a_bc, state_b = bc_action(bc, obs, state_b, start)
            np.testing.assert_allclose(a_model, a_bc, atol=1e-5)
            if kind == "lstm":
                np.testing.assert_allclose(state_m[1], state_b[1], atol=1e-5)
            assert np.abs(a_bc).max() > 0.05  # a gait, not a zero action that anything would match
            _, term, trunc = batch.step(a_bc)
            start = term | trunc
            if start.any():
                batch.reset(np.flatnonzero(start), record=False)
    finally:
        batch.close()


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_critic_warmup_leaves_the_actor_and_lowers_the_value_loss(kind, warmup_runs, clones):
    run = warmup_runs[kind]
    bc = load_bc(clones[kind])
    policy = load_model(run / "model.zip", algorithm=ALGORITHM[kind]).policy
    saved = policy.state_dict()
    for name, value in bc.net.state_dict().items():  # every weight of the clone, bit for bit, after 3 updates
        assert torch.equal(saved[name], value), name
    record = json.loads((run / "finetune.json").read_text())
    w = record["critic_warmup"]
    assert w["finished"] and w["until_step"] == WARMUP * ROLLOUT and w["rollouts"] == WARMUP
    losses = [loss for _, loss in w["value_loss"]]
    assert [s for s, _ in w["value_loss"]] == [ROLLOUT, 2 * ROLLOUT, 3 * ROLLOUT]
    assert losses[-1] < 0.7 * losses[0], losses  # each measured on a new rollout, before its own update
    assert record["bc_policy"]["arch"]["kind"] == kind and record["algorithm"] == ALGORITHM[kind]


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_returns_at_the_start_and_after_warmup_are_the_clones(kind, warmup_runs, clones):
    run = warmup_runs[kind]
    record = json.loads((run / "finetune.json").read_text())
    start, after = record["return_start"], record["return_after_warmup"]
    assert (start["step"], after["step"]) == (0, WARMUP * ROLLOUT)
    # The actor and its (frozen) normalizer do not change in the warm-up: the same returns, to the bit.
    assert start["deterministic"] == after["deterministic"] and start["sampled"] == after["sampled"]
    # The return at the start is the imitation policy's own, measured with bc_action on the same rollout.
    cfg = build_config("pidog-run", sets=["task.episode_seconds=1"])
    calm = replace(cfg, task=undisturbed(cfg.task))
    own = compute_metrics(rollout_model(*_bc_model(load_bc(clones[kind])), 2, calm, seed=0))
    assert start["deterministic"]["mean_return"] == pytest.approx(own["mean_return"], rel=1e-6, abs=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((run / "tb").iterdir())))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("finetune/return_start", "finetune/return_start_sampled", "finetune/return_after_warmup",
                "critic_warmup/value_loss"):
        assert tag in tags, tag
    (first,) = acc.Scalars("finetune/return_start")
    assert first.step == 0 and first.value == pytest.approx(start["deterministic"]["mean_return"], rel=1e-5)


def test_a_reset_output_layer_keeps_the_clones_hidden_layers_and_measures_both_starts(warmup_runs, clones, tmp_path):
    """finetune.reset_action_net: the hidden layers are the clone's, the output layer is PPO's own (SB3's
    orthogonal initialisation at gain 0.01: near-zero actions, where the clone's are a gait), and finetune.json
    holds the clone's return as loaded (the same as a run without the reset) and the return after the reset."""
    runs = tmp_path / "runs"
    assert main(["train", "pidog-run", "--steps", str(WARMUP * ROLLOUT), *TINY, *MODEL["mlp"],
                 "--set", f"finetune.bc_policy={clones['mlp']}", "--set", "finetune.reset_action_net=true",
                 "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    bc = load_bc(clones["mlp"])
    model = load_model(run / "model.zip")
    clone_net, net = bc.net.mlp_extractor.policy_net, model.policy.mlp_extractor.policy_net
    torch.testing.assert_close(net[0].weight, clone_net[0].weight, rtol=0, atol=0)  # the warm-up froze the actor
    torch.testing.assert_close(net[0].bias, clone_net[0].bias, rtol=0, atol=0)
    head = model.policy.action_net
    assert head.weight.abs().max() <= 0.0101 and torch.all(head.bias == 0)  # PPO's gain-0.01 init
    assert bc.net.action_net.weight.abs().max() > 0.05
    assert torch.all(model.policy.log_std == -2.0)
    record = json.loads((run / "finetune.json").read_text())
    plain = json.loads((warmup_runs["mlp"] / "finetune.json").read_text())
    assert record["reset_action_net"] is True and plain["reset_action_net"] is False
    assert record["return_start"] == plain["return_start"]  # the clone as loaded, measured before the reset
    after = record["return_after_reset"]
    assert after["step"] == 0 and after["deterministic"] != record["return_start"]["deterministic"]
    assert record["return_after_warmup"]["deterministic"] == after["deterministic"]  # the actor did not move


def test_finetuning_continues_on_resume_with_the_bc_regularizer_after_the_warmup(warmup_runs, clones, tmp_path):
    run = shutil.copytree(warmup_runs["mlp"], tmp_path / "run")  # (RecurrentPPO resumes in test_recurrent)
    assert main(["train", "--resume", str(run), "--steps", str((WARMUP + 2) * ROLLOUT), "--no-progress",
                 "--set", f"finetune.demos={clones['demos']}", "--set", "finetune.bc_steps=5"]) == 0
    record = json.loads((run / "finetune.json").read_text())
    assert record["critic_warmup"]["until_step"] == WARMUP * ROLLOUT and "return_start" in record
    assert record["bc_regularizer"]["start_step"] == (WARMUP + 1) * ROLLOUT
    bc = load_bc(clones["mlp"])
    policy = load_model(run / "model.zip", algorithm="ppo").policy
    moved = [n for n, v in bc.net.state_dict().items() if not torch.equal(policy.state_dict()[n], v)]
    assert moved  # past the warm-up, PPO and the BC steps train the actor
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((run / "tb").iterdir())))
    acc.Reload()
    coef = [(e.step, e.value) for e in acc.Scalars("train/bc_coef")]
    assert coef and all(step >= (WARMUP + 1) * ROLLOUT and value > 0.99 for step, value in coef if value > 0)
    assert any(value > 0.99 for _, value in coef) and acc.Scalars("train/bc_loss")


def test_train_without_a_start_says_what_to_pass(clones, tmp_path):
    cfg = build_config("pidog-run", sets=[f"finetune.bc_policy={clones['mlp']}", "ppo.net_arch=[16]",
                                          "run.total_steps=128", "run.num_envs=8", "ppo.n_steps=16",
                                          "ppo.batch_size=64"])
    (tmp_path / "run").mkdir()
    with pytest.raises(LegkitError, match="start=legkit.imitate.start.prepare"):
        train(cfg, tmp_path / "run", progress_bar=False, render_clip=None)


@pytest.fixture(scope="module")
def small_clone(tmp_path_factory):
    """An MLP cloned from demonstrations of 4 observation values: a policy for another task."""
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    meta = {"gaits": ["trot"], "obs_layout": [["x", 0, 4]], "action_scale": 0.25, "control_dt": 0.02,
            "task": "toy", "noise": {}}
    save_demos(root / "d.npz", rng.normal(size=(40, 4)), rng.uniform(-1, 1, (40, 12)), np.zeros(40, dtype=int),
               np.repeat(np.arange(4), 10), meta)
    train_bc(load_demos(root / "d.npz"), "mlp", out=root / "bc", epochs=1, net_arch=(16,))
    return root


@pytest.mark.parametrize("case, sets, words", [
    ("missing", ["finetune.bc_policy={tmp}/none.pt"], ["finetune.bc_policy", "none.pt", "does not exist"]),
    ("junk", ["finetune.bc_policy={tmp}/junk.pt"], ["finetune.bc_policy", "junk.pt", "corrupt or unreadable"]),
    ("obs size", ["finetune.bc_policy={small}/bc/best.pt", "ppo.net_arch=[16]"],
     ["does not fit", "takes 4 observation values, task pidog-run gives 234"]),
    ("net_arch", ["finetune.bc_policy={mlp}"], ["does not fit", "ppo.net_arch must be [16]", "not [128, 128]"]),
    ("narrower", ["finetune.bc_policy={mlp}", "ppo.net_arch=[12]"],
     ["ppo.net_arch must be [16] (its layers), or as many layers each at least as wide, not [12]"]),
    ("lstm wider", ["finetune.bc_policy={lstm}", "ppo.net_arch=[16]", "ppo.algorithm=recurrent_ppo",
                    "ppo.lstm_hidden=8"], ["ppo.net_arch must be [8] (its layers), not [16]"]),
    ("algorithm", ["finetune.bc_policy={lstm}", "ppo.net_arch=[8]"],
     ["does not fit", "LSTM actor: ppo.algorithm must be recurrent_ppo, not ppo"]),
    ("lstm size", ["finetune.bc_policy={lstm}", "ppo.net_arch=[8]", "ppo.algorithm=recurrent_ppo"],
     ["does not fit", "ppo.lstm_hidden must be 8, not 64"]),
    ("activation", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "ppo.activation=tanh"],
     ["ppo.activation must be elu, not tanh"]),
    ("demos", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "finetune.demos={tmp}/none.npz"],
     ["finetune.demos", "none.npz", "does not exist"]),
    ("demos size", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "finetune.demos={small}/d.npz"],
     ["finetune.demos", "has 4 observation values, task pidog-run gives 234"]),
    ("demos alone", ["finetune.demos={demos}"], ["finetune.demos", "needs finetune.bc_policy"]),
    ("reset alone", ["finetune.reset_action_net=true"], ["finetune.reset_action_net", "needs finetune.bc_policy"]),
    ("control period", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "task.decimation=2"],
     ["does not fit", "recorded at control_dt 0.02", "the task's is 0.01"]),

    ("statistics", ["finetune.bc_policy={mlp}", "finetune.obs_statistics=moving"],
     ["finetune.obs_statistics", "frozen, running"]),
    ("unseen inputs", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "ppo.actor_observations=[imu]"],
     ["does not fit", "it reads ultrasonic, camera", "which the actor does not see (ppo.actor_observations)"]),
    ("lstm subset", ["finetune.bc_policy={lstm}", "ppo.net_arch=[8]", "ppo.algorithm=recurrent_ppo",
                     "ppo.lstm_hidden=8", "ppo.actor_observations=[imu]"],
     ["does not fit", "an LSTM clone reads the whole observation"]),
    ("estimator", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "ppo.actor_observations=[imu]",
                   "ppo.estimator=[camera]"],
     ["finetune.bc_policy cannot be combined with ppo.estimator"]),
    ("fixed scales", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "ppo.fixed_scales=[camera]"],
     ["finetune.bc_policy cannot be combined with ppo.fixed_scales", "under finetune.obs_statistics=read"]),
    ("fixed read scales", ["finetune.bc_policy={mlp}", "ppo.net_arch=[16]", "ppo.fixed_scales=[camera]",
                           "finetune.obs_statistics=read"],
     ["ppo.fixed_scales: the cloned policy reads", "fix the scales of inputs it does not read"]),
])
def test_what_does_not_fit_is_one_line(case, sets, words, clones, small_clone, tmp_path, capfd):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    paths = {"tmp": tmp_path, "small": small_clone, "mlp": clones["mlp"], "lstm": clones["lstm"],
             "demos": clones["demos"]}
    runs = tmp_path / "runs"
    args = [a for s in sets for a in ("--set", s.format(**paths))]
    assert main(["train", "pidog-run", "--steps", "256", "--runs", str(runs), *args]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert all(w in line for w in words), line
    assert not runs.exists() or not any(runs.iterdir())  # nothing was started


def test_demonstrations_at_another_action_scale_are_converted(clones):
    """The BC term's demonstrated actions are recorded in the task's units (action_scale 1.4 rad per unit): at
    action_scale 0.6 they are the same joint targets, 1.4 / 0.6 times as large."""
    from legkit.imitate.start import prepare

    recorded = load_demos(clones["demos"]).action
    for scale in (1.4, 0.6):
        cfg = build_config("pidog-run", sets=[f"task.action_scale={scale}", f"finetune.bc_policy={clones['mlp']}",
                                              f"finetune.demos={clones['demos']}", "ppo.net_arch=[16]"])
        start = prepare(cfg)
        np.testing.assert_allclose(start.demos.action * scale, recorded * 1.4, rtol=1e-6, atol=1e-7)
        assert np.abs(recorded).max() > 0.1


@pytest.fixture(scope="module")
def gait_clone(clones, tmp_path_factory) -> Path:
    """An MLP cloned from the trot's demonstrations reading the behaviour and the clock alone."""
    root = tmp_path_factory.mktemp("gait-clone")
    train_bc(load_demos(clones["demos"]), "mlp", out=root, epochs=3, batch_size=128, net_arch=(16,), patience=0,
             inputs=("behaviour", "clock"))
    return root / "best.pt"


@pytest.mark.parametrize("symmetry, width, statistics", [(False, 16, "frozen"), (True, 16, "frozen"),
                                                         (True, 24, "frozen"), (True, 16, "read")])
def test_a_clone_of_the_actors_terms_starts_an_asymmetric_actor_at_another_action_scale(symmetry, width, statistics,
                                                                                         gait_clone, tmp_path):
    """A clone that reads only the behaviour and the clock goes into the asymmetric actor of a task at action_scale
    0.7: its joint targets are the clone's (actions x 1.4 / 0.7); a symmetric actor averages them with the mirror
    image of the clone's action for the reflected observation. A wider actor (24 units where the clone has 16)
    acts the same: its 8 added units read every actor input but weigh nothing in the actions yet. With
    obs_statistics=read only the behaviour and the clock keep the demonstrations' statistics, every other input
    runs on the fine-tuning's own, and the actions are still the clone's."""
    runs = tmp_path / "runs"
    assert main(["train", "pidog-run", "--steps", str(WARMUP * ROLLOUT), *TINY, "--set", f"ppo.net_arch=[{width}]",
                 "--set", f"finetune.bc_policy={gait_clone}", "--set", "task.action_scale=0.7",
                 "--set", "ppo.actor_observations=[imu,behaviour,clock]", "--set", f"finetune.obs_statistics={statistics}",
                 "--set", f"ppo.symmetry={str(symmetry).lower()}", "--runs", str(runs),
                 *(["--set", "ppo.fixed_scales=[camera]"] if statistics == "read" else [])]) == 0
    (run,) = list(runs.iterdir())
    bc = load_bc(gait_clone)
    model = load_model(run / "model.zip")
    norm = read_normalization(run / "vecnormalize.pkl", bc.arch.obs_dim)
    layout = {name: slice(int(start), int(start) + int(size)) for name, start, size in bc.meta["obs_layout"]}
    read = np.zeros(bc.arch.obs_dim, dtype=bool)
    read[layout["behaviour"]] = read[layout["clock"]] = True
    np.testing.assert_array_equal(norm.obs_rms.mean[read], bc.normalizer.mean[read])
    np.testing.assert_array_equal(norm.obs_rms.var[read], bc.normalizer.var[read])
    moved = np.abs(norm.obs_rms.mean - bc.normalizer.mean) > 1e-6
    if statistics == "frozen":
        assert not moved.any()
    else:  # the IMU and the joints follow the robot's own readings over the 3 rollouts
        assert moved[layout["imu"]].any() and moved[layout["joint_pos"]].any()
    if statistics == "read":  # the camera, which the clone does not read, at its fixed scale (ppo.fixed_scales)
        depth = get_task("pidog-run").sensors.camera.max_depth  # range pixels: uniform over [0, max_depth]
        np.testing.assert_allclose(norm.obs_rms.mean[layout["camera"]], depth / 2)
        np.testing.assert_allclose(norm.obs_rms.var[layout["camera"]], depth ** 2 / 12)
    policy = model.policy
    first, action_net = policy.mlp_extractor.policy_net[0], policy.action_net
    assert first.out_features == width and action_net.in_features == width
    if width > 16:  # the added units: fresh weights from every input the actor reads, none into the actions yet
        assert torch.all(first.weight[16:].abs().sum(dim=1) > 0)
        assert torch.all(action_net.weight[:, 16:] == 0)
    task = replace(get_task("pidog-run"), episode_seconds=1.0, action_scale=0.7)
    batch = LeggedBatch(task, 4, seed=7, nthread=1)
    try:
        for _ in range(10):
            obs = batch.observe()
            a_model, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
            want = bc_action(bc, obs, clip=False)[0] * 2.0
            if symmetry:
                index, sign = (np.asarray(x) for x in policy.mirror["inputs"])
                actor = np.asarray(policy.actor_indices)
                mirrored = obs.copy()
                mirrored[:, actor] = obs[:, actor][:, index] * sign
                a_index, a_sign = (np.asarray(x) for x in policy.mirror["actions"])
                want = 0.5 * (want + bc_action(bc, mirrored, clip=False)[0][:, a_index] * a_sign * 2.0)
            np.testing.assert_allclose(a_model, np.clip(want, -1.0, 1.0), atol=1e-4)
            assert np.abs(want).max() > 0.05
            batch.step(a_model)
    finally:
        batch.close()


def test_a_resume_cannot_change_where_the_run_started(warmup_runs, clones, tmp_path, capfd):
    run = shutil.copytree(warmup_runs["mlp"], tmp_path / "run")
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1024",
                 "--set", f"finetune.bc_policy={clones['lstm']}"]) == 2
    assert "finetune.bc_policy cannot change on resume" in one_error_line(capfd.readouterr().err)


def test_observation_statistics_stay_frozen_or_keep_their_floor():
    from legkit.train.normalization import FlooredRunningMeanStd, frozen_statistics

    mean, var = np.array([0.0, 5.0, 1.0]), np.array([1.0, 4.0, 1e-4])
    frozen = frozen_statistics(mean, var, 1000)
    floored = FlooredRunningMeanStd(mean, var, 1000, min_var=0.01**2)
    batch = np.tile([3.0, 5.0, 1.0], (4000, 1))  # the first entry moved, the other two held still
    for rms in (frozen, floored):
        rms.update(batch)
    np.testing.assert_array_equal(frozen.mean, mean)
    np.testing.assert_array_equal(frozen.var, var)
    assert floored.mean[0] == pytest.approx(2.4) and floored.var[1] < 4.0  # running: it follows the robot
    np.testing.assert_array_equal(floored.var[2], 1e-4)  # a constant entry never divides by less than the floor
