"""The scripted PiDog trot's margin against action noise for several foot lifts (gait step_height).

    .venv/bin/python docs/scripts/pidog_trot_margin.py [HEIGHT ...]

For each step height (m; default 0.02, the gait's own, 0.03 and 0.04) and each noise std on the actions (0, 0.01,
0.018): the rollout of docs/scripts/pidog_action_noise.py (16 robots x 10 s on pidog-run's arena). Prints survival
and the mean forward speed of the robots still up.
"""

import sys
from dataclasses import replace

from pidog_action_noise import noisy_rollout, scripted_trot

heights = [float(h) for h in sys.argv[1:]] or [0.02, 0.03, 0.04]
base = scripted_trot()
print("step height  noise  survival  forward (m/s)")
for height in heights:
    task = replace(base, gait=replace(base.gait, step_height=height))
    for sigma in (0.0, 0.01, 0.018):
        survival, forward = noisy_rollout(task, sigma)
        print(f"{height:11.3f} {sigma:6.3f} {survival:8.0%}  {forward:+.3f}", flush=True)
