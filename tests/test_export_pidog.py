"""legkit export of PiDog policies: its sensor terms, a recurrent (LSTM) policy, and the runtime on a PiDog's readings.

Real SB3 / sb3-contrib, real ONNX Runtime, real MuJoCo: a tiny PPO trained through `legkit train pidog-run`, and
a tiny RecurrentPPO built on the task's env and exported through export_model.
"""

from __future__ import annotations

import json
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.envs.vec_env import LegkitVecEnv
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.evaluate.success import read_evaluations
from legkit.export.graph import onnx_latency, runtime_latency
from legkit.export.policy import PARITY_TOLERANCE, export_model
from legkit.robots import get_robot
from legkit.runtime import PolicyRuntime, pixel_cosines
from legkit.sim.sensors import CameraConfig, pixel_directions
from legkit.tasks import get_task
from legkit.tasks.pidog_run import BEHAVIOURS, SENSED
from legkit.train.runs import find_policy
from legkit.train.trainer import quiet_logger

from cli_helpers import run_legkit

WITH_ATTITUDE = (SENSED[0], "attitude", *SENSED[1:])
"""pidog-run's sensed terms and the `attitude` the runtime filters from the IMU's readings (as training did)."""
TINY = ["train", "pidog-run", "--steps", "2048", "--envs", "8", "--set", "ppo.n_steps=64",
        "--set", f"task.observations=[{','.join(WITH_ATTITUDE)}]",
        "--set", "ppo.batch_size=256",
        "--set", "run.checkpoint_every=1024", "--set", "run.eval_episodes=2", "--set", "run.best_every=2048",
        "--set", "run.best_episodes=2", "--no-progress", "--name", "pidog"]


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    """A tiny PPO of pidog-run with the `attitude` term, trained and exported through the CLI: (run folder, export
    folder, export output)."""
    root = tmp_path_factory.mktemp("pidog-mlp")
    done = run_legkit(*TINY, "--runs", str(root), cwd=root)
    assert done.returncode == 0, done.stderr
    run = next(root.glob("pidog-*"))
    out = root / "export"
    done = run_legkit("export", str(run), "--out", str(out), cwd=root)
    assert done.returncode == 0, done.stderr
    return run, out, done.stdout


@pytest.fixture(scope="module")
def lstm_model():
    """A tiny sb3-contrib RecurrentPPO (MlpLstmPolicy) trained 512 steps on pidog-run: (model, VecNormalize, task)."""
    task = get_task("pidog-run")
    venv = VecNormalize(LegkitVecEnv(task, 8, seed=0, nthread=1))
    model = RecurrentPPO("MlpLstmPolicy", venv, n_steps=64, batch_size=128, n_epochs=1, seed=0, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 32, "net_arch": [64, 64]})
    model.set_logger(quiet_logger())
    model.learn(512)
    yield model, venv, task
    venv.close()


@pytest.fixture(scope="module")
def lstm_export(lstm_model, tmp_path_factory):
    model, norm, task = lstm_model
    out = tmp_path_factory.mktemp("pidog-lstm") / "export"
    spec = export_model(model, norm, task, out, "onnx", task_name="pidog-run", source="tiny-lstm")
    return out, spec


def _readings(env: LeggedBatch) -> dict:
    """What a PiDog's drivers report, from robot 0 of `env`: IMU axes, the sonar's reading in cm (-1: no echo),
    the depth image (rows, columns), the head pad, absolute servo angles and speeds; and the behaviour asked for."""
    s = env.state
    echo, distance = s.ultrasonic[0]
    cam = env.task.sensors.camera
    return {"accelerometer": s.imu[0, :3], "gyroscope": s.imu[0, 3:],
            "ultrasonic_cm": distance * 100.0 if echo else -1.0,
            "depth_image": s.camera[0].reshape(cam.height, cam.width), "head_touch": s.touch[0, 0],
            "joint_pos": s.joint_pos[0], "joint_vel": s.joint_vel[0], "behaviour": "trot_forward"}


# -- the feedforward policy -------------------------------------------------------------------------------------

def test_an_arena_run_records_its_collisions_at_every_periodic_evaluation(mlp_export):
    """pidog-run has an arena: evaluations.csv has a collisions column, best/meta.json the best model's count."""
    run, _, _ = mlp_export
    rows = read_evaluations(run)
    assert rows and all(r["collisions_per_episode"] is not None and r["collisions_per_episode"] >= 0 for r in rows)
    best = json.loads((run / "best" / "meta.json").read_text())
    (row,) = [r for r in rows if r["step"] == best["step"]]
    assert best["eval"]["collisions_per_episode"] == row["collisions_per_episode"]


