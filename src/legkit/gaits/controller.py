"""GaitController: a scripted gait for a batch of robots, as joint position targets in the robot's joint order."""

from __future__ import annotations

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.gaits.kinematics import leg_kinematics
from legkit.gaits.params import PHASE_OFFSETS, GaitParams
from legkit.gaits.trajectory import foot_targets, leg_phases, stroke
from legkit.robots.base import RobotSpec


def smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 of x clipped to [0, 1]: from 0 to 1 with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class GaitController:
    """One gait for `num_envs` robots, each with its own phase: step() advances it, joint_targets() turns it
    into joint position targets (rad) through the closed-form leg IK. Static gaits (stand, sit) blend from the
    robot's home pose to their pose over params.transition_time after a reset."""

    def __init__(self, robot: RobotSpec, model: mujoco.MjModel, params: GaitParams, num_envs: int, dt: float):
        if num_envs < 1:
            raise LegkitError(f"invalid num_envs = {num_envs}: must be >= 1")
        if not dt > 0:
            raise LegkitError(f"invalid gait dt = {dt}: must be > 0 (s, the control period)")
        self.robot = robot
        self.kin = leg_kinematics(model, robot)
        """The robot's leg kinematics (LegKinematics or PlanarLeg2), read from `model`."""
        if self.kin.num_legs != len(PHASE_OFFSETS["trot"]):
            raise LegkitError(f"robot '{robot.name}' has {self.kin.num_legs} feet; the gaits are for 4 legs")
        self.num_envs = num_envs
        self.dt = float(dt)
        """Control period (s): step() advances the phase by dt / cycle_time."""
        self.phase = np.zeros(num_envs)
        """Gait phase per robot, in [0, 1)."""
        self.time = np.zeros(num_envs)
        """Time since each robot's reset (s)."""
        self.clipped_count = 0
        """Legs (robot x leg) whose IK target was out of reach, summed over every computed set of targets."""
        self.last_clipped = np.zeros((num_envs, self.kin.num_legs), dtype=bool)
        """Which legs were out of reach in the latest joint_targets(), shape (num_envs, legs)."""
        self._home = robot.home
        self._targets: np.ndarray | None = None
        self.set_params(params)

    def set_params(self, params: GaitParams) -> None:
        """Switch to another gait (e.g. in a sweep); phases and times are kept."""
        if not isinstance(params, GaitParams):
            raise LegkitError(f"gait params must be a GaitParams, got {type(params).__name__}")
        self.params = params
        self._targets = None

    def reset(self, env_ids: np.ndarray | None = None, phase: float | np.ndarray | None = None) -> None:
        """Restart the gait of robots `env_ids` (all when None) at `phase` (scalar or one per robot; default 0)."""
        ids = slice(None) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        self.phase[ids] = 0.0 if phase is None else np.mod(np.asarray(phase, dtype=np.float64), 1.0)
        self.time[ids] = 0.0
        self._targets = None

    def step(self) -> None:
        """Advance every robot by one control period."""
        self.phase = np.mod(self.phase + self.dt / self.params.cycle_time, 1.0)
        self.time += self.dt
        self._targets = None

    def foot_targets(self) -> np.ndarray:
        """Foot-centre targets (num_envs, legs, 3) in the base frame (m) at the current phases."""
        return foot_targets(self.params, self.phase, self.kin.anchor, self.kin.foot_radius)

    def stance(self) -> np.ndarray:
        """Which feet the gait has on the ground now, (num_envs, legs) bool (all for static poses)."""
        if self.params.static:
            return np.ones((self.num_envs, self.kin.num_legs), dtype=bool)
        return stroke(leg_phases(self.phase, np.asarray(self.params.offsets)), self.params.duty_factor)[2]

    def joint_targets(self) -> np.ndarray:
        """Joint position targets (num_envs, num_joints) (rad) in RobotSpec.joints order; joints outside the legs
        hold the home pose. Computed once per step (out-of-reach legs are counted then)."""
        if self._targets is None:
            q, clipped = self.kin.ik(self.foot_targets())
            self.last_clipped = clipped
            self.clipped_count += int(clipped.sum())
            targets = self.kin.to_joints(q, self._home)
            if self.params.static:
                if self.params.transition_time > 0:
                    w = smoothstep(self.time / self.params.transition_time)[:, None]
                else:
                    w = np.ones((self.num_envs, 1))
                targets = self._home + w * (targets - self._home)
            self._targets = targets
        return self._targets.copy()

    def phase_features(self) -> np.ndarray:
        """(sin, cos) of 2 pi * phase, shape (num_envs, 2): the gait clock as an observation."""
        angle = 2 * np.pi * self.phase
        return np.stack([np.sin(angle), np.cos(angle)], axis=-1)
