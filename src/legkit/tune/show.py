"""`legkit tune --show STUDY`: the trials table, the parameter importances, the best configuration and plots.

The best configuration (OUT/best.yaml) is the best complete trial's config written as the differences from the
task's own (ppo:, run:, task: sections, as in legkit/configs/<task>.yaml), rebuilt from the study's record and
the trial's `--set` strings: `legkit train TASK --config best.yaml` trains that trial's configuration. Left out
are the run settings that say what a run writes or how it uses the machine, not what it learns (checkpoint,
evaluation and video intervals, threads: OUTPUT_KEYS), which tuning sets for its own bookkeeping.

Importances are Optuna's PedANOVA (optuna.importance.PedAnovaImportanceEvaluator, no scikit-learn needed) over
the complete trials. Plots: OUT/history.png (objective by trial, best so far) and OUT/importances.png. The files
describe the study when --show ran, and a later --show writes them again.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from legkit import LegkitError
from legkit.config import to_dict
from legkit.train.checkpoints import atomic_write
from legkit.tune.space import Space, parse_space, reference_config
from legkit.tune.storage import open_storage, shown
from legkit.tune.study import RECORD, Record, shared_trial_sets, trial_base_sets

OUTPUT_KEYS = ("checkpoint_every", "keep_checkpoints", "eval_episodes", "best_every", "best_episodes", "video_every",
               "video_seconds", "video_width", "video_height", "video_tensorboard", "nthread", "torch_threads")
"""run.* settings left out of best.yaml: what a run writes and how it uses the machine, not what it learns."""
BEST, HISTORY, IMPORTANCES = "best.yaml", "history.png", "importances.png"


def load_study(url: str, name: str):
    """The study `name` at `url` and its record; a LegkitError naming the studies there when it is not one."""
    import optuna

    storage = open_storage(url, must_exist=True)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise LegkitError(f"no study '{name}' in {shown(url)}; studies there: {', '.join(sorted(names)) or 'none'}")
    study = optuna.load_study(study_name=name, storage=storage)
    data = study.user_attrs.get(RECORD)
    if data is None:
        raise LegkitError(f"study '{name}' in {shown(url)} was not made by legkit tune (it has no task record)")
    return study, Record.from_json(data)


def show(url: str, name: str, out: Path) -> None:
    """Print the study's trials and importances; write best.yaml and the plots into `out`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, record = load_study(url, name)
    space = parse_space(record.space)
    trials = study.trials
    states = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    bar = reference_config(record.task, space, shared_trial_sets(record)).task.success
    print(f"study '{name}' in {shown(url)}: task {record.task}, {record.budget:,} steps per trial; {len(trials)} trials"
          + (": " + ", ".join(f"{n} {s}" for s, n in states.items()) if trials else ""))
    print(f"objective (lower is better): the step at which {bar.describe()} is first met; "
          f"{record.budget:,} x (1 + shortfall) when never")
    print(format_trials(trials, space))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    importances = param_importances(study, len(complete))
    if importances is not None:
        print("parameter importances (PedANOVA over the complete trials):")
        for key, value in importances.items():
            print(f"  {key:<40} {value:.3f}")
    if not complete:
        print("no complete trial yet: no best configuration to write")
        return
    best = study.best_trial
    print(f"best: trial {best.number}, value {best.value:,.0f}: {best.user_attrs.get('outcome', '')}"
          + (f" ({best.user_attrs['run']})" if best.user_attrs.get("run") else ""))
    out.mkdir(parents=True, exist_ok=True)
    path = out / BEST
    write_best(path, record, best, name)
    print(f"wrote {path} (train it: legkit train {record.task} --config {path})")
    for written in plots(study, out, importances is not None):
        print(f"wrote {written}")


def format_trials(trials: list, space: Space) -> str:
    """The trials as a table: number, state, value, one column per parameter, outcome or reason."""
    keys = space.keys()
    names = _short_names(keys)
    header = ["trial", "state", "value", *names, "outcome / reason"]
    rows = [header]
    for t in trials:
        value = f"{t.value:,.0f}" if t.value is not None else "-"
        why = t.user_attrs.get("outcome") or t.user_attrs.get("reason") or ""
        if t.state.name == "FAIL" and not why:
            why = "worker lost (no heartbeat) or interrupted"
        rows.append([str(t.number), t.state.name.lower(), value, *[_cell(t.params.get(k)) for k in keys], why])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows).rstrip()


def _short_names(keys: list[str]) -> list[str]:
    """Column names: keys without 'ppo.' and 'task.rewards.', a reward weight by its term's name; the full keys
    when that would name two columns alike."""
    short = [k.removeprefix("ppo.").removeprefix("task.rewards.").removesuffix(".weight") for k in keys]
    return short if len(set(short)) == len(short) else list(keys)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def param_importances(study, complete: int) -> dict[str, float] | None:
    """PedANOVA importances of the parameters (None, with a line saying why, when they cannot be computed)."""
    import optuna

    if complete < 2:
        print(f"parameter importances: need at least 2 complete trials, the study has {complete}")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as exc:
        print(f"parameter importances: cannot be computed yet ({exc})")
        return None


def best_config_tree(record: Record, trial) -> dict:
    """The trial's config as differences from the task's own: {ppo: ..., run: ..., task: ...}."""
    from legkit.train.config import build_config

    default = to_dict(build_config(record.task))
    tuned = to_dict(build_config(record.task, sets=[*trial_base_sets(record), *trial.user_attrs["sets"]]))
    tree = {}
    for section in ("ppo", "run", "task"):
        diff = _difference(default[section], tuned[section])
        if section == "run":
            diff = {k: v for k, v in diff.items() if k not in OUTPUT_KEYS}
        if diff:
            tree[section] = diff
    return tree


def _difference(old: dict, new: dict) -> dict:
    """The entries of `new` that differ from `old`, recursing into mappings."""
    out = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = _difference(before, value)
            if inner:
                out[key] = inner
        elif key not in old or value != before:
            out[key] = value
    return out


def write_best(path: Path, record: Record, trial, name: str) -> None:
    """best.yaml: the trial's config for `legkit train --config`, with a header saying where it came from."""
    head = (f"# legkit tune: trial {trial.number} of study '{name}' ({record.task}), the best: value "
            f"{trial.value:,.0f} ({trial.user_attrs.get('outcome', '')}).\n"
            f"# Train it: legkit train {record.task} --config {path.name} (add --steps N for longer).\n"
            "# Only what differs from the task's own config; run settings of what a run writes (checkpoints,\n"
            "# evaluations, videos, threads) are the defaults again.\n")
    body = yaml.safe_dump(best_config_tree(record, trial), sort_keys=False, default_flow_style=None)
    atomic_write(path, (head + body).encode())


def plots(study, out: Path, with_importances: bool) -> list[Path]:
    """history.png (and importances.png when they can be computed) in `out`; returns what was written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        jobs = [(HISTORY, lambda: plot_optimization_history(study))]
        if with_importances:
            jobs.append((IMPORTANCES, lambda: plot_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())))
        for file, draw in jobs:
            ax = draw()
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / file, dpi=100)
            plt.close(fig)
            written.append(out / file)
    return written
