"""Event terms change what they name: latency, observation noise, physics randomization through the task."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from legkit.envs.core import LeggedBatch
from legkit.sim.randomize import PhysicsRandomization
from legkit.tasks import get_task
from legkit.tasks.events import LatencyConfig


def _batch(n: int = 4, seed: int = 0, **task_changes) -> LeggedBatch:
    return LeggedBatch(replace(get_task("go2-walk"), **task_changes), n, seed=seed, nthread=1)


def test_latency_delays_the_applied_action_by_whole_physics_steps():
    """Robot i with a delay of d physics steps follows plain MuJoCo stepping the old targets d steps longer."""
    batch = _batch(4, latency=LatencyConfig(range_s=(0.0, 0.02)))
    try:
        batch.sim.ctrl_delay[:] = [0, 1, 2, 4]  # 0, 5, 10 and 20 ms at 5 ms physics steps
        rng = np.random.default_rng(1)
        a0, a1 = rng.uniform(-1, 1, (2, 4, 12))
        batch.step(a0)
        start, warm = batch.sim.state.copy(), batch.sim.warmstart.copy()
        ctrl0 = batch._ctrl.copy()
        batch.step(a1)
        ctrl1 = batch._ctrl.copy()
        m = batch.model
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        for i, d in enumerate([0, 1, 2, 4]):
            data = mujoco.MjData(m)
            mujoco.mj_setState(m, data, start[i], spec)
            data.qacc_warmstart[:] = warm[i]  # carried from the previous step, as in a plain loop
            for k in range(batch.sim.decimation):
                data.ctrl[:] = ctrl0[i] if k < d else ctrl1[i]
                mujoco.mj_step(m, data)
            got = np.empty(mujoco.mj_stateSize(m, spec))
            mujoco.mj_getState(m, data, got, spec)
            np.testing.assert_array_equal(batch.sim.state[i], got, err_msg=f"robot {i}, delay {d}")
    finally:
        batch.close()


def test_latency_is_drawn_per_robot_at_reset_in_physics_steps():
    batch = _batch(256, latency=LatencyConfig(range_s=(0.0, 0.02)))
    try:
        delays = batch.sim.ctrl_delay
        assert set(np.unique(delays)) == {0, 1, 2, 3, 4}  # U(0, 20 ms) rounded to 5 ms steps
        assert 0.7 < delays.mean() / 2.0 < 1.3
    finally:
        batch.close()
    calm = _batch(4)
    try:
        assert not calm.sim.ctrl_delay.any() and "latency" not in calm.events
    finally:
        calm.close()


def test_observation_noise_has_the_configured_statistics():
    width = 0.5
    noisy, clean = _batch(512, seed=3, observation_noise={"joint_vel": width}), _batch(512, seed=3)
    try:
        (start, size), = [(st, sz) for n, st, sz in noisy.obs_layout if n == "joint_vel"]
        diff = noisy.observe().copy() - clean.observe()
        noise = diff[:, start:start + size]
        assert np.abs(noise).max() <= width + 1e-6
        assert noise.mean() == pytest.approx(0.0, abs=0.01)
        assert noise.std() == pytest.approx(width / np.sqrt(3), rel=0.03)  # U(-w, w) has std w / sqrt(3)
        others = np.delete(diff, np.arange(start, start + size), axis=1)
        np.testing.assert_array_equal(others, 0.0)  # only the named term is noisy
    finally:
        noisy.close()
        clean.close()


def _foot_slide(batch: LeggedBatch, force: float = 30.0, steps: int = 50) -> np.ndarray:
    """Mean horizontal distance (m) the feet of each robot move under a constant push on its base, PD at
    the home pose (foot positions from the feet's framepos sensors)."""
    m = batch.model
    adr = np.array([m.sensor_adr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, n)]
                    for n in batch.robot.foot_pos_sensors])
    feet = lambda: np.stack([batch.sim.sensordata[:, adr], batch.sim.sensordata[:, adr + 1]], axis=-1)  # noqa: E731
    for _ in range(10):
        batch.step(np.zeros((batch.num_envs, 12)))  # settle on the feet
    start = feet()
    for _ in range(steps):
        batch.sim.qfrc_applied[:, 0] = force
        batch.sim.step(batch._ctrl)
    return np.linalg.norm(feet() - start, axis=-1).mean(axis=1)


def test_payload_from_the_task_config_changes_the_mass_by_its_amount():
    b = _batch(8, randomization=PhysicsRandomization(payload=(3.0, 3.0)))
    try:
        nominal = float(b.model.body_subtreemass[0])
        for m in b.events["physics"].pool.models:
            assert float(m.body_subtreemass[0]) == pytest.approx(nominal + 3.0, abs=1e-9)
        assert {id(b.sim._models[i]) for i in range(8)} <= {id(m) for m in b.events["physics"].pool.models}
    finally:
        b.close()


def test_each_reset_draws_a_pool_model():
    b = _batch(64, randomization=PhysicsRandomization(friction=(0.3, 1.2)), randomization_pool=16)
    try:
        before = b.sim.model_index.copy()
        b.reset()
        assert len(np.unique(b.sim.model_index)) > 8 and not np.array_equal(before, b.sim.model_index)
        f = b.events["physics"].values()["friction"]
        assert f.shape == (64,) and 0.3 <= f.min() and f.max() <= 1.2
    finally:
        b.close()


def test_training_disturbances_are_stripped_for_evaluation_unless_asked(tmp_path):
    """A run trained with friction randomization and latency is evaluated without them; --set asks again."""
    import shutil

    import yaml

    from legkit.evaluate.rollout import load_run_config
    from legkit.train.runs import find_policy, pretrained_root

    run = tmp_path / "run"
    shutil.copytree(pretrained_root() / "go2-walk", run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["task"]["randomization"] = {"friction": [0.3, 1.2]}
    saved["task"]["latency"] = {"range_s": [0.0, 0.02]}
    saved["task"]["observation_noise"] = {"joint_vel": 1.5}
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    policy = find_policy(run)
    calm = load_run_config(policy).task
    assert calm.randomization == PhysicsRandomization() and calm.latency == LatencyConfig()
    assert calm.observation_noise == {}
    asked = load_run_config(policy, ["task.randomization.friction=[0.3,0.3]", "task.latency.range_s=[0.02,0.02]"])
    assert asked.task.randomization.friction == (0.3, 0.3) and asked.task.latency.range_s == (0.02, 0.02)
