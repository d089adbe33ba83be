"""Left-right symmetry: the Go2's mirror is a reflection of its physics, and a symmetric actor is equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.envs.vec_env import LegkitVecEnv
from legkit.robots import get_robot
from legkit.tasks.observations import mirror_map, mirror_name, term_reflections
from legkit.train.config import build_config
from legkit.train.trainer import _build_model

TERMS = "[base_lin_vel, base_ang_vel, projected_gravity, command, joint_pos, joint_vel, last_action, history]"
SMALL = ["run.num_envs=8", "ppo.n_steps=16", "ppo.batch_size=64", "ppo.n_epochs=1"]


def _reflect_state(qpos: np.ndarray, qvel: np.ndarray, index: np.ndarray, sign: np.ndarray,
                   jq: np.ndarray, jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image (y -> -y) of a free-floating robot's state, written by hand from the geometry."""
    q, v = qpos.copy(), qvel.copy()
    q[1] = -qpos[1]                                           # position (x, -y, z)
    q[3:7] = qpos[3:7] * np.array([1.0, -1.0, 1.0, -1.0])     # quaternion (w, -x, y, -z)
    v[1] = -qvel[1]                                           # linear velocity (x, -y, z)
    v[3:6] = qvel[3:6] * np.array([-1.0, 1.0, -1.0])          # angular velocity: roll and yaw rate flip
    q[jq] = sign * qpos[jq][index]
    v[jd] = sign * qvel[jd][index]
    return q, v


def test_joint_mirror_is_an_involution():
    index, sign = get_robot("go2").joint_mirror()
    assert (index[index] == np.arange(12)).all() and (sign * sign[index] == 1).all()
    assert get_robot("go2").joints[index[0]] == "FR_hip_joint" and sign[0] == -1


def test_the_go2_mirror_reflects_its_physics():
    """A robot started in the mirror image of another and given the mirrored actions observes the mirror
    image of what the other observes, step after step: the joint mirror and every term's signs are right."""
    cfg = build_config("go2-walk", sets=[f"task.observations={TERMS}",
                                         "task.observation_history.terms=[base_ang_vel, joint_pos]",
                                         "task.observation_history.length=2"])
    env = LeggedBatch(cfg.task, 2, seed=3, nthread=1)
    try:
        env.reset()
        robot = env.robot
        index, sign = robot.joint_mirror()
        qpos, qvel = env.sim.qpos.copy(), env.sim.qvel.copy()
        qvel[0, :6] = [0.3, 0.2, 0.0, 0.2, -0.1, 0.5]  # a lopsided start: moving left and turning
        q1, v1 = _reflect_state(qpos[0], qvel[0], index, sign, env.joint_qpos, env.joint_dof)
        env.sim.set_state(np.arange(2), np.stack([qpos[0], q1]), np.stack([qvel[0], v1]))
        env._update_state()
        env.state.command[:] = [[0.5, 0.3, -0.4], [0.5, -0.3, 0.4]]
        obs_index, obs_sign = mirror_map(env.obs_layout, index, sign, cfg.task.observation_history.terms)
        rng = np.random.default_rng(0)
        worst = 0.0
        for step in range(40):
            obs = env.observe().copy()
            worst = max(worst, float(np.max(np.abs(obs[1] - obs_sign * obs[0, obs_index]))))
            a = rng.uniform(-1, 1, 12)
            env.step(np.stack([a, sign * a[index]]))
        assert worst < 1e-6, worst
        moved = np.abs(env.sim.qpos[0, 1] - qpos[0, 1])
        assert moved > 0.01  # the robot really moved sideways, so y-signs were exercised
    finally:
        env.close()


def test_mirror_map_names_a_term_without_reflection():
    with pytest.raises(ValueError, match="'foo'"):
        mirror_map([("foo", 0, 2)], np.arange(12), np.ones(12))


