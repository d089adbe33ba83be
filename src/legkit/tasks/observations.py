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
    "base_height": lambda s: s.base_height[:, None],
    "target_height": lambda s: s.target_height[:, None],
    "history": lambda s: s.history,
    "height_scan": lambda s: s.height_scan,
    "gait_phase": lambda s: s.gait_phase,
    "imu": lambda s: s.imu,
    "attitude": lambda s: s.attitude,
    "ultrasonic": lambda s: s.ultrasonic,
    "camera": lambda s: s.camera,
    "touch": lambda s: s.touch,
    "behaviour": lambda s: s.behaviour,
    "clock": lambda s: s.clock,
    # Privileged terms: a real robot cannot measure these; give them to a critic only.
    "ground_friction": lambda s: s.ground_friction[:, None],
    "payload": lambda s: s.payload[:, None],
    "motor_strength": lambda s: s.motor_strength[:, None],
    "push_force": lambda s: s.push_force[:, :2] * 0.01,  # per 100 N
    "obstacle_map": lambda s: s.obstacle_map,  # the arena's true layout around the base (m high)
}
"""Observation terms by config name (`last_action` is the action applied in the step just taken;
`history` is the past frames of `task.observation_history`)."""

PRIVILEGED = ("base_lin_vel", "base_height", "ground_friction", "payload", "motor_strength", "push_force",
              "obstacle_map")
"""Terms the simulator knows and a robot has no sensor for."""


MIRROR_SIGNS = {
    "base_lin_vel": (1.0, -1.0, 1.0),  # a vector: its y flips
    "projected_gravity": (1.0, -1.0, 1.0),
    "attitude": (1.0, -1.0, 1.0),  # in the IMU's frame: the base's on the PiDog, the one robot with an IMU
    "base_ang_vel": (-1.0, 1.0, -1.0),  # an angular velocity (axial vector): roll and yaw rate flip
    "command": (1.0, -1.0, -1.0),  # vx, vy, yaw rate
    "push_force": (1.0, -1.0),
    "base_height": (1.0,), "target_height": (1.0,),
    "ground_friction": (1.0,), "payload": (1.0,), "motor_strength": (1.0,),
    # The PiDog's sensors, on its centre line: the IMU's accelerometer (a vector) then its gyroscope (an axial
    # vector), in the IMU's frame; the ultrasonic's [echo flag, distance] is its own mirror image.
    "imu": (1.0, -1.0, 1.0, -1.0, 1.0, -1.0),
    "ultrasonic": (1.0, 1.0),
    # Half a cycle on: the mirror image of a gait whose left and right legs alternate (a trot, a walk) is the
    # same gait half a cycle later, so (sin, cos) of the phase changes sign.
    "clock": (-1.0, -1.0),
}
"""Under the left-right reflection (y -> -y), the sign of each entry of these terms (entries stay in place)."""
JOINT_TERMS = ("joint_pos", "joint_vel", "last_action")
"""Terms in joint order: the reflection permutes them by the robot's mirror_joints and signs."""
PERMUTED = ("camera", "behaviour", "touch", "obstacle_map")
"""Terms whose reflection permutes their entries, as the task configures them (`term_reflections`): the camera's
columns, the left and right behaviours, the left and right touch sensors, the obstacle map's columns."""
REFLECTED = (*MIRROR_SIGNS, *JOINT_TERMS, *PERMUTED, "history")
"""Every observation term with a left-right reflection (`history` reflects frame by frame)."""


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


def mirror_name(name: str) -> str:
    """The name of `name`'s mirror image: left and right swapped ("turn_left" -> "turn_right", "FL_foot" ->
    "FR_foot"); a name on the centre line ("head_touch") is its own."""
    swaps = {"left": "right", "right": "left", "FL": "FR", "FR": "FL", "RL": "RR", "RR": "RL"}
    return "_".join(swaps.get(part, part) for part in name.split("_"))


