"""Shared fixtures: the Go2 model, the go2-walk task, and VecEnvs that are closed after each test."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import mujoco
import pytest

from legkit.robots import get_robot
from legkit.sim.scene import PhysicsConfig, build_model
from legkit.tasks import get_task


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny MLPs on a shared 2-core machine: one torch thread is several times faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def go2():
    return get_robot("go2")


@pytest.fixture(scope="session")
def go2_model(go2) -> mujoco.MjModel:
    """The compiled Go2 scene (robot + floor). Tests must not modify it."""
    return build_model(go2, PhysicsConfig())


@pytest.fixture
def walk_task():
    return get_task("go2-walk")


@pytest.fixture
def make_env():
    """Build LegkitVecEnvs for go2-walk (with optional TaskConfig field overrides) and close them afterwards."""
    from legkit.envs.vec_env import LegkitVecEnv

    envs = []

    def _make(num_envs: int = 4, seed: int = 0, nthread: int | None = 1, **task_overrides):
        task = get_task("go2-walk")
        if "termination" in task_overrides and isinstance(task_overrides["termination"], dict):
            task_overrides["termination"] = dataclasses.replace(task.termination, **task_overrides["termination"])
        env = LegkitVecEnv(dataclasses.replace(task, **task_overrides), num_envs, seed=seed, nthread=nthread)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    """One tiny go2-walk training run shared by the tests; tests that change a run work on a copy."""
    from cli_helpers import SMOKE

    from legkit.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main([*SMOKE, "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    return run


_PYTEST_TEMP_PARENT: list[Path] = []
"""pytest's per-user folder in the system temp directory (pytest-of-USER) when this session's temp folder is in it."""


def pytest_unconfigure(config):
    """Remove pytest-of-USER from the system temp directory when pytest has emptied it.

    With `tmp_path_retention_policy = "failed"` (pyproject.toml) pytest removes this session's folder when every
    test passed, but leaves its per-user parent with a `pytest-current` link to the removed folder. That link, once
    dead, and then the folder, if nothing else is in it (another session's kept folders, a run still going), go
    too: a green `make test` leaves nothing in the system temp directory."""
    for parent in _PYTEST_TEMP_PARENT:
        link = parent / "pytest-current"
        if link.is_symlink() and not link.exists():
            link.unlink(missing_ok=True)
        try:
            parent.rmdir()
        except OSError:  # not empty, or gone
            pass


@pytest.fixture(scope="session", autouse=True)
def _pytest_temp_parent(tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    if base.parent.name.startswith("pytest-of-") and base.parent.parent == Path(tempfile.gettempdir()).resolve():
        _PYTEST_TEMP_PARENT.append(base.parent)


LEAKS = ("SB3-*", "torchinductor_*")
"""What SB3 (a folder per learn() without a logger) and torch (its inductor cache, made by an optimizer step)
put in the system temp directory unless legkit sends it elsewhere."""


@pytest.fixture(scope="session", autouse=True)
def _no_temp_folders():
    """Nothing leaks into the system temp directory."""
    tmp = Path(tempfile.gettempdir())
    before = {p for pattern in LEAKS for p in tmp.glob(pattern)}
    yield
    leaked = {p for pattern in LEAKS for p in tmp.glob(pattern)} - before
    assert not leaked, f"the tests left folders in the temp directory: {sorted(map(str, leaked))[:3]}"
