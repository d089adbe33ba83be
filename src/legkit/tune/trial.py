"""One trial of `legkit tune`: an ordinary legkit run folder trained in this process.

The trial's folder is RUNS/tune/STUDY/trial-NNNN (NNNN: Optuna's trial number; a folder of that name left
from an earlier study is never reused: trial-NNNN-2 then). It holds what `legkit train` writes (config.yaml,
meta.json, tb/, episodes.csv, evaluations.csv, checkpoints/, best/, model.zip...), so `legkit eval`, `plots`
and `train --resume` work on it; its meta.json adds `tune`: study, trial number, storage, parameters, state,
value and why. The trial's user attributes in the study hold its run folder (`run`, with `host`), its
`--set` strings (`sets`), and `outcome` (complete) or `reason` (pruned, failed).

A trial fails, and the study goes on, when its configuration is invalid (a combination the space allows, such
as a batch larger than the rollout), when the NaN guard stops training, or on any other exception.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from legkit import LegkitError
from legkit.train.runs import META, write_json
from legkit.tune.objective import Pruning
from legkit.tune.space import Space, as_set, suggest
from legkit.tune.storage import shown

TRIAL_DIR = "trial-{:04d}"


class TrialFailed(Exception):
    """A trial that could not give a value; its reason is in the trial's user attribute `reason`."""


@dataclass(frozen=True)
class Plan:
    """What every trial of a worker does: the task, its fixed settings, the space, and where things go."""

    task: str
    study: str
    storage: str
    """The storage URL (legkit.tune.storage)."""
    folder: Path
    """RUNS/tune/STUDY: the trial folders of this machine."""
    budget: int
    """Environment steps per trial (S)."""
    sets: tuple[str, ...]
    """`--set` strings applied to every trial before its parameters: the space's settings, the user's --set,
    run.total_steps, run.video_every=0, and this worker's own --set of run.nthread or run.torch_threads."""
    local: tuple[str, ...]
    """--jobs' share of this machine's cores (run.nthread, run.torch_threads), applied first (the space's
    settings and a --set of them win); never recorded in the study."""
    space: Space


def trial_sets(plan: Plan, sets: list[str]) -> list[str]:
    """Every `--set` of a trial whose parameters are `sets`, in the order they apply."""
    return [*plan.local, *plan.sets, *sets]


def run_trial(trial, plan: Plan) -> float:
    """Optuna objective: train one trial and return its value; raise optuna.TrialPruned or TrialFailed."""
    import optuna

    from legkit.evaluate.best import BestModel
    from legkit.train.config import build_config
    from legkit.train.trainer import model_start, train

    params = suggest(trial, plan.space)
    sets = [as_set(k, v) for k, v in params.items()]
    trial.set_user_attr("sets", sets)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())  # which worker process ran it
    try:
        cfg = build_config(plan.task, sets=trial_sets(plan, sets))
        start = model_start(cfg)  # finetune.from_run / bc_policy: every trial starts from the same model
    except LegkitError as exc:
        _fail(trial, f"bad config: {exc}")
    try:
        run = _new_folder(plan.folder, trial.number)
    except LegkitError as exc:
        _fail(trial, str(exc))
    trial.set_user_attr("run", str(run.resolve()))
    pruning = Pruning(trial, cfg.task.success, plan.budget, cfg.run.best_every)
    best = BestModel(cfg, run, cfg.run.best_every, cfg.run.best_episodes, observers=(pruning,))
    record = {"study": plan.study, "trial": trial.number, "storage": shown(plan.storage), "params": params}
    try:
        with warnings.catch_warnings():  # the space pairs batch sizes and rollouts freely: SB3's advice is noise here
            warnings.filterwarnings("ignore", message="You have specified a mini-batch size", category=UserWarning)
            train(cfg, run, start=start, progress_bar=False, extra_callbacks=(best,), render_clip=None)
    except Exception as exc:  # noqa: BLE001 - contained: the trial fails, the study goes on
        reason = str(exc).splitlines()[0] if isinstance(exc, LegkitError) else _crash(exc)
        if not isinstance(exc, LegkitError):
            # the stack (its innermost frames) and the error's first line: a tensor in the message can be huge
            stack = "".join(traceback.format_tb(exc.__traceback__))[-3500:]
            trial.set_user_attr("traceback", f"{stack}{reason.removeprefix('crash: ')}")
        if not (run / "tb").exists():  # failed before training began: no half-made run folder stays
            shutil.rmtree(run, ignore_errors=True)
            trial.set_user_attr("run", None)
            _fail(trial, reason + "; no run folder kept (training had not begun)")
        _record(run, {**record, "state": "failed", "reason": reason})
        _fail(trial, reason)
    if pruning.value is None:
        _record(run, {**record, "state": "failed", "reason": "no evaluation"})
        _fail(trial, "training ended without an evaluation (run.best_every > the trial's steps?)")
    if pruning.pruned_at is not None:
        reason = (f"pruned at step {pruning.pruned_at:,}: value {pruning.value:,.0f} was worse than the median of "
                  f"earlier trials there; {pruning.outcome()}")
        trial.set_user_attr("reason", reason)
        _record(run, {**record, "state": "pruned", "value": pruning.value, "reason": reason})
        raise optuna.TrialPruned(reason)
    trial.set_user_attr("outcome", pruning.outcome())
    _record(run, {**record, "state": "complete", "value": pruning.value, "outcome": pruning.outcome()})
    return pruning.value


def _fail(trial, reason: str):
    trial.set_user_attr("reason", reason)
    raise TrialFailed(reason)


def _crash(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"crash: {type(exc).__name__}" + (f": {text[0][:300]}" if text else "")


def _new_folder(folder: Path, number: int) -> Path:
    """RUNS/tune/STUDY/trial-NNNN, made now; never a folder that exists (trial-NNNN-2 then)."""
    base = folder / TRIAL_DIR.format(number)
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        except OSError as exc:
            raise LegkitError(f"cannot create the trial folder '{path}': {exc.strerror or exc}") from None


def _record(run: Path, tune: dict) -> None:
    """Add the trial's `tune` record to RUN/meta.json (written by the trainer)."""
    path = run / META
    meta = json.loads(path.read_text()) if path.exists() else {}
    write_json(path, {**meta, "tune": tune})
