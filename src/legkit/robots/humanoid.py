"""The MuJoCo humanoid that ships inside gymnasium (17 torque-controlled joints, 42 kg).

The XML is loaded from the installed gymnasium package at run time, never copied. Through
`edit_spec`, legkit turns its motors into PD position actuators with the same torque limits
and adds an actuatorfrc sensor per actuator (so that torques reach the task).

Height fact, measured on this model: at qpos0 the torso is at 1.40 m but the lowest point of
the feet is 0.107 m above the floor, so standing straight the torso is at about 1.29 m, and no
in-range pose with the feet on the ground puts it above about 1.31 m.
"""

from __future__ import annotations

from pathlib import Path

import mujoco

from legkit.robots.base import RobotSpec

ACTUATED = (
    "abdomen_y", "abdomen_z", "abdomen_x",
    "right_hip_x", "right_hip_z", "right_hip_y", "right_knee",
    "left_hip_x", "left_hip_z", "left_hip_y", "left_knee",
    "right_shoulder1", "right_shoulder2", "right_elbow",
    "left_shoulder1", "left_shoulder2", "left_elbow",
)
"""Joints in the order of the model's motors (each motor is named after its joint)."""


def _xml() -> Path:
    import gymnasium

    return Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "humanoid.xml"


def _pd_actuators_and_sensors(spec: mujoco.MjSpec) -> None:
    """Turn each motor into a PD position actuator with the motor's torque limit, and add torque sensors.

    The shipped motors (gear x ctrl in [-0.4, 0.4]) become position servos around the joint angle:
    Kp = 2.5 x the torque limit per rad (a 0.4 rad error saturates), Kd = Kp / 10, force limited to
    the original gear x 0.4. Position targets explore far more smoothly than raw torques.
    """
    for act in spec.actuators:
        limit = act.gear[0] * 0.4
        kp = 2.5 * limit
        act.gear[0] = 1.0
        act.set_to_position(kp=kp, kv=kp / 10)
        act.forcelimited = True
        act.forcerange = [-limit, limit]
        act.ctrllimited = False  # targets are clipped to the joint range by the environment
    for name in ACTUATED:
        spec.add_sensor(name=f"{name}_torque", type=mujoco.mjtSensor.mjSENS_ACTUATORFRC,
                        objtype=mujoco.mjtObj.mjOBJ_ACTUATOR, objname=name)


HUMANOID = RobotSpec(
    name="humanoid",
    description="MuJoCo humanoid from gymnasium, 17 joints under PD position control, 42 kg",
    xml=_xml,
    base_body="torso",
    joints=ACTUATED,
    actuators=ACTUATED,
    home_pose=(0.0,) * len(ACTUATED),
    kp=300.0,  # the stiffest joint (hip_y); each joint's Kp is 2.5 x its torque limit, 25-300
    kd=30.0,
    torque_limits=(40.0,) * 3 + (40.0, 40.0, 120.0, 80.0) * 2 + (10.0,) * 6,  # gear x 0.4 ctrl limit
    standing_height=1.29,
    torque_sensors=tuple(f"{n}_torque" for n in ACTUATED),
    has_floor=True,
    init_height=1.30,
    control="position",
    max_base_height=1.31,
    edit_spec=_pd_actuators_and_sensors,
)
