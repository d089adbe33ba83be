"""BatchState: what the task sees of the whole batch at one control step, as named arrays.

Every field has a leading dimension num_envs. The environment fills it once per control step
from the physics state; rewards, observations and terminations only read it.
"""

from __future__ import annotations

import numpy as np

from legkit import LegkitError


def quat_rotate_inverse(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate world vectors v (N, 3) into the frames of unit quaternions q (N, 4, w-x-y-z)."""
    w = q[:, :1]
    u = -q[:, 1:]  # the conjugate rotates world -> body
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quat_yaw(q: np.ndarray) -> np.ndarray:
    """Heading (rad) of unit quaternions q (N, 4, w-x-y-z)."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class BatchState:
    """Named per-robot quantities for `num_envs` robots with `num_joints` actuated joints."""

    def __init__(self, num_envs: int, num_joints: int, num_feet: int, num_undesired: int, dt: float,
                 joint_names: tuple[str, ...] = ()):
        n, j = num_envs, num_joints
        self.num_envs = n
        self.joint_names = tuple(joint_names)
        """The actuated joints' names, in action order (the robot's `joints`)."""
        self._joint_index: dict[tuple[str, ...], np.ndarray] = {}
        self.dt = dt
        """Control period (s)."""
        self.base_pos = np.zeros((n, 3))
        """Base position in the world (m)."""
        self.ground_height = np.zeros(n)
        """Height of the ground under the base (m): 0 on a plane, the terrain's under the base on a heightfield."""
        self.base_height = np.zeros(n)
        """Base height above the ground under it (m): what height rewards and the fall termination read, so that
        they mean the same on terrain as on a plane."""
        self.base_quat = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
        """Base orientation, w-x-y-z."""
        self.base_lin_vel = np.zeros((n, 3))
        """Base linear velocity in the body frame (m/s)."""
        self.base_ang_vel = np.zeros((n, 3))
        """Base angular velocity in the body frame (rad/s)."""
        self.projected_gravity = np.tile([0.0, 0.0, -1.0], (n, 1))
        """Unit gravity direction in the body frame: (0, 0, -1) when level."""
        self.joint_pos = np.zeros((n, j))
        """Joint positions (rad)."""
        self.joint_pos_rel = np.zeros((n, j))
        """Joint positions relative to the home pose (rad)."""
        self.joint_vel = np.zeros((n, j))
        """Joint velocities (rad/s)."""
        self.joint_torque = np.zeros((n, j))
        """Actuator torques (N*m)."""
        self.foot_force = np.zeros((n, num_feet))
        """Normal contact force on each foot (N)."""
        self.foot_height = np.zeros((n, 0))
        """Height (m) of each foot's lowest point above the ground under it, (n, feet) in `feet` order, at the last
        physics substep; empty for a robot without foot position sensors (RobotSpec.foot_pos_sensors)."""
        self.foot_speed = np.zeros((n, 0))
        """Horizontal (world xy) speed of each foot (m/s), (n, feet); empty for a robot without foot velocity
        sensors (RobotSpec.foot_vel_sensors)."""
        self.undesired_force = np.zeros((n, num_undesired))
        """Normal contact force on each body that should not touch the ground (N)."""
        self.base_contact_force = np.zeros(n)
        """Normal contact force on the parts whose contact ends an episode (N)."""
        self.target_height = np.zeros(n)
        """Base height target of the current episode (m), set by a height curriculum."""
        self.stage = np.zeros(n, dtype=np.int64)
        """Curriculum stage the current episode started in."""
        self.command = np.zeros((n, 3))
        """Commanded (vx, vy, yaw rate) in the body frame (m/s, m/s, rad/s)."""
        self.action = np.zeros((n, j))
        """Policy action of this step (after clipping)."""
        self.last_action = np.zeros((n, j))
        """Policy action of the previous step."""
        self.episode_step = np.zeros(n, dtype=np.int64)
        """Control steps since this robot's reset."""
        self.terminated = np.zeros(n, dtype=bool)
        """Whether this step ended the episode by a fall (set before rewards are computed)."""
        self.height_scan = np.zeros((n, 0))
        """Base height above the ground at the points of the height scan (m), (n, K); empty unless observed."""
        self.gait_phase = np.zeros((n, 2))
        """sin and cos of the scripted gait's phase (2 pi per cycle); zero for tasks without a gait."""
        self.imu = np.zeros((n, 0))
        """IMU readings [acc xyz m/s^2, gyro xyz rad/s] as the robot's IMU gives them (tasks/sensing.py)."""
        self.ultrasonic = np.zeros((n, 0))
        """Ultrasonic [echo flag, distance m] (max range when there is no echo)."""
        self.attitude = np.tile([0.0, 0.0, -1.0], (n, 1))
        """Gravity direction in the IMU's frame as a complementary filter of the IMU estimates it (unit vector,
        (0, 0, -1) level; the `attitude` term): what a robot whose IMU gives no orientation knows of its tilt."""
        self.camera = np.zeros((n, 0))
        """Depth camera image, row by row (m)."""
        self.touch = np.zeros((n, 0))
        """Touch sensor readings (N)."""
        self.clock = np.zeros((n, 2))
        """sin and cos of 2 pi t / task.clock_period, t the time since the robot's reset (the `clock` term)."""
        self.behaviour = np.zeros((n, 0))
        """One-hot of the behaviour asked for (task.behaviours, task.behaviour); empty without one."""
        self.obstacle_contacts = np.zeros(n)
        """Contacts between the robot and the arena's obstacles and walls this step (0: none)."""
        self.clearance_source = None
        """What gives `obstacle_clearance` at the current step (the env's arena), or None: no arena."""
        self._obstacle_clearance: np.ndarray | None = None
        self.obstacle_map_source = None
        """What gives `obstacle_map` at the current step (the env's arena), or None: an empty map."""
        self._obstacle_map: np.ndarray | None = None
        self.history = np.zeros((n, 0))
        """Past observation frames, newest first (the `history` observation term; empty without one)."""
        # Privileged quantities: what the simulator knows and a robot does not (for a critic).
        self.ground_friction = np.zeros(n)
        """Sliding friction of the ground under each robot (the scene's, or its randomized model's)."""
        self.payload = np.zeros(n)
        """Mass added to the base by randomization (kg)."""
        self.motor_strength = np.ones(n)
        """Factor on the actuators' proportional gain from randomization (1 nominal)."""
        self.push_force = np.zeros((n, 3))
        """External push on the base this control step (N, world frame; zero between pushes)."""

    def joint_index(self, names: tuple[str, ...], key: str) -> np.ndarray:
        """Column indices of the joints `names` (a term's parameter `key`, named in the error when one is
        unknown)."""
        idx = self._joint_index.get(names)
        if idx is None:
            unknown = [n for n in names if n not in self.joint_names]
            if unknown or not names:
                raise LegkitError(f"invalid {key} = {list(names)}: "
                                  f"{'unknown joint ' + repr(unknown[0]) if unknown else 'name at least one joint'}; "
                                  f"valid: {', '.join(self.joint_names)}")
            idx = self._joint_index[names] = np.array([self.joint_names.index(n) for n in names])
        return idx

    @property
    def obstacle_clearance(self) -> np.ndarray:
        """Distance (m) in the ground plane from the base's centre to the nearest obstacle footprint or arena wall:
        the true geometry, what the robot's sensors only partly see (inf without an arena). Computed when first
        read at a step (only the obstacle_proximity reward reads it), then kept until `forget_derived`."""
        if self._obstacle_clearance is None:
            source = self.clearance_source
            self._obstacle_clearance = np.full(self.num_envs, np.inf) if source is None else source()
        return self._obstacle_clearance

    @property
    def obstacle_map(self) -> np.ndarray:
        """Heights (m) of what stands on the ground at a grid of points around the base, turned with its heading
        (task.arena.map_*; `Arena.height_map`): the true layout, curbs and posts included, (N, K); all 0 without
        an arena, (N, 0) when no term reads it. Privileged (the `obstacle_map` term, for a critic); computed when
        first read at a step."""
        if self._obstacle_map is None:
            source = self.obstacle_map_source
            self._obstacle_map = np.zeros((self.num_envs, 0)) if source is None else source()
        return self._obstacle_map

    def forget_derived(self) -> None:
        """A new physics state: what is computed on demand (obstacle_clearance, obstacle_map) is computed afresh
        when next read."""
        self._obstacle_clearance = None
        self._obstacle_map = None

    def update_kinematics(self, qpos: np.ndarray, qvel: np.ndarray, home: np.ndarray,
                          joint_qpos: np.ndarray, joint_dof: np.ndarray) -> None:
        """Fill base and joint quantities from free-joint qpos/qvel (N, nq)/(N, nv)."""
        np.copyto(self.base_pos, qpos[:, 0:3])
        np.subtract(self.base_pos[:, 2], self.ground_height, out=self.base_height)
        np.copyto(self.base_quat, qpos[:, 3:7])
        # Free joint: qvel[0:3] is the world-frame linear velocity, qvel[3:6] the body-frame angular one.
        self.base_lin_vel[:] = quat_rotate_inverse(self.base_quat, qvel[:, 0:3])
        np.copyto(self.base_ang_vel, qvel[:, 3:6])
        q = self.base_quat
        # R^T (0, 0, -1): minus the third row of R, written out from the quaternion.
        w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        self.projected_gravity[:, 0] = -2.0 * (x * z - w * y)
        self.projected_gravity[:, 1] = -2.0 * (y * z + w * x)
        self.projected_gravity[:, 2] = -(1.0 - 2.0 * (x * x + y * y))
        np.take(qpos, joint_qpos, axis=1, out=self.joint_pos)
        np.subtract(self.joint_pos, home, out=self.joint_pos_rel)
        np.take(qvel, joint_dof, axis=1, out=self.joint_vel)
