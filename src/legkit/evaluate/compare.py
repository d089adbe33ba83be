"""`legkit compare`: policies and scripted gaits on one scene, with the same seeds, terrain tiles and commands.

The scene is the first policy's task (or `--task`): its ground, terrain row, commands, episode length and
reset. Each contender keeps what belongs to it (its observations, action map and physics) and runs on that
scene from the same seed, so that the numbers differ only by what drives the robot. `gait:NAME` is the
scene's own gait when its task runs one of that type (a residual task's baseline), else the robot's default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from legkit import EVAL_SEED, LegkitError
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import load_policy, load_run_config, rollout_model
from legkit.evaluate.scripted import GAIT_PREFIX, Unnormalized, ZeroResidual, gait_config, parse_gait, scene_config
from legkit.train.config import Config

SCENE = ("terrain", "terrain_curriculum", "commands", "command_curriculum", "episode_seconds", "reset")
"""The TaskConfig fields every contender takes from the scene."""

COLUMNS = (
    ("forward m/s", "mean_forward_velocity", "{:+.3f}"),
    ("survival", "survival_rate", "{:.0%}"),
    ("height m", "mean_base_height", "{:.3f}"),
    ("CoT", "cost_of_transport", "{:.2f}"),
    ("tracking RMS", "velocity_tracking_rms", "{:.3f}"),
    ("stalled", "stalled_time_share", "{:.1%}"),  # 2 s windows under a moving command with no progress
    ("|residual| rad", "mean_residual", "{:.3f}"),
    ("collisions/ep", "collisions_per_episode", "{:.2f}"),
)
"""The table's columns: header, metric, format."""
ARENA_COLUMNS = ("collisions_per_episode",)
"""Columns shown only when some contender has them (collisions: a scene with an obstacle arena)."""


def _columns(result: dict) -> list[tuple[str, str, str]]:
    """COLUMNS, less the arena's when no contender ran in an arena."""
    return [c for c in COLUMNS if c[1] not in ARENA_COLUMNS or any(c[1] in r["metrics"] for r in result["results"])]


@dataclass
class Contender:
    """One thing compared: a saved policy or a scripted gait, ready to run on the scene."""

    label: str
    cfg: Config
    model: object
    norm: object
    layout: list | None
    residual: bool
    """Whether its action is a residual on a gait (then mean |action| x action_scale is the mean |residual|)."""


def _on_scene(cfg: Config, scene: Config) -> Config:
    if cfg.task.robot != scene.task.robot:
        raise LegkitError(f"cannot compare a {cfg.task.robot} policy on the {scene.task.robot}'s scene "
                          f"({scene.task_name}); compare policies of one robot")
    return replace(cfg, task=replace(cfg.task, **{k: getattr(scene.task, k) for k in SCENE}))


def contenders(specs: list[str], task_name: str | None = None, sets: list[str] | None = None) -> tuple[Config, list[Contender]]:
    """The scene and every contender of `specs` (RUN, pretrained:NAME or gait:NAME), checked before any rollout."""
    from legkit.train.runs import find_intact_policy, resolve_run

    if not specs:
        raise LegkitError("name at least one RUN, pretrained:NAME or gait:NAME to compare")
    policies = {}
    for spec in specs:
        if not spec.startswith(GAIT_PREFIX):
            policies[spec] = find_intact_policy(resolve_run(spec), None)[0]
        else:
            parse_gait(spec)
    if task_name is not None:
        scene = scene_config(task_name, sets)
    elif policies:
        scene = load_run_config(next(iter(policies.values())), sets)
    else:
        raise LegkitError("comparing gaits alone needs a scene: name it with --task (e.g. --task go2-residual)")
    out = []
    for spec in specs:
        if spec.startswith(GAIT_PREFIX):
            cfg = gait_config(scene.task.robot, parse_gait(spec), base=scene)
            out.append(Contender(spec, cfg, ZeroResidual.for_task(cfg.task), Unnormalized(), None, residual=True))
        else:
            p = policies[spec]
            cfg = _on_scene(load_run_config(p, sets), scene)
            model, norm = load_policy(p)
            out.append(Contender(spec, cfg, model, norm, p.obs_layout, residual=cfg.task.gait is not None))
    return scene, out


