"""`legkit export`: a saved policy as one ONNX (or TorchScript) graph, its policy.json and the runtime.

The graph takes the raw actor observation (what the robot provides, float32, shape (batch, n)) and
gives two outputs: `action` in [-1, 1], and `targets`, what the actuators are sent (joint position
targets for a position-controlled robot, home + action_scale * action; motor commands for a
torque-controlled one). Inside: VecNormalize's (obs - mean) / sqrt(var + eps), clipped to
+-clip_obs; the actor's subset of the observation (asymmetric actor-critic: the critic's privileged
inputs are not inputs of the export); the actor network and its mean action (deterministic).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import mujoco
import numpy as np
import torch as th
from torch import nn

from legkit import LegkitError, __version__
from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import load_policy, load_run_config
from legkit.tasks.observations import PRIVILEGED
from legkit.train.normalization import normalizer_statistics
from legkit.train.policies import ObservationSubset
from legkit.train.runs import Policy, git_revision

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
PARITY_TOLERANCE = 1e-5
"""Largest allowed |export - SB3| over the parity observations (action units)."""

SOURCES = {
    "base_lin_vel": ("m/s", "base linear velocity, body frame (x forward, y left, z up); a Go2 has no sensor for "
                     "it: a state estimator must provide it"),
    "base_ang_vel": ("rad/s", "IMU gyroscope, body frame"),
    "projected_gravity": ("unit vector", "gravity direction in the body frame, R^T (0, 0, -1), from the IMU "
                          "orientation; the runtime computes it from base_quat (w, x, y, z) if given that"),
    "command": ("m/s, m/s, rad/s", "velocity command: vx forward, vy left, yaw rate counter-clockwise, body frame"),
    "joint_pos": ("rad", "joint encoders, joint order; the runtime subtracts the home pose"),
    "joint_vel": ("rad/s", "joint encoder velocities, joint order"),
    "last_action": ("action, [-1, 1]", "the policy's previous action; kept by the runtime (zero after reset)"),
    "history": ("as its terms", "the past observed frames of observation.history.terms, newest first; kept by "
                "the runtime (after a reset every frame is the first one)"),
    "base_height": ("m", "base height above the ground; no sensor on the robot: an estimator must provide it"),
    "target_height": ("m", "commanded standing height"),
}


class ExportedActor(nn.Module):
    """Raw actor observation -> (action, targets): normalization, clipping, actor network, action scaling."""

    def __init__(self, model, norm, actor_indices: list[int], ctrl_offset: np.ndarray, ctrl_gain: np.ndarray,
                 ctrl_low: np.ndarray, ctrl_high: np.ndarray):
        super().__init__()
        policy = model.policy
        f32 = lambda x: th.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        mean, std = normalizer_statistics(norm, actor_indices)
        clip = float(norm.clip_obs) if norm.norm_obs else float("inf")
        # In float64, as VecNormalize computes it, then float32 for the network: parity to the last bit or two.
        self.register_buffer("mean", th.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("std", th.as_tensor(np.asarray(std, dtype=np.float64)))
        self.clip = clip
        # An asymmetric actor's features are its inputs, then its state estimate (if any), and with a mirror
        # the same for the reflected inputs; its mean action may combine both (policy.mean_actions).
        self.asymmetric = actor_indices_of(policy) is not None
        self.policy = policy
        self.register_buffer("offset", f32(ctrl_offset))
        self.register_buffer("gain", f32(ctrl_gain))
        self.register_buffer("low", f32(ctrl_low))
        self.register_buffer("high", f32(ctrl_high))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        x = (obs.double() - self.mean) / self.std
        if self.clip != float("inf"):
            x = th.clamp(x, -self.clip, self.clip)
        x = x.float()
        p = self.policy
        if self.asymmetric:
            mean = p.mean_actions(p.mlp_extractor.forward_actor(p.pi_features_extractor.features(x)))
        else:
            mean = p.action_net(p.mlp_extractor.forward_actor(x))
        action = th.clamp(mean, -1.0, 1.0)
        return action, th.minimum(th.maximum(self.offset + self.gain * action, self.low), self.high)


def actor_indices_of(policy) -> list[int] | None:
    """Indices of the full observation an asymmetric policy's actor reads; None for a symmetric policy."""
    extractor = getattr(policy, "pi_features_extractor", None)
    if isinstance(extractor, ObservationSubset):
        return [int(i) for i in extractor.indices.tolist()]
    return None


