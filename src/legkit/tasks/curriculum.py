"""Staged curricula: a target that rises stage by stage as the policy succeeds.

HeightCurriculum raises the base-height target. An episode succeeds when it lasts at least
the stage's `min_steps` and its mean base height is within `tolerance` of the target; the
stage advances when the success rate over the last `window` finished episodes reaches
`success_rate`. The stage applies to episodes that start after it changes, and only episodes
that started in the current stage count towards it.

A stage can also push the robot (`push_force`): later stages at the same height then teach it
to recover from growing shoves once it can stand, instead of from the first step.

CommandCurriculum widens the command ranges the same way: an episode succeeds when it did not
fall and tracked its commands well enough on average. Both are StagedCurriculum: one stage,
one window of outcomes, one advancing rule, saved in checkpoints and restored on resume.

A stage can also set `max_steps`: it then advances at the latest once that many control steps
of its episodes (robots x steps, counted when those episodes end) were trained, successful or
not. A success rate alone lets the schedule wander with the seed by millions of steps; the cap
bounds when the last stage begins.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from legkit.tasks.state import BatchState


@dataclass(frozen=True)
class StageConfig:
    """One curriculum stage."""

    target: float
    """Base height target (m)."""
    tolerance: float
    """Largest |mean height - target| (m) of a successful episode."""
    min_steps: int
    """Fewest control steps of a successful episode."""
    push_force: float = 0.0
    """Largest push (N) during this stage's training episodes; 0 uses the task's own `pushes.force`.
    Pushes keep the task's interval, duration and random-magnitude settings."""
    max_steps: int = 0
    """Advance after this many control steps of this stage's episodes even below the success rate; 0: never."""


@dataclass(frozen=True)
class CurriculumConfig:
    """A height curriculum; an empty `stages` tuple means none."""

    stages: tuple[StageConfig, ...] = ()
    window: int = 50
    """Finished episodes over which the success rate is measured."""
    success_rate: float = 0.6
    """Advance when this fraction of the window succeeded."""