def compare(specs: list[str], episodes: int = 20, task_name: str | None = None, sets: list[str] | None = None,
            seed: int = EVAL_SEED) -> dict:
    """Evaluate every contender on the scene; returns {"scene", "seed", "episodes", "overrides", "results":
    [{"label", "task", "metrics"}]} with compute_metrics's metrics plus `mean_residual` (rad; None without a gait)."""
    if episodes < 1:
        raise LegkitError(f"--episodes must be at least 1, got {episodes}")
    scene, items = contenders(specs, task_name, sets)
    results = []
    for c in items:
        trace = rollout_model(c.model, c.norm, episodes, c.cfg, seed, layout=c.layout)
        metrics = compute_metrics(trace)
        mean_action = metrics.get("mean_action_magnitude")
        metrics["mean_residual"] = (mean_action * c.cfg.task.action_scale
                                    if c.residual and mean_action is not None else None)
        results.append({"label": c.label, "task": c.cfg.task_name, "metrics": metrics})
    t = scene.task
    return {"scene": {"task": scene.task_name, "terrain": t.terrain.kind,
                      "row": (t.terrain_curriculum.eval_row % t.terrain.rows if t.terrain.kind == "tiles" else None),
                      "commands": {"lin_vel_x": list(t.commands.lin_vel_x), "lin_vel_y": list(t.commands.lin_vel_y),
                                   "ang_vel_yaw": list(t.commands.ang_vel_yaw)},
                      "episode_seconds": t.episode_seconds},
            "seed": seed, "episodes": episodes, "overrides": list(sets or []), "results": results}


def _cell(metrics: dict, key: str, fmt: str) -> str:
    """A metric as the table prints it, with its 95% interval (metric KEY_ci95) in brackets where it has one."""
    if metrics.get(key) is None:
        return "-"
    ci = metrics.get(f"{key}_ci95")
    return fmt.format(metrics[key]) + ("" if ci is None else f" ({fmt.format(ci[0])}-{fmt.format(ci[1])})")


def format_compare(result: dict) -> str:
    """One row per contender: the COLUMNS ('-' where not defined; collisions only on an arena's scene, with their
    95% interval over the episodes)."""
    columns = _columns(result)
    rows = [["", *(h for h, _, _ in columns)]]
    for r in result["results"]:
        rows.append([r["label"], *(_cell(r["metrics"], k, fmt) for _, k, fmt in columns)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def plot_compare(result: dict, out: Path) -> None:
    """Bar plots of forward velocity, survival, cost of transport, tracking error, residual (and collisions on an
    arena's scene, with their 95% interval), one bar per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in result["results"]]
    panels = [c for c in _columns(result) if c[1] != "mean_base_height"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, key, _) in zip(axes, panels):
        values = [r["metrics"].get(key) for r in result["results"]]
        heights = [0.0 if v is None else v for v in values]
        cis = [r["metrics"].get(f"{key}_ci95") for r in result["results"]]
        yerr = None if all(c is None for c in cis) else \
            [[0.0 if c is None else h - c[0] for h, c in zip(heights, cis)],
             [0.0 if c is None else c[1] - h for h, c in zip(heights, cis)]]
        ax.bar(range(len(labels)), heights, color="C0", yerr=yerr, capsize=3)
        for i, v in enumerate(values):
            ax.text(i, 0.0 if v is None else v, "n/a" if v is None else f"{v:.2f}", ha="center", va="bottom",
                    fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    scene = result["scene"]
    fig.suptitle(f"{scene['task']} scene, {result['episodes']} episodes, seed {result['seed']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compare_video(specs: list[str], spec, out: Path, task_name: str | None = None, sets: list[str] | None = None,
                  seed: int = 0) -> int:
    """A side-by-side MP4 of every contender on the scene from the same reset."""
    from legkit.media.progression import Panel, grid_frames
    from legkit.media.video import policy_actor, write_mp4

    _, items = contenders(specs, task_name, sets)
    panels = [Panel(c.cfg.task, policy_actor(c.model, c.norm), c.label) for c in items]
    return write_mp4(out, grid_frames(panels, spec, seed), spec.fps)
