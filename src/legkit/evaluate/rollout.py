"""Deterministic evaluation rollouts of a saved policy: every episode runs as one robot of a batch."""

from __future__ import annotations

from dataclasses import dataclass, replace

import mujoco
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from legkit import EVAL_SEED, LegkitError
from legkit.config import apply_sets, from_dict, load_yaml, to_dict
from legkit.envs.core import LeggedBatch
from legkit.evaluate.gait import left_right_pairs
from legkit.tasks.config import PushConfig, ValidationConfig, undisturbed
from legkit.tasks.observations import layout_difference
from legkit.train.config import Config, build_config, validate
from legkit.train.policies import PolicyActor
from legkit.train.runs import Policy
from legkit.train.trainer import load_model, read_normalization


@dataclass
class Trace:
    """Per-step records of an evaluation, arrays of shape (steps, episodes) unless noted."""

    alive: np.ndarray
    """True while the episode has not ended (the step that ends it counts as alive)."""
    vel: np.ndarray
    """Measured (vx, vy, yaw rate) in the body frame, (steps, episodes, 3)."""
    command: np.ndarray
    """Commanded (vx, vy, yaw rate), (steps, episodes, 3)."""
    height: np.ndarray
    action_abs: np.ndarray
    """Mean |action| over joints."""
    power: np.ndarray
    """Mechanical power of the joint actuators, sum |tau * qdot| (W), averaged over the control step's physics
    steps with the torque each applied (sim/power.py)."""
    reward: np.ndarray
    """The task's reward (the training reward, before any normalization)."""
    terminated: np.ndarray
    """(episodes,) whether each episode ended in a fall."""
    length: np.ndarray
    """(episodes,) control steps of each episode."""
    dt: float
    max_steps: int
    mass: float = 0.0
    """Total mass of the robot (kg), the sum of the model's body masses (the nominal model's when randomized)."""
    obstacle_contact: np.ndarray | None = None
    """(steps, episodes) bool: whether the robot touched an arena obstacle or wall at any physics substep of the
    step (the arena's contact sensors); None for tasks without an arena (task.arena.enabled false)."""
    obstacle_kinds: tuple[str, ...] = ()
    """What the last axis of `obstacle_contact_by_kind` tells apart (Arena.contact_kinds: box, low, narrow, wall)."""
    obstacle_contact_by_kind: np.ndarray | None = None
    """(steps, episodes, kinds) bool: `obstacle_contact` per kind of obstacle."""
    feet: tuple[str, ...] = ()
    """Foot names, in the order of the last axis of the foot arrays."""
    foot_force: np.ndarray | None = None
    """Touch force of each foot (N) at every physics substep, (steps * decimation, episodes, feet); the foot
    arrays are None for robots without foot position and velocity sensors."""
    foot_height: np.ndarray | None = None
    """Height (m) of each foot's lowest point above the ground under it: foot centre minus foot radius minus the
    ground's height there (z = 0 on a plane)."""
    foot_speed: np.ndarray | None = None
    """Horizontal (world xy) speed of each foot (m/s)."""
    foot_pairs: tuple[tuple[int, int], ...] = ()
    """(left, right) foot indices of each leg pair, from the feet's positions in the model's reference pose."""
    substep_dt: float = 0.0
    """Time between two samples of the foot arrays (s): the physics timestep."""
    start: dict | None = None
    """Each episode's initial state, free of legkit's model layout: "base_qpos" (episodes, 7: position and
    quaternion), "base_qvel" (episodes, 6: the free joint's velocities), "joint_pos" and "joint_vel" (episodes,
    joints) of the joints named in "joints". `legkit sim2sim --against` starts its episodes from them."""