def test_pidog_export_names_every_input_with_units_and_source(mlp_export):
    run, out, printed = mlp_export
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx", "runtime.py"]
    spec = json.loads((out / "policy.json").read_text())
    pidog, task = get_robot("pidog"), get_task("pidog-run")
    terms = {t["name"]: t for t in spec["observation"]["terms"]}
    assert list(terms) == list(WITH_ATTITUDE)
    assert sum(t["size"] for t in terms.values()) == spec["observation"]["size"] == 237
    for t in terms.values():
        assert t["units"] and t["source"] and t["source"] != "privileged simulator state", t
        assert t["provided_by"] in ("robot", "operator", "runtime")
        assert ("reading" in t) == (t["provided_by"] != "runtime"), t
    assert terms["imu"]["components"] == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert "body frame" in terms["imu"]["source"] and "20 Hz" in terms["imu"]["source"]
    assert terms["imu"]["reading"] == "'imu' or 'accelerometer' + 'gyroscope'"
    assert terms["ultrasonic"]["components"] == ["echo", "distance"] and "-1" in terms["ultrasonic"]["source"]
    assert "[0, 2.9]" in terms["ultrasonic"]["source"]
    assert "12 x 16 (rows x columns)" in terms["camera"]["source"] and "row 0 is the top" in terms["camera"]["source"]
    assert terms["camera"]["units"] == "m" and "distance along each pixel's ray" in terms["camera"]["source"]
    assert terms["touch"]["components"] == ["head_touch"] and terms["touch"]["reading"] == "'touch' or 'head_touch'"
    assert terms["joint_pos"]["components"] == list(pidog.joints)
    assert terms["behaviour"]["components"] == list(BEHAVIOURS) and terms["behaviour"]["trained"] == "trot_forward"
    assert terms["behaviour"]["provided_by"] == "operator"
    assert terms["clock"]["provided_by"] == "runtime"
    assert terms["attitude"]["provided_by"] == "runtime" and terms["attitude"]["gain"] == 0.02
    assert terms["attitude"]["step_s"] == pytest.approx(0.02) and "complementary filter" in terms["attitude"]["source"]
    assert terms["clock"]["period_s"] == task.clock_period and terms["clock"]["step_s"] == pytest.approx(0.02)
    # the sensor layout: where each sensor sits, its rate, range and field of view
    sensors = spec["sensors"]
    assert sorted(sensors) == ["camera", "imu", "touch", "ultrasonic"]
    assert sensors["imu"]["site"] == "imu" and sensors["imu"]["body"] == "base" and sensors["imu"]["rate_hz"] == 20.0
    assert sensors["ultrasonic"]["max_range_m"] == 2.9 and sensors["ultrasonic"]["driver_no_echo"] == -1.0
    cam = sensors["camera"]
    assert (cam["width"], cam["height"], cam["hfov_deg"], cam["max_depth_m"]) == (16, 12, 65.0, 3.0)
    assert cam["vfov_deg"] == pytest.approx(CameraConfig().vfov_deg) and cam["body"] == "head"
    # joint order, servo limits and control rate
    assert [j["name"] for j in spec["joints"]] == list(pidog.joints)
    assert [j["max_speed"] for j in spec["joints"]] == list(pidog.extra["max_joint_speed"])
    assert [j["torque_limit"] for j in spec["joints"]] == list(pidog.torque_limits)
    assert spec["control"]["rate_hz"] == pytest.approx(50.0) and spec["control"]["servo_speed"]
    assert spec["recurrent"] is None and spec["onnx"]["inputs"] == ["obs"]
    assert spec["parity"]["observations"] == 10000 and spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    assert "latency, batch 1, one thread: onnxruntime median" in printed


def test_pidog_runtime_in_closed_loop_acts_as_the_sb3_policy(mlp_export):
    """The runtime, fed a PiDog's driver readings, builds the env's own observation and gives SB3's actions: the
    attitude it filters from the IMU's readings included, across an episode start."""
    run, out, _ = mlp_export
    policy = find_policy(run, None)
    model, norm = load_policy(policy)
    env = LeggedBatch(load_run_config(policy).task, 1, seed=3, nthread=1)
    rt = PolicyRuntime(out)
    worst = 0.0
    try:
        for t in range(120):
            if t == 70:  # a new episode: the clock restarts on both sides
                env.reset(np.array([0]))
                rt.reset()
            obs = env.observe()
            np.testing.assert_allclose(rt.observation(_readings(env))[0], obs[0], rtol=0, atol=1e-6)
            sb3, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
            targets = rt.step(_readings(env))
            worst = max(worst, float(np.max(np.abs(rt.last_action - sb3[0]))))
            np.testing.assert_allclose(targets, np.clip(rt.home + 1.4 * rt.last_action, -1.57, 1.57), atol=1e-5)
            env.step(sb3)
    finally:
        env.close()
    assert worst <= 1e-5