class StagedCurriculum:
    """What every curriculum shares: a stage, a window of episode outcomes, and the rule that advances.

    The env calls `start(env, ids, judged)` at resets; checkpoints save `stage`, resume and evaluation
    call `set_stage`; `scalars()` is what TensorBoard shows. A subclass says what success is and what a
    stage changes (`_enter`). `cfg` has `stages`, `window` and `success_rate`.
    """

    push_force = 0.0
    """Largest push (N) of this stage's episodes (0: the task's own); read by the Pushes event."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.stage = 0
        self.outcomes: deque[bool] = deque(maxlen=cfg.window)
        self.stage_steps = 0
        """Control steps of the ended episodes begun in the current stage (the clock of a stage's `max_steps`)."""
        self.set_stage(0)

    @property
    def last_stage(self) -> int:
        return len(self.cfg.stages) - 1

    def set_stage(self, stage: int) -> None:
        """Jump to `stage` (clamped), e.g. when resuming or evaluating at the final stage."""
        self.stage = int(np.clip(stage, 0, self.last_stage))
        self.outcomes.clear()
        self.stage_steps = 0
        self._enter(self.cfg.stages[self.stage])

    def _enter(self, stage) -> None:
        """Apply what stage `stage` changes (nothing by default)."""

    def _add(self, success: np.ndarray, stages: np.ndarray, lengths: np.ndarray) -> bool:
        """Add the outcomes of episodes begun in the current stage (`stages`: the stage each began in;
        `lengths`: their control steps); advance when the full window succeeds often enough, or when the
        stage's `max_steps` have been trained. Returns whether it advanced."""
        mine = stages == self.stage
        self.outcomes.extend(bool(x) for x in success[mine])
        self.stage_steps += int(np.sum(lengths[mine]))
        if self.stage == self.last_stage:
            return False
        full = len(self.outcomes) == self.cfg.window
        cap = self.cfg.stages[self.stage].max_steps
        if (full and np.mean(self.outcomes) >= self.cfg.success_rate) or 0 < cap <= self.stage_steps:
            self.set_stage(self.stage + 1)
            return True
        return False

    def success_rate(self) -> float:
        return float(np.mean(self.outcomes)) if self.outcomes else 0.0


class HeightCurriculum(StagedCurriculum):
    """Tracks episode outcomes and sets `s.target_height` and `s.stage` for robots starting an episode."""

    @property
    def target(self) -> float:
        return self.cfg.stages[self.stage].target

    @property
    def push_force(self) -> float:  # type: ignore[override]
        return self.cfg.stages[self.stage].push_force

    def record(self, lengths: np.ndarray, mean_heights: np.ndarray, stages: np.ndarray) -> bool:
        """Add finished episodes' outcomes; advance the stage when the window succeeds. Returns advanced.

        `stages` are the stages the episodes started in; those of an older stage are not counted.
        """
        st = self.cfg.stages[self.stage]
        ok = (lengths >= st.min_steps) & (np.abs(mean_heights - st.target) <= st.tolerance)
        return self._add(ok, stages, lengths)

    def reset(self, s: BatchState, env_ids: np.ndarray, lengths: np.ndarray, height_sums: np.ndarray,
              judged: np.ndarray | None = None) -> None:
        """Judge the episodes ending for `env_ids` (those with steps, and where `judged` if given: the real
        outcomes), then start them all at the current target."""
        done = lengths > 0 if judged is None else judged & (lengths > 0)
        if done.any():
            self.record(lengths[done], height_sums[done] / lengths[done], s.stage[env_ids[done]])
        s.target_height[env_ids] = self.target
        s.stage[env_ids] = self.stage

    def start(self, env, ids: np.ndarray, judged: np.ndarray) -> None:
        """The env's call at a reset: `reset` with the ending episodes' lengths and height sums."""
        s = env.state
        self.reset(s, ids, s.episode_step[ids], env.episode_height_sum[ids], judged)

    def scalars(self) -> dict[str, float]:
        """What TensorBoard shows of it (curriculum/<name>)."""
        return {"stage": self.stage, "target_height": self.target, "success_rate": self.success_rate(),
                "push_force": self.push_force, "stage_steps": self.stage_steps}


@dataclass(frozen=True)
class CommandStage:
    """The command ranges of one stage of a command curriculum."""

    lin_vel_x: tuple[float, float]
    """Forward velocity range (m/s)."""
    lin_vel_y: tuple[float, float] = (0.0, 0.0)
    """Sideways velocity range (m/s)."""
    ang_vel_yaw: tuple[float, float] = (0.0, 0.0)
    """Yaw rate range (rad/s)."""
    max_steps: int = 0
    """Advance after this many control steps of this stage's episodes even below the success rate; 0: never."""


@dataclass(frozen=True)
class CommandCurriculumConfig:
    """Command ranges that widen stage by stage while velocity tracking is good; no stages: none."""

    stages: tuple[CommandStage, ...] = ()
    window: int = 200
    """Finished episodes over which the success rate is measured."""
    success_rate: float = 0.8
    """Advance when this fraction of the window succeeded."""
    term: str = "track_lin_vel"
    """Reward term whose per-step value (0..1, unweighted) measures tracking."""
    min_tracking: float = 0.7
    """An episode succeeds when it did not fall and its mean `term` value reached this."""


class CommandCurriculum(StagedCurriculum):
    """Sets the command term's ranges from its stage; advances on episodes that tracked well."""

    def __init__(self, cfg: CommandCurriculumConfig, commands) -> None:
        self.commands = commands
        super().__init__(cfg)

    def _enter(self, stage: CommandStage) -> None:
        """The command term draws from this stage's ranges from now on."""
        self.commands.ranges[:] = [stage.lin_vel_x, stage.lin_vel_y, stage.ang_vel_yaw]

    def record(self, success: np.ndarray, stages: np.ndarray, lengths: np.ndarray) -> bool:
        """Add finished episodes (those begun in the current stage, of `lengths` control steps); advance when
        the window succeeds or the stage's `max_steps` are spent."""
        return self._add(success, stages, lengths)

    def start(self, env, ids: np.ndarray, judged: np.ndarray) -> None:
        """Judge the ending episodes of `ids` that are real outcomes, then start them in the current stage."""
        s = env.state
        done = judged & (s.episode_step[ids] > 0)
        if done.any():
            ended = ids[done]
            scale = env.rewards.scales[self.cfg.term] * s.episode_step[ended]
            tracking = env.rewards.episode_sums[self.cfg.term][ended] / scale
            self.record(~s.terminated[ended] & (tracking >= self.cfg.min_tracking), s.stage[ended],
                        s.episode_step[ended])
        s.stage[ids] = self.stage

    def scalars(self) -> dict[str, float]:
        """What TensorBoard shows of it (curriculum/<name>)."""
        lo, hi = self.commands.ranges.T
        return {"stage": self.stage, "success_rate": self.success_rate(), "stage_steps": self.stage_steps,
                "lin_vel_x_max": hi[0], "lin_vel_x_min": lo[0], "lin_vel_y_max": hi[1], "ang_vel_yaw_max": hi[2]}
