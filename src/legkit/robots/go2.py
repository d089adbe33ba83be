"""Unitree Go2: MJCF written from shared/robots/FACTS.md (see assets/go2.xml)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from legkit.robots.base import RobotSpec

LEGS = ("FL", "FR", "RL", "RR")
PARTS = ("hip", "thigh", "calf")


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
    init_height=0.30,
)
