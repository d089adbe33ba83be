"""Reading what a run folder logged: its JSON files, episodes.csv and TensorBoard scalars (plots, reports and
`legkit diagnose` read runs through these)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from legkit import LegkitError


def read_json(path: Path) -> dict | None:
    """A JSON file of a run; None when it does not exist, a LegkitError when it is not valid JSON."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LegkitError(f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_episodes(path: Path) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """episodes.csv as float columns (empty or unreadable cells NaN; rows cut short skipped), and the cells
    that hold an explicit non-finite number ('column at step N'); (None, []) without the file or rows."""
    if not path.exists():
        return None, []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return None, []
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    if not body:
        return None, []
    cols: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for j, name in enumerate(header):
        values = np.full(len(body), np.nan)
        for i, r in enumerate(body):
            cell = r[j].strip()
            try:
                values[i] = float(cell) if cell else np.nan
            except ValueError:
                continue
            if cell and not math.isfinite(values[i]):
                bad.append(f"{name} at step {body[i][0]}")
        cols[name] = values
    return cols, bad


def read_scalars(tb: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of every TensorBoard event file under `tb` (a resumed run appends to the same folder):
    tag -> (steps, values)."""
    if not tb.is_dir() or not any(tb.rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    for folder in sorted({p.parent for p in tb.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            merged.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return {tag: (np.array(sorted(v)), np.array([v[k] for k in sorted(v)], dtype=float)) for tag, v in merged.items()}
