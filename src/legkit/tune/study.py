"""A `legkit tune` study: its record in the storage, joining it, and the worker processes that run its trials.

The study's user attribute `legkit` records what its trials share: the task, the steps per trial, the `--set`
strings and the search space. The first worker creates the study with that record (and enqueues the space's
`enqueue` trials); every later worker, on this machine or another, checks it: a study of another task, or
options that differ from the record, are a one-line error, and options left out are taken from the record, so
that `legkit tune TASK --storage URL --study NAME` on another machine joins with the same settings.

There is no scheduler: each worker asks the storage for the next trial (Optuna's TPE sampler, with a
"constant liar" for the trials still running elsewhere), trains it, and tells the result. `--jobs J` starts J
such workers as processes on this machine; together they run `--trials N` trials.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace

from legkit import LegkitError
from legkit.tune.space import Space, check_space, enqueued_params, parse_space, reference_config
from legkit.tune.storage import open_storage, shown
from legkit.tune.trial import Plan, run_trial

RECORD = "legkit"
"""The study's user attribute holding its record."""
LOCAL_KEYS = ("run.nthread", "run.torch_threads")
"""Settings of one machine, not of the study: left out of the record and of the best configuration."""


@dataclass(frozen=True)
class Record:
    """What every trial of a study shares."""

    task: str
    budget: int
    sets: tuple[str, ...]
    """The user's --set strings (with --envs and --seed), machine-local thread settings left out."""
    space: dict
    """The search space (Space.to_dict)."""

    def to_json(self) -> dict:
        return {"task": self.task, "steps": self.budget, "sets": list(self.sets), "space": self.space}

    @staticmethod
    def from_json(data: dict) -> Record:
        return Record(data["task"], int(data["steps"]), tuple(data["sets"]), data["space"])


def shared_trial_sets(record: Record) -> list[str]:
    """The `--set` strings every trial of a study adds to its space's settings: the user's --set, the steps per
    trial, and no training clips."""
    return [*record.sets, f"run.total_steps={record.budget}", "run.video_every=0"]


def trial_base_sets(record: Record) -> list[str]:
    """The `--set` strings of every trial of a study, before its parameters: the space's settings, then
    shared_trial_sets."""
    return [*parse_space(record.space).settings_sets(), *shared_trial_sets(record)]


def check_record(record: Record, where: str) -> None:
    """Check a study's settings before any trial: the space's keys and values (check_space), periodic evaluations
    within the steps per trial, a success bar to reach, and the model a fine-tuning starts from. A LegkitError
    naming what is wrong."""
    space = parse_space(record.space, where)
    shared = shared_trial_sets(record)
    check_space(space, record.task, shared, where)
    cfg = reference_config(record.task, space, shared)
    if not 1 <= cfg.run.best_every <= record.budget:
        raise LegkitError(f"legkit tune needs periodic evaluations within each trial: run.best_every = "
                          f"{cfg.run.best_every} must be between 1 and the steps per trial ({record.budget:,}); set it "
                          f"in the space's settings or with --set run.best_every=N")
    if not cfg.task.success.bounds():
        raise LegkitError(f"task '{record.task}' has no success bar (task.success) to reach; set one, e.g. --set "
                          "task.success.min_survival=0.95")
    if cfg.finetune.first is not None:
        raise LegkitError(f"legkit tune does not train finetune.first ('{cfg.finetune.first}') again in every trial: "
                          "train it once (legkit train with that config; its RUN/first/ is a run folder) and tune "
                          "from it with --set finetune.first=null --set finetune.from_run=RUN/first")
    from legkit.train.trainer import model_start

    model_start(cfg)  # finetune.from_run's or finetune.bc_policy's files, read and checked once before any trial


def shared_sets(sets: list[str]) -> tuple[str, ...]:
    """`sets` without the machine-local ones (LOCAL_KEYS): what the study records."""
    return tuple(s for s in sets if s.split("=", 1)[0].strip() not in LOCAL_KEYS)


def local_sets(sets: list[str]) -> tuple[str, ...]:
    """The machine-local ones of `sets` (LOCAL_KEYS): this worker's own, never recorded in the study."""
    return tuple(s for s in sets if s.split("=", 1)[0].strip() in LOCAL_KEYS)


def sampler(space: Space):
    import optuna

    return optuna.samplers.TPESampler(n_startup_trials=space.sampler["startup_trials"], constant_liar=True)


def pruner(space: Space):
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=space.pruner["startup_trials"],
                                       n_warmup_steps=space.pruner["warmup_steps"])


def create_or_join(url: str, name: str, mine: Record, given: dict[str, bool], where: str):
    """Create study `name` at `url` with record `mine`, or join it: returns (study, the study's record, created).

    `given` says which options the user gave (steps, sets, space): those must match an existing study's
    record; the others are taken from it. A study of another task is an error naming both tasks. The record
    that the trials will use is checked (check_record; `where` names mine in messages) before a study is
    made or joined."""
    import optuna

    storage = open_storage(url)
    if name not in optuna.get_all_study_names(storage):
        check_record(mine, where)
        space = parse_space(mine.space)
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                        sampler=sampler(space), pruner=pruner(space))
        except optuna.exceptions.DuplicatedStudyError:  # another worker made it just now: join it
            pass
        else:
            study.set_user_attr(RECORD, mine.to_json())
            for params in enqueued_params(space):
                study.enqueue_trial(params, user_attrs={"enqueued": True})
            return study, mine, True
    theirs = _record_of(optuna.load_study(study_name=name, storage=storage), name, url)
    _check_join(name, mine, theirs, given)
    check_record(theirs, f"study '{name}'")  # its settings, against this legkit
    space = parse_space(theirs.space)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler(space), pruner=pruner(space))
    return study, theirs, False


