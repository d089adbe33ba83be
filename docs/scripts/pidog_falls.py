"""Where and how a pidog-run policy falls: 32 robots for one episode each (deterministic, legkit eval's seed), and
for every robot that fell the time, its position, its distance to the arena's nearest wall, whether it touched an
obstacle or a wall in the second before, and which way it tipped (projected gravity in the body frame).

    .venv/bin/python docs/scripts/pidog_falls.py RUN [CHECKPOINT] [task.KEY=VALUE ...]

CHECKPOINT is best, latest or a step (default: the model in the run folder, its final one); the task.*
overrides are legkit eval's --set (e.g. task.arena.enabled=false: the same policy without obstacles or walls).
"""

import sys

import numpy as np
import torch

from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import PolicyActor, load_policy, load_run_config
from legkit.train.runs import find_policy, resolve_run

ROBOTS, SEED, NEAR_WALL = 32, 12345, 0.25


def falls(run: str, checkpoint: str | None, sets: list[str]) -> list[tuple]:
    """(time s, x, y, wall distance m, touched in the last second, base height, gravity x, y, z) for each robot
    that fell; the wall distance is inf without an arena."""
    policy = find_policy(resolve_run(run), checkpoint)
    cfg = load_run_config(policy, sets)
    model, norm = load_policy(policy)
    batch = LeggedBatch(cfg.task, ROBOTS, seed=SEED)
    act, s = PolicyActor(model, norm, True), batch.state
    torch.set_num_threads(1)
    up, last_touch, out = np.ones(ROBOTS, bool), np.full(ROBOTS, -np.inf), []
    try:
        obs = batch.observe()
        for t in range(batch.max_steps):
            _, term, trunc = batch.step(act(obs))
            act.ended(term | trunc)
            now = (t + 1) * batch.dt
            if batch.arena is not None:  # a touch at any physics substep counts
                last_touch[batch.arena.contacts(batch.sim.substep_sensordata).max(axis=1) > 0] = now
            for i in np.flatnonzero(up & term):
                xy = batch.sim.qpos[i, :2]
                wall = float(batch.arena.wall_distance(xy[None])[0]) if batch.arena is not None else np.inf
                out.append((now, *xy, wall, bool(now - last_touch[i] <= 1.0), float(s.base_height[i]),
                            *s.projected_gravity[i]))
            up &= ~(term | trunc)
            obs = batch.observe()
            if not up.any():
                break
    finally:
        batch.close()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    checkpoint = args[1] if len(args) > 1 and "=" not in args[1] else None
    rows = falls(args[0], checkpoint, [a for a in args[1:] if "=" in a])
    print(f"{len(rows)} of {ROBOTS} robots fell")
    for t, x, y, wall, hit, h, gx, gy, gz in rows:
        print(f"t {t:5.1f} s  x {x:+.2f} y {y:+.2f}  wall {wall:.2f} m  "
              f"touched in the last 1 s: {'yes' if hit else 'no '}  height {h:.3f} m  "
              f"gravity in the body ({gx:+.2f}, {gy:+.2f}, {gz:+.2f})")
    print(f"falls after touching an obstacle or a wall: {sum(r[4] for r in rows)}; within {NEAR_WALL} m of a "
          f"wall: {sum(r[3] <= NEAR_WALL for r in rows)}")
