"""`legkit sim2sim`: an exported policy, driven by legkit.runtime, in a plain MuJoCo loop on any MJCF of its robot.

Nothing of legkit's env is used: the model file is loaded as it is (a ground plane is added when it has
none), joints are matched by name, the actuators are switched off and the loop runs its own PD at the
exported gains at every physics step, as a robot's motor drivers do. Sensor readings come from the free
joint (IMU: angular velocity and orientation) and the joints (encoders); a policy that reads the base
velocity or height gets the simulator's true value, an ideal estimator. The result is legkit eval's metrics;
mechanical power is measured as eval measures it (sim/power.py), at every physics step with the applied torque.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import Trace
from legkit.runtime import PolicyRuntime
from legkit.sim.power import AppliedTorque, joint_power
from legkit.tasks.state import quat_rotate_inverse

GROUND = (mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_HFIELD)


def load_model(path: Path, friction: float) -> tuple[mujoco.MjModel, bool]:
    """The MJCF at `path`, compiled, with a ground plane of `friction` added when the world has none."""
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # MuJoCo raises ValueError with the parser's message
        raise LegkitError(f"cannot load MJCF '{path}': {str(exc).splitlines()[0]}") from None
    added = not any(g.type in GROUND for g in spec.worldbody.geoms)
    if added:
        spec.worldbody.add_geom(name="sim2sim_ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                friction=[friction, 0.02, 0.01], priority=1)
    return spec.compile(), added


class Robot:
    """Addresses of the exported joints and of the floating base in a model that may not be legkit's."""

    def __init__(self, m: mujoco.MjModel, spec: dict):
        free = np.flatnonzero(m.jnt_type == mujoco.mjtJoint.mjJNT_FREE)
        if len(free) != 1:
            raise LegkitError(f"the model has {len(free)} free joints; sim2sim needs one floating base")
        self.base_qpos, self.base_dof = int(m.jnt_qposadr[free[0]]), int(m.jnt_dofadr[free[0]])
        self.base_body = int(m.jnt_bodyid[free[0]])
        names = [j["name"] for j in spec["joints"]]
        ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in names]
        missing = [n for n, i in zip(names, ids) if i < 0]
        if missing:
            raise LegkitError(f"the model has no joints named {', '.join(missing)}; the policy drives {', '.join(names)}")
        self.qpos = m.jnt_qposadr[ids].astype(np.int64)
        self.dof = m.jnt_dofadr[ids].astype(np.int64)
        self.position = spec["control"]["mode"] == "position"
        if not self.position:  # a torque policy drives the model's own motors, matched by name
            acts = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j["actuator"]) for j in spec["joints"]]
            if min(acts) < 0:
                raise LegkitError("the model lacks actuators named as the policy's: "
                                  + ", ".join(j["actuator"] for j, a in zip(spec["joints"], acts) if a < 0))
            self.actuators = np.asarray(acts, dtype=np.int64)
            self.applied = AppliedTorque(m, self.actuators)
        # The base's own geoms: touching the ground with them is a fall.
        self.base_geoms = set(np.flatnonzero(m.geom_bodyid == self.base_body).tolist())
        self.ground_geoms = set(np.flatnonzero(np.isin(m.geom_type, [int(g) for g in GROUND])).tolist())


