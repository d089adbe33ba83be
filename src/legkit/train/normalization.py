"""Observation normalization with fixed scales for some entries (commands), running statistics for the rest.

VecNormalize scales every observation entry by a running mean and variance. For a command that is wrong:
its statistics are those of the command distribution seen so far (a range that was zero has a std of 1e-5,
and a wider command later pins at the clip), while a command has a natural scale, the largest command the
task asks for. PinnedRunningMeanStd keeps chosen entries at a fixed mean and variance; it replaces
VecNormalize's `obs_rms`, is pickled with it, and loads with plain `VecNormalize.load` wherever legkit is
importable. Export and evaluation read its mean and var as any VecNormalize's.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd

from legkit import LegkitError

FIXED_SCALE_TERMS = ("command",)
"""Observation terms that `ppo.fixed_scales` can name."""


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


def command_scale(task) -> np.ndarray:
    """The largest |command| per component (vx m/s, vy m/s, yaw rad/s) of the task's final command ranges;
    1 for a component that is always zero."""
    stages = task.command_curriculum.stages
    src = stages[-1] if stages else task.commands
    scale = np.array([max(abs(lo), abs(hi)) for lo, hi in (src.lin_vel_x, src.lin_vel_y, src.ang_vel_yaw)])
    return np.where(scale > 0, scale, 1.0)


def pinned_statistics(layout: list, task, terms: tuple[str, ...], epsilon: float = 1e-4) -> PinnedRunningMeanStd:
    """Running statistics for an observation with `layout` ((name, start, size)) whose `terms` have fixed
    scales: mean 0 and variance scale^2 (the command: command_scale)."""
    dim = sum(int(k) for _, _, k in layout)
    pinned, mean, var = [], [], []
    blocks = {str(n): (int(s), int(k)) for n, s, k in layout}
    for name in terms:
        if name not in FIXED_SCALE_TERMS:
            raise LegkitError(f"ppo.fixed_scales: '{name}' has no fixed scale; valid: {', '.join(FIXED_SCALE_TERMS)}")
        if name not in blocks:
            raise LegkitError(f"ppo.fixed_scales: '{name}' is not one of the task's observation terms")
        start, size = blocks[name]
        scale = command_scale(task)
        pinned += list(range(start, start + size))
        mean += [0.0] * size
        var += list(np.square(scale))
    return PinnedRunningMeanStd((dim,), np.array(pinned), np.array(mean), np.array(var), epsilon)
