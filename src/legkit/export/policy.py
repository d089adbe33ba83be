"""`legkit export`: a saved policy as one ONNX (or TorchScript) graph, its policy.json and the runtime.

The graph takes the raw actor observation (what the robot provides, float32, shape (batch, n)) and
gives two outputs: `action` in [-1, 1], and `targets`, what the actuators are sent (joint position
targets for a position-controlled robot, home + action_scale * action; motor commands for a
torque-controlled one). Inside: VecNormalize's (obs - mean) / sqrt(var + eps), clipped to
+-clip_obs; the actor's subset of the observation (asymmetric actor-critic: the critic's privileged
inputs are not inputs of the export); the actor network and its mean action (deterministic).
A recurrent policy (sb3-contrib RecurrentPPO, MlpLstmPolicy) also takes its LSTM state h, c and gives
the next one, h_out, c_out (export/graph.py); its parity is measured along recorded sequences.

policy.json describes every input (units, sensor, frame, the runtime's keys; export/layout.py), the
robot's sensors (mount, rate, range, field of view), the joints (order, home, gains, torque and servo
speed limits), the control rate, a recurrent policy's state and the measured parity.

`export_policy` exports a saved run's policy; `export_model` any SB3 model with its VecNormalize and task.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import mujoco
import numpy as np

from legkit import LegkitError, __version__
from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.export.graph import (ExportedActor, ExportedRecurrentActor, actor_indices, is_recurrent,  # noqa: F401
                                 onnx_latency, recurrent_memory, run_graph, run_sequences, runtime_latency, save_graph)
from legkit.export.layout import SOURCES, sensor_layout, servo_limits, term_records  # noqa: F401
from legkit.export.parity import parity_observations, parity_sequences, sb3_sequence_actions
from legkit.tasks.observations import PRIVILEGED
from legkit.train.runs import Policy, git_revision

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
PARITY_TOLERANCE = 1e-5
"""Largest allowed |export - SB3| over the parity observations (action units)."""


def _joints(env: LeggedBatch) -> list[dict]:
    m, r = env.model, env.robot
    out = []
    for j, (joint, act) in enumerate(zip(r.joints, r.actuators)):
        a = env.actuators[j]
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, joint)
        position = r.control == "position"
        out.append({
            "name": joint, "actuator": act, "home": float(r.home[j]),
            "kp": float(m.actuator_gainprm[a, 0]) if position else 0.0,
            "kd": float(-m.actuator_biasprm[a, 2]) if position else 0.0,
            "torque_limit": float(m.actuator_forcerange[a, 1]) if m.actuator_forcelimited[a] else None,
            "gear": float(m.actuator_gear[a, 0]),
            "range": [float(m.jnt_range[jid, 0]), float(m.jnt_range[jid, 1])],
            "damping": float(m.dof_damping[m.jnt_dofadr[jid]]), "armature": float(m.dof_armature[m.jnt_dofadr[jid]]),
            "frictionloss": float(m.dof_frictionloss[m.jnt_dofadr[jid]]),
        })
    return out


def _command_ranges(task, robot) -> dict:
    """The commands the policy was trained to follow by the end of training (its curricula's last stages)."""
    stages = task.command_curriculum.stages
    src = stages[-1] if stages else task.commands
    heights = task.curriculum.stages
    return {"lin_vel_x": list(src.lin_vel_x), "lin_vel_y": list(src.lin_vel_y), "ang_vel_yaw": list(src.ang_vel_yaw),
            "target_height": heights[-1].target if heights else robot.standing_height}


def export_policy(policy: Policy, out: Path, fmt: str = "onnx", samples: int = 10000) -> dict:
    """Write the export folder `out` for the saved `policy`; returns policy.json's content. Raises a LegkitError
    when the export does not reproduce the SB3 policy within PARITY_TOLERANCE."""
    if fmt not in FORMATS:
        raise LegkitError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    cfg = load_run_config(policy)
    _check_exportable(cfg.task, f"'{policy.folder}'")
    model, norm = load_policy(policy)
    return export_model(model, norm, cfg.task, out, fmt, samples, task_name=cfg.task_name, source=policy.label,
                        step=policy.step, obs_layout=policy.obs_layout)


def _check_exportable(task, what: str) -> None:
    if task.gait is not None and not task.gait.static and _steps_per_cycle(task) is None:
        raise LegkitError(f"{what} is a residual policy on a scripted {task.gait.type} whose {task.gait.cycle_time:g} s "
                          f"cycle is not a whole number of {task.control_dt:g} s control steps; the export stores the "
                          "gait as its joint targets at each control step of one cycle")


def _steps_per_cycle(task) -> int | None:
    """Control steps per cycle of the task's gait when whole, else None."""
    k = round(task.gait.cycle_time / task.control_dt)
    return int(k) if k >= 1 and abs(k * task.control_dt - task.gait.cycle_time) <= 1e-9 else None


def gait_table(task, env: LeggedBatch) -> dict:
    """policy.json's `gait` for a residual policy (task.gait): the scripted gait's joint targets at each control
    step since reset, one whole cycle of a moving gait (repeated), or a static pose's blend until it holds."""
    from legkit.gaits import GaitController

    g = task.gait
    gait = GaitController(env.robot, env.model, g, 1, env.dt)
    gait.reset()
    steps = _steps_per_cycle(task) if not g.static else int(np.ceil(g.transition_time / env.dt)) + 1
    rows = []
    for _ in range(steps):
        rows.append([float(x) for x in gait.joint_targets()[0]])
        gait.step()
    return {"type": g.type, "cycle_time_s": g.cycle_time, "step_s": env.dt, "repeat": not g.static,
            "targets": rows,
            "use": "joint targets at control step k since reset() = clip(targets[k mod len] (or the last row, for "
                   "a static pose once reached) + gain * action, low, high); the graph's own `targets` output "
                   "(home + gain * action) is not the robot's target for a residual policy. legkit.runtime does "
                   "this and keeps the gait_phase input"}


def export_model(model, norm, task, out: Path, fmt: str = "onnx", samples: int = 10000, *, task_name: str,
                 source: str = "model", step: int | None = None, obs_layout: list | None = None) -> dict:
    """Write the export folder `out` for an SB3 `model` (PPO, or sb3-contrib RecurrentPPO with an LSTM policy),
    its VecNormalize `norm` and the TaskConfig `task` it acts in; returns policy.json's content.

    `task_name`, `source` (e.g. the checkpoint's label) and `step` are recorded in policy.json; `obs_layout`
    is the (name, start, size) layout the model was trained on (default: the task's). Parity is measured on
    `samples` observations from the policy's own rollouts (sequences of them for a recurrent policy); a
    LegkitError when it exceeds PARITY_TOLERANCE (the folder is kept for inspection)."""
    if fmt not in FORMATS:
        raise LegkitError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    _check_exportable(task, source)
    recurrent = is_recurrent(model)
    env = LeggedBatch(task, 1, nthread=1)
    try:
        layout = [(str(n), int(s), int(k)) for n, s, k in (obs_layout or env.obs_layout)]
        idx = actor_indices(model, env.obs_dim)
        sensors = sensor_layout(task, env.model, env.robot)
        terms = term_records(layout, idx, task, env.robot, sensors)
        control = env.control_map()
        module = (ExportedRecurrentActor(model, norm, *control) if recurrent else
                  ExportedActor(model, norm, idx, *control))
        joints, robot = _joints(env), env.robot
        gait = gait_table(task, env) if task.gait is not None else None
    finally:
        env.close()
    for joint, speed in zip(joints, servo_limits(robot)):
        joint["max_speed"] = speed
    needs_privileged = [t["name"] for t in terms if t["name"] in PRIVILEGED]
    estimate = getattr(model.policy, "estimate_indices", [])
    estimated = [{"name": str(n), "size": int(k), "source": "predicted inside the graph from the inputs above "
                  "(a state estimator trained with the policy); the robot does not provide it"}
                 for n, s0, k in layout if int(s0) in estimate]
    memory = recurrent_memory(model)

    out.mkdir(parents=True, exist_ok=True)
    graph = out / FILES[fmt]
    save_graph(module, fmt, graph, len(idx), memory)
    parity = _parity(model, norm, task, samples, fmt, graph, idx, memory)

    hist = task.observation_history if "history" in [t["name"] for t in terms] else None
    servo = any(s is not None for s in servo_limits(robot))
    spec = {
        "format": "legkit-policy/1",
        "task": task_name,
        "robot": robot.name,
        "source": source, "step": step,
        "legkit_version": __version__, "git_revision": git_revision(),
        "control": {"mode": robot.control, "rate_hz": 1.0 / task.control_dt, "physics_dt": task.physics.timestep,
                    "decimation": task.decimation,
                    "targets": ("joint position targets (rad) = the scripted gait's targets (`gait`) + "
                                "action_scale * action, held by a PD controller: torque = kp (target - q) - kd qdot, "
                                "clipped to torque_limit") if gait is not None else
                               ("joint position targets (rad) = home + action_scale * action, held by a PD "
                                "controller: torque = kp (target - q) - kd qdot, clipped to torque_limit")
                    if robot.control == "position" else
                    "motor commands = offset + gain * action (actuator ctrl units; torque = gear * ctrl)",
                    "action_scale": task.action_scale if robot.control == "position" else None,
                    "offset": [float(x) for x in module.offset], "gain": [float(x) for x in module.gain],
                    "low": [float(x) for x in module.low], "high": [float(x) for x in module.high],
                    "servo_speed": ("in training each servo's setpoint moved toward the target at no more than the "
                                    "joint's max_speed (rad/s), the PD holding the setpoint: the robot's servos must "
                                    "be driven no faster") if servo else None},
        "joints": joints,
        "observation": {"size": len(idx), "terms": terms,
                        "history": {"terms": list(hist.terms), "length": hist.length} if hist else None,
                        "normalization": "inside the graph: (obs - mean) / sqrt(var + eps), clipped to +-"
                                         f"{module.clip:g}", "needs_estimator": needs_privileged,
                        "estimated_inside": estimated},
        "sensors": sensors,
        "gait": gait,
        "recurrent": {"type": "lstm", "layers": memory[0]["shape"][0], "hidden_size": memory[1]["shape"][2],
                      "state": memory,
                      "reset": "every state input is zero at the start of an episode (runtime.reset()); after each "
                               "step feed each output back as its input"} if memory else None,
        "commands": _command_ranges(task, robot),
        "onnx" if fmt == "onnx" else "torchscript": {
            "file": graph.name, "input": "obs", "inputs": ["obs", *[m["input"] for m in memory]],
            "outputs": ["action", "targets", *[m["output"] for m in memory]]},
        "parity": parity,
        "termination": asdict(task.termination),
        "sim2sim": {"floor_friction": task.physics.floor_friction, "episode_seconds": task.episode_seconds,
                    "physics": {"timestep": task.physics.timestep, "integrator": task.physics.integrator,
                                "solver": task.physics.solver, "iterations": task.physics.iterations,
                                "ls_iterations": task.physics.ls_iterations},
                    "reset": {"base_height": robot.reset_height, "yaw_range": task.reset.yaw_range,
                              "joint_pos_noise": task.reset.joint_pos_noise,
                              "base_vel_noise": task.reset.base_vel_noise}},
    }
    (out / "policy.json").write_text(json.dumps(spec, indent=2) + "\n")
    shutil.copyfile(Path(__file__).parent.parent / "runtime.py", out / "runtime.py")
    if parity["max_abs_diff"] > PARITY_TOLERANCE:
        raise LegkitError(f"the export differs from the SB3 policy by up to {parity['max_abs_diff']:.2e} on "
                          f"{parity['observations']} observations (tolerance {PARITY_TOLERANCE:g}); {out} is kept "
                          "for inspection")
    return spec


def _parity(model, norm, task, samples: int, fmt: str, graph: Path, idx: list[int], memory: list[dict]) -> dict:
    """policy.json's `parity`: the largest |export - SB3| action difference on the policy's own rollouts."""
    if not memory:
        full = parity_observations(model, norm, task, samples)
        sb3, _ = model.predict(norm.normalize_obs(full), deterministic=True)
        exported = run_graph(fmt, graph, full[:, idx].astype(np.float32))
        return {"observations": int(len(full)), "max_abs_diff": float(np.max(np.abs(exported - np.clip(sb3, -1, 1)))),
                "tolerance": PARITY_TOLERANCE,
                "against": "SB3 model.predict(VecNormalize.normalize_obs(obs), deterministic=True)"}
    obs, starts = parity_sequences(model, norm, task, samples)
    sb3 = sb3_sequence_actions(model, norm, obs, starts)
    exported = run_sequences(fmt, graph, obs[..., idx], starts, memory)
    return {"observations": int(starts.size), "sequences": int(starts.shape[1]), "steps": int(starts.shape[0]),
            "episode_starts": int(starts[1:].sum()), "max_abs_diff": float(np.max(np.abs(exported - sb3))),
            "tolerance": PARITY_TOLERANCE,
            "against": "SB3 model.predict(VecNormalize.normalize_obs(obs), state, episode_start, deterministic=True) "
                       "stepped along each sequence; the export stepped with its own h, c, zeroed at episode starts "
                       "(episode_starts counts those after the first step)"}
