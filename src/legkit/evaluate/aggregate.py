"""Statistics over seeds: one run per seed in a common parent folder (`legkit train TASK --seeds 0,1,2`).

One run of one seed says little in RL. For every final evaluation metric (each run's eval.json) and for the
time to reach the task's success bar (legkit.evaluate.success), `summarize` gives, over the seeds:

- the mean and the sample standard deviation (ddof 1);
- a 95% percentile-bootstrap confidence interval of the mean: the 2.5th and 97.5th percentiles of the means
  of `resamples` resamples of the seeds with replacement (fixed seed: the same numbers every time). With
  3-5 seeds it is rough and tends to be narrow; it is what can be said, not more;
- the interquartile mean (IQM, as in rliable): the mean of the values left after dropping the lowest and the
  highest floor(n / 4); with fewer than 4 seeds nothing is dropped and it equals the mean.

A seed that never met the success bar has no time to it: its time is left out of the statistics and the
record counts it ("2 of 3 reached"), never replaced by a made-up number.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from legkit import LegkitError
from legkit.config import from_dict, load_yaml
from legkit.evaluate.success import read_evaluations, time_to_success
from legkit.tasks.config import SuccessBar
from legkit.train.seeds import SEEDS_FILE
METRICS = (
    ("mean_forward_velocity", "forward velocity (m/s)"),
    ("velocity_tracking_rms", "tracking RMS (m/s)"),
    ("survival_rate", "survival"),
    ("mean_base_height", "base height (m)"),
    ("energy_per_metre_J", "energy (J/m)"),
    ("mean_return", "mean return"),
)
"""Final eval.json metrics aggregated over seeds: key and label."""
TIME_KEYS = (("time_to_success_steps", "time to success (steps)"), ("time_to_success_s", "time to success (s)"))


@dataclass(frozen=True)
class Stats:
    """Summary of one quantity over seeds (NaN where it cannot be computed, e.g. std of one value)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    iqm: float


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of `values` without the lowest and the highest floor(n / 4)."""
    v = np.sort(np.asarray(values, dtype=float))
    k = len(v) // 4
    return float(np.mean(v[k:len(v) - k]))


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `values`."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def summarize(values, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Stats:
    """Stats of the finite numbers in `values` (None and NaN are left out)."""
    v = np.array([float(x) for x in values if x is not None and np.isfinite(float(x))])
    if len(v) == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan)
    std = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
    lo, hi = bootstrap_ci(v, confidence, resamples, seed)
    return Stats(len(v), float(np.mean(v)), std, lo, hi, interquartile_mean(v))


@dataclass
class SeedRun:
    seed: int | None
    folder: Path
    metrics: dict
    """eval.json's metrics ({} without one)."""
    time_steps: int | None
    time_s: float | None
    evaluated_to: int


@dataclass
class SeedGroup:
    """The runs of one parent folder, one per seed."""

    name: str
    folder: Path
    task: str | None
    bar: str
    runs: list[SeedRun]

    def stats(self) -> dict[str, Stats]:
        """Stats of every METRICS key and of the time to success (steps and seconds), over the runs."""
        out = {k: summarize([r.metrics.get(k) for r in self.runs]) for k, _ in METRICS}
        out["time_to_success_steps"] = summarize([r.time_steps for r in self.runs])
        out["time_to_success_s"] = summarize([r.time_s for r in self.runs])
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "folder": str(self.folder), "task": self.task, "success_bar": self.bar,
                "seeds": [{"seed": r.seed, "run": str(r.folder), "metrics": r.metrics,
                           "time_to_success_steps": r.time_steps, "time_to_success_s": r.time_s,
                           "evaluated_to": r.evaluated_to} for r in self.runs],
                "stats": {k: asdict(s) for k, s in self.stats().items()}}


def is_seed_group(folder: Path) -> bool:
    """Whether `folder` is the parent folder of a `--seeds` training (it holds seeds.json)."""
    return (Path(folder) / SEEDS_FILE).is_file()


def _bar(config: dict, run: Path) -> SuccessBar:
    """The success bar a run's config.yaml recorded (none: a run from before task.success existed)."""
    return from_dict(SuccessBar, (config.get("task") or {}).get("success") or {}, f"{run}: task.success")


def load_seed_group(folder: Path) -> SeedGroup:
    """Read the runs of a seed group (each child folder with a meta.json); a run without eval.json counts with
    no final metrics (it is still listed), a run without evaluations.csv with no time to success."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LegkitError(f"'{folder}' is not a folder")
    info = json.loads((folder / SEEDS_FILE).read_text()) if is_seed_group(folder) else {}
    children = sorted(p for p in folder.iterdir() if (p / "meta.json").is_file())
    if not children:
        raise LegkitError(f"'{folder}' holds no runs (folders with a meta.json); give the parent folder that "
                          "legkit train --seeds made")
    runs, bars = [], set()
    for child in children:
        meta = json.loads((child / "meta.json").read_text())
        config = load_yaml(str(child / "config.yaml")) if (child / "config.yaml").exists() else {}
        bar = _bar(config, child)
        bars.add(bar.describe())
        ev = child / "eval.json"
        metrics = json.loads(ev.read_text()).get("metrics", {}) if ev.exists() else {}
        t = time_to_success(read_evaluations(child), bar)
        runs.append(SeedRun(meta.get("seed"), child, metrics, t.step, t.wall_time_s, t.evaluated_to))
    runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.folder)))
    return SeedGroup(name=folder.name, folder=folder, task=info.get("task"), bar=" / ".join(sorted(bars)), runs=runs)


def _num(value: float, digits: int) -> str:
    return "—" if not np.isfinite(value) else f"{value:,.{digits}f}"


def format_stats(s: Stats, digits: int = 3) -> list[str]:
    """Display cells: mean, std, 95% CI, IQM, n."""
    ci = "—" if not np.isfinite(s.ci_low) else f"[{_num(s.ci_low, digits)}, {_num(s.ci_high, digits)}]"
    return [_num(s.mean, digits), _num(s.std, digits), ci, _num(s.iqm, digits), str(s.n)]


STATS_COLUMNS = ("quantity", "mean", "std", "95% CI", "IQM", "n")


def stats_rows(group: SeedGroup) -> list[list[str]]:
    """The aggregate table of a group: one row per quantity, STATS_COLUMNS cells."""
    stats = group.stats()
    rows = []
    for key, label in METRICS:
        digits = 0 if key == "energy_per_metre_J" else 1 if key == "mean_return" else 3
        rows.append([label] + format_stats(stats[key], digits))
    reached = stats["time_to_success_steps"].n
    for key, label in TIME_KEYS:
        cells = format_stats(stats[key], 0)
        cells[-1] = f"{reached} of {len(group.runs)} reached"
        rows.append([label] + cells)
    return rows


def format_group(group: SeedGroup) -> str:
    """A plain-text table of the group's statistics (printed by `legkit train --seeds` and `legkit report`)."""
    rows = [list(STATS_COLUMNS)] + stats_rows(group)
    widths = [max(len(r[i]) for r in rows) for i in range(len(STATS_COLUMNS))]
    head = (f"{group.name}: {len(group.runs)} seeds ({', '.join(str(r.seed) for r in group.runs)}), "
            f"success bar: {group.bar}")
    lines = [head] + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      for r in rows]
    return "\n".join(lines)
