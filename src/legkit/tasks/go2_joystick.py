"""go2-joystick: the Go2 follows omnidirectional velocity commands, robust to what a real Go2 meets.

By the end of its command curriculum: vx in [-1.0, 2.0] m/s, vy in [-0.8, 0.8] m/s, yaw rate in
[-1.5, 1.5] rad/s, resampled every 5 s, 10% of draws the zero command. Trained under domain
randomization (ground friction 0.3-1.2, payload 0-3 kg, motor strength x 0.85-1.15, up to 20 ms of
actuation latency, pushes of up to 100 N every 3 s) and sensor noise on what the robot measures. The
actor (configs/go2-joystick.yaml) reads only what a Go2 measures, estimates its base velocity inside,
and is left-right symmetric.
"""

from __future__ import annotations

from dataclasses import replace

from legkit.sim.randomize import PhysicsRandomization
from legkit.tasks.commands import CommandConfig
from legkit.tasks.config import Scenario, SuccessBar, SweepBar, TaskConfig
from legkit.tasks.curriculum import CommandCurriculumConfig, CommandStage
from legkit.tasks.events import LatencyConfig, PushConfig
from legkit.tasks.go2_walk import go2_walk
from legkit.tasks.observations import HistoryConfig
from legkit.tasks.terms import RewardTerm

FORWARD = ("task.command_curriculum.stages=[]", "task.commands.lin_vel_x=[0.5,1.0]", "task.commands.lin_vel_y=[0,0]",
           "task.commands.ang_vel_yaw=[0,0]", "task.commands.standing_share=0",
           "task.commands.single_axis_share=0")
"""The robustness scenarios' commands: 0.5-1.0 m/s forward, as the issue judges them."""

ROBUSTNESS = tuple(Scenario(name, FORWARD + sets, 0.9, 0.3) for name, sets in (
    ("pushes 100 N every 3 s", ("task.pushes.force=100", "task.pushes.interval_s=3")),
    ("ground friction 0.3", ("task.randomization.friction=[0.3,0.3]",)),
    ("ground friction 1.2", ("task.randomization.friction=[1.2,1.2]",)),
    ("payload 3 kg", ("task.randomization.payload=[3,3]",)),
    ("motor strength x0.85", ("task.randomization.kp_scale=[0.85,0.85]", "task.randomization.torque_scale=[0.85,0.85]")),
    ("latency 20 ms", ("task.latency.range_s=[0.02,0.02]",)),
))
"""The joystick issue's robustness bar: >= 90% survival and tracking RMS <= 0.3 m/s in each, one at a time."""

LINEAR = ("forward_0.5", "forward_1.0", "forward_1.5", "backward_0.5", "sideways_+0.5", "sideways_-0.5",
          "forward_1.0_yaw_0.5")
SWEEP_BARS = (
    SweepBar("stand", "mean_forward_velocity", -0.05, 0.05), SweepBar("stand", "mean_lateral_velocity", -0.05, 0.05),
    SweepBar("forward_0.2", "mean_forward_velocity", 0.1, 0.3),
    *(SweepBar(name, "lin_vel_tracking_rms", high=0.2) for name in LINEAR),
    *(SweepBar(name, "yaw_rate_tracking_rms", high=0.3) for name in ("yaw_+1.0", "yaw_-1.0")),
    SweepBar("forward_2.0", "mean_forward_velocity", low=1.8), SweepBar("forward_2.0", "survival_rate", low=0.9),
    *(SweepBar(name, "survival_rate", low=0.95) for name in ("stand", "forward_0.2", *LINEAR, "yaw_+1.0",
                                                             "yaw_-1.0")),
)
"""The joystick issue's tracking figures, command by command (`legkit eval RUN --sweep` marks them): RMS <= 0.2 m/s
for every linear command of 0.5-1.5 m/s, 0.1-0.3 m/s under 0.2, a drift under 0.05 m/s when told to stand, yaw RMS
<= 0.3 rad/s, >= 1.8 m/s and 90% survival under 2.0, 95% survival elsewhere."""


