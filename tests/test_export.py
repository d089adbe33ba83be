"""legkit export, legkit.runtime and legkit sim2sim: real ONNX Runtime, real MuJoCo, the shipped policies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import onnx
import pytest

from legkit import LegkitError
from legkit.cli import main
from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.export.policy import PARITY_TOLERANCE, export_policy
from legkit.export.sim2sim import sim2sim
from legkit.robots import get_robot
from legkit.runtime import PolicyRuntime, projected_gravity
from legkit.train.runs import find_policy, pretrained_names, resolve_run

from cli_helpers import LEGKIT, SMOKE, one_error_line, run_legkit


@pytest.fixture(scope="module")
def go2_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "go2-walk"
    export_policy(find_policy(resolve_run("pretrained:go2-walk"), None), out, "onnx")
    return out


def test_export_folder_holds_the_graph_its_description_and_the_runtime(go2_export):
    assert sorted(p.name for p in go2_export.iterdir()) == ["policy.json", "policy.onnx", "runtime.py"]
    onnx.checker.check_model(onnx.load(str(go2_export / "policy.onnx")))
    spec = json.loads((go2_export / "policy.json").read_text())
    go2 = get_robot("go2")
    assert [j["name"] for j in spec["joints"]] == list(go2.joints)
    assert [j["home"] for j in spec["joints"]] == list(go2.home_pose)
    assert {j["kp"] for j in spec["joints"]} == {50.0} and {j["kd"] for j in spec["joints"]} == {1.0}
    assert [j["torque_limit"] for j in spec["joints"]] == list(go2.torque_limits)
    assert spec["control"]["rate_hz"] == pytest.approx(50.0) and spec["control"]["action_scale"] == 0.5
    terms = spec["observation"]["terms"]
    assert [t["name"] for t in terms] == ["base_lin_vel", "base_ang_vel", "projected_gravity", "command",
                                          "joint_pos", "joint_vel", "last_action"]
    assert sum(t["size"] for t in terms) == spec["observation"]["size"] == 48
    assert all(t["units"] and t["source"] for t in terms)
    assert spec["observation"]["needs_estimator"] == ["base_lin_vel"]
    assert spec["commands"]["lin_vel_x"] == [0.5, 1.0]
    assert spec["task"] == "go2-walk" and spec["legkit_version"]
    # the bar, measured on 10,000 observations recorded from rollouts
    assert spec["parity"]["observations"] == 10000
    assert spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE


def test_runtime_in_closed_loop_acts_as_the_sb3_policy(go2_export):
    """The runtime, fed what a robot reads (gyro, orientation quaternion, absolute joint angles), drives the
    legkit env and gives the SB3 policy's actions at every step."""
    policy = find_policy(resolve_run("pretrained:go2-walk"), None)
    model, norm = load_policy(policy)
    task = load_run_config(policy).task
    env = LeggedBatch(task, 1, seed=4, nthread=1)
    rt = PolicyRuntime(go2_export)
    s = env.state
    worst = 0.0
    try:
        for _ in range(150):
            obs = env.observe()
            sb3, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
            targets = rt.step({"base_lin_vel": s.base_lin_vel[0], "base_ang_vel": s.base_ang_vel[0],
                               "base_quat": s.base_quat[0], "joint_pos": s.joint_pos[0], "joint_vel": s.joint_vel[0],
                               "command": s.command[0]})
            worst = max(worst, float(np.max(np.abs(rt.last_action - sb3[0]))))
            np.testing.assert_allclose(targets, np.clip(rt.home + 0.5 * rt.last_action, env.ctrl_low, env.ctrl_high),
                                       atol=1e-5)
            env.step(sb3)
    finally:
        env.close()
    assert worst <= 1e-5


def test_residual_policy_runtime_adds_the_scripted_gait(tmp_path):
    """A residual policy's targets are the scripted trot's plus its action: the runtime, given only what a robot
    reads, keeps the gait's phase and targets itself and sends what the legkit env sends, step for step, over
    more than two gait cycles and across an episode reset."""
    policy = find_policy(resolve_run("pretrained:go2-residual"), None)
    export_policy(policy, tmp_path / "res", "onnx", samples=2000)
    model, norm = load_policy(policy)
    env = LeggedBatch(load_run_config(policy).task, 1, seed=3, nthread=1)
    rt = PolicyRuntime(tmp_path / "res")
    s = env.state
    try:
        for step in range(90):
            if step == 60:  # a new episode: the env's gait and the runtime's restart together
                env.reset(record=False)
                rt.reset()
            obs = env.observe()
            sb3, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
            readings = {"base_lin_vel": s.base_lin_vel[0], "base_ang_vel": s.base_ang_vel[0],
                        "base_quat": s.base_quat[0], "joint_pos": s.joint_pos[0], "joint_vel": s.joint_vel[0],
                        "command": s.command[0]}
            np.testing.assert_allclose(rt.observation(readings)[0], obs[0], atol=1e-6, err_msg=f"step {step}")
            targets = rt.step(readings)
            np.testing.assert_allclose(rt.last_action, sb3[0], atol=1e-5)
            env.step(sb3)
            np.testing.assert_allclose(targets, env._ctrl[0], atol=1e-5, err_msg=f"step {step}")
    finally:
        env.close()