def _record_of(study, name: str, url: str, wait_s: float = 30.0) -> Record:
    """The record of an existing study; waits a little for a worker that has just created it."""
    deadline = time.monotonic() + wait_s
    while True:
        data = study.user_attrs.get(RECORD)
        if data is not None:
            return Record.from_json(data)
        if study.trials or time.monotonic() > deadline:
            raise LegkitError(f"study '{name}' in {shown(url)} was not made by legkit tune (it has no task record); "
                              "choose another --study name")
        time.sleep(0.5)  # user_attrs reads the storage afresh


def _check_join(name: str, mine: Record, theirs: Record, given: dict[str, bool]) -> None:
    if theirs.task != mine.task:
        raise LegkitError(f"study '{name}' exists for task '{theirs.task}', not '{mine.task}'; use --study with "
                          "another name, or tune that task")
    if given.get("steps") and theirs.budget != mine.budget:
        raise LegkitError(f"study '{name}' trains each trial {theirs.budget:,} steps, this worker asks "
                          f"--steps {mine.budget:,}; leave --steps out to join it, or use another --study")
    if given.get("sets") and theirs.sets != mine.sets:
        raise LegkitError(f"study '{name}' runs its trials with --set {' '.join(theirs.sets) or '(none)'}, this worker "
                          f"with {' '.join(mine.sets) or '(none)'}; leave --set/--envs/--seed out to join it, or use "
                          "another --study")
    if given.get("space") and theirs.space != mine.space:
        raise LegkitError(f"study '{name}' has another search space than --space gives; leave --space out to join "
                          "it with the study's own, or use another --study")


class Tickets:
    """The trials a `legkit tune` command still has to start, shared by its worker processes."""

    def __init__(self, count: int, context=None):
        self.value = context.Value("i", count) if context is not None else None
        self.left = count

    def take(self) -> bool:
        """Claim one trial; False when none is left."""
        if self.value is None:
            self.left -= 1
            return self.left >= 0
        with self.value.get_lock():
            if self.value.value <= 0:
                return False
            self.value.value -= 1
            return True


def work(plan: Plan, tickets: Tickets, label: str = "") -> None:
    """One worker: run trials of the plan's study until the tickets are gone, printing one line per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # legkit prints its own line per trial
    study = optuna.load_study(study_name=plan.study, storage=open_storage(plan.storage), sampler=sampler(plan.space),
                              pruner=pruner(plan.space))

    def report(study, frozen) -> None:
        print(f"{label}trial {frozen.number}: {describe(frozen)}", flush=True)

    while tickets.take():
        study.optimize(lambda trial: run_trial(trial, plan), n_trials=1, catch=(Exception,),
                       callbacks=[report], gc_after_trial=True)


def describe(frozen) -> str:
    """One line about a finished trial: state, value, and its outcome or reason."""
    state = frozen.state.name.lower()
    value = f", value {frozen.value:,.0f}" if frozen.value is not None else ""
    why = frozen.user_attrs.get("outcome") or frozen.user_attrs.get("reason") or ""
    where = frozen.user_attrs.get("run")
    return f"{state}{value}" + (f": {why}" if why else "") + (f" ({where})" if where else "")


def _worker_main(plan: Plan, tickets: Tickets, label: str) -> None:
    """Entry point of a --jobs worker process (spawned: a fresh interpreter, nothing forked from the parent)."""
    try:
        work(plan, tickets, label)
    except LegkitError as exc:
        print(f"legkit: error: {label}{exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: Optuna has marked its trial failed; the parent says so
        sys.exit(130)


def run_workers(plan: Plan, trials: int, jobs: int) -> None:
    """Run `trials` trials of the plan's study in this process (jobs 1) or in `jobs` worker processes, each with
    an equal share of this machine's cores for physics and torch (unless --set gives them)."""
    if jobs == 1:
        work(plan, Tickets(trials))
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    share = max(1, (os.cpu_count() or 1) // jobs)
    plan = replace(plan, local=tuple(f"{k}={share}" for k in LOCAL_KEYS))  # before plan.sets: a --set of them wins
    tickets = Tickets(trials, ctx)
    workers = [ctx.Process(target=_worker_main, args=(plan, tickets, f"[worker {k}] "), name=f"legkit-tune-{k}")
               for k in range(jobs)]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        for w in workers:
            w.join(timeout=30)
        raise
    failed = [f"worker {k} (exit code {w.exitcode})" for k, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise LegkitError(f"{', '.join(failed)} stopped early; the study keeps every trial it told; see the "
                          "lines above")
