"""RewardManager: weights the reward terms, checks shapes, and keeps per-term episode sums."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from legkit import LegkitError
from legkit.tasks.rewards import REWARDS
from legkit.tasks.state import BatchState


@dataclass(frozen=True)
class RewardTerm:
    """One line of the weight table: a reward function's weight and its keyword parameters."""

    weight: float
    params: dict[str, Any] = field(default_factory=dict)


def term_params(fn: Callable) -> list[str]:
    """Keyword parameters a reward term accepts (everything after the state)."""
    target = fn.__call__ if isinstance(fn, type) else fn
    names = list(inspect.signature(target).parameters)
    return [n for n in names if n not in ("self", "s")]


def check_reward_table(table: dict[str, RewardTerm]) -> None:
    """Raise a LegkitError for an unknown term name or parameter."""
    for name, term in table.items():
        if name not in REWARDS:
            raise LegkitError(f"unknown reward term '{name}'; valid terms: {', '.join(REWARDS)}")
        valid = term_params(REWARDS[name])
        for p in term.params:
            if p not in valid:
                raise LegkitError(
                    f"unknown parameter '{p}' of reward term '{name}'; valid: {', '.join(valid) or 'none'}"
                )


class RewardManager:
    """Computes the weighted sum of reward terms for the batch; logs each term's episode sum."""

    def __init__(self, table: dict[str, RewardTerm], num_envs: int, num_feet: int, dt: float, scale_by_dt: bool):
        check_reward_table(table)
        self.names = [n for n, t in table.items() if t.weight != 0.0]
        self._terms = []
        for name in self.names:
            fn = REWARDS[name]
            if isinstance(fn, type):  # stateful term: one instance for the whole batch
                fn = fn(num_envs, num_feet)
            scale = table[name].weight * (dt if scale_by_dt else 1.0)
            self._terms.append((name, fn, scale, dict(table[name].params)))
        self.episode_sums = {n: np.zeros(num_envs) for n in self.names}
        self._total = np.zeros(num_envs)

    def compute(self, s: BatchState) -> np.ndarray:
        """Total reward of this step, shape (num_envs,); adds each weighted term to its episode sum."""
        total = self._total
        total.fill(0.0)
        for name, fn, scale, params in self._terms:
            value = fn(s, **params)
            if value.shape != total.shape:
                raise RuntimeError(f"reward term '{name}' returned shape {value.shape}, expected {total.shape}")
            weighted = scale * value
            self.episode_sums[name] += weighted
            total += weighted
        return total

    def reset(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Return the finished episode sums of `env_ids` per term, then zero them and reset stateful terms."""
        finished = {n: sums[env_ids].copy() for n, sums in self.episode_sums.items()}
        for n in self.names:
            self.episode_sums[n][env_ids] = 0.0
        for _, fn, _, _ in self._terms:
            if hasattr(fn, "reset"):
                fn.reset(env_ids)
        return finished