def test_runtime_needs_numpy_and_onnxruntime_only(go2_export):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy as np; from runtime import PolicyRuntime\n"
            "rt = PolicyRuntime(sys.argv[1]); n = len(rt.joint_names)\n"
            "t = rt.step({'base_lin_vel': np.zeros(3), 'base_ang_vel': np.zeros(3), 'base_quat': [1, 0, 0, 0],"
            " 'joint_pos': rt.home, 'joint_vel': np.zeros(n), 'command': [0.5, 0, 0]})\n"
            "bad = [m for m in ('torch', 'stable_baselines3', 'legkit', 'mujoco', 'gymnasium') if m in sys.modules]\n"
            "print(len(t), bad)")
    out = subprocess.run([sys.executable, "-c", code, str(go2_export)], capture_output=True, text=True, timeout=120,
                         cwd=go2_export)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["12", "[]"]


def test_runtime_names_a_missing_reading(go2_export):
    rt = PolicyRuntime(go2_export)
    with pytest.raises(KeyError, match="missing sensor reading 'base_lin_vel'; this policy needs base_lin_vel, "
                                       "base_ang_vel, projected_gravity, command, joint_pos, joint_vel"):
        rt.step({"base_ang_vel": np.zeros(3)})


def test_projected_gravity_from_a_quaternion():
    np.testing.assert_allclose(projected_gravity([1, 0, 0, 0]), [0, 0, -1])
    pitch = 0.3  # nose down about y: gravity leans towards +x in the body frame
    np.testing.assert_allclose(projected_gravity([np.cos(pitch / 2), 0, np.sin(pitch / 2), 0]),
                               [np.sin(pitch), 0, -np.cos(pitch)], atol=1e-12)


