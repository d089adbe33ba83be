"""Scripted gaits: gait parameters, foot trajectories and closed-form leg kinematics read from the robot model.

This room sits beside robots/: it knows legs, not rewards. A task uses a GaitController as a command-side term
(joint targets that a residual policy adds to, a phase clock as an observation).
"""

from legkit.gaits.controller import GaitController, smoothstep
from legkit.gaits.kinematics import TOLERANCE, LegKinematics, PlanarLeg2, leg_kinematics
from legkit.gaits.params import GAIT_DEFAULTS, GAIT_TYPES, PHASE_OFFSETS, STATIC_TYPES, GaitParams, default_gait
from legkit.gaits.trajectory import foot_targets, leg_phases, neutral_points, stroke

__all__ = [
    "GAIT_DEFAULTS", "GAIT_TYPES", "PHASE_OFFSETS", "STATIC_TYPES", "TOLERANCE", "GaitController", "GaitParams",
    "LegKinematics", "PlanarLeg2", "default_gait", "foot_targets", "leg_kinematics", "leg_phases",
    "neutral_points", "smoothstep", "stroke",
]
