"""The velocity command term: what each robot is asked to do, (vx, vy, yaw rate) in its body frame.

Commands are drawn per robot at reset and every `resample_seconds`, uniformly from ranges that a
command curriculum may widen while training runs (`VelocityCommand.ranges`, not the frozen config).
A share of draws is a zero command, since standing still is a command too. In heading mode the
robot is given a heading instead of a yaw rate, and the yaw-rate command follows from the error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from legkit import LegkitError
from legkit.tasks.state import BatchState, quat_yaw


@dataclass(frozen=True)
class CommandConfig:
    """Velocity commands, sampled uniformly per robot at reset (and every `resample_seconds` if > 0)."""

    lin_vel_x: tuple[float, float] = (0.5, 1.0)
    """Forward velocity range (m/s)."""
    lin_vel_y: tuple[float, float] = (0.0, 0.0)
    """Sideways velocity range (m/s)."""
    ang_vel_yaw: tuple[float, float] = (0.0, 0.0)
    """Yaw rate range (rad/s); in heading mode, the limits of the yaw-rate command."""
    resample_seconds: float = 0.0
    """Resample commands this often (s); 0 keeps one command per episode."""
    standing_share: float = 0.0
    """Fraction of draws that are the zero command (stand still), in [0, 1]."""
    single_axis_share: float = 0.0
    """Fraction of draws that keep one of vx, vy, yaw rate (chosen evenly) and zero the other two, in
    [0, 1]: pure backward, sideways and turning on the spot, which a draw from the whole box rarely gives."""
    slow_share: float = 0.0
    """Fraction of draws, in [0, 1], taken from `slow_ranges` instead: slow commands, which a draw from the whole
    box gives rarely once the ranges are wide, and under which a policy that meets them seldom may stand still
    (standing earns most of a tracking kernel at a slow command). Mixed into go2-joystick's whole range (half or
    80% of the draws slow) it lost the backward walk, and at 80% forward 0.2 m/s too (docs/results.md)."""
    slow_ranges: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None
    """The [lo, hi] of vx (m/s), vy (m/s) and yaw rate (rad/s) that `slow_share` draws from, each cut to the
    current range (a command curriculum's stage)."""
    heading: bool = False
    """Heading mode: draw a heading in [-pi, pi] (world frame) and command the yaw rate
    `heading_stiffness * heading error`, clipped to `ang_vel_yaw`."""
    heading_stiffness: float = 0.5
    """Yaw-rate command per radian of heading error (1/s)."""


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles (rad) wrapped into [-pi, pi)."""
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def base_yaw(s: BatchState) -> np.ndarray:
    """Heading (rad) of each base, from its w-x-y-z quaternion."""
    return quat_yaw(s.base_quat)


def behaviour_onehot(behaviours: tuple[str, ...], behaviour: str, num_envs: int) -> np.ndarray:
    """The `behaviour` term of every robot, (num_envs, len(behaviours)): `behaviour` one-hot."""
    if behaviour not in behaviours:
        raise LegkitError(f"invalid task.behaviour '{behaviour}': the `behaviour` term needs one of task.behaviours "
                          f"({', '.join(behaviours) or 'none set'})")
    out = np.zeros((num_envs, len(behaviours)))
    out[:, behaviours.index(behaviour)] = 1.0
    return out


class VelocityCommand:
    """Writes `s.command` for the batch: draws at reset and on schedule, heading tracking every step."""

    def __init__(self, cfg: CommandConfig, s: BatchState, rng_holder, dt: float):
        self.cfg = cfg
        self.s = s
        self._rng = rng_holder  # the env: its `rng` may be replaced (VecEnv.seed), so it is read each time
        self.ranges = np.array([cfg.lin_vel_x, cfg.lin_vel_y, cfg.ang_vel_yaw], dtype=np.float64)
        """(3, 2) current [lo, hi] of vx, vy, yaw rate; a command curriculum changes these."""
        self.every = int(round(cfg.resample_seconds / dt)) if cfg.resample_seconds > 0 else 0
        self.target_heading = np.zeros(s.num_envs)
        """Heading (rad, world frame) each robot is asked to face, in heading mode."""

    def sample(self, ids: np.ndarray) -> None:
        """Draw new commands for robots `ids`."""
        rng, k, cmd = self._rng.rng, len(ids), self.s.command
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]  # (3,); per robot, (k, 3), with slow draws
        if self.cfg.slow_share > 0:
            slow = rng.uniform(0.0, 1.0, k) < self.cfg.slow_share
            box = np.asarray(self.cfg.slow_ranges, dtype=np.float64)
            lo, hi = np.tile(lo, (k, 1)), np.tile(hi, (k, 1))
            lo[slow] = np.minimum(np.maximum(box[:, 0], self.ranges[:, 0]), self.ranges[:, 1])
            hi[slow] = np.maximum(np.minimum(box[:, 1], self.ranges[:, 1]), lo[slow])
        for col in range(3):
            cmd[ids, col] = rng.uniform(lo[..., col], hi[..., col], k)
        if self.cfg.single_axis_share > 0:
            single = rng.uniform(0.0, 1.0, k) < self.cfg.single_axis_share
            keep = rng.integers(0, 3, k)
            for col in range(3):
                cmd[ids[single & (keep != col)], col] = 0.0
        if self.cfg.heading:
            self.target_heading[ids] = rng.uniform(-np.pi, np.pi, k)
        if self.cfg.standing_share > 0:
            stand = ids[rng.uniform(0.0, 1.0, k) < self.cfg.standing_share]
            cmd[stand] = 0.0
            self.target_heading[stand] = base_yaw(self.s)[stand]  # hold the current heading
        self._follow_heading(ids)

    def reset(self, ids: np.ndarray) -> None:
        self.sample(ids)

    def step(self) -> None:
        """After a control step: resample robots whose time has come; update heading-mode yaw rates."""
        if self.every:
            due = np.flatnonzero(self.s.episode_step % self.every == 0)
            if len(due):
                self.sample(due)
        self._follow_heading(None)

    def _follow_heading(self, ids: np.ndarray | None) -> None:
        if not self.cfg.heading:
            return
        sel = slice(None) if ids is None else ids
        err = wrap_angle(self.target_heading[sel] - base_yaw(self.s)[sel])
        lo, hi = self.ranges[2]
        self.s.command[sel, 2] = np.clip(self.cfg.heading_stiffness * err, lo, hi)


def check_commands(task) -> None:
    """Raise a LegkitError for command and command-curriculum settings out of range (a TaskConfig)."""
    c, cc = task.commands, task.command_curriculum
    checks = [
        (0.0 <= c.standing_share <= 1.0, "task.commands.standing_share", c.standing_share, "in [0, 1]"),
        (0.0 <= c.single_axis_share <= 1.0, "task.commands.single_axis_share", c.single_axis_share, "in [0, 1]"),
        (0.0 <= c.slow_share <= 1.0, "task.commands.slow_share", c.slow_share, "in [0, 1]"),
        (c.slow_share == 0 or c.slow_ranges is not None, "task.commands.slow_ranges", c.slow_ranges,
         "set when task.commands.slow_share > 0: [[vx lo, hi], [vy lo, hi], [yaw lo, hi]]"),
        (c.slow_ranges is None or all(lo <= hi for lo, hi in c.slow_ranges), "task.commands.slow_ranges",
         c.slow_ranges, "[lo, hi] pairs with lo <= hi"),
        (c.heading_stiffness > 0, "task.commands.heading_stiffness", c.heading_stiffness, "> 0 (1/s)"),
    ]
    if cc.stages:
        checks += [
            (not task.curriculum.stages, "task.command_curriculum.stages", f"{len(cc.stages)} stages",
             "empty while task.curriculum has stages (one curriculum per task)"),
            (cc.window >= 1, "task.command_curriculum.window", cc.window, ">= 1"),
            (0 < cc.success_rate <= 1, "task.command_curriculum.success_rate", cc.success_rate, "in (0, 1]"),
            (0 <= cc.min_tracking <= 1, "task.command_curriculum.min_tracking", cc.min_tracking, "in [0, 1]"),
            (task.rewards.get(cc.term) is not None and task.rewards[cc.term].weight != 0,
             "task.command_curriculum.term", cc.term,
             f"a reward term of the task with a non-zero weight ({', '.join(task.rewards)})"),
        ]
        for i, st in enumerate(cc.stages):
            for name in ("lin_vel_x", "lin_vel_y", "ang_vel_yaw"):
                lo, hi = getattr(st, name)
                checks.append((lo <= hi, f"task.command_curriculum.stages[{i}].{name}", [lo, hi], "[lo, hi], lo <= hi"))
    for ok, key, value, valid in checks:
        if not ok:
            raise LegkitError(f"invalid {key} = {value}: must be {valid}")
