"""LeggedBatch: one robot model, one task, N robots; physics in native threads, the rest in NumPy.

No auto-reset here: `step` reports terminated/truncated and the caller decides when to `reset`.
The SB3 VecEnv (vec_env.py) and the gymnasium env (gym_env.py) are thin adapters over it.
"""

from __future__ import annotations

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.robots import get_robot
from legkit.sim.batch import BatchSim
from legkit.sim.power import AppliedTorque, joint_power
from legkit.sim.scene import build_model
from legkit.tasks.config import TaskConfig
from legkit.tasks.commands import VelocityCommand, behaviour_onehot
from legkit.tasks.curriculum import CommandCurriculum, HeightCurriculum
from legkit.tasks.events import Pushes, build_events
from legkit.tasks.ground import Ground
from legkit.tasks.sensing import Sensors, check_sensor_terms
from legkit.tasks.observations import OBSERVATIONS, compute_observation, observation_layout, term_indices
from legkit.tasks.state import BatchState, quat_yaw
from legkit.tasks.terminations import falls
from legkit.tasks.terms import RewardManager


def _ids(model: mujoco.MjModel, obj: mujoco.mjtObj, names: tuple[str, ...], kind: str) -> np.ndarray:
    out = []
    for name in names:
        i = mujoco.mj_name2id(model, obj, name)
        if i < 0:
            raise LegkitError(f"the robot model has no {kind} named '{name}'")
        out.append(i)
    return np.asarray(out, dtype=np.int64)


