"""PNG training curves of one or more runs (matplotlib, Agg, no display): curves of several runs overlay.

    training.png     episode reward, episode length and fall rate over steps
    reward_terms.png every reward term's episode sum over steps
    curriculum.png   curriculum stage (and target, success rate) over steps, when the task has one
    evaluation.png   evaluation metrics over steps (of every checkpoint with --eval-episodes, else the
                     periodic evaluation logged during training), and the final eval.json

Sources, all in the run folder: episodes.csv (one row per episode), tb/ (TensorBoard scalars),
eval.json, validate.json, and evaluations of the checkpoints that `evaluate_checkpoints` runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from legkit import EVAL_SEED
from legkit.config import load_yaml
from legkit.train.logs import read_episodes, read_json, read_scalars
from legkit.train.runs import CONFIG, META, PRETRAINED_PREFIX, checkpoints, find_policy, resolve_run

EPISODE_COLUMNS = ("step", "reward", "length", "time", "terminated", "mean_height", "mean_action", "curriculum_stage")
"""Columns of episodes.csv that are not reward terms."""
EVAL_METRICS = (
    ("mean_forward_velocity", "forward velocity (m/s)"),
    ("velocity_tracking_rms", "velocity tracking RMS error (m/s)"),
    ("survival_rate", "survival rate"),
    ("mean_base_height", "base height (m)"),
    ("mean_return", "mean episode return"),
)
ARENA_EVAL_METRICS = (("collisions_per_episode", "collisions per episode"),)
"""Drawn beside EVAL_METRICS when a run has them (a task with an arena)."""


@dataclass
class RunData:
    """Everything the plots and the report read from one run folder (missing pieces are None/empty)."""

    name: str
    folder: Path
    config: dict
    meta: dict
    episodes: dict[str, np.ndarray] | None
    """episodes.csv as columns."""
    terms: list[str]
    """Reward term names, in the task's order."""
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]
    """TensorBoard scalars: tag -> (steps, values)."""
    eval: dict | None
    validation: dict | None
    checkpoint_evals: list[dict] = field(default_factory=list)
    """[{"step": int, "metrics": {...}}] from evaluate_checkpoints, oldest first."""

    @property
    def control_dt(self) -> float:
        task = self.config.get("task", {})
        physics = task.get("physics", {})
        if "control_dt" in self.meta:
            return float(self.meta["control_dt"])
        return float(physics.get("timestep", 0.005)) * int(task.get("decimation", 4))


def load_run(spec: str | Path) -> RunData:
    """Read a run folder (or pretrained:NAME) for plotting and reporting."""
    folder = resolve_run(str(spec))
    config = load_yaml(str(folder / CONFIG))
    meta = read_json(folder / META) or {}
    episodes = read_episodes(folder / "episodes.csv")[0]
    rewards = list((config.get("task") or {}).get("rewards") or {})
    if episodes is not None:
        terms = [n for n in rewards if n in episodes] or [n for n in episodes if n not in EPISODE_COLUMNS]
    else:
        terms = rewards
    name = str(spec) if str(spec).startswith(PRETRAINED_PREFIX) else folder.name
    return RunData(name=name, folder=folder, config=config, meta=meta, episodes=episodes, terms=terms,
                   scalars=read_scalars(folder / "tb"), eval=read_json(folder / "eval.json"),
                   validation=read_json(folder / "validate.json"))


def evaluate_checkpoints(run: RunData, episodes: int, seed: int = EVAL_SEED, progress=None) -> list[dict]:
    """Evaluate every checkpoint of `run` with `episodes` deterministic episodes; store and return the results."""
    from legkit.evaluate import evaluate
    from legkit.media.video import one_torch_thread

    out = []
    for ckpt in checkpoints(run.folder):
        policy = find_policy(run.folder, ckpt.name)
        if progress is not None:
            progress(f"evaluating {run.name} {ckpt.name} ({episodes} episodes)")
        with one_torch_thread():
            result = evaluate(policy, episodes, seed=seed)
        out.append({"step": int(policy.step if policy.step is not None else int(ckpt.name.split("_")[1])),
                    "metrics": result["metrics"]})
    run.checkpoint_evals = out
    return out


