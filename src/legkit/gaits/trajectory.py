"""Foot trajectories of a scripted gait, batched over robots and legs: targets (num_envs, legs, 3) in the base frame.

Each foot has a neutral point: below its leg's anchor (the hip, moved into the leg plane), on the ground
body_height below the base origin (plus the foot radius, so that the sole touches). In stance the foot moves
along a straight line from +stroke/2 to -stroke/2 about it at constant speed; in swing it returns along a
cycloid: forward with zero speed at both ends, lifted by step_height * (1 - cos 2 pi s) / 2, so its vertical
speed is zero at lift-off and touch-down. A turning stroke turns the neutral point about the base origin.
The ground is level in a frame pitched by `pitch` against the base.
"""

from __future__ import annotations

import numpy as np

from legkit.gaits.kinematics import rot_y
from legkit.gaits.params import GaitParams


def leg_phases(phase: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Phase of each leg (num_envs, legs) in [0, 1) from the gait phase (num_envs,) and the legs' lags (legs,)."""
    return np.mod(np.asarray(phase, dtype=np.float64)[:, None] - np.asarray(offsets, dtype=np.float64), 1.0)


def stroke(leg_phase: np.ndarray, duty_factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each foot is along its stride, from leg phases (num_envs, legs):

    s       stance progress in [0, 1]: 0 at touch-down (front of the stroke), 1 at lift-off (back); in swing it
            runs back from 1 to 0 along a cycloid (zero speed at both ends);
    lift    height above the ground as a fraction of step_height, in [0, 1]; 0 in stance;
    stance  whether the foot is on the ground.
    """
    stance = leg_phase < duty_factor
    sigma = np.clip((leg_phase - duty_factor) / (1.0 - duty_factor), 0.0, 1.0)  # swing progress
    cycloid = sigma - np.sin(2 * np.pi * sigma) / (2 * np.pi)
    s = np.where(stance, leg_phase / duty_factor, 1.0 - cycloid)
    lift = np.where(stance, 0.0, 0.5 * (1.0 - np.cos(2 * np.pi * sigma)))
    return s, lift, stance


def neutral_points(params: GaitParams, anchor: np.ndarray, foot_radius: np.ndarray) -> np.ndarray:
    """Neutral foot centres (legs, 3) in the level frame (origin at the base origin, z up, x forward along the
    ground): below each anchor (legs, 3; base frame), foot_radius (legs,) above the ground."""
    level = rot_y(np.asarray(anchor, dtype=np.float64), -params.pitch)  # base -> level: nose up by `pitch`
    level[:, 2] = -params.body_height + np.asarray(foot_radius, dtype=np.float64)
    return level


def foot_targets(params: GaitParams, phase: np.ndarray, anchor: np.ndarray, foot_radius: np.ndarray) -> np.ndarray:
    """Foot-centre targets (num_envs, legs, 3) in the base frame (m) for gait phases (num_envs,), legs anchored at
    `anchor` (legs, 3; base frame) with feet of radius `foot_radius` (legs,)."""
    phase = np.asarray(phase, dtype=np.float64)
    neutral = neutral_points(params, anchor, foot_radius)
    shape = (phase.shape[0], neutral.shape[0])
    if params.static:
        s, lift = np.full(shape, 0.5), np.zeros(shape)
    else:
        s, lift, _ = stroke(leg_phases(phase, np.asarray(params.offsets)), params.duty_factor)
    k = 0.5 - s  # +1/2 at touch-down, -1/2 at lift-off
    yaw = params.turning * k  # a planted foot turns by -turning about the base origin over its stance
    c, sn = np.cos(yaw), np.sin(yaw)
    x = c * neutral[:, 0] - sn * neutral[:, 1] + params.step_length * k
    y = sn * neutral[:, 0] + c * neutral[:, 1] + params.lateral * k
    z = np.broadcast_to(neutral[:, 2], shape) + params.step_height * lift
    return rot_y(np.stack([x, y, z], axis=-1), params.pitch)  # level -> base frame