def go2_joystick() -> TaskConfig:
    """Omnidirectional velocity tracking with a command curriculum, randomized physics and noisy sensors."""
    walk = go2_walk()
    rewards = dict(walk.rewards)
    rewards.update({
        "track_lin_vel": RewardTerm(1.5, {"sigma": 0.25, "slow_speed": 0.5}),  # slow commands count
        "track_ang_vel": RewardTerm(0.75, {"sigma": 0.25}),
        "lin_vel_progress": RewardTerm(0.5),  # no plateau at standing still: slow commands are walked
        "yaw_rate_progress": RewardTerm(0.5),  # and turns on the spot are turned
        "stand_still": RewardTerm(-2.0, {"threshold": 0.1}),
        "base_height": RewardTerm(-10.0, {"target": 0.27}),
        # A step shorter than 0.3 s pays nothing instead of costing its shortfall: stepping on the spot then costs
        # no more than standing, and a policy that stands under a backward command finds the backward walk from
        # there (with the cost, seed 0 never did; docs/results.md, twenty-fifth session).
        "feet_air_time": RewardTerm(1.0, {"threshold": 0.3, "penalize_short": False}),
    })
    return replace(
        walk,
        # The actor reads what a Go2 measures and its past frames (configs/go2-joystick.yaml:
        # ppo.actor_observations), and a state estimator inside it predicts the base velocity from those
        # (ppo.estimator); the critic reads the true base velocity, the randomized physics and the push.
        observations=("base_lin_vel", "base_ang_vel", "projected_gravity", "command", "joint_pos", "joint_vel",
                      "last_action", "history", "ground_friction", "payload", "motor_strength", "push_force"),
        observation_history=HistoryConfig(
            terms=("base_ang_vel", "projected_gravity", "joint_pos", "joint_vel", "last_action"), length=3),
        commands=CommandConfig(lin_vel_x=(-1.0, 2.0), lin_vel_y=(-0.8, 0.8), ang_vel_yaw=(-1.5, 1.5),
                               resample_seconds=5.0, standing_share=0.1, single_axis_share=0.2),
        command_curriculum=CommandCurriculumConfig(
            stages=(
                CommandStage(lin_vel_x=(-0.5, 1.0), lin_vel_y=(-0.3, 0.3), ang_vel_yaw=(-0.5, 0.5)),  # slow
                CommandStage(lin_vel_x=(-0.8, 1.5), lin_vel_y=(-0.5, 0.5), ang_vel_yaw=(-1.0, 1.0)),  # turning
                CommandStage(lin_vel_x=(-1.0, 2.0), lin_vel_y=(-0.8, 0.8), ang_vel_yaw=(-1.5, 1.5)),  # fast
            ),
            window=256, success_rate=0.7, term="track_lin_vel", min_tracking=0.5,
        ),
        # The sharper tracking kernel (sigma 0.1) that pays for the last 0.1-0.2 m/s of error is the second stage
        # of the task's recipe (configs/recipes/go2-joystick.yaml), with more slow draws: from the start it gives
        # too little signal to learn to walk at all (docs/results.md).
        rewards=rewards,
        randomization=PhysicsRandomization(friction=(0.3, 1.2), payload=(0.0, 3.0), kp_scale=(0.85, 1.15),
                                           torque_scale=(0.85, 1.15), com_offset=0.02),
        latency=LatencyConfig(range_s=(0.0, 0.02)),
        pushes=PushConfig(force=100.0, interval_s=3.0, duration_s=0.1, random_magnitude=True),
        # The PD the Go2's joint loop computes, explicitly from each physics step's state (200 Hz), as a robot
        # and `legkit sim2sim` apply it: under implicitfast's implicit damping the policy learnt to rely on
        # damping an explicit PD lacks, and ran 17% fast in sim2sim (docs/results.md).
        physics=replace(walk.physics, integrator="euler"),
        observation_noise={"base_ang_vel": 0.2, "projected_gravity": 0.05, "joint_pos": 0.01, "joint_vel": 1.5},
        # The nominal scenario drives the task's own omnidirectional command mix (its mean commanded vx is
        # about 0.25 m/s), so go2-walk's "mean forward velocity >= 0.5" is no bar here: `eval --sweep`
        # judges tracking command by command, and the robustness scenarios at 0.5-1.0 m/s forward.
        validation=replace(walk.validation, robustness=ROBUSTNESS, sweep_bars=SWEEP_BARS,
                           min_forward_velocity=None),
        # Learnt: follows the nominal omnidirectional command mix without falling. Set from the fifth session's
        # policy (RMS 0.34); the shipped one reads 0.45 on that mix (its slow-command dead zone) and misses it.
        success=SuccessBar(min_survival=0.95, max_tracking_rms=0.4),
    )
