"""Where a pidog-run policy holds its head (camera and ultrasonic) and tail: the mean and std of those four joint
angles (rad) from 1 to 6 s of one deterministic episode of 32 robots, legkit eval's seed. Head pitch is positive
nose-down.

    .venv/bin/python docs/scripts/pidog_head_pose.py RUN [CHECKPOINT]

CHECKPOINT is best, latest or a step (default: the model in the run folder, its final one).
"""

import sys

import numpy as np
import torch

from legkit.envs.core import LeggedBatch
from legkit.evaluate.rollout import PolicyActor, load_policy, load_run_config
from legkit.train.runs import find_policy, resolve_run

ROBOTS, SEED, FIRST, LAST = 32, 12345, 50, 300
"""Robots, reset seed, and the control steps (50 Hz) averaged over."""
JOINTS = ("head_yaw_joint", "head_roll_joint", "head_pitch_joint", "tail_joint")


def head_pose(run: str, checkpoint: str | None) -> tuple[np.ndarray, np.ndarray]:
    policy = find_policy(resolve_run(run), checkpoint)
    cfg = load_run_config(policy, [])
    model, norm = load_policy(policy)
    batch = LeggedBatch(cfg.task, ROBOTS, seed=SEED)
    act, idx = PolicyActor(model, norm, True), batch.state.joint_index(JOINTS, "JOINTS")
    torch.set_num_threads(1)
    angles = []
    try:
        obs = batch.observe()
        for t in range(LAST):
            _, term, trunc = batch.step(act(obs))
            act.ended(term | trunc)
            if t >= FIRST:
                angles.append(batch.state.joint_pos[:, idx].copy())
            obs = batch.observe()
    finally:
        batch.close()
    angles = np.asarray(angles)
    return angles.mean(axis=(0, 1)), angles.std(axis=(0, 1))


if __name__ == "__main__":
    mean, std = head_pose(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    for name, m, s in zip(JOINTS, mean, std):
        print(f"{name:18s} mean {m:+.3f} rad  std {s:.3f}")
