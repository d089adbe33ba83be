"""What a `train --resume RUN [--steps N] [--set ...]` changes, checked before anything is touched.

A resumed run continues from its latest checkpoint with the saved config plus the changes asked for.
Every change is either applied to what runs next (PPO settings through `PPO.load`, task and run
settings through the new environment) and recorded in meta.json's `resumes`, or refused with a
one-line error when it cannot apply to a trained model (the network's shape, its observations).
config.yaml is rewritten only once the checkpoint has loaded, so it always describes what runs.
The latest checkpoint must verify (legkit.train.checkpoints); a corrupt one is skipped for the one
before it, and the trainer warns and moves it to checkpoints/corrupt/ once the resume has loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from legkit import LegkitError
from legkit.config import to_dict
from legkit.train.config import Config
from legkit.train.checkpoints import latest_intact, recover
from legkit.train.runs import META, checkpoints

FIXED = {
    "task_name": "the run's task",
    "task.robot": "the robot the network was trained for",
    "task.observations": "the network's inputs",
    "task.observation_blind": "what the network's inputs carry",
    "ppo.use_sde": "the network's shape",
    "ppo.net_arch": "the network's shape",
    "ppo.activation": "the network's shape",
    "ppo.actor_observations": "the actor's inputs",
    "ppo.estimator": "the actor's inputs",
    "ppo.estimator_net_arch": "the network's shape",
    "ppo.symmetry": "the network's shape",
    "ppo.fixed_scales": "how the network's inputs were normalized",
    "ppo.log_std_init": "a setting that only applies when a network is created",
    "ppo.normalize_reward": "how the saved returns were normalized",
    "ppo.algorithm": "the model's class and the network's shape",
    "ppo.lstm_hidden": "the network's shape",
    "ppo.lstm_layers": "the network's shape",
    "ppo.shared_lstm": "the network's shape",
    "ppo.critic_lstm": "the network's shape",
    "finetune.bc_policy": "the policy the network started from",
    "finetune.from_run": "the policy the network started from",
    "finetune.from_checkpoint": "the policy the network started from",
    "finetune.first": "the stage the network started from (RUN/first)",
    "finetune.log_std": "a setting that only applies when a network is created",
    "finetune.max_action_std": "a setting that only applies when a run starts from another's model",
    "finetune.obs_statistics": "how the network's inputs are normalized",
    "finetune.min_obs_std": "how the network's inputs are normalized",
    "finetune.critic_warmup_rollouts": "where the critic warm-up ends (recorded in finetune.json)",
}
"""Keys a resume cannot change, and why."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted.key: leaf}; lists and tuples are leaves (compared whole)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def config_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old value, new value)} for every setting that differs."""
    a, b = flatten(to_dict(old)), flatten(to_dict(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


@dataclass(frozen=True)
class ResumePlan:
    """The checkpoint a resume continues from and what it changes."""

    checkpoint: Path
    step: int
    changes: dict[str, tuple[Any, Any]]
    skipped: tuple[tuple[Path, str], ...] = ()
    """Newer checkpoints that failed verification (folder, what is wrong), newest first."""

    def describe(self) -> str:
        """One line per change, for the console."""
        return "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in self.changes.items())

    def record(self) -> dict:
        """The entry appended to meta.json's `resumes`."""
        entry = {"from_checkpoint": self.checkpoint.name, "step": self.step,
                 "changes": {k: {"from": a, "to": b} for k, (a, b) in self.changes.items()}}
        if self.skipped:
            entry["skipped_corrupt"] = {folder.name: problem for folder, problem in self.skipped}
        return entry


def refuse_fixed(changes: dict[str, tuple[Any, Any]]) -> None:
    """Raise a one-line LegkitError for the first of `changes` (config_changes) that a resume cannot make."""
    for key in changes:
        for fixed, why in FIXED.items():
            if key == fixed or key.startswith(fixed + "."):
                a, b = changes[key]
                raise LegkitError(f"--set {key} cannot change on resume ({a!r} -> {b!r}): it is {why}; "
                                  "start a new run with legkit train TASK --set ...")


def plan_resume(run: Path, saved: Config, cfg: Config, finishing: bool = False) -> ResumePlan:
    """Check a resume of `run` (saved config `saved`) with the new config `cfg`; raise on what cannot apply.

    With `finishing`, a latest checkpoint at run.total_steps is a plan too: the trainer then trains nothing and
    only writes the final model (a run cut between its last checkpoint and its final model, e.g. a first stage,
    legkit.train.stages). Finishing what a killed process left half done (`recover`) is the one thing done to the
    run here: it changes nothing saved, and without it a checkpoint cut mid-swap would look missing."""
    recover(run)
    if not checkpoints(run):
        raise LegkitError(f"run '{run}' has no checkpoint to resume from; start a new run with legkit train TASK")
    latest, skipped = latest_intact(run / "checkpoints")
    if latest is None:
        why = "; ".join(f"{folder.name}: {problem}" for folder, problem in skipped[:3])
        raise LegkitError(f"run '{run}' has no intact checkpoint to resume from, every one is corrupt ({why}); "
                          "start a new run with legkit train TASK")
    step = _checkpoint_step(latest)
    changes = config_changes(saved, cfg)
    refuse_fixed(changes)
    if cfg.run.total_steps < step or (cfg.run.total_steps == step and not finishing):
        raise LegkitError(f"run.total_steps = {cfg.run.total_steps} leaves nothing to train: the run is already at "
                          f"{step} steps ({latest.name}); give --steps N with N > {step}")
    return ResumePlan(latest, step, changes, tuple(skipped))


def _checkpoint_step(folder: Path) -> int:
    meta = folder / META
    try:
        return int(json.loads(meta.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(folder.name.split("_")[1])  # the folder name carries the step too
