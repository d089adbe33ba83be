"""Where MuJoCo's warnings go: a run's mujoco.log while it trains, otherwise a count the CLI reports.

MuJoCo's default handler appends every warning to MUJOCO_LOG.TXT in the user's working directory.
legkit installs its own handler once (on import of legkit.sim); it is called from MuJoCo's physics
threads too, which the bindings run under the GIL.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import mujoco

_target: list[Path] = []
"""The file warnings are appended to now (the innermost `mujoco_warnings_to`), if any."""
_unreported: list[str] = []
"""Warnings given while no file was set, since the last `take_unreported`."""


def _handler(message: str) -> None:
    if _target:
        with open(_target[-1], "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    else:
        _unreported.append(message)


@contextlib.contextmanager
def mujoco_warnings_to(path: Path) -> Iterator[None]:
    """Append MuJoCo's warnings to `path` while the block runs."""
    _target.append(path)
    try:
        yield
    finally:
        _target.pop()


def take_unreported() -> list[str]:
    """The warnings given outside `mujoco_warnings_to` since the last call (and forget them)."""
    out = list(_unreported)
    _unreported.clear()
    return out


def install() -> None:
    """Route MuJoCo's warnings through legkit (idempotent)."""
    mujoco.set_mju_user_warning(_handler)
