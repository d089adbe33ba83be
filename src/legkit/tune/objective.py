"""The objective of `legkit tune`: time to walk, in environment steps (lower is better).

A trial trains with a budget of S environment steps and evaluates its policy every `run.best_every` steps
(legkit.evaluate.best.BestModel, deterministic episodes without pushes). Its value is

    the step at which an evaluation first meets the task's success bar (go2-walk: mean forward velocity
    >= 0.5 m/s and survival >= 95%); training stops right there;
    S * (1 + shortfall) when no evaluation meets it within S steps, where shortfall in [0, 1] is the mean,
    over the bar's bounds, of the last evaluation's relative gap to each bound, clipped to [0, 1].

So every trial that learns the task ranks before every trial that does not, sooner before later, and a near
miss (walking at 0.4 m/s) before standing still (shortfall about 0.5: the velocity bound missed entirely, the
survival bound met) and before falling over (shortfall near 1).

At every evaluation the trial reports to Optuna's pruner the value it would get if it ended there, at the
evaluation's nominal step (the multiple of `run.best_every` it was due at; S for the final one, so that trials
with different rollout sizes compare at the same steps). A trial that meets the bar reports its value at every
later nominal step as well: it would end with that value whenever it stopped, and trials still learning there
are then measured against it too. A trial the pruner stops (MedianPruner: worse than
the median of earlier trials at that step) ends after that evaluation as an ordinary run folder, with its
checkpoints, that `legkit train --resume` can continue.
"""

from __future__ import annotations

import math

from legkit.tasks.config import SuccessBar


def shortfall(metrics: dict, bar: SuccessBar) -> float:
    """How far `metrics` are from meeting `bar`: the mean over its bounds of the relative gap, each in [0, 1]
    (0: the bound is met; 1: missed by its own size or more, or the metric is missing)."""
    gaps = []
    for key, op, bound in bar.bounds():
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            gaps.append(1.0)
            continue
        gap = bound - value if op == ">=" else value - bound
        gaps.append(min(max(gap / (abs(bound) or 1.0), 0.0), 1.0))
    return sum(gaps) / len(gaps) if gaps else 1.0


def trial_value(step: int, metrics: dict, bar: SuccessBar, budget: int) -> float:
    """The objective if the trial ended with this evaluation at `step`: the step when `bar` is met (at most the
    budget), else budget * (1 + shortfall)."""
    if bar.met(metrics):
        return float(min(step, budget))
    return budget * (1.0 + shortfall(metrics, bar))


def nominal_step(step: int, every: int, budget: int) -> int:
    """The step an evaluation at `step` reports at: the multiple of `every` it was due at, or the budget for
    the final evaluation (evaluations come at the first update past each multiple)."""
    return min(step // every * every, budget)


class Pruning:
    """A BestModel observer for one Optuna trial: report each evaluation's value and stop training when the
    bar is met or the pruner says so (returns False)."""

    def __init__(self, trial, bar: SuccessBar, budget: int, every: int):
        self.trial, self.bar, self.budget, self.every = trial, bar, budget, every
        self.value: float | None = None
        """The objective after the latest evaluation (None before the first)."""
        self.step: int | None = None
        """Environment step of the latest evaluation."""
        self.metrics: dict = {}
        self.met_at: int | None = None
        """Step of the evaluation that met the bar."""
        self.pruned_at: int | None = None
        """Nominal step at which the pruner stopped the trial."""
        self.reported: set[int] = set()

    def __call__(self, step: int, metrics: dict) -> bool:
        self.step, self.metrics = step, dict(metrics)
        self.value = trial_value(step, metrics, self.bar, self.budget)
        at = nominal_step(step, self.every, self.budget)
        self._report(self.value, at)
        if self.bar.met(metrics):
            self.met_at = step
            # Its value stays this step whenever it would end: so it says at every later step too, so that trials
            # still learning there are measured against it, not only against the others that have not learnt.
            for later in [*range(at + self.every, self.budget, self.every), self.budget]:
                self._report(self.value, later)
            return False
        if step < self.budget and self.trial.should_prune():
            self.pruned_at = at
            return False
        return True

    def _report(self, value: float, at: int) -> None:
        if at not in self.reported:  # Optuna keeps the first value reported at a step
            self.trial.report(value, at)
            self.reported.add(at)

    def outcome(self) -> str:
        """One line: what the trial's value means."""
        if self.met_at is not None:
            return f"met the bar at step {self.met_at:,}"
        if self.step is None:
            return "no evaluation"
        return (f"bar not met by step {self.step:,} (shortfall {shortfall(self.metrics, self.bar):.3f}: "
                + ", ".join(f"{k} {_fmt(self.metrics.get(k))}" for k, _, _ in self.bar.bounds()) + ")")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"
