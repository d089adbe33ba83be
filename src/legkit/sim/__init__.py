"""Batched MuJoCo: N robots stepped together in native threads, scenes, physics randomization."""

from legkit.sim.log import install as _route_mujoco_warnings

_route_mujoco_warnings()  # MuJoCo's warnings go to the run's mujoco.log, not MUJOCO_LOG.TXT in the cwd
