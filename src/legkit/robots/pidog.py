"""SunFounder PiDog: the MJCF (assets/pidog.xml) is written from the robot's published numbers
(listed below); the XML's header says where each number comes from.

The numbers it is built from (m, kg, rad, N*m, s; x forward, y left, z up):

    servos                12 hobby servos: 8 in the legs (hip pitch and knee per leg), 3 in the head (yaw, roll,
                          pitch), 1 in the tail; range -1.57 .. 1.57 (500-2500 us = +-90 deg); stall 0.13-0.22 N*m;
                          the maker's software limits legs to 428 deg/s (7.47 rad/s), head 300 deg/s, tail 500 deg/s
    legs                  maker's order left-front, right-front, left-hind, right-hind = legkit's FL, FR, RL, RR;
                          2-DOF planar: upper 0.042, lower 0.076 (the maker's IK constants); foot radius 0.008
    hips                  (+-0.0585, +-0.049) from the body centre (a 0.117 x 0.098 rectangle)
    standing              hip height about 0.080-0.095; feet about 0.015 ahead of the front hips and 0.005
                          behind the rear hips
    size and mass         about 0.240 x 0.225 x 0.140 with the head; about 0.95 kg (battery 2 x 18650, 0.09 kg)
    IMU                   6-axis SH3001 (accelerometer +-2 g, gyroscope +-2000 deg/s), read at about 20 Hz
    ultrasonic            HC-SR04 class in the head, 0.02-4 m; the maker's driver times out at about 2.9 m (-1)
    camera                OV5647 in the head, 65 deg field of view, 640 x 480 at up to 90 fps
    touch                 capacitive pad on the head

Joint conventions of this model (chosen, see the XML): at zero angles each upper link points straight backward
and each lower link straight down; all leg axes are +y, so the knees point backward on all four legs and equal
angles on a left and a right leg give mirror-image feet. (Earlier community models had forward and the
left/right mirror wrong; legkit's tests check both.)

Measured on this model (tests/test_pidog.py): 0.952 kg; in the home pose the base settles 0.0892 above flat
ground, level, the knees holding 0.113 (front) and 0.080 (rear) of their 0.22 N*m; the accelerometer at rest
reads (0, 0, 9.81). Sensor frames: "imu" is the body frame; "sonar" and "camera" have x along the beam / optical
axis, y left, z up; the MuJoCo camera "head_camera" (for rendering) looks along its -z from the camera site.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from legkit.robots.base import RobotSpec

LEGS = ("FL", "FR", "RL", "RR")
"""The maker's leg order (left-front, right-front, left-hind, right-hind) in legkit's names."""
LEG_PARTS = ("hip", "knee")
HEAD = ("head_yaw", "head_roll", "head_pitch")
MIRROR_LEG = {"FL": "FR", "FR": "FL", "RL": "RR", "RR": "RL"}

LEG_SPEED = 7.47
"""Leg servo speed limit (rad/s): 428 deg/s in the maker's software."""
HEAD_SPEED = 5.24
"""Head servo speed limit (rad/s): 300 deg/s."""
TAIL_SPEED = 8.73
"""Tail servo speed limit (rad/s): 500 deg/s."""

# The stand pose: hips 0.090 above the ground (the middle of the maker's 0.080-0.095), feet 0.015 ahead of the
# front hips and 0.005 behind the rear hips; (hip, knee) from the closed-form leg IK of the model (legkit.gaits).
FRONT_STAND = (-0.614, -0.093)
REAR_STAND = (-0.347, -0.124)


def _xml() -> Path:
    return Path(str(resources.files("legkit.robots") / "assets" / "pidog.xml"))


PIDOG = RobotSpec(
    name="pidog",
    description="SunFounder PiDog quadruped, 12 hobby servos (8 legs, 3 head, 1 tail), 0.95 kg, Kp 8, 0.22 N*m",
    xml=_xml,
    base_body="base",
    joints=tuple(f"{leg}_{part}_joint" for leg in LEGS for part in LEG_PARTS)
    + tuple(f"{j}_joint" for j in HEAD) + ("tail_joint",),
    actuators=tuple(f"{leg}_{part}" for leg in LEGS for part in LEG_PARTS) + HEAD + ("tail",),
    home_pose=FRONT_STAND * 2 + REAR_STAND * 2 + (0.0, 0.0, 0.0, 0.0),
    kp=8.0,
    kd=0.06,
    torque_limits=(0.22,) * 12,
    # measured: the base settles 0.0892 above flat ground in the home pose (tests/test_pidog.py)
    standing_height=0.089,
    feet=tuple(f"{leg}_foot" for leg in LEGS),
    foot_touch_sensors=tuple(f"{leg}_foot_touch" for leg in LEGS),
    # the body or the head on the ground: a fall
    base_touch_sensors=("base_touch", "head_shell_touch"),
    undesired_touch_sensors=("base_touch", "head_shell_touch") + tuple(f"{leg}_upper_touch" for leg in LEGS),
    torque_sensors=tuple(f"{leg}_{part}_torque" for leg in LEGS for part in LEG_PARTS)
    + tuple(f"{j}_torque" for j in HEAD) + ("tail_torque",),
    foot_pos_sensors=tuple(f"{leg}_foot_pos" for leg in LEGS),
    foot_vel_sensors=tuple(f"{leg}_foot_vel" for leg in LEGS),
    init_height=0.10,
    # Left and right legs mirror each other with the same +y axes: leg angles keep their sign. Head yaw (axis z),
    # head roll (axis x) and the tail (axis z) turn the other way in the mirror image; head pitch (axis y) does not.
    mirror_joints=tuple(f"{MIRROR_LEG[leg]}_{part}_joint" for leg in LEGS for part in LEG_PARTS)
    + tuple(f"{j}_joint" for j in HEAD) + ("tail_joint",),
    mirror_signs=(1.0,) * 8 + (-1.0, -1.0, 1.0, -1.0),
    # max_joint_speed: the servos' speed limits in `joints` order (rad/s), applied by the env; the rest name the
    # PiDog's own sensors in the MJCF (sites, MuJoCo sensors and the rendering camera).
    extra={
        "max_joint_speed": (LEG_SPEED,) * 8 + (HEAD_SPEED,) * 3 + (TAIL_SPEED,),
        "imu_site": "imu",
        "accelerometer": "imu_acc",
        "gyro": "imu_gyro",
        "sonar_site": "sonar",
        "camera_site": "camera",
        "camera": "head_camera",
        "head_touch": "head_touch",
    },
)
