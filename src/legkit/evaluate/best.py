"""Keep the best policy of a training run by periodic evaluation (RUN/best).

Every `run.best_every` steps (at the first update past each multiple), and once more for the
final model, the policy being trained runs `run.best_episodes` deterministic episodes of the
task at its final curriculum stage, without the training's pushes, from a fixed seed: the
rollout of `legkit eval`. When their mean return (or, with `run.best_by=survival`, their survival rate, ties
broken by the mean return; with `run.best_by=speed` their forward velocity) beats the best so far (an evaluation
under `run.best_min_forward_velocity` or `run.best_min_survival` ranks below every one that reaches more of those
floors), the policy is saved to RUN/best atomically, with its score in best/meta.json. `legkit eval RUN
--checkpoint best` (and validate, video) use it. The final model stays at the top of the run folder.

Every evaluation is also a row of RUN/evaluations.csv (legkit.evaluate.success: the step at which the task's
success bar is first met, "time to walk"), and goes to each `observer(step, metrics)`: `legkit tune` reports
it to Optuna's pruner there. An observer that returns False stops training after this evaluation.

The callback lives here, not in train/, because it evaluates; the CLI hands it to `train`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import rollout_model
from legkit.evaluate.success import EVALUATIONS, append_evaluation
from legkit.tasks.config import undisturbed
from legkit.train.config import BEST_BY, Config
from legkit.train.callbacks import drop_partial_line, drop_rows_after
from legkit.train.runs import BEST, META, save_policy

LOGGED = ("mean_return", "survival_rate", "mean_base_height", "mean_forward_velocity", "velocity_tracking_rms",
          "collisions_per_episode", "stalled_time_share")
"""Metrics of each evaluation logged to TensorBoard as eval/<name> when the task has them (collisions: an arena);
`legkit plots` draws all but the stall share."""
SEED = 54321
"""Seed of the best-model evaluations: fixed, so that scores of different steps compare."""


def score(metrics: dict, best_by: str, min_forward_velocity: float = 0.0,
          min_survival: float = 0.0) -> tuple[float, ...]:
    """The rank of an evaluation under run.best_by (BEST_BY): how many of the floors in use
    (run.best_min_forward_velocity, run.best_min_survival: those above 0) it reaches, then its metrics in order,
    compared as a tuple; an evaluation without one of them (a best model saved before run.best_by existed) ranks
    lowest."""
    floors = {k: v for k, v in (("mean_forward_velocity", min_forward_velocity), ("survival_rate", min_survival))
              if v > 0}
    keys = BEST_BY[best_by]
    try:
        values = [float(metrics[k]) for k in keys]
        reached = [float(metrics[k]) >= v for k, v in floors.items()]
    except (KeyError, TypeError):
        return (-np.inf,) * (len(keys) + bool(floors))
    return ((float(sum(reached)),) if floors else ()) + tuple(values)


class BestModel(BaseCallback):
    """Evaluate every `every` steps and at the end; save the policy to `run/best` when it ranks best (score())."""

    def __init__(self, cfg: Config, run: Path, every: int, episodes: int,
                 observers: tuple[Callable[[int, dict], bool], ...] = ()):
        super().__init__()
        self.cfg, self.run, self.folder, self.every, self.episodes = cfg, run, run / BEST, every, episodes
        self.observers = observers
        """Called with (step, metrics) after every evaluation; one returning False stops training."""
        self.stopped_by: str | None = None
        """The name of the observer that stopped training; None: not stopped."""
        self.calm = replace(cfg, task=undisturbed(cfg.task))
        """The task the policy is scored on: the training's, without its pushes."""
        self.by, self.floors = cfg.run.best_by, (cfg.run.best_min_forward_velocity, cfg.run.best_min_survival)
        self.best = score({}, self.by, *self.floors)
        self.history: list[tuple[int, float]] = []
        """(step, mean return) of every evaluation of this session."""
        self._next = 0
        self._evaluated_updates = -1
        """PPO's update count when the policy was last evaluated."""

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every
        self._t0, self._wall_before = time.time(), _wall_time(self.run)
        rows = self.run / EVALUATIONS
        if rows.exists():  # a resume evaluates again what came after its checkpoint
            drop_partial_line(rows)
            drop_rows_after(rows, self.num_timesteps)
        saved = self.folder / META
        if saved.exists():  # resuming: beat the best of the earlier session
            self.best = score(json.loads(saved.read_text()).get("eval", {}), self.by, *self.floors)

    def _on_rollout_start(self) -> None:
        # Between an update and the next collection: the policy is exactly the one of this step count.
        if self.num_timesteps >= self._next:
            self._evaluate()
            self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return self.stopped_by is None

    def _on_training_end(self) -> None:
        finished = self.num_timesteps >= self.cfg.run.total_steps  # not stopped early (e.g. by the NaN guard)
        if finished and self.model._n_updates != self._evaluated_updates:  # the final model, if not yet seen
            self._evaluate()

    def _evaluate(self) -> None:
        policy = self.model.policy
        if not all(torch.isfinite(p).all() for p in policy.parameters()):
            return  # the NaN guard reports and stops; a poisoned policy is never "best"
        norm = self.model.get_vec_normalize_env()
        # predict() puts the policy in eval mode; PPO's own train() switches it back for the update.
        trace = rollout_model(self.model, norm, self.episodes, self.calm, seed=SEED)
        self._evaluated_updates = self.model._n_updates
        m = compute_metrics(trace)
        rank = score(m, self.by, *self.floors)
        step = self.num_timesteps
        self.history.append((step, m["mean_return"]))
        for key in LOGGED:
            if m.get(key) is not None:
                self.logger.record(f"eval/{key}", m[key])
        if rank > self.best:
            self.best = rank
            run_meta = self.run / META  # task, seed, command... as written when training started
            meta = json.loads(run_meta.read_text()) if run_meta.exists() else {}
            meta.pop("finished", None)
            save_policy(self.folder, self.model, norm, {**meta, "step": step, "eval": {
                "mean_return": m["mean_return"], "best_by": self.by, "episodes": self.episodes, "seed": SEED,
                "survival_rate": m["survival_rate"], "mean_base_height": m["mean_base_height"],
                "mean_forward_velocity": m["mean_forward_velocity"], "collisions_per_episode":
                m.get("collisions_per_episode")}})  # None: no arena
        self.logger.record("eval/best_mean_return", self.best[-1])
        self.logger.dump(step)  # at this step, not at the end of the next update
        append_evaluation(self.run, step, self._wall_before + time.time() - self._t0, m)
        for observe in self.observers:
            if observe(step, m) is False and self.stopped_by is None:
                self.stopped_by = getattr(observe, "__name__", type(observe).__name__)


def _wall_time(run: Path) -> float:
    """Seconds of training that earlier sessions of `run` recorded in its meta.json (0 for a new run)."""
    path = run / META
    return float(json.loads(path.read_text()).get("wall_time_s", 0.0)) if path.exists() else 0.0
