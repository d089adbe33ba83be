"""finetune.first: one run of two stages, the first trained in RUN/first/ and the main stage started from it.

    RUN/config.yaml     the main stage's config; finetune.first as it was given
    RUN/first/          the first stage: an ordinary run folder (config.yaml, checkpoints, model.zip, eval.json...)
    RUN/model.zip ...   the main stage, started from RUN/first's final model as finetune.from_run would start it

`first_config` builds and checks the first stage before any folder is made: its file, its keys, no first stage of
its own, and a model that the main stage can start from (legkit.train.from_run's checks). `begin` lays out a new
run; `resume_first` says what is left of the first stage of a run resumed before its main stage began (nothing, a
resume from its latest checkpoint, or a start again when it had none); `main_start` is the main stage's model start.
Who trains each stage (the CLI) trains RUN/first as any run folder, so resume, supervision and evaluation are the
ordinary ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from legkit import LegkitError
from legkit.config import load_yaml, parse_set, to_dict
from legkit.envs.core import task_shape
from legkit.train.checkpoints import recover
from legkit.train.config import Config, build_config
from legkit.train.from_run import RunStart, check_fit, source_at
from legkit.train.resume import ResumePlan, config_changes, plan_resume, refuse_fixed
from legkit.train.runs import CONFIG, META, MODEL, NORM, checkpoints, write_yaml

FIRST = "first"
"""RUN/first/: the first stage's run folder."""


@dataclass(frozen=True)
class FirstStage:
    """What is left to do of a run's first stage (trained in RUN/first)."""

    cfg: Config
    plan: ResumePlan | None = None
    """Where its training continues (None: from its start)."""
    done: bool = False
    """It finished: it is not trained again, the main stage starts from its final model."""


class FirstStageStart(RunStart):
    """The main stage's start: RUN/first's final model, as finetune.from_run starts from a run."""

    def describe(self) -> dict:
        return {"first": self.cfg.finetune.first, **super().describe()}


def first_file(given: str, config_file: str | None, sets: list[str]) -> Path:
    """Where finetune.first = `given` is: a relative path from the folder of `config_file` when that file names it
    (and no --set in `sets` does), else from the current directory."""
    path = Path(given).expanduser()
    if path.is_absolute() or config_file is None:
        return path
    keys = [parse_set(s)[0] for s in sets]
    if any(k[0] == "finetune" and k[1:2] in ([], ["first"]) for k in keys):  # the command line named it
        return path
    named = (load_yaml(config_file).get("finetune") or {}).get("first")
    return Path(config_file).parent / path if named == given else path


def first_config(cfg: Config, config_file: str | None, sets: list[str]) -> Config:
    """The first stage's config (its file over the task's defaults, with `cfg`'s run.seed unless it sets one),
    checked to be a stage the main stage `cfg` can start from; a one-line LegkitError naming finetune.first.
    `config_file` and `sets` are what `cfg` was built from (--config, --set): where a relative path is read from."""
    given = str(cfg.finetune.first)
    path = first_file(given, config_file, sets)
    where = f"finetune.first '{given}'"
    if not path.is_file():
        raise LegkitError(f"{where}: no file {path} (a YAML config of task {cfg.task_name}; a relative path is read "
                          "from the folder of the --config file that names it, else from the current directory)")
    try:
        tree = load_yaml(str(path))
        seed = [] if "seed" in (tree.get("run") or {}) else [f"run.seed={cfg.run.seed}"]
        first = build_config(cfg.task_name, str(path), seed)
    except LegkitError as exc:
        raise LegkitError(f"{where} ({path}): {exc}") from None
    if first.finetune.first is not None:
        raise LegkitError(f"{where} names a first stage itself (finetune.first = '{first.finetune.first}'): a run "
                          "has one first stage; train the earlier one as a run of its own and start the first stage "
                          "from it with finetune.from_run in its file")
    check_stage(first, cfg, f"{where} (the first stage)")
    return first


def check_stage(first: Config, cfg: Config, where: str) -> None:
    """Raise a one-line LegkitError when the main stage `cfg` could not start from a model trained under `first`."""
    (trained, _), (mine, _) = task_shape(first.task), task_shape(cfg.task)
    check_fit(where, first.ppo.algorithm, trained, to_dict(first), cfg, mine)


def begin(run: Path, first: Config, cfg: Config) -> None:
    """Lay out a new two-stage run in the empty folder `run`: RUN/first/config.yaml, then RUN/config.yaml, so that
    a run killed at any moment after is one that `legkit train --resume RUN` continues."""
    (run / FIRST).mkdir()
    write_yaml(run / FIRST / CONFIG, to_dict(first))
    write_yaml(run / CONFIG, to_dict(cfg))


def main_begun(run: Path) -> bool:
    """Whether the main stage of `run` has a checkpoint or a final model: a resume then continues it as any run's.
    What a killed process left half done in either stage is finished first (a checkpoint cut mid-swap would
    otherwise look missing)."""
    recover(run)
    recover(run / FIRST)
    return bool(checkpoints(run)) or (run / MODEL).exists()


def finished(folder: Path) -> bool:
    """Whether the run in `folder` wrote its final model (meta.json says finished, written last)."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("finished")) and (folder / MODEL).exists() and (folder / NORM).exists()


def resume_first(run: Path, saved: Config, cfg: Config) -> FirstStage:
    """What is left of the first stage of `run` (saved config `saved`, to be resumed as `cfg`), whose main stage
    has not begun; the changes `cfg` makes (--steps, --set: the main stage's) are checked as a resume's."""
    refuse_fixed(config_changes(saved, cfg))
    folder = run / FIRST
    if not (folder / CONFIG).is_file():
        raise LegkitError(f"run '{run}' names finetune.first = '{saved.finetune.first}' but has no first stage "
                          f"({folder / CONFIG} is missing); start a new run with legkit train TASK")
    try:
        first = build_config(saved.task_name, base=load_yaml(str(folder / CONFIG)))
    except LegkitError as exc:
        raise LegkitError(f"the first stage of run '{run}': {exc}") from None
    if finished(folder):
        return FirstStage(first, done=True)
    if not checkpoints(folder):  # cut before its first checkpoint: it starts again
        return FirstStage(first)
    return FirstStage(first, plan_resume(folder, first, first, finishing=True))


def main_start(run: Path, cfg: Config) -> FirstStageStart:
    """The main stage's start from RUN/first's final model, checked as finetune.from_run checks its source."""
    layout, _ = task_shape(cfg.task)
    return FirstStageStart(cfg, source_at(run / FIRST, None, cfg, layout, f"finetune.first ({run / FIRST})"))


def began(run: Path) -> bool:
    """Whether training of either stage began in `run` (TensorBoard logs): a failed new run before it leaves none."""
    return (run / "tb").exists() or (run / FIRST / "tb").exists()