def _name_permutation(term: str, names: tuple[str, ...]) -> np.ndarray:
    """Index of each of `names`' mirror images in `names`; ValueError if one has none there."""
    where = {n: i for i, n in enumerate(names)}
    missing = [n for n in names if mirror_name(n) not in where]
    if missing:
        raise ValueError(f"observation term '{term}': {', '.join(missing)} has no mirror image "
                         f"({', '.join(mirror_name(n) for n in missing)}) among {', '.join(names)}")
    return np.array([where[mirror_name(n)] for n in names], dtype=np.int64)


def term_reflections(task) -> dict[str, np.ndarray]:
    """The reflection of each PERMUTED term as `task` (a TaskConfig) configures it: for each entry, the entry
    its mirror image reads (signs stay +1). The camera's columns reverse (a site on the centre line, looking
    forward: its image is row-major, height x width); a behaviour and a touch sensor swap with their left/right
    counterparts."""
    out, used, cam = {}, set(task.observations), task.sensors.camera
    if "behaviour" in used:
        out["behaviour"] = _name_permutation("behaviour", tuple(task.behaviours))
    if "touch" in used:
        out["touch"] = _name_permutation("touch", tuple(task.sensors.touch))
    if "obstacle_map" in used:  # x outer, y inner, y symmetric: the columns reverse
        rows, cols = task.arena.map_shape()
        out["obstacle_map"] = (np.arange(rows)[:, None] * cols + np.arange(cols)[::-1][None, :]).reshape(-1)
    if "camera" in used and cam is not None:
        out["camera"] = (np.arange(cam.height)[:, None] * cam.width
                         + np.arange(cam.width)[::-1][None, :]).reshape(-1)
    return out


def mirror_map(layout: list, joint_index: np.ndarray, joint_sign: np.ndarray,
               history_terms: tuple[str, ...] = (), permuted: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The left-right reflection of a flat observation with `layout` ((name, start, size) list), as
    (index, sign) arrays of shape (obs_dim,): the mirrored observation is `sign * obs[..., index]`.

    `joint_index`/`joint_sign` are the robot's joint mirror (RobotSpec.joint_mirror); `history_terms` the
    terms each `history` frame holds (task.observation_history.terms); `permuted` the PERMUTED terms'
    reflections (`term_reflections(task)`). Raises ValueError naming a term that has no reflection.
    """
    permuted = permuted or {}
    dim = sum(int(k) for _, _, k in layout)
    index, sign = np.arange(dim), np.ones(dim)
    for name, start, size in layout:
        start, size = int(start), int(size)
        if name in JOINT_TERMS:
            index[start:start + size] = start + joint_index
            sign[start:start + size] = joint_sign
        elif name in permuted and len(permuted[name]) == size:
            index[start:start + size] = start + np.asarray(permuted[name])
        elif name in MIRROR_SIGNS and len(MIRROR_SIGNS[name]) == size:
            sign[start:start + size] = MIRROR_SIGNS[name]
        elif name != "history":
            raise ValueError(f"observation term '{name}' has no left-right reflection")
    history = [(int(start), int(size)) for name, start, size in layout if name == "history"]
    if history:  # a frame holds the history terms' entries in observation order: reflect each frame as those
        (start, size), src = history[0], np.asarray(term_indices(layout, history_terms), dtype=np.int64)
        where = {int(i): j for j, i in enumerate(src)}
        if not len(src) or size % len(src):
            raise ValueError(f"the history term ({size} values) does not hold whole frames of {list(history_terms)}")
        if any(int(index[i]) not in where for i in src):
            raise ValueError(f"the history terms {list(history_terms)} are not closed under the reflection")
        frame_index = np.array([where[int(index[i])] for i in src])
        for first in range(start, start + size, len(src)):
            index[first:first + len(src)] = first + frame_index
            sign[first:first + len(src)] = sign[src]
    return index, sign
