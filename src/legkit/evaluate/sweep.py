"""Command sweep: a policy evaluated under each of a fixed list of velocity commands, held for whole episodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

import numpy as np

from legkit import EVAL_SEED, LegkitError
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import Trace, load_policy, load_run_config, rollout_model, task_validation
from legkit.tasks.config import CommandConfig, SweepBar, TaskConfig
from legkit.train.runs import Policy

SWEEP: dict[str, tuple[float, float, float]] = {
    "stand": (0.0, 0.0, 0.0),
    "forward_0.2": (0.2, 0.0, 0.0),
    "forward_0.5": (0.5, 0.0, 0.0),
    "forward_1.0": (1.0, 0.0, 0.0),
    "forward_1.5": (1.5, 0.0, 0.0),
    "forward_2.0": (2.0, 0.0, 0.0),
    "backward_0.5": (-0.5, 0.0, 0.0),
    "sideways_+0.5": (0.0, 0.5, 0.0),
    "sideways_-0.5": (0.0, -0.5, 0.0),
    "yaw_+1.0": (0.0, 0.0, 1.0),
    "yaw_-1.0": (0.0, 0.0, -1.0),
    "forward_1.0_yaw_0.5": (1.0, 0.0, 0.5),
}
"""The sweep's commands by name: (vx m/s, vy m/s (+ left), yaw rate rad/s (+ counter-clockwise)), body frame."""

_HELD = ("lin_vel_x", "lin_vel_y", "ang_vel_yaw", "resample_seconds", "standing_share", "single_axis_share",
         "slow_share", "slow_ranges", "heading", "heading_stiffness")
"""The CommandConfig fields that `fixed_command` sets; a field it does not know is an error, not ignored."""


def fixed_command(task: TaskConfig, vx: float, vy: float, yaw: float) -> TaskConfig:
    """`task` with every robot commanded (vx, vy, yaw rate) for its whole episode: no ranges, no resampling."""
    unknown = [f.name for f in fields(CommandConfig) if f.name not in _HELD]
    if unknown:
        raise LegkitError(f"fixed_command does not know the command settings {', '.join(unknown)}; "
                          "teach it to turn them off (legkit/evaluate/sweep.py) so that the sweep's commands "
                          "stay fixed")
    commands = replace(task.commands, lin_vel_x=(vx, vx), lin_vel_y=(vy, vy), ang_vel_yaw=(yaw, yaw),
                       resample_seconds=0.0, standing_share=0.0, single_axis_share=0.0,
                       slow_share=0.0, heading=False)
    # A command curriculum would set its own ranges at evaluation (its last stage): none here.
    return replace(task, commands=commands, command_curriculum=replace(task.command_curriculum, stages=()))


def tracking_metrics(t: Trace) -> dict[str, float]:
    """Measured mean sideways velocity (m/s) and yaw rate (rad/s), and the RMS tracking errors of the linear
    velocity |(vx, vy) - command| (m/s) and of the yaw rate (rad/s), over alive steps (body frame).
    The mean forward velocity is `compute_metrics`'s."""
    a = t.alive
    steps = max(int(a.sum()), 1)
    mean = lambda x: float(np.sum(x * a) / steps)  # noqa: E731
    err = t.vel - t.command
    return {
        "mean_lateral_velocity": mean(t.vel[..., 1]),
        "mean_yaw_rate": mean(t.vel[..., 2]),
        "lin_vel_tracking_rms": float(np.sqrt(mean(np.sum(err[..., :2] ** 2, axis=-1)))),
        "yaw_rate_tracking_rms": float(np.sqrt(mean(err[..., 2] ** 2))),
    }


