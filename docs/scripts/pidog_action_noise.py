"""How much action noise the PiDog's trot takes: the scripted trot and a clone of it, with gaussian noise added to
every action (actions in [-1, 1]; joint target = home + 1.4 rad x action), on pidog-run's obstacle arena.

    .venv/bin/python docs/scripts/pidog_action_noise.py RUNS/pipeline/NAME/imitate/best.pt [TIMESTEP]

16 robots x 10 s per noise level, seed 5, the noise from numpy's generator seeded 0. TIMESTEP (s, default the
task's 0.005) changes the physics step and keeps the 20 ms control period. A fine-tuning's exploration noise is
this noise: std exp(finetune.log_std), 0.135 at the default -2. docs/scripts/pidog_trot_margin.py uses
`noisy_rollout` for other foot lifts.
"""

import sys
from dataclasses import replace

import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.imitate.collect import PIDOG_BEHAVIOURS, behaviour_task
from legkit.imitate.warmstart import bc_action
from legkit.tasks import get_task

ROBOTS, SECONDS = 16, 10.0


def scripted_trot(task=None):
    """pidog-run (or `task`) driven by the scripted trot_forward gait, episodes of SECONDS."""
    task = task or get_task("pidog-run")
    return behaviour_task(task, task.robot, "trot_forward", PIDOG_BEHAVIOURS["trot_forward"], SECONDS)


def noisy_rollout(task, sigma: float, bc=None) -> tuple[float, float]:
    """(survival, mean forward speed of the robots still up) of ROBOTS robots for one episode of `task`, the
    clone `bc` acting (None: the task's scripted gait alone) with gaussian noise of std `sigma` on every action."""
    batch = LeggedBatch(task, ROBOTS, seed=5, nthread=1)
    rng, state = np.random.default_rng(0), None
    up, vx = np.ones(ROBOTS, bool), []
    try:
        for _ in range(batch.max_steps):
            obs = batch.observe()
            if bc is None:  # the gait sets the targets; the action is a residual on them
                action = np.zeros((ROBOTS, batch.action_dim))
            else:
                action, state = bc_action(bc, obs, state)
            _, fell, _ = batch.step(action + sigma * rng.standard_normal(action.shape))
            up &= ~fell
            vx.append(batch.state.base_lin_vel[up, 0].mean() if up.any() else 0.0)
    finally:
        batch.close()
    return float(up.mean()), float(np.mean(vx))


if __name__ == "__main__":
    from legkit.imitate.bc import load_bc

    bc = load_bc(sys.argv[1])
    task = get_task("pidog-run")
    if len(sys.argv) > 2:
        step = float(sys.argv[2])
        task = replace(task, physics=replace(task.physics, timestep=step),
                       decimation=int(round(task.control_dt / step)))
    scripted = scripted_trot(task)
    print("who       noise  survival  forward (m/s)")
    for who, run_task, policy in (("scripted", scripted, None), ("clone", replace(scripted, gait=None), bc)):
        for sigma in (0.0, 0.003, 0.0067, 0.01, 0.018, 0.05):
            survival, forward = noisy_rollout(run_task, sigma, policy)
            print(f"{who:9s} {sigma:6.4f} {survival:8.0%}  {forward:+.3f}", flush=True)
