"""pidog-run: the PiDog runs forward through an obstacle arena on what it senses: its camera (a depth image),
IMU, ultrasonic range and joint encoders, as the seed project's fine-tuning stage did.

Obstacles (boxes, low curbs under the ultrasonic beam, thin posts) are placed anew for every episode; touching
one, or closing in on what the ultrasonic hears, costs reward; so does falling. Forward speed is the body's own:
the robot may turn to get round an obstacle.
"""

from __future__ import annotations

from legkit.gaits import default_gait
from legkit.robots.pidog import HEAD
from legkit.sim.arena import ArenaConfig
from legkit.sim.scene import PhysicsConfig
from legkit.sim.sensors import CameraConfig, ImuConfig, UltrasonicConfig
from legkit.tasks.commands import CommandConfig
from legkit.tasks.config import ResetConfig, SuccessBar, TaskConfig, TerminationConfig, ValidationConfig
from legkit.tasks.sensing import SensorsConfig
from legkit.tasks.terms import RewardTerm

SENSED = ("imu", "ultrasonic", "camera", "touch", "joint_pos", "joint_vel", "behaviour", "clock")
"""What the PiDog measures: its IMU, ultrasonic, depth camera and head touch, its 12 servo encoders (position and
speed), the behaviour it is asked for and a clock at that behaviour's beat (a gait's phase: a perturbed robot's
readings no longer show it, and without it cloned gaits lose step). Not its last action: a policy cloned from demonstrations learns to
copy the demonstrator's last action (a near-zero training loss) and then feeds its own errors back to itself."""

BEHAVIOURS = ("walk_forward", "walk_backward", "trot_forward", "turn_left", "turn_right", "stand", "sit")
"""What the PiDog can be asked to do (the `behaviour` term, one-hot): the seed project's scripted gaits
(legkit.imitate.collect demonstrates each) and turning; running among obstacles is trot_forward."""


HEAD_TARGET = (0.0, 0.0, 0.3)
"""Head yaw, roll and pitch (rad) the `joint_pose` reward holds: looking ahead, 0.3 rad (17 deg) nose-down. Standing
in the home pose, the camera's 51 deg vertical field then reaches the ground 0.22 m ahead of the front feet (0.41 m
with the head level), from just above the horizon; the ultrasonic's steepest ray meets the floor at 32 deg, too
glancing to echo (task.sensors.ultrasonic.max_incidence_deg 45), so it still hears only obstacles."""


def pidog_run() -> TaskConfig:
    """Forward progress among obstacles, upright, without touching them."""
    return TaskConfig(
        robot="pidog",
        physics=PhysicsConfig(timestep=0.005),
        decimation=4,  # 50 Hz control, as the Go2's
        episode_seconds=20.0,
        action_scale=1.4,  # joint target = home + 1.4 rad x action: the sit pose (1.33 rad off home) fits inside it
        commands=CommandConfig(lin_vel_x=(0.2, 0.5), lin_vel_y=(0.0, 0.0), ang_vel_yaw=(0.0, 0.0)),
        observations=SENSED,
        behaviours=BEHAVIOURS,
        behaviour="trot_forward",
        clock_period=default_gait("pidog", "trot").cycle_time,  # running is trot_forward: the trot's beat
        sensors=SensorsConfig(imu=ImuConfig(), ultrasonic=UltrasonicConfig(), camera=CameraConfig(),
                              touch=("head_touch",)),
        arena=ArenaConfig(enabled=True),
        rewards={
            "lin_vel_progress": RewardTerm(2.0),  # forward speed, in the body's own heading
            "upright": RewardTerm(0.5),
            "obstacle_contact": RewardTerm(-2.0),
            "ultrasonic_proximity": RewardTerm(-1.0, {"distance": 0.25}),
            "torques": RewardTerm(-0.5),  # N*m^2: the PiDog's servos give at most 0.22 N*m
            "action_rate": RewardTerm(-0.01),
            "termination": RewardTerm(-20.0),
            # The camera and the ultrasonic are in the head. Left free, policies pitch it up to 77 deg and turn it
            # aside, where the ultrasonic hears nothing to be penalized for and the camera sees no obstacle;
            # held 0.3 rad nose-down, collisions with boxes fell to about a third (docs/results.md, fourteenth session).
            "joint_pose": RewardTerm(-2.0, {"joints": tuple(f"{j}_joint" for j in HEAD), "target": HEAD_TARGET}),
        },
        # The body touching an obstacle is no fall, and its touch sensors cannot tell the ground from an obstacle:
        # a fall is the body tipped over, or down on the ground.
        termination=TerminationConfig(min_base_height=0.04, base_contact_force=1e9, max_tilt=1.0),
        reset=ResetConfig(joint_pos_noise=0.05, base_vel_noise=0.05, yaw_range=0.3),
        validation=ValidationConfig(max_steps=1000, long_steps=1000, min_length=900, min_lasting_episodes=6),
        success=SuccessBar(min_forward_velocity=0.15, min_survival=0.95),
    )
