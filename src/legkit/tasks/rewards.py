"""Reward terms: small functions of the BatchState returning one value per robot, shape (num_envs,).

Signs live in the weight table (config), not here: a penalty term returns a positive
magnitude and gets a negative weight. A term that keeps state is a small class with
`reset(env_ids)`. Register every term in REWARDS at the bottom.
"""

from __future__ import annotations

import numpy as np

from legkit import LegkitError
from legkit.tasks.state import BatchState


def track_lin_vel(s: BatchState, sigma: float = 0.25, slow_speed: float = 0.0) -> np.ndarray:
    """Tracking of the commanded planar velocity: exp(-|v_xy - cmd_xy|^2 / sigma), 1 at perfect tracking.

    With `slow_speed` > 0 (m/s) the kernel sharpens below that commanded speed: sigma is scaled by
    clip(|cmd_xy| / slow_speed, 0.2, 1)^2. Plain, standing still under a 0.2 m/s command earns
    exp(-0.04 / 0.25) = 85% of the reward; with slow_speed 0.5 it earns exp(-1) = 37%.
    """
    err = np.sum(np.square(s.command[:, :2] - s.base_lin_vel[:, :2]), axis=1)
    if slow_speed > 0:
        speed = np.linalg.norm(s.command[:, :2], axis=1)
        scale = np.clip(speed / slow_speed, 0.2, 1.0)
        # Turning on the spot keeps the plain kernel: a drift of 0.1 m/s while turning would otherwise
        # cost more than the turn earns, and the policy learns to stand instead.
        scale[(speed < 0.05) & (np.abs(s.command[:, 2]) >= 0.1)] = 1.0
        return np.exp(-err / (sigma * scale * scale))
    return np.exp(-err / sigma)


def _share_made_good(s: BatchState, min_command: float) -> tuple[np.ndarray, np.ndarray]:
    """The planar velocity along the command as a share of the commanded speed (unclipped), and where the command
    is at least `min_command` (m/s) fast: where it is not, the share is 0."""
    c = s.command[:, :2]
    speed2 = np.sum(c * c, axis=1)
    asked = speed2 >= min_command * min_command
    return np.where(asked, np.sum(s.base_lin_vel[:, :2] * c, axis=1) / np.maximum(speed2, 1e-12), 0.0), asked


def lin_vel_progress(s: BatchState, min_command: float = 0.05, floor: float = 0.0,
                     ceiling: float = 1.0) -> np.ndarray:
    """The share of the commanded planar speed made good along the command's direction, clipped to [floor,
    ceiling] (0 standing still, 1 at the commanded speed); 0 when |cmd_xy| < `min_command` (m/s).

    Unlike an exp(-err^2) kernel it has no plateau around standing still: every bit of motion the right
    way pays, so slow commands are not learnt as "stand". With `floor` 0 motion the wrong way costs nothing,
    so random twitches pay on average (what first teaches a standing policy to walk) and so does a robot stuck
    at an obstacle rocking back and forth (40% of walking's pay on a pidog-run policy's stalls); with `floor`
    -1 a step back costs what a step forward pays, and rocking earns about nothing. A gait's speed swings within
    each stride: with `ceiling` 1 the fast part of a stride above the command earns nothing while the slow part
    is underpaid in full, which favours a slow, even walk under the command; a `ceiling` above 1 pays the peaks."""
    made, asked = _share_made_good(s, min_command)
    return np.where(asked, np.clip(made, floor, ceiling), 0.0)


