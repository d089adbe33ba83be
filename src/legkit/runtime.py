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

A PiDog policy (pidog-run) reads the robot's own sensors; the runtime turns driver readings into what
the policy was trained on:

        targets = policy.step({
            "imu": np.r_[acc, gyro],             # m/s^2 (specific force: +9.81 z level at rest), rad/s;
                                                 # or "accelerometer" and "gyroscope", 3 values each
            "ultrasonic_cm": sonar.read(),       # the driver's reading, negative when no echo (or "ultrasonic_m")
            "depth_image": depth,                # (rows, columns) m along each pixel's ray, as policy.json's
                                                 # sensors.camera says; "depth_image_planar" for a z-buffer;
                                                 # 0, negative or non-finite: nothing within max_depth
                                                 # (a policy trained on a height image, depth "height":
                                                 # "height_image", m above the floor, 0: nothing)
            "head_touch": touch_n,               # each touch sensor by name (N), or "touch" for all of them
            "joint_pos": q, "joint_vel": qd,     # rad, rad/s, absolute, policy.joint_names order
            "behaviour": "trot_forward",         # one of policy.behaviours (or its one-hot)
        })
        send_servo_targets(targets)              # no faster than policy.max_speed (rad/s) per servo

Every term can also be given as the policy sees it, under its own name ("ultrasonic": [echo, m],
"camera": the flattened image). The runtime keeps what the robot does not measure: the previous action,
the observation history (for policies trained with one), the `clock` (the phase of the behaviour's beat:
it counts step() calls since reset(), so call step() at rate_hz), the `attitude` (the gravity direction, filtered
from the "imu" readings by attitude_step, as in training: pass the latest IMU reading at every step) and a
recurrent policy's memory (an LSTM's h and c, zero after reset()). `policy.inputs` lists the readings a policy
needs, `policy.json` what each one means (units, sensor, frame, range); `example_readings()` gives a valid dict
of every input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FORMAT = "legkit-policy/1"
"""The policy.json format this runtime reads."""

KEPT_BY_RUNTIME = ("last_action", "history", "clock", "gait_phase", "attitude")
"""Observation terms the runtime computes itself."""

READINGS = {
    "projected_gravity": ("projected_gravity", "base_quat"),
    "imu": ("imu", "accelerometer+gyroscope"),
    "ultrasonic": ("ultrasonic", "ultrasonic_m", "ultrasonic_cm"),
    "camera": ("camera", "depth_image", "depth_image_planar", "height_image"),
    "touch": ("touch", "each touch sensor by name"),
}
"""Keys of the sensor dict that can give an observation term (a+b: both); any other term is its own name."""


def readings_of(name: str, sensors: dict) -> tuple[str, ...]:
    """The keys of READINGS that can give term `name` for a policy whose sensor layout (policy.json's "sensors")
    is `sensors`: a camera's depth images, or its height image for a policy trained on one."""
    keys = READINGS.get(name, (name,))
    if name == "camera" and sensors.get("camera"):
        height = sensors["camera"]["depth"] == "height"
        keys = tuple(k for k in keys if k == "camera" or (k == "height_image") == height)
    return keys


