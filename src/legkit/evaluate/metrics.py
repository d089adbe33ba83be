"""Evaluation metrics computed from a Trace, and their printed table."""

from __future__ import annotations

import numpy as np

from legkit.evaluate.rollout import Trace


def compute_metrics(t: Trace) -> dict[str, float | int | None]:
    """Summary numbers of an evaluation; averages are over the steps each episode was alive."""
    a = t.alive
    steps = max(int(a.sum()), 1)
    mean = lambda x: float(np.sum(x * a) / steps)  # noqa: E731
    err = t.vel - t.command
    fell = t.terminated
    distance = np.sum(t.vel[..., 0] * a, axis=0) * t.dt  # forward progress in the body frame (m)
    energy = np.sum(t.power * a, axis=0) * t.dt  # J
    moved = distance > 0.5
    height_mean = mean(t.height)
    return {
        "episodes": int(a.shape[1]),
        "mean_forward_velocity": mean(t.vel[..., 0]),
        "mean_command_velocity": mean(t.command[..., 0]),
        "velocity_tracking_rms": float(np.sqrt(np.sum(np.sum(err**2, axis=-1) * a) / steps)),
        "survival_rate": float(np.mean(~fell)),
        "early_termination_rate": float(np.mean(fell)),
        "mean_time_to_fall_s": float(np.mean(t.length[fell]) * t.dt) if fell.any() else None,
        "mean_base_height": height_mean,
        "base_height_std": float(np.sqrt(mean((t.height - height_mean) ** 2))),
        "mean_action_magnitude": mean(t.action_abs),
        "mean_return": float(np.mean(np.sum(t.reward * a, axis=0))),
        "energy_per_metre_J": float(np.mean(energy[moved] / distance[moved])) if moved.any() else None,
        "mean_episode_length_s": float(np.mean(t.length) * t.dt),
        "episode_limit_s": float(t.max_steps * t.dt),
    }


LABELS = {
    "episodes": ("episodes", "{:d}"),
    "mean_forward_velocity": ("mean forward velocity (m/s)", "{:.3f}"),
    "mean_command_velocity": ("mean commanded velocity (m/s)", "{:.3f}"),
    "velocity_tracking_rms": ("velocity tracking RMS error", "{:.3f}"),
    "survival_rate": ("survival rate", "{:.1%}"),
    "early_termination_rate": ("early termination rate", "{:.1%}"),
    "mean_time_to_fall_s": ("mean time to fall (s)", "{:.2f}"),
    "mean_base_height": ("mean base height (m)", "{:.3f}"),
    "base_height_std": ("base height std (m)", "{:.3f}"),
    "mean_action_magnitude": ("mean |action|", "{:.3f}"),
    "mean_return": ("mean episode return", "{:.1f}"),
    "energy_per_metre_J": ("energy per metre (J/m)", "{:.1f}"),
    "mean_episode_length_s": ("mean episode length (s)", "{:.2f}"),
    "episode_limit_s": ("episode limit (s)", "{:.1f}"),
}


def format_table(metrics: dict) -> str:
    """Two aligned columns: metric, value ('-' where not defined)."""
    width = max(len(label) for label, _ in LABELS.values())
    lines = []
    for key, (label, fmt) in LABELS.items():
        v = metrics.get(key)
        lines.append(f"{label:<{width}}  {'-' if v is None else fmt.format(v)}")
    return "\n".join(lines)
