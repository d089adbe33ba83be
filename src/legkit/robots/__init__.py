"""Robot registry: name -> RobotSpec."""

from __future__ import annotations

from legkit import LegkitError
from legkit.robots.base import RobotSpec
from legkit.robots.go2 import GO2
from legkit.robots.humanoid import HUMANOID
from legkit.robots.pidog import PIDOG

ROBOTS: dict[str, RobotSpec] = {GO2.name: GO2, HUMANOID.name: HUMANOID, PIDOG.name: PIDOG}


def get_robot(name: str) -> RobotSpec:
    """Look a robot up by name; unknown names raise a LegkitError listing the valid ones."""
    if name not in ROBOTS:
        raise LegkitError(f"unknown robot '{name}'; valid robots: {', '.join(sorted(ROBOTS))}")
    return ROBOTS[name]


__all__ = ["ROBOTS", "RobotSpec", "get_robot"]
