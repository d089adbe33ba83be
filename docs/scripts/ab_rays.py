"""Env step rate of a PiDog recipe (pidog-arena, pidog-turn) with its ray sensors cast on one thread against all
cores' threads, alternating in one process (docs/performance.md, "Ray sensors on threads").

    .venv/bin/python docs/scripts/ab_rays.py                              # pidog-arena, the default threshold
    .venv/bin/python docs/scripts/ab_rays.py pidog-turn                   # its first stage: open ground
    .venv/bin/python docs/scripts/ab_rays.py pidog-arena 2000 20000 60000 # split at other thresholds (rays)

An env (256 robots, physics on all cores, seed 0) is built and stepped for each variant in turn, three rounds: the
RayScene that the sonar and the camera share keeps only its first scratch MjData (one thread, as before the
thirty-third session), or all of them with `MIN_SHARE_RAYS` at the default or at each threshold given. The readings
are the same either way (tests/test_sensors.py), so every variant is stepped with the same actions from the same
reset and its camera images are compared with the first's. Prints control steps per second, median of the rounds.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from legkit.envs.vec_env import LegkitVecEnv
from legkit.sim.sensors import RayScene
from legkit.train.config import build_config, recipe_file

ROBOTS, STEPS, ROUNDS = 256, 150, 3


def run(recipe: str, datas: int, threshold: int, actions: np.ndarray) -> tuple[float, np.ndarray]:
    """Steps per second and the camera frames of a new env (seed 0) whose ray scene uses its first `datas` scratch
    MjData (threads), splitting at `threshold` rays."""
    env = LegkitVecEnv(build_config("pidog-run", str(recipe_file(recipe))).task, ROBOTS, seed=0)
    scene = env.batch.sensors.scene
    scene.datas, scene.MIN_SHARE_RAYS = scene.datas[:datas], threshold  # shares() splits over len(datas) threads
    env.reset()
    frames = []
    t0 = time.perf_counter()
    for k in range(STEPS):
        env.step(actions[k % len(actions)])
        frames.append(env.batch.state.camera.copy())
    rate = STEPS * ROBOTS / (time.perf_counter() - t0)
    env.close()
    return rate, np.array(frames)


def main() -> None:
    recipe = sys.argv[1] if len(sys.argv) > 1 else "pidog-arena"
    thresholds = [int(t) for t in sys.argv[2:]] or [RayScene.MIN_SHARE_RAYS]
    cores = os.cpu_count() or 1
    variants = {"1 thread": (1, RayScene.MIN_SHARE_RAYS)}
    variants.update({f"{cores} threads, split at {t:,} rays": (cores, t) for t in thresholds})
    actions = np.random.default_rng(0).uniform(-1, 1, (64, ROBOTS, 12)).astype(np.float32)  # the PiDog's 12 servos
    rates: dict[str, list[float]] = {k: [] for k in variants}
    same = True
    for _ in range(ROUNDS):
        first = None
        for name, (datas, threshold) in variants.items():
            rate, frames = run(recipe, datas, threshold, actions)
            rates[name].append(rate)
            first = frames if first is None else first
            same &= bool(np.array_equal(frames, first))
    one = np.median(rates["1 thread"])
    print(f"{recipe}, {ROBOTS} robots, physics on {cores} threads; env steps/s, median of {ROUNDS}:")
    for name, r in rates.items():
        print(f"  rays on {name}: {np.median(r):,.0f} ({np.median(r) / one:.2f}x)")
    print(f"  camera images identical across variants: {same}")


if __name__ == "__main__":
    main()