def _symmetric(actor: str = "[base_ang_vel, projected_gravity, command, joint_pos, joint_vel, last_action, history]",
               extra: tuple = ()):
    cfg = build_config("go2-joystick", sets=SMALL + ["ppo.symmetry=true", f"ppo.actor_observations={actor}", *extra])
    env = VecNormalize(LegkitVecEnv(cfg.task, cfg.run.num_envs, seed=0, nthread=1), gamma=cfg.ppo.gamma)
    return _build_model(cfg, env), env


def test_symmetric_actor_is_equivariant_after_training_and_reload(tmp_path):
    model, env = _symmetric()
    try:
        model.learn(256)
        policy = model.policy
        ext = policy.pi_features_extractor
        rng = np.random.default_rng(1)
        n = len(policy.actor_indices)
        # any normalizer (mild enough that no reflected input reaches the +-10 clip, which breaks the symmetry)
        ext.set_statistics(rng.normal(0.0, 0.3, n), rng.uniform(0.8, 1.2, n))
        model.save(tmp_path / "m.zip")
    finally:
        env.close()
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")  # plain SB3
    p = loaded.policy
    obs = torch.as_tensor(rng.normal(size=(16, p.observation_space.shape[0])).astype(np.float32))
    x = obs[:, p.actor_indices]
    with torch.no_grad():
        a = p.mean_actions(p.mlp_extractor.forward_actor(p.pi_features_extractor.features(x)))
        b = p.mean_actions(p.mlp_extractor.forward_actor(p.pi_features_extractor.features(
            p.pi_features_extractor.reflect(x))))
        dist = p.get_distribution(obs)
    assert torch.allclose(b, a[:, p.action_mirror_index] * p.action_mirror_sign, atol=1e-5)
    std = dist.distribution.stddev[0]
    assert torch.allclose(std, std[p.action_mirror_index])  # a joint and its mirror explore alike
    assert np.allclose(p.pi_features_extractor.obs_std.numpy(), ext.obs_std.numpy())  # statistics are saved


def test_symmetry_statistics_follow_the_normalizer(tmp_path):
    model, env = _symmetric()
    try:
        from legkit.train.callbacks import SymmetryStatistics

        model.learn(256, callback=SymmetryStatistics())
        ext = model.policy.pi_features_extractor
        idx = model.policy.actor_indices
        # copied at the start of the last rollout; the normalizer has moved on by one rollout since
        assert not np.allclose(ext.obs_mean.numpy(), 0.0)
        assert np.allclose(ext.obs_std.numpy()[:3], np.sqrt(env.obs_rms.var[idx][:3] + env.epsilon), rtol=0.5)
    finally:
        env.close()


def test_symmetry_needs_a_robot_with_a_mirror():
    with pytest.raises(LegkitError, match="mirror"):
        build_config("humanoid-stand", sets=["ppo.symmetry=true"])


PIDOG_QUIET = ["task.arena.enabled=false", "task.reset.joint_pos_noise=0", "task.reset.base_vel_noise=0",
               "task.sensors.imu.acc_noise_std=0", "task.sensors.imu.gyro_noise_std=0",
               "task.sensors.imu.acc_bias_std=0", "task.sensors.imu.gyro_bias_std=0",
               "task.sensors.ultrasonic.noise_std=0", "task.sensors.imu.rate_hz=50",
               "task.sensors.ultrasonic.rate_hz=50", "task.sensors.camera.rate_hz=50",
               "task.observations=[imu, attitude, ultrasonic, camera, touch, joint_pos, joint_vel, behaviour, clock]"]