def test_history_policy_exports_and_the_runtime_keeps_its_history(tmp_path):
    """A no-velocity actor with observation history (tiny training): the export leaves the critic's privileged
    inputs out, and the runtime rebuilds the history the env kept."""
    sets = ["--set", "task.observations=[base_lin_vel,base_ang_vel,projected_gravity,command,joint_pos,joint_vel,"
            "last_action,history,ground_friction,payload]",
            "--set", "ppo.actor_observations=[base_ang_vel,projected_gravity,command,joint_pos,joint_vel,last_action,history]"]
    args = (["train", "go2-joystick", "--config", "go2-joystick-base"] + SMOKE[2:] + sets
            + ["--steps", "2048", "--name", "hist"])  # the task's first stage alone (its recipe has two)
    done = run_legkit(*args, "--runs", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = next(tmp_path.glob("hist-*"))
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    spec = json.loads((out / "policy.json").read_text())
    names = [t["name"] for t in spec["observation"]["terms"]]
    assert names == ["base_ang_vel", "projected_gravity", "command", "joint_pos", "joint_vel", "last_action", "history"]
    assert spec["observation"]["history"] == {"terms": ["base_ang_vel", "projected_gravity", "joint_pos", "joint_vel",
                                                        "last_action"], "length": 3}
    assert spec["observation"]["needs_estimator"] == []
    policy = find_policy(run, None)
    model, norm = load_policy(policy)
    env = LeggedBatch(load_run_config(policy).task, 1, seed=2, nthread=1)
    rt, s = PolicyRuntime(out), env.state
    try:
        for t in range(60):
            if t == 30:  # a new episode: both restart their history
                env.reset(np.array([0]))
                rt.reset()
            obs = env.observe()
            sb3, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
            rt.step({"base_ang_vel": s.base_ang_vel[0], "projected_gravity": s.projected_gravity[0],
                     "joint_pos": s.joint_pos[0], "joint_vel": s.joint_vel[0], "command": s.command[0]})
            np.testing.assert_allclose(rt.last_action, sb3[0], atol=1e-5)
            env.step(sb3)
    finally:
        env.close()


@pytest.mark.parametrize("name", [n for n in pretrained_names() if n != "go2-walk"])  # go2-walk: the fixture
def test_every_shipped_policy_exports_with_parity(tmp_path, name):
    policy = find_policy(resolve_run(f"pretrained:{name}"), None)
    spec = export_policy(policy, tmp_path / name, "onnx")
    if name == "go2-residual":  # the scripted trot travels as its joint targets over one cycle (25 steps of 20 ms)
        assert spec["gait"]["type"] == "trot" and spec["gait"]["repeat"] and len(spec["gait"]["targets"]) == 25
        assert [t["provided_by"] for t in spec["observation"]["terms"] if t["name"] == "gait_phase"] == ["runtime"]
    assert spec["parity"]["observations"] == 10000 and spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE
    assert spec["control"]["mode"] == get_robot(spec["robot"]).control
    if name == "pidog":  # the robot's runtime must read heights above the floor, max-pooled, as training did
        camera = spec["sensors"]["camera"]
        assert camera["depth"] == "height" and camera["supersample"] == 3 and "max-pooled" in camera["projection"]
        source = next(t["source"] for t in spec["observation"]["terms"] if t["name"] == "camera")
        assert "height image" in source and "max-pooled" in source
    if name == "humanoid-stand":
        assert [t["name"] for t in spec["observation"]["terms"]][:2] == ["base_height", "target_height"]
        assert spec["commands"]["target_height"] == pytest.approx(1.28)


def test_torchscript_export_has_parity_too(tmp_path):
    spec = export_policy(find_policy(resolve_run("pretrained:go2-walk"), None), tmp_path / "ts", "torchscript",
                         samples=2000)
    assert (tmp_path / "ts" / "policy.pt").exists() and not (tmp_path / "ts" / "policy.onnx").exists()
    assert spec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE


@pytest.fixture(scope="module")
def joystick_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "go2-joystick"
    export_policy(find_policy(resolve_run("pretrained:go2-joystick"), None), out, "onnx", samples=2000)
    return out


@pytest.mark.parametrize("name, command", [("go2-walk", "0.75,0,0"), ("go2-joystick", "0.5,0,0")])
def test_sim2sim_on_legkit_s_own_model_reproduces_eval_within_2_percent(go2_export, joystick_export, tmp_path,
                                                                         capsys, name, command):
    """Each episode starts where eval's started, so what differs is the loop: the runtime, the PD servos built
    from policy.json, the training's simulator options. go2-walk trained under implicitfast (the PD's damping
    implicit), the shipped go2-joystick as its policy.json says: both must come out as eval measured them, tracking
    error and energy included (sum |tau * qdot| at every physics step with the torque the step applied)."""
    export = go2_export if name == "go2-walk" else joystick_export
    out = tmp_path / "s2s.json"
    assert main(["sim2sim", str(export), "--episodes", "6", "--seconds", "10", "--command", command,
                 "--against", f"pretrained:{name}", "--json", str(out)]) == 0
    assert f"against legkit eval of pretrained:{name}" in capsys.readouterr().out
    rows = json.loads(out.read_text())["against"]["metrics"]
    assert rows["survival_rate"]["eval"] == rows["survival_rate"]["sim2sim"] == 1.0
    for key in ("mean_forward_velocity", "linear_velocity_tracking_rms", "mean_base_height", "energy_per_metre_J"):
        assert abs(rows[key]["relative"]) <= 0.02, (key, rows[key])


def test_sim2sim_runs_the_training_s_physics_and_pd(go2_export, tmp_path):
    """policy.json carries the training's simulator options; sim2sim puts them on the file's model unless told to
    keep the file's, and drives the joints through PD servos at the exported gains while the file's own
    actuators are silenced. Here the export says euler (an explicit PD) where the Go2 MJCF says implicitfast."""
    from legkit.export.sim2sim import apply_physics, load_model

    export = tmp_path / "euler-export"
    shutil.copytree(go2_export, export)
    spec = json.loads((export / "policy.json").read_text())
    assert spec["sim2sim"]["physics"]["integrator"] == "implicitfast"  # go2-walk trained under the file's
    spec["sim2sim"]["physics"]["integrator"] = "euler"
    (export / "policy.json").write_text(json.dumps(spec))
    m, _ = load_model(get_robot("go2").xml(), 0.8, spec["joints"])
    assert apply_physics(m, spec["sim2sim"]["physics"]) == {"integrator": ["implicitfast", "euler"]}
    assert m.opt.integrator == int(mujoco.mjtIntegrator.mjINT_EULER)
    for j in spec["joints"]:
        a = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"sim2sim_pd_{j['name']}")
        assert m.actuator_gainprm[a, 0] == j["kp"] and m.actuator_biasprm[a, 1:3].tolist() == [-j["kp"], -j["kd"]]
        assert m.actuator_forcerange[a].tolist() == [-j["torque_limit"], j["torque_limit"]]
        own = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j["actuator"])
        assert not m.actuator_gainprm[own].any() and not m.actuator_biasprm[own].any()
    command = (0.75, 0.0, 0.0)
    euler = sim2sim(export, get_robot("go2").xml(), episodes=2, command=command, seconds=4.0)
    as_file = sim2sim(export, get_robot("go2").xml(), episodes=2, command=command, seconds=4.0, file_physics=True)
    trained = sim2sim(go2_export, get_robot("go2").xml(), episodes=2, command=command, seconds=4.0)
    assert euler["physics_changed"] == {"integrator": ["implicitfast", "euler"]}
    assert as_file["physics_changed"] == trained["physics_changed"] == {}
    assert as_file["metrics"] == trained["metrics"]  # the file's options are the training's here
    assert euler["metrics"]["energy_per_metre_J"] != as_file["metrics"]["energy_per_metre_J"]