# -- the recurrent policy ---------------------------------------------------------------------------------------

def test_lstm_export_has_its_state_as_inputs_and_outputs_and_parity_across_episode_starts(lstm_export):
    out, spec = lstm_export
    graph = onnx.load(str(out / "policy.onnx"))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["obs", "h", "c"]
    assert [o.name for o in graph.graph.output] == ["action", "targets", "h_out", "c_out"]
    assert spec["recurrent"]["layers"] == 1 and spec["recurrent"]["hidden_size"] == 32
    assert [(m["input"], m["output"], m["shape"]) for m in spec["recurrent"]["state"]] == \
        [("h", "h_out", [1, 1, 32]), ("c", "c_out", [1, 1, 32])]
    par = spec["parity"]
    assert par["observations"] == 10000 and par["sequences"] == 50 and par["steps"] == 200
    assert par["episode_starts"] >= 10  # the sequences cross many episode starts, each zeroing the state
    assert par["max_abs_diff"] <= PARITY_TOLERANCE


def test_lstm_torchscript_export_has_parity_too(lstm_model, tmp_path):
    model, norm, task = lstm_model
    spec = export_model(model, norm, task, tmp_path / "ts", "torchscript", samples=2000, task_name="pidog-run")
    assert sorted(p.name for p in (tmp_path / "ts").iterdir()) == ["policy.json", "policy.pt", "runtime.py"]
    assert spec["torchscript"]["inputs"] == ["obs", "h", "c"]
    assert spec["parity"]["episode_starts"] > 0 and spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE


def test_lstm_runtime_keeps_its_state_between_steps_and_resets_it(lstm_model, lstm_export):
    """Closed loop: the runtime on a PiDog's readings gives RecurrentPPO's actions (its state carried), and at a
    new episode only a runtime that was reset does."""
    model, norm, task = lstm_model
    out, _ = lstm_export
    env = LeggedBatch(task, 1, seed=5, nthread=1)
    rt = PolicyRuntime(out)
    state, worst = None, 0.0
    try:
        for t in range(100):
            start = np.array([t in (0, 60)])
            if t == 60:
                env.reset(np.array([0]))
                stale, _ = model.predict(norm.normalize_obs(env.observe()), state=state,
                                         episode_start=np.array([False]), deterministic=True)
                rt.reset()
                assert all(not m.any() for m in rt.memory.values())
            obs = env.observe()
            sb3, state = model.predict(norm.normalize_obs(obs), state=state, episode_start=start, deterministic=True)
            if t == 60:  # the state matters: without the reset the policy acts otherwise
                assert np.max(np.abs(stale - sb3)) > 1e-4
            rt.step(_readings(env))
            worst = max(worst, float(np.max(np.abs(rt.last_action - sb3[0]))))
            np.testing.assert_allclose(rt.memory["h"], state[0], atol=1e-5)
            np.testing.assert_allclose(rt.memory["c"], state[1], atol=1e-5)
            env.step(sb3)
    finally:
        env.close()
    assert worst <= 1e-5


def test_lstm_runtime_needs_numpy_and_onnxruntime_only(lstm_export):
    out, _ = lstm_export
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from runtime import PolicyRuntime\n"
            "rt = PolicyRuntime(sys.argv[1]); r = rt.example_readings(); a = rt.step(r); b = rt.step(r)\n"
            "bad = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'legkit', 'mujoco') if m in sys.modules]\n"
            "print(len(a), rt.steps, bool(abs(rt.memory['c']).sum() > 0), bad)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120, cwd=out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["12", "2", "True", "[]"]


def test_latency_of_the_lstm_graph_and_the_runtime_step_is_measured(lstm_export):
    out, spec = lstm_export
    for lat in (onnx_latency(out / "policy.onnx", spec["observation"]["size"], runs=50), runtime_latency(out, runs=50)):
        assert lat["runs"] == 50 and 0 < lat["median_us"] <= lat["p99_us"]


# -- the runtime's sensor dict ----------------------------------------------------------------------------------

def test_a_missing_or_malformed_reading_is_a_one_line_error_naming_it(lstm_export):
    out, _ = lstm_export
    rt = PolicyRuntime(out)
    good = rt.example_readings()
    needs = "this policy needs imu, ultrasonic, camera, touch, joint_pos, joint_vel, behaviour"
    for drop, needle in [("depth_image", "missing sensor reading 'camera' (or depth_image, depth_image_planar); "),
                         ("imu", "missing sensor reading 'imu' (or accelerometer+gyroscope); "),
                         ("ultrasonic_m", "missing sensor reading 'ultrasonic' (or ultrasonic_m, ultrasonic_cm); "),
                         ("touch", "missing sensor reading 'head_touch' (or 'touch' for all of head_touch); "),
                         ("behaviour", "missing sensor reading 'behaviour'; ")]:
        assert drop in good
        readings = {k: v for k, v in good.items() if k != drop}
        with pytest.raises(KeyError) as err:
            rt.step(readings)
        message = err.value.args[0]
        assert message == needle + needs and "\n" not in message
    with pytest.raises(ValueError, match=r"^sensor reading 'depth_image' has shape \(16, 12\); the policy needs "
                                         r"\(12, 16\) \(rows, columns\)$"):
        rt.step({**good, "depth_image": np.zeros((16, 12))})
    with pytest.raises(ValueError, match="^unknown behaviour 'run'; this policy knows walk_forward, walk_backward"):
        rt.step({**good, "behaviour": "run"})
    assert rt.steps == 0  # nothing half-done: the clock has not moved


