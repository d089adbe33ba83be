"""Observation terms: functions of the BatchState returning (num_envs, k) blocks.

The observation is the concatenation of the configured terms in order; its layout
(name, start, size) is derived from them and saved with every model.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from legkit.tasks.state import BatchState

OBSERVATIONS = {
    "base_lin_vel": lambda s: s.base_lin_vel,
    "base_ang_vel": lambda s: s.base_ang_vel,
    "projected_gravity": lambda s: s.projected_gravity,
    "command": lambda s: s.command,
    "joint_pos": lambda s: s.joint_pos_rel,
    "joint_vel": lambda s: s.joint_vel,
    "last_action": lambda s: s.action,
    "base_height": lambda s: s.base_pos[:, 2:3],
    "target_height": lambda s: s.target_height[:, None],
    "history": lambda s: s.history,
    # Privileged terms: a real robot cannot measure these; give them to a critic only.
    "ground_friction": lambda s: s.ground_friction[:, None],
    "payload": lambda s: s.payload[:, None],
    "motor_strength": lambda s: s.motor_strength[:, None],
    "push_force": lambda s: s.push_force[:, :2] * 0.01,  # per 100 N
}
"""Observation terms by config name (`last_action` is the action applied in the step just taken;
`history` is the past frames of `task.observation_history`)."""

PRIVILEGED = ("base_lin_vel", "base_height", "ground_friction", "payload", "motor_strength", "push_force")
"""Terms the simulator knows and a robot has no sensor for."""


@dataclass(frozen=True)
class HistoryConfig:
    """The `history` observation term: the last `length` observed frames of `terms`, newest first.

    A frame is the values of `terms` as the policy saw them (noise included), in observation order;
    at a reset every past frame is the first observation of the episode. A policy without base
    velocity (a real Go2 has no sensor for it) can infer it from how the joints and the IMU moved.
    """

    terms: tuple[str, ...] = ()
    """Observation terms kept in each frame; each must also be in `task.observations`."""
    length: int = 0
    """Past frames kept (control steps)."""


def term_indices(layout: list, names) -> list[int]:
    """Indices into the flat observation of the terms `names` ((name, start, size) layout), in
    observation order."""
    wanted = set(names)
    return [i for n, start, size in layout if n in wanted for i in range(int(start), int(start) + int(size))]


def observation_layout(terms: tuple[str, ...], s: BatchState) -> list[tuple[str, int, int]]:
    """(name, start, size) of every observation term, in order."""
    layout, start = [], 0
    for name in terms:
        size = OBSERVATIONS[name](s).shape[1]
        layout.append((name, start, size))
        start += size
    return layout


def compute_observation(terms: tuple[str, ...], s: BatchState, out: np.ndarray) -> np.ndarray:
    """Write the concatenated observation terms into `out` (num_envs, obs_dim) and return it."""
    start = 0
    for name in terms:
        block = OBSERVATIONS[name](s)
        out[:, start:start + block.shape[1]] = block
        start += block.shape[1]
    return out


def layout_difference(trained: list, current: list) -> str | None:
    """Where observation layout `current` differs from `trained` ((name, start, size) lists), or None.

    Compared by name, order and size, so that a reordered or resized term is caught even when the
    total size is the same (a model fed another layout acts on garbage).
    """
    old = [(str(n), int(k)) for n, _, k in trained]
    new = [(str(n), int(k)) for n, _, k in current]
    if old == new:
        return None
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return (f"term {i} is '{b[0]}' ({b[1]} values) in the task but '{a[0]}' ({a[1]} values) in the model; "
                    f"the model was trained on {', '.join(n for n, _ in old)}")
    longer, which = (old, "model") if len(old) > len(new) else (new, "task")
    extra = ", ".join(n for n, _ in longer[min(len(old), len(new)):])
    return f"the {which} has the extra terms {extra}; the model was trained on {', '.join(n for n, _ in old)}"