# -- plotting -------------------------------------------------------------------------------------

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _figure(rows: int, cols: int, width: float = 11.0, row_height: float = 3.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, row_height * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _steps_axis(ax, label: bool = True) -> None:
    from matplotlib.ticker import FuncFormatter

    def fmt(x, _pos):
        return f"{x / 1e6:g}M" if abs(x) >= 1e6 else (f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}")

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    if label:
        ax.set_xlabel("environment steps")
    ax.grid(alpha=0.3)


def _per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `values` for each distinct step (episodes finished in the same rollout), NaNs ignored."""
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    if not len(steps):
        return steps, values
    uniq, inv = np.unique(steps, return_inverse=True)
    return uniq, np.bincount(inv, weights=values) / np.bincount(inv)


def _smooth(y: np.ndarray, frac: float = 0.03) -> np.ndarray:
    """Centered moving average over ~frac of the points (edges use what they have)."""
    k = max(1, int(len(y) * frac)) | 1
    if k == 1 or len(y) < 3:
        return y
    kernel = np.ones(k)
    num = np.convolve(y, kernel, mode="same")
    den = np.convolve(np.ones_like(y), kernel, mode="same")
    return num / den


def _curve(ax, x: np.ndarray, y: np.ndarray, color: str, label: str | None) -> None:
    if len(x) == 0:
        return
    if len(x) > 5:
        ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(x, _smooth(y), color=color, linewidth=1.8, label=label)
    else:
        ax.plot(x, y, color=color, marker="o", linewidth=1.8, label=label)


def _episode_series(run: RunData, column: str, tb_tag: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, per-rollout mean) of an episodes.csv column, else of a TensorBoard tag."""
    if run.episodes is not None and column in run.episodes:
        return _per_step(run.episodes["step"], run.episodes[column])
    if tb_tag and tb_tag in run.scalars:
        return run.scalars[tb_tag]
    return np.array([]), np.array([])


def _finish(fig, axes, runs: list[RunData], path: Path, title: str) -> Path:
    fig.suptitle(title)
    if len(runs) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(runs)), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_training(runs: list[RunData], path: Path) -> Path | None:
    """Episode reward, episode length (s) and fall rate over steps."""
    if not any(r.episodes is not None or "rollout/ep_rew_mean" in r.scalars for r in runs):
        return None
    fig, axes = _figure(1, 3, row_height=3.4)
    for i, run in enumerate(runs):
        c, label = COLORS[i % len(COLORS)], run.name
        x, y = _episode_series(run, "reward", "rollout/ep_rew_mean")
        _curve(axes[0, 0], x, y, c, label)
        x, y = _episode_series(run, "length", "rollout/ep_len_mean")
        _curve(axes[0, 1], x, y * run.control_dt, c, label)
        x, y = _episode_series(run, "terminated", "episode/fall_rate")
        _curve(axes[0, 2], x, y, c, label)
    for ax, title in zip(axes[0], ("episode reward", "episode length (s)", "fall rate (episodes ending in a fall)")):
        ax.set_title(title, fontsize=10)
        _steps_axis(ax)
    return _finish(fig, axes, runs, path, "Training")


