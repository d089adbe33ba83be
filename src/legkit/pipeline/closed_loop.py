"""Closed-loop evaluation of a cloned policy: does it do what the scripted gait it imitates does?

A low open-loop loss proves little: a cloned policy acts on the states its own errors lead to. For every
behaviour, the cloned policy drives `robots` PiDogs and the scripted gait drives as many more, from the same
starts (same seed: same poses, same obstacles), for `seconds`. Compared per behaviour:

    survival               share of the policy's robots still up at the end (the scripted gait's beside it)
    joint_rms              RMS (rad) of the policy's joint angles minus the scripted robots' at the same time,
                           over the steps both are up: how closely it tracks the gait
    forward_velocity       mean body-frame forward speed (m/s), policy and scripted
    yaw_rate               mean yaw rate (rad/s), policy and scripted
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.imitate.bc import BCPolicy
from legkit.imitate.collect import PIDOG_BEHAVIOURS, behaviour_task
from legkit.imitate.warmstart import bc_action


def closed_loop(bc: BCPolicy, task, behaviours: list[str], robots: int, seconds: float, seed: int = 0,
                progress=None) -> dict:
    """{behaviour: metrics} (see the module docstring) and "mean": the means over behaviours."""
    out = {}
    for i, name in enumerate(behaviours):
        scripted = behaviour_task(task, task.robot, name, PIDOG_BEHAVIOURS[name], seconds)
        ref = _rollout(scripted, robots, seed + i, None)
        pol = _rollout(replace(scripted, gait=None), robots, seed + i, bc)  # same behaviour and clock, no gait
        both = pol["up"] & ref["up"]
        err = np.square(pol["q"] - ref["q"]).mean(axis=-1)  # (steps, robots): mean over joints
        out[name] = {
            "survival": float(pol["up"][-1].mean()), "scripted_survival": float(ref["up"][-1].mean()),
            "joint_rms": float(np.sqrt(err[both].mean())) if both.any() else None,
            "forward_velocity": _mean(pol["vx"], pol["up"]), "scripted_forward_velocity": _mean(ref["vx"], ref["up"]),
            "yaw_rate": _mean(pol["wz"], pol["up"]), "scripted_yaw_rate": _mean(ref["wz"], ref["up"]),
        }
        if progress is not None:
            progress(name, out[name])
    rms = [m["joint_rms"] for m in out.values() if m["joint_rms"] is not None]
    out["mean"] = {"survival": float(np.mean([m["survival"] for m in out.values()])),
                   "joint_rms": float(np.mean(rms)) if rms else None}
    return out


def _mean(values: np.ndarray, up: np.ndarray) -> float | None:
    return float(values[up].mean()) if up.any() else None


def _rollout(task, robots: int, seed: int, bc: BCPolicy | None) -> dict:
    """One episode of `robots` robots under the cloned policy `bc` (None: the task's scripted gait alone).
    Arrays (steps, robots): joint angles q (with a joints axis), up (not fallen by that step), vx, wz."""
    batch = LeggedBatch(task, robots, seed=seed, nthread=1)
    try:
        steps, state = batch.max_steps, None
        q = np.zeros((steps, robots, len(batch.home)))
        up, vx, wz = np.zeros((steps, robots), bool), np.zeros((steps, robots)), np.zeros((steps, robots))
        standing = np.ones(robots, bool)
        zero = np.zeros((robots, batch.action_dim))
        for t in range(steps):
            obs = batch.observe()  # both runs draw observation noise alike: their random streams stay in step
            if bc is None:
                action = zero
            else:
                action, state = bc_action(bc, obs, state)
            _, fell, _ = batch.step(action)
            standing &= ~fell  # a fallen robot is not reset: its episode is over
            up[t], q[t] = standing, batch.state.joint_pos
            vx[t], wz[t] = batch.state.base_lin_vel[:, 0], batch.state.base_ang_vel[:, 2]
    finally:
        batch.close()
    return {"q": q, "up": up, "vx": vx, "wz": wz}