def sweep(policy: Policy, episodes: int, sets: list[str] | None = None, seed: int = EVAL_SEED,
          commands: dict[str, tuple[float, float, float]] = SWEEP,
          progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate `policy` (its task with `sets` overrides) for `episodes` episodes under each command.

    Returns {"task", "policy", "checkpoint", "step", "seed", "overrides", "commands": [{"name", "command":
    [vx, vy, yaw], "metrics"}, ...]}, one record per command in `commands` order; the metrics are
    `compute_metrics`'s with `tracking_metrics`'s. Every command starts from the same seed.
    """
    cfg = load_run_config(policy, sets)
    model, norm = load_policy(policy)
    records = sweep_model(model, norm, cfg, episodes, seed, commands, progress, layout=policy.obs_layout)
    return {"task": cfg.task_name, "policy": policy.name, "checkpoint": policy.label, "step": policy.step,
            "seed": seed, "overrides": list(sets or []), "commands": records,
            "figures": judge(records, task_bars(cfg, sets))}


def task_bars(cfg, sets: list[str] | None = None) -> tuple[SweepBar, ...]:
    """The figures a sweep of a run of `cfg` is marked against: like validate's suite, the task's today
    (`task_validation`), not the run's saved ones."""
    return task_validation(cfg, sets).sweep_bars


def judge(records: list[dict], bars: tuple[SweepBar, ...]) -> dict:
    """Mark each record against the task's figures (task.validation.sweep_bars): every record of a command that
    has bars gets "figures": [{"metric", "low", "high", "value", "met"}, ...]. Returns {"met", "of", "missed"}:
    how many bars hold, of how many, and each missed one in words. A bar naming a command the sweep did not run
    or a metric it does not measure is an error, never skipped."""
    by_name = {r["name"]: r for r in records}
    missed, met = [], 0
    for bar in bars:
        rec = by_name.get(bar.command)
        if rec is None:
            raise LegkitError(f"task.validation.sweep_bars: command '{bar.command}' is not in the sweep; valid: "
                              f"{', '.join(by_name)}")
        if bar.metric not in rec["metrics"]:
            raise LegkitError(f"task.validation.sweep_bars: metric '{bar.metric}' is not measured; valid: "
                              f"{', '.join(sorted(rec['metrics']))}")
        value = rec["metrics"][bar.metric]
        ok = value is not None and (bar.low is None or value >= bar.low) and (bar.high is None or value <= bar.high)
        rec.setdefault("figures", []).append({"metric": bar.metric, "low": bar.low, "high": bar.high,
                                               "value": value, "met": bool(ok)})
        met += ok
        if not ok:
            shown = "undefined" if value is None else f"{value:.3f}"
            want = " and ".join(w for w in (None if bar.low is None else f">= {bar.low:g}",
                                            None if bar.high is None else f"<= {bar.high:g}") if w)
            missed.append(f"{bar.command}: {bar.metric} {shown}, asked {want}")
    return {"met": met, "of": len(bars), "missed": missed}


def sweep_model(model, norm, cfg, episodes: int, seed: int = EVAL_SEED,
                commands: dict[str, tuple[float, float, float]] = SWEEP,
                progress: Callable[[str], None] | None = None, layout: list | None = None) -> list[dict]:
    """The sweep's records ({"name", "command", "metrics"} per command) of a model in memory (or a scripted
    gait: legkit.evaluate.scripted) on `cfg`'s task."""
    records = []
    for name, (vx, vy, yaw) in commands.items():
        if progress is not None:
            progress(name)
        task = fixed_command(cfg.task, vx, vy, yaw)
        trace = rollout_model(model, norm, episodes, replace(cfg, task=task), seed, layout=layout)
        records.append({"name": name, "command": [vx, vy, yaw],
                        "metrics": {**tracking_metrics(trace), **compute_metrics(trace)}})
    return records


COLUMNS = (
    ("vx", "mean_forward_velocity", "{:+.2f}"),
    ("vy", "mean_lateral_velocity", "{:+.2f}"),
    ("yaw", "mean_yaw_rate", "{:+.2f}"),
    ("lin RMS", "lin_vel_tracking_rms", "{:.3f}"),
    ("yaw RMS", "yaw_rate_tracking_rms", "{:.3f}"),
    ("survival", "survival_rate", "{:.0%}"),
    ("duty", "duty_factor", "{:.2f}"),
    ("slip", "foot_slip_speed", "{:.3f}"),
)
"""The sweep table's columns after the command: header, metric, format."""


def format_sweep(result: dict) -> str:
    """One row per command: its name, the measured mean velocities (m/s, rad/s), RMS tracking errors,
    survival, mean duty factor and foot slip speed (m/s); '-' where not defined. Where the task has figures
    (`judge`), a last column marks each command met or MISSED, and the lines under the table name what missed."""
    figures = result.get("figures") or {"of": 0}
    rows = [["command", *(h for h, _, _ in COLUMNS), *(["figures"] if figures["of"] else [])]]
    for rec in result["commands"]:
        m = rec["metrics"]
        mark = [] if not figures["of"] else ["-" if "figures" not in rec else
                                            "met" if all(f["met"] for f in rec["figures"]) else "MISSED"]
        rows.append([rec["name"], *("-" if m.get(k) is None else fmt.format(m[k]) for _, k, fmt in COLUMNS), *mark])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      for r in rows)
    if not figures["of"]:
        return table
    verdict = f"figures (task.validation.sweep_bars): {figures['met']} of {figures['of']} met"
    missed = ["  missed " + m for m in figures["missed"]]
    return "\n".join([table, verdict + (":" if missed else ""), *missed])


__all__ = ["SWEEP", "fixed_command", "format_sweep", "judge", "sweep", "task_bars", "sweep_model", "tracking_metrics"]