class ProgressWindow:
    """`lin_vel_progress` over the last `window` seconds: the mean over that window of each step's velocity along
    its command (body frame) as a share of that command's speed, clipped to [0, 1] (since the reset, for a younger
    episode); 0 when |cmd_xy| < `min_command` (m/s). Steps under a smaller command count as 0, and a resampled
    command is judged on the window's older steps too: after a stand command, walking is underpaid for a window.

    A robot stuck against an obstacle and rocking on the spot moves forward half the time: step by step, with the
    backward half clipped to 0, `lin_vel_progress` pays it for that (about 40% of walking's pay, measured on a
    pidog-run policy's stalls); over a window its progress is about nothing, and walking on pays in full. But
    that clipping is also what first teaches walking: random twitches pay step by step and average out over a
    window, so a policy that stands still learns nothing from a long window (docs/results.md, nineteenth
    session). A window of one control step is `lin_vel_progress`; a reward stage (task.reward_stages) can
    lengthen it once the policy walks."""

    def __init__(self, num_envs: int, num_feet: int):
        self.made = np.zeros((num_envs, 0))  # the last `window` steps' velocity along the command / speed
        self.steps = np.zeros(num_envs, dtype=np.int64)  # steps since the reset (up to the window's)
        self.slot = 0

    def reset(self, env_ids: np.ndarray) -> None:
        self.made[env_ids] = 0.0
        self.steps[env_ids] = 0

    def __call__(self, s: BatchState, window: float = 1.0, min_command: float = 0.05) -> np.ndarray:
        w = max(1, round(window / s.dt))
        if self.made.shape[1] != w:  # the first step, or a reward stage changed the window: it starts empty
            self.made = np.zeros((len(self.steps), w))
            self.steps[:] = 0
        self.slot = (self.slot + 1) % w
        self.made[:, self.slot], asked = _share_made_good(s, min_command)
        self.steps = np.minimum(self.steps + 1, w)
        return np.where(asked, np.clip(self.made.sum(axis=1) / self.steps, 0.0, 1.0), 0.0)


def yaw_rate_progress(s: BatchState, min_command: float = 0.05) -> np.ndarray:
    """The share of the commanded yaw rate turned, clipped to [0, 1]; 0 when |cmd_yaw| < `min_command` (rad/s)."""
    cz = s.command[:, 2]
    made = s.base_ang_vel[:, 2] * cz / np.maximum(cz * cz, 1e-12)
    return np.where(np.abs(cz) >= min_command, np.clip(made, 0.0, 1.0), 0.0)


def track_ang_vel(s: BatchState, sigma: float = 0.25) -> np.ndarray:
    """Tracking of the commanded yaw rate: exp(-(wz - cmd_wz)^2 / sigma)."""
    return np.exp(-np.square(s.command[:, 2] - s.base_ang_vel[:, 2]) / sigma)


def lin_vel_z(s: BatchState) -> np.ndarray:
    """Squared vertical base velocity (m^2/s^2)."""
    return np.square(s.base_lin_vel[:, 2])


def ang_vel_xy(s: BatchState) -> np.ndarray:
    """Squared roll and pitch rates (rad^2/s^2)."""
    return np.sum(np.square(s.base_ang_vel[:, :2]), axis=1)


def orientation(s: BatchState) -> np.ndarray:
    """Tilt: squared x-y components of gravity in the body frame (0 when level)."""
    return np.sum(np.square(s.projected_gravity[:, :2]), axis=1)


def base_height(s: BatchState, target: float = 0.27) -> np.ndarray:
    """Squared error of base height from `target` (m^2)."""
    return np.square(s.base_height - target)


def base_too_low(s: BatchState, threshold: float = 0.15) -> np.ndarray:
    """1 where the base is below `threshold` (m): lying down and crawling is never a gait."""
    return (s.base_height < threshold).astype(np.float64)


def torques(s: BatchState) -> np.ndarray:
    """Sum of squared actuator torques (N^2*m^2)."""
    return np.sum(np.square(s.joint_torque), axis=1)


def energy(s: BatchState) -> np.ndarray:
    """Mechanical power drawn by the actuators: sum |tau * qdot| (W)."""
    return np.sum(np.abs(s.joint_torque * s.joint_vel), axis=1)


