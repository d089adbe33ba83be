"""What every input of an exported policy is: units, the robot-side source, and the layout of the sensors.

policy.json's `observation.terms` and its `sensors` block are written from here, for a robot integrator to
build the observation vector from its own drivers (or to check what legkit.runtime builds from them):
each term says its units, where on the robot the reading comes from, in which frame, and which keys of
the runtime's sensor dict it accepts; `sensors` says where each sensor sits on the robot and how it was
modelled in training (rate, range, field of view, noise).
"""

from __future__ import annotations

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.runtime import KEPT_BY_RUNTIME, readings_of
from legkit.sim.sensors import NO_ECHO

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
"""Units and source of the terms whose meaning does not depend on the task's sensor settings."""

OPERATOR = ("command", "target_height", "behaviour")
"""Terms the operator (a joystick, a planner) gives, not a sensor."""

SERVO_SOURCE = {
    "joint_pos": "; hobby servos: a servo without position read-back has no such reading, and an estimate must stand "
                 "in (e.g. the commanded setpoint moved toward the target at most max_speed, as the simulator's servo "
                 "model moves it)",
    "joint_vel": "; hobby servos: a servo without read-back has no such reading, and an estimate must stand in (e.g. "
                 "the rate of that setpoint)",
}
"""What joint_pos and joint_vel say in addition for a robot of hobby servos (RobotSpec.extra["max_joint_speed"])."""


def _mount(model: mujoco.MjModel, site: str) -> dict:
    """Where site `site` sits: its body, and its position (m) and orientation (w, x, y, z) in that body's frame."""
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
    if sid < 0:
        raise LegkitError(f"the robot model has no site named '{site}' (a sensor of the task sits on it)")
    return {"site": site, "body": model.body(int(model.site_bodyid[sid])).name,
            "pos": [round(float(x), 6) for x in model.site_pos[sid]],
            "quat": [round(float(x), 6) for x in model.site_quat[sid]]}


def _sensor_site(model: mujoco.MjModel, sensor: str) -> str:
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, sensor)
    if sid < 0:
        raise LegkitError(f"the robot model has no sensor named '{sensor}'")
    return model.site(int(model.sensor_objid[sid])).name


def _frame(mount: dict, base_body: str) -> str:
    aligned = mount["body"] == base_body and np.allclose(mount["quat"], [1.0, 0.0, 0.0, 0.0])
    return ("the body frame (x forward, y left, z up)" if aligned else
            f"the frame of site '{mount['site']}' (its pose in body '{mount['body']}': sensors.*.pos, quat)")


def sensor_layout(task, model: mujoco.MjModel, robot) -> dict:
    """The task's sensors as policy.json's `sensors` block: mount, frame, units, rate, range and training noise."""
    cfg, out = task.sensors, {}
    if cfg.imu is not None:
        c = cfg.imu
        mount = _mount(model, _sensor_site(model, c.accelerometer))
        out["imu"] = {
            "term": "imu", **mount, "frame": _frame(mount, robot.base_body),
            "components": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
            "units": ["m/s^2"] * 3 + ["rad/s"] * 3,
            "accelerometer": "specific force (gravity included): (0, 0, +9.81) level and at rest",
            "full_scale": [c.acc_range, c.gyro_range], "bits": c.bits, "rate_hz": c.rate_hz,
            "training_noise": {"acc_noise_std": c.acc_noise_std, "gyro_noise_std": c.gyro_noise_std,
                               "acc_bias_std": c.acc_bias_std, "gyro_bias_std": c.gyro_bias_std},
        }
    if cfg.ultrasonic is not None:
        c = cfg.ultrasonic
        mount = _mount(model, c.site)
        out["ultrasonic"] = {
            "term": "ultrasonic", **mount, "beam_axis": "+x of the site", "half_angle_deg": c.half_angle_deg,
            "min_range_m": c.min_range, "max_range_m": c.max_range, "driver_no_echo": NO_ECHO,
            "max_incidence_deg": c.max_incidence_deg, "rate_hz": c.rate_hz,
            "training_noise": {"noise_std_m": c.noise_std},
        }
    if cfg.camera is not None:
        c = cfg.camera
        out["camera"] = {
            "term": "camera", **_mount(model, c.site), "optical_axis": "+x of the site (y left, z up)",
            "width": c.width, "height": c.height, "hfov_deg": c.hfov_deg, "vfov_deg": c.vfov_deg,
            "focal_px": c.focal_px, "supersample": c.supersample,
            "projection": ("pinhole, square pixels, one ray through each pixel centre" if c.supersample == 1 else
                           f"pinhole, square pixels; each pixel the highest hit of {c.supersample} x "
                           f"{c.supersample} rays through the centres of equal parts of its footprint (a "
                           "full-resolution height image max-pooled to this size)" if c.depth == "height" else
                           f"pinhole, square pixels; each pixel the nearest of {c.supersample} x {c.supersample} "
                           "rays through the centres of equal parts of its footprint (a full-resolution depth "
                           "image min-pooled to this size)"),
            "depth": c.depth, "max_depth_m": c.max_depth, "normalize": c.normalize,
            "order": "row-major: row 0 is the top (+z), column 0 the left (+y), as a picture seen from behind "
                     "the camera; the term is the rows one after another",
            "rate_hz": c.rate_hz, "training_noise": {"noise_std_m": c.noise_std},
        }
    if cfg.touch:
        out["touch"] = {"term": "touch", "units": "N", "sensors": [
            {"name": name, **_mount(model, _sensor_site(model, name))} for name in cfg.touch]}
    return out