def plot_reward_terms(runs: list[RunData], path: Path) -> Path | None:
    """Every reward term's episode sum over steps, one panel per term (the union over runs)."""
    terms: list[str] = []
    for run in runs:
        terms += [t for t in run.terms if t not in terms]
    terms = [t for t in terms if any(len(_episode_series(r, t, f"reward/{t}")[0]) for r in runs)]
    if not terms:
        return None
    cols = 4
    rows = -(-len(terms) // cols)
    fig, axes = _figure(rows, cols, width=12, row_height=2.4)
    for k, term in enumerate(terms):
        ax = axes.flat[k]
        for i, run in enumerate(runs):
            x, y = _episode_series(run, term, f"reward/{term}")
            _curve(ax, x, y, COLORS[i % len(COLORS)], run.name)
        ax.set_title(term, fontsize=10)
        _steps_axis(ax, label=k >= len(terms) - cols)
    for ax in axes.flat[len(terms):]:
        ax.set_visible(False)
    return _finish(fig, axes, runs, path, "Reward terms (episode sums)")


def plot_curriculum(runs: list[RunData], path: Path) -> Path | None:
    """Curriculum stage, target and success rate over steps, for runs whose task has a curriculum."""
    tags = []
    for run in runs:
        tags += [t for t in sorted(run.scalars) if t.startswith("curriculum/") and t not in tags]
    has_csv = [r for r in runs if r.episodes is not None and np.isfinite(r.episodes.get("curriculum_stage",
                                                                                          np.array([np.nan]))).any()]
    if not tags and not has_csv:
        return None
    tags = tags or ["curriculum/stage"]
    fig, axes = _figure(1, len(tags), width=min(12, 4 * len(tags)), row_height=3.2)
    for k, tag in enumerate(tags):
        ax = axes[0, k]
        for i, run in enumerate(runs):
            if tag in run.scalars:
                x, y = run.scalars[tag]
            elif tag == "curriculum/stage":
                x, y = _episode_series(run, "curriculum_stage")
            else:
                continue
            ax.step(x, y, where="post", color=COLORS[i % len(COLORS)], linewidth=1.8, label=run.name)
        ax.set_title(tag.split("/", 1)[1].replace("_", " "), fontsize=10)
        _steps_axis(ax)
    return _finish(fig, axes, runs, path, "Curriculum")


def eval_points(run: RunData, key: str) -> list[tuple[float, float]]:
    """(step, value) of metric `key` over training: the checkpoints evaluated by `evaluate_checkpoints`,
    or else the periodic best-model evaluation that training logged to TensorBoard (`eval/<key>`)."""
    if run.checkpoint_evals:
        pts = [(e["step"], e["metrics"].get(key)) for e in run.checkpoint_evals]
        return [(s, v) for s, v in pts if v is not None]
    if f"eval/{key}" in run.scalars:
        steps, values = run.scalars[f"eval/{key}"]
        return list(zip(steps.tolist(), values.tolist()))
    return []


def plot_evaluation(runs: list[RunData], path: Path) -> Path | None:
    """Evaluation metrics over steps (checkpoints, or the periodic evaluation); the final eval.json as a star."""
    if not any(r.checkpoint_evals or (r.eval and r.eval.get("step") is not None)
               or any(t.startswith("eval/") for t in r.scalars) for r in runs):
        return None
    metrics = EVAL_METRICS + tuple(m for m in ARENA_EVAL_METRICS if any(
        eval_points(r, m[0]) or (r.eval or {}).get("metrics", {}).get(m[0]) is not None for r in runs))
    fig, axes = _figure(1, len(metrics), width=3 * len(metrics), row_height=3.2)
    for k, (key, title) in enumerate(metrics):
        ax = axes[0, k]
        for i, run in enumerate(runs):
            c = COLORS[i % len(COLORS)]
            pts = eval_points(run, key)
            if pts:
                ax.plot(*zip(*pts), color=c, marker="o", linewidth=1.8, label=run.name)
            if run.eval and run.eval.get("step") is not None and run.eval.get("metrics", {}).get(key) is not None:
                ax.plot([run.eval["step"]], [run.eval["metrics"][key]], color=c, marker="*", markersize=13,
                        linestyle="none", label=None if pts else run.name)
            if key == "mean_forward_velocity":
                cmd = [(e["step"], e["metrics"].get("mean_command_velocity")) for e in run.checkpoint_evals]
                cmd = [(s, v) for s, v in cmd if v is not None]
                if cmd:
                    ax.plot(*zip(*cmd), color=c, linestyle="--", linewidth=1.0, alpha=0.7)
        if key == "survival_rate":
            ax.set_ylim(-0.05, 1.05)
        ax.set_title(title + (" (dashed: command)" if key == "mean_forward_velocity" else ""), fontsize=10)
        _steps_axis(ax)
    return _finish(fig, axes, runs, path, "Evaluation (deterministic; lines: checkpoints or the periodic evaluation; "
                   "stars: final eval.json)")


def plot_runs(runs: list[RunData], folder: Path) -> dict[str, Path]:
    """Write every plot that the runs have data for into `folder`; returns name -> PNG path."""
    out = {}
    for name, fn in (("training", plot_training), ("reward_terms", plot_reward_terms),
                     ("curriculum", plot_curriculum), ("evaluation", plot_evaluation)):
        path = fn(runs, folder / f"{name}.png")
        if path is not None:
            out[name] = path
    return out


# -- seed groups: learning curves with bands ---------------------------------------------------------

BAND_POINTS = 80
"""Points of the common step grid that every seed's curve is resampled onto."""


def _on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """`y(x)` resampled at `grid` (NaN outside x's range)."""
    out = np.full(len(grid), np.nan)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) == 0:
        return out
    inside = (grid >= x[0]) & (grid <= x[-1])
    out[inside] = np.interp(grid[inside], x, y)
    return out


