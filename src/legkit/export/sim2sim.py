"""`legkit sim2sim`: an exported policy, driven by legkit.runtime, in a plain MuJoCo loop on any MJCF of its robot.

Nothing of legkit's env is used: the model file is loaded as it is (a ground plane is added when it has
none) and joints are matched by name. A position policy's targets go to PD servos at the exported gains
and torque limits, one per joint, which replace the file's actuators: torque = kp (target - q) - kd qdot at
every physics step, as a robot's motor drivers do. The simulator options (timestep, integrator, solver
iterations) are set to the training's, recorded in policy.json, unless asked otherwise: the integrator
decides whether the PD's damping acts explicitly (euler: from each step's starting state) or implicitly
(implicitfast), and a policy judged under the other one is judged on another controller. Sensor readings
come from the free joint (IMU: angular velocity and orientation) and the joints (encoders); a policy that
reads the base velocity or height gets the simulator's true value, an ideal estimator. The result is legkit eval's metrics;
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


def load_model(path: Path, friction: float, pd: list[dict] | None = None) -> tuple[mujoco.MjModel, bool]:
    """The MJCF at `path`, compiled, with a ground plane of `friction` added when the world has none. With `pd`
    (policy.json's joints), the file's actuators are silenced and one PD servo per exported joint added, matched
    by name: torque = kp (target - q) - kd qdot at the exported gains, clipped to the torque limit."""
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # MuJoCo raises ValueError with the parser's message
        raise LegkitError(f"cannot load MJCF '{path}': {str(exc).splitlines()[0]}") from None
    added = not any(g.type in GROUND for g in spec.worldbody.geoms)
    if added:
        spec.worldbody.add_geom(name="sim2sim_ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                friction=[friction, 0.02, 0.01], priority=1)
    if pd is not None:
        names = {j.name for j in spec.joints}
        missing = [j["name"] for j in pd if j["name"] not in names]
        if missing:
            raise LegkitError(f"the model has no joints named {', '.join(missing)}; the policy drives "
                              + ", ".join(j["name"] for j in pd))
        for act in spec.actuators:  # silenced, not deleted: sensors may name them
            act.gaintype, act.biastype = mujoco.mjtGain.mjGAIN_FIXED, mujoco.mjtBias.mjBIAS_NONE
            act.gainprm, act.biasprm = [0.0] * 10, [0.0] * 10
        for j in pd:
            limit = j["torque_limit"]
            spec.add_actuator(name=f"sim2sim_pd_{j['name']}", target=j["name"], trntype=mujoco.mjtTrn.mjTRN_JOINT,
                              gaintype=mujoco.mjtGain.mjGAIN_FIXED, gainprm=[j["kp"]] + [0.0] * 9,
                              biastype=mujoco.mjtBias.mjBIAS_AFFINE, biasprm=[0.0, -j["kp"], -j["kd"]] + [0.0] * 7,
                              forcelimited=limit is not None,
                              forcerange=[-limit, limit] if limit is not None else [0.0, 0.0])
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
        limited = m.jnt_limited[ids].astype(bool)
        self.low = np.where(limited, m.jnt_range[ids, 0], -np.inf)
        self.high = np.where(limited, m.jnt_range[ids, 1], np.inf)
        self.position = spec["control"]["mode"] == "position"
        # A position policy drives the PD servos load_model put in; a torque policy the model's own motors.
        act_names = [f"sim2sim_pd_{n}" for n in names] if self.position else [j["actuator"] for j in spec["joints"]]
        acts = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in act_names]
        if min(acts) < 0:
            raise LegkitError("the model lacks actuators named as the policy's: "
                              + ", ".join(n for n, a in zip(act_names, acts) if a < 0))
        self.actuators = np.asarray(acts, dtype=np.int64)
        self.applied = AppliedTorque(m, self.actuators)
        """The torques the actuators applied over a step (the PD's damping is implicit under implicitfast)."""
        # The base's own geoms: touching the ground with them is a fall.
        self.base_geoms = set(np.flatnonzero(m.geom_bodyid == self.base_body).tolist())
        self.ground_geoms = set(np.flatnonzero(np.isin(m.geom_type, [int(g) for g in GROUND])).tolist())


def apply_physics(m: mujoco.MjModel, physics: dict | None) -> dict:
    """Set the simulator options the policy was trained under (`physics`: policy.json's sim2sim.physics) on `m`;
    returns {option: [file's value, applied value]} for each one that changed. Options are settings of the
    simulator, not of the robot: the integrator decides how the PD's damping acts, and a policy judged under
    another one is judged on a different controller."""
    from legkit.sim.scene import INTEGRATORS, SOLVERS

    if not physics:
        return {}
    names = {"integrator": INTEGRATORS, "solver": SOLVERS}
    changed = {}
    for key, value in physics.items():
        new = int(names[key][value]) if key in names else value
        old = getattr(m.opt, key)
        if old != new:
            before = next((n for n, v in names[key].items() if int(v) == old), old) if key in names else old
            changed[key] = [before, value]
            setattr(m.opt, key, new)
    return changed


def sim2sim(export: Path, model_path: Path, episodes: int = 10, command: tuple[float, float, float] | None = None,
            seconds: float | None = None, seed: int = 0, file_physics: bool = False, starts: dict | None = None) -> dict:
    """Run `episodes` episodes of the export in `model_path`; returns {"model", "episodes", "command",
    "metrics", "ground_added", "physics_changed"}. With `command` None each episode draws one from the exported
    ranges. The simulator options (timestep, integrator, solver and its iterations) are the training's, from
    policy.json, unless `file_physics` keeps the model file's own. `starts` (a legkit eval Trace's `start`) gives
    each episode's initial state, joints matched by name, in place of drawn ones: paired episodes."""
    runtime = PolicyRuntime(export)
    spec = runtime.spec
    position = spec["control"]["mode"] == "position"
    m, ground_added = load_model(model_path, spec["sim2sim"]["floor_friction"], spec["joints"] if position else None)
    changed = {} if file_physics else apply_physics(m, spec["sim2sim"].get("physics"))
    robot = Robot(m, spec)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    control_dt = 1.0 / runtime.rate_hz
    substeps = max(1, int(round(control_dt / m.opt.timestep)))
    steps = int(round((seconds or spec["sim2sim"]["episode_seconds"]) / control_dt))
    term, reset = spec["termination"], spec["sim2sim"]["reset"]
    touch_ends = term["base_contact_force"] < 1e8  # a task that sets it huge never ends on contact
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
        d.qpos[robot.qpos] = np.clip(runtime.home + rng.uniform(-reset["joint_pos_noise"], reset["joint_pos_noise"],
                                                                len(robot.qpos)), robot.low, robot.high)
        noise = reset.get("base_vel_noise", 0.0)  # as legkit's resets: the base's 6 velocities, uniform
        d.qvel[robot.base_dof:robot.base_dof + 6] = rng.uniform(-noise, noise, 6)
        if starts is not None:
            if ep >= len(starts["base_qpos"]):
                raise LegkitError(f"{episodes} episodes asked but {len(starts['base_qpos'])} initial states given")
            d.qpos[b:b + 7], d.qvel[robot.base_dof:robot.base_dof + 6] = starts["base_qpos"][ep], starts["base_qvel"][ep]
            where = {n: i for i, n in enumerate(starts["joints"])}
            order = [where[j["name"]] for j in spec["joints"]]
            d.qpos[robot.qpos], d.qvel[robot.dof] = starts["joint_pos"][ep, order], starts["joint_vel"][ep, order]
        mujoco.mj_forward(m, d)
        runtime.reset()
        for t in range(steps):
            targets = runtime.step(_sensors(d, robot, cmd, spec))
            power = 0.0
            d.ctrl[robot.actuators] = targets  # joint targets for the PD servos, or motor commands
            for _ in range(substeps):
                qd = d.qvel[robot.dof].copy()
                mujoco.mj_step(m, d)
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
            "physics_changed": changed,
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


def eval_reference(spec: str, command: tuple[float, float, float], episodes: int, seconds: float | None = None):
    """legkit eval's Trace of policy `spec` (RUN or pretrained:NAME) under `command` held for whole episodes of
    `seconds` (s; default the task's); its `start` holds each episode's initial state."""
    from legkit.evaluate.rollout import load_run_config, rollout
    from legkit.evaluate.sweep import fixed_command
    from legkit.train.runs import find_policy, resolve_run

    policy = find_policy(resolve_run(spec), None)
    cfg = load_run_config(policy)
    cfg = replace(cfg, task=fixed_command(cfg.task, *command))
    steps = None if seconds is None else int(round(seconds / cfg.task.control_dt))
    return rollout(policy, episodes, cfg, max_steps=steps)


def against_eval(spec: str, ref: dict, result: dict) -> dict:
    """The eval metrics `ref` of policy `spec` beside the sim2sim `result`: each compared metric with its relative
    difference."""
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
