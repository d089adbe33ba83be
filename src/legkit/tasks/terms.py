"""RewardManager: weights the reward terms, checks shapes, and keeps per-term episode sums."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from legkit import LegkitError
from legkit.config import coerce
from legkit.tasks.rewards import REWARDS
from legkit.tasks.state import BatchState


@dataclass(frozen=True)
class RewardTerm:
    """One line of the weight table: a reward function's weight and its keyword parameters."""

    weight: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardStage:
    """Reward parameters that take effect once training has run `step` environment steps (e.g. a tracking
    kernel sharpened once the commands are learnt: a wide kernel teaches to walk, a sharp one to be precise)."""

    step: int
    """Environment steps (summed over robots) from which these parameters hold."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Reward term -> parameters set over the term's own (the weight table's other entries stay)."""


def staged_rewards(table: dict[str, RewardTerm], stages, step: int | None = None) -> dict[str, RewardTerm]:
    """The weight table in force at `step` (None: after every stage) under `stages` (RewardStage list)."""
    out = dict(table)
    for st in sorted(stages, key=lambda st: st.step):
        if step is not None and st.step > step:
            break
        for name, params in st.params.items():
            if name not in out:
                raise LegkitError(f"task.reward_stages: step {st.step} sets reward term '{name}', which is not in "
                                  f"task.rewards; valid: {', '.join(out)}")
            out[name] = RewardTerm(out[name].weight, {**out[name].params, **dict(params)})
    return out


PARAM_RANGES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("track_lin_vel", "sigma"): (lambda v: v > 0, "> 0 (it divides the squared error)"),
    ("track_ang_vel", "sigma"): (lambda v: v > 0, "> 0 (it divides the squared error)"),
    ("track_lin_vel", "slow_speed"): (lambda v: v >= 0, ">= 0 (m/s; 0: the plain kernel)"),
    ("stand_still", "threshold"): (lambda v: v > 0, "> 0 (command size below which the robot must stand)"),
    ("height_target", "sigma"): (lambda v: v > 0, "> 0 (it divides the height error)"),
    ("sustained_bonus", "every"): (lambda v: v >= 1, ">= 1 (control steps between bonuses)"),
    ("undesired_contacts", "threshold"): (lambda v: v >= 0, ">= 0 (N; contact forces are never negative)"),
    ("feet_air_time", "contact_force"): (lambda v: v >= 0, ">= 0 (N; contact forces are never negative)"),
    ("contact_schedule", "duty"): (lambda v: 0 < v < 1, "in (0, 1) (the share of a cycle a foot stands)"),
    ("contact_schedule", "contact_force"): (lambda v: v >= 0, ">= 0 (N; contact forces are never negative)"),
    ("contact_schedule", "min_command"): (lambda v: v >= 0, ">= 0 (m/s or rad/s; 0: paid under every command)"),
    ("feet_clearance", "target"): (lambda v: v > 0, "> 0 (m; the swing height below which a moving foot costs)"),
    ("feet_clearance", "min_command"): (lambda v: v >= 0, ">= 0 (m/s or rad/s; 0: paid under every command)"),
    ("ultrasonic_proximity", "distance"): (lambda v: v > 0, "> 0 (m; it divides the distance inside it)"),
    ("progress_window", "window"): (lambda v: v > 0, "> 0 (s; one control step or more is used)"),
    ("lin_vel_progress", "floor"): (lambda v: -1 <= v <= 0, "in [-1, 0] (the least share paid: 0, or a cost)"),
    ("lin_vel_progress", "ceiling"): (lambda v: 1 <= v <= 5, "in [1, 5] (the most share of the command paid)"),
}
"""Ranges of reward parameters that a type cannot express, by (term, parameter)."""


def _param_types(fn: Callable) -> dict[str, Any]:
    """Keyword parameter -> its type (the annotation, else the default's type; None if neither)."""
    target = fn.__call__ if isinstance(fn, type) else fn
    types = {}
    for name, p in inspect.signature(target, eval_str=True).parameters.items():
        if name in ("self", "s"):
            continue
        if p.annotation is not inspect.Parameter.empty:
            types[name] = p.annotation
        else:
            types[name] = None if p.default is inspect.Parameter.empty else type(p.default)
    return types


def check_reward_table(table: dict[str, RewardTerm]) -> dict[str, RewardTerm]:
    """Check term names, parameter names, types and ranges; return a copy with weights and params coerced.

    Raises a LegkitError naming the `task.rewards...` key and what would be valid.
    """
    checked = {}
    for name, term in table.items():
        if name not in REWARDS:
            raise LegkitError(f"unknown reward term '{name}'; valid terms: {', '.join(REWARDS)}")
        key = f"task.rewards.{name}"
        weight = coerce(float, term.weight, f"{key}.weight")
        if not math.isfinite(weight):
            raise LegkitError(f"invalid {key}.weight = {weight}: must be a finite number")
        types = _param_types(REWARDS[name])
        params = {}
        for p, value in term.params.items():
            if p not in types:
                raise LegkitError(
                    f"unknown parameter '{p}' of reward term '{name}'; valid: {', '.join(types) or 'none'}"
                )
            value = coerce(types[p], value, f"{key}.params.{p}") if types[p] is not None else value
            if isinstance(value, float) and not math.isfinite(value):
                raise LegkitError(f"invalid {key}.params.{p} = {value}: must be a finite number")
            ok, valid = PARAM_RANGES.get((name, p), (lambda v: True, ""))
            if not ok(value):
                raise LegkitError(f"invalid {key}.params.{p} = {value}: must be {valid}")
            params[p] = value
        checked[name] = RewardTerm(weight, params)
    return checked


class RewardManager:
    """Computes the weighted sum of reward terms for the batch; logs each term's episode sum."""

    def __init__(self, table: dict[str, RewardTerm], num_envs: int, num_feet: int, dt: float, scale_by_dt: bool):
        table = check_reward_table(table)
        self.names = [n for n, t in table.items() if t.weight != 0.0]
        self._terms = []
        for name in self.names:
            fn = REWARDS[name]
            if isinstance(fn, type):  # stateful term: one instance for the whole batch
                fn = fn(num_envs, num_feet)
            scale = table[name].weight * (dt if scale_by_dt else 1.0)
            self._terms.append((name, fn, scale, dict(table[name].params)))
        self.scales = {name: scale for name, _, scale, _ in self._terms}
        """Each term's factor: weight, times the control period when weights are per second."""
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

    def check(self, s: BatchState) -> None:
        """Evaluate every stateless term once on `s`, keeping nothing: a parameter that only the robot can judge
        (a joint name) raises its LegkitError when the env is built. Stateful terms are not called: a call would
        advance them."""
        for name, fn, _, params in self._terms:
            if not hasattr(fn, "reset"):
                fn(s, **params)

    def set_params(self, table: dict[str, RewardTerm]) -> None:
        """Take the parameters of `table` (the same terms and weights; a reward stage's) from the next step on."""
        table = check_reward_table(table)
        self._terms = [(name, fn, scale, dict(table[name].params)) for name, fn, scale, _ in self._terms]

    def reset(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Return the finished episode sums of `env_ids` per term, then zero them and reset stateful terms."""
        finished = {n: sums[env_ids].copy() for n, sums in self.episode_sums.items()}
        for n in self.names:
            self.episode_sums[n][env_ids] = 0.0
        for _, fn, _, _ in self._terms:
            if hasattr(fn, "reset"):
                fn.reset(env_ids)
        return finished