def _readings(name: str, sensors: dict) -> str:
    """The keys of legkit.runtime's sensor dict that give term `name` (runtime.readings_of), as policy.json says
    them."""
    out = []
    for key in readings_of(name, sensors):
        if key == "each touch sensor by name":
            key = " + ".join(t["name"] for t in sensors["touch"]["sensors"])
        out.append(" + ".join(f"'{k}'" for k in key.replace(" + ", "+").split("+")))
    return " or ".join(out)


def _describe(name: str, size: int, task, robot, sensors: dict) -> dict:
    """Units, source and (where useful) the names of the entries of observation term `name`."""
    servo = bool(robot.extra.get("max_joint_speed"))
    if name == "imu":
        s = sensors["imu"]
        return {"units": "m/s^2 (accelerometer x, y, z), then rad/s (gyroscope x, y, z)", "components": s["components"],
                "source": f"the 6-axis IMU on site '{s['site']}' (body '{s['body']}'), in {s['frame']}: "
                          f"accelerometer then gyroscope, {s['accelerometer']}; full scale +-{s['full_scale'][0]:.4g} "
                          f"m/s^2 and +-{s['full_scale'][1]:.4g} rad/s (convert the driver's raw counts to these "
                          f"units); trained on readings at {s['rate_hz']:g} Hz held between reads: pass the latest"}
    if name == "attitude":
        imu = task.sensors.imu
        return {"units": "unit vector", "components": ["x", "y", "z"], "gain": imu.attitude_gain,
                "step_s": task.control_dt,
                "source": f"the gravity direction in the IMU's frame ((0, 0, -1) level), estimated from the 'imu' "
                          f"reading by a complementary filter (legkit.runtime.attitude_step): at every control step "
                          f"(step_s = {task.control_dt:g} s) the gyroscope turns the estimate and the accelerometer "
                          f"pulls it with weight gain = {imu.attitude_gain:g}, starting from the accelerometer alone "
                          f"after reset(); kept by the runtime, which runs the filter on the latest IMU reading: "
                          f"pass it at every step()"}
    if name == "ultrasonic":
        s = sensors["ultrasonic"]
        lo, hi = s["min_range_m"], s["max_range_m"]
        return {"units": "echo flag (1 or 0), m", "components": ["echo", "distance"],
                "source": f"the ultrasonic range finder on site '{s['site']}' (body '{s['body']}', beam along the "
                          f"site's +x, a {s['half_angle_deg']:g} deg half-angle cone): [1, distance] for an echo, "
                          f"the distance clipped to {lo:g} .. {hi:g} m; [0, {hi:g}] for none (the driver's "
                          f"{NO_ECHO:g}: no echo before its timeout, and any echo beyond {hi:g} m); the runtime "
                          f"converts the driver's reading in metres or centimetres; read at {s['rate_hz']:g} Hz"}
    if name == "camera":
        s = sensors["camera"]
        if s["depth"] == "height":
            return {"units": "m", "source": (
                f"a {s['height']} x {s['width']} (rows x columns) height image from site '{s['site']}' (body "
                f"'{s['body']}', optical axis its +x), {s['hfov_deg']:g} x {s['vfov_deg']:.1f} deg field of view, "
                f"{s['projection']}: each pixel the height above the floor the robot stands on of the point its ray "
                f"meets within {s['max_depth_m']:g} m, 0 where it meets nothing; "
                f"{s['order']}; {s['rate_hz']:g} frames/s held between frames. On a robot: a depth estimate of "
                "this size and field of view, each point placed by the camera's pose above the floor (the IMU's "
                "attitude, the head and leg joints' kinematics)")}
        depth = ("distance along each pixel's ray" if s["depth"] == "range" else
                 "distance along the optical axis (a z-buffer)")
        units = "fraction of max_depth" if s["normalize"] else "m"
        return {"units": units,
                "source": f"a {s['height']} x {s['width']} (rows x columns) depth image from site '{s['site']}' (body "
                          f"'{s['body']}', optical axis its +x), {s['hfov_deg']:g} x {s['vfov_deg']:.1f} deg field of "
                          f"view, {s['projection']}, {depth}, clipped to {s['max_depth_m']:g} m (nothing within it reads "
                          f"{s['max_depth_m']:g}){', divided by it' if s['normalize'] else ''}; {s['order']}; "
                          f"{s['rate_hz']:g} frames/s held between frames. The simulated camera measures depth: on a "
                          "robot whose camera gives colour only (the PiDog's OV5647), a depth estimate of this size "
                          "and field of view must stand in"}
    if name == "touch":
        s = sensors["touch"]
        names = [t["name"] for t in s["sensors"]]
        return {"units": "N", "components": names,
                "source": f"touch sensor(s) {', '.join(names)}: normal contact force on the pad (N, 0 untouched). A "
                          "capacitive pad (the PiDog's head) reports touched or not, no force: the integrator maps "
                          "its reading to N"}
    if name == "behaviour":
        return {"units": "one-hot", "components": list(task.behaviours), "trained": task.behaviour,
                "source": f"the behaviour asked for, one-hot over {', '.join(task.behaviours)} (trained on "
                          f"'{task.behaviour}'); give the runtime its name"}
    if name == "clock":
        return {"units": "sin, cos", "components": ["sin", "cos"],
                "period_s": task.clock_period, "step_s": task.control_dt,
                "source": f"the phase of a {task.clock_period:.4g} s beat (the behaviour's cycle) since the episode "
                          f"started: (sin, cos) of 2 pi k (step_s / period_s), k the control steps since reset(), "
                          f"step_s = {task.control_dt:g} s; kept by the runtime, which counts its step() calls: call "
                          "step() at rate_hz and reset() when the episode starts"}
    if name == "gait_phase":
        g = task.gait
        return {"units": "sin, cos", "components": ["sin", "cos"], "period_s": g.cycle_time, "step_s": task.control_dt,
                "source": f"the phase of the scripted {g.type} (a {g.cycle_time:.4g} s cycle) the policy corrects: "
                          f"(sin, cos) of 2 pi k (step_s / period_s), k the control steps since reset(); kept by the "
                          "runtime with the gait's joint targets (policy.json `gait`): call step() at rate_hz and "
                          "reset() when the episode starts"}
    if name in ("joint_pos", "joint_vel", "last_action"):
        units, source = SOURCES[name]
        return {"units": units, "components": list(robot.joints),
                "source": source + (SERVO_SOURCE.get(name, "") if servo else "")}
    if name in SOURCES:
        units, source = SOURCES[name]
        return {"units": units, "source": source}
    return {"units": "", "source": "privileged simulator state"}