def _variant(tmp_path: Path, name: str, edit) -> Path:
    spec = mujoco.MjSpec.from_file(str(get_robot("go2").xml()))
    edit(spec)
    path = tmp_path / f"go2-{name}.xml"
    path.write_text(spec.to_xml())
    return path


def _heavier_trunk_wider_feet(spec):
    spec.body("base").mass += 3.0
    for leg in ("FL", "FR", "RL", "RR"):
        spec.geom(f"{leg}_foot").size[0] = 0.03


def _more_joint_damping(spec):
    for j in spec.joints:
        if j.type != mujoco.mjtJoint.mjJNT_FREE:
            damping = np.array(j.damping, dtype=np.float64)
            damping[0] = 3.0 * damping[0] + 0.5
            j.damping = damping


@pytest.mark.parametrize("name, edit", [("heavy-widefoot", _heavier_trunk_wider_feet), ("damped", _more_joint_damping)])
def test_sim2sim_runs_on_variant_models_and_reports_the_degradation(go2_export, tmp_path, name, edit):
    path = _variant(tmp_path, name, edit)
    own = mujoco.MjModel.from_xml_path(str(get_robot("go2").xml()))
    other = mujoco.MjModel.from_xml_path(str(path))
    if name == "heavy-widefoot":  # the variant really is another robot
        assert other.body_mass.sum() == pytest.approx(own.body_mass.sum() + 3.0)
    else:
        assert (other.dof_damping[6:] > own.dof_damping[6:]).all()
    result = sim2sim(go2_export, path, episodes=3, command=(0.75, 0.0, 0.0), seconds=10.0)
    m = result["metrics"]
    assert result["ground_added"] and m["episodes"] == 3
    assert 0.0 <= m["survival_rate"] <= 1.0 and np.isfinite(m["mean_forward_velocity"])


def test_export_and_sim2sim_bad_input_is_one_line(tmp_path, go2_export):
    for args, needle in [
        (["export", "pretrained:go2-walk", "--format", "tflite", "--out", str(tmp_path / "x")], "valid: onnx, torchscript"),
        (["export", "pretrained:go2-walk", "--out", str(go2_export)], "already exists and is not empty"),
        (["sim2sim", str(tmp_path)], "is not an export folder"),
        (["sim2sim", str(go2_export), "--command", "1,2"], "is not vx,vy,yaw"),
        (["sim2sim", str(go2_export), "--against", "pretrained:go2-walk"], "--against needs --command"),
        (["sim2sim", str(go2_export), "--model", str(get_robot("humanoid").xml())], "the model has no joints named"),
        (["sim2sim", str(go2_export), "--model", str(tmp_path / "none.xml")], "is not a file"),
    ]:
        done = run_legkit(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert needle in one_error_line(done.stderr), (args, done.stderr)
    assert sorted(p.name for p in go2_export.iterdir()) == ["policy.json", "policy.onnx", "runtime.py"]


def test_sim2sim_takes_a_backward_command_as_written(joystick_export, tmp_path):
    """`--command -0.5,0,0` (walk backward) is the command, not an unknown option: argparse alone would read the
    leading minus as an option and say --command expected an argument."""
    out = tmp_path / "back.json"
    assert main(["sim2sim", str(joystick_export), "--episodes", "2", "--seconds", "3", "--command", "-0.5,0,0",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == [-0.5, 0.0, 0.0]
    assert record["metrics"]["mean_forward_velocity"] < -0.2  # the shipped joystick policy walks it backward