class LeggedBatch:
    """`num_envs` robots running one task. Arrays are (num_envs, ...) throughout."""

    def __init__(self, task: TaskConfig, num_envs: int, seed: int = 0, nthread: int | None = None,
                 external_forces: bool = False):
        if num_envs < 1:
            raise LegkitError(f"the number of environments must be at least 1, got {num_envs}")
        for name in task.observations:
            if name not in OBSERVATIONS:
                raise LegkitError(f"unknown observation term '{name}'; valid terms: {', '.join(OBSERVATIONS)}")
        self.task = task
        self.robot = get_robot(task.robot)
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)
        self.ground = Ground(task.terrain, task.terrain_curriculum, task.height_scan, num_envs, self.rng)
        """Spawn points, the ground under each robot, height scans and the terrain curriculum (tasks/ground.py)."""
        self.model = build_model(self.robot, task.physics, self.ground.terrain, task.arena)
        pushes = Pushes.wanted(self)
        self.sim = BatchSim(self.model, num_envs, task.decimation, nthread, external_forces or pushes)
        if self.robot.extra.get("max_joint_speed"):  # hobby servos: no faster than their rated speed
            self.sim.set_servo_speed(self.robot.extra["max_joint_speed"])
        self.dt = task.control_dt
        self.max_steps = task.max_episode_steps

        # Name things once: every index the hot path uses is looked up here.
        m, r = self.model, self.robot
        joints = _ids(m, mujoco.mjtObj.mjOBJ_JOINT, r.joints, "joint")
        self.joint_qpos = m.jnt_qposadr[joints].astype(np.int64)
        self.joint_dof = m.jnt_dofadr[joints].astype(np.int64)
        self.joint_low, self.joint_high = m.jnt_range[joints, 0].copy(), m.jnt_range[joints, 1].copy()
        self.actuators = _ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, r.actuators, "actuator")
        if not np.array_equal(self.actuators, np.arange(m.nu)):
            raise LegkitError("the robot's actuators must be declared in the order of its joints")
        sensor = lambda names: np.concatenate(  # noqa: E731
            [[m.sensor_adr[i]] for i in _ids(m, mujoco.mjtObj.mjOBJ_SENSOR, names, "sensor")] or [[]]
        ).astype(np.int64)
        self.foot_sensors = sensor(r.foot_touch_sensors)
        self.base_sensors = sensor(r.base_touch_sensors)
        self.undesired_sensors = sensor(r.undesired_touch_sensors)
        self.torque_sensors = sensor(r.torque_sensors)
        # The feet's world positions and velocities (framepos, framelinvel: 3 values from each address) where the
        # robot names both for every foot (else None), and the radius of each sphere foot (its lowest point is the
        # centre less it): `foot_height_speed` reads them.
        sensed = bool(r.feet) and len(r.foot_pos_sensors) == len(r.foot_vel_sensors) == len(r.feet)
        self.foot_pos = sensor(r.foot_pos_sensors) if sensed else None
        self.foot_vel = sensor(r.foot_vel_sensors) if sensed else None
        feet = _ids(m, mujoco.mjtObj.mjOBJ_GEOM, r.feet, "foot geom") if sensed else []
        self.foot_radius = np.array([m.geom_size[g, 0] if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE else 0.0
                                     for g in feet])
        self.home = r.home
        # Controls stay inside the actuator's ctrlrange, or the joint's range where the actuator has none.
        limited = m.actuator_ctrllimited.astype(bool)
        self.ctrl_low = np.where(limited, m.actuator_ctrlrange[:, 0], self.joint_low)
        self.ctrl_high = np.where(limited, m.actuator_ctrlrange[:, 1], self.joint_high)
        if r.control == "position":  # target = home + scale * action
            self._ctrl_offset, self._ctrl_gain = self.home, np.full(m.nu, task.action_scale)
        elif r.control == "torque":  # action [-1, 1] -> the motor's ctrlrange
            self._ctrl_offset = (self.ctrl_high + self.ctrl_low) / 2
            self._ctrl_gain = (self.ctrl_high - self.ctrl_low) / 2
        else:
            raise LegkitError(f"robot '{r.name}' has control '{r.control}'; valid: position, torque")

        self.state = BatchState(num_envs, r.num_joints, len(self.foot_sensors), len(self.undesired_sensors), self.dt,
                                r.joints)
        self.state.ground_friction[:] = task.physics.floor_friction
        if self.foot_pos is not None:
            self.state.foot_height = np.zeros((num_envs, len(r.feet)))
            self.state.foot_speed = np.zeros((num_envs, len(r.feet)))
        if "height_scan" in task.observations:
            self.state.height_scan = np.zeros((num_envs, len(self.ground.grid)))
        check_sensor_terms(task.observations, task.sensors)
        self._clock = "clock" in task.observations
        if self._clock and not task.clock_period > 0:
            raise LegkitError(f"invalid task.clock_period = {task.clock_period}: the `clock` term needs a period > 0 (s)")
        if "behaviour" in task.observations:  # the behaviour asked for, one-hot: a command that never changes
            self.state.behaviour = behaviour_onehot(task.behaviours, task.behaviour, num_envs)
        self.sensors = Sensors(task.sensors, self) if task.sensors.any else None
        """The robot's own sensors (tasks/sensing.py), or None."""
        self.arena = None
        """The obstacle arena (sim/arena.py): obstacles placed anew at every reset, or None."""
        if "obstacle_map" in task.observations:  # without an arena nothing stands on the ground: a map of 0
            flat = np.zeros((num_envs, len(task.arena.map_grid())))
            self.state.obstacle_map_source = lambda: flat
        if task.arena.enabled:
            from legkit.sim.arena import Arena

            self.arena = Arena(m, task.arena)
            if self.sim.mocap is not None:
                self.state.clearance_source = lambda: self.arena.clearance(self.sim.qpos[:, :2],
                                                                           *self.arena.read(self.sim.mocap))
                self.state.obstacle_map_source = lambda: self.arena.height_map(
                    self.sim.qpos[:, :2], quat_yaw(self.sim.qpos[:, 3:7]), *self.arena.read(self.sim.mocap))
        self.gait = None
        """The scripted gait of a residual task (legkit.gaits): joint target = gait target + action_scale * action."""
        if task.gait is not None:
            if r.control != "position":
                raise LegkitError(f"task.gait needs a position-controlled robot; the {r.name} is {r.control}-controlled")
            from legkit.gaits import GaitController
            self.gait = GaitController(r, m, task.gait, num_envs, self.dt)
        self._history_src = self._history_setup(task)
        self.rewards = RewardManager(task.rewards, num_envs, len(self.foot_sensors), self.dt, task.reward_scale_by_dt)
        self.obs_layout = observation_layout(task.observations, self.state)
        self.obs_dim = sum(size for _, _, size in self.obs_layout)
        self.action_dim = r.num_joints
        self._obs = np.zeros((num_envs, self.obs_dim), dtype=np.float32)
        if self._history_src is not None:
            self._history_src = np.asarray(term_indices(self.obs_layout, task.observation_history.terms))
            _, start, size = next(b for b in self.obs_layout if b[0] == "history")
            self._history_block = slice(start, start + size)
            self._frame = np.zeros((num_envs, len(self._history_src)))
            """The history terms of the last observation: pushed into state.history at the next step."""
            self._history_fresh = np.ones(num_envs, dtype=bool)
            """Robots whose history restarts with their next observation (just reset)."""
        self._ctrl = np.zeros((num_envs, m.nu))
        self.episode_return = np.zeros(num_envs)
        self.episode_height_sum = np.zeros(num_envs)
        self.episode_action_sum = np.zeros(num_envs)
        self.time_limit = np.full(num_envs, self.max_steps, dtype=np.int64)
        """Control steps at which each robot's current episode is truncated: `max_steps`, except for the
        shortened first episodes of `spread_episode_starts`."""
        self.commands = VelocityCommand(task.commands, self.state, self, self.dt)
        """The command term (tasks/commands.py): writes state.command at resets and on schedule."""
        self.curriculum = None
        """The task's curriculum (height or command ranges), or None."""
        if task.curriculum.stages:
            self.curriculum = HeightCurriculum(task.curriculum)
        elif task.command_curriculum.stages:
            self.curriculum = CommandCurriculum(task.command_curriculum, self.commands)
        self.state.target_height[:] = self.robot.standing_height
        self.events = build_events(self)
        """Event terms (tasks/events.py) by name: pushes, physics randomization, latency."""
        self._noise = [(start, size, task.observation_noise[name]) for name, start, size in self.obs_layout
                       if task.observation_noise.get(name, 0.0) > 0]
        """(start, size, half-width) of every observation block that gets uniform noise."""
        self._blind = [slice(start, start + size) for name, start, size in self.obs_layout
                       if name in task.observation_blind]
        """The observation blocks that read 0 (task.observation_blind)."""
        self.termination_counts: dict[str, int] = {}
        """How often each termination term fired (tasks/terminations.py), since the env was made."""
        self.bad_action_count = 0
        """Robots reset because the policy gave a non-finite action."""
        self.bad_physics_count = 0
        """Robots reset because their physics state became non-finite or exploded."""
        self._applied: AppliedTorque | None = None
        """Applied joint torques from the torque sensors, built at the first `step_power`."""
        self._parked = np.zeros(num_envs, dtype=bool)
        """Robots whose physics blew up in the last `step` (parked at a finite state)."""
        self.reset()
        try:  # a reward parameter this robot or task cannot serve fails here, not mid-run
            self.rewards.check(self.state)
        except LegkitError:
            self.close()
            raise

    def control_map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(offset, gain, low, high) per actuator: ctrl = clip(offset + gain * action, low, high)."""
        return self._ctrl_offset, self._ctrl_gain, self.ctrl_low, self.ctrl_high

    def _history_setup(self, task: TaskConfig):
        """Size state.history for the `history` term; None when the task does not observe it."""
        if "history" not in task.observations:
            return None
        h = task.observation_history
        for name in h.terms:
            if name == "history" or name not in task.observations:
                raise LegkitError(f"invalid task.observation_history.terms entry '{name}': must be one of the "
                                  f"task's other observation terms ({', '.join(n for n in task.observations if n != 'history')})")
        if h.length < 1 or not h.terms:
            raise LegkitError(f"invalid task.observation_history: length {h.length} of terms {list(h.terms)}; "
                              "the history term needs length >= 1 and at least one term")
        frame = sum(OBSERVATIONS[name](self.state).shape[1] for name in h.terms)
        self.state.history = np.zeros((self.num_envs, h.length * frame))
        return True

    # -- resets ------------------------------------------------------------------------------
    def reset(self, env_ids: np.ndarray | None = None, record: bool = True) -> dict[str, np.ndarray]:
        """Reset `env_ids` (all if None) to the home pose with noise; returns their finished reward sums.

        `record` says that the episodes of `env_ids` really ended (a fall or the time limit), so that
        the curriculum judges them; a reset the caller forces in mid-episode (`record=False`, e.g. the
        one PPO.learn starts with) is not an outcome. Shortened first episodes that reach their
        shortened limit are not outcomes either.
        """
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        k = len(ids)
        rc = self.task.reset
        s = self.state
        # The ending episodes that really ended (a fall or the time limit): the curricula judge only those
        judged = (s.terminated[ids] | (self.time_limit[ids] >= self.max_steps)) & record
        origin = self.ground.spawn(ids, self.sim.qpos[ids, :2].copy(), judged & (s.episode_step[ids] > 0),
                                   s.terminated[ids])
        qpos = np.tile(self.model.qpos0, (k, 1))
        qpos[:, :2] = origin[:, :2]
        qpos[:, 2] = self.robot.reset_height + origin[:, 2]
        yaw = self.rng.uniform(-rc.yaw_range, rc.yaw_range, k)
        if self.ground.fixed_heading:  # along the evaluation row (the draw above keeps the random stream)
            yaw[:] = 0.0
        qpos[:, 3], qpos[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
        qpos[:, 4:6] = 0.0
        qpos[:, self.joint_qpos] = self.home + self.rng.uniform(-rc.joint_pos_noise, rc.joint_pos_noise,
                                                                (k, len(self.home)))
        qpos[:, self.joint_qpos] = np.clip(qpos[:, self.joint_qpos], self.joint_low, self.joint_high)
        qvel = np.zeros((k, self.model.nv))
        qvel[:, :6] = self.rng.uniform(-rc.base_vel_noise, rc.base_vel_noise, (k, 6))
        self.sim.set_state(ids, qpos, qvel)
        if self.arena is not None and self.sim.mocap is not None:  # a new layout of obstacles every episode
            self.arena.write(self.sim.mocap, *self.arena.place(self.rng, k), env_ids=ids)
        if self.sensors is not None:
            self.sensors.reset(ids)
        if self.gait is not None:  # before the state update: it shows the new phase
            self.gait.reset(ids)
        self._update_state(ids)  # the new pose, for terms that read it (heading commands)
        if self.curriculum is not None:  # judges the ending episodes, then sets the stage of the new ones
            self.curriculum.start(self, ids, judged)
        self.commands.reset(ids)
        for event in self.events.values():
            event.reset(ids)
        s.action[ids] = 0.0
        s.last_action[ids] = 0.0
        if self._history_src is not None:
            self._history_fresh[ids] = True
        s.episode_step[ids] = 0
        self._tick_clock()
        s.terminated[ids] = False
        self.time_limit[ids] = self.max_steps
        self.episode_return[ids] = 0.0
        self.episode_height_sum[ids] = 0.0
        self.episode_action_sum[ids] = 0.0
        return self.rewards.reset(ids)

    def spread_episode_starts(self) -> None:
        """Give every robot's current episode a random time limit in [1, max_steps] (rsl_rl's
        `init_at_random_ep_len`), so that a batch reset together does not time out in lock step.
        Later episodes have the full limit."""
        self.time_limit[:] = self.rng.integers(1, self.max_steps + 1, self.num_envs)

    def episode_stats(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Return, length, mean base height, mean |action| and curriculum stage of the current episodes of `env_ids`."""
        steps = np.maximum(self.state.episode_step[env_ids], 1)
        return {"return": self.episode_return[env_ids].copy(), "length": self.state.episode_step[env_ids].copy(),
                "mean_height": self.episode_height_sum[env_ids] / steps,
                "mean_action": self.episode_action_sum[env_ids] / steps,
                "stage": self.state.stage[env_ids].copy(), "terrain_level": self.ground.levels(env_ids)}

    # -- stepping ----------------------------------------------------------------------------
    def _update_state(self, reset_ids: np.ndarray | None = None) -> None:
        """The BatchState from the simulator; `reset_ids`: called by a reset of those robots (their sensors read
        afresh, no other robot's advance)."""
        s, sd = self.state, self.sim.sensordata
        s.forget_derived()
        self.ground.update(s, self.sim.qpos)  # the ground under each base: heights are measured from it
        s.update_kinematics(self.sim.qpos, self.sim.qvel, self.home, self.joint_qpos, self.joint_dof)
        np.take(sd, self.torque_sensors, axis=1, out=s.joint_torque)
        np.take(sd, self.foot_sensors, axis=1, out=s.foot_force)
        np.take(sd, self.undesired_sensors, axis=1, out=s.undesired_force)
        if self.foot_pos is not None:
            s.foot_height[:], s.foot_speed[:] = self.foot_height_speed(sd)
        if len(self.base_sensors):
            np.sum(sd[:, self.base_sensors], axis=1, out=s.base_contact_force)
        if self.gait is not None:
            s.gait_phase[:] = self.gait.phase_features()
        if self.arena is not None:  # a touch at any physics step of the control step counts, as eval counts it
            if reset_ids is None:
                np.max(self.arena.contacts(self.sim.substep_sensordata), axis=1, out=s.obstacle_contacts)
            else:
                s.obstacle_contacts[reset_ids] = self.arena.contacts(sd[reset_ids])
        if self.sensors is not None:
            self.sensors.update(reset_ids)

    def foot_height_speed(self, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each foot's height (m) above the ground under it (its lowest point: the centre less a sphere's radius) and
        horizontal (world xy) speed (m/s), from sensordata rows `sd` (..., nsensordata); each (..., feet). Only for
        a robot with foot position and velocity sensors (`foot_pos` not None)."""
        x, y, z = (sd[..., self.foot_pos + k] for k in range(3))
        height = z - self.foot_radius
        if self.ground.terrain is not None:
            height -= self.ground.height(x, y)
        return height, np.hypot(sd[..., self.foot_vel], sd[..., self.foot_vel + 1])

    def _tick_clock(self) -> None:
        """The `clock` term: the phase of task.clock_period at each robot's time since its reset."""
        if self._clock:
            s = self.state
            angle = 2 * np.pi * s.episode_step * (self.dt / self.task.clock_period)
            np.sin(angle, out=s.clock[:, 0])
            np.cos(angle, out=s.clock[:, 1])

    def observe(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Current observations, (num_envs, obs_dim) float32 (a buffer reused between calls), with the
        configured noise. `ids`: the robots whose observation the caller uses (all if None); only theirs
        become the next past frame of the history term (a second call after some robots reset must not
        replace what the others' policy saw)."""
        obs = compute_observation(self.task.observations, self.state, self._obs)
        for start, size, width in self._noise:
            obs[:, start:start + size] += self.rng.uniform(-width, width, (self.num_envs, size))
        for block in self._blind:
            obs[:, block] = 0.0
        if self._history_src is not None:
            rows = slice(None) if ids is None else ids
            self._frame[rows] = obs[rows][:, self._history_src]
            fresh = self._history_fresh.copy()
            if ids is not None:  # robots outside `ids` start their history at a later call
                fresh[np.setdiff1d(np.arange(self.num_envs), ids)] = False
            fresh = np.flatnonzero(fresh)
            if len(fresh):  # a new episode's past is its first frame
                s, length = self.state, self.task.observation_history.length
                s.history[fresh] = np.tile(self._frame[fresh], (1, length))
                obs[fresh, self._history_block] = s.history[fresh]
                self._history_fresh[fresh] = False
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply `actions` (num_envs, action_dim) for one control step.

        Returns (reward (num_envs,), terminated (num_envs,) bool, truncated (num_envs,) bool).
        A robot given a non-finite action, or whose physics blew up, is terminated with zero
        reward so that the caller resets it; the counters record how often that happened.
        """
        s = self.state
        if self._history_src is not None:  # what the policy acted on becomes the newest past frame
            k = self._frame.shape[1]
            s.history[:, k:] = s.history[:, :-k].copy()
            s.history[:, :k] = self._frame
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, self.action_dim)
        bad_action = ~np.isfinite(actions).all(axis=1)
        np.copyto(s.last_action, s.action)
        np.clip(np.where(bad_action[:, None], 0.0, actions), -1.0, 1.0, out=s.action)
        np.multiply(s.action, self._ctrl_gain, out=self._ctrl)
        self._ctrl += self._ctrl_offset if self.gait is None else self.gait.joint_targets()
        np.clip(self._ctrl, self.ctrl_low, self.ctrl_high, out=self._ctrl)

        for event in self.events.values():
            event.step()
        self.sim.step(self._ctrl)
        if self.gait is not None:
            self.gait.step()
        bad_physics = ~np.isfinite(self.sim.state).all(axis=1) | (np.abs(self.sim.qvel) > 1e3).any(axis=1)
        self._parked = bad_physics
        if bad_physics.any():
            # Park the broken robots at a finite state until the caller resets them.
            self.sim.state[bad_physics] = self.sim.state0
            self.sim.sensordata[bad_physics] = 0.0
        self._update_state()
        s.episode_step += 1
        self._tick_clock()

        fell = falls(s, self.task.termination, self.termination_counts)
        broken = bad_action | bad_physics
        np.logical_or(fell, broken, out=s.terminated)
        truncated = ((s.episode_step >= self.time_limit) | self.ground.off_edge(s.base_pos)) & ~s.terminated

        reward = self.rewards.compute(s)
        reward[broken] = 0.0
        self.episode_return += reward
        self.episode_height_sum += s.base_height
        self.episode_action_sum += np.abs(s.action).mean(axis=1)
        self.bad_action_count += int(bad_action.sum())
        self.bad_physics_count += int(bad_physics.sum())
        self.ground.step(s.command, self.dt)
        self.commands.step()
        return reward, s.terminated.copy(), truncated

    def step_power(self) -> np.ndarray:
        """Mechanical power of the joint actuators over the last `step` (W), (num_envs,): the mean over its physics
        steps of sum |tau * qdot| with the torque each step applied (sim/power.py)."""
        if len(self.torque_sensors) != self.robot.num_joints:
            raise LegkitError(f"robot '{self.robot.name}' names {len(self.torque_sensors)} torque sensors for "
                              f"{self.robot.num_joints} joints; mechanical power needs one actuatorfrc sensor "
                              "per joint")
        if self._applied is None:
            self._applied = AppliedTorque(self.model, self.actuators)
        qvel = self.sim.substep_qvel[:, :, self.joint_dof]  # (num_envs, decimation + 1, joints)
        force = self.sim.substep_sensordata[:, :, self.torque_sensors]
        with np.errstate(invalid="ignore", over="ignore"):  # a blown-up robot's substeps may not be finite
            torque = self._applied(force, qvel[:, :-1], qvel[:, 1:])
            power = joint_power(torque, qvel[:, 1:]).mean(axis=1)
        power[self._parked] = 0.0  # a blown-up step has no meaningful work (its episode ends here)
        return power

    def close(self) -> None:
        self.sim.close()
        if self.sensors is not None and self.sensors.scene is not None:
            self.sensors.scene.close()  # the ray sensors' worker threads


def task_shape(task: TaskConfig) -> tuple[list, int]:
    """`task`'s observation layout ((name, start, size) list) and action size, from a one-robot batch."""
    batch = LeggedBatch(task, 1, nthread=1)
    try:
        return [(str(n), int(s), int(k)) for n, s, k in batch.obs_layout], int(batch.action_dim)
    finally:
        batch.close()
