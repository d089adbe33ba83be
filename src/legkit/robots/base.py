"""The typed description every robot provides: what tasks read by name instead of by index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class RobotSpec:
    """What a robot is: its MJCF and the named parts that tasks and the simulator use."""

    name: str
    """Registry name, e.g. "go2"."""
    description: str
    """One line for `legkit list`."""
    xml: Callable[[], Path]
    """Returns the MJCF path (a callable so that packaged models are located at run time)."""
    base_body: str
    """The floating base body; its free joint defines base position and orientation."""
    joints: tuple[str, ...]
    """Actuated joints, in action order."""
    actuators: tuple[str, ...]
    """Actuators, one per joint, in the same order."""
    home_pose: tuple[float, ...]
    """Joint positions (rad) of the nominal standing pose, in `joints` order."""
    kp: float
    """Proportional gain of the position actuators (N*m/rad), the largest where joints differ;
    informational, the compiled model holds the real gains."""
    kd: float
    """Derivative gain of the position actuators (N*m*s/rad); informational, the MJCF holds it."""
    torque_limits: tuple[float, ...]
    """Actuator torque limits (N*m), in `joints` order."""
    standing_height: float
    """Base height (m) when standing in the home pose on flat ground."""
    feet: tuple[str, ...] = ()
    """Foot geoms."""
    foot_touch_sensors: tuple[str, ...] = ()
    """Touch sensors on the feet, in `feet` order."""
    base_touch_sensors: tuple[str, ...] = ()
    """Touch sensors whose contact ends an episode (trunk)."""
    undesired_touch_sensors: tuple[str, ...] = ()
    """Touch sensors whose contact is penalized (thighs, trunk)."""
    torque_sensors: tuple[str, ...] = ()
    """actuatorfrc sensors, in `joints` order."""
    foot_pos_sensors: tuple[str, ...] = ()
    """framepos sensors (world frame) at the centres of the foot geoms, in `feet` order; with
    `foot_vel_sensors` they give the gait metrics of an evaluation (none: no gait metrics)."""
    foot_vel_sensors: tuple[str, ...] = ()
    """framelinvel sensors (world frame) at the centres of the foot geoms, in `feet` order."""
    has_floor: bool = False
    """Whether the MJCF already contains a ground plane."""
    init_height: float = 0.0
    """Base height (m) at reset; defaults to `standing_height` + 0.02."""
    control: str = "position"
    """"position": actions are joint targets around the home pose, held by the MJCF's PD actuators;
    "torque": actions in [-1, 1] map linearly onto each motor's ctrlrange."""
    max_base_height: float = 0.0
    """Highest base height (m) reachable with the feet on the ground (0: unknown). Height targets
    above it are rejected, since no policy can reach them."""
    mirror_joints: tuple[str, ...] = ()
    """Under the left-right reflection (y -> -y in the base frame), the joint each joint becomes, in `joints`
    order (empty: the robot declares no mirror, and a symmetric policy cannot be trained for it)."""
    mirror_signs: tuple[float, ...] = ()
    """+1 or -1 per joint, in `joints` order: the sign the reflection gives that joint's angle (an axis along
    x, such as an abduction joint, flips; an axis along y, such as a knee, keeps its sign)."""
    edit_spec: Callable[[Any], None] | None = None
    """Optional edit of the MjSpec before compiling (e.g. adding sensors to a model legkit does not own)."""
    extra: dict = field(default_factory=dict)
    """Robot-specific facts that do not fit above."""

    @property
    def home(self) -> np.ndarray:
        """Home pose as an array, shape (num_joints,)."""
        return np.asarray(self.home_pose, dtype=np.float64)

    def joint_mirror(self) -> tuple[np.ndarray, np.ndarray]:
        """(index, sign) arrays, shape (num_joints,): joint i of the mirror image is sign[i] * joint index[i]."""
        if not self.mirror_joints:
            raise ValueError(f"the {self.name} declares no left-right mirror (mirror_joints)")
        index = np.array([self.joints.index(j) for j in self.mirror_joints], dtype=np.int64)
        return index, np.asarray(self.mirror_signs, dtype=np.float64)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def reset_height(self) -> float:
        return self.init_height or self.standing_height + 0.02
