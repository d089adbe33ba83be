"""What the command-line tests share: the smoke-run arguments, the entry point, file snapshots, error lines."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SMOKE = ["train", "go2-walk", "--steps", "4096", "--envs", "16", "--set", "ppo.n_steps=64",
         "--set", "ppo.batch_size=256", "--set", "run.checkpoint_every=1024", "--set", "run.eval_episodes=2",
         "--set", "run.best_every=2048", "--set", "run.best_episodes=2", "--no-progress"]
METRICS = ("mean_forward_velocity", "velocity_tracking_rms", "survival_rate", "mean_base_height", "base_height_std",
           "early_termination_rate", "mean_time_to_fall_s", "mean_action_magnitude", "energy_per_metre_J")
LEGKIT = Path(sys.executable).with_name("legkit")  # the installed console script of this virtualenv


def run_legkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed entry point in a fresh process (one torch thread: the test machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(LEGKIT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every folder and file under `roots`: files by content hash, size and mtime."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_dir():
                out[str(p)] = ("dir",)
            else:
                st = p.stat()
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("legkit: error: "), lines[0]
    return lines[0]
