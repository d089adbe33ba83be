"""Termination terms: when an episode ends in a fall. Each is a function of the BatchState and the task's
TerminationConfig returning (num_envs,) bools; the env ends an episode when any term fires (after the
grace steps), and counts per term which one did.

Time-limit truncation is not a term: it is not a fall, and PPO bootstraps it.
"""

from __future__ import annotations

import numpy as np

from legkit.tasks.state import BatchState


def base_too_low(s: BatchState, cfg) -> np.ndarray:
    """The base is below `min_base_height` (m)."""
    return s.base_height < cfg.min_base_height


def base_contact(s: BatchState, cfg) -> np.ndarray:
    """The parts whose contact ends an episode (the trunk) touch the ground with more than `base_contact_force` (N)."""
    return s.base_contact_force > cfg.base_contact_force


def tilted(s: BatchState, cfg) -> np.ndarray:
    """The base's up axis is more than `max_tilt` (rad) from vertical (projected gravity z above -cos)."""
    return s.projected_gravity[:, 2] > -np.cos(cfg.max_tilt)


TERMINATIONS = {
    "base_too_low": base_too_low,
    "base_contact": base_contact,
    "tilted": tilted,
}
"""Every termination term by name; all of them apply (a term's threshold switches it off, e.g. a huge force)."""


def falls(s: BatchState, cfg, counts: dict[str, int]) -> np.ndarray:
    """Which robots fell this step (any term, after `grace_steps`); adds each term's firings to `counts`."""
    fell = np.zeros(s.num_envs, dtype=bool)
    started = s.episode_step > cfg.grace_steps
    for name, term in TERMINATIONS.items():
        hit = term(s, cfg) & started
        counts[name] = counts.get(name, 0) + int(hit.sum())
        fell |= hit
    return fell
