"""Env step rate of BatchSim at an older git revision against the working tree's, alternating in one process.

    .venv/bin/python docs/scripts/ab_batchsim.py 4f1b1ff      # the last revision that stepped through mujoco.rollout

The old src/legkit/sim/batch.py is read with `git show REV:...` into a scratch folder under runs/ and
imported beside the current one; the env (LegkitVecEnv, random actions) is built with each in turn, three
times, and the median rates are printed (control steps per second).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import legkit.envs.core as core
from legkit.envs.vec_env import LegkitVecEnv
from legkit.sim.batch import BatchSim
from legkit.train.config import build_config

TASKS = (("go2-walk", 256), ("go2-joystick", 256), ("humanoid-stand", 256), ("go2-rough", 256), ("pidog-run", 64))


def old_batchsim(rev: str):
    root = Path(__file__).resolve().parents[2]
    src = subprocess.run(["git", "show", f"{rev}:src/legkit/sim/batch.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    path = root / "runs" / "ab_batchsim" / f"batch_{rev}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"batch_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BatchSim


def rate(task: str, n: int, cls, steps: int = 200) -> float:
    core.BatchSim = cls  # LeggedBatch builds its simulator from this name
    env = LegkitVecEnv(build_config(task).task, n, seed=0)
    env.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (64, n, env.batch.action_dim)).astype(np.float32)
    for k in range(10):
        env.step(actions[k])
    t0 = time.perf_counter()
    for k in range(steps):
        env.step(actions[k % 64])
    out = steps * n / (time.perf_counter() - t0)
    env.close()
    return out


def main() -> None:
    old = old_batchsim(sys.argv[1] if len(sys.argv) > 1 else "4f1b1ff")
    for task, n in TASKS:
        a, b = [], []
        for _ in range(3):
            a.append(rate(task, n, old))
            b.append(rate(task, n, BatchSim))
        print(f"{task:15s} n={n}: old {np.median(a):8.0f}  new {np.median(b):8.0f} steps/s  "
              f"ratio {np.median(b) / np.median(a):.2f}", flush=True)


if __name__ == "__main__":
    main()
