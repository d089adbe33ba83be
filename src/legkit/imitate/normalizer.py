"""Observation normalization for behaviour cloning, computed exactly as SB3's VecNormalize computes it.

A cloned policy is fine-tuned behind a VecNormalize; for its inputs not to shift at the hand-over, BC
normalizes with the same formula, clip (legkit.train.trainer.CLIP_OBS) and epsilon:
    clip((obs - mean) / sqrt(var + epsilon), -clip, clip)
with mean and var from the training episodes, and `set_obs_statistics` writes them into a VecNormalize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.train.trainer import CLIP_OBS

EPSILON = 1e-8
"""VecNormalize's default epsilon under the square root."""
MIN_STD = 1e-2
"""Floor of the per-entry std: an entry that is (nearly) constant in the demonstrations (a one-hot that never
fires) would otherwise be divided by ~1e-4 and saturate the clip at the first small change in fine-tuning."""


@dataclass(frozen=True)
class ObsNormalizer:
    """Per-entry mean and variance (float64, shape (obs_dim,)) of raw observations, from `count` samples."""

    mean: np.ndarray
    var: np.ndarray
    count: float
    clip: float = CLIP_OBS
    epsilon: float = EPSILON

    @classmethod
    def fit(cls, obs: np.ndarray, min_std: float = MIN_STD, clip: float = CLIP_OBS) -> ObsNormalizer:
        """Statistics of `obs` (samples, obs_dim), each entry's std floored at `min_std`."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 2 or len(obs) == 0:
            raise LegkitError(f"normalizer: need observations of shape (samples, obs_dim), got {obs.shape}")
        var = np.maximum(obs.var(axis=0), min_std**2)
        return cls(obs.mean(axis=0), var, float(len(obs)), float(clip))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalized `obs` (..., obs_dim), float32: what VecNormalize.normalize_obs returns for these statistics."""
        # the same operations in the same order as VecNormalize._normalize_obs, so the floats agree exactly
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count, "clip": self.clip,
                "epsilon": self.epsilon}

    @classmethod
    def from_dict(cls, d: dict) -> ObsNormalizer:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["var"], dtype=np.float64),
                   float(d["count"]), float(d["clip"]), float(d["epsilon"]))

    def running_mean_std(self) -> RunningMeanStd:
        """These statistics as SB3's RunningMeanStd (VecNormalize.obs_rms)."""
        rms = RunningMeanStd(shape=self.mean.shape)
        rms.mean = self.mean.copy()
        rms.var = self.var.copy()
        rms.count = self.count
        return rms


def set_obs_statistics(vecnorm: VecNormalize, normalizer: ObsNormalizer) -> VecNormalize:
    """Overwrite `vecnorm`'s observation statistics (obs_rms) with the BC normalizer's; returns `vecnorm`.

    The statistics keep updating during fine-tuning when vecnorm.training is True, starting from a weight of
    `normalizer.count` samples. A LegkitError if vecnorm does not normalize observations, has another
    observation size, or another clip or epsilon (then it would normalize differently from BC).
    """
    if not vecnorm.norm_obs:
        raise LegkitError("the VecNormalize does not normalize observations (norm_obs=False) but the cloned policy "
                          "expects normalized inputs")
    shape = tuple(vecnorm.observation_space.shape)
    if shape != normalizer.mean.shape:
        raise LegkitError(f"the VecNormalize's observations have shape {shape} but the cloned policy's "
                          f"normalizer has {normalizer.mean.shape}")
    if vecnorm.clip_obs != normalizer.clip or vecnorm.epsilon != normalizer.epsilon:
        raise LegkitError(f"the VecNormalize clips at {vecnorm.clip_obs} with epsilon {vecnorm.epsilon} but the "
                          f"cloned policy was trained with clip_obs={normalizer.clip}, epsilon={normalizer.epsilon}")
    vecnorm.obs_rms = normalizer.running_mean_std()
    return vecnorm