def action_rate(s: BatchState) -> np.ndarray:
    """Sum of squared changes of the action between control steps."""
    return np.sum(np.square(s.action - s.last_action), axis=1)


def joint_deviation(s: BatchState) -> np.ndarray:
    """Sum of squared joint offsets from the home pose (rad^2)."""
    return np.sum(np.square(s.joint_pos_rel), axis=1)


def joint_pose(s: BatchState, joints: tuple[str, ...] = (), target: tuple[float, ...] = ()) -> np.ndarray:
    """Sum of squared offsets (rad^2) of the named joints from their `target` angles (absolute, rad; one per
    joint). A pose the task wants held, such as a PiDog's head: its camera and ultrasonic are in the head, and a
    policy left free points them at the sky, where the ultrasonic hears nothing to be penalized for."""
    idx = s.joint_index(joints, "task.rewards.joint_pose.params.joints")
    if len(target) != len(idx):
        raise LegkitError(f"invalid task.rewards.joint_pose.params.target: {len(target)} angles for {len(idx)} joints "
                          f"({', '.join(joints)}); give one angle (rad) per joint")
    return np.sum(np.square(s.joint_pos[:, idx] - np.asarray(target)), axis=1)


def undesired_contacts(s: BatchState, threshold: float = 1.0) -> np.ndarray:
    """Number of bodies (thighs, trunk) touching the ground with more than `threshold` N."""
    return np.sum(s.undesired_force > threshold, axis=1).astype(np.float64)


def termination(s: BatchState) -> np.ndarray:
    """1 on the step where the robot fell (not on time-limit truncation)."""
    return s.terminated.astype(np.float64)


def alive(s: BatchState) -> np.ndarray:
    """1 on every step the robot has not fallen."""
    return (~s.terminated).astype(np.float64)


def height_target(s: BatchState, sigma: float = 0.05) -> np.ndarray:
    """Sharp peak at the target height: exp(-((z - target) / sigma)^2), 1 exactly at the target."""
    return np.exp(-np.square((s.base_height - s.target_height) / sigma))


def upright(s: BatchState) -> np.ndarray:
    """Uprightness in [0, 1]: ((1 + cos tilt) / 2)^2, 1 when the base's z axis points up."""
    return np.square((1.0 - s.projected_gravity[:, 2]) / 2.0)


def control_cost(s: BatchState) -> np.ndarray:
    """Sum of squared actions (dimensionless, actions in [-1, 1])."""
    return np.sum(np.square(s.action), axis=1)


def sustained_bonus(s: BatchState, every: int = 100) -> np.ndarray:
    """1 on every `every`-th control step survived in an episode."""
    return ((s.episode_step > 0) & (s.episode_step % every == 0) & ~s.terminated).astype(np.float64)


class FeetAirTime:
    """Reward steps of a useful length: on touchdown, sum over feet of (air time - threshold) (s).

    Zero when the command is (near) zero, so that standing still is not punished; a yaw-rate command
    alone counts as moving. A step shorter than `threshold` costs (air time - threshold): under a slow
    command, where short quick steps are the gait, walking can then cost more than standing earns, a dead
    zone; with `penalize_short` false such a step pays 0 instead.
    """

    def __init__(self, num_envs: int, num_feet: int):
        self.air_time = np.zeros((num_envs, num_feet))
        self.was_in_contact = np.ones((num_envs, num_feet), dtype=bool)

    def reset(self, env_ids: np.ndarray) -> None:
        self.air_time[env_ids] = 0.0
        self.was_in_contact[env_ids] = True

    def __call__(self, s: BatchState, threshold: float = 0.5, contact_force: float = 1.0,
                 penalize_short: bool = True) -> np.ndarray:
        contact = s.foot_force > contact_force
        touchdown = contact & ~self.was_in_contact
        # air_time counts the steps that ended with the foot in the air: k of them before touchdown = k * dt
        gain = self.air_time - threshold
        reward = np.sum((gain if penalize_short else np.maximum(gain, 0.0)) * touchdown, axis=1)
        self.air_time += s.dt
        self.air_time[contact] = 0.0
        self.was_in_contact = contact
        return reward * _told_to_move(s, 0.1)