def sim2sim(export: Path, model_path: Path, episodes: int = 10, command: tuple[float, float, float] | None = None,
            seconds: float | None = None, seed: int = 0) -> dict:
    """Run `episodes` episodes of the export in `model_path`; returns {"model", "episodes", "command",
    "metrics", "ground_added"}. With `command` None each episode draws one from the exported ranges."""
    runtime = PolicyRuntime(export)
    spec = runtime.spec
    m, ground_added = load_model(model_path, spec["sim2sim"]["floor_friction"])
    if spec["control"]["mode"] == "position":
        m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_ACTUATION)  # the loop's PD drives the joints
    robot = Robot(m, spec)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    control_dt = 1.0 / runtime.rate_hz
    substeps = max(1, int(round(control_dt / m.opt.timestep)))
    steps = int(round((seconds or spec["sim2sim"]["episode_seconds"]) / control_dt))
    term, reset = spec["termination"], spec["sim2sim"]["reset"]
    touch_ends = term["base_contact_force"] < 1e8  # a task that sets it huge never ends on contact
    offset, gain = np.array(spec["control"]["offset"]), np.array(spec["control"]["gain"])
    limit = np.array([j["torque_limit"] or np.inf for j in spec["joints"]])
    ranges = spec["commands"]
    shape = (steps, episodes)
    rec = {"alive": np.zeros(shape, bool), "vel": np.zeros(shape + (3,)), "command": np.zeros(shape + (3,)),
           "height": np.zeros(shape), "action_abs": np.zeros(shape), "power": np.zeros(shape)}
    terminated, length = np.zeros(episodes, bool), np.zeros(episodes, np.int64)
    for ep in range(episodes):
        cmd = np.array(command if command is not None else
                       [rng.uniform(*ranges[k]) for k in ("lin_vel_x", "lin_vel_y", "ang_vel_yaw")])
        mujoco.mj_resetData(m, d)
        b = robot.base_qpos
        d.qpos[b + 2] = reset["base_height"]
        yaw = rng.uniform(-reset["yaw_range"], reset["yaw_range"])
        d.qpos[b + 3:b + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        d.qpos[robot.qpos] = runtime.home + rng.uniform(-reset["joint_pos_noise"], reset["joint_pos_noise"],
                                                        len(robot.qpos))
        mujoco.mj_forward(m, d)
        runtime.reset()
        for t in range(steps):
            targets = runtime.step(_sensors(d, robot, cmd, spec))
            power = 0.0
            for _ in range(substeps):
                qd = d.qvel[robot.dof].copy()
                if robot.position:
                    tau = np.clip(runtime.kp * (targets - d.qpos[robot.qpos]) - runtime.kd * qd, -limit, limit)
                    d.qfrc_applied[robot.dof] = tau
                else:
                    d.ctrl[robot.actuators] = targets
                mujoco.mj_step(m, d)
                if not robot.position:  # the force the step computed, as the integrator applied it
                    tau = robot.applied(d.actuator_force[robot.actuators], qd, d.qvel[robot.dof])
                power += float(joint_power(tau, d.qvel[robot.dof]))  # as legkit eval: every physics step
            quat = d.qpos[b + 3:b + 7][None]
            lin = quat_rotate_inverse(quat, d.qvel[robot.base_dof:robot.base_dof + 3][None])[0]
            rec["alive"][t, ep] = True
            rec["vel"][t, ep] = [lin[0], lin[1], d.qvel[robot.base_dof + 5]]
            rec["command"][t, ep] = cmd
            rec["height"][t, ep] = d.qpos[b + 2]
            rec["action_abs"][t, ep] = float(np.mean(np.abs(runtime.last_action)))
            rec["power"][t, ep] = power / substeps
            length[ep] = t + 1
            fell = d.qpos[b + 2] < term["min_base_height"] or (touch_ends and _base_touches(d, robot))
            if t + 1 > term["grace_steps"] and fell:
                terminated[ep] = True
                break
    trace = Trace(reward=np.zeros(shape), terminated=terminated, length=length, dt=control_dt, max_steps=steps,
                  mass=float(np.sum(m.body_mass)), **rec)
    metrics = compute_metrics(trace)
    metrics["mean_return"] = None  # no reward outside the task
    return {"export": str(export), "model": str(model_path), "episodes": episodes, "seed": seed,
            "command": list(command) if command is not None else None, "ground_added": ground_added,
            "metrics": metrics}


def _sensors(d: mujoco.MjData, robot: Robot, cmd: np.ndarray, spec: dict) -> dict:
    """What a robot would read: IMU rate and orientation, encoders, the command; velocity and height from the
    simulator for policies that read them (an ideal estimator)."""
    b, v = robot.base_qpos, robot.base_dof
    quat = d.qpos[b + 3:b + 7].copy()
    out = {"base_ang_vel": d.qvel[v + 3:v + 6].copy(), "base_quat": quat, "joint_pos": d.qpos[robot.qpos].copy(),
           "joint_vel": d.qvel[robot.dof].copy(), "command": cmd}
    names = {t["name"] for t in spec["observation"]["terms"]}
    if "base_lin_vel" in names:
        out["base_lin_vel"] = quat_rotate_inverse(quat[None], d.qvel[v:v + 3][None])[0]
    if "base_height" in names:
        out["base_height"] = np.array([d.qpos[b + 2]])
    if "target_height" in names:
        out["target_height"] = np.array([spec["commands"]["target_height"]])
    return out


def _base_touches(d: mujoco.MjData, robot: Robot) -> bool:
    for i in range(d.ncon):
        c = d.contact[i]
        g1, g2 = int(c.geom1), int(c.geom2)
        if (g1 in robot.base_geoms and g2 in robot.ground_geoms) or (g2 in robot.base_geoms and g1 in robot.ground_geoms):
            return True
    return False


COMPARED = ("mean_forward_velocity", "linear_velocity_tracking_rms", "survival_rate", "mean_base_height",
            "energy_per_metre_J")


def against_eval(spec: str, result: dict, command: tuple[float, float, float], episodes: int,
                 seconds: float | None = None) -> dict:
    """legkit eval of policy `spec` (RUN or pretrained:NAME) under `command` held for whole episodes of `seconds`
    (s; default the task's), beside the sim2sim `result`: each compared metric with its relative difference."""
    from legkit.evaluate.rollout import load_run_config, rollout
    from legkit.evaluate.sweep import fixed_command
    from legkit.train.runs import find_policy, resolve_run

    policy = find_policy(resolve_run(spec), None)
    cfg = load_run_config(policy)
    cfg = replace(cfg, task=fixed_command(cfg.task, *command))
    steps = None if seconds is None else int(round(seconds / cfg.task.control_dt))
    ref = compute_metrics(rollout(policy, episodes, cfg, max_steps=steps))
    rows = {}
    for key in COMPARED:
        a, b = ref.get(key), result["metrics"].get(key)
        if a is None or b is None:
            continue
        rows[key] = {"eval": a, "sim2sim": b, "relative": (b - a) / abs(a) if a else None}
    return {"policy": spec, "metrics": rows}


def read_export(folder: Path) -> dict:
    """policy.json of an export folder, or a one-line error naming what is missing."""
    path = folder / "policy.json"
    if not path.exists():
        raise LegkitError(f"'{folder}' is not an export folder (no policy.json); make one with legkit export RUN --out DIR")
    return json.loads(path.read_text())
