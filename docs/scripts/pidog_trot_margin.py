"""The scripted PiDog trot's margin against action noise for several foot lifts (gait step_height).

    .venv/bin/python docs/scripts/pidog_trot_margin.py [HEIGHT ...]

For each step height (m; default 0.02, the gait's own, 0.03 and 0.04) and each noise std on the actions (0, 0.01,
0.018): 16 robots x 10 s of the scripted trot on pidog-run's arena, seed 5, the noise from numpy's generator seeded
0, as docs/scripts/pidog_action_noise.py. Prints survival and the mean forward speed of the robots still up.
"""

import sys
from dataclasses import replace

import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.imitate.collect import PIDOG_BEHAVIOURS, behaviour_task
from legkit.tasks import get_task

ROBOTS, SECONDS = 16, 10.0
heights = [float(h) for h in sys.argv[1:]] or [0.02, 0.03, 0.04]
task = get_task("pidog-run")
base = behaviour_task(task, task.robot, "trot_forward", PIDOG_BEHAVIOURS["trot_forward"], SECONDS)
print("step height  noise  survival  forward (m/s)")
for height in heights:
    scripted = replace(base, gait=replace(base.gait, step_height=height))
    for sigma in (0.0, 0.01, 0.018):
        batch = LeggedBatch(scripted, ROBOTS, seed=5, nthread=1)
        rng = np.random.default_rng(0)
        up, vx = np.ones(ROBOTS, bool), []
        try:
            for _ in range(batch.max_steps):
                batch.observe()
                action = sigma * rng.standard_normal((ROBOTS, batch.action_dim))
                _, fell, _ = batch.step(action)
                up &= ~fell
                vx.append(batch.state.base_lin_vel[up, 0].mean() if up.any() else 0.0)
        finally:
            batch.close()
        print(f"{height:11.3f} {sigma:6.3f} {up.mean():8.0%}  {np.mean(vx):+.3f}", flush=True)
