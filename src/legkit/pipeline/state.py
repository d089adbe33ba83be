"""An experiment's record, pipeline.json, and what keeps it consistent: one pipeline per folder (a lock), atomic
writes, and stage folders that replace their old selves only once they are whole.

    pipeline.json
        pipeline, name, created, legkit_version, git_revision
        config       the resolved configuration (legkit.pipeline.config.PipelineConfig as a tree)
        stages       {stage: {status, started, ended, duration_s, config, metrics, error, attempts: [...]}}

A stage's status is one of
    running   a process is (or was, until it died) working in STAGE.partial/
    done      STAGE/ holds its finished outputs (final_model/ for package)
    failed    its last attempt ended with an error; STAGE.partial/ keeps what it had done
    stale     done, but a stage before it has been redone since: it runs again on the next run
A `running` stage found by a pipeline that holds the lock died with its process (kill -9, a power cut): it
resumes from STAGE.partial/.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from legkit import LegkitError
from legkit.pipeline.config import FOLDERS
from legkit.train.checkpoints import atomic_write, json_bytes

STATE = "pipeline.json"
LOCK = "pipeline.lock"
PARTIAL = ".partial"
"""STAGE.partial/: where a stage works until it is done."""

try:
    import fcntl
except ImportError:  # Windows: experiments are not locked
    fcntl = None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def read_state(folder: Path) -> dict | None:
    """pipeline.json of `folder`, or None when the folder holds no experiment."""
    path = folder / STATE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LegkitError(f"{path} is unreadable ({type(exc).__name__}: {exc}); it is written atomically, so "
                          "something else changed it: restore it or give another --name") from None
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict) or "config" not in state:
        raise LegkitError(f"{path} is not a legkit pipeline record; give another --name")
    return state


def write_state(folder: Path, state: dict) -> None:
    atomic_write(folder / STATE, json_bytes(state))


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder`/pipeline.lock for the body: one pipeline per experiment. The kernel drops it
    when the process ends by any means; the file is removed on a normal exit."""
    if fcntl is None:
        yield
        return
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LegkitError(f"experiment '{folder}' is being run by process {holder} (it holds {path}); one pipeline "
                          "per experiment: wait for it to end, or stop it, then run the same command again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def output(folder: Path, stage: str) -> Path:
    """Where `stage`'s finished outputs are (final_model/ for package)."""
    return folder / FOLDERS[stage]


def partial(folder: Path, stage: str) -> Path:
    """Where `stage` works until it is done."""
    return folder / f"{FOLDERS[stage]}{PARTIAL}"


def promote(folder: Path, stage: str) -> None:
    """Make STAGE.partial/ the stage's outputs STAGE/: an older STAGE/ is replaced only now that the new one is
    whole (renamed aside, the new one renamed in, the old one deleted; `recover` finishes a cut swap)."""
    work, final = partial(folder, stage), output(folder, stage)
    if final.exists():
        old = folder / f".{final.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old)
    else:
        os.replace(work, final)


def recover(folder: Path, stages: tuple[str, ...]) -> None:
    """Finish a promotion that a kill cut between its renames: the old outputs come back when no new ones
    took their place; when the new ones did, the old ones go."""
    for stage in stages:
        final = output(folder, stage)
        old = folder / f".{final.name}.old"
        if old.exists():
            if final.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, final)


def discard(path: Path) -> None:
    """Delete the unfinished work in `path` (a STAGE.partial/), renamed first so that a cut delete leaves no half
    folder under its name."""
    if path.exists():
        doomed = path.with_name(f".{path.name}.del")
        if doomed.exists():
            shutil.rmtree(doomed)
        os.replace(path, doomed)
        shutil.rmtree(doomed)
