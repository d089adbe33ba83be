"""humanoid-stand: the robot from gymnasium, the height curriculum, its config checks, and a smoke run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.cli import main
from legkit.robots import get_robot
from legkit.sim.scene import PhysicsConfig, build_model
from legkit.tasks import get_task
from legkit.tasks.curriculum import CurriculumConfig, HeightCurriculum, StageConfig
from legkit.tasks.state import BatchState
from legkit.train.config import build_config

STAGES = (StageConfig(1.0, 0.1, 100), StageConfig(1.2, 0.05, 200), StageConfig(1.3, 0.02, 300))


def test_humanoid_is_loaded_from_gymnasium_with_pd_actuators_and_torque_sensors():
    robot = get_robot("humanoid")
    import gymnasium

    assert Path(gymnasium.__file__).parent in robot.xml().parents  # loaded from the package, not copied
    model = build_model(robot, PhysicsConfig())
    assert model.nu == 17 and len(robot.joints) == 17
    assert 40 < sum(model.body_mass) < 45
    for name in robot.torque_sensors:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name) >= 0
    # motors became position servos with the shipped torque limits (gear x 0.4 N*m)
    knee = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "right_knee")
    assert model.actuator_forcerange[knee].tolist() == pytest.approx([-80.0, 80.0])
    assert model.actuator_gainprm[knee, 0] == pytest.approx(200.0) and model.actuator_biasprm[knee, 1] == pytest.approx(-200.0)


def test_humanoid_reachable_height_fact():
    """Standing straight, the feet touch the floor with the torso 0.107 m below its 1.40 m spawn height."""
    model = build_model(get_robot("humanoid"), PhysicsConfig())
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    assert data.qpos[2] == pytest.approx(1.4)
    feet = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("right_foot", "left_foot")]
    lowest = min(data.geom_xpos[f][2] - model.geom_size[f][0] for f in feet)
    standing = 1.4 - lowest
    assert standing == pytest.approx(1.293, abs=0.005)
    assert standing < get_robot("humanoid").max_base_height < 1.40


def _outcomes(cur: HeightCurriculum, s: BatchState, lengths, heights) -> None:
    ids = np.arange(len(lengths))
    s.target_height[ids] = cur.target
    s.stage[ids] = cur.stage
    cur.reset(s, ids, np.asarray(lengths), np.asarray(heights) * np.asarray(lengths))


def test_curriculum_advances_on_success_rate():
    cur = HeightCurriculum(CurriculumConfig(STAGES, window=10, success_rate=0.6))
    s = BatchState(10, 17, 0, 0, 0.015)
    # 5 of 10 succeed (long enough and within 0.1 m of 1.0): 50% < 60%, no advance.
    _outcomes(cur, s, [150] * 5 + [50] * 5, [1.02] * 10)
    assert cur.stage == 0 and cur.success_rate() == 0.5
    # Window of the last 10: 6 successes -> advance to stage 1, and restarting robots get its target.
    _outcomes(cur, s, [150] * 6, [0.95] * 6)
    assert cur.stage == 1
    assert np.all(s.target_height[:6] == 1.2)


def test_curriculum_counts_height_and_length_and_stops_at_last_stage():
    cur = HeightCurriculum(CurriculumConfig(STAGES, window=4, success_rate=0.5))
    s = BatchState(4, 17, 0, 0, 0.015)
    _outcomes(cur, s, [150, 150, 150, 150], [1.2, 1.15, 0.85, 1.11])  # all off by more than 0.1 m
    assert cur.stage == 0
    _outcomes(cur, s, [99, 99, 99, 99], [1.0] * 4)  # at the target but one step too short
    assert cur.stage == 0
    _outcomes(cur, s, [100, 100, 100, 100], [1.0] * 4)
    assert cur.stage == 1
    _outcomes(cur, s, [200] * 4, [1.2] * 4)
    _outcomes(cur, s, [300] * 4, [1.3] * 4)
    assert cur.stage == cur.last_stage == 2
    _outcomes(cur, s, [300] * 4, [1.3] * 4)
    assert cur.stage == 2


def test_curriculum_ignores_episodes_started_in_an_older_stage():
    """Stages may share a height (pushes grow at the final one): an episode counts for the stage it began in."""
    stages = (StageConfig(1.2, 0.05, 100), StageConfig(1.2, 0.05, 100, push_force=50.0),
              StageConfig(1.2, 0.05, 100, push_force=100.0))
    cur = HeightCurriculum(CurriculumConfig(stages, window=2, success_rate=0.5))
    s = BatchState(2, 17, 0, 0, 0.015)
    cur.set_stage(1)
    ids = np.arange(2)
    s.target_height[:], s.stage[:] = 1.2, 0  # perfect episodes, but begun in stage 0 at the same height
    cur.reset(s, ids, np.array([500, 500]), np.array([1.2, 1.2]) * 500)
    assert cur.stage == 1 and cur.success_rate() == 0.0
    assert np.all(s.stage == 1) and cur.push_force == 50.0  # restarted robots are now in stage 1
    cur.reset(s, ids, np.array([500, 500]), np.array([1.2, 1.2]) * 500)
    assert cur.stage == 2 and cur.push_force == 100.0


def test_curriculum_stage_pushes_start_at_their_stage():
    """No pushes while the robot learns to stand; a push stage shoves each robot with up to its force."""
    from legkit.envs.core import LeggedBatch

    task = get_task("humanoid-stand")
    push_stages = [i for i, st in enumerate(task.curriculum.stages) if st.push_force > 0]
    assert push_stages and task.pushes.force == 0.0 and task.pushes.random_magnitude
    n = 64
    batch = LeggedBatch(replace(task, pushes=replace(task.pushes, interval_s=0.015, duration_s=0.015)), n, seed=1,
                        nthread=0)  # interval = duration = one control step: every robot is pushed on every step
    try:
        zero = np.zeros((n, 17))
        batch.step(zero)
        assert np.all(batch.sim.qfrc_applied == 0.0)  # stage 0: standing up, no pushes
        last = batch.curriculum.last_stage
        batch.curriculum.set_stage(last)
        batch.reset()
        batch.step(zero)
        force = np.linalg.norm(batch.sim.qfrc_applied[:, :3], axis=1)
        top = task.curriculum.stages[last].push_force
        assert np.all(force <= top) and force.max() > 0.8 * top and force.std() > 0.1 * top  # U(0, top) each push
        assert np.all(batch.sim.qfrc_applied[:, 2:] == 0.0)  # horizontal, on the torso's free joint only
    finally:
        batch.close()


def test_evaluation_never_applies_training_pushes(tmp_path):
    """A policy trained with pushes is judged standing still unless a scenario (or a --set) pushes it."""
    import shutil

    import yaml

    from legkit.evaluate.rollout import load_run_config, rollout
    from legkit.tasks.config import undisturbed
    from legkit.train.runs import find_policy, pretrained_root

    run = tmp_path / "pushed-run"
    shutil.copytree(pretrained_root() / "humanoid-stand", run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["task"]["pushes"].update(force=2000.0, interval_s=0.3, duration_s=0.1)  # trained under 2000 N pushes
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    policy = find_policy(run)
    cfg = load_run_config(policy)
    assert cfg.task.pushes.force == 0.0 and all(st.push_force == 0.0 for st in cfg.task.curriculum.stages)
    assert undisturbed(cfg.task) == cfg.task
    calm = rollout(policy, 4, cfg, seed=7, max_steps=150)
    assert not calm.terminated.any()
    asked = ["task.pushes.force=2000", "task.pushes.interval_s=0.3", "task.pushes.duration_s=0.1"]
    shoved = rollout(policy, 4, load_run_config(policy, asked), seed=7, max_steps=150)
    assert shoved.terminated.all()  # the same 2000 N pushes, asked for on the command line, floor it
    scenario = rollout(policy, 4, cfg, seed=7, max_steps=150, pushes=load_run_config(policy, asked).task.pushes)
    assert scenario.terminated.all()  # and so do they as a validation scenario's


@pytest.mark.parametrize("sets, key", [
    (["ppo.ent_coef=-0.01"], "ppo.ent_coef"),
    (["ppo.ent_coef_final=-0.001"], "ppo.ent_coef_final"),
    (["ppo.gae_lambda=0"], "ppo.gae_lambda"),
    (["ppo.gamma=1.01"], "ppo.gamma"),
    (["ppo.batch_size=100000"], "ppo.batch_size"),
    (["ppo.bogus=1"], "bogus"),
    (["task.curriculum.stages=[{target: 1.40, tolerance: 0.02, min_steps: 100}]"], "stages[0].target"),
    (["task.curriculum.success_rate=0"], "success_rate"),
    (["task.curriculum.stages=[{target: 1.2, tolerance: 0.1, min_steps: 10, push_force: -5}]"], "stages[0].push_force"),
    (["task.pushes.force=-1"], "task.pushes.force"),
    (["run.best_every=-1"], "run.best_every"),
])
def test_humanoid_config_rejections_name_the_key(sets, key):
    with pytest.raises(LegkitError) as err:
        build_config("humanoid-stand", sets=sets)
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_humanoid_yaml_settings():
    cfg = build_config("humanoid-stand")
    assert cfg.ppo.batch_size == 512 and cfg.ppo.gae_lambda == 0.90
    assert (cfg.ppo.ent_coef, cfg.ppo.ent_coef_final) == (0.01, 0.005)
    assert [st.target for st in cfg.task.curriculum.stages] == sorted(st.target for st in cfg.task.curriculum.stages)


def test_humanoid_env_resets_to_curriculum_target():
    from legkit.envs.core import LeggedBatch

    batch = LeggedBatch(get_task("humanoid-stand"), 3, seed=0, nthread=0)
    try:
        first = batch.task.curriculum.stages[0].target
        assert np.all(batch.state.target_height == first)
        assert np.allclose(batch.state.base_pos[:, 2], 1.30)
        batch.curriculum.set_stage(2)
        batch.reset(np.array([1]))
        assert batch.state.target_height[1] == batch.task.curriculum.stages[2].target
        assert batch.state.target_height[0] == first
        # PD position control: action a -> joint target 0.5 * a around the straight pose, inside the joint range
        batch.step(np.ones((3, 17)))
        expected = np.clip(0.5, batch.joint_low, batch.joint_high)
        np.testing.assert_allclose(batch._ctrl, np.tile(expected, (3, 1)))
        assert (expected < 0.5).any(), "some joint limit is tighter than 0.5 rad, so clipping is exercised"
    finally:
        batch.close()


def test_humanoid_smoke_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = main(["train", "humanoid-stand", "--steps", "4096", "--envs", "16", "--runs", str(tmp_path), "--no-progress",
                 "--set", "ppo.n_steps=128", "--set", "ppo.batch_size=512", "--set", "run.checkpoint_every=2048",
                 "--set", "run.eval_episodes=2", "--set", "run.torch_threads=1"])
    assert code == 0
    run = next(tmp_path.iterdir())
    header = (run / "episodes.csv").read_text().splitlines()[0].split(",")
    for col in ("mean_height", "mean_action", "curriculum_stage", "height_target", "upright", "control_cost",
                "termination", "sustained_bonus"):
        assert col in header
    meta = json.loads((run / "checkpoints" / "step_000002048" / "meta.json").read_text())
    assert meta["curriculum_stage"] == 0
    ev = json.loads((run / "eval.json").read_text())["metrics"]
    assert 0.0 < ev["mean_base_height"] < 1.5


def test_finished_episodes_report_the_stage_they_started_in():
    from legkit.envs.vec_env import LegkitVecEnv

    env = LegkitVecEnv(get_task("humanoid-stand"), 4, seed=0, nthread=0)
    try:
        env.reset()
        env.batch.curriculum.set_stage(1)  # running episodes began in stage 0
        for _ in range(400):
            env.step(np.zeros((4, 17), dtype=np.float32))  # no policy: the humanoid falls
            if env.completed:
                break
        done = env.drain_completed()
        assert done and all(ep["stage"] == 0 for ep in done)
        assert (env.batch.state.stage == 1).sum() == len(done)  # the restarted robots are in stage 1
    finally:
        env.close()
