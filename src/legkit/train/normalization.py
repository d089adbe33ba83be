"""Observation normalization with fixed scales for some entries (commands, camera pixels), running statistics for
the rest.

VecNormalize scales every observation entry by a running mean and variance. For a command that is wrong:
its statistics are those of the command distribution seen so far (pretrained:go2-walk's normalizer divides
its always-zero sideways and yaw commands by 1.0e-4, and a wider command later pins at the clip), while the task
says what it will ask for: its final command ranges. A height camera's pixel mostly sees the floor: its running std
is millimetres, and 1 cm of noise reads as a wall, while the sensor says what it can read (camera_statistics).
PinnedRunningMeanStd keeps chosen entries at a fixed mean and variance; it replaces VecNormalize's `obs_rms`, is
pickled with it, and loads with plain `VecNormalize.load` wherever legkit is importable. Export and evaluation read
its mean and var as any VecNormalize's.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd

from legkit import LegkitError

HEIGHT_SCALE = 0.05
"""The std (m) a height camera's pixels are divided by under ppo.fixed_scales (their mean: 0, the floor): a 4 cm
curb reads 0.8, a 20 cm box 4, and 1 cm of noise 0.2 (camera_statistics)."""


def normalizer_statistics(norm, indices) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std that VecNormalize `norm` scales observation entries `indices` by: (obs - mean) / std with
    std = sqrt(var + epsilon), float64; zeros and ones when it does not normalize observations (or is None)."""
    if norm is None or not norm.norm_obs:
        return np.zeros(len(indices)), np.ones(len(indices))
    return (np.asarray(norm.obs_rms.mean, dtype=np.float64)[indices],
            np.sqrt(np.asarray(norm.obs_rms.var, dtype=np.float64)[indices] + norm.epsilon))


class PinnedRunningMeanStd(RunningMeanStd):
    """SB3's RunningMeanStd whose entries `pinned` keep the mean `pinned_mean` and variance `pinned_var`."""

    def __init__(self, shape: tuple[int, ...], pinned: np.ndarray, pinned_mean: np.ndarray, pinned_var: np.ndarray,
                 epsilon: float = 1e-4):
        super().__init__(epsilon=epsilon, shape=shape)
        self.pinned = np.asarray(pinned, dtype=np.int64)
        self.pinned_mean = np.asarray(pinned_mean, dtype=np.float64)
        self.pinned_var = np.asarray(pinned_var, dtype=np.float64)
        self._pin()

    def _pin(self) -> None:
        self.mean[self.pinned] = self.pinned_mean
        self.var[self.pinned] = self.pinned_var

    def update_from_moments(self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: float) -> None:
        super().update_from_moments(batch_mean, batch_var, batch_count)
        self._pin()


def command_statistics(task) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance per component (vx m/s, vy m/s, yaw rad/s) of a uniform draw from the task's final
    command ranges: what running statistics would settle at once training draws the final commands. A
    component that is always zero gets variance 1.

    (A first version divided by the largest command instead; that made the command inputs 3-5x smaller than
    the other inputs early in the curriculum, and go2-joystick stood still under every command for 3.6 M
    steps: docs/results.md, joyE.)"""
    stages = task.command_curriculum.stages
    src = stages[-1] if stages else task.commands
    ranges = np.array([src.lin_vel_x, src.lin_vel_y, src.ang_vel_yaw], dtype=np.float64)
    mean = ranges.mean(axis=1)
    var = np.square(ranges[:, 1] - ranges[:, 0]) / 12.0  # the variance of U(lo, hi)
    return mean, np.where(var > 0, var, 1.0)


def camera_statistics(task) -> tuple[float, float]:
    """Mean and variance of every camera pixel under ppo.fixed_scales. A depth image (range or planar) as a uniform
    draw over [0, max_depth] (max_depth / 2, max_depth^2 / 12; in [0, 1] when normalized); a height image mean 0,
    the floor, and std HEIGHT_SCALE. Running statistics would instead take each pixel's spread over the rollouts:
    a height pixel that mostly sees the floor then gets a std of millimetres, so an obstacle saturates it and
    1 cm of sensor noise reads as a wall (docs/results.md, thirty-sixth session)."""
    c = task.sensors.camera
    if c.depth == "height":
        return 0.0, HEIGHT_SCALE ** 2
    top = 1.0 if c.normalize else c.max_depth
    return top / 2.0, top ** 2 / 12.0


FIXED_STATISTICS = {"command": command_statistics, "camera": camera_statistics}
"""The statistics of each observation term that `ppo.fixed_scales` can name: task -> (mean, variance), per entry
or one for all."""
FIXED_SCALE_TERMS = tuple(FIXED_STATISTICS)
"""Observation terms that `ppo.fixed_scales` can name."""


def pinned_statistics(layout: list, task, terms: tuple[str, ...], epsilon: float = 1e-4) -> PinnedRunningMeanStd:
    """Running statistics for an observation with `layout` ((name, start, size)) whose `terms` have fixed
    statistics (the command: command_statistics; the camera: camera_statistics)."""
    dim = sum(int(k) for _, _, k in layout)
    pinned, mean, var = [], [], []
    blocks = {str(n): (int(s), int(k)) for n, s, k in layout}
    for name in terms:
        if name not in FIXED_SCALE_TERMS:
            raise LegkitError(f"ppo.fixed_scales: '{name}' has no fixed scale; valid: {', '.join(FIXED_SCALE_TERMS)}")
        if name not in blocks:
            raise LegkitError(f"ppo.fixed_scales: '{name}' is not one of the task's observation terms")
        start, size = blocks[name]
        m, v = (np.broadcast_to(x, size) for x in FIXED_STATISTICS[name](task))  # a camera's pixels alike
        pinned += list(range(start, start + size))
        mean += list(m)
        var += list(v)
    return PinnedRunningMeanStd((dim,), np.array(pinned), np.array(mean), np.array(var), epsilon)


class FlooredRunningMeanStd(RunningMeanStd):
    """SB3's RunningMeanStd whose variance never falls below `min_var` per entry (a cloned policy's inputs keep the
    floor its behaviour cloning had: legkit.imitate.normalizer.MIN_STD)."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, count: float, min_var: float):
        super().__init__(shape=np.shape(mean))
        self.min_var = float(min_var)
        self.mean = np.asarray(mean, dtype=np.float64).copy()
        self.var = np.maximum(np.asarray(var, dtype=np.float64), self.min_var)
        self.count = float(count)

    def update_from_moments(self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: float) -> None:
        super().update_from_moments(batch_mean, batch_var, batch_count)
        self.var = np.maximum(self.var, self.min_var)


def frozen_statistics(mean: np.ndarray, var: np.ndarray, count: float) -> PinnedRunningMeanStd:
    """Running statistics that stay at `mean` and `var` (every entry pinned) while VecNormalize keeps training its
    reward statistics: observations normalized for a whole run as a cloned policy was trained."""
    mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    rms = PinnedRunningMeanStd(mean.shape, np.arange(mean.size), mean, var)
    rms.count = float(count)
    return rms
