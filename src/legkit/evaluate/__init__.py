"""Evaluation of saved policies: rollouts, metrics, tables."""

from __future__ import annotations

from legkit import EVAL_SEED
from legkit.evaluate.metrics import compute_metrics, format_table
from legkit.evaluate.rollout import load_run_config, rollout
from legkit.train.runs import Policy


def evaluate(policy: Policy, episodes: int = 20, sets: list[str] | None = None, seed: int = EVAL_SEED) -> dict:
    """Evaluate `policy` on its task (with `sets` overrides); returns the metrics dict."""
    cfg = load_run_config(policy, sets)
    metrics = compute_metrics(rollout(policy, episodes, cfg, seed=seed))
    return {"task": cfg.task_name, "policy": policy.name, "checkpoint": policy.label,
            "step": policy.step, "seed": seed, "overrides": list(sets or []), "metrics": metrics}


__all__ = ["compute_metrics", "evaluate", "format_table"]
