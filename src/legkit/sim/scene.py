"""Build the simulated scene: a robot's MJCF plus ground, light and physics options."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from legkit import LegkitError
from legkit.robots.base import RobotSpec


@dataclass(frozen=True)
class PhysicsConfig:
    """Physics settings applied on top of the robot's MJCF."""

    timestep: float = 0.005
    """Physics step (s)."""
    iterations: int = 4
    """Constraint solver iterations."""
    ls_iterations: int = 8
    """Line-search iterations of the Newton/CG solver."""
    floor_friction: float = 0.8
    """Sliding friction of the ground plane (when legkit adds the ground). The ground outranks every
    robot geom in contact priority, so this is the friction of every foot-ground contact."""
    integrator: str = "implicitfast"
    """One of implicitfast, euler, rk4, implicit. It decides how a position actuator's PD acts: euler applies
    kp * (target - q) - kv * qdot from the state at the start of each physics step, an explicit PD loop at
    1 / timestep Hz; implicitfast (and implicit) fold the damping kv into the velocity update, stabler at
    large steps and closer to a motor driver's PD, which runs far faster than the physics step. Joint damping
    (dof_damping) is implicit under implicitfast; under euler only when the model leaves MuJoCo's eulerdamp
    flag on (the Go2's MJCF turns it off). `legkit export` records it and `legkit sim2sim` runs under it, so
    a policy leaves legkit with the PD it was trained with."""
    solver: str = "newton"
    """Constraint solver: newton, cg or pgs."""


INTEGRATORS = {"implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST, "euler": mujoco.mjtIntegrator.mjINT_EULER,
               "rk4": mujoco.mjtIntegrator.mjINT_RK4, "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT}
SOLVERS = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG, "pgs": mujoco.mjtSolver.mjSOL_PGS}


@dataclass(frozen=True)
class PhysicsPreset:
    """A physics quality level (`--physics NAME`): the physics step and the solver's effort. The task's
    control period stays as it is; its decimation becomes control period / timestep."""

    timestep: float
    """Physics step (s)."""
    iterations: int
    """Constraint solver iterations."""
    ls_iterations: int
    """Line-search iterations of the Newton/CG solver."""
    description: str


PHYSICS_PRESETS = {
    # Newton stops at its tolerance (opt.tolerance, 1e-8) before 50 iterations at a quadruped's few contacts:
    # production is a converged solve at 1 kHz, the reference that fast and medium are measured against.
    "production": PhysicsPreset(0.001, 50, 50, "1 ms step, converged solver: the fidelity reference"),
    "medium": PhysicsPreset(0.002, 10, 20, "2 ms step, a few more solver iterations"),
    "fast": PhysicsPreset(0.005, 4, 8, "5 ms step, the tasks' own defaults: what they train under"),
}
"""The physics quality presets by name, most faithful first (the seed project's Gazebo presets)."""


def physics_preset(name: str) -> PhysicsPreset:
    """The preset `name` of PHYSICS_PRESETS; a LegkitError naming the valid ones otherwise."""
    if name not in PHYSICS_PRESETS:
        raise LegkitError(f"unknown physics preset '{name}'; valid: {', '.join(PHYSICS_PRESETS)}")
    return PHYSICS_PRESETS[name]


def preset_decimation(name: str, control_dt: float) -> int:
    """Physics steps per control period `control_dt` (s) under preset `name`; a LegkitError when the period is
    not a whole number of the preset's steps."""
    step = physics_preset(name).timestep
    k = _steps_per_period(step, control_dt)
    if k is None:
        fit = [n for n, p in PHYSICS_PRESETS.items() if _steps_per_period(p.timestep, control_dt) is not None]
        raise LegkitError(f"physics preset {name}: the task's control period of {control_dt * 1000:g} ms is not a "
                          f"whole multiple of the preset's {step * 1000:g} ms physics step; presets that fit it: "
                          f"{', '.join(fit) or 'none'}")
    return k


def _steps_per_period(step: float, period: float) -> int | None:
    """period / step when it is a whole number >= 1 (to float rounding), else None."""
    k = round(period / step)
    return int(k) if k >= 1 and abs(k * step - period) <= 1e-9 * max(period, 1.0) else None


GROUND_TYPES = (mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_HFIELD)
"""Geom types that count as ground when they belong to the world body."""


def _raise_ground_priority(spec: mujoco.MjSpec) -> None:
    """Give the world's plane/hfield geoms a contact priority above every other geom.

    MuJoCo combines two geoms' friction by taking the max when their priorities are equal, so a floor
    less slippery than the feet would change nothing; with a higher priority the ground's friction
    (and condim, solref, solimp) is the contact's.
    """
    ground = [g for g in spec.worldbody.geoms if g.type in GROUND_TYPES]
    if not ground:
        raise LegkitError("the robot's MJCF is said to bring its own floor (has_floor) but its world body has "
                          "no plane or hfield geom; add one, or set has_floor=False so that legkit adds it")
    others = [g.priority for g in spec.geoms if not (g.parent == spec.worldbody and g.type in GROUND_TYPES)]
    top = max(others, default=0) + 1
    for g in ground:
        g.priority = max(g.priority, top)


def build_model(robot: RobotSpec, physics: PhysicsConfig, terrain=None, arena=None) -> mujoco.MjModel:
    """Compile the robot with a ground and lights into an MjModel: a plane, or `terrain`'s heightfield
    (a sim.terrain.Terrain) when given; with `arena` (an enabled sim.arena.ArenaConfig), its obstacles."""
    for key, value, valid in (("integrator", physics.integrator, INTEGRATORS), ("solver", physics.solver, SOLVERS)):
        if value not in valid:
            raise LegkitError(f"invalid task.physics.{key} '{value}'; valid: {', '.join(valid)}")
    spec = mujoco.MjSpec.from_file(str(robot.xml()))
    if robot.edit_spec is not None:
        robot.edit_spec(spec)
    if terrain is not None and robot.has_floor:
        raise LegkitError(f"the {robot.name}'s MJCF brings its own floor (has_floor), so it cannot be put on "
                          "task.terrain; use task.terrain.kind=plane")
    if not robot.has_floor:
        tex = spec.add_texture(
            name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
            rgb1=[0.22, 0.26, 0.30], rgb2=[0.30, 0.34, 0.38], width=512, height=512,
        )
        mat = spec.add_material(name="grid", texrepeat=[1, 1], reflectance=0.1)
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
        if terrain is None:
            spec.worldbody.add_geom(
                name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], material="grid",
                contype=1, conaffinity=2, friction=[physics.floor_friction, 0.02, 0.01],
            )
        else:
            terrain.add_to_spec(spec, physics.floor_friction)
        spec.worldbody.add_light(pos=[0, 0, 3], dir=[0, 0, -1], diffuse=[0.7, 0.7, 0.7], castshadow=False)
    if arena is not None and arena.enabled:
        if terrain is not None:
            raise LegkitError("the obstacle arena stands on flat ground: use it with task.terrain.kind=plane")
        from legkit.sim.arena import add_to_spec

        add_to_spec(spec, arena, robot_body=robot.base_body)
    _raise_ground_priority(spec)
    model = spec.compile()
    model.opt.timestep = physics.timestep
    model.opt.iterations = physics.iterations
    model.opt.ls_iterations = physics.ls_iterations
    model.opt.integrator = int(INTEGRATORS[physics.integrator])
    model.opt.solver = int(SOLVERS[physics.solver])
    # A diverged robot must surface as a non-finite state that the env detects, counts and resets;
    # MuJoCo's default auto-reset would silently put it back at qpos0 in the middle of its episode.
    model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)
    return model
