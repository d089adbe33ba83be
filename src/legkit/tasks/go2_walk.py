"""go2-walk: the Go2 walks straight ahead at a commanded 0.5-1.0 m/s on flat ground."""

from __future__ import annotations

from legkit.tasks.config import SuccessBar, TaskConfig, ValidationConfig
from legkit.tasks.terms import RewardTerm


def go2_walk() -> TaskConfig:
    """Velocity tracking for the Go2 with a penalty table that keeps it upright, high and smooth."""
    return TaskConfig(
        robot="go2",
        rewards={
            "track_lin_vel": RewardTerm(1.5, {"sigma": 0.25}),
            "track_ang_vel": RewardTerm(0.5, {"sigma": 0.25}),
            "lin_vel_z": RewardTerm(-2.0),
            "ang_vel_xy": RewardTerm(-0.05),
            "orientation": RewardTerm(-5.0),
            "base_height": RewardTerm(-30.0, {"target": 0.27}),
            "base_too_low": RewardTerm(-5.0, {"threshold": 0.15}),
            "torques": RewardTerm(-2e-4),
            "action_rate": RewardTerm(-0.01),
            "feet_air_time": RewardTerm(1.0, {"threshold": 0.3}),
            "undesired_contacts": RewardTerm(-1.0),
            "termination": RewardTerm(-50.0),
        },
        # 20 s episodes are 1000 steps: validation runs them up to 5000 steps (100 s) of walking.
        validation=ValidationConfig(height_range=(0.24, 0.30), max_height_std=0.05, min_forward_velocity=0.5,
                                    min_length=900, push_force=30.0),
        # "Time to walk" (legkit tune, legkit report): walking at the bottom of the commanded band, not falling.
        success=SuccessBar(min_forward_velocity=0.5, min_survival=0.95),
    )
