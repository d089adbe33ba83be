"""Task registry: name -> factory returning a fresh TaskConfig."""

from __future__ import annotations

from typing import Callable

from legkit import LegkitError
from legkit.tasks.config import TaskConfig
from legkit.tasks.go2_joystick import go2_joystick
from legkit.tasks.go2_residual import go2_residual
from legkit.tasks.go2_rough import go2_rough
from legkit.tasks.go2_walk import go2_walk
from legkit.tasks.humanoid_stand import humanoid_stand
from legkit.tasks.pidog_run import pidog_run

TASKS: dict[str, tuple[Callable[[], TaskConfig], str]] = {
    "go2-walk": (go2_walk, "Go2 walks forward at a commanded 0.5-1.0 m/s on flat ground"),
    "go2-joystick": (go2_joystick, "Go2 follows omnidirectional commands (vx -1..2, vy +-0.8 m/s, yaw +-1.5 rad/s) "
                                   "under randomized physics, pushes, latency and sensor noise, from what a Go2 "
                                   "measures"),
    "go2-rough": (go2_rough, "Go2 walks forward at 0.5-1.0 m/s over rough terrain (per-robot terrain curriculum, "
                             "height scan)"),
    "go2-residual": (go2_residual, "Go2 learns residual corrections on a scripted trot over rough terrain"),
    "pidog-run": (pidog_run, "PiDog runs forward through obstacles placed anew every episode, on its camera, IMU, "
                             "ultrasonic and joint encoders"),
    "humanoid-stand": (humanoid_stand, "humanoid stands still at a torso height raised by a curriculum, then under pushes"),
}


def get_task(name: str) -> TaskConfig:
    """A fresh TaskConfig for task `name`; unknown names raise a LegkitError listing the valid ones."""
    if name not in TASKS:
        raise LegkitError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name][0]()


__all__ = ["TASKS", "TaskConfig", "get_task"]
