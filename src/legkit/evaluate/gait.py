"""Gait metrics from per-substep foot data: pure NumPy functions, one per metric.

Shapes: per-foot arrays are (T, episodes, feet) with one sample per physics substep; `alive` is
(T, episodes), True while the episode runs (alive is a prefix of each episode: once False, False).
A sample counts only where `alive` is True. `dt` is the time between samples (the physics timestep).

Terms used below:
    contact     a foot whose touch force exceeds the threshold (`foot_contact`).
    swing       a maximal run of alive samples of one foot out of contact that starts right after a
                contact sample (a liftoff) and ends right before one (a touchdown). The flight from
                the reset pose to the first landing and a swing cut short by the episode's end are not
                swings: neither has both ends. `debounce` turns breaks of contact too short to be
                swings (bounces) back into contact before the metrics are taken.
"""

from __future__ import annotations

import numpy as np

G = 9.81
"""Gravitational acceleration (m/s^2) of cost of transport."""


def foot_contact(force: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Feet in contact: touch force (N) above `threshold` (N). Same shape as `force`, bool."""
    return np.asarray(force) > threshold


def substep_alive(alive: np.ndarray, decimation: int) -> np.ndarray:
    """The per-control-step mask (steps, episodes) repeated for each of its `decimation` substeps."""
    return np.repeat(alive, decimation, axis=0)


def duty_factor(contact: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Fraction of alive time each foot is in contact (0..1), (feet,); NaN when nothing was alive.

    A trotting quadruped has about 0.5 per foot, a walk more, a stand 1.
    """
    a = alive[..., None]
    alive_time = np.sum(a, axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(contact & a, axis=(0, 1)) / alive_time


def _rows(x: np.ndarray) -> np.ndarray:
    """(T, episodes, feet) -> (episodes * feet, T): one row per foot of an episode, time along the row."""
    T, E, F = x.shape
    return np.transpose(x, (1, 2, 0)).reshape(E * F, T)


def _swing_runs(contact: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete swings as (row, start, stop) of `_rows` layout: samples start .. stop - 1 are out of contact,
    start - 1 and stop in contact, all alive. Ordered by row, then time."""
    T, E, F = contact.shape
    c = _rows(contact)
    a = np.repeat(alive.T, F, axis=0)
    stance, swing = a & c, a & ~c
    lift = np.zeros_like(c)
    lift[:, 1:] = stance[:, :-1] & swing[:, 1:]
    touch = np.zeros_like(c)
    touch[:, 1:] = swing[:, :-1] & stance[:, 1:]
    # Label k >= 1: the samples after a row's k-th liftoff; a touchdown carrying label k ends swing k.
    label = np.cumsum(lift, axis=1)
    key = np.arange(E * F)[:, None] * (T + 1) + label  # unique per (row, swing)
    start_of = np.zeros(E * F * (T + 1), dtype=np.int64)
    lr, lt = np.nonzero(lift)
    start_of[key[lr, lt]] = lt
    row, stop = np.nonzero(touch & (label > 0))
    return row, start_of[key[row, stop]], stop


def debounce(contact: np.ndarray, alive: np.ndarray, min_swing: int) -> np.ndarray:
    """`contact` with every complete swing shorter than `min_swing` samples filled in as contact.

    A foot that bounces off the ground for a few substeps at touchdown or liftoff is still in its stance:
    without this each bounce would count as a stride.
    """
    T, E, F = contact.shape
    row, start, stop = _swing_runs(contact, alive)
    short = (stop - start) < min_swing
    # +1 at each short swing's start, -1 at its stop: the running sum marks the samples to fill.
    mark = np.zeros((E * F, T + 1), dtype=np.int64)
    np.add.at(mark, (row[short], start[short]), 1)
    np.add.at(mark, (row[short], stop[short]), -1)
    fill = np.cumsum(mark[:, :T], axis=1) > 0
    filled = _rows(contact) | fill
    return np.transpose(filled.reshape(E, F, T), (2, 0, 1))


def swings(contact: np.ndarray, alive: np.ndarray, height: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every complete swing (see the module docstring): its foot index (n,) and its peak `height` (n,).

    Without `height` the peaks are NaN. Swings are ordered by episode, then foot, then time.
    """
    F = contact.shape[2]
    row, start, stop = _swing_runs(contact, alive)
    if height is None or not len(row):
        return row % F, np.full(len(row), np.nan)
    T = contact.shape[0]
    h = _rows(height).reshape(-1)
    # reduceat over [start, stop) pairs; the results between pairs (stop_i .. start_i+1) are dropped.
    bounds = np.column_stack([row * T + start, row * T + stop]).reshape(-1)
    return row % F, np.maximum.reduceat(h, bounds)[::2]


def stride_frequency(contact: np.ndarray, alive: np.ndarray, dt: float) -> np.ndarray:
    """Strides per second of each foot (Hz), (feet,): complete swings (touchdowns after a liftoff) over alive time."""
    foot, _ = swings(contact, alive)
    alive_s = float(np.sum(alive)) * dt
    counts = np.bincount(foot, minlength=contact.shape[2]).astype(np.float64)
    return counts / alive_s if alive_s > 0 else np.full(contact.shape[2], np.nan)


def gait_symmetry(duty: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> float:
    """Left-right symmetry of the duty factors (0..1, 1 = symmetric); NaN without pairs.

    For each (left, right) foot pair with duty factors L and R: 1 - |L - R| / (L + R) (1 when both are
    0), averaged over the pairs. 1 - SI/2 in terms of the gait symmetry index SI = 2|L - R| / (L + R).
    A leg that stays on the ground twice as long as its mate gives 1 - 1/3 = 0.67.
    """
    if not pairs:
        return float("nan")
    scores = []
    for left, right in pairs:
        total = duty[left] + duty[right]
        scores.append(1.0 if total == 0 else 1.0 - abs(duty[left] - duty[right]) / total)
    return float(np.mean(scores))


def foot_slip_speed(speed: np.ndarray, contact: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Mean horizontal speed (m/s) of each foot while in contact, (feet,); NaN for a foot never in contact.

    `speed` is the foot's horizontal (world xy) speed; a foot that grips has 0.
    """
    on = contact & alive[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(on, speed, 0.0), axis=(0, 1)) / np.sum(on, axis=(0, 1))


def foot_clearance(height: np.ndarray, contact: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Mean over complete swings of the swing's peak foot height (m), (feet,); NaN for a foot with no swing.

    `height` is the height of the foot's lowest point above the ground (foot centre minus radius on flat
    ground at z = 0), so a foot resting on the ground has about 0.
    """
    foot, peak = swings(contact, alive, height)
    F = contact.shape[2]
    counts = np.bincount(foot, minlength=F)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(foot, weights=peak, minlength=F) / counts


def cost_of_transport(power: np.ndarray, speed: np.ndarray, alive: np.ndarray, mass: float,
                      min_speed: float = 0.1) -> float:
    """Energy per weight and distance, E / (m g d) (dimensionless); NaN below `min_speed` (m/s) mean speed.

    `power` (W) and `speed` (m/s, the base's horizontal speed) are (steps, episodes) on one time grid,
    `mass` the robot's total mass (kg). Summed over every alive step of every episode: mean power over
    m g times mean speed. A robot that hardly moves has no meaningful cost of transport.
    """
    steps = np.sum(alive)
    if steps == 0:
        return float("nan")
    mean_speed = float(np.sum(speed * alive) / steps)
    if mean_speed < min_speed:
        return float("nan")
    return float(np.sum(power * alive) / steps / (mass * G * mean_speed))


def left_right_pairs(foot_xy: np.ndarray) -> tuple[tuple[int, int], ...]:
    """(left, right) index pairs of feet from their (x, y) positions (feet, 2) in the robot's frame (y left).

    Each left foot (y > 0) is paired with the unpaired right foot (y < 0) nearest to its mirror image.
    """
    xy = np.asarray(foot_xy, dtype=np.float64)
    left = [i for i in range(len(xy)) if xy[i, 1] > 0]
    right = [i for i in range(len(xy)) if xy[i, 1] < 0]
    pairs = []
    for i in left:
        if not right:
            break
        mirror = xy[i] * (1.0, -1.0)
        j = min(right, key=lambda k: float(np.sum((xy[k] - mirror) ** 2)))
        right.remove(j)
        pairs.append((i, j))
    return tuple(pairs)