def projected_gravity(quat) -> np.ndarray:
    """Unit gravity direction in the body frame, R^T (0, 0, -1), from a w-x-y-z orientation quaternion."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))])


def attitude_step(gravity, imu, dt: float, gain: float, fresh=None) -> np.ndarray:
    """One control step of the complementary filter behind the `attitude` term: the unit gravity direction in the
    IMU's frame ((0, 0, -1) level), estimated from a 6-axis IMU that gives no orientation of its own.

    gravity (k, 3): the last estimates; imu (k, 6): the latest readings [accelerometer m/s^2, gyroscope rad/s];
    dt: the control period (s). The gyroscope turns the estimate (a fixed world vector seen from a body turning at w
    moves at -w x g); the accelerometer (specific force, +9.81 up at rest: gravity is its opposite) pulls it by
    `gain`. Robots `fresh` (k,) bool, e.g. just reset, start from the accelerometer alone. Returns (k, 3) unit rows.
    """
    g = np.atleast_2d(np.asarray(gravity, dtype=np.float64))
    imu = np.atleast_2d(np.asarray(imu, dtype=np.float64))
    acc, gyro = imu[:, :3], imu[:, 3:6]
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    measured = np.where(norm > 1e-6, -acc / np.maximum(norm, 1e-6), g)  # no reading (free fall): keep the estimate
    out = (1.0 - gain) * (g - dt * np.cross(gyro, g)) + gain * measured
    if fresh is not None:
        out = np.where(np.asarray(fresh, dtype=bool).reshape(-1, 1), measured, out)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 1e-9, out / np.maximum(norm, 1e-9), np.array([0.0, 0.0, -1.0]))


def pixel_cosines(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """cos(angle off the optical axis) of each pixel's ray, (height, width), for a pinhole camera with square
    pixels and rays through the pixel centres: a z-buffer depth is the ray's distance times it."""
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)  # focal length (pixels)
    u = np.arange(width) + 0.5 - 0.5 * width
    v = np.arange(height) + 0.5 - 0.5 * height
    return f / np.sqrt(f * f + u[None, :] ** 2 + v[:, None] ** 2)


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
        self.max_speed = np.array([np.inf if j.get("max_speed") is None else j["max_speed"] for j in joints])
        """Servo speed limits (rad/s) the policy was trained under; inf where none."""
        self.rate_hz = float(self.spec["control"]["rate_hz"])
        records = {t["name"]: t for t in self.spec["observation"]["terms"]}
        self.terms = [(t["name"], int(t["size"])) for t in self.spec["observation"]["terms"]]
        attitude = records.get("attitude")
        self._attitude = (float(attitude["step_s"]), float(attitude["gain"])) if attitude else None
        """The attitude filter's control period (s) and accelerometer gain, for a policy that reads `attitude`."""
        self.inputs = [n for n, _ in self.terms if n not in KEPT_BY_RUNTIME]
        if attitude and "imu" not in self.inputs:
            self.inputs.append("imu")  # the attitude filter reads it
        """Readings `step` needs, by name."""
        self.sensors = self.spec.get("sensors") or {}
        """policy.json's sensor layout: mount, units, rate and range of each sensor the policy reads."""
        self.behaviours = list(records["behaviour"]["components"]) if "behaviour" in records else []
        """The behaviours the `behaviour` input names, in one-hot order."""
        clock = records.get("clock")
        self._clock_rate = float(clock["step_s"]) / float(clock["period_s"]) if clock else 0.0
        gait = self.spec.get("gait")
        self._gait_targets = np.array(gait["targets"], dtype=np.float64) if gait else None
        """A residual policy's scripted gait: its joint targets at each control step of one cycle (or of its
        blend into a static pose, then held); the policy's action corrects them."""
        self._gait_cycle = bool(gait and gait["repeat"])
        self._gait_rate = float(gait["step_s"]) / float(gait["cycle_time_s"]) if gait else 0.0
        control = self.spec["control"]
        self._gain, self._low, self._high = (np.array(control[k], dtype=np.float64) for k in ("gain", "low", "high"))
        camera = self.sensors.get("camera")
        self._cosines = pixel_cosines(camera["width"], camera["height"], camera["hfov_deg"]) if camera else None
        h = self.spec["observation"].get("history") or {"terms": [], "length": 0}
        self._history_terms, self._history_length = list(h["terms"]), int(h["length"])
        self._obs = np.zeros((1, int(self.spec["observation"]["size"])), dtype=np.float32)
        memory = (self.spec.get("recurrent") or {}).get("state", [])
        self._memory = [(m["input"], m["output"], tuple(int(k) for k in m["shape"])) for m in memory]
        self._outputs = ["action", "targets"] + [out for _, out, _ in self._memory]
        self.reset()

    def reset(self) -> None:
        """Start an episode: no previous action, the clock at 0, a recurrent policy's memory zero; the history
        restarts with the next reading."""
        self.last_action = np.zeros(len(self.joint_names))
        self._history: np.ndarray | None = None
        self.steps = 0
        """Control steps since reset()."""
        self.gravity: np.ndarray | None = None
        """The attitude filter's estimate (unit, IMU frame); None until the first step after reset()."""
        self._gravity_next = self.gravity
        self.memory = {name: np.zeros(shape, dtype=np.float32) for name, _, shape in self._memory}
        """A recurrent policy's state (e.g. the LSTM's h and c), fed back at every step."""

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
        if self._attitude is not None:
            imu = self._reading(sensors, "imu")
            if imu.shape != (6,):
                raise ValueError(f"sensor reading 'imu' has shape {imu.shape}; the attitude filter needs (6,)")
            start = self.gravity is None
            self._gravity_next = attitude_step([0.0, 0.0, -1.0] if start else self.gravity, imu, *self._attitude,
                                               fresh=[start])[0]
            parts["attitude"] = self._gravity_next
        angle = 2 * np.pi * self.steps * self._clock_rate  # the beat's phase since reset, as the env computes it
        parts["clock"] = np.array([np.sin(angle), np.cos(angle)])
        angle = 2 * np.pi * ((self.steps * self._gait_rate) % 1.0)  # the scripted gait's phase, as the env's
        parts["gait_phase"] = np.array([np.sin(angle), np.cos(angle)])
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
        action, targets, *memory = self.session.run(self._outputs, {"obs": obs, **self.memory})
        for (name, _, _), value in zip(self._memory, memory):
            self.memory[name] = value
        self.last_action = action[0].astype(np.float64)
        self.gravity = self._gravity_next  # the estimate the policy acted on is the filter's state
        if self._history_length:  # what the policy acted on becomes the newest past frame
            k = len(self._frame)
            self._history = np.concatenate([self._frame, self._history[:len(self._history) - k]])
        if self._gait_targets is not None:  # a residual policy: the gait's targets plus the scaled action
            n = len(self._gait_targets)
            gait = self._gait_targets[self.steps % n if self._gait_cycle else min(self.steps, n - 1)]
            targets = np.clip(gait + self._gain * self.last_action, self._low, self._high)[None]
        self.steps += 1
        return targets[0].astype(np.float64)

    def example_readings(self) -> dict:
        """A valid sensor dict for every input: the home pose at rest, level, no echo, nothing in view, the
        trained behaviour (for trying the runtime, and timing it)."""
        out: dict = {}
        for name, size in self.terms:
            if name in KEPT_BY_RUNTIME:
                continue
            if name == "joint_pos":
                out[name] = self.home.copy()
            elif name == "projected_gravity":
                out[name] = np.array([0.0, 0.0, -1.0])
            elif name == "imu":
                out[name] = np.array([0.0, 0.0, 9.80665, 0.0, 0.0, 0.0])
            elif name == "ultrasonic":
                out["ultrasonic_m"] = -1.0
            elif name == "camera":
                cam = self.sensors["camera"]
                out["height_image" if cam["depth"] == "height" else "depth_image"] = np.zeros((cam["height"],
                                                                                              cam["width"]))
            elif name == "behaviour":
                out[name] = next(t for t in self.spec["observation"]["terms"] if t["name"] == name)["trained"]
            else:
                out[name] = np.zeros(size)
        if "imu" in self.inputs and "imu" not in out:  # the attitude filter's readings, for a policy without `imu`
            out["imu"] = np.array([0.0, 0.0, 9.80665, 0.0, 0.0, 0.0])
        return out

    # -- readings ---------------------------------------------------------------------------------------------

    def _missing(self, name: str) -> KeyError:
        others = [k for k in readings_of(name, self.sensors) if k != name]
        alternatives = f" (or {', '.join(others)})" if others else ""
        return KeyError(f"missing sensor reading '{name}'{alternatives}; this policy needs {', '.join(self.inputs)}")

    def _reading(self, sensors: dict, name: str) -> np.ndarray:
        if name not in sensors:
            return self._converted(sensors, name)
        value = sensors[name]
        if name == "behaviour" and isinstance(value, str):
            return self.behaviour_onehot(value)
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if name == "joint_pos":  # encoders read absolute angles; the policy sees offsets from home
            return value - self.home
        return value

    def _converted(self, sensors: dict, name: str) -> np.ndarray:
        """A term from another form of the reading (READINGS), or a KeyError naming what is missing."""
        if name == "projected_gravity" and "base_quat" in sensors:
            return projected_gravity(sensors["base_quat"])
        if name == "imu" and "accelerometer" in sensors and "gyroscope" in sensors:
            return np.concatenate([np.asarray(sensors[k], dtype=np.float64).reshape(-1)
                                   for k in ("accelerometer", "gyroscope")])
        if name == "ultrasonic" and ("ultrasonic_m" in sensors or "ultrasonic_cm" in sensors):
            return self.ultrasonic_features(sensors["ultrasonic_m"] if "ultrasonic_m" in sensors
                                            else float(sensors["ultrasonic_cm"]) / 100.0)
        if name == "camera" and "height_image" in sensors:
            return self.height_features(sensors["height_image"])
        if name == "camera" and ("depth_image" in sensors or "depth_image_planar" in sensors):
            planar = "depth_image" not in sensors
            return self.depth_features(sensors["depth_image_planar" if planar else "depth_image"], planar)
        if name == "touch" and "touch" in self.sensors:
            names = [s["name"] for s in self.sensors["touch"]["sensors"]]
            if all(n in sensors for n in names):
                return np.array([float(sensors[n]) for n in names])
            missing = [n for n in names if n not in sensors]
            raise KeyError(f"missing sensor reading '{missing[0]}' (or 'touch' for all of {', '.join(names)}); "
                           f"this policy needs {', '.join(self.inputs)}")
        raise self._missing(name)

    def behaviour_onehot(self, name: str) -> np.ndarray:
        """The `behaviour` input for the behaviour `name`."""
        if name not in self.behaviours:
            raise ValueError(f"unknown behaviour '{name}'; this policy knows {', '.join(self.behaviours)}")
        out = np.zeros(len(self.behaviours))
        out[self.behaviours.index(name)] = 1.0
        return out

    def ultrasonic_features(self, reading_m) -> np.ndarray:
        """[echo flag, distance m] from the driver's reading (m): negative (the driver's -1), non-finite or beyond
        max_range is no echo, [0, max_range]; else [1, the reading clipped to min_range .. max_range]."""
        s = self.sensors["ultrasonic"]
        r = np.asarray(reading_m, dtype=np.float64)
        if r.size != 1:
            raise ValueError(f"sensor reading 'ultrasonic_m'/'ultrasonic_cm' has shape {r.shape}; the policy needs "
                             "one distance")
        r = float(r.reshape(-1)[0])
        if not (math.isfinite(r) and 0.0 <= r <= s["max_range_m"]):
            return np.array([0.0, s["max_range_m"]])
        return np.array([1.0, min(max(r, s["min_range_m"]), s["max_range_m"])])

    def depth_features(self, image, planar: bool = False) -> np.ndarray:
        """The `camera` input from a depth image (rows, columns) in metres: along each pixel's ray, or along the
        optical axis if `planar`, converted to the policy's convention; 0, negative or non-finite pixels
        (nothing measured) read max_depth; clipped to max_depth, divided by it if the policy was trained so;
        the rows one after another."""
        s = self.sensors["camera"]
        key = "depth_image_planar" if planar else "depth_image"
        if s["depth"] == "height":
            raise ValueError(f"sensor reading '{key}': this policy reads a height image (policy.json's "
                             "sensors.camera.depth 'height'): give 'height_image', each pixel's height (m) above "
                             "the floor")
        image = np.asarray(image, dtype=np.float64)
        if image.shape != (s["height"], s["width"]):
            raise ValueError(f"sensor reading '{key}' has shape {image.shape}; the policy needs ({s['height']}, "
                             f"{s['width']}) (rows, columns)")
        hit = np.isfinite(image) & (image > 0)
        depth = np.where(hit, image, 0.0)
        if planar and s["depth"] == "range":  # 'depth_image' is already in the policy's own convention
            depth = depth / self._cosines
        depth = np.where(hit, np.clip(depth, 0.0, s["max_depth_m"]), s["max_depth_m"])
        if s["normalize"]:
            depth = depth / s["max_depth_m"]
        return depth.reshape(-1)

    def height_features(self, image) -> np.ndarray:
        """The `camera` input of a policy trained on a height image (depth "height") from one (rows, columns): each
        pixel the height (m) above the floor of the point it sees, non-finite pixels (nothing measured) 0; the
        rows one after another."""
        s = self.sensors["camera"]
        if s["depth"] != "height":
            raise ValueError("sensor reading 'height_image': this policy reads a depth image (policy.json's "
                             f"sensors.camera.depth '{s['depth']}'): give 'depth_image' or 'depth_image_planar'")
        image = np.asarray(image, dtype=np.float64)
        if image.shape != (s["height"], s["width"]):
            raise ValueError(f"sensor reading 'height_image' has shape {image.shape}; the policy needs "
                             f"({s['height']}, {s['width']}) (rows, columns)")
        return np.where(np.isfinite(image), image, 0.0).reshape(-1)
