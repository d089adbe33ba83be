"""A scripted gait evaluated as a policy: `legkit gait`, and `gait:NAME` in `legkit compare`.

A task with `task.gait` set drives its joints to the gait's targets plus action_scale x action; a "model"
whose action is always zero is the gait alone, the baseline a residual policy is judged against. It goes
through the same rollouts, metrics, sweep and videos as a trained policy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from gymnasium import spaces

from legkit import LegkitError
from legkit.config import to_dict
from legkit.train.config import Config, build_config

GAIT_PREFIX = "gait:"

DEFAULT_TASK = {"go2": "go2-walk", "pidog": "pidog-run"}
"""The task a robot's gait runs in when none is named: the Go2 on flat ground at its walking commands, the PiDog
in its obstacle arena (`--set task.arena.enabled=false` for flat ground)."""


class ZeroResidual:
    """The scripted gait alone, as an SB3-like model: every action (the residual) is zero."""

    def __init__(self, obs_dim: int, action_dim: int):
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    @classmethod
    def for_task(cls, task) -> ZeroResidual:
        """The zero residual sized for `task`'s observations and actions."""
        from legkit.envs.core import LeggedBatch

        probe = LeggedBatch(task, 1, nthread=1)
        try:
            return cls(probe.obs_dim, probe.action_dim)
        finally:
            probe.close()

    def predict(self, obs: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        return np.zeros((len(obs), self.action_space.shape[0]), dtype=np.float32), None


class Unnormalized:
    """VecNormalize's `normalize_obs` for a model that takes raw observations."""

    @staticmethod
    def normalize_obs(obs: np.ndarray) -> np.ndarray:
        return obs


def scene_config(task_name: str, sets: list[str] | None = None) -> Config:
    """Task `task_name` as evaluation runs it (without its training disturbances: tasks.config.undisturbed), with
    `sets` (task.* keys only) applied."""
    from legkit.tasks.config import undisturbed

    for item in sets or []:
        key = item.split("=", 1)[0].strip()
        if not key.startswith("task."):
            raise LegkitError(f"--set {key} cannot apply to an evaluation: only task.* keys change it")
    cfg = build_config(task_name)
    return build_config(task_name, sets=sets, base=to_dict(replace(cfg, task=undisturbed(cfg.task))))


def gait_config(robot: str, gait_type: str, base: Config, sets: list[str] | None = None) -> Config:
    """`base` (a scene: legkit.evaluate.compare) running `gait_type` on `robot` as task.gait, then `sets`.

    The gait's parameters are `base`'s own when it already runs a gait of that type (a residual task's
    baseline), else the robot's defaults (legkit.gaits.default_gait)."""
    from legkit.gaits import default_gait

    if base.task.robot != robot:
        raise LegkitError(f"task '{base.task_name}' is for the {base.task.robot}, not the {robot}")
    own = base.task.gait
    gait = own if own is not None and own.type == gait_type else default_gait(robot, gait_type)
    tree = to_dict(replace(base, task=replace(base.task, gait=gait)))
    return build_config(base.task_name, sets=sets, base=tree)


def default_task(robot: str, task_name: str | None = None) -> str:
    """`task_name`, or the task a robot's gaits run in when none is named."""
    if task_name is not None:
        return task_name
    if robot not in DEFAULT_TASK:
        raise LegkitError(f"no default task for the {robot}'s gaits; name one with --task "
                          f"(robots with one: {', '.join(DEFAULT_TASK)})")
    return DEFAULT_TASK[robot]


def parse_gait(spec: str) -> str:
    """`gait:NAME` -> NAME, checked against the gait library's types."""
    from legkit.gaits import GAIT_TYPES

    name = spec[len(GAIT_PREFIX):]
    if name not in GAIT_TYPES:
        raise LegkitError(f"unknown gait '{name}' in '{spec}'; valid: {', '.join(GAIT_PREFIX + g for g in GAIT_TYPES)}")
    return name


def baseline_speed(cfg: Config, episodes: int = 8, seconds: float = 5.0, seed: int = 0) -> float:
    """Mean speed (m/s) of `cfg`'s gait alone along each robot's commanded direction (vx, vy), over `episodes`
    undisturbed episodes of `seconds` (on a terrain: its evaluation row)."""
    from legkit.evaluate.rollout import rollout_model
    from legkit.tasks.config import undisturbed

    task = replace(undisturbed(cfg.task), episode_seconds=seconds)
    t = rollout_model(ZeroResidual.for_task(task), Unnormalized(), episodes, replace(cfg, task=task), seed)
    c = t.command[..., :2]
    norm = np.linalg.norm(c, axis=-1)
    along = np.sum(t.vel[..., :2] * c, axis=-1) / np.maximum(norm, 1e-9)
    use = t.alive & (norm > 1e-6)
    return float(np.sum(along * use) / max(int(use.sum()), 1))


def check_baseline(cfg: Config) -> float | None:
    """Refuse (LegkitError) a residual task whose scripted gait does not move the way it is commanded: the seed
    project's baseline walked backwards and its residual policy never recovered. Returns the measured speed
    (None: no gait, or task.baseline_min_speed = 0 turns the check off)."""
    t = cfg.task
    if t.gait is None or t.baseline_min_speed <= 0:
        return None
    speed = baseline_speed(cfg)
    if speed < t.baseline_min_speed:
        raise LegkitError(
            f"the scripted {t.gait.type} (task.gait) moves at {speed:+.3f} m/s along the commanded direction, below "
            f"task.baseline_min_speed = {t.baseline_min_speed:g}: a residual cannot be learnt on a baseline that "
            f"{'walks backwards' if speed < 0 else 'does not walk'}; fix task.gait (step_length > 0 walks forward; "
            "legkit gait shows it) or set task.baseline_min_speed=0 to train anyway")
    return speed


def clipped_targets(cfg: Config) -> int:
    """Leg targets of `cfg`'s gait out of the legs' reach over one cycle (sampled at the control rate), which
    the gait clips to the nearest reachable point: a gait asking for them is not the gait it says."""
    from legkit.envs.core import LeggedBatch

    batch = LeggedBatch(cfg.task, 1, nthread=1)
    batch.close()  # its gait is stepped alone below: targets only, no physics
    gait = batch.gait
    steps = int(np.ceil(max(cfg.task.gait.cycle_time, cfg.task.gait.transition_time) / gait.dt)) + 1
    for _ in range(steps):
        gait.joint_targets()
        gait.step()
    return int(gait.clipped_count)
