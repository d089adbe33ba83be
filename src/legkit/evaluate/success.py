"""Time to learn: the periodic evaluations of a run (RUN/evaluations.csv) and the first step meeting the task's bar.

`legkit.evaluate.best.BestModel` evaluates the policy every `run.best_every` steps and appends one row per
evaluation to RUN/evaluations.csv: the step, the wall-clock seconds of training so far, and the metrics of
`legkit.evaluate.metrics`. The task's `success` bar (legkit.tasks.config.SuccessBar; go2-walk: mean forward
velocity >= 0.5 m/s with >= 95% survival) met for the first time gives the run's "time to walk", in steps and
seconds. `legkit tune` minimizes it and `legkit report` aggregates it over seeds.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from legkit.tasks.config import SuccessBar

EVALUATIONS = "evaluations.csv"
COLUMNS = ("step", "wall_time_s", "mean_return", "survival_rate", "mean_forward_velocity", "velocity_tracking_rms",
           "mean_base_height")
"""Columns of RUN/evaluations.csv, in order."""
OPTIONAL_COLUMNS = ("collisions_per_episode", "stalled_time_share")
"""Further columns, after COLUMNS, when the first evaluation of the run has them: collisions only in a task with an
arena; the stall share where an episode is long enough to judge one."""


@dataclass(frozen=True)
class TimeToSuccess:
    """When a run first met its task's success bar; `step` None: never, within `evaluated_to` steps."""

    step: int | None
    wall_time_s: float | None
    evaluated_to: int
    """The last step evaluated (0 when there was no evaluation)."""


def append_evaluation(run: Path, step: int, wall_time_s: float, metrics: dict) -> None:
    """Add one evaluation's row to RUN/evaluations.csv (written with its header when new)."""
    path = run / EVALUATIONS
    header = _header(path)
    new = header is None
    if new:  # the columns are fixed by the first row: a resumed run keeps the file's own
        header = [*COLUMNS, *(k for k in OPTIONAL_COLUMNS if metrics.get(k) is not None)]
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerow([step, f"{wall_time_s:.1f}"] + [_cell(metrics.get(k)) for k in header[2:]])


def _header(path: Path) -> list[str] | None:
    """The column names of an existing RUN/evaluations.csv (None: no file, or an empty one)."""
    if not path.exists():
        return None
    with open(path, newline="") as f:
        first = next(csv.reader(f), None)
    return first or None


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(float(value))


def read_evaluations(run: Path) -> list[dict]:
    """The rows of RUN/evaluations.csv in step order ([] without the file): numbers, None where empty."""
    path = run / EVALUATIONS
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()
                             if k is not None})  # cells beyond the header (none written so) are dropped
            except ValueError:
                continue  # a row cut short by a killed process
    for r in rows:
        r["step"] = int(r["step"])
    return sorted(rows, key=lambda r: r["step"])


def time_to_success(rows: list[dict], bar: SuccessBar) -> TimeToSuccess:
    """The first evaluation in `rows` (read_evaluations) whose metrics meet `bar`."""
    for r in rows:
        if bar.met(r):
            return TimeToSuccess(r["step"], r.get("wall_time_s"), rows[-1]["step"])
    return TimeToSuccess(None, None, rows[-1]["step"] if rows else 0)
