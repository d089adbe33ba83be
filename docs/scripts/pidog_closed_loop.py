"""Closed-loop check of a PiDog clone on every demonstrated behaviour, longer than the pipeline's own.

    .venv/bin/python docs/scripts/pidog_closed_loop.py RUNS/pipeline/NAME/imitate/best.pt [SECONDS]

Runs legkit.pipeline.closed_loop (the clone and the scripted gait from the same starts) with 8 robots per
behaviour for SECONDS (default 20) and prints its metrics.
"""

import sys

from legkit.imitate.bc import load_bc
from legkit.imitate.collect import PIDOG_BEHAVIOURS
from legkit.pipeline.closed_loop import closed_loop
from legkit.tasks import get_task

bc = load_bc(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
out = closed_loop(bc, get_task("pidog-run"), list(PIDOG_BEHAVIOURS), robots=8, seconds=seconds, seed=100)
for name, metrics in out.items():
    print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
