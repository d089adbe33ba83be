"""One trainer per run folder: an exclusive flock on RUN/train.lock for as long as a process trains the run.

`legkit train` takes it before it reads or repairs the run (`--resume` recovers half-done writes, which would
break the files of a trainer still writing them) and keeps it until it returns; a second trainer of the same
folder fails at once with a one-line error naming the folder and the pid in the lock file. The kernel drops
the lock when its holder exits by any means (kill -9 too); the file, which only names the holder, is removed
on a normal exit, so a run that nobody trains has none and a refused resume leaves the run as it was.

A supervised run (train/supervise.py) is held by the supervisor: its forked training children share its
open lock (flock belongs to the open file, and a fork shares it), and `hold_run` in a child sees that the
run is held already. Where fcntl is missing (Windows) runs are not locked.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from legkit import LegkitError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = "train.lock"
"""The lock file inside a run folder; it holds the pid of the process that trains the run."""
_held: dict[Path, int] = {}
"""Run folders this process holds (resolved path -> lock file descriptor); a forked child inherits both."""


@contextlib.contextmanager
def hold_run(run: Path) -> Iterator[None]:
    """Hold `run`'s lock for the body; no-op when this process (or the supervisor it was forked from) holds it."""
    key = run.resolve()
    if fcntl is None or key in _held:
        yield
        return
    fd = _acquire(run)
    _held[key] = fd
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(FileNotFoundError):  # a failed new run's folder may be gone already
            os.unlink(run / LOCK)  # first, while still held: a waiting opener then sees another file and retries
        os.close(fd)


F = TypeVar("F", bound=Callable)


def holding_run(fn: F) -> F:
    """`fn(cfg, run, ...)` (train.trainer.train) called while holding the lock of `run`, its second argument."""

    @functools.wraps(fn)
    def locked(cfg, run: Path, *args, **kwargs):
        with hold_run(run):
            return fn(cfg, run, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _acquire(run: Path) -> int:
    """Open and lock RUN/train.lock without waiting, write this pid into it; a LegkitError when it is held."""
    path = run / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LegkitError(f"cannot create the lock file {path}: {exc.strerror or exc}; "
                              "the run folder must be writable to train it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            what = f"run '{run}' is being trained by process {holder} (it holds {path})"
            raise LegkitError(f"{what}; one trainer per run folder: wait for it to end, or stop it, then "
                              f"legkit train --resume {run}") from None
        try:  # the last holder may have removed the file between our open and our lock: lock the current one
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int, wait_s: float = 1.0) -> str:
    """The pid written in the lock file (its holder writes it right after locking: wait up to `wait_s` s)."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text or time.monotonic() > deadline:
            return text or "(pid not written)"
        time.sleep(0.02)
