"""Every reward term on a hand-made BatchState with hand-computed answers; the RewardManager; the frame math."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.tasks.rewards import REWARDS, FeetAirTime
from legkit.tasks.state import BatchState, quat_rotate_inverse
from legkit.tasks.terms import RewardManager, RewardTerm

DT = 0.02
NUM_JOINTS, NUM_FEET, NUM_UNDESIRED = 12, 4, 5


def make_state(num_envs: int = 2) -> BatchState:
    return BatchState(num_envs, NUM_JOINTS, NUM_FEET, NUM_UNDESIRED, DT)


def call(name: str, s: BatchState, **params) -> np.ndarray:
    out = REWARDS[name](s, **params)
    assert out.shape == (s.num_envs,), name
    assert np.issubdtype(out.dtype, np.floating), name
    return out


# -- stateless terms ------------------------------------------------------------------------------

def test_track_lin_vel():
    s = make_state()
    s.command[:] = [[1.0, 0.5, 0.0], [0.7, 0.0, 0.3]]
    s.base_lin_vel[:] = [[0.8, 0.2, 0.3], [0.7, 0.0, -2.0]]  # vz is not tracked
    # env 0: err = 0.2^2 + 0.3^2 = 0.13; env 1: perfect planar tracking
    np.testing.assert_allclose(call("track_lin_vel", s), [math.exp(-0.13 / 0.25), 1.0])
    np.testing.assert_allclose(call("track_lin_vel", s, sigma=0.5), [math.exp(-0.13 / 0.5), 1.0])


def test_track_ang_vel():
    s = make_state()
    s.command[:, 2] = [0.5, -0.2]
    s.base_ang_vel[:] = [[3.0, 3.0, 0.1], [0.0, 0.0, -0.2]]  # roll/pitch rates are not tracked
    np.testing.assert_allclose(call("track_ang_vel", s), [math.exp(-0.16 / 0.25), 1.0])
    np.testing.assert_allclose(call("track_ang_vel", s, sigma=1.0), [math.exp(-0.16), 1.0])


def test_lin_vel_z():
    s = make_state()
    s.base_lin_vel[:] = [[5.0, 5.0, 0.3], [0.0, 0.0, -2.0]]
    np.testing.assert_allclose(call("lin_vel_z", s), [0.09, 4.0])


def test_ang_vel_xy():
    s = make_state()
    s.base_ang_vel[:] = [[0.2, -0.4, 5.0], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(call("ang_vel_xy", s), [0.2, 0.0], atol=1e-12)


def test_orientation():
    s = make_state()
    s.projected_gravity[:] = [[0.1, -0.2, -0.97], [0.0, 0.0, -1.0]]
    np.testing.assert_allclose(call("orientation", s), [0.05, 0.0], atol=1e-12)


def test_base_height():
    s = make_state()
    s.base_pos[:] = [[3.0, 4.0, 0.25], [0.0, 0.0, 0.27]]
    s.base_height[:] = s.base_pos[:, 2]  # a plane: height above the ground is z
    np.testing.assert_allclose(call("base_height", s), [0.0004, 0.0], atol=1e-12)
    np.testing.assert_allclose(call("base_height", s, target=0.3), [0.0025, 0.0009], atol=1e-12)


def test_base_too_low():
    s = make_state(3)
    s.base_pos[:, 2] = s.base_height[:] = [0.10, 0.15, 0.20]  # a plane: height above the ground is z
    np.testing.assert_array_equal(call("base_too_low", s), [1.0, 0.0, 0.0])  # strictly below 0.15
    np.testing.assert_array_equal(call("base_too_low", s, threshold=0.18), [1.0, 1.0, 0.0])


def test_torques():
    s = make_state()
    s.joint_torque[0, :3] = [1.0, 2.0, -3.0]
    s.joint_torque[1, :] = 0.5
    np.testing.assert_allclose(call("torques", s), [14.0, 12 * 0.25])


def test_energy():
    s = make_state()
    s.joint_torque[0, :3] = [1.0, 2.0, -3.0]
    s.joint_vel[0, :3] = [2.0, -1.0, 1.0]
    s.joint_vel[0, 5] = 100.0  # no torque on that joint: no power
    s.joint_torque[1, 0], s.joint_vel[1, 0] = -4.0, -0.5  # negative * negative
    np.testing.assert_allclose(call("energy", s), [2.0 + 2.0 + 3.0, 2.0])


def test_action_rate():
    s = make_state()
    s.action[0, :2] = [0.5, -0.5]
    s.last_action[0, :2] = [0.2, 0.5]
    s.action[1, :] = 0.3
    s.last_action[1, :] = 0.3
    np.testing.assert_allclose(call("action_rate", s), [0.09 + 1.0, 0.0], atol=1e-12)


def test_joint_deviation():
    s = make_state()
    s.joint_pos[:] = 7.0  # absolute positions do not matter, only the offset from home
    s.joint_pos_rel[0, :3] = [0.1, -0.2, 0.3]
    np.testing.assert_allclose(call("joint_deviation", s), [0.14, 0.0], atol=1e-12)


def test_joint_pose_penalizes_named_joints_off_their_targets():
    s = BatchState(2, 3, NUM_FEET, NUM_UNDESIRED, DT, joint_names=("hip", "head_yaw", "head_pitch"))
    s.joint_pos[0] = [1.0, 0.2, -1.0]  # robot 0: head turned 0.2 rad, pitched up; robot 1: on target
    s.joint_pos[1] = [-0.5, 0.0, 0.3]
    out = call("joint_pose", s, joints=("head_yaw", "head_pitch"), target=(0.0, 0.3))
    np.testing.assert_allclose(out, [0.04 + 1.69, 0.0], atol=1e-12)  # the hip is not named: free
    with pytest.raises(LegkitError, match="unknown joint 'neck'; valid: hip, head_yaw, head_pitch"):
        call("joint_pose", s, joints=("neck",), target=(0.0,))
    with pytest.raises(LegkitError, match="1 angles for 2 joints"):
        call("joint_pose", s, joints=("hip", "head_yaw"), target=(0.0,))


def test_env_rejects_a_joint_pose_naming_what_the_robot_lacks():
    """Checked when the env is built, before any training step, with the robot's joints listed."""
    from legkit.envs.core import LeggedBatch
    from legkit.train.config import build_config

    cfg = build_config("go2-walk", sets=["task.rewards.joint_pose.weight=-1",
                                         "task.rewards.joint_pose.params.joints=[head_pitch_joint]",
                                         "task.rewards.joint_pose.params.target=[0.3]"])
    with pytest.raises(LegkitError, match="unknown joint 'head_pitch_joint'; valid: FL_hip_joint"):
        LeggedBatch(cfg.task, 2, seed=0)