def _told_to_move(s: BatchState, threshold: float) -> np.ndarray:
    """Where the command asks for motion: |cmd_xy| (m/s) or |cmd_yaw| (rad/s) above `threshold` (turning on the spot
    takes steps too)."""
    return (np.linalg.norm(s.command[:, :2], axis=1) > threshold) | (np.abs(s.command[:, 2]) > threshold)


def contact_schedule(s: BatchState, offsets: tuple[float, ...] = (0.0, 0.5, 0.5, 0.0), duty: float = 0.5,
                     contact_force: float = 1.0, min_command: float = 0.0) -> np.ndarray:
    """The share of feet (0-1) whose ground contact keeps a gait's schedule at the `clock` term's phase p (0-1,
    one cycle per task.clock_period): foot i should stand while (p + offsets[i]) mod 1 < `duty` and swing
    otherwise; a foot stands when its normal force exceeds `contact_force` (N). The default offsets, in the feet's
    order FL, FR, RL, RR, are a trot: the diagonals FL-RR and FR-RL alternate. A policy that observes the clock can
    keep the beat; without a schedule a small robot learns to shuffle at several strides a second.

    With `min_command` > 0 it is paid only while the robot is told to move (|cmd_xy| or |cmd_yaw| above it) and is
    0 under a (near) zero command, where standing still is the task: a gait term gated on the command's size. Then
    the beat is worth keeping under any command that asks for motion, the slow and backward ones included."""
    if not np.any(s.clock):
        raise LegkitError("the contact_schedule reward needs the `clock` observation term (task.observations) "
                          "and task.clock_period > 0: it reads the gait's phase from the clock")
    if len(offsets) != s.foot_force.shape[1]:
        raise LegkitError(f"invalid task.rewards.contact_schedule.params.offsets: {len(offsets)} phase offsets for "
                          f"{s.foot_force.shape[1]} feet; give one per foot")
    phase = np.arctan2(s.clock[:, 0], s.clock[:, 1]) / (2 * np.pi)
    stance = np.mod(phase[:, None] + np.asarray(offsets)[None, :], 1.0) < duty
    share = np.mean((s.foot_force > contact_force) == stance, axis=1)
    if min_command > 0:
        share *= _told_to_move(s, min_command)
    return share


def feet_clearance(s: BatchState, target: float = 0.08, min_command: float = 0.1) -> np.ndarray:
    """Feet swung low: sum over feet of max(target - h, 0) * sqrt(v), h the foot's height above the ground (m) and
    v its horizontal speed (m/s), while the robot is told to move (|cmd_xy| or |cmd_yaw| above `min_command`; 0:
    under every command); 0 under a (near) zero command. A stance foot that grips costs nothing; one that slides
    costs, and a foot carried forward along the ground costs the most. MuJoCo Playground's Go1 joystick has a
    similar cost (|h - target| * sqrt(v)). At weight -1 on go2-joystick, beside base_height at -30, the swing peaks
    rose by a centimetre or two and the step rate did not change (docs/results.md, thirtieth session)."""
    if s.foot_height.shape[1] == 0:  # foot_speed is filled with it (LeggedBatch.foot_height_speed)
        raise LegkitError("the feet_clearance reward needs foot position and velocity sensors on every foot "
                          "(RobotSpec.foot_pos_sensors and foot_vel_sensors); this robot names none")
    cost = np.sum(np.maximum(target - s.foot_height, 0.0) * np.sqrt(s.foot_speed), axis=1)
    return cost * _told_to_move(s, min_command) if min_command > 0 else cost