def test_the_pidog_mirror_reflects_its_sensors():
    """The PiDog's sensor terms: a robot started in the mirror image of another, half a gait cycle on and asked
    for the mirrored behaviour, given the mirrored actions, senses the mirror image of what the other senses
    (IMU, attitude, ultrasonic, the camera's image, touch, encoders), step after step."""
    cfg = build_config("pidog-run", sets=PIDOG_QUIET)
    env = LeggedBatch(cfg.task, 2, seed=3, nthread=1)
    try:
        env.reset()
        index, sign = env.robot.joint_mirror()
        qpos, qvel = env.sim.qpos.copy(), env.sim.qvel.copy()
        qvel[0, :6] = [0.1, 0.08, 0.0, 0.4, -0.2, 0.6]  # moving left, rolling and turning
        q1, v1 = _reflect_state(qpos[0], qvel[0], index, sign, env.joint_qpos, env.joint_dof)
        env.sim.set_state(np.arange(2), np.stack([qpos[0], q1]), np.stack([qvel[0], v1]))
        half = round(cfg.task.clock_period / env.dt / 2)
        env.state.episode_step[1] = env.state.episode_step[0] + half  # the mirrored gait is half a cycle on
        behaviours = list(cfg.task.behaviours)
        env.state.behaviour[:] = 0.0
        env.state.behaviour[0, behaviours.index("turn_left")] = 1.0
        env.state.behaviour[1, behaviours.index("turn_right")] = 1.0
        env._update_state(np.arange(2))
        env._tick_clock()
        obs_index, obs_sign = mirror_map(env.obs_layout, index, sign, permuted=term_reflections(cfg.task))
        cam = [i for n, start, size in env.obs_layout if n == "camera" for i in range(start, start + size)]
        rng = np.random.default_rng(0)
        worst, lopsided = 0.0, 0.0
        for _ in range(40):
            obs = env.observe().copy()
            worst = max(worst, float(np.max(np.abs(obs[1] - obs_sign * obs[0, obs_index]))))
            lopsided = max(lopsided, float(np.max(np.abs(obs[0, cam] - obs[0, obs_index[cam]]))))
            a = rng.uniform(-0.3, 0.3, 12)
            _, term, _ = env.step(np.stack([a, sign * a[index]]))
            assert not term.any()
        assert worst < 1e-4, worst
        assert lopsided > 0.01  # the image was not left-right symmetric itself, so its reflection was exercised
    finally:
        env.close()


def test_term_reflections_swap_left_and_right():
    cfg = build_config("pidog-run")
    r = term_reflections(cfg.task)
    names = cfg.task.behaviours
    assert [names[i] for i in r["behaviour"]] == [mirror_name(n) for n in names]
    assert names[r["behaviour"][names.index("turn_left")]] == "turn_right"
    assert list(r["touch"]) == [0]  # the head touch pad is on the centre line
    w = cfg.task.sensors.camera.width
    assert list(r["camera"][:w]) == list(range(w - 1, -1, -1))
    assert mirror_name("FL_foot") == "FR_foot" and mirror_name("RR_calf") == "RL_calf"


def test_the_obstacle_map_reflects_by_reversing_its_columns():
    """A box to the robot's left and the same box to its right give maps that are each other's reflection."""
    from legkit.sim.arena import PARK, Arena

    cfg = build_config("pidog-run", sets=["task.observations=[imu,camera,obstacle_map]"])
    reflect = term_reflections(cfg.task)["obstacle_map"]
    env = LeggedBatch(cfg.task, 1, seed=0, nthread=1)
    try:
        arena: Arena = env.arena
        m = len(arena.names)
        pos, quat = np.tile(np.asarray(PARK, float), (2, m, 1)), np.tile([1.0, 0, 0, 0], (2, m, 1))
        j = int(np.flatnonzero(arena.kinds == "low")[0])
        for row, y in enumerate((0.15, -0.15)):
            pos[row, j] = (0.35, y, arena.half_sizes[j, 2])
        maps = arena.height_map(np.zeros((2, 2)), np.zeros(2), pos, quat)
        assert (maps[0] > 0).any() and not np.array_equal(maps[0], maps[0][reflect])  # lopsided
        np.testing.assert_array_equal(maps[1], maps[0][reflect])
    finally:
        env.close()


def test_symmetry_names_a_behaviour_without_a_mirror_image():
    with pytest.raises(LegkitError, match="turn_left has no mirror image"):
        build_config("pidog-run", sets=["ppo.symmetry=true", "task.behaviours=[trot_forward, turn_left]",
                                        "task.behaviour=trot_forward"])
