"""How much of each obstacle kind the arena recipe's depth camera sees: one obstacle straight ahead of a PiDog at its
reset pose, its near face d m in front of the base, against the image with every obstacle parked (docs/results.md,
PiDog, thirty-third session).

    .venv/bin/python docs/scripts/pidog_curb_view.py          # the head as reset puts it
    .venv/bin/python docs/scripts/pidog_curb_view.py 0.5      # the head pitched 0.5 rad, as joint_pose asks

Prints, per kind (the lowest curb, a box, a thin post) and distance, the pixels whose depth changed by more than
2 cm and the largest change.
"""

from __future__ import annotations

import sys

import mujoco
import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.sim.arena import PARK
from legkit.sim.sensors import FULLPHYSICS
from legkit.train.config import build_config, recipe_file

DISTANCES = (0.25, 0.4, 0.6, 0.8, 1.2)


def main() -> None:
    task = build_config("pidog-run", str(recipe_file("pidog-arena"))).task
    batch = LeggedBatch(task, 1, seed=0, nthread=1)
    batch.reset(record=False)
    model, arena, camera = batch.model, batch.arena, batch.sensors.camera
    data = mujoco.MjData(model)
    state = batch.sim.state[:1].copy()
    mujoco.mj_setState(model, data, state[0], FULLPHYSICS)
    pitch = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "head_pitch_joint")]
    print(f"head pitch at reset {data.qpos[pitch]:.3f} rad", end="")
    if len(sys.argv) > 1:
        data.qpos[pitch] = float(sys.argv[1])
        mujoco.mj_getState(model, data, state[0], FULLPHYSICS)
        print(f", set to {data.qpos[pitch]:.3f}", end="")
    print()
    x, y = data.qpos[0], data.qpos[1]
    yaw = 2 * np.arctan2(data.qpos[6], data.qpos[3])
    ahead = np.array([np.cos(yaw), np.sin(yaw)])
    m = len(arena.names)
    pos, quat = np.tile(np.array(PARK, float), (1, m, 1)), np.tile([1.0, 0.0, 0.0, 0.0], (1, m, 1))

    def image(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        mocap = np.zeros((1, arena.nmocap * 7))
        arena.write(mocap, pos, quat)
        return camera.read(state, None, mocap)[0]

    empty = image(pos, quat)
    for kind in ("low", "box", "narrow"):
        ids = [i for i in range(m) if arena.kinds[i] == kind]
        i = min(ids, key=lambda j: arena.half_sizes[j, 2])  # the lowest of its kind
        half = arena.half_sizes[i]
        for d in DISTANCES:
            p, q = pos.copy(), quat.copy()
            p[0, i] = [*(np.array([x, y]) + ahead * (d + half[0])), half[2]]
            q[0, i] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            change = np.abs(image(p, q) - empty)
            print(f"{kind} {2 * half[0]:.2f} x {2 * half[1]:.2f} x {2 * half[2]:.3f} m, near face {d:.2f} m ahead: "
                  f"{int((change > 0.02).sum())} of {change.size} px changed by > 2 cm, largest {change.max():.2f} m")
    batch.close()


if __name__ == "__main__":
    main()
