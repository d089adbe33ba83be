"""legkit.runtime: run an exported legkit policy on a robot. Needs numpy and onnxruntime, nothing else.

This file imports nothing from legkit, torch or Stable-Baselines3: `legkit export` copies it into the
export folder, and a robot runs it from there.

    from runtime import PolicyRuntime            # or: from legkit.runtime import PolicyRuntime

    policy = PolicyRuntime("export/")            # policy.onnx + policy.json
    policy.reset()                               # at the start of every episode
    while running:                               # at policy.rate_hz (50 Hz for the Go2)
        targets = policy.step({
            "base_ang_vel": gyro,                # IMU angular velocity, body frame (rad/s)
            "projected_gravity": gravity,        # or "base_quat": IMU orientation w, x, y, z
            "joint_pos": q, "joint_vel": qd,     # encoders, in policy.joint_names order (rad, rad/s)
            "command": [vx, vy, yaw_rate],       # body frame (m/s, m/s, rad/s)
        })
        send_position_targets(targets)           # held by the motors' PD at policy.kp, policy.kd

`policy.inputs` lists the readings a policy needs; `policy.json` says what each one means. The runtime
computes what the robot cannot measure but the policy remembers: the previous action and, when the policy
was trained with one, the observation history.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "legkit-policy/1"
"""The policy.json format this runtime reads."""

KEPT_BY_RUNTIME = ("last_action", "history")
"""Observation terms the runtime computes itself."""


def projected_gravity(quat) -> np.ndarray:
    """Unit gravity direction in the body frame, R^T (0, 0, -1), from a w-x-y-z orientation quaternion."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))])


class PolicyRuntime:
    """An exported policy: sensor readings in, joint targets (or motor commands) out, one control step at a time."""

    def __init__(self, folder: str | Path, threads: int = 1):
        import onnxruntime as ort  # imported here so that `projected_gravity` works without it

        folder = Path(folder)
        self.spec = json.loads((folder / "policy.json").read_text())
        if self.spec.get("format") != FORMAT:
            raise ValueError(f"{folder / 'policy.json'} has format {self.spec.get('format')!r}; this runtime reads {FORMAT}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / self.spec["onnx"]["file"]), options,
                                            providers=["CPUExecutionProvider"])
        joints = self.spec["joints"]
        self.joint_names = [j["name"] for j in joints]
        """Joint order of every joint array in and out."""
        self.home = np.array([j["home"] for j in joints])
        self.kp = np.array([j["kp"] for j in joints])
        self.kd = np.array([j["kd"] for j in joints])
        self.torque_limit = np.array([j["torque_limit"] for j in joints])
        self.rate_hz = float(self.spec["control"]["rate_hz"])
        self.terms = [(t["name"], int(t["size"])) for t in self.spec["observation"]["terms"]]
        self.inputs = [n for n, _ in self.terms if n not in KEPT_BY_RUNTIME]
        """Readings `step` needs, by name."""
        h = self.spec["observation"].get("history") or {"terms": [], "length": 0}
        self._history_terms, self._history_length = list(h["terms"]), int(h["length"])
        self._obs = np.zeros((1, int(self.spec["observation"]["size"])), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start an episode: no previous action; the history restarts with the next reading."""
        self.last_action = np.zeros(len(self.joint_names))
        self._history: np.ndarray | None = None

    def observation(self, sensors: dict) -> np.ndarray:
        """The policy's raw observation (1, size) from `sensors`, as the export was trained to read it."""
        parts: dict[str, np.ndarray] = {}
        for name, size in self.terms:
            if name in KEPT_BY_RUNTIME:
                continue
            value = self._reading(sensors, name)
            if value.shape != (size,):
                raise ValueError(f"sensor reading '{name}' has shape {value.shape}; the policy needs ({size},)")
            parts[name] = value
        parts["last_action"] = self.last_action
        frame = np.concatenate([parts[n] for n, _ in self.terms if n in self._history_terms]) \
            if self._history_length else np.zeros(0)
        if self._history_length:
            if self._history is None:  # a new episode's past is its first frame
                self._history = np.tile(frame, self._history_length)
            parts["history"] = self._history
        start = 0
        for name, size in self.terms:
            self._obs[0, start:start + size] = parts[name]
            start += size
        self._frame = frame
        return self._obs

    def step(self, sensors: dict) -> np.ndarray:
        """One control step: joint position targets (rad), or motor commands for a torque-controlled robot."""
        obs = self.observation(sensors)
        action, targets = self.session.run(None, {"obs": obs})
        self.last_action = action[0].astype(np.float64)
        if self._history_length:  # what the policy acted on becomes the newest past frame
            k = len(self._frame)
            self._history = np.concatenate([self._frame, self._history[:len(self._history) - k]])
        return targets[0].astype(np.float64)

    def _reading(self, sensors: dict, name: str) -> np.ndarray:
        if name == "projected_gravity" and name not in sensors and "base_quat" in sensors:
            return projected_gravity(sensors["base_quat"])
        if name not in sensors:
            raise KeyError(f"missing sensor reading '{name}'; this policy needs {', '.join(self.inputs)}")
        value = np.asarray(sensors[name], dtype=np.float64).reshape(-1)
        if name == "joint_pos":  # encoders read absolute angles; the policy sees offsets from home
            return value - self.home
        return value