def stand_still(s: BatchState, threshold: float = 0.1) -> np.ndarray:
    """Motion under a zero command (|cmd_xy| + |cmd_yaw| < threshold): |v_xy|^2 + 0.1 |w_z|^2 + 0.01 mean
    joint speed^2 (SI units squared), 0 otherwise. Paid only when told to stand, so it never slows walking."""
    zero = (np.linalg.norm(s.command[:, :2], axis=1) + np.abs(s.command[:, 2])) < threshold
    motion = (np.sum(np.square(s.base_lin_vel[:, :2]), axis=1) + 0.1 * np.square(s.base_ang_vel[:, 2])
              + 0.01 * np.mean(np.square(s.joint_vel), axis=1))
    return np.where(zero, motion, 0.0)


def obstacle_contact(s: BatchState) -> np.ndarray:
    """1 while the robot touches an obstacle or an arena wall."""
    return (s.obstacle_contacts > 0).astype(np.float64)


class ObstacleContactOnset:
    """1 on the control step a robot starts touching an obstacle or an arena wall (it touched none at the step
    before): a collision as `legkit eval` counts them (collisions_per_episode). `obstacle_contact` pays for the
    time in contact; this pays for every new touch, so that a robot pawing at an obstacle, touching it again at
    each footfall, pays for each one."""

    def __init__(self, num_envs: int, num_feet: int):
        self.touching = np.zeros(num_envs, dtype=bool)

    def reset(self, env_ids: np.ndarray) -> None:
        self.touching[env_ids] = False

    def __call__(self, s: BatchState) -> np.ndarray:
        now = s.obstacle_contacts > 0
        onset = now & ~self.touching
        self.touching = now
        return onset.astype(np.float64)


def ultrasonic_proximity(s: BatchState, distance: float = 0.3) -> np.ndarray:
    """How far inside `distance` (m) the ultrasonic's echo is, as a fraction: (distance - d) / distance, 0 when
    nothing echoes within it (reads the `ultrasonic` observation's [echo flag, distance])."""
    echo, d = s.ultrasonic[:, 0], s.ultrasonic[:, 1]
    return np.where(echo > 0, np.clip((distance - d) / distance, 0.0, 1.0), 0.0)


def obstacle_proximity(s: BatchState, distance: float = 0.3) -> np.ndarray:
    """How far inside `distance` (m) of the base's centre the nearest obstacle footprint or arena wall is, as a
    fraction: (distance - clearance) / distance in [0, 1]. Privileged: the true geometry, low curbs and thin posts
    included, which the ultrasonic misses; a dense signal to steer by before a touch, where `obstacle_contact`
    only pays after one."""
    return np.clip((distance - s.obstacle_clearance) / distance, 0.0, 1.0)


REWARDS = {
    "track_lin_vel": track_lin_vel,
    "track_ang_vel": track_ang_vel,
    "lin_vel_progress": lin_vel_progress,
    "yaw_rate_progress": yaw_rate_progress,
    "progress_window": ProgressWindow,
    "lin_vel_z": lin_vel_z,
    "ang_vel_xy": ang_vel_xy,
    "orientation": orientation,
    "base_height": base_height,
    "base_too_low": base_too_low,
    "torques": torques,
    "energy": energy,
    "action_rate": action_rate,
    "joint_deviation": joint_deviation,
    "joint_pose": joint_pose,
    "contact_schedule": contact_schedule,
    "feet_clearance": feet_clearance,
    "undesired_contacts": undesired_contacts,
    "termination": termination,
    "alive": alive,
    "height_target": height_target,
    "upright": upright,
    "control_cost": control_cost,
    "sustained_bonus": sustained_bonus,
    "feet_air_time": FeetAirTime,
    "stand_still": stand_still,
    "obstacle_contact": obstacle_contact,
    "obstacle_contact_onset": ObstacleContactOnset,
    "ultrasonic_proximity": ultrasonic_proximity,
    "obstacle_proximity": obstacle_proximity,
}
"""Every reward term by config name. Classes are stateful terms, built once per environment."""