def plot_seed_bands(groups: list, path: Path) -> Path | None:
    """Episode reward and the periodic evaluation's forward velocity, tracking error and survival over steps, for
    each seed group (legkit.evaluate.aggregate.SeedGroup): the mean over seeds as a line, a band of +-1 standard
    deviation across seeds, each seed as a thin line. Curves are resampled onto one step grid per group; the mean
    and the band stop where the shortest seed's curve ends."""
    from legkit.evaluate.success import read_evaluations

    panels = (("reward", "episode reward (smoothed)"), ("mean_forward_velocity", "forward velocity (m/s), periodic eval"),
              ("velocity_tracking_rms", "tracking RMS (m/s), periodic eval"), ("survival_rate", "survival, periodic eval"))
    fig, axes = _figure(1, len(panels), width=16, row_height=3.4)
    drawn = False
    for i, group in enumerate(groups):
        c = COLORS[i % len(COLORS)]
        series: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k, _ in panels}
        for run in group.runs:
            episodes = read_episodes(run.folder / "episodes.csv")[0]
            if episodes is not None and "reward" in episodes:
                x, y = _per_step(episodes["step"], episodes["reward"])
                series["reward"].append((x, _smooth(y)))
            rows = read_evaluations(run.folder)
            for key, _ in panels[1:]:
                pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                if pts:
                    series[key].append(tuple(np.array(v, dtype=float) for v in zip(*pts)))
        for k, (key, title) in enumerate(panels):
            ax = axes[0, k]
            curves = [s for s in series[key] if len(s[0])]
            if not curves:
                continue
            drawn = True
            grid = np.linspace(0.0, max(float(x[-1]) for x, _ in curves), BAND_POINTS)
            ys = np.array([_on_grid(x, y, grid) for x, y in curves])
            for y in ys:
                ax.plot(grid, y, color=c, alpha=0.3, linewidth=0.7)
            with warnings.catch_warnings():  # a grid point no seed has reached yet: NaN, no warning
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(ys, axis=0)
                std = np.nanstd(ys, axis=0, ddof=1) if len(ys) > 1 else np.zeros(len(grid))
            # Mean and band only where every seed has data: past a seed's end (a shorter run) they would jump.
            every = np.isfinite(ys).all(axis=0)
            mean, std = np.where(every, mean, np.nan), np.where(every, std, np.nan)
            ax.plot(grid, mean, color=c, linewidth=2.0, label=f"{group.name} ({len(curves)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, color=c, alpha=0.18, linewidth=0)
            ax.set_title(title, fontsize=10)
            if key == "survival_rate":
                ax.set_ylim(-0.05, 1.05)
            _steps_axis(ax)
    if not drawn:
        return None
    fig.suptitle("Learning curves over seeds (line: mean; band: +-1 std across seeds, both while every seed has "
                 "data; thin: each seed)")
    handles, labels = axes.flat[0].get_legend_handles_labels() if axes.flat[0].lines else \
        axes.flat[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(groups)), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