def term_records(layout: list, indices: list[int], task, robot, sensors: dict) -> list[dict]:
    """The exported observation's terms in input order: name, start, size, units, source, who provides it,
    the runtime's keys for it, training noise, and for sensor terms the entry names and sensor key."""
    blind = [name for name in task.observation_blind if name in {str(n) for n, _, _ in layout}]
    if blind:
        raise LegkitError(f"this policy was trained blind to {', '.join(blind)} (task.observation_blind: those inputs "
                          "read 0), an ablation: a robot's runtime would feed it real readings; export a policy "
                          "trained with the sensor, or without the term in task.observations")
    wanted, out, start = set(indices), [], 0
    for name, first, size in layout:
        first, size = int(first), int(size)
        inside = [i for i in range(first, first + size) if i in wanted]
        if not inside:
            continue
        if len(inside) != size:
            raise LegkitError(f"the actor reads part of observation term '{name}'; export needs whole terms")
        record = {"name": name, "start": start, "size": size, **_describe(name, size, task, robot, sensors)}
        record["provided_by"] = ("runtime" if name in KEPT_BY_RUNTIME else
                                 "operator" if name in OPERATOR else "robot")
        if record["provided_by"] != "runtime":
            record["reading"] = _readings(name, sensors)
        if name in sensors:
            record["sensor"] = name
        record["training_noise"] = task.observation_noise.get(name, 0.0)
        out.append(record)
        start += size
    return out


def servo_limits(robot) -> list[float | None]:
    """Each joint's servo speed limit (rad/s, RobotSpec.extra["max_joint_speed"]), None where none."""
    speeds = robot.extra.get("max_joint_speed")
    return [float(x) for x in speeds] if speeds else [None] * len(robot.joints)

