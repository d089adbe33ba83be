"""Unitree Go2: the MJCF (assets/go2.xml) is written from the robot's published specifications.

The numbers it is built from (m, kg, rad, N*m; x forward, y left, z up):

    total mass            about 15.2 kg: base 6.921 + 4 legs x 2.071 (hip 0.678, thigh 1.152, calf+foot 0.241)
    base                  COM (0.0211, 0, -0.0054); principal inertia about (0.107, 0.098, 0.0245), long axis x;
                          collision box half-sizes about 0.188 x 0.047 x 0.057
    hip (abduction)       at (+-0.1934, +-0.0465, 0) from the base origin, axis x, range -1.047 .. 1.047
    thigh joint           (0, +-0.0955, 0) from the hip, axis y, range -1.571 .. 3.491 (front), -0.524 .. 4.538 (rear)
    knee                  (0, 0, -0.213) from the thigh joint, axis y, range -2.723 .. -0.838; calf 0.213 to the foot
    foot                  sphere of radius 0.022, friction about 0.8
    torque limits         23.7 hip and thigh, 45.4 knee
    joint damping, armature, friction loss: about 2 (or less with PD), 0.01, 0.2
    home pose             (abduction, thigh, knee) = (0, 0.9, -1.8) per leg; base about 0.27 above the ground
    simulation            PD gains Kp 20-50, Kd 0.5-1; physics 0.004-0.005 s, policy 50 Hz
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from legkit.robots.base import RobotSpec

LEGS = ("FL", "FR", "RL", "RR")
PARTS = ("hip", "thigh", "calf")
MIRROR_LEG = {"FL": "FR", "FR": "FL", "RL": "RR", "RR": "RL"}


def _xml() -> Path:
    return Path(str(resources.files("legkit.robots") / "assets" / "go2.xml"))


GO2 = RobotSpec(
    name="go2",
    description="Unitree Go2 quadruped, 12 DOF, 15.2 kg, position-controlled (Kp 50, Kd 1)",
    xml=_xml,
    base_body="base",
    joints=tuple(f"{leg}_{part}_joint" for leg in LEGS for part in PARTS),
    actuators=tuple(f"{leg}_{part}" for leg in LEGS for part in PARTS),
    home_pose=(0.0, 0.9, -1.8) * 4,
    kp=50.0,
    kd=1.0,
    torque_limits=(23.7, 23.7, 45.4) * 4,
    standing_height=0.27,
    feet=tuple(f"{leg}_foot" for leg in LEGS),
    foot_touch_sensors=tuple(f"{leg}_foot_touch" for leg in LEGS),
    base_touch_sensors=("trunk_touch",),
    undesired_touch_sensors=("trunk_touch",) + tuple(f"{leg}_thigh_touch" for leg in LEGS),
    torque_sensors=tuple(f"{leg}_{part}_torque" for leg in LEGS for part in PARTS),
    foot_pos_sensors=tuple(f"{leg}_foot_pos" for leg in LEGS),
    foot_vel_sensors=tuple(f"{leg}_foot_vel" for leg in LEGS),
    init_height=0.30,
    # Left and right legs mirror each other; the abduction (hip) axis is along x in both, so its angle flips.
    mirror_joints=tuple(f"{MIRROR_LEG[leg]}_{part}_joint" for leg in LEGS for part in PARTS),
    mirror_signs=(-1.0, 1.0, 1.0) * 4,
)