def test_contact_schedule_pays_feet_that_keep_the_trot():
    s = make_state(3)
    quarter = 2 * np.pi * 0.25  # phase 0.25: FL and RR stand (0.25 < 0.5), FR and RL swing (0.75)
    s.clock[:] = [np.sin(quarter), np.cos(quarter)]
    s.foot_force[0] = [30.0, 0.0, 0.0, 30.0]  # on the beat
    s.foot_force[1] = [0.0, 30.0, 30.0, 0.0]  # the other diagonal: every foot wrong
    s.foot_force[2] = [30.0, 30.0, 30.0, 30.0]  # all four down: half right
    np.testing.assert_allclose(call("contact_schedule", s), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(call("contact_schedule", s, duty=0.8), [0.5, 0.5, 1.0])  # (0.75 < 0.8: stand)
    s.clock[:] = [np.sin(3 * quarter), np.cos(3 * quarter)]  # half a cycle on: the diagonals swap
    np.testing.assert_allclose(call("contact_schedule", s), [0.0, 1.0, 0.5])
    with pytest.raises(LegkitError, match="3 phase offsets for 4 feet"):
        call("contact_schedule", s, offsets=(0.0, 0.5, 0.5))
    s.command[:] = [[0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.05, 0.2]]  # gated: paid only when told to move
    np.testing.assert_allclose(call("contact_schedule", s, min_command=0.1), [0.0, 0.0, 0.5])
    np.testing.assert_allclose(call("contact_schedule", s), [0.0, 1.0, 0.5])  # ungated: every command
    s.clock[:] = 0.0  # the clock never ticked: not observed
    with pytest.raises(LegkitError, match="needs the `clock` observation term"):
        call("contact_schedule", s)


def test_feet_clearance_prices_feet_carried_low_while_told_to_move():
    s = make_state(3)
    s.foot_height = np.array([[0.0, 0.10, 0.02, 0.0], [0.0, 0.0, 0.0, 0.0], [0.03, 0.03, 0.03, 0.03]])
    s.foot_speed = np.array([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    s.command[:] = [0.5, 0.0, 0.0]
    # Row 0: a stance foot (still) and a foot swung above the target cost nothing; one swung 2 cm up at 1 m/s
    # costs (0.08 - 0.02) * sqrt(1). Row 1: all feet down and still (standing) costs nothing. Row 2: every foot
    # 5 cm short of the target at 0.25 m/s: 4 * 0.05 * 0.5.
    np.testing.assert_allclose(call("feet_clearance", s), [0.06, 0.0, 0.1])
    np.testing.assert_allclose(call("feet_clearance", s, target=0.03), [0.01, 0.0, 0.0])
    s.command[:] = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]  # told to stand: free; a turn counts
    np.testing.assert_allclose(call("feet_clearance", s), [0.0, 0.0, 0.1])
    np.testing.assert_allclose(call("feet_clearance", s, min_command=0.0), [0.06, 0.0, 0.1])
    s.foot_height = np.zeros((3, 0))  # a robot without foot sensors
    with pytest.raises(LegkitError, match="needs foot position and velocity sensors"):
        call("feet_clearance", s)


def test_env_fills_foot_height_and_speed_from_the_robot():
    """On a real Go2 the feet stand on the ground (height near 0, still) and are off it when the robot is put 20 cm
    up: the state reads the model's foot sensors, less the sphere feet's radius."""
    from legkit.envs.core import LeggedBatch
    from legkit.train.config import build_config

    batch = LeggedBatch(build_config("go2-walk").task, 2, seed=0, nthread=1)
    try:
        s = batch.state
        batch.reset()
        for _ in range(25):  # settle on the home pose
            batch.step(np.zeros((2, 12)))
        assert s.foot_height.shape == s.foot_speed.shape == (2, 4)
        assert np.all(np.abs(s.foot_height) < 0.01), s.foot_height
        assert np.all(s.foot_speed < 0.05), s.foot_speed
        qpos, qvel = batch.sim.qpos.copy(), np.zeros_like(batch.sim.qvel)
        qpos[:, 2] += 0.2
        batch.sim.set_state(np.arange(2), qpos, qvel)
        batch.step(np.zeros((2, 12)))  # one control step of falling (2 mm); the unloaded legs stretch by 1-2 cm
        assert np.all((s.foot_height > 0.17) & (s.foot_height < 0.2)), s.foot_height
    finally:
        batch.close()


def test_env_rejects_a_contact_schedule_without_a_clock():
    from legkit.envs.core import LeggedBatch
    from legkit.train.config import build_config

    cfg = build_config("go2-walk", sets=["task.rewards.contact_schedule.weight=1"])
    with pytest.raises(LegkitError, match="needs the `clock` observation term"):
        LeggedBatch(cfg.task, 2, seed=0)
    cfg = build_config("pidog-run", sets=["task.rewards.contact_schedule.weight=1"])  # it observes the clock
    LeggedBatch(cfg.task, 2, seed=0).close()


def test_undesired_contacts():
    s = make_state()
    s.undesired_force[0] = [0.0, 0.5, 1.0, 1.5, 20.0]
    np.testing.assert_array_equal(call("undesired_contacts", s), [2.0, 0.0])  # strictly above 1 N
    np.testing.assert_array_equal(call("undesired_contacts", s, threshold=0.4), [4.0, 0.0])


def test_termination_and_alive():
    s = make_state(3)
    s.terminated[:] = [True, False, True]
    np.testing.assert_array_equal(call("termination", s), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(call("alive", s), [0.0, 1.0, 0.0])


def test_height_target():
    s = make_state(3)
    s.target_height[:] = [1.28, 1.28, 1.10]
    s.base_pos[:, 2] = s.base_height[:] = [1.28, 1.18, 1.20]  # a plane: height above the ground is z
    # exp(-((z - target) / sigma)^2): 1 at the target; 0.1 m off with sigma 0.1 -> e^-1
    np.testing.assert_allclose(call("height_target", s, sigma=0.1), [1.0, math.exp(-1.0), math.exp(-1.0)])
    np.testing.assert_allclose(call("height_target", s, sigma=0.05)[1], math.exp(-4.0))


def test_upright():
    s = make_state(3)
    a = math.pi / 3  # tilted by 60 degrees: gravity z in the body frame is -cos(60) = -0.5
    s.projected_gravity[:] = [[0, 0, -1], [math.sin(a), 0, -math.cos(a)], [0, 0, 1]]
    # ((1 - g_z) / 2)^2: upright 1, 60 degrees (0.75)^2, upside down 0
    np.testing.assert_allclose(call("upright", s), [1.0, 0.5625, 0.0])


def test_control_cost():
    s = make_state(2)
    s.action[0, :3] = [1.0, -0.5, 0.5]
    np.testing.assert_allclose(call("control_cost", s), [1.5, 0.0])


def test_sustained_bonus():
    s = make_state(4)
    s.episode_step[:] = [100, 99, 200, 300]
    s.terminated[:] = [False, False, False, True]
    np.testing.assert_array_equal(call("sustained_bonus", s), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(call("sustained_bonus", s, every=50), [1.0, 0.0, 1.0, 0.0])
    s.episode_step[:] = [50, 150, 25, 0]
    np.testing.assert_array_equal(call("sustained_bonus", s, every=50), [1.0, 1.0, 0.0, 0.0])


def test_track_lin_vel_sharpens_below_slow_speed():
    s = make_state(3)
    s.command[:] = [[0.2, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    s.base_lin_vel[:] = [[0.0, 0.0, 0.0], [0.8, 0.0, 0.0], [0.05, 0.0, 0.0]]
    # standing under 0.2 m/s: err 0.04, sigma 0.25 x (0.2/0.5)^2 = 0.04 -> exp(-1); at 1.0 m/s the plain kernel;
    # at zero command the scale clips at 0.2: sigma 0.25 x 0.04 = 0.01
    np.testing.assert_allclose(call("track_lin_vel", s, slow_speed=0.5),
                               [math.exp(-1.0), math.exp(-0.04 / 0.25), math.exp(-0.0025 / 0.01)])
    np.testing.assert_allclose(call("track_lin_vel", s)[0], math.exp(-0.04 / 0.25))  # plain: 85% for standing
    s.command[2] = [0.0, 0.0, 1.0]  # turning on the spot: the plain kernel, drift costs no more than at speed
    np.testing.assert_allclose(call("track_lin_vel", s, slow_speed=0.5)[2], math.exp(-0.0025 / 0.25))


def test_progress_terms_pay_motion_along_the_command_without_a_plateau():
    s = make_state(5)
    s.command[:] = [[0.2, 0.0, 0.5], [0.2, 0.0, 0.5], [0.0, -0.5, -1.0], [1.0, 0.0, 0.0], [0.02, 0.0, 0.0]]
    s.base_lin_vel[:, :2] = [[0.0, 0.0], [0.1, 0.3], [0.0, -0.8], [-0.5, 0.0], [0.02, 0.0]]
    s.base_ang_vel[:, 2] = [0.0, 0.25, -0.4, 2.0, 0.0]
    # standing: 0; half the speed the right way (sideways motion does not count): 0.5; above it: capped at 1;
    # the wrong way: 0 (not negative); below min_command: 0
    np.testing.assert_allclose(call("lin_vel_progress", s), [0.0, 0.5, 1.0, 0.0, 0.0])
    # with a floor, the wrong way costs: -0.5 m/s against a 1 m/s command is -0.5, or the floor if above it
    np.testing.assert_allclose(call("lin_vel_progress", s, floor=-1.0), [0.0, 0.5, 1.0, -0.5, 0.0])
    np.testing.assert_allclose(call("lin_vel_progress", s, floor=-0.25), [0.0, 0.5, 1.0, -0.25, 0.0])
    # with a ceiling, speed above the command pays on: 0.8 m/s against 0.5 is 1.6, or the ceiling if below it
    np.testing.assert_allclose(call("lin_vel_progress", s, ceiling=2.0), [0.0, 0.5, 1.6, 0.0, 0.0])
    np.testing.assert_allclose(call("lin_vel_progress", s, ceiling=1.25), [0.0, 0.5, 1.25, 0.0, 0.0])
    np.testing.assert_allclose(call("yaw_rate_progress", s), [0.0, 0.5, 0.4, 0.0, 0.0])


def test_stand_still_is_paid_only_under_a_zero_command():
    s = make_state(2)
    s.command[:] = [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
    s.base_lin_vel[:] = [[0.3, 0.4, 0.0], [0.3, 0.4, 0.0]]
    s.base_ang_vel[:, 2] = [1.0, 1.0]
    s.joint_vel[:] = 2.0
    # 0.25 + 0.1 x 1 + 0.01 x 4 under the zero command; nothing while walking
    np.testing.assert_allclose(call("stand_still", s), [0.25 + 0.1 + 0.04, 0.0])


STATELESS_TESTED = {
    "track_lin_vel", "track_ang_vel", "lin_vel_z", "ang_vel_xy", "orientation", "base_height", "base_too_low",
    "torques", "energy", "action_rate", "joint_deviation", "undesired_contacts", "termination", "alive",
    "height_target", "upright", "control_cost", "sustained_bonus", "stand_still", "lin_vel_progress",
    "yaw_rate_progress", "joint_pose", "contact_schedule", "feet_clearance", "obstacle_contact", "ultrasonic_proximity", "obstacle_proximity",
}


def test_obstacle_contact_and_ultrasonic_proximity():
    s = make_state(4)
    s.obstacle_contacts[:] = [0, 1, 3, 0]
    np.testing.assert_array_equal(REWARDS["obstacle_contact"](s), [0.0, 1.0, 1.0, 0.0])
    s.ultrasonic = np.array([[1.0, 0.1], [1.0, 0.3], [0.0, 2.9], [1.0, 0.25]])  # [echo flag, distance m]
    np.testing.assert_allclose(REWARDS["ultrasonic_proximity"](s, distance=0.2), [0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(REWARDS["ultrasonic_proximity"](s, distance=0.5), [0.8, 0.4, 0.0, 0.5])

    s.obstacle_clearance[:] = [0.05, 0.3, np.inf, -0.01]  # m; negative: the centre inside a footprint
    np.testing.assert_allclose(REWARDS["obstacle_proximity"](s, distance=0.2), [0.75, 0.0, 0.0, 1.0])


def test_obstacle_contact_onset_pays_each_new_touch_once():
    term = REWARDS["obstacle_contact_onset"](3, 4)
    s = make_state(3)
    paid = []
    for contacts in ([0, 2, 1], [1, 2, 0], [1, 0, 0], [0, 1, 3], [2, 1, 0]):
        s.obstacle_contacts[:] = contacts
        paid.append(term(s))
    np.testing.assert_array_equal(paid, [[0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1], [1, 0, 0]])
    term.reset(np.array([1]))  # a new episode that starts touching: a collision, as eval counts it
    s.obstacle_contacts[:] = [2, 1, 0]
    np.testing.assert_array_equal(term(s), [0, 1, 0])


def test_progress_window_pays_the_window_mean_so_rocking_on_the_spot_earns_nothing():
    term = REWARDS["progress_window"](3, 4)
    s = make_state(3)
    s.command[:] = [[0.2, 0.0, 0.0], [0.2, 0.0, 0.0], [0.02, 0.0, 0.0]]  # env 2: below min_command
    # 4 steps of 0.02 s, a window of 0.06 s = 3 steps. env 0 rocks (+0.2, -0.2, +0.2, -0.2 m/s), env 1 walks on
    # at the command, then at half of it; env 2 walks at its (too small) command
    rocking, walking = [0.2, -0.2, 0.2, -0.2], [0.2, 0.2, 0.1, 0.1]
    paid = []
    for k in range(4):
        s.base_lin_vel[:, 0] = [rocking[k], walking[k], 0.02]
        step = call("lin_vel_progress", s)
        paid.append(term(s, window=0.06))
        assert step[0] == (1.0 if k % 2 == 0 else 0.0)  # step by step, the forward half of a rock pays in full
    # env 0: means since the reset 1, 0, 1/3, then over the window (-0.2 + 0.2 - 0.2) / 3 / 0.2 -> clipped 0
    # env 1: 1, 1, (0.2 + 0.2 + 0.1) / 3 / 0.2 = 5/6, (0.2 + 0.1 + 0.1) / 3 / 0.2 = 2/3
    np.testing.assert_allclose(paid, [[1, 1, 0], [0, 1, 0], [1 / 3, 5 / 6, 0], [0, 2 / 3, 0]])
    term.reset(np.array([1]))  # a new episode: its window starts empty
    s.base_lin_vel[:, 0] = [0.2, 0.0, 0.0]
    np.testing.assert_allclose(term(s, window=0.06), [1 / 3, 0.0, 0.0])
    # one step long, it is lin_vel_progress; a new window (a reward stage's) starts empty for every robot
    s.base_lin_vel[:, 0] = [-0.1, 0.1, 0.02]
    np.testing.assert_allclose(term(s, window=0.02), call("lin_vel_progress", s))
    s.base_lin_vel[:, 0] = [0.1, 0.3, 0.02]
    np.testing.assert_allclose(term(s, window=0.02), call("lin_vel_progress", s))
    s.base_lin_vel[:, 0] = [0.1, 0.0, 0.02]
    np.testing.assert_allclose(term(s, window=0.04), [0.5, 0.0, 0.0])


def test_every_registered_term_has_a_test():
    assert set(REWARDS) == STATELESS_TESTED | {"feet_air_time", "obstacle_contact_onset", "progress_window"}


# -- feet air time ---------------------------------------------------------------------------------

def feet_step(term: FeetAirTime, s: BatchState, in_air: list[list[bool]], **params) -> np.ndarray:
    """One control step with feet marked in the air (force 0) or on the ground (force 50 N)."""
    s.foot_force[:] = np.where(np.asarray(in_air), 0.0, 50.0)
    out = term(s, **params)
    assert out.shape == (s.num_envs,)
    return out


GROUND = [False] * NUM_FEET


def lifted(*feet: int) -> list[bool]:
    return [i in feet for i in range(NUM_FEET)]


@pytest.mark.parametrize("k", [1, 5, 20])
def test_feet_air_time_rewards_air_time_on_touchdown(k):
    s = make_state(3)
    # env 1 is told to stand still; env 2 to turn on the spot, which takes steps too
    s.command[:] = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.8]]
    term = FeetAirTime(3, NUM_FEET)
    np.testing.assert_array_equal(feet_step(term, s, [GROUND] * 3, threshold=0.3), [0.0, 0.0, 0.0])
    for _ in range(k):  # foot 0 in the air for k steps: nothing until it lands
        np.testing.assert_array_equal(feet_step(term, s, [lifted(0)] * 3, threshold=0.3), [0.0, 0.0, 0.0])
    r = feet_step(term, s, [GROUND] * 3, threshold=0.3)
    np.testing.assert_allclose(r, [k * DT - 0.3, 0.0, k * DT - 0.3])  # zero command: no air-time reward
    # Standing on all feet afterwards gives nothing more.
    np.testing.assert_array_equal(feet_step(term, s, [GROUND] * 3, threshold=0.3), [0.0, 0.0, 0.0])


def test_feet_air_time_short_steps_cost_unless_told_not_to():
    # a 0.1 s step under a 0.3 s threshold costs 0.2 by default (what makes slow walking dearer than standing);
    # with penalize_short false it pays 0, and a long step pays as before
    s = make_state(1)
    s.command[:] = [[0.2, 0.0, 0.0]]
    for penalize, short, long in ((True, 5 * DT - 0.3, 20 * DT - 0.3), (False, 0.0, 20 * DT - 0.3)):
        term = FeetAirTime(1, NUM_FEET)
        for steps, expected in ((5, short), (20, long)):
            for _ in range(steps):
                feet_step(term, s, [lifted(2)], threshold=0.3, penalize_short=penalize)
            r = feet_step(term, s, [GROUND], threshold=0.3, penalize_short=penalize)
            np.testing.assert_allclose(r, [expected])


def test_feet_air_time_sums_feet_landing_together():
    s = make_state(1)
    s.command[:] = [[0.0, 0.6, 0.0]]  # sideways counts as moving
    term = FeetAirTime(1, NUM_FEET)
    for _ in range(5):
        feet_step(term, s, [lifted(1)])
    for _ in range(20):
        feet_step(term, s, [lifted(0, 1)])
    r = feet_step(term, s, [GROUND])  # default threshold 0.5
    np.testing.assert_allclose(r, [(20 * DT - 0.5) + (25 * DT - 0.5)])


def test_feet_air_time_contact_force_threshold():
    s = make_state(1)
    s.command[:] = [[1.0, 0.0, 0.0]]
    term = FeetAirTime(1, NUM_FEET)
    s.foot_force[:] = 50.0
    term(s)
    for _ in range(10):
        s.foot_force[0, 2] = 3.0  # a light touch below contact_force=5 counts as air
        np.testing.assert_array_equal(term(s, contact_force=5.0), [0.0])
    s.foot_force[0, 2] = 6.0
    np.testing.assert_allclose(term(s, threshold=0.1, contact_force=5.0), [10 * DT - 0.1])


def test_feet_air_time_reset_clears_state():
    s = make_state(2)
    s.command[:] = [1.0, 0.0, 0.0]
    term = FeetAirTime(2, NUM_FEET)
    feet_step(term, s, [GROUND, GROUND])
    for _ in range(10):
        feet_step(term, s, [lifted(3), lifted(3)])
    term.reset(np.array([0]))
    np.testing.assert_array_equal(term.air_time[0], 0.0)
    assert term.was_in_contact[0].all()
    assert term.air_time[1, 3] == pytest.approx(10 * DT)  # env 1 untouched
    for _ in range(3):
        feet_step(term, s, [lifted(3), lifted(3)])
    r = feet_step(term, s, [GROUND, GROUND], threshold=0.0)
    np.testing.assert_allclose(r, [3 * DT, 13 * DT])


def test_feet_air_time_after_reset_in_air_lands_once():
    """A robot reset in the air (was_in_contact=True) is rewarded for its first landing, once."""
    s = make_state(1)
    s.command[:] = [1.0, 0.0, 0.0]
    term = FeetAirTime(1, NUM_FEET)
    all_air = [[True] * NUM_FEET]
    for _ in range(4):
        np.testing.assert_array_equal(feet_step(term, s, all_air, threshold=0.0), [0.0])
    np.testing.assert_allclose(feet_step(term, s, [GROUND], threshold=0.0), [4 * 4 * DT])


# -- reward manager --------------------------------------------------------------------------------

def manager_state() -> BatchState:
    s = make_state(2)
    s.base_lin_vel[:, 2] = [0.3, 0.0]  # lin_vel_z = [0.09, 0]
    s.terminated[:] = [False, True]  # alive = [1, 0]
    s.projected_gravity[:] = [0.6, 0.0, -0.8]  # orientation = 0.36, but its weight is 0
    return s


TABLE = {"lin_vel_z": RewardTerm(-2.0), "alive": RewardTerm(1.0), "orientation": RewardTerm(0.0)}


def test_reward_manager_scales_weights_by_dt():
    rm = RewardManager(TABLE, num_envs=2, num_feet=NUM_FEET, dt=DT, scale_by_dt=True)
    assert rm.names == ["lin_vel_z", "alive"]  # zero-weight terms are dropped
    total = rm.compute(manager_state())
    np.testing.assert_allclose(total, [-2.0 * DT * 0.09 + DT, 0.0], atol=1e-12)


def test_reward_manager_without_dt_scaling():
    rm = RewardManager(TABLE, num_envs=2, num_feet=NUM_FEET, dt=DT, scale_by_dt=False)
    np.testing.assert_allclose(rm.compute(manager_state()), [-0.18 + 1.0, 0.0], atol=1e-12)


def test_reward_manager_passes_params():
    table = {"base_height": RewardTerm(-10.0, {"target": 0.3})}
    rm = RewardManager(table, num_envs=2, num_feet=NUM_FEET, dt=DT, scale_by_dt=False)
    s = make_state(2)
    s.base_pos[:, 2] = s.base_height[:] = [0.2, 0.3]  # a plane: height above the ground is z
    np.testing.assert_allclose(rm.compute(s), [-10.0 * 0.01, 0.0], atol=1e-12)


def test_reward_manager_episode_sums_and_reset():
    rm = RewardManager(TABLE, num_envs=2, num_feet=NUM_FEET, dt=DT, scale_by_dt=True)
    s = manager_state()
    for _ in range(3):
        rm.compute(s)
    np.testing.assert_allclose(rm.episode_sums["lin_vel_z"], [3 * -2.0 * DT * 0.09, 0.0], atol=1e-12)
    np.testing.assert_allclose(rm.episode_sums["alive"], [3 * DT, 0.0], atol=1e-12)
    assert "orientation" not in rm.episode_sums

    finished = rm.reset(np.array([0]))
    assert set(finished) == {"lin_vel_z", "alive"}
    np.testing.assert_allclose(finished["lin_vel_z"], [3 * -2.0 * DT * 0.09])
    np.testing.assert_allclose(finished["alive"], [3 * DT])
    np.testing.assert_array_equal(rm.episode_sums["lin_vel_z"], [0.0, 0.0])
    np.testing.assert_array_equal(rm.episode_sums["alive"], [0.0, 0.0])

    s.terminated[:] = False
    rm.compute(s)
    rm.compute(s)
    finished = rm.reset(np.array([1]))
    np.testing.assert_allclose(finished["alive"], [2 * DT])  # env 1 only counted its alive steps
    np.testing.assert_allclose(rm.episode_sums["alive"], [2 * DT, 0.0])  # env 0 keeps counting


def test_reward_manager_resets_stateful_terms():
    rm = RewardManager({"feet_air_time": RewardTerm(1.0, {"threshold": 0.0})}, num_envs=2, num_feet=NUM_FEET,
                       dt=DT, scale_by_dt=False)
    s = make_state(2)
    s.command[:] = [1.0, 0.0, 0.0]
    s.foot_force[:] = 50.0
    rm.compute(s)
    s.foot_force[:, 0] = 0.0
    for _ in range(5):
        rm.compute(s)
    rm.reset(np.array([1]))
    s.foot_force[:, 0] = 50.0
    np.testing.assert_allclose(rm.compute(s), [5 * DT, 0.0])


def test_reward_manager_rejects_unknown_term():
    with pytest.raises(LegkitError) as err:
        RewardManager({"nope": RewardTerm(1.0)}, num_envs=1, num_feet=NUM_FEET, dt=DT, scale_by_dt=True)
    msg = str(err.value)
    assert "'nope'" in msg
    for name in REWARDS:
        assert name in msg


@pytest.mark.parametrize("term,bad,valid", [
    ("base_height", "height", ["target"]),
    ("feet_air_time", "thresh", ["threshold", "contact_force", "penalize_short"]),
    ("lin_vel_z", "sigma", ["none"]),
])
def test_reward_manager_rejects_unknown_param(term, bad, valid):
    with pytest.raises(LegkitError) as err:
        RewardManager({term: RewardTerm(1.0, {bad: 1.0})}, num_envs=1, num_feet=NUM_FEET, dt=DT, scale_by_dt=True)
    msg = str(err.value)
    assert f"'{bad}'" in msg and f"'{term}'" in msg
    for v in valid:
        assert v in msg


# -- frames ----------------------------------------------------------------------------------------

def random_quats(n: int, seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def rotation(q: np.ndarray) -> np.ndarray:
    """Body-to-world rotation matrix of one w-x-y-z quaternion, by MuJoCo."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, q)
    return mat.reshape(3, 3)


def test_quat_rotate_inverse_matches_mujoco():
    q = random_quats(8, seed=1)
    v = np.random.default_rng(2).normal(size=(8, 3))
    expected = np.stack([rotation(qi).T @ vi for qi, vi in zip(q, v)])
    np.testing.assert_allclose(quat_rotate_inverse(q, v), expected, atol=1e-12)


def test_quat_rotate_inverse_known_rotation():
    # 90 degrees about z: the world x axis is the body's -y axis.
    q = np.array([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    np.testing.assert_allclose(quat_rotate_inverse(q, np.array([[1.0, 0.0, 0.0]])), [[0.0, -1.0, 0.0]], atol=1e-12)


def test_update_kinematics_matches_mujoco():
    n, nq, nv = 6, 19, 18
    rng = np.random.default_rng(3)
    q = random_quats(n, seed=4)
    qpos = rng.normal(size=(n, nq))
    qpos[:, 3:7] = q
    qvel = rng.normal(size=(n, nv))
    home = rng.normal(size=12)
    s = BatchState(n, 12, NUM_FEET, NUM_UNDESIRED, DT)
    s.update_kinematics(qpos, qvel, home, np.arange(7, 19), np.arange(6, 18))

    R = [rotation(qi) for qi in q]
    np.testing.assert_allclose(s.projected_gravity, [r.T @ [0.0, 0.0, -1.0] for r in R], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(s.projected_gravity, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(s.base_lin_vel, [r.T @ v for r, v in zip(R, qvel[:, :3])], atol=1e-12)
    np.testing.assert_array_equal(s.base_ang_vel, qvel[:, 3:6])  # already in the body frame
    np.testing.assert_array_equal(s.base_pos, qpos[:, :3])
    np.testing.assert_array_equal(s.joint_pos, qpos[:, 7:19])
    np.testing.assert_allclose(s.joint_pos_rel, qpos[:, 7:19] - home)
    np.testing.assert_array_equal(s.joint_vel, qvel[:, 6:18])


def test_projected_gravity_level_and_tilted():
    s = BatchState(2, 12, NUM_FEET, NUM_UNDESIRED, DT)
    qpos = np.zeros((2, 19))
    qpos[0, 3] = 1.0  # level
    a = 0.3  # pitched nose-down by 0.3 rad about y: gravity leans towards body +x
    qpos[1, 3:7] = [math.cos(a / 2), 0.0, math.sin(a / 2), 0.0]
    s.update_kinematics(qpos, np.zeros((2, 18)), np.zeros(12), np.arange(7, 19), np.arange(6, 18))
    np.testing.assert_allclose(s.projected_gravity[0], [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(s.projected_gravity[1], [math.sin(a), 0.0, -math.cos(a)], atol=1e-12)
    np.testing.assert_allclose(REWARDS["orientation"](s), [0.0, math.sin(a) ** 2], atol=1e-12)


def test_termination_terms_fire_on_their_own_condition_after_the_grace_steps():
    from legkit.tasks.config import TerminationConfig
    from legkit.tasks.terminations import falls

    s = make_state(4)
    cfg = TerminationConfig(min_base_height=0.12, base_contact_force=1.0, grace_steps=5)
    s.base_pos[:, 2] = s.base_height[:] = [0.3, 0.1, 0.3, 0.1]  # a plane: height above the ground is z
    s.base_contact_force[:] = [0.0, 0.0, 5.0, 5.0]
    s.episode_step[:] = 6
    counts = {}
    np.testing.assert_array_equal(falls(s, cfg, counts), [False, True, True, True])
    assert counts == {"base_too_low": 2, "base_contact": 2, "tilted": 0}
    s.episode_step[:] = 5  # within the grace steps nothing ends an episode
    assert not falls(s, cfg, counts).any() and counts == {"base_too_low": 2, "base_contact": 2, "tilted": 0}
    # Tipped over: the up axis 1.2 rad from vertical ends the episode under max_tilt 1.0, and never by default
    s.episode_step[:] = 6
    s.base_height[:], s.base_contact_force[:] = 0.3, 0.0
    s.projected_gravity[:] = [0.0, 0.0, -1.0]
    s.projected_gravity[2] = [0.0, math.sin(1.2), -math.cos(1.2)]
    tilt = TerminationConfig(min_base_height=0.12, base_contact_force=1.0, grace_steps=5, max_tilt=1.0)
    counts = {}
    np.testing.assert_array_equal(falls(s, tilt, counts), [False, False, True, False])
    assert counts["tilted"] == 1
    assert not falls(s, cfg, {}).any()
