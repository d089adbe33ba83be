"""go2-rough: go2-walk's forward walking (0.5-1.0 m/s) over the tiled terrain, with a per-robot terrain
curriculum and a height scan, for comparison with the residual gait (go2-residual)."""

from __future__ import annotations

from dataclasses import replace

from legkit.sim.terrain import TerrainConfig
from legkit.tasks.config import SuccessBar, TaskConfig
from legkit.tasks.go2_walk import go2_walk
from legkit.tasks.ground import TerrainCurriculumConfig

ROUGH = TerrainConfig(kind="tiles", kinds={"rough": 1.0}, border=4.0)
"""The terrain of go2-rough and go2-residual, and of their comparison (docs/results.md): 6 x 6 tiles of 4 m of
uniform random roughness (a new height every 0.1 m), 0.01 m peak to peak on row 0 growing to 0.06 m on row 5,
the row they are evaluated on (task.terrain_curriculum.eval_row = -1); a 4 m flat border."""


def go2_rough() -> TaskConfig:
    """Forward velocity tracking over the terrain curriculum, seeing the ground through a height scan."""
    walk = go2_walk()
    return replace(
        walk,
        terrain=ROUGH,
        terrain_curriculum=TerrainCurriculumConfig(max_init_level=1),
        observations=(*walk.observations, "height_scan"),
        # The field is 32 m across: validation episodes are 20 s (at 1 m/s a robot walks off the end of its row in
        # about 25 s, and leaving the field ends an episode).
        validation=replace(walk.validation, max_steps=1000, long_steps=1000, min_length=900),
        success=SuccessBar(min_forward_velocity=0.5, min_survival=0.9),
    )