def actor_indices(model, obs_dim: int) -> list[int]:
    """Indices of the full observation the model's actor reads (all of them for a symmetric policy)."""
    found = actor_indices_of(model.policy)
    return found if found is not None else list(range(obs_dim))


def _term_records(layout: list, indices: list[int], task) -> list[dict]:
    """The exported observation's terms: name, start, size, units, source and noise, in input order."""
    wanted, out, start = set(indices), [], 0
    for name, first, size in layout:
        first, size = int(first), int(size)
        inside = [i for i in range(first, first + size) if i in wanted]
        if not inside:
            continue
        if len(inside) != size:
            raise LegkitError(f"the actor reads part of observation term '{name}'; export needs whole terms")
        units, source = SOURCES.get(name, ("", "privileged simulator state"))
        out.append({"name": name, "start": start, "size": size, "units": units, "source": source,
                    "provided_by": "runtime" if name in ("last_action", "history") else
                    ("operator" if name in ("command", "target_height") else "robot"),
                    "training_noise": task.observation_noise.get(name, 0.0)})
        start += size
    return out


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


def parity_observations(model, norm, task, samples: int, seed: int = 0) -> np.ndarray:
    """`samples` raw observations (samples, obs_dim) recorded from rollouts of the policy itself in its
    task, with its training noise and disturbances off; every robot starts anew when it falls."""
    robots = 50
    env = LeggedBatch(task, robots, seed=seed, nthread=1)
    out = []
    try:
        obs = env.observe().copy()
        while len(out) * robots < samples:
            out.append(obs.copy())
            action, _ = model.predict(norm.normalize_obs(obs), deterministic=False)
            _, term, trunc = env.step(action)
            done = np.flatnonzero(term | trunc)
            if len(done):
                env.reset(done)
            obs = env.observe().copy()
    finally:
        env.close()
    return np.concatenate(out)[:samples]


def _save_graph(module: nn.Module, fmt: str, path: Path, obs_dim: int) -> None:
    example = th.zeros(1, obs_dim)
    module.eval()
    with th.no_grad():
        if fmt == "torchscript":
            th.jit.save(th.jit.trace(module, example), str(path))
            return
        th.onnx.export(module, (example,), str(path), input_names=["obs"], output_names=["action", "targets"],
                       dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}, "targets": {0: "batch"}},
                       opset_version=17, dynamo=False)


def _run_graph(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    """Actions of the saved graph (read back from disk) for `obs`."""
    if fmt == "torchscript":
        with th.no_grad():
            return th.jit.load(str(path))(th.as_tensor(obs, dtype=th.float32))[0].numpy()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["action"], {"obs": obs[i:i + 1000]})[0] for i in range(0, len(obs), 1000)])


