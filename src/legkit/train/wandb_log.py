"""Optional Weights & Biases logging: `legkit train --wandb [online|offline]`.

WandbOutputFormat is an SB3 output format beside TensorBoard's: every scalar the logger writes goes
to the wandb run under the same key at the same step (environment steps), and each training clip
(RUN/videos/step_N.mp4) goes to it as a wandb Video under `video/policy` (log_clip). The run's files
are in RUN/wandb/; its id is kept in meta.json (`wandb_id`), so that `train --resume` and every
process of a supervised run continue the same wandb run.

wandb is imported here only, and only when a run asks for it: legkit runs without it installed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter, Logger

from legkit import LegkitError

MODES = ("online", "offline")
PROJECT = "legkit"
"""The wandb project, unless WANDB_PROJECT names another."""
CLIP_KEY = "video/policy"
"""Where clips go: the key of TensorBoard's preview GIFs."""
INSTALL = "pip install wandb"


@dataclass(frozen=True)
class WandbSettings:
    """How a run logs to Weights & Biases."""

    mode: str | None = None
    """"online" or "offline"; None: wandb's own choice (WANDB_MODE, else online)."""


def wandb_settings(mode: str) -> WandbSettings:
    """The settings `--wandb MODE` asks for ("" for a bare --wandb); a one-line LegkitError for an unknown
    mode or when wandb is not installed. Imports wandb, before supervised training forks: the staging
    folders wandb makes in the temp dir on import are removed at exit, which a child's os._exit skips."""
    if mode not in ("", *MODES):
        raise LegkitError(f"--wandb takes {' or '.join(MODES)} (or nothing: online unless WANDB_MODE says "
                          f"otherwise), got '{mode}'; a task name goes before --wandb")
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise LegkitError(f"--wandb needs the wandb package, which is not installed: {INSTALL} "
                          "(or pip install -e '.[dev]')") from None
    return WandbSettings(mode or None)


def new_run_id() -> str:
    """A fresh wandb run id: 8 base-36 characters, as wandb makes them."""
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(chars) for _ in range(8))


class WandbOutputFormat(KVWriter):
    """An SB3 KVWriter that logs every number TensorBoard gets to a wandb run, at the same step."""

    def __init__(self, run: Any):
        self.run = run
        self.finished = False

    @classmethod
    def start(cls, settings: WandbSettings, run_dir: Path, config: dict, run_id: str | None) -> WandbOutputFormat:
        """Start the wandb run of legkit run `run_dir`, or continue the one with `run_id` (None: a new id)."""
        import wandb

        try:
            run = wandb.init(project=os.environ.get("WANDB_PROJECT") or PROJECT, name=run_dir.name,
                             id=run_id or new_run_id(), config=config, dir=str(run_dir), mode=settings.mode,
                             resume="allow")
        except wandb.errors.Error as exc:  # no API key, no network, a bad WANDB_* setting
            what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LegkitError(f"wandb could not start a run: {what}; log in with 'wandb login', or log without "
                              "a network with --wandb offline (and 'wandb sync' later)") from None
        return cls(run)

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        """Log the numbers of one logger dump at environment step `step`, skipping what TensorBoard skips."""
        numbers = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if "tensorboard" in excluded or "wandb" in excluded or isinstance(value, str):
                continue
            if isinstance(value, (bool, int, float, np.number, np.bool_)):
                numbers[key] = value.item() if isinstance(value, np.generic) else value
        if numbers:
            self.run.log(numbers, step=int(step))

    def log_clip(self, path: Path, step: int) -> None:
        """Log the MP4 at `path` as a wandb Video under `video/policy` at environment step `step`."""
        import wandb

        self.run.log({CLIP_KEY: wandb.Video(str(path), format="mp4")}, step=int(step))

    def finish(self, failed: bool = False) -> None:
        """End this process's part of the wandb run (marked failed when training stopped with an error)."""
        if not self.finished:
            self.finished = True
            self.run.finish(exit_code=1 if failed else 0)

    def close(self) -> None:
        """SB3's Logger.close: finish the wandb run (if train has not already)."""
        self.finish()


def log_clip(logger: Logger, path: Path, step: int) -> None:
    """Log the clip at `path` to the wandb run among `logger`'s outputs, if there is one."""
    for output in logger.output_formats:
        if isinstance(output, WandbOutputFormat):
            output.log_clip(path, step)
