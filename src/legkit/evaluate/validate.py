"""`legkit validate`: a task's pass/fail suite (nominal, seeds, long run, pushes, randomization, and
the task's robustness scenarios).

The scenarios and thresholds come from the task's ValidationConfig, so every task gets its own
suite the same way. `judge` and `judge_robustness` hold the pass/fail logic and work on any Traces,
which keeps them testable on synthetic rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from legkit import LegkitError
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import Trace, load_run_config, rollout, task_validation
from legkit.tasks.config import PushConfig, Scenario, ValidationConfig
from legkit.train.config import Config
from legkit.train.runs import Policy


@dataclass(frozen=True)
class Check:
    """One row of the validation table."""

    scenario: str
    name: str
    value: float | None
    threshold: str
    passed: bool


def _survival(t: Trace) -> float:
    return float(np.mean(~t.terminated))


def judge(vc: ValidationConfig, nominal: Trace, seeds: dict[int, Trace], long: Trace, push: Trace,
          randomized: Trace, robustness: Sequence[tuple[Scenario, Trace]] = ()) -> list[Check]:
    """Every check of the suite, from the scenarios' traces; `robustness` pairs each robustness scenario
    with its trace (see judge_robustness)."""
    m = compute_metrics(nominal)
    lasting = int(np.sum(nominal.length > vc.min_length))
    first_fall = int(nominal.length[nominal.terminated].min()) if nominal.terminated.any() else None
    checks = [
        Check("nominal", f"episodes longer than {vc.min_length} steps", lasting,
              f">= {vc.min_lasting_episodes} of {nominal.length.size}", lasting >= vc.min_lasting_episodes),
    ]
    lo, hi = vc.height_range
    if (lo, hi) != (0.0, 0.0):
        h = m["mean_base_height"]
        checks.append(Check("nominal", "mean base height (m)", h, f"in [{lo}, {hi}]", lo <= h <= hi))
    checks += [
        Check("nominal", "base height std (m)", m["base_height_std"], f"< {vc.max_height_std}",
              m["base_height_std"] < vc.max_height_std),
        Check("nominal", "early termination rate", m["early_termination_rate"], f"< {vc.max_early_termination}",
              m["early_termination_rate"] < vc.max_early_termination),
        Check("nominal", f"first fall (step), none before {vc.no_fall_before}", first_fall,
              f"none before {vc.no_fall_before}", first_fall is None or first_fall >= vc.no_fall_before),
    ]
    if vc.min_forward_velocity is not None:
        v = m["mean_forward_velocity"]
        checks.append(Check("nominal", "mean forward velocity (m/s)", v, f">= {vc.min_forward_velocity}",
                            v >= vc.min_forward_velocity))
    for seed, t in seeds.items():
        checks.append(Check("seeds", f"survival, seed {seed}", _survival(t), f">= {vc.min_survival}",
                            _survival(t) >= vc.min_survival))
    checks += [
        Check("long", f"one {long.max_steps}-step episode without a fall", float(long.length.max()),
              f"= {long.max_steps} steps", not long.terminated.any()),
        Check("pushes", f"survival under {vc.push_force:g} N pushes every {vc.push_interval_s:g} s", _survival(push),
              f">= {vc.min_survival}", _survival(push) >= vc.min_survival),
        Check("randomization", f"survival, mass +-{vc.mass_range:.0%}, friction +-{vc.friction_range:.0%}",
              _survival(randomized), f">= {vc.min_survival}", _survival(randomized) >= vc.min_survival),
    ]
    return checks + judge_robustness(robustness)


def judge_robustness(runs: Sequence[tuple[Scenario, Trace]]) -> list[Check]:
    """The checks of robustness scenarios, each on its own trace, in scenario `robustness: <name>`: survival
    >= min_survival, and the RMS error of the planar velocity |(vx, vy) - command| (m/s) <= max_tracking_rms
    when the scenario sets one (the bar is in m/s: the yaw-rate error, in rad/s, is not mixed in)."""
    checks = []
    for sc, t in runs:
        m = compute_metrics(t)
        where = f"robustness: {sc.name}"
        survival = m["survival_rate"]
        checks.append(Check(where, "survival", survival, f">= {sc.min_survival:g}", survival >= sc.min_survival))
        if sc.max_tracking_rms is not None:
            rms = m["linear_velocity_tracking_rms"]
            checks.append(Check(where, "linear velocity tracking RMS (m/s)", rms, f"<= {sc.max_tracking_rms:g}",
                                rms <= sc.max_tracking_rms))
    return checks


def robustness_configs(policy: Policy, vc: ValidationConfig, sets: list[str]) -> list[tuple[Scenario, Config]]:
    """The evaluation config of every robustness scenario: the run's, with `sets` and then the scenario's own
    sets applied. Raises a LegkitError naming the scenario when its sets do not apply."""
    names = [sc.name for sc in vc.robustness]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise LegkitError(f"task.validation.robustness names scenario '{dup}' twice; give each scenario its own name")
    out = []
    for sc in vc.robustness:
        try:
            out.append((sc, load_run_config(policy, sets + list(sc.sets))))
        except LegkitError as exc:
            raise LegkitError(f"robustness scenario '{sc.name}': {exc}") from None
    return out


def validate(policy: Policy, sets: list[str] | None = None, seed: int = 777, robustness_only: bool = False) -> dict:
    """Run the task's validation suite on `policy`; returns the checks and the nominal metrics.
    `robustness_only`: only the robustness scenarios (no nominal metrics), e.g. to find the first
    checkpoint that meets them."""
    cfg = load_run_config(policy, sets)
    vc = task_validation(cfg, sets)  # the task's suite today, not the run's saved one
    scenarios = robustness_configs(policy, vc, list(sets or []))  # before any rollout: a bad scenario fails fast
    if robustness_only and not scenarios:
        raise LegkitError(f"--robustness-only: task {cfg.task_name} has no robustness scenarios "
                          "(task.validation.robustness)")
    robustness = _robustness_traces(policy, vc, scenarios, seed)
    if robustness_only:
        checks = judge_robustness(robustness)
        return {"task": cfg.task_name, "policy": policy.name, "checkpoint": policy.label, "step": policy.step,
                "passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks],
                "robustness_metrics": {sc.name: compute_metrics(t) for sc, t in robustness},
                "validation_config": asdict(vc)}
    nominal = rollout(policy, vc.episodes, cfg, seed=seed, max_steps=vc.max_steps)
    seeds = {s: rollout(policy, vc.seed_episodes, cfg, seed=s, max_steps=vc.max_steps) for s in vc.seeds}
    long = rollout(policy, 1, cfg, seed=seed + 1, max_steps=vc.long_steps)
    push = rollout(policy, vc.episodes, cfg, seed=seed + 2, max_steps=vc.max_steps,
                   pushes=PushConfig(vc.push_force, vc.push_interval_s, vc.push_duration_s))
    randomized = rollout(policy, vc.episodes, cfg, seed=seed + 3, max_steps=vc.max_steps,
                         randomize=(vc.mass_range, vc.friction_range))
    checks = judge(vc, nominal, seeds, long, push, randomized, robustness)
    return {"task": cfg.task_name, "policy": policy.name, "checkpoint": policy.label, "step": policy.step,
            "passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks],
            "nominal_metrics": compute_metrics(nominal),
            "robustness_metrics": {sc.name: compute_metrics(t) for sc, t in robustness},
            "validation_config": asdict(vc)}


def _robustness_traces(policy: Policy, vc: ValidationConfig, scenarios: list[tuple[Scenario, Config]],
                       seed: int) -> list[tuple[Scenario, Trace]]:
    """Each robustness scenario's rollout, with its own seed (seed + 4, seed + 5, ... in list order);
    `vc.max_steps` sets its episode length."""
    robustness = []
    for i, (sc, sc_cfg) in enumerate(scenarios):
        try:
            robustness.append((sc, rollout(policy, vc.episodes, sc_cfg, seed=seed + 4 + i, max_steps=vc.max_steps)))
        except LegkitError as exc:  # e.g. a scenario that changes the observations the model takes
            raise LegkitError(f"robustness scenario '{sc.name}': {exc}") from None
    return robustness


def format_checks(result: dict) -> str:
    """The pass/fail table."""
    rows = result["checks"]
    w_s = max(len(r["scenario"]) for r in rows)
    w_n = max(len(r["name"]) for r in rows)
    lines = [f"{'scenario':<{w_s}}  {'check':<{w_n}}  {'value':>9}  {'threshold':<16} result"]
    for r in rows:
        v = r["value"]
        value = "-" if v is None else (f"{v:9.3f}" if isinstance(v, float) else f"{v:9d}")
        lines.append(f"{r['scenario']:<{w_s}}  {r['name']:<{w_n}}  {value:>9}  {r['threshold']:<16} "
                     f"{'PASS' if r['passed'] else 'FAIL'}")
    lines.append(f"validation {'PASSED' if result['passed'] else 'FAILED'} "
                 f"({sum(r['passed'] for r in rows)}/{len(rows)} checks)")
    return "\n".join(lines)