def test_a_policy_trained_on_a_height_image_reads_one_and_says_so(lstm_model, lstm_export, tmp_path):
    model, norm, task = lstm_model
    camera = replace(task.sensors.camera, depth="height")
    height_task = replace(task, sensors=replace(task.sensors, camera=camera))
    out = tmp_path / "export"
    export_model(model, norm, height_task, out, "onnx", task_name="pidog-run", source="tiny-lstm")
    term = next(t for t in json.loads((out / "policy.json").read_text())["observation"]["terms"]
                if t["name"] == "camera")
    assert term["reading"] == "'camera' or 'height_image'" and term["units"] == "m"
    assert "height image" in term["source"] and "highest hit of 3 x 3 rays" not in term["source"]
    rt = PolicyRuntime(out)
    good = rt.example_readings()
    assert "height_image" in good and "depth_image" not in good
    image = np.zeros((12, 16))
    image[8, :3] = [0.04, np.nan, 0.3]  # a curb's top, nothing measured, a box's
    flat = rt.height_features(image)
    assert flat.shape == (192,) and list(flat[8 * 16:8 * 16 + 4]) == [0.04, 0.0, 0.3, 0.0]
    np.testing.assert_array_equal(rt.observation({**good, "height_image": image}),
                                  rt.observation({**good, "camera": flat}))
    with pytest.raises(KeyError) as err:
        rt.step({k: v for k, v in good.items() if k != "height_image"})
    assert err.value.args[0].startswith("missing sensor reading 'camera' (or height_image); this policy needs ")
    with pytest.raises(ValueError, match="^sensor reading 'depth_image': this policy reads a height image"):
        rt.step({**{k: v for k, v in good.items() if k != "height_image"}, "depth_image": np.ones((12, 16))})
    with pytest.raises(ValueError, match=r"^sensor reading 'height_image' has shape \(16, 12\)"):
        rt.step({**good, "height_image": np.zeros((16, 12))})
    # and a depth policy refuses a height image
    with pytest.raises(ValueError, match="^sensor reading 'height_image': this policy reads a depth image"):
        PolicyRuntime(lstm_export[0]).step({**PolicyRuntime(lstm_export[0]).example_readings(),
                                           "height_image": image})
    assert rt.steps == 0


def test_driver_readings_become_what_the_policy_was_trained_on(lstm_export):
    out, _ = lstm_export
    rt = PolicyRuntime(out)
    for cm, features in [(-1.0, [0.0, 2.9]), (150.0, [1.0, 1.5]), (1.0, [1.0, 0.02]), (350.0, [0.0, 2.9])]:
        np.testing.assert_allclose(rt.ultrasonic_features(cm / 100.0), features)
    cam = CameraConfig()
    np.testing.assert_allclose(pixel_cosines(cam.width, cam.height, cam.hfov_deg), pixel_directions(cam)[..., 0],
                               atol=1e-12)
    # a wall square to the optical axis 1 m away: a z-buffer reads 1 everywhere, each ray 1 / cos(its angle)
    wall = rt.depth_features(np.ones((12, 16)), planar=True).reshape(12, 16)
    np.testing.assert_allclose(wall, 1.0 / pixel_directions(cam)[..., 0], atol=1e-12)
    assert wall[0, 0] > wall[6, 8] > 1.0
    image = np.full((12, 16), 2.0)
    image[0, :3] = [0.0, np.nan, 9.0]  # nothing measured, twice, and beyond max_depth
    flat = rt.depth_features(image)
    assert flat.shape == (192,) and list(flat[:4]) == [3.0, 3.0, 3.0, 2.0]
    assert list(rt.behaviour_onehot("sit")) == [0, 0, 0, 0, 0, 0, 1]
    a = rt.observation({**rt.example_readings(), "imu": np.arange(6.0)})[0, :6].copy()
    split = {k: v for k, v in rt.example_readings().items() if k != "imu"}
    b = rt.observation({**split, "accelerometer": [0, 1, 2], "gyroscope": [3, 4, 5]})[0, :6]
    np.testing.assert_array_equal(a, b)
