"""Evaluation metrics computed from a Trace, and their printed table."""

from __future__ import annotations

import math

import numpy as np

from legkit.evaluate.gait import (cost_of_transport, debounce, duty_factor, foot_clearance, foot_contact,
                                  foot_slip_speed, gait_symmetry, stride_frequency, substep_alive, swings)
from legkit.evaluate.rollout import Trace

CONTACT_THRESHOLD = 1.0
"""Touch force (N) above which a foot counts as in contact."""
MIN_SWING_S = 0.04
"""Shorter breaks of contact (s) are bounces within a stance, not swings. On the Go2 at 1 m/s, breaks last
either 5-25 ms (bounces at touchdown and liftoff) or 55-190 ms (swings)."""
STALL_WINDOW_S = 2.0
"""Length of the windows the stall metrics look at (s)."""
STALL_FRACTION = 0.25
"""A window is a stall when the robot moves along its command at less than this share of the commanded speed."""
STALL_MIN_COMMAND = 0.05
"""Windows whose mean commanded planar speed (m/s) is lower are not judged: standing still is not a stall."""
BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the episodes behind a bootstrap confidence interval (bootstrap_ci)."""


def compute_metrics(t: Trace) -> dict[str, float | int | None]:
    """Summary numbers of an evaluation; averages are over the steps each episode was alive."""
    a = t.alive
    steps = max(int(a.sum()), 1)
    mean = lambda x: float(np.sum(x * a) / steps)  # noqa: E731
    err = t.vel - t.command
    fell = t.terminated
    distance = np.sum(t.vel[..., 0] * a, axis=0) * t.dt  # forward progress in the body frame (m)
    energy = np.sum(t.power * a, axis=0) * t.dt  # J
    moved = distance > 0.5
    height_mean = mean(t.height)
    return {
        "episodes": int(a.shape[1]),
        "mean_forward_velocity": mean(t.vel[..., 0]),
        "mean_command_velocity": mean(t.command[..., 0]),
        "velocity_tracking_rms": float(np.sqrt(np.sum(np.sum(err**2, axis=-1) * a) / steps)),
        "linear_velocity_tracking_rms": float(np.sqrt(np.sum(np.sum(err[..., :2] ** 2, axis=-1) * a) / steps)),
        "survival_rate": float(np.mean(~fell)),
        "early_termination_rate": float(np.mean(fell)),
        "mean_time_to_fall_s": float(np.mean(t.length[fell]) * t.dt) if fell.any() else None,
        "mean_base_height": height_mean,
        "base_height_std": float(np.sqrt(mean((t.height - height_mean) ** 2))),
        "mean_action_magnitude": mean(t.action_abs),
        "mean_return": float(np.mean(np.sum(t.reward * a, axis=0))),
        "energy_per_metre_J": float(np.mean(energy[moved] / distance[moved])) if moved.any() else None,
        "mean_episode_length_s": float(np.mean(t.length) * t.dt),
        "episode_limit_s": float(t.max_steps * t.dt),
        "cost_of_transport": _number(cost_of_transport(t.power, np.hypot(t.vel[..., 0], t.vel[..., 1]), a, t.mass))
        if t.mass > 0 else None,
        **stall_metrics(t),
        **(gait_metrics(t) if t.foot_force is not None else {}),
        **(collision_metrics(t) if t.obstacle_contact is not None else {}),
    }


def _window_sums(x: np.ndarray, w: int) -> np.ndarray:
    """Sums of `x` (steps, ...) over every window of `w` consecutive steps: (steps - w + 1, ...)."""
    c = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    return c[w:] - c[:-w]


def stall_metrics(t: Trace) -> dict[str, float | None]:
    """Stalls: windows of STALL_WINDOW_S, all alive, asked to move (mean commanded planar speed at least
    STALL_MIN_COMMAND) in which the robot's mean velocity along its command is below STALL_FRACTION of the
    commanded speed: a robot stuck against an obstacle, on a step, or treading on the spot. `stalled_time_share`
    is the share of the judged windows that are stalls, `episodes_stalled` the share of episodes with one; with an
    arena, `stalls_at_obstacles` is the share of stalls during which the robot touched an obstacle or wall. None
    where nothing was judged (episodes shorter than a window, or no command to move) or, for the last, no stall."""
    w = max(1, round(STALL_WINDOW_S / t.dt))  # episodes shorter than w steps give no windows (empty sums)
    a = t.alive.astype(float)
    c = t.command[..., :2]
    speed = np.linalg.norm(c, axis=-1)
    along = np.sum(t.vel[..., :2] * c, axis=-1) / np.maximum(speed, 1e-9)  # velocity along the command (m/s)
    asked = _window_sums(speed * a, w) / w
    judged = (_window_sums(a, w) == w) & (asked >= STALL_MIN_COMMAND)
    stalled = judged & (_window_sums(along * a, w) / w < STALL_FRACTION * asked)
    out: dict[str, float | None] = {
        "stalled_time_share": float(stalled.sum() / judged.sum()) if judged.any() else None,
        "episodes_stalled": float(np.mean(stalled.any(axis=0))) if judged.any() else None}
    if t.obstacle_contact is not None:
        touched = _window_sums(t.obstacle_contact.astype(float), w) > 0
        out["stalls_at_obstacles"] = float((stalled & touched).sum() / stalled.sum()) if stalled.any() else None
    return out


def contact_onsets(contact: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Collisions of each episode: the alive steps in contact whose previous step was not, (episodes,), from
    contact and alive (steps, episodes) bool. Contact at an episode's first step is one."""
    c = contact & alive
    before = np.zeros_like(c)
    before[1:] = c[:-1]
    return np.sum(c & ~before, axis=0)


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval (lo, hi) of the mean of `values` (one per episode): the episodes
    resampled with replacement `resamples` times, with a fixed seed so that an evaluation prints the same interval
    each time."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng, chunk = np.random.default_rng(seed), max(1, 2_000_000 // v.size)  # at most 2 M indices drawn at once
    means = np.concatenate([v[rng.integers(0, v.size, (min(chunk, resamples - i), v.size))].mean(axis=1)
                            for i in range(0, resamples, chunk)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def collision_metrics(t: Trace) -> dict:
    """Obstacle and arena-wall collisions (tasks with an arena): onsets of contact per episode with a 95%
    bootstrap interval over the episodes, and the share of alive steps in contact. Collisions are heavy-tailed
    (a robot stuck against a curb touches it again at each footfall): most episodes have none and a few have
    dozens, so the mean moves from one set of layouts to another, and the interval says by how much."""
    a = t.alive
    onsets = contact_onsets(t.obstacle_contact, a)
    out = {"collisions_per_episode": float(np.mean(onsets)),
           "collisions_per_episode_ci95": bootstrap_ci(onsets),
           "collision_time_share": float(np.sum(t.obstacle_contact & a) / max(int(a.sum()), 1)),
           "episodes_with_collision": float(np.mean(onsets > 0))}
    if t.obstacle_contact_by_kind is not None:  # onsets per kind: touching a box and a curb at once counts for both
        out["collisions_by_kind"] = {k: float(np.mean(contact_onsets(t.obstacle_contact_by_kind[..., j], a)))
                                     for j, k in enumerate(t.obstacle_kinds)}
    return out


def _number(x: float) -> float | None:
    """A float for the JSON; None where the metric is not defined (NaN)."""
    return None if math.isnan(x) else float(x)


def _per_foot(t: Trace, values: np.ndarray) -> dict[str, float | None]:
    return {name: _number(float(v)) for name, v in zip(t.feet, values)}


def _mean(values: np.ndarray) -> float | None:
    """Mean over the feet where defined; None where no foot has a value."""
    ok = values[~np.isnan(values)]
    return float(np.mean(ok)) if len(ok) else None


def gait_metrics(t: Trace) -> dict:
    """Gait metrics (evaluate/gait.py) from the trace's per-substep foot arrays, per foot and overall.

    Contact is a touch force above CONTACT_THRESHOLD, with breaks shorter than MIN_SWING_S filled in.
    Overall: duty factor and stride frequency are means over the feet; slip speed is over all the feet's
    contact time, clearance over all their swings (a foot that hardly touches weighs little).
    """
    decimation = t.foot_force.shape[0] // t.alive.shape[0]
    a = substep_alive(t.alive, decimation)
    c = debounce(foot_contact(t.foot_force, CONTACT_THRESHOLD), a, round(MIN_SWING_S / t.substep_dt))
    duty = duty_factor(c, a)
    freq = stride_frequency(c, a, t.substep_dt)
    slip = foot_slip_speed(t.foot_speed, c, a)
    clearance = foot_clearance(t.foot_height, c, a)
    _, peaks = swings(c, a, t.foot_height)
    on = duty > 0  # slip over all contact time: per-foot means weighted by each foot's contact time
    return {
        "duty_factor": _mean(duty),
        "stride_frequency_hz": _mean(freq),
        "gait_symmetry": _number(gait_symmetry(duty, t.foot_pairs)),
        "foot_slip_speed": float(np.average(slip[on], weights=duty[on])) if on.any() else None,
        "foot_clearance": float(np.mean(peaks)) if len(peaks) else None,
        "duty_factor_per_foot": _per_foot(t, duty),
        "stride_frequency_per_foot": _per_foot(t, freq),
        "foot_slip_speed_per_foot": _per_foot(t, slip),
        "foot_clearance_per_foot": _per_foot(t, clearance),
    }


LABELS = {
    "episodes": ("episodes", "{:d}"),
    "mean_forward_velocity": ("mean forward velocity (m/s)", "{:.3f}"),
    "mean_command_velocity": ("mean commanded velocity (m/s)", "{:.3f}"),
    "velocity_tracking_rms": ("velocity tracking RMS error", "{:.3f}"),
    "linear_velocity_tracking_rms": ("linear velocity tracking RMS (m/s)", "{:.3f}"),
    "survival_rate": ("survival rate", "{:.1%}"),
    "early_termination_rate": ("early termination rate", "{:.1%}"),
    "mean_time_to_fall_s": ("mean time to fall (s)", "{:.2f}"),
    "mean_base_height": ("mean base height (m)", "{:.3f}"),
    "base_height_std": ("base height std (m)", "{:.3f}"),
    "mean_action_magnitude": ("mean |action|", "{:.3f}"),
    "mean_return": ("mean episode return", "{:.1f}"),
    "energy_per_metre_J": ("energy per metre (J/m)", "{:.1f}"),
    "mean_episode_length_s": ("mean episode length (s)", "{:.2f}"),
    "episode_limit_s": ("episode limit (s)", "{:.1f}"),
    "cost_of_transport": ("cost of transport", "{:.2f}"),
    "stalled_time_share": ("time stalled (2 s windows)", "{:.1%}"),
    "episodes_stalled": ("episodes with a stall", "{:.1%}"),
    "stalls_at_obstacles": ("stalls touching an obstacle", "{:.1%}"),
    "collisions_per_episode": ("collisions per episode", "{:.2f}"),
    "collisions_per_episode_ci95": ("collisions, 95% interval", "{:.2f} to {:.2f}"),
    "collision_time_share": ("time in contact with obstacles", "{:.1%}"),
    "episodes_with_collision": ("episodes with a collision", "{:.1%}"),
    "collisions_by_kind": ("collisions per episode by kind", "{:.2f}"),
    "duty_factor": ("duty factor (mean over feet)", "{:.2f}"),
    "duty_factor_per_foot": ("duty factor per foot", "{:.2f}"),
    "stride_frequency_hz": ("stride frequency (Hz)", "{:.2f}"),
    "gait_symmetry": ("gait symmetry (1 = symmetric)", "{:.3f}"),
    "foot_slip_speed": ("foot slip speed (m/s)", "{:.3f}"),
    "foot_clearance": ("foot clearance (m)", "{:.3f}"),
}
OPTIONAL = {"cost_of_transport", "duty_factor", "duty_factor_per_foot", "stride_frequency_hz", "gait_symmetry",
            "foot_slip_speed", "foot_clearance", "collisions_per_episode", "collisions_per_episode_ci95",
            "collision_time_share", "episodes_with_collision", "collisions_by_kind", "stalls_at_obstacles"}
"""Rows printed only when the metrics have them (gait metrics need foot sensors, collisions an arena)."""


def format_table(metrics: dict) -> str:
    """Two aligned columns: metric, value ('-' where not defined); per-foot values as 'FOOT value' pairs."""
    width = max(len(label) for label, _ in LABELS.values())

    def show(v, fmt: str) -> str:  # an interval (lo, hi) fills both of its format's fields
        return "-" if v is None else fmt.format(*v) if isinstance(v, (list, tuple)) else fmt.format(v)

    lines = []
    for key, (label, fmt) in LABELS.items():
        if key in OPTIONAL and key not in metrics:
            continue
        v = metrics.get(key)
        text = "  ".join(f"{k} {show(x, fmt)}" for k, x in v.items()) if isinstance(v, dict) else show(v, fmt)
        lines.append(f"{label:<{width}}  {text}")
    return "\n".join(lines)
