"""Where and how a pidog-run policy falls: 32 robots for one episode each (deterministic, legkit eval's seed), and
for every robot that fell the time, its position in the arena (walls at +-2 m), whether it touched an obstacle or
a wall in the second before, and which way it tipped (projected gravity in the body frame).

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

ROBOTS, SEED, WALL_ZONE = 32, 12345, 1.75


def falls(run: str, checkpoint: str | None, sets: list[str]) -> list[tuple]:
    """(time s, x, y, touched in the last second, base height, gravity x, y, z) for each robot that fell."""
    policy = find_policy(resolve_run(run), checkpoint)
    cfg = load_run_config(policy, sets)
    model, norm = load_policy(policy)
    batch = LeggedBatch(cfg.task, ROBOTS, seed=SEED)
    act, s = PolicyActor(model, norm, True), batch.state
    torch.set_num_threads(1)
    up, touched, out = np.ones(ROBOTS, bool), [], []
    try:
        obs = batch.observe()
        for t in range(batch.max_steps):
            _, term, trunc = batch.step(act(obs))
            act.ended(term | trunc)
            touched.append(batch.arena.contacts(batch.sim.substep_sensordata).max(axis=1) > 0
                           if batch.arena is not None else np.zeros(ROBOTS, bool))
            recent = np.array(touched[-int(round(1.0 / batch.dt)):]).any(axis=0)
            for i in np.flatnonzero(up & term):
                out.append(((t + 1) * batch.dt, *batch.sim.qpos[i, :2], bool(recent[i]), float(s.base_height[i]),
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
    for t, x, y, hit, h, gx, gy, gz in rows:
        print(f"t {t:5.1f} s  x {x:+.2f} y {y:+.2f}  touched in the last 1 s: {'yes' if hit else 'no '}  "
              f"height {h:.3f} m  gravity in the body ({gx:+.2f}, {gy:+.2f}, {gz:+.2f})")
    near_wall = sum(max(abs(x), abs(y)) > WALL_ZONE for _, x, y, *_ in rows)
    print(f"falls after touching an obstacle or a wall: {sum(r[3] for r in rows)}; within "
          f"{2.0 - WALL_ZONE:.2f} m of a wall: {near_wall}")
