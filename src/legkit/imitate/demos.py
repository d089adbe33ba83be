"""Demonstrations for behaviour cloning: the `demos.npz` format that the collect stage writes and BC reads.

One file, plain numpy arrays (loadable with `np.load(path, allow_pickle=False)`), T rows in all:

    obs      (T, obs_dim) float32  raw observations as the env gives them (not normalized)
    action   (T, act_dim) float32  the demonstrator's actions in the env's action space [-1, 1]
    gait     (T,)         int16    gait id: an index into meta["gaits"]
    episode  (T,)         int32    episode index; the rows of one episode are contiguous, in time order
    meta     ()           str      a JSON object:
        gaits        [name, ...]                 gait names, indexed by `gait`
        obs_layout   [[name, start, size], ...]  what each observation entry is (the env's obs_layout)
        action_scale float                       rad of joint offset per unit action
        control_dt   float                       s between rows of an episode
        task         str                         the task the demonstrations were collected in
        noise        {...}                       the noise the collector added (free-form, recorded as given)
    Further meta keys are kept as they are.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from legkit import LegkitError

ARRAYS = {"obs": (2, np.float32), "action": (2, np.float32), "gait": (1, np.int16), "episode": (1, np.int32)}
"""The arrays of demos.npz: name -> (ndim, dtype)."""
META_KEYS = {"gaits": list, "obs_layout": list, "action_scale": (int, float), "control_dt": (int, float),
             "task": str, "noise": dict}
"""The keys that meta must hold, with their JSON types."""
ACTION_TOLERANCE = 1e-6
"""How far outside [-1, 1] an action may lie (float rounding) before the file is rejected."""


@dataclass(frozen=True)
class Demos:
    """Demonstrations as in demos.npz (see the module docstring); `meta` is the decoded JSON object."""

    obs: np.ndarray
    action: np.ndarray
    gait: np.ndarray
    episode: np.ndarray
    meta: dict

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.action.shape[1])

    @property
    def gaits(self) -> list[str]:
        return [str(g) for g in self.meta["gaits"]]

    def episodes(self) -> list[tuple[int, int, int]]:
        """(episode id, first row, row after the last) of every episode, in file order."""
        if len(self.episode) == 0:
            return []
        starts = np.concatenate([[0], np.flatnonzero(np.diff(self.episode) != 0) + 1])
        stops = np.concatenate([starts[1:], [len(self.episode)]])
        return [(int(self.episode[a]), int(a), int(b)) for a, b in zip(starts, stops)]

    def episode_gaits(self) -> dict[int, int]:
        """The gait of each episode (its most frequent gait id when it has several)."""
        return {e: int(np.bincount(self.gait[a:b]).argmax()) for e, a, b in self.episodes()}

    def select(self, episode_ids) -> Demos:
        """The demonstrations of the episodes `episode_ids` only (rows in file order), same meta."""
        rows = np.isin(self.episode, np.asarray(list(episode_ids), dtype=np.int64))
        return Demos(self.obs[rows], self.action[rows], self.gait[rows], self.episode[rows], self.meta)


def _where(path: Path | str | None) -> str:
    return f"demos file '{path}'" if path is not None else "demonstrations"


def check_meta(meta: dict, obs_dim: int, path: Path | str | None = None) -> None:
    """Raise a LegkitError naming the first problem with `meta` (see the module docstring)."""
    where = _where(path)
    if not isinstance(meta, dict):
        raise LegkitError(f"{where}: meta must be a JSON object, got {type(meta).__name__}")
    for key, kind in META_KEYS.items():
        if key not in meta:
            raise LegkitError(f"{where}: meta has no '{key}'; it needs {', '.join(META_KEYS)}")
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            want = kind.__name__ if isinstance(kind, type) else "a number"
            raise LegkitError(f"{where}: meta '{key}' must be {want}, got {value!r}")
    gaits = meta["gaits"]
    if not gaits or not all(isinstance(g, str) and g for g in gaits) or len(set(gaits)) != len(gaits):
        raise LegkitError(f"{where}: meta 'gaits' must be a non-empty list of distinct names, got {gaits!r}")
    if not meta["action_scale"] > 0 or not meta["control_dt"] > 0:
        raise LegkitError(f"{where}: meta 'action_scale' and 'control_dt' must be > 0, got "
                          f"{meta['action_scale']!r} and {meta['control_dt']!r}")
    end = 0
    for entry in meta["obs_layout"]:
        ok = (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str)
              and all(isinstance(x, int) and not isinstance(x, bool) for x in entry[1:]))
        if not ok or entry[1] != end or entry[2] < 1:
            raise LegkitError(f"{where}: meta 'obs_layout' entry {entry!r} is not [name, start, size] continuing "
                              f"from entry {end} with size >= 1")
        end += entry[2]
    if end != obs_dim:
        raise LegkitError(f"{where}: meta 'obs_layout' covers {end} observation entries but obs has {obs_dim}")


def check_demos(demos: Demos, path: Path | str | None = None) -> None:
    """Raise a LegkitError naming the first thing wrong with `demos` (shapes, dtypes, values, meta)."""
    where = _where(path)
    for name, (ndim, dtype) in ARRAYS.items():
        array = getattr(demos, name)
        if not isinstance(array, np.ndarray) or array.ndim != ndim or array.dtype != dtype:
            got = f"{array.dtype} with shape {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise LegkitError(f"{where}: '{name}' must be {np.dtype(dtype)} with {ndim} dimension(s), got {got}")
    rows = len(demos.obs)
    if rows == 0:
        raise LegkitError(f"{where}: no rows (obs is empty)")
    for name in ("action", "gait", "episode"):
        if len(getattr(demos, name)) != rows:
            raise LegkitError(f"{where}: '{name}' has {len(getattr(demos, name))} rows but obs has {rows}")
    if demos.obs.shape[1] < 1 or demos.action.shape[1] < 1:
        raise LegkitError(f"{where}: obs and action need at least one column, got {demos.obs.shape[1]} and "
                          f"{demos.action.shape[1]}")
    for name in ("obs", "action"):
        bad = np.flatnonzero(~np.isfinite(getattr(demos, name)).all(axis=1))
        if len(bad):
            raise LegkitError(f"{where}: '{name}' has non-finite values in {len(bad)} rows (first: row {bad[0]})")
    worst = float(np.abs(demos.action).max())
    if worst > 1.0 + ACTION_TOLERANCE:
        row = int(np.abs(demos.action).max(axis=1).argmax())
        raise LegkitError(f"{where}: actions must lie in the env's action space [-1, 1], but |action| reaches "
                          f"{worst:.4g} (row {row}); divide joint offsets by action_scale and clip")
    check_meta(demos.meta, demos.obs.shape[1], path)
    n_gaits = len(demos.meta["gaits"])
    if demos.gait.min() < 0 or demos.gait.max() >= n_gaits:
        raise LegkitError(f"{where}: gait ids must be in [0, {n_gaits}) (indices into meta 'gaits'), got "
                          f"{int(demos.gait.min())}..{int(demos.gait.max())}")
    seen: dict[int, int] = {}
    for e, a, _ in demos.episodes():
        if e in seen:
            raise LegkitError(f"{where}: episode {e} has rows in two separate blocks (from row {seen[e]} and from "
                              f"row {a}): the rows of one episode must be contiguous")
        seen[e] = a


def save_demos(path: Path | str, obs, action, gait, episode, meta: dict) -> Path:
    """Check and write demonstrations to `path` (demos.npz; atomically). Floats are stored as float32, gait
    as int16 and episode as int32 (integer input that does not fit is an error). Returns the path."""
    path = Path(path)
    arrays = {"obs": np.asarray(obs), "action": np.asarray(action), "gait": np.asarray(gait),
              "episode": np.asarray(episode)}
    for name in ("gait", "episode"):
        array, dtype = arrays[name], ARRAYS[name][1]
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise LegkitError(f"{_where(path)}: '{name}' must hold integers, got {array.dtype}")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise LegkitError(f"{_where(path)}: '{name}' values must fit in {np.dtype(dtype)}")
        arrays[name] = array.astype(dtype)
    for name in ("obs", "action"):
        if not np.issubdtype(arrays[name].dtype, np.number):
            raise LegkitError(f"{_where(path)}: '{name}' must be numeric, got {arrays[name].dtype}")
        arrays[name] = arrays[name].astype(np.float32)
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise LegkitError(f"{_where(path)}: meta is not JSON-serializable ({exc})") from None
    demos = Demos(meta=json.loads(text), **arrays)
    check_demos(demos, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(text), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_demos(path: Path | str) -> Demos:
    """Read and check demos.npz at `path`; a LegkitError says what is missing or wrong."""
    path = Path(path)
    if not path.is_file():
        raise LegkitError(f"demos file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LegkitError(f"demos file '{path}' is not a readable .npz ({type(exc).__name__}: {exc})") from None
    with data:
        missing = [name for name in (*ARRAYS, "meta") if name not in data.files]
        if missing:
            raise LegkitError(f"demos file '{path}' has no {', '.join(missing)} array(s); it needs "
                              f"{', '.join((*ARRAYS, 'meta'))}")
        arrays = {}
        for name in (*ARRAYS, "meta"):
            try:
                arrays[name] = data[name]
            except ValueError as exc:  # numpy refuses pickled objects when allow_pickle=False
                raise LegkitError(f"demos file '{path}': '{name}' is not a plain array ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise LegkitError(f"demos file '{path}': '{name}' is unreadable, the file is damaged "
                                  f"({type(exc).__name__}: {exc})") from None
    meta_array = arrays.pop("meta")
    if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        raise LegkitError(f"demos file '{path}': 'meta' must be one JSON string, got {meta_array.dtype} "
                          f"with shape {meta_array.shape}")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as exc:
        raise LegkitError(f"demos file '{path}': 'meta' is not valid JSON ({exc})") from None
    demos = Demos(meta=meta, **arrays)
    check_demos(demos, path)
    return demos


def summary(demos: Demos) -> dict:
    """Sizes of `demos`: samples and episodes in all and per gait name (an episode with several gaits counts
    for each of them)."""
    per_gait = {}
    for gid, name in enumerate(demos.gaits):
        rows = demos.gait == gid
        per_gait[name] = {"samples": int(rows.sum()), "episodes": int(len(np.unique(demos.episode[rows])))}
    return {"samples": int(len(demos.obs)), "episodes": len(demos.episodes()), "obs_dim": demos.obs_dim,
            "act_dim": demos.act_dim, "task": demos.meta["task"], "control_dt": float(demos.meta["control_dt"]),
            "gaits": per_gait}