class FootSensors:
    """The feet's touch force, height and horizontal speed at every physics substep (the batch's foot sensors), and
    the left-right foot pairs."""

    def __init__(self, batch: LeggedBatch):
        m, r = batch.model, batch.robot
        if batch.foot_pos is None or len(batch.foot_sensors) != len(r.feet):
            raise LegkitError(f"robot '{r.name}' must name one touch, framepos and framelinvel sensor per foot "
                              f"({len(r.feet)} feet) for gait metrics")
        geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name) for name in r.feet]
        if any(m.geom_type[g] != mujoco.mjtGeom.mjGEOM_SPHERE for g in geoms):
            raise LegkitError(f"gait metrics need sphere foot geoms; robot '{r.name}' feet are {r.feet}")
        self.batch = batch
        data = mujoco.MjData(m)  # the reference pose: base at the origin, unrotated (x forward, y left)
        mujoco.mj_forward(m, data)
        self.pairs = left_right_pairs(data.geom_xpos[geoms, :2])

    def read(self, sub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(force, height, horizontal speed) of every foot from substep sensordata (envs, substeps, nsensordata),
        each (substeps, envs, feet)."""
        sub = np.swapaxes(sub, 0, 1)
        height, speed = self.batch.foot_height_speed(sub)
        return sub[..., self.batch.foot_sensors].copy(), height, speed


def load_run_config(policy: Policy, sets: list[str] | None = None) -> Config:
    """The run's saved config without its training disturbances, with `--set` overrides applied.

    A policy trained with pushes is judged undisturbed; what a `--set` asks for (e.g.
    task.pushes.force=100, or task.commands.lin_vel_x=[1,1]) applies on top of that.
    """
    for item in sets or []:
        key = item.split("=", 1)[0].strip()
        if not key.startswith("task."):
            raise LegkitError(f"--set {key} cannot apply to a saved policy's evaluation: only task.* keys change it "
                              "(the task, its commands, disturbances and validation); ppo.* and run.* are training "
                              "settings")
    saved = validate(from_dict(Config, load_yaml(str(policy.config))))
    tree = apply_sets(to_dict(replace(saved, task=undisturbed(saved.task))), list(sets or []))
    return validate(from_dict(Config, tree))


def task_validation(cfg: Config, sets: list[str] | None = None) -> ValidationConfig:
    """What judges a run of `cfg` (validate's suite, the sweep's figures): its task's validation settings today
    with the task.validation `sets`, not those saved with the run, so that a run saved before a threshold changed
    is judged as a new one is. A run of a task legkit no longer has keeps its saved settings."""
    from legkit.tasks import TASKS

    if cfg.task_name not in TASKS:
        return cfg.task.validation
    return build_config(cfg.task_name, sets=[s for s in sets or [] if s.startswith("task.validation.")]).task.validation


def load_normalizer(policy: Policy, obs_dim: int | None = None) -> VecNormalize:
    """The saved VecNormalize statistics (frozen), read without an environment; `obs_dim` is checked."""
    norm = read_normalization(policy.norm, obs_dim)
    norm.training = False
    return norm


def load_policy(policy: Policy) -> tuple[PPO, VecNormalize]:
    """A saved policy's model and its normalization, checked to belong together."""
    model = load_model(policy.model, algorithm=policy.algorithm)
    return model, load_normalizer(policy, model.observation_space.shape[0])


def load_policy_for(policy: Policy, cfg: Config) -> tuple[PPO, VecNormalize]:
    """`load_policy`, and a check that `cfg`'s task observes what the model was trained on (video, viewer)."""
    model, norm = load_policy(policy)
    batch = LeggedBatch(cfg.task, 1, nthread=1)
    check_observations(model, policy.obs_layout, batch)
    batch.close()
    return model, norm


def check_observations(model: PPO, layout: list | None, batch: LeggedBatch) -> None:
    """Raise (and close `batch`) when the task's observations are not what the model was trained on."""
    diff = layout_difference(layout, batch.obs_layout) if layout else None
    if diff is None and model.observation_space.shape != (batch.obs_dim,):
        diff = f"the model takes {model.observation_space.shape[0]} values and the task gives {batch.obs_dim}"
    if diff is not None:
        batch.close()
        raise LegkitError(f"the task's observations differ from the model's: {diff}; was task.observations changed?")


def rollout(policy: Policy, episodes: int, cfg: Config, seed: int = EVAL_SEED, max_steps: int | None = None,
            deterministic: bool = True, pushes: PushConfig | None = None,
            randomize: tuple[float, float] | None = None) -> Trace:
    """Run `episodes` episodes of a saved policy in parallel; each robot stops counting at its first end.

    `randomize` = (mass_range, friction_range) gives every robot its own scaled model. `pushes` are the
    scenario's pushes, in place of the task's. The task runs as `cfg` says: load_run_config has already
    removed the training's own pushes.
    """
    model, norm = load_policy(policy)
    return rollout_model(model, norm, episodes, cfg, seed, max_steps, deterministic, pushes, randomize,
                         layout=policy.obs_layout)


def rollout_model(model: PPO, norm: VecNormalize, episodes: int, cfg: Config, seed: int = EVAL_SEED,
                  max_steps: int | None = None, deterministic: bool = True, pushes: PushConfig | None = None,
                  randomize: tuple[float, float] | None = None, layout: list | None = None) -> Trace:
    """`rollout` of a policy in memory (e.g. during training); `norm` only normalizes, it is not updated.

    `layout` is the observation layout the model was trained on, checked against the task's by term.
    """
    task = cfg.task
    if max_steps is not None:
        task = replace(task, episode_seconds=max_steps * task.control_dt)
    if pushes is not None:  # the scenario's pushes replace the task's
        task = replace(task, pushes=pushes)
    batch = LeggedBatch(task, episodes, seed=seed)
    if randomize is not None:
        batch.sim.randomize(batch.rng, *randomize)
    if batch.curriculum is not None:  # evaluate at the final target
        batch.curriculum.set_stage(batch.curriculum.last_stage)
        batch.reset(record=False)
    check_observations(model, layout, batch)
    feet = FootSensors(batch) if batch.robot.foot_pos_sensors else None
    n, T = episodes, batch.max_steps
    alive_now = np.ones(n, dtype=bool)
    rec = {k: [] for k in ("alive", "vel", "command", "height", "action_abs", "power", "reward",
                           "foot_force", "foot_height", "foot_speed", "obstacle_contact")}
    terminated = np.zeros(n, dtype=bool)
    length = np.zeros(n, dtype=np.int64)
    s = batch.state
    obs = batch.observe()
    base = int(np.flatnonzero(batch.model.jnt_type == int(mujoco.mjtJoint.mjJNT_FREE))[0])
    qa, va = int(batch.model.jnt_qposadr[base]), int(batch.model.jnt_dofadr[base])
    start = {"base_qpos": batch.sim.qpos[:, qa:qa + 7].copy(), "base_qvel": batch.sim.qvel[:, va:va + 6].copy(),
             "joints": list(batch.robot.joints), "joint_pos": batch.sim.qpos[:, batch.joint_qpos].copy(),
             "joint_vel": batch.sim.qvel[:, batch.joint_dof].copy()}
    act = PolicyActor(model, norm, deterministic)  # carries an LSTM policy's state per robot
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: extra torch threads only compete with the physics threads
    try:
        for _ in range(T):
            action = act(obs)
            reward, term, trunc = batch.step(action)
            act.ended(term | trunc)  # a recurrent policy's state restarts with a robot's next episode
            obs = batch.observe()
            rec["alive"].append(alive_now.copy())
            rec["reward"].append(reward.copy())
            rec["vel"].append(np.column_stack([s.base_lin_vel[:, :2], s.base_ang_vel[:, 2]]))
            rec["command"].append(s.command.copy())
            rec["height"].append(s.base_height.copy())
            rec["action_abs"].append(np.abs(s.action).mean(axis=1))
            rec["power"].append(batch.step_power())
            if batch.arena is not None:  # at any substep: a touch between two control steps counts
                touching = batch.arena.contacts_by_kind(batch.sim.substep_sensordata)  # (envs, substeps, kinds)
                rec["obstacle_contact"].append(touching.max(axis=1) > 0)
            if feet is not None:  # every substep: touchdowns between control steps count
                for key, value in zip(("foot_force", "foot_height", "foot_speed"),
                                      feet.read(batch.sim.substep_sensordata)):
                    rec[key].append(value)
            ended = alive_now & (term | trunc)
            terminated |= ended & term
            length[ended] = s.episode_step[ended]
            alive_now &= ~ended
            if not alive_now.any():
                break
    finally:
        torch.set_num_threads(threads)
        batch.close()
    length[alive_now] = T
    foot = {k: np.concatenate(rec[k]) if feet is not None else None
            for k in ("foot_force", "foot_height", "foot_speed")}
    return Trace(alive=np.array(rec["alive"]), vel=np.array(rec["vel"]), command=np.array(rec["command"]),
                 height=np.array(rec["height"]), action_abs=np.array(rec["action_abs"]), power=np.array(rec["power"]),
                 reward=np.array(rec["reward"]),
                 obstacle_contact=np.array(rec["obstacle_contact"]).any(axis=-1) if batch.arena is not None else None,
                 obstacle_kinds=batch.arena.contact_kinds if batch.arena is not None else (),
                 obstacle_contact_by_kind=np.array(rec["obstacle_contact"]) if batch.arena is not None else None,
                 terminated=terminated, length=length, dt=batch.dt, max_steps=T,
                 mass=float(np.sum(batch.model.body_mass)), feet=tuple(batch.robot.feet) if feet else (),
                 foot_pairs=feet.pairs if feet else (), substep_dt=float(batch.model.opt.timestep), start=start,
                 **foot)


__all__ = ["Trace", "load_normalizer", "load_policy", "load_policy_for", "load_run_config", "rollout", "rollout_model",
           "to_dict"]
