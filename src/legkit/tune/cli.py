"""`legkit tune`: the subcommand's arguments and what it does (registered by legkit.cli; Optuna loads only here)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from legkit import LegkitError

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

DESCRIPTION = """\
Search PPO settings and reward weights with Optuna (TPE sampler, median pruner) to minimize the time a task
takes to learn.

objective (minimized), per trial of S steps (--steps; default the task's run.total_steps):
  the environment step at which the periodic evaluation (every run.best_every steps) first meets the task's
  success bar (go2-walk: mean forward velocity >= 0.5 m/s and survival >= 95%); the trial stops there.
  Never met: S x (1 + shortfall), shortfall in [0, 1] the mean relative gap of the last evaluation's metrics
  to the bar's bounds, so near misses rank before standing still. Each evaluation reports that value to the
  pruner, which stops trials worse than the median of earlier ones at the same step.

search space: legkit/configs/TASK.tune.yaml (or --space FILE): keys are --set keys of the task's config
  (ppo.learning_rate, task.rewards.track_lin_vel.weight, ...); every value is checked before a trial starts.

every trial is a run folder RUNS/tune/STUDY/trial-NNNN (legkit eval, plots, train --resume work on it); a trial
  that fails (bad config combination, NaN, crash) is recorded failed with its reason and the study goes on.
"""

EPILOG = """\
storage URLs (--storage):
  (default)                      RUNS/tune/optuna.db, an SQLite file in the runs folder
  sqlite:///PATH                 another SQLite file
  postgresql://USER:PW@HOST/DB   a database server (any SQLAlchemy URL, e.g. mysql+pymysql://...): workers
                                 on many machines share the study
  journal:PATH                   Optuna's journal file (e.g. on a shared NFS folder)

  A database password is better kept in ~/.pgpass or PGPASSWORD (PostgreSQL) than in the URL: each trial's
  meta.json records the command line.

  Run `legkit tune TASK --trials N --storage URL --study NAME` on each machine: every worker asks the storage
  for its next trial (no scheduler). A worker that joins a study takes its steps, --set and space; giving
  different ones is an error. --jobs J runs J worker processes here, sharing the cores.

examples:
  legkit tune go2-walk --trials 40 --steps 3e6 --jobs 2
  legkit tune go2-walk --trials 20 --storage postgresql://tune:pw@db.lab/optuna --study walk-a
  legkit tune --show go2-walk        # table, importances, RUNS/tune/go2-walk/{best.yaml,history.png,...}
  legkit train go2-walk --config runs/tune/go2-walk/best.yaml
"""


def add_parser(sub) -> None:
    """Register `legkit tune` on the CLI's subparsers."""
    from legkit.cli import count

    t = sub.add_parser("tune", help="search PPO settings and reward weights with Optuna: minimize time to walk",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("task", nargs="?", help="task name, e.g. go2-walk (see legkit list)")
    t.add_argument("--trials", type=int, metavar="N", help="trials this command runs (over all its --jobs)")
    t.add_argument("--steps", type=count, metavar="S", help="environment steps per trial (default: the task's "
                                                            "run.total_steps)")
    t.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="worker processes on this machine, each training one trial at a time (default 1)")
    t.add_argument("--storage", metavar="URL", help="where the study lives (default: RUNS/tune/optuna.db; see below)")
    t.add_argument("--study", metavar="NAME", help="study name (default: the task name); an existing study of "
                                                   "the same task is joined")
    t.add_argument("--space", metavar="FILE", help="search space YAML (default: legkit/configs/TASK.tune.yaml)")
    t.add_argument("--runs", default="runs", metavar="DIR", help="runs folder: trials go to DIR/tune/STUDY/ "
                                                                 "(default: runs)")
    t.add_argument("--envs", type=int, help="robots simulated together in every trial")
    t.add_argument("--seed", type=int, help="training seed of every trial (the same for all: a fair comparison)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix a config key in every trial "
                                                                       "(repeatable)")
    t.add_argument("--show", metavar="STUDY", help="print the study's trials and importances; write best.yaml "
                                                   "and plots (history.png, importances.png)")
    t.add_argument("--out", metavar="DIR", help="with --show: folder for best.yaml and the plots (default: "
                                                "RUNS/tune/STUDY)")
    t.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> None:
    from legkit.tune.storage import DEFAULT_DB, default_storage

    runs = Path(args.runs)
    if args.show is not None:
        extra = [flag for flag, given in (("TASK", args.task), ("--trials", args.trials is not None),
                                          ("--steps", args.steps is not None), ("--space", args.space),
                                          ("--set", args.set), ("--study", args.study)) if given]
        if extra:
            raise LegkitError(f"--show STUDY prints a study; {extra[0]} belongs to a search (give only --storage, "
                              "--runs and --out with --show)")
        from legkit.tune.show import show

        out = Path(args.out) if args.out else runs / "tune" / args.show
        show(args.storage or default_storage(runs), args.show, out)
        return
    if args.out:
        raise LegkitError("--out goes with --show STUDY (where best.yaml and the plots go)")
    if not args.task:
        raise LegkitError("name a task to tune (see 'legkit list'), or --show STUDY")
    if args.trials is None or args.trials < 1:
        raise LegkitError("--trials N: how many trials this command runs, at least 1")
    if args.jobs < 1:
        raise LegkitError(f"--jobs must be at least 1, got {args.jobs}")
    if args.steps is not None and args.steps < 1:
        raise LegkitError(f"--steps must be at least 1, got {args.steps}")
    name = args.study or args.task
    if not STUDY_NAME.fullmatch(name) or name == DEFAULT_DB:
        raise LegkitError(f"--study '{name}' is not a usable name: letters, digits, '.', '_' and '-', starting with a "
                          "letter or digit (it names a folder too)")
    _search(args, runs, name)


def _search(args: argparse.Namespace, runs: Path, name: str) -> None:
    from legkit.tune.space import default_budget, load_space, parse_space, reference_config
    from legkit.tune.storage import default_storage, local_file, shown
    from legkit.tune.study import (Record, check_record, create_or_join, local_sets, run_workers,
                                   shared_sets, shared_trial_sets, trial_base_sets)
    from legkit.tune.trial import Plan

    sets = list(args.set or [])
    if args.envs is not None:
        sets.append(f"run.num_envs={args.envs}")
    if args.seed is not None:
        sets.append(f"run.seed={args.seed}")
    # The record that the trials will use is checked before a storage file, a study or a folder is made: this
    # one for a new study, the study's own when joining (create_or_join).
    space = load_space(args.task, args.space)
    where = Path(args.space).name if args.space else f"{args.task}.tune.yaml"
    budget = args.steps or default_budget(args.task, [*space.settings_sets(), *sets])
    mine = Record(args.task, budget, shared_sets(sets), space.to_dict())
    mine_only = local_sets(sets)  # this machine's threads: after the space's settings, never in the study's record
    if mine_only:  # a bad value: one line now
        reference_config(args.task, space, [*shared_trial_sets(mine), *mine_only])
    url = args.storage or default_storage(runs)
    file = local_file(url)
    if file is not None and not file.exists():  # a new storage: its study is new, checked before the file is made
        check_record(mine, where)
    if args.storage is None:
        try:
            (runs / "tune").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LegkitError(f"cannot create '{runs / 'tune'}' for the study's storage: {exc.strerror or exc}; give "
                              "a writable --runs DIR or a --storage URL") from None
    given = {"steps": args.steps is not None, "sets": bool(mine.sets), "space": args.space is not None}
    study, record, created = create_or_join(url, name, mine, given, where)
    folder = (runs / "tune" / name).resolve()
    plan = Plan(record.task, name, url, folder, record.budget, (*trial_base_sets(record), *mine_only), (),
                parse_space(record.space))
    print(f"study '{name}' ({'new' if created else f'joined, {len(study.trials)} trials so far'}) in {shown(url)}: "
          f"task {record.task}, {record.budget:,} steps per trial; {args.trials} trials in {args.jobs} worker(s), "
          f"run folders in {folder}", flush=True)
    run_workers(plan, args.trials, args.jobs)
    _summary(study, name, args, url)


def _summary(study, name: str, args: argparse.Namespace, url: str) -> None:
    from legkit.tune.storage import default_storage

    trials = study.trials
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    line = f"study '{name}' now has {len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if done:
        best = min(done, key=lambda t: t.value)
        line += f"; best: trial {best.number}, value {best.value:,.0f} ({best.user_attrs.get('outcome', '')})"
    print(line)
    where = "" if url == default_storage(Path(args.runs)) else f" --storage {shlex.quote(args.storage)}"
    runs = "" if args.runs == "runs" else f" --runs {shlex.quote(args.runs)}"
    print(f"see it: legkit tune --show {name}{where}{runs}")