def onnx_latency(path: Path, obs_dim: int, runs: int = 5000) -> dict:
    """Median and 99th percentile (µs) of one batch-1 onnxruntime call on one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = {"obs": np.zeros((1, obs_dim), dtype=np.float32)}
    for _ in range(200):
        session.run(None, x)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run(None, x)
        times[i] = time.perf_counter() - t0
    return {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6), "runs": runs}


def runtime_latency(folder: Path, runs: int = 5000) -> dict:
    """Median and 99th percentile (µs) of one whole legkit.runtime step (sensor dict in, joint targets out)."""
    from legkit.runtime import PolicyRuntime

    rt = PolicyRuntime(folder)
    n = len(rt.joint_names)
    sensors = {"base_ang_vel": np.zeros(3), "base_quat": np.array([1.0, 0, 0, 0]), "joint_pos": rt.home.copy(),
               "joint_vel": np.zeros(n), "command": np.array([0.5, 0.0, 0.0]), "base_lin_vel": np.zeros(3),
               "base_height": np.zeros(1), "target_height": np.zeros(1)}
    for _ in range(200):
        rt.step(sensors)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        rt.step(sensors)
        times[i] = time.perf_counter() - t0
    return {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6), "runs": runs}


def export_policy(policy: Policy, out: Path, fmt: str = "onnx", samples: int = 10000) -> dict:
    """Write the export folder `out` for `policy`; returns policy.json's content. Raises a LegkitError when
    the export does not reproduce the SB3 policy within PARITY_TOLERANCE."""
    if fmt not in FORMATS:
        raise LegkitError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    cfg = load_run_config(policy)
    task = cfg.task
    if task.gait is not None:
        raise LegkitError(f"'{policy.folder}' is a residual policy on a scripted {task.gait.type} (task.gait): its joint "
                          "targets are the gait's plus its action, and the export and runtime carry no gait generator "
                          "yet; export a policy without task.gait")
    model, norm = load_policy(policy)
    env = LeggedBatch(task, 1, nthread=1)
    try:
        layout = [(str(n), int(s), int(k)) for n, s, k in (policy.obs_layout or env.obs_layout)]
        idx = actor_indices(model, env.obs_dim)
        terms = _term_records(layout, idx, task)
        module = ExportedActor(model, norm, idx, *env.control_map())
        joints, robot = _joints(env), env.robot
    finally:
        env.close()
    needs_privileged = [t["name"] for t in terms if t["name"] in PRIVILEGED]
    estimate = getattr(model.policy, "estimate_indices", [])
    estimated = [{"name": str(n), "size": int(k), "source": "predicted inside the graph from the inputs above "
                  "(a state estimator trained with the policy); the robot does not provide it"}
                 for n, s0, k in layout if int(s0) in estimate]

    out.mkdir(parents=True, exist_ok=True)
    graph = out / FILES[fmt]
    _save_graph(module, fmt, graph, len(idx))

    full = parity_observations(model, norm, task, samples)
    sb3, _ = model.predict(norm.normalize_obs(full), deterministic=True)
    exported = _run_graph(fmt, graph, full[:, idx].astype(np.float32))
    diff = float(np.max(np.abs(exported - np.clip(sb3, -1.0, 1.0))))

    hist = task.observation_history if "history" in [t["name"] for t in terms] else None
    spec = {
        "format": "legkit-policy/1",
        "task": cfg.task_name,
        "robot": robot.name,
        "source": policy.label, "step": policy.step,
        "legkit_version": __version__, "git_revision": git_revision(),
        "control": {"mode": robot.control, "rate_hz": 1.0 / task.control_dt, "physics_dt": task.physics.timestep,
                    "decimation": task.decimation,
                    "targets": ("joint position targets (rad) = home + action_scale * action, held by a PD "
                                "controller: torque = kp (target - q) - kd qdot, clipped to torque_limit")
                    if robot.control == "position" else
                    "motor commands = offset + gain * action (actuator ctrl units; torque = gear * ctrl)",
                    "action_scale": task.action_scale if robot.control == "position" else None,
                    "offset": [float(x) for x in module.offset], "gain": [float(x) for x in module.gain],
                    "low": [float(x) for x in module.low], "high": [float(x) for x in module.high]},
        "joints": joints,
        "observation": {"size": len(idx), "terms": terms,
                        "history": {"terms": list(hist.terms), "length": hist.length} if hist else None,
                        "normalization": "inside the graph: (obs - mean) / sqrt(var + eps), clipped to +-"
                                         f"{module.clip:g}", "needs_estimator": needs_privileged,
                        "estimated_inside": estimated},
        "commands": _command_ranges(task, robot),
        "onnx" if fmt == "onnx" else "torchscript": {"file": graph.name, "input": "obs", "outputs": ["action", "targets"]},
        "parity": {"observations": int(len(full)), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE,
                   "against": "SB3 model.predict(VecNormalize.normalize_obs(obs), deterministic=True)"},
        "termination": asdict(task.termination),
        "sim2sim": {"floor_friction": task.physics.floor_friction, "episode_seconds": task.episode_seconds,
                    "reset": {"base_height": robot.reset_height, "yaw_range": task.reset.yaw_range,
                              "joint_pos_noise": task.reset.joint_pos_noise}},
    }
    (out / "policy.json").write_text(json.dumps(spec, indent=2) + "\n")
    shutil.copyfile(Path(__file__).parent.parent / "runtime.py", out / "runtime.py")
    if diff > PARITY_TOLERANCE:
        raise LegkitError(f"the export differs from the SB3 policy by up to {diff:.2e} on {len(full)} observations "
                          f"(tolerance {PARITY_TOLERANCE:g}); {out} is kept for inspection")
    return spec
